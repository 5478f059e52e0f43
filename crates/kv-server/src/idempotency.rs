//! `Idempotency-Key` on writes (kv-core's `idempotency`): the key and fingerprint of a
//! request, and [`AppState::write_answer`], the one way write handlers write and answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse};
use kv_core::StoreError;
use kv_core::idempotency::{self, Answer, IdempotentRequest, StoredResponse};
use kv_core::store::Tx;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response that is a stored one, replayed.
pub const REPLAYED: &str = "idempotent-replayed";

/// A running SHA-256 of what makes a request what it is: its method, path and query, its
/// conditional headers, the credential it presented, and its body (fed in with [`update`]).
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
        for name in [
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-api-key"),
        ] {
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
/// (`fingerprint`, its body fed in already).
pub fn request_of(
    req: &HttpRequest,
    fingerprint: impl FnOnce() -> Fingerprint,
    state: &AppState,
) -> Result<Option<IdempotentRequest>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = idempotency::parse_key(value.to_str().unwrap_or("\u{0}"))?;
    Ok(Some(IdempotentRequest {
        key,
        fingerprint: fingerprint().finish(),
        retention_ms: state.idempotency_retention_ms,
    }))
}

/// The Idempotency-Key of a request whose body is `body`.
pub fn request_with_body(
    req: &HttpRequest,
    body: &[u8],
    state: &AppState,
) -> Result<Option<IdempotentRequest>, ApiError> {
    request_of(
        req,
        || {
            let mut fingerprint = Fingerprint::of(req);
            fingerprint.update(body);
            fingerprint
        },
        state,
    )
}

impl AppState {
    /// Runs `op` as one write transaction and answers with what `render` makes of its result.
    /// With an Idempotency-Key, `render` runs inside the transaction and its response is
    /// stored with the write, or a retry gets the stored response back and nothing runs.
    pub async fn write_answer<T, F, R>(
        &self,
        idempotent: Option<IdempotentRequest>,
        now: i64,
        mut op: F,
        render: R,
    ) -> Result<HttpResponse, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
        R: Fn(T) -> Result<StoredResponse, StoreError> + Send + 'static,
    {
        let Some(request) = idempotent else {
            let result = self.write(now, op).await?;
            return Ok(respond(render(result)?, false));
        };
        let answer = self
            .write(now, move |tx| tx.idempotent(&request, |tx| render(op(tx)?)))
            .await?;
        Ok(match answer {
            Answer::Fresh(response) => respond(response, false),
            Answer::Replayed(response) => respond(response, true),
        })
    }
}

fn respond(response: StoredResponse, replayed: bool) -> HttpResponse {
    let mut builder =
        HttpResponse::build(StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK));
    if let Some(etag) = response.etag {
        builder.insert_header((header::ETAG, etag));
    }
    if replayed {
        builder.insert_header((REPLAYED, "true"));
    }
    builder
        .content_type(ContentType::json())
        .body(response.body)
}
