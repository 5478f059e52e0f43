//! `kv-server --health-check`: asks the server listening at `--bind` (`KV_BIND`) whether it
//! is ready (`GET /_health/ready`, which checks the database) and exits 0 if so, 1 if not.
//! For container health checks (Docker's `HEALTHCHECK`, Kubernetes' exec probes) in images
//! that carry no curl or shell. It opens no database and starts no server.
//!
//! With `--tls-cert` set it speaks HTTPS, without checking the certificate: it reaches this
//! machine's own server on loopback, where the certificate's names do not apply, and sends
//! nothing secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the server at `bind` (over HTTPS if `tls`); `Err` says why it is not ready.
pub fn check(bind: &str, tls: bool) -> Result<(), String> {
    let addr = probe_address(bind)?;
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/_health/ready");
    // The process's crypto for rustls: the same as the server's (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .new_agent();
    let mut response = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if status == 200 {
        return Ok(());
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("{url} answered {status}: {}", body.trim()))
}

/// Where to reach a server bound to `bind`: a wildcard address (`0.0.0.0`, `[::]`) is
/// reached on loopback.
fn probe_address(bind: &str) -> Result<SocketAddr, String> {
    let mut addr = bind
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve --bind {bind}: {e}"))?
        .next()
        .ok_or_else(|| format!("--bind {bind} names no address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::probe_address;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let probe = |bind: &str| probe_address(bind).map(|a| a.to_string());
        assert_eq!(probe("0.0.0.0:8000"), Ok("127.0.0.1:8000".into()));
        assert_eq!(probe("[::]:8000"), Ok("[::1]:8000".into()));
        assert_eq!(probe("127.0.0.1:9"), Ok("127.0.0.1:9".into()));
        assert!(probe("not an address").is_err());
    }
}
