//! The one error type of the store. The HTTP layer maps each kind to a status in one place.

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The request itself is wrong (400). `code` is stable snake_case for programs.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The key does not exist (404); `expired` when a row was there but had expired.
    #[error("{}", if *expired { "Key not found (expired)" } else { "Key not found" })]
    NotFound { expired: bool },
    /// A condition (nx, xx, if_version, If-Match, check) does not hold (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// INCR/DECR on a value that is not a JSON integer (409).
    #[error("value is not an integer")]
    NotAnInteger,
    /// INCR/DECR would leave the 64-bit signed range (409).
    #[error("increment or decrement would overflow a 64-bit integer")]
    Overflow,
    /// A write raced another one and lost after retries (503, try again).
    #[error("write conflict with a concurrent request; retry")]
    Conflict,
    /// The database is busy, read-only, full or unreachable (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a corrupt row (500). The detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
    /// An import would write a key that exists (`mode=fail_on_existing`; 409).
    #[error("key {0:?} exists (mode=fail_on_existing)")]
    KeyExists(String),
    /// An operation for one type on a key that holds another (409 `wrong_type`; Redis's
    /// WRONGTYPE).
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An Idempotency-Key sent again with another request (422).
    #[error("this Idempotency-Key was used with another request; use a new key for a new request")]
    IdempotencyKeyReused,
    /// The response would pass `--max-response-bytes` (422); nothing was written.
    #[error(
        "the response would pass the server's response limit of {limit} bytes; ask for less at a time"
    )]
    ResponseTooLarge { limit: usize },
    /// The request ran past `--request-timeout` and was stopped; what it wrote was rolled back
    /// (503).
    #[error(
        "the request ran longer than the server's request timeout ({timeout_ms} ms) and was stopped; nothing it wrote was kept"
    )]
    TimedOut { timeout_ms: u64 },
    /// The client went away: the request's work stopped and what it wrote was rolled back.
    #[error("the client went away; the request was stopped")]
    ClientGone,
    /// A Lua script failed (an error, its time or memory limit): nothing it wrote was kept
    /// (400 `script_error`; on `/_upstash` the command's error reply, Redis's text).
    #[error("{0}")]
    Script(String),
    /// An error in line `line` (from 1) of an import.
    #[error("line {line}: {source}")]
    InLine { line: u64, source: Box<StoreError> },
    /// An error in operation `index` of a transaction.
    #[error("{source}")]
    InOp {
        index: usize,
        key: Option<String>,
        source: Box<StoreError>,
    },
}

/// The broad class of an error: what the HTTP layer turns into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    /// Well-formed but not processable as sent (422).
    Unprocessable,
    NotFound,
    PreconditionFailed,
    Conflict,
    Unavailable,
    Internal,
}

impl StoreError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Wraps this error as the failure of transaction operation `index` on `key`.
    pub fn in_op(self, index: usize, key: Option<&str>) -> Self {
        match self {
            already @ StoreError::InOp { .. } => already,
            source => StoreError::InOp {
                index,
                key: key.map(str::to_owned),
                source: Box::new(source),
            },
        }
    }

    /// Wraps this error as the failure of line `line` of an import.
    pub fn in_line(self, line: u64) -> Self {
        match self {
            already @ StoreError::InLine { .. } => already,
            source => StoreError::InLine {
                line,
                source: Box::new(source),
            },
        }
    }

    /// The error itself, without the transaction operation or import line it happened in.
    pub fn root(&self) -> &StoreError {
        match self {
            StoreError::InOp { source, .. } | StoreError::InLine { source, .. } => source.root(),
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            StoreError::Invalid { .. } | StoreError::Script(_) => ErrorKind::Invalid,
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::IdempotencyKeyReused | StoreError::ResponseTooLarge { .. } => {
                ErrorKind::Unprocessable
            }
            StoreError::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            StoreError::NotAnInteger
            | StoreError::Overflow
            | StoreError::KeyExists(_)
            | StoreError::WrongType => ErrorKind::Conflict,
            StoreError::Conflict
            | StoreError::Unavailable(_)
            | StoreError::TimedOut { .. }
            | StoreError::ClientGone => ErrorKind::Unavailable,
            StoreError::Internal(_) | StoreError::InOp { .. } | StoreError::InLine { .. } => {
                ErrorKind::Internal
            }
        }
    }

    /// Stable snake_case code for programs.
    pub fn code(&self) -> &'static str {
        match self.root() {
            StoreError::Invalid { code, .. } => code,
            StoreError::NotFound { expired: false } => "not_found",
            StoreError::NotFound { expired: true } => "expired",
            StoreError::PreconditionFailed(_) => "precondition_failed",
            StoreError::NotAnInteger => "not_an_integer",
            StoreError::Overflow => "overflow",
            StoreError::KeyExists(_) => "key_exists",
            StoreError::WrongType => "wrong_type",
            StoreError::IdempotencyKeyReused => "idempotency_key_reused",
            StoreError::ResponseTooLarge { .. } => "response_too_large",
            StoreError::Conflict => "write_conflict",
            StoreError::Unavailable(_) => "database_unavailable",
            StoreError::TimedOut { .. } => "request_timeout",
            StoreError::ClientGone => "client_gone",
            StoreError::Script(_) => "script_error",
            StoreError::Internal(_) | StoreError::InOp { .. } | StoreError::InLine { .. } => {
                "internal_error"
            }
        }
    }

    /// The connection this came from is gone (the database restarted, or the network dropped
    /// it): it must be replaced, and a read may be tried once more on another.
    pub fn is_connection_fault(&self) -> bool {
        matches!(self.root(), StoreError::Unavailable(reason)
            if CONNECTION_FAULTS.contains(&reason.as_str()))
    }

    /// Worth running the whole write transaction (or PostgreSQL batch) again: a passing fault
    /// on PostgreSQL (unique violation, serialization failure, deadlock).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.root(), StoreError::Conflict)
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match &err {
            E::DatabaseError(K::UniqueViolation | K::SerializationFailure, _) => {
                StoreError::Conflict
            }
            // PostgreSQL's deadlock_detected (40P01), which diesel does not classify.
            E::DatabaseError(_, info) if info.message().contains("deadlock detected") => {
                StoreError::Conflict
            }
            E::DatabaseError(K::ClosedConnection, _) | E::BrokenTransactionManager => {
                StoreError::Unavailable("connection lost".into())
            }
            E::DatabaseError(_, info) => match unavailable_reason(info.message()) {
                Some(reason) => StoreError::Unavailable(reason.into()),
                None => StoreError::Internal(err.to_string()),
            },
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    /// The pool gave up waiting for a connection. Why is in the server's log (see
    /// `backend::build_pool`), not in the response: it names the database's host.
    fn from(_: r2d2::Error) -> Self {
        StoreError::Unavailable("no database connection".into())
    }
}

/// The reasons of [`StoreError::Unavailable`] that mean the connection itself is gone.
const CONNECTION_FAULTS: [&str; 3] = [
    "connection lost",
    "database is shutting down",
    "cannot connect to the database",
];

/// Database faults a client should retry later rather than treat as a bug.
fn unavailable_reason(message: &str) -> Option<&'static str> {
    let message = message.to_ascii_lowercase();
    [
        ("locked", "database is busy"),
        ("busy", "database is busy"),
        ("readonly", "database is read-only"),
        ("read-only", "database is read-only"),
        ("disk is full", "disk is full"),
        // PostgreSQL's lock table is full (many large transactions at once).
        ("out of shared memory", "database is busy"),
        ("disk i/o", "disk I/O error"),
        ("unable to open", "cannot open the database file"),
        ("terminating connection", "database is shutting down"),
        ("server closed the connection", "connection lost"),
        ("could not connect", "cannot connect to the database"),
        ("no connection to the server", "connection lost"),
    ]
    .into_iter()
    .find(|(needle, _)| message.contains(needle))
    .map(|(_, reason)| reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_messages_match_the_seed() {
        assert_eq!(
            StoreError::NotFound { expired: false }.to_string(),
            "Key not found"
        );
        assert_eq!(
            StoreError::NotFound { expired: true }.to_string(),
            "Key not found (expired)"
        );
    }

    #[test]
    fn op_errors_keep_their_kind_and_code() {
        let err = StoreError::NotAnInteger.in_op(3, Some("k"));
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.code(), "not_an_integer");
        assert_eq!(err.to_string(), "value is not an integer");
    }
}
