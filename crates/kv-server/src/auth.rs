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

/// The key prefixes a scoped API key reaches (`prefix=` in the key file): a key is in reach
/// when it starts with one of them. Kept sorted, without a prefix that another one covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(std::sync::Arc<[String]>);

impl Scope {
    fn new(mut prefixes: Vec<String>) -> Scope {
        prefixes.sort();
        prefixes.dedup();
        let covered =
            |p: &String, all: &[String]| all.iter().any(|q| q != p && p.starts_with(q.as_str()));
        let kept: Vec<String> = prefixes
            .iter()
            .filter(|p| !covered(p, &prefixes))
            .cloned()
            .collect();
        Scope(kept.into())
    }

    /// The prefixes, in byte order, none covering another.
    pub fn prefixes(&self) -> &[String] {
        &self.0
    }

    /// Whether `key` is in reach.
    pub fn allows(&self, key: &str) -> bool {
        self.0.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// Whether every key starting with `prefix` is in reach.
    pub fn covers(&self, prefix: &str) -> bool {
        self.allows(prefix)
    }
}

/// A key as configured: the key, what it allows, how far it reaches, and where it came from
/// (a line number, or a description of the source).
#[derive(Debug, PartialEq, Eq)]
struct ConfiguredKey<From> {
    key: String,
    access: Access,
    scope: Option<Scope>,
    from: From,
}

/// The configured keys, as digests.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<([u8; 32], Access)>,
    /// The keys of the key file that carry `prefix=` scopes, by digest.
    scopes: Vec<([u8; 32], Scope)>,
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
        let mut keys: Vec<ConfiguredKey<String>> = Vec::new();
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
                keys.push(ConfiguredKey {
                    key: key.to_owned(),
                    access,
                    scope: None,
                    from: source.to_owned(),
                });
            }
        }
        if let Some(path) = &config.api_keys_file {
            keys.extend(read_key_file(path)?);
        }
        let mut api_keys = ApiKeys {
            throttle: std::sync::Arc::new(KeyThrottle::new(config.wrong_key_limit)),
            ..ApiKeys::default()
        };
        for ConfiguredKey {
            key,
            access,
            scope,
            from: source,
        } in keys
        {
            let digest = digest(&key);
            if let Some((_, other)) = api_keys.digests.iter().find(|(d, _)| *d == digest) {
                if *other != access {
                    return Err(KeyConfigError(format!(
                        "a key is configured both read-write and read-only (seen again in {source})"
                    )));
                }
                let scoped = api_keys.scopes.iter().find(|(d, _)| *d == digest);
                if scoped.map(|(_, s)| s) != scope.as_ref() {
                    return Err(KeyConfigError(format!(
                        "a key is configured with two different scopes (seen again in {source})"
                    )));
                }
                continue;
            }
            api_keys.digests.push((digest, access));
            if let Some(scope) = scope {
                api_keys.scopes.push((digest, scope));
            }
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

    /// The scope of `presented`, a configured key: `None` when it reaches every key. Every
    /// scoped key's digest is compared, in constant time.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let presented = digest(presented);
        let mut found = None;
        for (digest, scope) in &self.scopes {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(scope.clone());
            }
        }
        found
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

/// Reads a key file: one `rw:<key>` or `ro:<key>` a line, optionally followed by scopes,
/// `prefix=<prefix>` (repeatable, separated by spaces): the key then reaches only keys that
/// start with one of them. Blank lines and lines starting with `#` are skipped; whitespace
/// around a line and around the key is ignored.
fn read_key_file(path: &Path) -> Result<Vec<ConfiguredKey<String>>, KeyConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        KeyConfigError(format!(
            "cannot read the API key file {}: {e}",
            path.display()
        ))
    })?;
    parse_key_file(&text)
        .map(|keys| {
            keys.into_iter()
                .map(|k| ConfiguredKey {
                    from: format!("{} line {}", path.display(), k.from),
                    key: k.key,
                    access: k.access,
                    scope: k.scope,
                })
                .collect()
        })
        .map_err(|why| KeyConfigError(format!("API key file {}: {why}", path.display())))
}

/// The keys of a key file with their scopes and line numbers. An error names the line, never
/// its text.
fn parse_key_file(text: &str) -> Result<Vec<ConfiguredKey<usize>>, String> {
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
        let mut words = key.split_whitespace();
        let key = words.next().unwrap_or_default();
        if key.is_empty() {
            return Err(format!("line {number} has an empty {} key", access.name()));
        }
        check_key(key).map_err(|why| format!("line {number}: {why}"))?;
        let mut prefixes = Vec::new();
        for word in words {
            match word.strip_prefix("prefix=") {
                Some(prefix) if !prefix.is_empty() => prefixes.push(prefix.to_owned()),
                _ => {
                    return Err(format!(
                        "line {number}: after the key, only `prefix=<prefix>` scopes may follow \
                         (a non-empty prefix each, separated by spaces)"
                    ));
                }
            }
        }
        let scope = (!prefixes.is_empty()).then(|| Scope::new(prefixes));
        keys.push(ConfiguredKey {
            key: key.to_owned(),
            access,
            scope,
            from: number,
        });
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

/// `POST /_tx` may be run with a read-only key when all its ops read, `/_eval` with
/// `read_only`, and `/_upstash` runs a read-only key's read commands: their handlers decide once they have parsed the ops or
/// commands (see [`Access`] as an extractor).
fn decides_access_itself(method: &Method, path: &str) -> bool {
    method == Method::POST
        && matches!(
            path.strip_suffix('/').unwrap_or(path),
            "/_tx" | "/_eval" | "/_upstash" | "/_upstash/pipeline" | "/_upstash/multi-exec"
        )
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `/_watch` alone also takes the key as `?access_token=` (EventSource cannot send headers).
fn is_watch(path: &str) -> bool {
    matches!(path, "/_watch" | "/_watch/")
}

/// The `access_token` of a `/_watch` query, percent-decoded.
fn access_token(req: &ServiceRequest) -> Option<String> {
    if !is_watch(req.path()) {
        return None;
    }
    req.query_string().split('&').find_map(|pair| {
        let value = pair.strip_prefix("access_token=")?;
        let value = value.replace('+', " ");
        percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    })
}

/// The request line for the access log, with any `access_token` masked (on every route: one
/// sent where it is not taken is a key all the same), so keys never reach a log.
pub fn request_line_for_log(req: &ServiceRequest) -> String {
    let query = req.query_string();
    let query = if query.contains("access_token=") {
        query
            .split('&')
            .map(|pair| {
                if pair.starts_with("access_token=") {
                    "access_token=***"
                } else {
                    pair
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    } else {
        query.to_owned()
    };
    let separator = if query.is_empty() { "" } else { "?" };
    let line = format!(
        "{} {}{separator}{query} {:?}",
        req.method(),
        req.path(),
        req.version()
    );
    // The line sits between quotes in the log: a quote or backslash a client sent in its
    // path cannot end it early (escaped as the JSON log format does).
    line.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>` (or on
/// `/_watch`, `?access_token=<key>`).
fn presented_key(req: &ServiceRequest) -> Option<std::borrow::Cow<'_, str>> {
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
        .map(std::borrow::Cow::Borrowed)
        .or_else(|| access_token(req).map(std::borrow::Cow::Owned))
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
    let presented: Option<String> = presented_key(&req).map(std::borrow::Cow::into_owned);
    let client = req.peer_addr().map(|addr| addr.ip());
    let now = std::time::Instant::now();
    let metrics = |req: &ServiceRequest| req.app_data::<web::Data<Metrics>>().cloned();
    // An address that presented too many wrong keys gets no key checked for a while.
    if presented.is_some()
        && let Some(client) = client
        && let Some(wait) = keys.throttle.blocked(client, now)
    {
        if let Some(metrics) = metrics(&req) {
            metrics.auth_throttled.inc();
        }
        return refuse(req, ApiError::TooManyWrongKeys(wait.as_secs().max(1)));
    }
    let access = match presented.as_deref().and_then(|key| keys.access_of(key)) {
        Some(access) => access,
        None => {
            if presented.is_some() {
                if let Some(client) = client {
                    keys.throttle.failed(client, now);
                }
                if let Some(metrics) = metrics(&req) {
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
    if let Some(scope) = presented.as_deref().and_then(|key| keys.scope_of(key)) {
        if let Err(err) = check_reach(&req, &scope) {
            return refuse(req, err);
        }
        req.extensions_mut().insert(Reach(Some(scope)));
    }
    if let Some(key) = presented.as_deref() {
        req.extensions_mut()
            .insert(crate::idempotency::RecordOwner::of(key));
    }
    req.extensions_mut().insert(access);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// What a scoped key may reach of the route itself: a key route only a key within its scope;
/// `/_stats` and `/_metrics`, which count every key, not at all. Routes over several keys
/// (`/_keys`, `/_tx`) check each key they reach themselves ([`Reach`]).
fn check_reach(req: &ServiceRequest, scope: &Scope) -> Result<(), ApiError> {
    let path = req.path();
    let server_route = path.strip_prefix('/').unwrap_or(path).starts_with('_');
    if !server_route {
        let key = crate::http::key_of(req.request())?;
        if !scope.allows(&key) {
            return Err(ApiError::OutOfReach(format!(
                "this API key may not reach the key {key:?} (its prefixes: {})",
                scope.prefixes().join(", ")
            )));
        }
        return Ok(());
    }
    let route = path.trim_end_matches('/');
    if matches!(route, "/_stats" | "/_metrics") {
        return Err(ApiError::OutOfReach(format!(
            "{route} counts every key; an API key scoped to prefixes may not read it"
        )));
    }
    Ok(())
}

/// The keys a request may reach: `Reach(None)` is every key (an unscoped key, or no
/// authentication), `Reach(Some(scope))` those of a scoped key.
#[derive(Debug, Clone, Default)]
pub struct Reach(pub Option<Scope>);

impl Reach {
    /// Refuses `key` out of reach.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(scope) if !scope.allows(key) => Err(ApiError::OutOfReach(format!(
                "this API key may not reach the key {key:?} (its prefixes: {})",
                scope.prefixes().join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// What a listing (`/_keys`, `/_export`) asked for `prefix` (none or empty: every key)
    /// may cover: `None`, the prefix as asked (every key is in reach, or the prefix is within
    /// the scope); or a scoped key's own prefixes, when it asked for every key. A prefix beyond
    /// the scope is refused.
    pub fn listing(&self, prefix: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
        match (&self.0, prefix.filter(|p| !p.is_empty())) {
            (Some(_), Some(prefix)) => self.check_prefix(prefix).map(|()| None),
            (Some(scope), None) => Ok(Some(scope.prefixes().to_vec())),
            (None, _) => Ok(None),
        }
    }

    /// Refuses a `prefix` whose keys are not all in reach.
    pub fn check_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(scope) if !scope.covers(prefix) => Err(ApiError::OutOfReach(format!(
                "this API key may not reach every key under the prefix {prefix:?} (its \
                 prefixes: {})",
                scope.prefixes().join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequest for Reach {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<Reach>()
            .cloned()
            .unwrap_or_default()))
    }
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
        let line = |key: &str, access, from| ConfiguredKey {
            key: key.to_owned(),
            access,
            scope: None,
            from,
        };
        assert_eq!(
            parsed,
            vec![
                line("abc", Access::ReadWrite, 3),
                line("def", Access::ReadOnly, 4)
            ]
        );
    }

    #[test]
    fn scopes_follow_the_key_and_a_prefix_covered_by_another_is_dropped() {
        let parsed = parse_key_file(
            "rw:k1 prefix=b: prefix=a:
ro:k2  prefix=a: prefix=a:x
",
        )
        .expect("valid");
        let prefixes: Vec<Vec<String>> = parsed
            .iter()
            .map(|k| k.scope.as_ref().expect("scoped").prefixes().to_vec())
            .collect();
        assert_eq!(prefixes, [vec!["a:", "b:"], vec!["a:"]]);
        let scope = parsed[0].scope.clone().expect("scoped");
        assert!(scope.allows("a:1") && scope.allows("b:") && !scope.allows("c:1"));
        assert!(scope.covers("a:x") && !scope.covers("a") && !scope.covers(""));
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
