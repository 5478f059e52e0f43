//! Test harness: starts the real `kv-server` / `kv-sweeper` binaries on an ephemeral port over
//! a fresh database and speaks HTTP to them, and the fixtures that more than one test module
//! uses.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The database a test runs against: a fresh PostgreSQL database when `KV_TEST_POSTGRES_URL`
/// is set (`scripts/test-postgres.sh` sets it), else a fresh SQLite file. The whole suite runs
/// unchanged against either.
pub const POSTGRES_URL_VAR: &str = "KV_TEST_POSTGRES_URL";

/// The reason PostgreSQL-only tests are ignored by plain `cargo test`.
pub const NEEDS_POSTGRES: &str = "needs PostgreSQL: run scripts/test-postgres.sh";

/// A fresh, empty database for one test, dropped (PostgreSQL) or deleted (SQLite) after it.
pub struct TestDatabase {
    pub url: String,
    backend: &'static str,
    /// PostgreSQL: the cluster's admin URL and this test's database name.
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDatabase {
    /// The backend under test: PostgreSQL if `KV_TEST_POSTGRES_URL` is set, else SQLite.
    pub fn new() -> Self {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(admin_url) if !admin_url.is_empty() => TestDatabase::postgres_at(&admin_url),
            _ => TestDatabase::sqlite(),
        }
    }

    /// A SQLite file, whatever backend the suite runs against (for SQLite-only behaviour).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("kv.sqlite3").display().to_string();
        TestDatabase {
            url,
            backend: "sqlite",
            postgres: None,
            _dir: dir,
        }
    }

    /// A PostgreSQL database; panics (the test FAILS, it is not skipped) when
    /// `KV_TEST_POSTGRES_URL` is not set.
    pub fn postgres() -> Self {
        TestDatabase::postgres_at(&postgres_admin_url(POSTGRES_URL_VAR))
    }

    /// A fresh database in the cluster whose admin URL is `admin_url`.
    pub fn postgres_at(admin_url: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kvtest_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        admin_sql(admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name} at {admin_url}: {e}"));
        TestDatabase {
            url: with_database(admin_url, &name),
            backend: "postgres",
            postgres: Some((admin_url.to_owned(), name)),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `"sqlite"` or `"postgres"`, as `/_stats` and `/_health` report it.
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The URL of this (PostgreSQL) database on the cluster whose admin URL is `admin_url`: a
    /// hot standby of the cluster it was made on has it too.
    pub fn url_on(&self, admin_url: &str) -> String {
        let (_, name) = self.postgres.as_ref().expect("a PostgreSQL test database");
        with_database(admin_url, name)
    }

    /// A temp dir that lives as long as the database (the SQLite file is in it).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.postgres {
            // FORCE: a server a test leaked may still be connected.
            if let Err(e) = admin_sql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ) {
                eprintln!("could not drop test database {name}: {e}");
            }
        }
    }
}

/// The admin URL in `var`; panics with how to get one when it is not set.
pub fn postgres_admin_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("{var} is not set: this test {NEEDS_POSTGRES}"),
    }
}

/// Runs one statement on the cluster's admin database.
pub fn admin_sql(admin_url: &str, sql: &str) -> Result<(), String> {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let mut conn = diesel::PgConnection::establish(admin_url).map_err(|e| e.to_string())?;
    conn.batch_execute(sql).map_err(|e| e.to_string())
}

/// `postgres://u@h:p/admin?x=y` with the database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (scheme, rest) = admin_url.split_once("://").expect("a postgres:// URL");
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kv-server"))
}

/// kv-sweeper is built beside kv-server by `cargo test --workspace` (its package has an
/// integration test, `crates/kv-sweeper/tests/it/`, so cargo builds its binary).
pub fn sweeper_bin() -> PathBuf {
    let path = server_bin().with_file_name(format!("kv-sweeper{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A running kv-server.
pub struct Server {
    child: Child,
    pub base: String,
    pub database_url: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(db: &TestDatabase) -> Server {
        Server::start_with(&db.url, &[], &[])
    }

    /// A server whose API keys are `keys`, the lines of a key file (`rw:KEY`, `ro:KEY`, with
    /// `prefix=` scopes) written into the database's temp dir, plus any keys in `env`.
    pub fn start_with_key_file(db: &TestDatabase, keys: &str, env: &[(&str, &str)]) -> Server {
        let file = db.dir().join("keys.txt");
        std::fs::write(&file, keys).expect("write key file");
        Server::start_with(
            &db.url,
            &["--api-keys-file", &file.display().to_string()],
            env,
        )
    }

    pub fn start_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server::spawn(database_url.to_owned(), args, env)
    }

    fn spawn(database_url: String, args: Vec<String>, env: Vec<(String, String)>) -> Server {
        let mut command = Command::new(server_bin());
        command
            .args(["--bind", "127.0.0.1:0", "--database-url", &database_url])
            .args(&args)
            .env_remove("DATABASE_URL")
            .env_remove("KV_API_KEYS")
            .env_remove("KV_READ_ONLY_KEYS")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start kv-server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Logged before the address is handed over, so that a test that has the
                    // server also finds its start-up line in the log.
                    {
                        let mut log = log.lock().expect("log");
                        log.push_str(&line);
                        log.push('\n');
                    }
                    if let Some(rest) = line.split("listening on ").nth(1)
                        && rest.starts_with("http")
                    {
                        // Text or JSON log line: the URL ends at a space or a quote.
                        let url = rest
                            .split(|c: char| c.is_whitespace() || c == '"')
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = found.send(url);
                    }
                }
            });
        }
        let base = match address.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kv-server did not start; log:\n{}",
                    log.lock().expect("log")
                );
            }
        };
        Server {
            child,
            base,
            database_url,
            args,
            env,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, Duration::from_secs(30))
    }

    /// Starts the server again over the same database (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let next = Server::spawn(
            self.database_url.clone(),
            self.args.clone(),
            self.env.clone(),
        );
        *self = next;
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", &self.url(path), &[], None)
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        request("POST", &self.url(path), &[], Some(body))
    }

    pub fn put(&self, path: &str, body: &str) -> Resp {
        request("PUT", &self.url(path), &[], Some(body))
    }

    pub fn patch(&self, path: &str, body: &str) -> Resp {
        request("PATCH", &self.url(path), &[], Some(body))
    }

    pub fn delete(&self, path: &str) -> Resp {
        request("DELETE", &self.url(path), &[], None)
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        request(method, &self.url(path), headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `done` every 20 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// What a finished process wrote to stdout (lossy UTF-8).
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a finished process wrote to stderr (lossy UTF-8).
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The stdout of a process that must have exited 0, which must be UTF-8.
#[track_caller]
pub fn stdout_of_success(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

/// Runs kv-server over `database_url` with `args` (no keys, TLS files or database URL from the
/// environment) and expects it to stop at start: a failing exit status and `says` on stderr.
/// Returns its output.
#[track_caller]
pub fn refused_at_start(database_url: &str, args: &[&str], says: &str) -> Output {
    let out = Command::new(server_bin())
        .args(["--bind", "127.0.0.1:0", "--database-url", database_url])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KV_API_KEYS")
        .env_remove("KV_READ_ONLY_KEYS")
        .env_remove("KV_API_KEYS_FILE")
        .env_remove("KV_TLS_CERT")
        .env_remove("KV_TLS_KEY")
        .output()
        .expect("run kv-server");
    let stderr = stderr_of(&out);
    assert!(
        !out.status.success() && stderr.contains(says),
        "{args:?} should stop kv-server at start saying {says:?}: {out:?}"
    );
    out
}

/// Runs kv-server over `database_url` with `args` (which name `--bind`; no keys from the
/// environment) until it listens or exits; returns whether it started and its log up to a
/// moment after it listened (the start-up warnings follow the start-up line at once).
pub fn start_log(database_url: &str, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(server_bin())
        .args(["--database-url", database_url])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KV_API_KEYS")
        .env_remove("KV_READ_ONLY_KEYS")
        .env_remove("KV_API_KEYS_FILE")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kv-server");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let mut started = false;
    while let Ok(line) = received.recv_timeout(Duration::from_secs(60)) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            started = true;
            // The warnings, if any, are logged right after.
            while let Ok(line) = received.recv_timeout(Duration::from_millis(500)) {
                log.push_str(&line);
                log.push('\n');
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (started, log)
}

/// Runs `kv-sweeper --once` (plus `args`) to completion.
pub fn sweep_once(database_url: &str, args: &[&str]) -> Output {
    Command::new(sweeper_bin())
        .args(["--once", "--database-url", database_url])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run kv-sweeper")
}

/// A `kv-sweeper` running in loop mode, its stdout collected.
pub struct Sweeper {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Sweeper {
    /// Starts `kv-sweeper` (plus `args`, e.g. `--interval 1`) and waits for its first run.
    pub fn start(database_url: &str, args: &[&str]) -> Sweeper {
        let mut child = Command::new(sweeper_bin())
            .args(["--database-url", database_url])
            .args(args)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kv-sweeper");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut output = output.lock().expect("output");
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let sweeper = Sweeper { child, output };
        sweeper.wait_for_runs(1);
        sweeper
    }

    /// Everything it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// The counts of its finished runs ("Successfully deleted N expired keys.").
    pub fn deleted_per_run(&self) -> Vec<u64> {
        self.output()
            .lines()
            .filter_map(|line| {
                line.strip_prefix("Successfully deleted ")?
                    .strip_suffix(" expired keys.")?
                    .parse()
                    .ok()
            })
            .collect()
    }

    pub fn deleted_total(&self) -> u64 {
        self.deleted_per_run().iter().sum()
    }

    /// Waits until it has finished `runs` cleanups in all (panics after 60 s).
    pub fn wait_for_runs(&self, runs: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.deleted_per_run().len() < runs {
            assert!(
                Instant::now() < deadline,
                "kv-sweeper did not finish {runs} run(s); output:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?} (status {})",
                self.body, self.status
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response: the status, the JSON shape and the code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error without JSON content type"
        );
        assert!(body["error"].is_string(), "error message missing: {body}");
        assert_eq!(body["code"], code, "wrong code: {body}");
        body
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    thread_local! {
        static AGENT: ureq::Agent = agent();
    }
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let result = AGENT.with(|agent| match body {
        Some(body) => agent.run(builder.body(body.as_bytes().to_vec()).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    });
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// The `version` of a JSON body: a write's answer, a key, an event.
#[track_caller]
pub fn version(body: &Value) -> i64 {
    body["version"].as_i64().expect("version")
}

/// The store's version, as `GET /_stats` reports it.
#[track_caller]
pub fn store_version(server: &Server) -> i64 {
    version(&server.get("/_stats").expect(200))
}

/// The value of one series (`name{labels}` exactly as rendered) in a Prometheus text-format
/// scrape; `None` when the series is not there.
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a number"))
    })
}

/// The keys of a `GET /_keys` page.
pub fn keys_of(page: &Value) -> Vec<String> {
    page["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("key").to_owned())
        .collect()
}

/// One command on `/_upstash`: its result, or its error text.
pub fn redis(server: &Server, command: Value) -> Result<Value, String> {
    let body = server.post("/_upstash", &command.to_string()).json();
    match body.get("error") {
        Some(error) => Err(error.as_str().unwrap_or_default().to_owned()),
        None => Ok(body["result"].clone()),
    }
}

/// One command's result on `/_upstash` (panics on an error reply).
#[track_caller]
pub fn redis_ok(server: &Server, command: Value) -> Value {
    redis(server, command.clone()).unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// One command's error text on `/_upstash` (panics on a result).
#[track_caller]
pub fn redis_err(server: &Server, command: Value) -> String {
    match redis(server, command.clone()) {
        Err(e) => e,
        Ok(v) => panic!("{command} answered {v}"),
    }
}

/// Waits until the server has removed every member of every collection whose key is gone:
/// none queued, none without a key, in any member table.
pub fn assert_no_orphan_members(db: &TestDatabase) {
    let url: kv_core::DatabaseUrl = db.url.parse().expect("url");
    let mut conn = kv_core::Store::open_connection(&url, &kv_core::ConnectionOptions::default())
        .expect("connect");
    wait_until(Duration::from_secs(10), "no member left", || {
        kv_core::collections::garbage_queued(&mut conn).expect("queued") == 0
            && kv_core::collections::orphan_members(&mut conn).expect("orphans") == 0
    });
}

/// Stops a test cluster (by its stop/start wrapper, see scripts/lib/postgres.sh), and starts it
/// again when dropped (even if the test fails).
pub struct StoppedCluster {
    ctl: String,
    running: bool,
}

impl StoppedCluster {
    pub fn stop(ctl: String) -> StoppedCluster {
        pg_ctl(&ctl, "stop");
        StoppedCluster {
            ctl,
            running: false,
        }
    }

    pub fn start(&mut self) {
        pg_ctl(&self.ctl, "start");
        self.running = true;
    }
}

impl Drop for StoppedCluster {
    fn drop(&mut self) {
        if !self.running {
            pg_ctl(&self.ctl, "start");
        }
    }
}

pub fn pg_ctl(ctl: &str, action: &str) {
    let out = Command::new(ctl)
        .args([action, "-m", "fast"])
        .output()
        .expect("run the cluster's ctl");
    assert!(
        out.status.success(),
        "{ctl} {action} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
