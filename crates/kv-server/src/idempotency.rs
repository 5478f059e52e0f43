//! `Idempotency-Key` on writes (kv-core's `idempotency`): the key and fingerprint of a
//! request. Write handlers write and answer with `AppState::write_answer` (in `state`).

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use kv_core::idempotency::{self, IdempotentRequest};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response that is a stored one, replayed.
pub const REPLAYED: &str = "idempotent-replayed";

/// Whose Idempotency-Key records a request's are: those of the API key it presented (a
/// digest of the key, the same whichever header carried it; set by `auth`). Without API keys
/// configured, every request's are the same (none is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOwner(pub String);

impl RecordOwner {
    /// The owner of the records of requests that present `api_key`.
    pub fn of(api_key: &str) -> RecordOwner {
        let digest = Sha256::digest(api_key.as_bytes());
        RecordOwner(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A running SHA-256 of what makes a request what it is: its method, path and query, its
/// conditional headers and its body (fed in with [`update`]). Who sent it is not part of it:
/// records belong to their [`RecordOwner`].
///
/// [`update`]: Fingerprint::update
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn of(req: &HttpRequest) -> Fingerprint {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(req.method().as_str().as_bytes());
        field(req.uri().path().as_bytes());
        field(req.uri().query().unwrap_or_default().as_bytes());
        for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
            field(req.headers().get(name).map_or(&[][..], |v| v.as_bytes()));
        }
        Fingerprint(hash)
    }

    pub fn update(&mut self, body: &[u8]) {
        self.0.update(body);
    }

    fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The request's Idempotency-Key, if it sent one, with the fingerprint of the request
/// (`fingerprint`, its body fed in already), to be kept for `retention_ms`.
pub fn request_of(
    req: &HttpRequest,
    fingerprint: impl FnOnce() -> Fingerprint,
    retention_ms: i64,
) -> Result<Option<IdempotentRequest>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = idempotency::parse_key(value.to_str().unwrap_or("\u{0}"))?;
    // Stored under the owner's name: two API keys' records never meet.
    let key = match req.extensions().get::<RecordOwner>() {
        Some(owner) => format!("{}:{key}", owner.0),
        None => key,
    };
    Ok(Some(IdempotentRequest {
        key,
        fingerprint: fingerprint().finish(),
        retention_ms,
    }))
}

/// The Idempotency-Key of a request whose body is `body` (see [`request_of`]).
pub fn request_with_body(
    req: &HttpRequest,
    body: &[u8],
    retention_ms: i64,
) -> Result<Option<IdempotentRequest>, ApiError> {
    request_of(
        req,
        || {
            let mut fingerprint = Fingerprint::of(req);
            fingerprint.update(body);
            fingerprint
        },
        retention_ms,
    )
}
