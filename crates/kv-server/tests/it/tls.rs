//! HTTPS (`--tls-cert`, `--tls-key`): real TLS handshakes against the real binary, with a
//! certificate authority and certificates made here (rcgen; RSA ones with the openssl command)
//! and a client that checks the chain.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    Server, TestDatabase, refused_at_start, server_bin, signal, start_log, wait_until,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate authority that signs server certificates for `localhost` and 127.0.0.1.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Authority {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate named `name` with the authority's certificate after it, and its
    /// key, both PEM.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn start_https(db: &TestDatabase, cert: &Path, key: &Path) -> Server {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    Server::start_with(&db.url, &["--tls-cert", &cert, "--tls-key", &key], &[])
}

/// What one HTTPS request over a fresh connection saw.
struct Exchange {
    status_line: String,
    alpn: Option<Vec<u8>>,
    leaf: CertificateDer<'static>,
}

fn client_config(ca: &Authority, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).expect("trust the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An open, verified TLS connection to `server`.
struct Connection {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Connection {
    fn open(server: &Server, ca: &Authority, alpn: &[&[u8]]) -> Result<Connection, String> {
        let addr = server.base.trim_start_matches("https://");
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(client_config(ca, alpn), name)
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(Connection { tls })
    }

    /// `GET path` over HTTP/1.1, keeping the connection open; returns the status line.
    fn get(&mut self, path: &str) -> String {
        write!(self.tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        let mut response = Vec::new();
        let mut buf = [0; 4096];
        // The bodies here are small JSON objects with a Content-Length.
        loop {
            let n = self.tls.read(&mut buf).expect("read");
            assert!(n > 0, "connection closed");
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return head.lines().next().unwrap_or_default().to_owned();
                }
            }
        }
    }

    fn exchange(mut self, path: &str) -> Exchange {
        let status_line = self.get(path);
        Exchange {
            status_line,
            alpn: self.tls.conn.alpn_protocol().map(<[u8]>::to_vec),
            leaf: self.tls.conn.peer_certificates().expect("certificates")[0].clone(),
        }
    }
}

/// The first certificate of a PEM chain: the leaf a server with that chain presents.
fn leaf_of(chain: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(chain.as_bytes()).expect("a PEM certificate")
}

#[test]
fn https_with_a_chain_alpn_and_a_reload_on_sighup_that_keeps_open_connections() {
    let ca = Authority::new("kvstore test CA");
    let db = TestDatabase::new();
    let (chain, key) = ca.leaf("leaf-one");
    let one = leaf_of(&chain);
    let cert_path = write(db.dir(), "cert.pem", &chain);
    let key_path = write(db.dir(), "key.pem", &key);
    let server = start_https(&db, &cert_path, &key_path);
    assert!(server.base.starts_with("https://"), "{}", server.log());
    assert!(
        server.log().contains("listening on https://"),
        "{}",
        server.log()
    );

    let h2 = Connection::open(&server, &ca, &[b"h2", b"http/1.1"]).expect("handshake");
    assert_eq!(
        h2.tls.conn.alpn_protocol(),
        Some(&b"h2"[..]),
        "HTTP/2 by ALPN"
    );
    let first = Connection::open(&server, &ca, &[b"http/1.1"])
        .expect("handshake")
        .exchange("/_health");
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    assert_eq!(first.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(first.leaf == one, "the first certificate");

    // A renewed certificate, certbot-style: the files are replaced, then SIGHUP.
    let mut open = Connection::open(&server, &ca, &[b"http/1.1"]).expect("handshake");
    assert_eq!(open.get("/_health"), "HTTP/1.1 200 OK");
    let (chain, key) = ca.leaf("leaf-two");
    let two = leaf_of(&chain);
    write(db.dir(), "cert.pem", &chain);
    write(db.dir(), "key.pem", &key);
    signal(server.pid(), "HUP");
    wait_until(Duration::from_secs(5), "the reload", || {
        server.log().contains("reloaded the TLS certificate")
    });
    let renewed = Connection::open(&server, &ca, &[b"http/1.1"])
        .expect("handshake")
        .exchange("/_health");
    assert!(renewed.leaf == two, "the renewed certificate");
    assert_eq!(
        open.get("/_health"),
        "HTTP/1.1 200 OK",
        "a connection from before the reload stays open"
    );

    // A bad file at reload: the certificate in use stays, and the log says why.
    write(db.dir(), "key.pem", "not a key\n");
    signal(server.pid(), "HUP");
    wait_until(Duration::from_secs(5), "the failed reload", || {
        server.log().contains("kept the TLS certificate in use")
    });
    assert!(server.log().contains("key.pem"), "{}", server.log());
    let kept = Connection::open(&server, &ca, &[b"http/1.1"])
        .expect("handshake")
        .exchange("/_health");
    assert!(kept.leaf == two, "the certificate in use is kept");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let ca = Authority::new("kvstore test CA");
    let db = TestDatabase::new();
    let (chain, key) = ca.leaf("leaf-one");
    let server = start_https(
        &db,
        &write(db.dir(), "cert.pem", &chain),
        &write(db.dir(), "key.pem", &key),
    );
    let stranger = Authority::new("another CA");
    let refused = Connection::open(&server, &stranger, &[b"http/1.1"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("invalid peer certificate")),
        "{:?}",
        refused.err()
    );
}

#[test]
fn an_rsa_key_works_too() {
    let ca = Authority::new("kvstore test CA");
    let db = TestDatabase::new();
    // ring cannot make RSA keys: openssl makes the key and the request, the test CA signs it.
    let key_path = db.dir().join("rsa.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key_path)
        .arg("2048")
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(made.status.success(), "{made:?}");
    let pem = std::fs::read_to_string(&key_path).expect("rsa key");
    let key = KeyPair::from_pem(&pem).expect("load the RSA key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "leaf-rsa");
    let cert = params.signed_by(&key, &ca.issuer).expect("sign");
    let chain = format!("{}{}", cert.pem(), ca.pem);
    let cert_path = write(db.dir(), "cert.pem", &chain);
    let server = start_https(&db, &cert_path, &key_path);
    let got = Connection::open(&server, &ca, &[b"http/1.1"])
        .expect("handshake")
        .exchange("/_health");
    assert_eq!(got.status_line, "HTTP/1.1 200 OK");
    assert!(got.leaf == leaf_of(&chain), "the RSA certificate");
}

#[test]
fn missing_unreadable_or_mismatched_files_stop_the_server_at_start_naming_the_file() {
    let ca = Authority::new("kvstore test CA");
    let db = TestDatabase::new();
    let (chain, key) = ca.leaf("leaf-one");
    let cert = write(db.dir(), "cert.pem", &chain);
    let key = write(db.dir(), "key.pem", &key);
    let (_, other_key) = ca.leaf("leaf-other");
    let other_key = write(db.dir(), "other-key.pem", &other_key);
    let garbage = write(db.dir(), "garbage.pem", "hello\n");
    let missing = db.dir().join("missing.pem");
    let s = |p: &Path| p.display().to_string();

    refused_at_start(
        &db.url,
        &["--tls-cert", &s(&missing), "--tls-key", &s(&key)],
        &format!("cannot read the TLS certificate {}", s(&missing)),
    );
    refused_at_start(
        &db.url,
        &["--tls-cert", &s(&garbage), "--tls-key", &s(&key)],
        &format!("the TLS certificate {} holds no certificate", s(&garbage)),
    );
    refused_at_start(
        &db.url,
        &["--tls-cert", &s(&cert), "--tls-key", &s(&garbage)],
        &format!("cannot read the TLS private key {}", s(&garbage)),
    );
    refused_at_start(
        &db.url,
        &["--tls-cert", &s(&cert), "--tls-key", &s(&other_key)],
        &format!(
            "the TLS private key {} does not belong to the certificate {}",
            s(&other_key),
            s(&cert)
        ),
    );
    refused_at_start(&db.url, &["--tls-cert", &s(&cert)], "--tls-key");
}

#[test]
fn the_health_check_speaks_https_to_a_tls_server() {
    let ca = Authority::new("kvstore test CA");
    let db = TestDatabase::new();
    let (chain, key) = ca.leaf("leaf-one");
    let (cert, key) = (
        write(db.dir(), "cert.pem", &chain),
        write(db.dir(), "key.pem", &key),
    );
    let server = start_https(&db, &cert, &key);
    let bind = server.base.trim_start_matches("https://").to_owned();
    let check = |tls: bool| {
        let mut command = Command::new(server_bin());
        command.args(["--health-check", "--bind", &bind]);
        if tls {
            command
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key);
        }
        command.output().expect("run kv-server --health-check")
    };
    let ready = check(true);
    assert!(ready.status.success(), "{ready:?}");
    let plain = check(false);
    assert_eq!(
        plain.status.code(),
        Some(1),
        "plain HTTP to an HTTPS server: {plain:?}"
    );
}

/// kv-server's log from its start until a moment after it listens, bound to all interfaces
/// (no request is sent to it).
fn startup_log_on_all_interfaces(db: &TestDatabase, args: &[&str]) -> String {
    let (started, log) = start_log(&db.url, &[&["--bind", "0.0.0.0:0"], args].concat());
    assert!(started, "kv-server did not start: {log}");
    log
}

#[test]
fn a_bind_beyond_loopback_without_tls_is_warned_about() {
    let db = TestDatabase::new();
    let plain = startup_log_on_all_interfaces(&db, &["--api-key", "k"]);
    assert!(plain.contains("without TLS"), "{plain}");
    assert!(!plain.contains("no API keys"), "{plain}");

    let ca = Authority::new("kvstore test CA");
    let (chain, key) = ca.leaf("leaf-one");
    let (cert, key) = (
        write(db.dir(), "cert.pem", &chain).display().to_string(),
        write(db.dir(), "key.pem", &key).display().to_string(),
    );
    let https = startup_log_on_all_interfaces(&db, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(https.contains("listening on https://"), "{https}");
    assert!(!https.contains("without TLS"), "{https}");
    assert!(https.contains("no API keys"), "{https}");
}
