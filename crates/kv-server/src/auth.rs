//! API keys: who may use the store, and whether they may write.
//!
//! Keys come from `--api-key` / `KV_API_KEYS` (read-write), `--read-only-key` /
//! `KV_READ_ONLY_KEYS` and `--api-keys-file` (`rw:<key>` / `ro:<key>` lines). With none
//! configured there is no authentication. Otherwise every route but `/_health*` needs
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`: missing or wrong is 401, a read-only
//! key on a write is 403. Only SHA-256 digests of the keys are kept, and a presented key is
//! compared against every one of them in constant time, so neither the key nor its length
//! shows in response times. Keys are never logged.

use std::fmt;
use std::future::{Ready, ready};
use std::path::Path;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::throttle::KeyThrottle;

/// What a request's key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::ReadWrite => "rw",
            Access::ReadOnly => "ro",
        }
    }
}

/// The configured keys, as digests.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<([u8; 32], Access)>,
    /// Wrong keys by client address (see [`crate::throttle`]).
    throttle: std::sync::Arc<KeyThrottle>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} configured)", self.digests.len())
    }
}

/// A key configuration the server refuses to start with. Never contains a key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyConfigError(String);

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Gathers the keys of the flags, the environment and the key file.
    pub fn from_config(config: &Config) -> Result<ApiKeys, KeyConfigError> {
        let mut keys: Vec<(String, Access, String)> = Vec::new();
        for (list, access, source) in [
            (
                &config.api_keys,
                Access::ReadWrite,
                "--api-key / KV_API_KEYS",
            ),
            (
                &config.read_only_keys,
                Access::ReadOnly,
                "--read-only-key / KV_READ_ONLY_KEYS",
            ),
        ] {
            // An empty entry (`KV_API_KEYS=` or `a,,b`) is no key at all.
            for key in list.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
                check_key(key).map_err(|why| KeyConfigError(format!("{source}: {why}")))?;
                keys.push((key.to_owned(), access, source.to_owned()));
            }
        }
        if let Some(path) = &config.api_keys_file {
            keys.extend(read_key_file(path)?);
        }
        let mut api_keys = ApiKeys::default();
        for (key, access, source) in keys {
            let digest = digest(&key);
            if let Some((_, other)) = api_keys.digests.iter().find(|(d, _)| *d == digest) {
                if *other != access {
                    return Err(KeyConfigError(format!(
                        "a key is configured both read-write and read-only (seen again in {source})"
                    )));
                }
                continue;
            }
            api_keys.digests.push((digest, access));
        }
        Ok(api_keys)
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// What `presented` allows, if it is a configured key. Every configured key is compared,
    /// in constant time, whatever matches.
    pub fn access_of(&self, presented: &str) -> Option<Access> {
        let presented = digest(presented);
        let (mut read_write, mut read_only) = (Choice::from(0), Choice::from(0));
        for (digest, access) in &self.digests {
            let equal = digest.ct_eq(&presented);
            match access {
                Access::ReadWrite => read_write |= equal,
                Access::ReadOnly => read_only |= equal,
            }
        }
        if bool::from(read_write) {
            Some(Access::ReadWrite)
        } else if bool::from(read_only) {
            Some(Access::ReadOnly)
        } else {
            None
        }
    }
}

/// A key is visible ASCII (what a header carries unchanged): no spaces, no control characters.
fn check_key(key: &str) -> Result<(), String> {
    if key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("an API key may hold only visible ASCII characters (no spaces)".into())
    }
}

/// Reads a key file: one `rw:<key>` or `ro:<key>` a line. Blank lines and lines starting with
/// `#` are skipped; whitespace around a line and around the key is ignored.
fn read_key_file(path: &Path) -> Result<Vec<(String, Access, String)>, KeyConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        KeyConfigError(format!(
            "cannot read the API key file {}: {e}",
            path.display()
        ))
    })?;
    parse_key_file(&text)
        .map(|keys| {
            keys.into_iter()
                .map(|(key, access, line)| (key, access, format!("{} line {line}", path.display())))
                .collect()
        })
        .map_err(|why| KeyConfigError(format!("API key file {}: {why}", path.display())))
}

/// The keys of a key file with their line numbers. An error names the line, never its text.
fn parse_key_file(text: &str) -> Result<Vec<(String, Access, usize)>, String> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (access, key) = if let Some(key) = line.strip_prefix("rw:") {
            (Access::ReadWrite, key)
        } else if let Some(key) = line.strip_prefix("ro:") {
            (Access::ReadOnly, key)
        } else {
            return Err(format!(
                "line {number} is not `rw:<key>` or `ro:<key>` (blank lines and `#` comments are allowed)"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("line {number} has an empty {} key", access.name()));
        }
        check_key(key).map_err(|why| format!("line {number}: {why}"))?;
        keys.push((key.to_owned(), access, number));
    }
    Ok(keys)
}

/// Open without a key: `/_health`, `/_health/live`, `/_health/ready` (load balancers) and the
/// three files of the key browser, which hold no data (the page then asks for a key). Exact
/// paths only: `/_health/incr` would be the incr route of the key `_health`.
fn is_open(path: &str) -> bool {
    matches!(
        path.strip_suffix('/').unwrap_or(path),
        "/_health" | "/_health/live" | "/_health/ready" | "/_ui"
    ) || matches!(path, "/_ui/app.js" | "/_ui/app.css")
}

/// `POST /_tx` may be run with a read-only key when all its ops read: the transaction handler
/// decides that once it has parsed the ops (see [`Access`] as an extractor).
fn decides_access_itself(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/_tx" | "/_tx/")
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_key(req: &ServiceRequest) -> Option<&str> {
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        // An empty key is no key: it guesses nothing (see `crate::throttle`).
        .filter(|key| !key.is_empty())
}

/// The middleware (`actix_web::middleware::from_fn`). A no-op when no keys are configured.
pub async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let keys = req.app_data::<web::Data<ApiKeys>>().cloned();
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    if is_open(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let refuse = |req: ServiceRequest, err: ApiError| {
        let response = err.error_response();
        Ok(req.into_response(response).map_into_right_body())
    };
    let presented = presented_key(&req);
    let client = req.peer_addr().map(|addr| addr.ip());
    let now = std::time::Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // An address that presented too many wrong keys gets no key checked for a while.
    if presented.is_some()
        && let Some(client) = client
        && let Some(wait) = keys.throttle.blocked(client, now)
    {
        if let Some(metrics) = &metrics {
            metrics.auth_throttled.inc();
        }
        return refuse(req, ApiError::TooManyWrongKeys(wait.as_secs().max(1)));
    }
    let access = match presented.and_then(|key| keys.access_of(key)) {
        Some(access) => access,
        None => {
            if presented.is_some() {
                if let Some(client) = client {
                    keys.throttle.failed(client, now);
                }
                if let Some(metrics) = &metrics {
                    metrics.auth_wrong_keys.inc();
                }
            }
            return refuse(req, ApiError::Unauthorized);
        }
    };
    if access == Access::ReadOnly
        && !is_read(req.method())
        && !decides_access_itself(req.method(), req.path())
    {
        return refuse(req, ApiError::Forbidden);
    }
    req.extensions_mut().insert(access);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The request's access, for handlers that decide themselves (`POST /_tx`). Without
/// authentication configured every request may write.
impl FromRequest for Access {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<Access>()
            .copied()
            .unwrap_or(Access::ReadWrite)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rw: &[&str], ro: &[&str]) -> ApiKeys {
        let config = Config {
            api_keys: rw.iter().map(|s| s.to_string()).collect(),
            read_only_keys: ro.iter().map(|s| s.to_string()).collect(),
            ..test_config()
        };
        ApiKeys::from_config(&config).expect("valid keys")
    }

    fn test_config() -> Config {
        use clap::Parser;
        Config::parse_from(["kv-server"])
    }

    #[test]
    fn keys_map_to_their_access() {
        let keys = keys(&["writer-1", "writer-2"], &["reader"]);
        assert_eq!(keys.access_of("writer-2"), Some(Access::ReadWrite));
        assert_eq!(keys.access_of("reader"), Some(Access::ReadOnly));
        assert_eq!(keys.access_of("writer"), None);
        assert_eq!(keys.access_of(""), None);
        assert_eq!(format!("{keys:?}"), "ApiKeys(3 configured)");
    }

    #[test]
    fn empty_entries_are_no_keys() {
        assert!(keys(&["", "  "], &[]).is_empty());
    }

    #[test]
    fn a_key_cannot_be_both_read_write_and_read_only() {
        let config = Config {
            api_keys: vec!["same".into()],
            read_only_keys: vec!["same".into()],
            ..test_config()
        };
        let err = ApiKeys::from_config(&config).expect_err("conflict");
        assert!(!err.to_string().contains("same"), "{err}");
    }

    #[test]
    fn key_files_have_rw_and_ro_lines_comments_and_blanks() {
        let parsed = parse_key_file("# keys\n\nrw:abc\n  ro: def  \n#ro:ghi\n").expect("valid");
        assert_eq!(
            parsed,
            vec![
                ("abc".to_owned(), Access::ReadWrite, 3),
                ("def".to_owned(), Access::ReadOnly, 4)
            ]
        );
    }

    #[test]
    fn bad_key_file_lines_are_named_without_their_text() {
        for (text, line) in [
            ("rw:ok\nsecret-without-prefix\n", "line 2"),
            ("admin:secret\n", "line 1"),
            ("rw:\n", "line 1"),
            ("ro:has space\n", "line 1"),
        ] {
            let err = parse_key_file(text).expect_err(text);
            assert!(err.contains(line), "{err}");
            assert!(
                !err.contains("secret") && !err.contains("has space"),
                "{err}"
            );
        }
    }

    #[test]
    fn health_is_open_and_tx_decides_itself() {
        assert!(is_open("/_health") && is_open("/_health/live") && is_open("/_health/ready/"));
        assert!(!is_open("/_healthz") && !is_open("/_keys") && !is_open("/health"));
        assert!(!is_open("/_health/incr") && !is_open("/_health/live/x") && !is_open("/"));
        assert!(is_open("/_ui") && is_open("/_ui/") && is_open("/_ui/app.js"));
        assert!(!is_open("/_ui/incr") && !is_open("/_ui/app.js/"));
        assert!(decides_access_itself(&Method::POST, "/_tx"));
        assert!(!decides_access_itself(&Method::DELETE, "/_tx"));
        assert!(!decides_access_itself(&Method::POST, "/_txx"));
    }
}
