//! A connection to either database ([`DbConnection`]), and [`with_conn!`], which runs the
//! same diesel code on either.

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

/// A connection to either backend.
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the backend's own connection: the same diesel code,
/// compiled once per backend.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::backend::connection::DbConnection::Sqlite($c) => $body,
            $crate::backend::connection::DbConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use with_conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Sqlite(_) => Backend::Sqlite,
            DbConnection::Postgres(_) => Backend::Postgres,
        }
    }
}
