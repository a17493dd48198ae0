//! Log output: `[general] log_format`, one line per event on stderr, filtered by `RUST_LOG`
//! (default `info`).
//!
//! - `text`: tracing's usual line (time, level, target, message, `key=value` fields),
//!   without colours; a message that contains line breaks has them escaped as `\n`, so a
//!   log shipper that splits on lines never cuts an event in two.
//! - `json`: one object per line with `timestamp` (RFC 3339, UTC), `level`, `target`,
//!   `message` and the event's own fields (`peer`, `pool`, `database`, ...), for log
//!   pipelines (Loki, Elasticsearch, CloudWatch, ...).
//!
//! What pgdog logs never includes passwords, query text or query parameters: clients,
//! pools and servers are named, what they send is not.

use crate::config::LogFormat;
use std::fmt;
use std::io::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the process's log subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(OneLine(io::stderr));
    let registry = tracing_subscriber::registry().with(filter_from_env("info"));
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.event_format(Json)).init(),
    }
}

/// The filter `RUST_LOG` asks for: a level (`debug`), targets with levels
/// (`pgdog::plugins=debug`), or both (`warn,pgdog::mirror=debug`); `default` when it is
/// unset or does not parse. (`Targets` rather than `EnvFilter`: the span and field
/// filters `EnvFilter` adds would link a regex engine into the executable, resident in
/// every pgdog for a feature nobody uses here.)
pub fn filter_from_env(default: &str) -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| default.parse().expect("a valid default level"))
}

/// A writer that keeps each event on one line: the formatter writes a whole event (ending
/// in a newline) per call, and line breaks before its end are escaped.
struct OneLine<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for OneLine<W> {
    type Writer = OneLineWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }
}

struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.contains(&b'\n') && !body.contains(&b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b => line.push(b),
            }
        }
        if body.len() < buf.len() {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The `json` format.
pub struct Json;

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut object = serde_json::Map::new();
        object.insert("timestamp".into(), timestamp.into());
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        object.insert(
            "message".into(),
            fields.message.take().unwrap_or_default().into(),
        );
        for (name, value) in fields.others {
            object.entry(name).or_insert(value);
        }
        // serde_json escapes every control character: the object is one line.
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

/// An event's fields, as JSON values.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            name => self.others.push((name.to_string(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, log: impl FnOnce()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(OneLine(move || sink.clone()));
        match format {
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), log),
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.event_format(Json).finish(), log)
            }
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_is_one_object_per_line_with_the_fields() {
        let out = capture(LogFormat::Json, || {
            tracing::info!(pool = "app", n = 3u64, "two\nlines \"quoted\"");
            tracing::warn!("plain");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "two\nlines \"quoted\"");
        assert_eq!(first["pool"], "app");
        assert_eq!(first["n"], 3);
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(first["target"].as_str().unwrap().starts_with("pgdog"));
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["level"], "WARN");
    }

    #[test]
    fn text_keeps_an_event_on_one_line() {
        let out = capture(LogFormat::Text, || {
            tracing::info!(pool = "app", "first\nsecond");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("first\\nsecond") && out.contains("pool=\"app\""),
            "{out}"
        );
    }
}
