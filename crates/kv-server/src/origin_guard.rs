//! Refuses what a web page could make a user's browser send to kvstore behind the user's
//! back, before the request runs: a request from a page of another origin (403
//! `cross_origin`), and, on a loopback bind, a request whose `Host` names another site (421
//! `misdirected_request`: DNS rebinding, where an attacker's name resolves to 127.0.0.1).
//!
//! A browser sends `Origin` with every cross-origin request but a plain navigation, including
//! the `POST` with a `text/plain` body that `fetch(url, {mode: "no-cors"})` sends without a
//! preflight; kvstore reads bodies as JSON whatever their Content-Type, so the preflight is no
//! protection. Allowed: no `Origin` (curl, SDKs on servers), the server's own origin (the key
//! browser at `/_ui`; compared by host and port, so a TLS-terminating proxy in front changes
//! nothing), and the origins of `--cors-origin` (all with `*`). Redis added the same kind of
//! guard (it drops connections that send `POST` or `Host:`); webpack's and Vite's dev servers
//! check `Host` for the same reason.

use std::net::{IpAddr, ToSocketAddrs};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::error::ApiError;

/// Who may send requests: origins and, on a loopback bind, host names.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `--cors-origin`, cleaned up (`scheme://host[:port]`, lowercase).
    origins: Vec<String>,
    any_origin: bool,
    /// `Some`: the server listens on loopback addresses only; the host names it answers to
    /// besides loopback ones (`--allowed-host`, lowercase).
    hosts: Option<Vec<String>>,
}

impl OriginPolicy {
    /// `cors_origins` as `cors::parse_origins` left them; `bind` the listening address.
    pub fn new(cors_origins: &[String], bind: &str, allowed_hosts: &[String]) -> OriginPolicy {
        let loopback_only = bind.to_socket_addrs().is_ok_and(|mut addrs| {
            let mut any = false;
            let all = addrs.all(|addr| {
                any = true;
                addr.ip().is_loopback()
            });
            any && all
        });
        OriginPolicy {
            origins: cors_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            any_origin: cors_origins.iter().any(|o| o == "*"),
            hosts: loopback_only.then(|| {
                allowed_hosts
                    .iter()
                    .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            }),
        }
    }

    /// Why `req` is refused, if it is.
    fn refusal(
        &self,
        method: &Method,
        headers: &header::HeaderMap,
        host: Option<&str>,
    ) -> Option<ApiError> {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        if let (Some(allowed), Some(host)) = (&self.hosts, host) {
            let (name, _) = split_host(host);
            if !is_loopback_name(&name) && !allowed.contains(&name) {
                return Some(ApiError::MisdirectedRequest(format!(
                    "this server listens on a loopback address and does not answer to the host \
                     {name:?}; start it with --allowed-host {name} if that name is yours"
                )));
            }
        }
        match text(header::ORIGIN) {
            Some(origin) if !self.origin_allowed(origin, host) => {
                Some(ApiError::CrossOrigin(format!(
                    "requests from pages of the origin {origin:?} are refused; allow it with \
                     --cors-origin"
                )))
            }
            Some(_) => None,
            None if text(header::HeaderName::from_static("sec-fetch-site"))
                .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"))
                && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) =>
            {
                Some(ApiError::CrossOrigin(
                    "a cross-site request without an Origin is refused".into(),
                ))
            }
            None => None,
        }
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        // The server's own origin: the same host (and port, where both say one).
        let (Some((_, authority)), Some(host)) = (origin.split_once("://"), host) else {
            return false;
        };
        let ((origin_name, origin_port), (host_name, host_port)) =
            (split_host(authority), split_host(host));
        origin_name == host_name
            && (origin_port.is_none() || host_port.is_none() || origin_port == host_port)
    }
}

/// A `Host` (or an origin's authority) as its lowercase name, without a trailing dot, and its
/// port if it gives one. An IPv6 address keeps its brackets.
fn split_host(host: &str) -> (String, Option<String>) {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = match host.rfind(':') {
        Some(colon)
            if !host[colon + 1..].is_empty()
                && host[colon + 1..].bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host[..colon].ends_with(']')) =>
        {
            (host[..colon].to_owned(), Some(host[colon + 1..].to_owned()))
        }
        _ => (host, None),
    };
    (name.trim_end_matches('.').to_owned(), port)
}

/// `localhost`, a name under `.localhost`, or a loopback address (`127.0.0.0/8`, `[::1]`).
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The middleware (`actix_web::middleware::from_fn`), with the policy in the app data.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let refusal = req
        .app_data::<web::Data<OriginPolicy>>()
        .and_then(|policy| {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            policy.refusal(req.method(), req.headers(), host)
        });
    match refusal {
        Some(err) => {
            let response = err.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> header::HeaderMap {
        let mut map = header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_static(name),
                header::HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn origins_other_than_the_server_s_own_and_the_allowed_ones_are_refused() {
        let policy = OriginPolicy::new(&["https://good.example".into()], "127.0.0.1:0", &[]);
        let refused = |origin: &str, host: &str| {
            policy
                .refusal(&Method::POST, &headers(&[("origin", origin)]), Some(host))
                .map(|e| e.to_string())
        };
        assert!(refused("https://evil.example", "127.0.0.1:8000").is_some());
        assert!(refused("null", "127.0.0.1:8000").is_some());
        assert_eq!(refused("https://good.example", "127.0.0.1:8000"), None);
        assert_eq!(refused("https://GOOD.example/", "127.0.0.1:8000"), None);
        // The key browser, from the server itself.
        assert_eq!(refused("http://127.0.0.1:8000", "127.0.0.1:8000"), None);
        assert_eq!(refused("http://localhost:8000", "localhost:8000"), None);
        assert!(refused("http://127.0.0.1:9000", "127.0.0.1:8000").is_some());
        // No Origin: curl, server-side SDKs.
        assert!(
            policy
                .refusal(&Method::POST, &headers(&[]), Some("127.0.0.1:8000"))
                .is_none()
        );
        // Sec-Fetch-Site without an Origin: refused for writes only.
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(
            policy
                .refusal(&Method::POST, &cross, Some("127.0.0.1:8000"))
                .is_some()
        );
        assert!(
            policy
                .refusal(&Method::GET, &cross, Some("127.0.0.1:8000"))
                .is_none()
        );
        let any = OriginPolicy::new(&["*".into()], "127.0.0.1:0", &[]);
        assert!(
            any.refusal(
                &Method::POST,
                &headers(&[("origin", "https://x.example")]),
                Some("localhost")
            )
            .is_none()
        );
    }

    #[test]
    fn a_loopback_server_answers_only_loopback_and_allowed_host_names() {
        let policy = OriginPolicy::new(&[], "127.0.0.1:0", &["kv.internal".into()]);
        let refused = |host: &str| {
            policy
                .refusal(&Method::GET, &headers(&[]), Some(host))
                .is_some()
        };
        for ok in [
            "127.0.0.1:8000",
            "localhost",
            "LOCALHOST.:80",
            "a.localhost:1",
            "[::1]:8000",
            "127.1.2.3",
            "kv.internal:8000",
        ] {
            assert!(!refused(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8000",
            "10.0.0.1:8000",
            "kv.internal.evil",
        ] {
            assert!(refused(bad), "{bad}");
        }
        // Listening beyond loopback: every Host is answered.
        let open = OriginPolicy::new(&[], "0.0.0.0:0", &[]);
        assert!(
            open.refusal(&Method::GET, &headers(&[]), Some("attacker.example"))
                .is_none()
        );
    }
}
