//! kv-sweeper: deletes expired keys every `--interval` seconds, or once with `--once` (for
//! cron / Windows Task Scheduler). Runs beside kv-server on the same database.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use kv_core::backend::{self, ConnectionOptions, DbConnection, DbSetupError};
use kv_core::{DatabaseUrl, SyncMode, store};
use time::OffsetDateTime;
use time::macros::format_description;

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
}

fn clock() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!("[hour]:[minute]:[second]"))
        .unwrap_or_default()
}

struct Sweeper {
    args: Args,
    options: ConnectionOptions,
    conn: Option<DbConnection>,
    stop: Arc<AtomicBool>,
}

impl Sweeper {
    /// The connection, opened (and the schema migrated) on first use or after a failure.
    fn connection(&mut self) -> Result<&mut DbConnection, DbSetupError> {
        if self.conn.is_none() {
            let mut conn = backend::connect(&self.args.database_url, &self.options)?;
            backend::run_migrations(&mut conn)?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| DbSetupError::from("no connection".to_owned()))
    }

    /// One cleanup run: prints the seed's per-run lines. Returns the count, or the error.
    fn cleanup(&mut self) -> Result<u64, String> {
        println!("[{}] Running cleanup...", clock());
        let batch_size = self.args.batch_size;
        let stop = Arc::clone(&self.stop);
        let result = self
            .connection()
            .map_err(|e| e.to_string())
            .and_then(|conn| {
                backend::sync_clock(conn).map_err(|e| e.to_string())?;
                store::sweep_expired(conn, kv_core::now_ms(), batch_size, &|| {
                    stop.load(Ordering::SeqCst)
                })
                .map_err(|e| e.to_string())
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
            eprintln!("kv-sweeper: cannot install the Ctrl+C handler: {err}");
            return ExitCode::FAILURE;
        }
    }
    let once = args.once;
    let interval = Duration::from_secs(args.interval);
    let mut sweeper = Sweeper {
        args,
        options,
        conn: None,
        stop: Arc::clone(&stop),
    };

    if once {
        return match sweeper.cleanup() {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!(
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
        let pause = match sweeper.cleanup() {
            Ok(_) => interval,
            Err(err) => {
                let retry = interval.min(Duration::from_secs(5));
                eprintln!(
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
