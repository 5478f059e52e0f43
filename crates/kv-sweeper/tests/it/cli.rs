//! The command line, run as a binary. (This package having an integration test is also what
//! makes `cargo test --workspace` build a fresh `kv-sweeper` binary, which kv-server's
//! integration tests run.)

use std::process::Command;

fn sweeper() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv-sweeper"));
    command.env_remove("DATABASE_URL");
    command
}

#[test]
fn once_on_a_fresh_database_migrates_it_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("kv.sqlite3");
    let out = sweeper()
        .args(["--once", "--database-url"])
        .arg(&db)
        .output()
        .expect("run kv-sweeper");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Successfully deleted 0 expired keys."),
        "{out:?}"
    );
    assert!(db.exists());
}

#[test]
fn a_bad_interval_is_refused_with_usage() {
    let out = sweeper()
        .args(["--interval", "0"])
        .output()
        .expect("run kv-sweeper");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--interval"),
        "{out:?}"
    );
}
