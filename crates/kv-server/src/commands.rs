//! The commands that need no running server (`kv-server export | import | backup | copy`):
//! each opens the database of `--database-url` itself (migrating it, as the server does), so
//! a cron job can dump, load, back up or move a store while a server runs on it, or none.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;

use clap::Subcommand;
use kv_core::args::ImportMode;
use kv_core::transfer::{self, ExportFilter, ImportSummary};
use kv_core::{ConnectionOptions, DatabaseUrl, DbConnection, Store, StoreError, now_ms, store};

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Write every live key as NDJSON (one {"key","value","expires_at","version"} a line),
    /// from one snapshot of the store, to stdout or --output.
    Export {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only keys matching this Redis glob.
        #[arg(long = "match")]
        pattern: Option<String>,
        /// Write here instead of stdout (a new file, complete once the command exits 0).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Load NDJSON as `export` writes it (from FILE, or stdin). Every line is checked first
    /// (a bad one: nothing imported); up to 10,000 lines and 4 MiB are one transaction, all
    /// or nothing; a longer import is applied in transactions of that size, one after the
    /// other, so that a server on the same database goes on writing between them.
    Import {
        /// replace (default), skip_existing or fail_on_existing.
        #[arg(long, default_value = "replace")]
        mode: String,
        /// The file to read; `-` or none: stdin.
        file: Option<PathBuf>,
    },
    /// Copy a SQLite store to a new file while servers go on writing to it (VACUUM INTO).
    /// Restore: stop the server, copy the backup over the database file, start it again.
    Backup {
        /// The backup file to create (refused if it exists).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Copy every live key, with its value, expiry and version, from --database-url into
    /// another database (SQLite to PostgreSQL, say); the target's version counter continues
    /// above the source's. Refuses a target that holds keys unless --overwrite.
    Copy {
        /// The target database: a postgres:// URL or a SQLite file.
        #[arg(long)]
        to: DatabaseUrl,
        /// Copy into a target that holds keys (keys of the same name are replaced).
        #[arg(long)]
        overwrite: bool,
    },
}

/// What the commands take of the server's flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--database-url`.
    pub database_url: DatabaseUrl,
    /// `--sync` and `--busy-timeout-ms`.
    pub options: ConnectionOptions,
    /// `--max-body-bytes`: an imported line may be this long (and 1 KiB more).
    pub max_body_bytes: usize,
}

/// Runs `command` and prints what it did (to stderr: stdout may carry an export). The error
/// is the message to print.
pub fn run(config: &Settings, command: &Command) -> Result<(), String> {
    let options = config.options.clone();
    // Reading from a SQLite file that is not there is a typo, not an empty store (the server
    // and `import` create the file; these would only leave an empty one behind).
    if !matches!(command, Command::Import { .. })
        && let Some(file) = config.database_url.sqlite_file()
        && !file.exists()
    {
        return Err(format!("no SQLite database at {}", file.display()));
    }
    let mut conn = open(&config.database_url, &options)?;
    let now = now_ms();
    let failed = |e: StoreError| e.to_string();
    match command {
        Command::Export {
            prefix,
            pattern,
            output,
        } => {
            let filter =
                ExportFilter::parse(prefix.as_deref(), pattern.as_deref()).map_err(failed)?;
            let lines = export(&mut conn, now, &filter, output.as_ref())?;
            eprintln!("exported {lines} keys");
        }
        Command::Import { mode, file } => {
            let mode: ImportMode = mode.parse().map_err(failed)?;
            // Read from a file the transaction can read again if it has to run again.
            let spooled;
            let path = match file {
                Some(path) if path.as_os_str() != "-" => path.clone(),
                _ => {
                    spooled = spool_stdin()?;
                    spooled.path().to_owned()
                }
            };
            let max_line = config.max_body_bytes + 1024;
            let (summary, version, chunks) = import(&mut conn, &path, max_line, mode)?;
            eprintln!(
                "imported {} keys (skipped: {} existing, {} expired){}{}",
                summary.imported,
                summary.skipped_existing,
                summary.skipped_expired,
                version.map_or(String::new(), |v| format!(" at version {v}")),
                if chunks > 1 {
                    format!(" in {chunks} transactions")
                } else {
                    String::new()
                }
            );
        }
        Command::Backup { output } => {
            let bytes = kv_core::copy::backup_sqlite(&mut conn, output).map_err(failed)?;
            eprintln!("backed up to {} ({bytes} bytes)", output.display());
        }
        Command::Copy { to, overwrite } => {
            let mut target = open(to, &options)?;
            let summary =
                kv_core::copy::copy(&mut conn, &mut target, now, *overwrite).map_err(failed)?;
            eprintln!(
                "copied {} keys to {}; its version counter is at {}",
                summary.copied,
                to.redacted(),
                summary.version
            );
        }
    }
    Ok(())
}

/// Imports the file at `path` as `POST /_import` does: checked whole first, then in one
/// transaction or, when longer than one chunk, in one transaction a chunk (see
/// [`transfer::CHUNK_LINES`]). Returns what it did, the last version written and the chunks.
fn import(
    conn: &mut DbConnection,
    path: &std::path::Path,
    max_line: usize,
    mode: ImportMode,
) -> Result<(ImportSummary, Option<i64>, usize), String> {
    let failed = |e: StoreError| e.to_string();
    let unreadable = |e: io::Error| format!("{}: {e}", path.display());
    let input = BufReader::new(File::open(path).map_err(unreadable)?);
    let chunks = transfer::plan_chunks(input, max_line, |_, _| Ok(())).map_err(failed)?;
    if chunks.len() > 1 && mode == ImportMode::FailOnExisting {
        let input = BufReader::new(File::open(path).map_err(unreadable)?);
        transfer::find_existing(conn, now_ms(), input, max_line)
            .map_err(|e| format!("{e}; nothing was imported"))?;
    }
    let (mut summary, mut version) = (ImportSummary::default(), None);
    for chunk in &chunks {
        let (done, written) = store::write(conn, now_ms(), |tx| {
            let input = chunk.open(path)?;
            let done = transfer::import_chunk(tx, chunk, input, max_line, mode)?;
            Ok((done, tx.written_version()))
        })
        .map_err(|e| match chunk.first_line - 1 {
            _ if chunks.len() == 1 => e.to_string(),
            0 => format!("{e}; nothing was imported"),
            n => format!("{e}; lines 1 to {n} were imported, in transactions before it, and stay"),
        })?;
        summary += done;
        version = written.or(version);
    }
    Ok((summary, version, chunks.len()))
}

fn open(url: &DatabaseUrl, options: &ConnectionOptions) -> Result<DbConnection, String> {
    let mut conn = Store::open_connection(url, options).map_err(|e| e.to_string())?;
    Store::sync_clock(&mut conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Streams the export to `output` (a new file, written beside it first and renamed once
/// complete) or stdout.
fn export(
    conn: &mut DbConnection,
    now: i64,
    filter: &ExportFilter,
    output: Option<&PathBuf>,
) -> Result<u64, String> {
    let mut write = |out: &mut dyn Write| -> Result<u64, String> {
        let mut write_error = None;
        let lines = transfer::export(
            conn,
            now,
            filter,
            &mut |chunk| match out.write_all(&chunk) {
                Ok(()) => true,
                Err(e) => {
                    write_error = Some(e);
                    false
                }
            },
        )
        .map_err(|e| e.to_string())?;
        match write_error {
            Some(e) => Err(format!("cannot write the export: {e}")),
            None => out
                .flush()
                .map(|()| lines)
                .map_err(|e| format!("cannot write the export: {e}")),
        }
    };
    let Some(path) = output else {
        return write(&mut io::stdout().lock());
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let partial = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    let lines = write(&mut BufWriter::new(partial.as_file()))?;
    partial
        .persist(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(lines)
}

fn spool_stdin() -> Result<tempfile::NamedTempFile, String> {
    let mut spooled =
        tempfile::NamedTempFile::new().map_err(|e| format!("cannot spool stdin: {e}"))?;
    io::copy(&mut io::stdin().lock(), &mut spooled).map_err(|e| format!("reading stdin: {e}"))?;
    Ok(spooled)
}
