//! kv-sweeper: deletes expired keys every `--interval` seconds, or once with `--once` (for
//! cron / Windows Task Scheduler). Runs beside kv-server on the same database.

mod textfile;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kv_core::changes::{self, Retention};
use kv_core::logging::LogFormat;
use kv_core::{
    ConnectionOptions, DatabaseUrl, DbConnection, DbSetupError, Store, SyncMode, idempotency, store,
};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::textfile::RunReport;

const RULE: &str = "---------------------------------------------------";

#[derive(Debug, Parser)]
#[command(
    name = "kv-sweeper",
    version,
    about = "Deletes expired kvstore keys every N seconds, or once with --once (cron)"
)]
struct Args {
    /// A SQLite file path, or a postgres:// URL (the same as kv-server's).
    #[arg(long, env = "DATABASE_URL", default_value = "./kv.sqlite3")]
    database_url: DatabaseUrl,

    /// Seconds between cleanups in loop mode.
    #[arg(long, env = "KV_SWEEP_INTERVAL", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,

    /// Run one cleanup and exit (0 on success, 1 when the database cannot be reached).
    #[arg(long)]
    once: bool,

    /// Rows deleted per transaction, so the write lock is never held for long.
    #[arg(long, env = "KV_SWEEP_BATCH_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,

    /// How long to wait for a busy SQLite database before a batch fails.
    #[arg(long, env = "KV_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    busy_timeout_ms: u64,

    /// After each run, write its figures here in Prometheus text format (for node_exporter's
    /// textfile collector: a `*.prom` file in its directory). Replaced atomically.
    #[arg(long, env = "KV_SWEEPER_METRICS_FILE")]
    metrics_file: Option<PathBuf>,

    /// Log lines as text, or as one JSON object per line (for log shippers).
    #[arg(long, env = "KV_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// Seconds the change log keeps changes for `/_watch` (as kv-server's flag): each run
    /// trims older ones.
    #[arg(long, env = "KV_CHANGES_RETENTION", default_value_t = 3600)]
    changes_retention: u64,

    /// The most changes the log keeps (the newest), whatever their age.
    #[arg(long, env = "KV_CHANGES_MAX_ROWS", default_value_t = 1_000_000)]
    changes_max_rows: u64,
}

fn clock() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!("[hour]:[minute]:[second]"))
        .unwrap_or_default()
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Sweeper {
    args: Args,
    options: ConnectionOptions,
    conn: Option<DbConnection>,
    stop: Arc<AtomicBool>,
    /// When a run last succeeded (Unix seconds), for the metrics file.
    last_success: Option<f64>,
}

impl Sweeper {
    /// The connection, opened (and the schema migrated) on first use or after a failure.
    fn connection(&mut self) -> Result<&mut DbConnection, DbSetupError> {
        if self.conn.is_none() {
            self.conn = Some(Store::open_connection(
                &self.args.database_url,
                &self.options,
            )?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| DbSetupError::from("no connection".to_owned()))
    }

    /// One cleanup run: prints the seed's per-run lines, logs a summary and writes the
    /// metrics file (a failure to write it is logged; it does not fail the run). Returns the
    /// count, or the error.
    fn run(&mut self) -> Result<u64, String> {
        let started = Instant::now();
        let result = self.cleanup();
        let report = RunReport {
            deleted: *result.as_ref().unwrap_or(&0),
            duration: started.elapsed(),
            finished_at: unix_time(),
            success: result.is_ok(),
        };
        if report.success {
            self.last_success = Some(report.finished_at);
        }
        log::info!(
            deleted = report.deleted,
            duration_seconds = report.duration.as_secs_f64(),
            success = report.success;
            "cleanup {} in {} ms",
            match &result {
                Ok(n) => format!("deleted {n} expired keys"),
                Err(_) => "failed".to_owned(),
            },
            report.duration.as_millis()
        );
        if let Err(err) = self.write_metrics(&report) {
            log::error!("{err}");
        }
        result
    }

    fn write_metrics(&self, report: &RunReport) -> Result<(), String> {
        let Some(path) = &self.args.metrics_file else {
            return Ok(());
        };
        let text = textfile::render(
            report,
            self.last_success,
            &self.args.database_url.redacted(),
        );
        textfile::write_atomically(path, &text)
            .map_err(|e| format!("cannot write the metrics file {}: {e}", path.display()))
    }

    /// The cleanup itself, with the seed's lines.
    fn cleanup(&mut self) -> Result<u64, String> {
        println!("[{}] Running cleanup...", clock());
        let batch_size = self.args.batch_size;
        let retention = Retention::new(self.args.changes_retention, self.args.changes_max_rows);
        let stop = Arc::clone(&self.stop);
        let result = self
            .connection()
            .map_err(|e| e.to_string())
            .and_then(|conn| {
                Store::sync_clock(conn).map_err(|e| e.to_string())?;
                let now = kv_core::now_ms();
                let deleted =
                    store::sweep_expired(conn, now, batch_size, &|| stop.load(Ordering::SeqCst))
                        .map_err(|e| e.to_string())?;
                // The stored responses of Idempotency-Keys past their retention.
                let responses = idempotency::sweep_expired(conn, now).map_err(|e| e.to_string())?;
                if responses > 0 {
                    log::info!("deleted {responses} expired Idempotency-Key responses");
                }
                // The members of collections whose key is gone, a bounded batch at a time.
                let members = store::collect_garbage(conn, now, &|| stop.load(Ordering::SeqCst))
                    .map_err(|e| e.to_string())?;
                if members > 0 {
                    log::info!("removed {members} members of deleted collections");
                }
                let trimmed = changes::trim(conn, now, &retention).map_err(|e| e.to_string())?;
                if trimmed > 0 {
                    log::info!("trimmed {trimmed} changes from the change log");
                }
                Ok(deleted)
            });
        match &result {
            Ok(deleted) => println!("Successfully deleted {deleted} expired keys."),
            Err(_) => self.conn = None, // reconnect next time
        }
        result
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    kv_core::logging::init(args.log_format);
    log_configuration(&args);
    let options = ConnectionOptions {
        sync: SyncMode::Normal,
        busy_timeout: Duration::from_millis(args.busy_timeout_ms),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, sleeper) = mpsc::channel::<()>();
    {
        let stop = Arc::clone(&stop);
        if let Err(err) = ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            let _ = wake.send(());
        }) {
            log::error!("kv-sweeper: cannot install the Ctrl+C handler: {err}");
            return ExitCode::FAILURE;
        }
    }
    let once = args.once;
    let interval = Duration::from_secs(args.interval);
    let last_success = args
        .metrics_file
        .as_deref()
        .and_then(textfile::read_last_success);
    let mut sweeper = Sweeper {
        args,
        options,
        conn: None,
        stop: Arc::clone(&stop),
        last_success,
    };

    if once {
        return match sweeper.run() {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                log::error!(
                    "kv-sweeper: cleanup of {} failed: {err}",
                    sweeper.args.database_url
                );
                ExitCode::FAILURE
            }
        };
    }

    println!("{RULE}");
    println!(
        "Scheduler Started. Running cleanup every {}s.",
        interval.as_secs()
    );
    println!("Database: {}", sweeper.args.database_url);
    println!("Press Ctrl+C to stop.");
    println!("{RULE}");
    while !stop.load(Ordering::SeqCst) {
        let pause = match sweeper.run() {
            Ok(_) => interval,
            Err(err) => {
                let retry = interval.min(Duration::from_secs(5));
                log::error!(
                    "[{}] Cleanup failed: {err} (retrying in {}s)",
                    clock(),
                    retry.as_secs()
                );
                retry
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Sleeps for the pause, or until Ctrl+C / SIGTERM.
        let _ = sleeper.recv_timeout(pause);
    }
    println!("[{}] Stopped.", clock());
    ExitCode::SUCCESS
}

/// The one start-up log line: the configuration, the database URL's password redacted.
fn log_configuration(args: &Args) {
    let database = args.database_url.redacted();
    let metrics_file = args
        .metrics_file
        .as_ref()
        .map_or_else(|| "none".to_owned(), |path| path.display().to_string());
    log::info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = if args.once { "once" } else { "loop" },
        interval_s = args.interval,
        batch_size = args.batch_size,
        busy_timeout_ms = args.busy_timeout_ms,
        backend = args.database_url.backend().name(),
        database = database.as_str(),
        metrics_file = metrics_file.as_str(),
        log_format:% = args.log_format;
        "kv-sweeper starting"
    );
}
