//! Command-line flags, each with an environment variable. Parsed once in `main`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kv_core::logging::LogFormat;
use kv_core::{ConnectionOptions, DatabaseUrl, SyncMode};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kv-server",
    version,
    about = "kvstore: a key-value store over HTTP + JSON (SQLite or PostgreSQL)"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KV_BIND", default_value = "127.0.0.1:8000")]
    pub bind: String,

    /// A SQLite file path (created if missing), or a postgres:// URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "./kv.sqlite3",
        global = true
    )]
    pub database_url: DatabaseUrl,

    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "KV_WORKERS")]
    pub workers: Option<usize>,

    /// Database connections in the pool.
    #[arg(long, env = "KV_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "KV_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest `POST /_import` body; larger ones get 413. Spooled to a temp file (in
    /// $TMPDIR) as it arrives, not held in memory.
    #[arg(long, env = "KV_MAX_IMPORT_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_import_bytes: usize,

    /// Seconds the response to a write sent with an Idempotency-Key is kept: a retry with
    /// the same key within it gets that response again and writes nothing.
    #[arg(long, env = "KV_IDEMPOTENCY_RETENTION", default_value_t = 86_400)]
    pub idempotency_retention: u64,

    /// SQLite durability: `normal` survives a crash of the process, `full` also a power loss.
    #[arg(long, env = "KV_SYNC", default_value = "normal")]
    pub sync: SyncMode,

    /// How long a request waits for a busy database (SQLite write lock, pool checkout, its
    /// turn at the writer) before answering 503.
    #[arg(long, env = "KV_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub busy_timeout_ms: u64,

    /// Largest response body: a request whose answer would pass it is refused before the
    /// answer is built (422 response_too_large; on /_upstash, that command's error).
    #[arg(long, env = "KV_MAX_RESPONSE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// Seconds a request may run (0: no limit); past it, it is stopped, what it wrote is rolled
    /// back, and it is answered 503.
    #[arg(long, env = "KV_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,

    /// Milliseconds a Lua script (EVAL …) may run; past it, it is stopped, what it wrote is
    /// rolled back, and its command answers `ERR script timed out`.
    #[arg(long, env = "KV_SCRIPT_TIME_LIMIT", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub script_time_limit: u64,

    /// Bytes of memory a Lua script's state may take; past it, the script fails and what it
    /// wrote is rolled back.
    #[arg(long, env = "KV_SCRIPT_MEMORY_LIMIT", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1_048_576..=4_294_967_296))]
    pub script_memory_limit: u64,

    /// Seconds a client has to send its request's headers, and its body (plus a second per
    /// MiB of body: at least 1 MiB/s once the window has passed); a slower one is cut off.
    #[arg(long, env = "KV_CLIENT_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_timeout: u64,

    /// A host name this server answers to besides loopback addresses and `localhost`, when
    /// it listens on a loopback address (repeatable): requests naming another `Host` get 421,
    /// which stops DNS-rebinding attacks from web pages.
    #[arg(long = "allowed-host", env = "KV_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// A read-write API key (repeatable). With no keys configured, no authentication.
    #[arg(
        long = "api-key",
        env = "KV_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// A read-only API key (repeatable).
    #[arg(
        long = "read-only-key",
        env = "KV_READ_ONLY_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_only_keys: Vec<String>,

    /// Wrong API keys a client address may present a minute before its requests with a key
    /// are answered 429 for a while (0: no limit).
    #[arg(long, env = "KV_WRONG_KEY_LIMIT", default_value_t = crate::throttle::DEFAULT_LIMIT)]
    pub wrong_key_limit: u32,

    /// A file of API keys, one `rw:<key>` or `ro:<key>` a line (keeps keys out of `ps`).
    #[arg(long, env = "KV_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Allow browser requests from this origin (repeatable, or `*` for any).
    #[arg(long = "cors-origin", env = "KV_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Log lines as text, or as one JSON object per line (for log shippers).
    #[arg(long, env = "KV_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// `/_metrics` counts live and expiring keys at most once per this many seconds
    /// (0: on every scrape).
    #[arg(long, env = "KV_KEY_COUNT_INTERVAL", default_value_t = 30)]
    pub key_count_interval: u64,

    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Reloaded
    /// on SIGHUP.
    #[arg(long, env = "KV_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, or RSA / EC).
    #[arg(long, env = "KV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds the change log keeps changes for `/_watch` (a watcher further behind is told
    /// to re-list). Trimmed by the server every 10 s and by kv-sweeper.
    #[arg(long, env = "KV_CHANGES_RETENTION", default_value_t = 3600)]
    pub changes_retention: u64,

    /// The most changes the log keeps (the newest), whatever their age.
    #[arg(long, env = "KV_CHANGES_MAX_ROWS", default_value_t = 1_000_000)]
    pub changes_max_rows: u64,

    /// Remove keys at their expiry time (within a second: their `expired` events come then).
    /// `false`: expired rows go only when touched (GET, a write) or swept by kv-sweeper.
    #[arg(long, env = "KV_ACTIVE_EXPIRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub active_expiry: bool,

    /// A PostgreSQL hot standby of --database-url that serves single-key reads (repeatable;
    /// the same URL parameters as --database-url, TLS included). See docs/POSTGRES.md.
    #[arg(
        long = "read-replica",
        env = "KV_READ_REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_replicas: Vec<DatabaseUrl>,

    /// Milliseconds a read with `Kv-Min-Version` waits for a replica behind that version before
    /// the primary answers it.
    #[arg(long, env = "KV_REPLICA_WAIT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub replica_wait_ms: u64,

    /// Milliseconds a replica may be behind for reads without `Kv-Min-Version`; a replica
    /// further behind is out of rotation until it catches up.
    #[arg(long, env = "KV_REPLICA_MAX_LAG_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub replica_max_lag_ms: u64,

    /// The most `/_watch` watchers this server holds at once; more get 503 with Retry-After.
    #[arg(long, env = "KV_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,

    /// Seconds an idle `/_watch` SSE stream waits before it sends `event: progress` (keeps
    /// `Last-Event-ID` current, keeps proxies from closing the stream, and notices a client
    /// that went away). Below the shortest idle timeout between the server and its clients.
    #[arg(long, env = "KV_WATCH_PROGRESS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch_progress: u64,

    /// Do not serve: ask the kv-server listening at --bind whether it is ready
    /// (GET /_health/ready) and exit 0 if it is, 1 if not (for container health checks).
    #[arg(long)]
    pub health_check: bool,

    /// Instead of serving, run one of these on --database-url and exit.
    #[command(subcommand)]
    pub command: Option<crate::commands::Command>,
}

impl Config {
    /// The change log's retention (`--changes-retention`, `--changes-max-rows`).
    pub fn changes_retention(&self) -> kv_core::changes::Retention {
        kv_core::changes::Retention::new(self.changes_retention, self.changes_max_rows)
    }

    /// The read replicas (`--read-replica`, `--replica-wait-ms`, `--replica-max-lag-ms`).
    pub fn replicas(&self) -> kv_core::replicas::ReplicaOptions {
        kv_core::replicas::ReplicaOptions {
            urls: self.read_replicas.clone(),
            wait: Duration::from_millis(self.replica_wait_ms),
            max_lag: Duration::from_millis(self.replica_max_lag_ms),
        }
    }

    /// What the commands (`export`, `import`, `backup`, `copy`) take of the flags.
    pub fn command_settings(&self) -> crate::commands::Settings {
        crate::commands::Settings {
            database_url: self.database_url.clone(),
            options: ConnectionOptions {
                sync: self.sync,
                busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            },
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The certificate and key to serve HTTPS with, if given.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}
