//! The one error type of the HTTP layer, mapped to a status and a JSON body in one place:
//! `{"error": "<message>", "code": "<snake_case>"}` (+ `op` and `key` for transactions).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use kv_core::StoreError;
use kv_core::error::ErrorKind;
use serde::Serialize;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such route: {0}")]
    RouteNotFound(String),
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("payload too large (the limit is {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key is read-only")]
    Forbidden,
    /// A key scoped to prefixes asked for something beyond them.
    #[error("{0}")]
    OutOfReach(String),
    /// This client address presented too many wrong API keys; it may try again in this many
    /// seconds (see `throttle`).
    #[error("too many wrong API keys from this address; try again in {0} s")]
    TooManyWrongKeys(u64),
    /// A watch cursor (`since`, `Last-Event-ID`) that is no version of this store.
    #[error("{0}")]
    CursorInvalid(String),
    /// A watch resumed below the oldest version the change log keeps (or, for an SSE
    /// `Last-Event-ID`, above the current one: the store went back).
    #[error("{}", history_gone_text(*.since, *.oldest, *.current))]
    HistoryGone {
        since: i64,
        oldest: i64,
        current: i64,
    },
    /// The server holds as many watchers as it may (`--max-watchers`).
    #[error("this server holds {0} watchers, its limit; try again shortly")]
    TooManyWatchers(usize),
    /// A browser request from a page of another origin (see `origin_guard`).
    #[error("{0}")]
    CrossOrigin(String),
    /// A `Host` this server does not answer to (see `origin_guard`).
    #[error("{0}")]
    MisdirectedRequest(String),
    /// An import applied in chunks stopped at one: lines 1 to `committed_lines` of its body
    /// were imported (by the chunks before) and stay.
    #[error("{source}; {}", import_stopped_text(*.committed_lines))]
    ImportStopped {
        committed_lines: u64,
        source: Box<ApiError>,
    },
}

/// The JSON body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody<'a> {
    /// A message for people.
    pub error: String,
    /// Stable snake_case for programs: `not_found`, `expired`, `precondition_failed`, …
    #[schema(value_type = String)]
    pub code: &'a str,
    /// In a transaction: the index of the failing op.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<usize>,
    /// In a transaction: the key of the failing op.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub key: Option<&'a str>,
    /// In an import: the number (from 1) of the failing line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// `history_gone`: the lowest `since` a watch may resume from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<i64>,
    /// `history_gone`: the store's current version (re-list, then watch from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    /// An import applied in chunks that stopped: lines 1 to this of its body were imported
    /// (0: none) and stay; the rest was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_lines: Option<u64>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(error: String, code: &'a str) -> Self {
        ErrorBody {
            error,
            code,
            op: None,
            key: None,
            line: None,
            oldest: None,
            current: None,
            committed_lines: None,
        }
    }
}

fn import_stopped_text(committed_lines: u64) -> String {
    match committed_lines {
        0 => "the import stopped there and nothing of it was imported".to_owned(),
        n => format!(
            "the import stopped there: lines 1 to {n} were imported, in chunks before it, and \
             stay; the rest was not"
        ),
    }
}

fn history_gone_text(since: i64, oldest: i64, current: i64) -> String {
    if since > current {
        format!(
            "version {since} is above the store's current version {current} (the store was \
             restored or replaced): list the keys again, then watch from {current}"
        )
    } else {
        format!(
            "the change log no longer holds the changes after version {since} (it keeps those \
             after {oldest}): list the keys again, then watch from {current}"
        )
    }
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::ImportStopped { source, .. } => source.code(),
            ApiError::Store(err) => err.code(),
            ApiError::RouteNotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden | ApiError::OutOfReach(_) => "forbidden",
            ApiError::TooManyWrongKeys(_) => "too_many_wrong_keys",
            ApiError::CursorInvalid(_) => "cursor_invalid",
            ApiError::HistoryGone { .. } => "history_gone",
            ApiError::TooManyWatchers(_) => "too_many_watchers",
            ApiError::CrossOrigin(_) => "cross_origin",
            ApiError::MisdirectedRequest(_) => "misdirected_request",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::ImportStopped { source, .. } => source.status_code(),
            ApiError::Store(err) => match err.kind() {
                ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::OutOfReach(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyWrongKeys(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::CursorInvalid(_) => StatusCode::BAD_REQUEST,
            ApiError::HistoryGone { .. } => StatusCode::GONE,
            ApiError::TooManyWatchers(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (inner, committed_lines) = match self {
            ApiError::ImportStopped {
                committed_lines,
                source,
            } => (&**source, Some(*committed_lines)),
            other => (other, None),
        };
        let (op, key, line) = match inner {
            ApiError::Store(StoreError::InOp { index, key, .. }) => {
                (Some(*index), key.as_deref(), None)
            }
            ApiError::Store(StoreError::InLine { line, .. }) => (None, None, Some(*line)),
            _ => (None, None, None),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The detail is for the operator, not the client.
            log::error!("internal error: {self}");
            "internal server error".to_owned()
        } else {
            self.to_string()
        };
        let mut response = HttpResponse::build(status);
        match inner {
            ApiError::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"kvstore\""));
            }
            ApiError::TooManyWrongKeys(seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            _ => {}
        }
        let (oldest, current) = match self {
            ApiError::HistoryGone {
                oldest, current, ..
            } => (Some(*oldest), Some(*current)),
            _ => (None, None),
        };
        response.json(ErrorBody {
            error: message,
            code: self.code(),
            op,
            key,
            line,
            oldest,
            current,
            committed_lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(err: ApiError) -> (StatusCode, serde_json::Value) {
        let response = err.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[actix_web::test]
    async fn error_shape_is_pinned() {
        let (status, body) = body_of(StoreError::NotFound { expired: true }.into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"error": "Key not found (expired)", "code": "expired"})
        );
        let err = StoreError::PreconditionFailed("nope".into()).in_op(2, Some("k"));
        let (status, body) = body_of(err.into()).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            body,
            serde_json::json!({"error": "nope", "code": "precondition_failed", "op": 2, "key": "k"})
        );
    }

    #[actix_web::test]
    async fn internal_details_are_not_sent() {
        let (status, body) = body_of(StoreError::Internal("secret path /x".into()).into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal server error");
    }
}
