//! `--metrics-file`: the last cleanup run's figures in Prometheus text format, for
//! node_exporter's textfile collector. The file is replaced atomically (written beside it
//! under a hidden temporary name, then renamed), so a scrape never reads half a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::{Encoder, Gauge, Opts, Registry, TextEncoder};

/// The figures of one cleanup run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunReport {
    /// Expired keys deleted (0 when the run failed).
    pub deleted: u64,
    pub duration: Duration,
    /// When the run ended, Unix seconds.
    pub finished_at: f64,
    pub success: bool,
}

const LAST_SUCCESS: &str = "kv_sweeper_last_success_timestamp_seconds";

/// The text of the metrics file. `last_success` is when a run last succeeded (Unix seconds),
/// if ever; `database` labels every series, so two sweepers' files never collide.
pub fn render(report: &RunReport, last_success: Option<f64>, database: &str) -> String {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: f64| {
        let opts = Opts::new(name, help).const_label("database", database);
        let registered = Gauge::with_opts(opts).and_then(|gauge| {
            gauge.set(value);
            registry.register(Box::new(gauge))
        });
        if let Err(err) = registered {
            log::error!("metric {name} cannot be rendered: {err}");
        }
    };
    gauge(
        "kv_sweeper_last_run_deleted_keys",
        "Expired keys deleted by the last cleanup run.",
        report.deleted as f64,
    );
    gauge(
        "kv_sweeper_last_run_duration_seconds",
        "How long the last cleanup run took.",
        report.duration.as_secs_f64(),
    );
    gauge(
        "kv_sweeper_last_run_timestamp_seconds",
        "When the last cleanup run ended (Unix time).",
        report.finished_at,
    );
    gauge(
        "kv_sweeper_last_run_success",
        "1 if the last cleanup run succeeded, 0 if it failed.",
        if report.success { 1.0 } else { 0.0 },
    );
    if let Some(at) = last_success {
        gauge(
            LAST_SUCCESS,
            "When a cleanup run last succeeded (Unix time).",
            at,
        );
    }
    let mut out = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        log::error!("the metrics file cannot be rendered: {err}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// When a run last succeeded according to an earlier metrics file at `path` (so `--once`
/// runs from cron carry it from one run to the next).
pub fn read_last_success(path: &Path) -> Option<f64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|line| line.starts_with(LAST_SUCCESS))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
}

/// Replaces the file at `path` with `contents` atomically.
pub fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let temp = temp_path(path)?;
    let written = fs::File::create(&temp).and_then(|mut file| {
        readable_by_all(&file)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed
}

/// node_exporter usually runs as another user: the file is 0644 whatever the umask.
#[cfg(unix)]
fn readable_by_all(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn readable_by_all(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

/// `.<name>.<pid>.tmp` beside `path`: hidden and without the `.prom` ending, so the textfile
/// collector never reads it.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let temp = format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(temp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(success: bool) -> RunReport {
        RunReport {
            deleted: if success { 42 } else { 0 },
            duration: Duration::from_millis(1500),
            finished_at: 1_790_000_000.25,
            success,
        }
    }

    #[test]
    fn renders_the_last_run_in_text_format() {
        let text = render(&report(true), Some(1_790_000_000.25), "/var/lib/kv.sqlite3");
        for line in [
            "# TYPE kv_sweeper_last_run_deleted_keys gauge",
            r#"kv_sweeper_last_run_deleted_keys{database="/var/lib/kv.sqlite3"} 42"#,
            r#"kv_sweeper_last_run_duration_seconds{database="/var/lib/kv.sqlite3"} 1.5"#,
            r#"kv_sweeper_last_run_timestamp_seconds{database="/var/lib/kv.sqlite3"} 1790000000.25"#,
            r#"kv_sweeper_last_run_success{database="/var/lib/kv.sqlite3"} 1"#,
            r#"kv_sweeper_last_success_timestamp_seconds{database="/var/lib/kv.sqlite3"} 1790000000.25"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let failed = render(&report(false), None, "x");
        assert!(failed.contains(r#"kv_sweeper_last_run_success{database="x"} 0"#));
        assert!(!failed.contains(LAST_SUCCESS));
    }

    #[test]
    fn writes_atomically_and_reads_the_last_success_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("kv_sweeper.prom");
        assert_eq!(read_last_success(&path), None);
        write_atomically(&path, &render(&report(true), Some(1_790_000_000.25), "d"))
            .expect("write");
        assert_eq!(read_last_success(&path), Some(1_790_000_000.25));
        write_atomically(&path, "replaced\n").expect("rewrite");
        assert_eq!(fs::read_to_string(&path).expect("read"), "replaced\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["kv_sweeper.prom"], "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        let missing_dir = dir.path().join("nope").join("kv.prom");
        assert!(write_atomically(&missing_dir, "x").is_err());
    }
}
