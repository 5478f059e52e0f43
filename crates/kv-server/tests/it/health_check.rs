//! `kv-server --health-check`, the container health check: exit 0 when the server at
//! `--bind` is ready, 1 with the reason when it is not.

use std::process::{Command, Output};

use crate::common::{Server, TestDatabase, server_bin};

fn health_check(bind: &str) -> Output {
    Command::new(server_bin())
        .args(["--health-check", "--bind", bind])
        .env_remove("KV_BIND")
        .output()
        .expect("run kv-server --health-check")
}

#[test]
fn a_ready_server_passes_and_an_absent_one_fails_with_the_reason() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    let bind = server.base.trim_start_matches("http://").to_owned();
    let ready = health_check(&bind);
    assert!(ready.status.success(), "{ready:?}");

    // A wildcard bind is checked on loopback, as inside a container (0.0.0.0:8000).
    let port = bind.rsplit(':').next().expect("port");
    let wildcard = health_check(&format!("0.0.0.0:{port}"));
    assert!(wildcard.status.success(), "{wildcard:?}");

    drop(server);
    let gone = health_check(&bind);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("not ready") && stderr.contains(&format!("{bind}/_health/ready")),
        "{stderr}"
    );
}
