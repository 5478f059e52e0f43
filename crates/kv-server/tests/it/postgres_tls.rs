//! TLS from kvstore to PostgreSQL: libpq's `sslmode` and `sslrootcert` in the database URL,
//! against the test cluster of `scripts/test-postgres.sh`, which lets TCP clients in over TLS
//! only (`hostssl`), with a certificate for localhost and 127.0.0.1 signed by
//! `KV_TEST_POSTGRES_CA`. Whether a connection is encrypted is read off the server itself
//! (`pg_stat_ssl`).
//!
//! Ignored by plain `cargo test`; run without the cluster, they fail rather than pass.

use std::process::Command;

use crate::common::{
    Server, TestDatabase, postgres_admin_url, refused_at_start, server_bin, stderr_of, sweep_once,
};
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
    let admin = postgres_admin_url(crate::common::POSTGRES_URL_VAR);
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
fn sslmode_require_encrypts_and_sslmode_disable_is_refused_by_a_hostssl_only_server() {
    let db = TestDatabase::postgres();
    let server = Server::start_with(&with_params(&db.url, "sslmode=require"), &[], &[]);
    round_trip(&server);
    assert_eq!(ssl_use(&db).all_encrypted, Some(true));

    both_refused_at_start(
        &with_params(&db.url, "sslmode=disable"),
        "no pg_hba.conf entry for host \"127.0.0.1\"",
    );
}

/// Runs kv-server and `kv-sweeper --once` over `database_url` and expects both to stop at
/// start (exit 1) with `says` in what they print.
fn both_refused_at_start(database_url: &str, says: &str) {
    let out = refused_at_start(database_url, &[], says);
    assert!(
        out.status.code() == Some(1) && stderr_of(&out).contains("kv-server: cannot open postgres"),
        "kv-server: {out:?}"
    );

    let sweep = sweep_once(database_url, &[]);
    let stderr = String::from_utf8_lossy(&sweep.stderr);
    assert!(
        sweep.status.code() == Some(1) && stderr.contains(says),
        "kv-sweeper should say {says:?}: {sweep:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test-postgres.sh"]
fn verify_full_refuses_another_authority_another_host_name_and_a_missing_authority() {
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
    both_refused_at_start(
        &with_params(
            &db.url,
            &format!("sslmode=verify-full&sslrootcert={}", path.display()),
        ),
        "certificate verify failed",
    );

    // The right authority, but a host name the certificate was not issued for: libpq connects
    // to `hostaddr` and checks the certificate against the URL's host.
    let (_, rest) = db.url.split_once("@127.0.0.1").expect("URL with 127.0.0.1");
    let renamed = format!("postgres://postgres@db.example.invalid{rest}");
    both_refused_at_start(
        &with_params(
            &renamed,
            &format!(
                "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                test_ca()
            ),
        ),
        "does not match host name \"db.example.invalid\"",
    );
    // With the right host name the same URL connects.
    let server = Server::start_with(
        &with_params(
            &format!("postgres://postgres@localhost{rest}"),
            &format!(
                "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                test_ca()
            ),
        ),
        &[],
        &[],
    );
    round_trip(&server);

    // No authority at all: libpq looks for ~/.postgresql/root.crt, here in an empty home.
    let home = db.dir().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = Command::new(server_bin())
        .args(["--bind", "127.0.0.1:0", "--database-url"])
        .arg(with_params(&db.url, "sslmode=verify-full"))
        .env_remove("DATABASE_URL")
        .env("HOME", &home)
        .output()
        .expect("run kv-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && stderr.contains("root certificate file"),
        "kv-server without an authority: {out:?}"
    );
}
