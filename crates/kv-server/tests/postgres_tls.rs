//! TLS from kvstore to PostgreSQL: libpq's `sslmode` and `sslrootcert` in the database URL,
//! against the test cluster of `scripts/test-postgres.sh`, which accepts TLS with a
//! certificate for localhost and 127.0.0.1 signed by `KV_TEST_POSTGRES_CA`. Whether a
//! connection is encrypted is read off the server itself (`pg_stat_ssl`).
//!
//! Ignored by plain `cargo test`; run without the cluster, they fail rather than pass.

mod common;

use std::process::Command;

use common::{Server, TestDatabase, postgres_admin_url, server_bin, sweep_once};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;

/// `database_url` with libpq parameters appended.
fn with_params(database_url: &str, params: &str) -> String {
    let sep = if database_url.contains('?') { '&' } else { '?' };
    format!("{database_url}{sep}{params}")
}

fn test_ca() -> String {
    postgres_admin_url("KV_TEST_POSTGRES_CA")
}

#[derive(QueryableByName, Debug, PartialEq)]
struct SslUse {
    #[diesel(sql_type = BigInt)]
    connections: i64,
    #[diesel(sql_type = Nullable<Bool>)]
    all_encrypted: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    any_encrypted: Option<bool>,
}

/// How many connections the cluster has to the database of `db`, and whether they use TLS, as
/// the server sees them (asked over a connection of the test's own, not counted).
fn ssl_use(db: &TestDatabase) -> SslUse {
    let admin = postgres_admin_url(common::POSTGRES_URL_VAR);
    let name = db
        .url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name");
    let mut conn = PgConnection::establish(&admin).expect("admin connection");
    diesel::sql_query(
        "SELECT count(*) AS connections, bool_and(s.ssl) AS all_encrypted, \
                bool_or(s.ssl) AS any_encrypted \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result(&mut conn)
    .expect("pg_stat_ssl")
}

/// A set, an incr and a get through `server`: it works over whatever connections it has.
fn round_trip(server: &Server) {
    server.put("/greeting", r#"{"value":"hello"}"#).expect(201);
    server.post("/hits/incr", "").expect(200);
    let got = server.get("/greeting").expect(200);
    assert_eq!(got["value"], json!("hello"));
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn verify_full_with_the_servers_authority_connects_every_pool_connection_over_tls() {
    let db = TestDatabase::postgres();
    let url = with_params(
        &db.url,
        &format!("sslmode=verify-full&sslrootcert={}", test_ca()),
    );
    let server = Server::start_with(&url, &[], &[]);
    round_trip(&server);
    let used = ssl_use(&db);
    assert!(
        used.connections >= 2,
        "reader and writer connections: {used:?}"
    );
    assert_eq!(used.all_encrypted, Some(true), "{used:?}");

    // The sweeper takes the same URL.
    let sweep = sweep_once(&url, &[]);
    assert!(
        sweep.status.success(),
        "kv-sweeper --once over TLS: {sweep:?}"
    );
    assert!(
        String::from_utf8_lossy(&sweep.stdout).contains("Successfully deleted 0 expired keys."),
        "{sweep:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn sslmode_require_encrypts_and_sslmode_disable_does_not() {
    let db = TestDatabase::postgres();
    let server = Server::start_with(&with_params(&db.url, "sslmode=require"), &[], &[]);
    round_trip(&server);
    assert_eq!(ssl_use(&db).all_encrypted, Some(true));

    // A database of its own, so that no connection of the server above is counted.
    let db = TestDatabase::postgres();
    let server = Server::start_with(&with_params(&db.url, "sslmode=disable"), &[], &[]);
    round_trip(&server);
    let used = ssl_use(&db);
    assert!(used.connections >= 1, "{used:?}");
    assert_eq!(used.any_encrypted, Some(false), "{used:?}");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn a_server_certificate_from_another_authority_stops_both_binaries_at_start() {
    let db = TestDatabase::postgres();
    // An authority that did not sign the cluster's certificate.
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "someone else's CA");
    let other_ca = params.self_signed(&key).expect("CA certificate");
    let path = db.dir().join("other-ca.pem");
    std::fs::write(&path, other_ca.pem()).expect("write CA");
    let url = with_params(
        &db.url,
        &format!("sslmode=verify-full&sslrootcert={}", path.display()),
    );

    let out = Command::new(server_bin())
        .args(["--bind", "127.0.0.1:0", "--database-url", &url])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run kv-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("certificate verify failed"),
        "kv-server: {out:?}"
    );

    let sweep = sweep_once(&url, &[]);
    let stderr = String::from_utf8_lossy(&sweep.stderr);
    assert!(
        sweep.status.code() == Some(1) && stderr.contains("certificate verify failed"),
        "kv-sweeper: {sweep:?}"
    );
}
