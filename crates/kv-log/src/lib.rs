//! Logging for kvstore's binaries: `env_logger` on stderr (level from `RUST_LOG`, default
//! `info`), as human-readable text or as one JSON object per line for log shippers
//! (`--log-format json`, env `KV_LOG_FORMAT`).
//!
//! Structured fields given with `log`'s key-value syntax (`log::info!(deleted = n; "…")`)
//! become `key=value` after the message in text, and top-level fields in JSON.

use std::fmt;
use std::io::{self, Write};

use env_logger::fmt::Formatter;
use log::Record;
use log::kv::{self, Key, VisitSource, VisitValue};
use serde_json::Value;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[<time> <LEVEL> <target>] <message> key=value…`
    #[default]
    Text,
    /// `{"ts":…,"level":…,"target":…,"msg":…,<fields>…}`, one object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the logger for the process. With `Json`, panics are logged as JSON too.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => {
            builder.format_key_values(text_fields);
        }
        LogFormat::Json => {
            builder.write_style(env_logger::WriteStyle::Never).format(
                |buf: &mut Formatter, record: &Record<'_>| {
                    let line = json_line(&buf.timestamp_millis().to_string(), record);
                    writeln!(buf, "{line}")
                },
            );
            std::panic::set_hook(Box::new(|info| {
                log::error!(target: "panic", "{info}");
            }));
        }
    }
    builder.init();
}

/// Fields after a text message: ` key=value`, the value quoted when it holds a space, a quote
/// or nothing, so a line splits back into its fields.
fn text_fields(buf: &mut Formatter, fields: &dyn kv::Source) -> io::Result<()> {
    struct Text<'a>(&'a mut Formatter);
    impl<'kvs> VisitSource<'kvs> for Text<'_> {
        fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            let value = value.to_string();
            if value.is_empty() || value.contains([' ', '"', '=']) {
                write!(self.0, " {key}={value:?}")?;
            } else {
                write!(self.0, " {key}={value}")?;
            }
            Ok(())
        }
    }
    fields.visit(&mut Text(buf)).map_err(io::Error::other)
}

/// One log record as a JSON object: `ts`, `level`, `target`, `msg`, then the record's fields
/// in the order given (numbers and booleans keep their type; a field whose name is already
/// taken is dropped).
pub fn json_line(ts: &str, record: &Record<'_>) -> String {
    let mut fields = JsonFields(vec![
        ("ts".to_owned(), ts.into()),
        ("level".to_owned(), record.level().as_str().into()),
        ("target".to_owned(), record.target().into()),
        ("msg".to_owned(), record.args().to_string().into()),
    ]);
    if let Err(err) = record.key_values().visit(&mut fields) {
        fields.push("fields_error", err.to_string().into());
    }
    let mut line = String::from("{");
    for (i, (key, value)) in fields.0.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&Value::from(key.as_str()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

struct JsonFields(Vec<(String, Value)>);

impl JsonFields {
    fn push(&mut self, key: &str, value: Value) {
        if self.0.iter().all(|(k, _)| k != key) {
            self.0.push((key.to_owned(), value));
        }
    }
}

impl<'kvs> VisitSource<'kvs> for JsonFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let mut json = JsonValue(Value::Null);
        value.visit(&mut json)?;
        self.push(key.as_str(), json.0);
        Ok(())
    }
}

/// A log field value as JSON.
struct JsonValue(Value);

impl<'v> VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
        self.0 = Value::String(value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0 = Value::Null;
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        self.0 = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    fn line(args: fmt::Arguments<'_>, fields: &[(&str, kv::Value<'_>)]) -> Value {
        let record = Record::builder()
            .level(Level::Info)
            .target("kv_test")
            .args(args)
            .key_values(&fields)
            .build();
        let text = json_line("2026-01-02T03:04:05.678Z", &record);
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with(
                r#"{"ts":"2026-01-02T03:04:05.678Z","level":"INFO","target":"kv_test","msg":"#
            ),
            "{text}"
        );
        serde_json::from_str(&text).expect("one JSON object")
    }

    #[test]
    fn a_record_is_one_json_object_with_typed_fields() {
        let path = "/var/lib/kv store";
        let got = line(
            format_args!("cleanup \"done\"\nnext line"),
            &[
                ("deleted", kv::Value::from(5u64)),
                ("offset", kv::Value::from(-3i64)),
                ("duration_seconds", kv::Value::from(0.25f64)),
                ("success", kv::Value::from(true)),
                ("database", kv::Value::from(path)),
                ("msg", kv::Value::from("shadow")),
            ],
        );
        assert_eq!(
            got,
            serde_json::json!({
                "ts": "2026-01-02T03:04:05.678Z",
                "level": "INFO",
                "target": "kv_test",
                "msg": "cleanup \"done\"\nnext line",
                "deleted": 5,
                "offset": -3,
                "duration_seconds": 0.25,
                "success": true,
                "database": "/var/lib/kv store",
            })
        );
    }

    #[test]
    fn display_fields_are_strings() {
        let addr: std::net::SocketAddr = "127.0.0.1:8000".parse().expect("addr");
        let got = line(
            format_args!("x"),
            &[("bind", kv::Value::from_display(&addr))],
        );
        assert_eq!(got["bind"], "127.0.0.1:8000");
    }

    #[test]
    fn formats_parse_from_their_names() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("yaml", false).is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
