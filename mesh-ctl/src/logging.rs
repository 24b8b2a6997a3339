//! The agent's logs: `tracing` records with a level and an RFC 3339 timestamp, written
//! as text, as JSON lines or to journald (with its priorities). Each structured event
//! keeps its name in the `event` field (also its message) beside its own fields, so
//! operators and tests find `event=attached` whatever the format.

use std::ffi::OsStr;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Logs one structured event: `event!(ERROR, "probe_error", error = %e)`. The name
/// becomes both the `event` field and the message; nested values (lists, objects) go in
/// as JSON text (`field = %json!(..)`).
#[macro_export]
macro_rules! event {
    ($level:ident, $name:literal $(, $($fields:tt)+)?) => {
        ::tracing::event!(
            ::tracing::Level::$level,
            message = $name,
            event = $name
            $(, $($fields)+)?
        )
    };
}

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per record on standard output.
    Text,
    /// One JSON object per line on standard output, fields at the top level.
    Json,
    /// Native journald entries: PRIORITY from the level, each field its own (EVENT=...).
    Journald,
}

impl LogFormat {
    /// journald when systemd connected standard output to the journal (it sets
    /// `JOURNAL_STREAM`), text otherwise.
    pub fn detect(journal_stream: Option<&OsStr>) -> Self {
        match journal_stream {
            Some(s) if !s.is_empty() => Self::Journald,
            _ => Self::Text,
        }
    }
}

/// The level used when neither `--log-level` nor `RUST_LOG` says.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level or `RUST_LOG` directive does not parse.
    #[error(
        "bad log filter `{filter}` (a level such as `debug`, or directives such as `mesh_ctl=debug,warn`)"
    )]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// journald's socket cannot be reached.
    #[error("cannot write to journald (choose --log-format text or json)")]
    Journald(#[source] std::io::Error),
    /// A logger was installed already.
    #[error("logging was set up already")]
    Installed(#[source] tracing_subscriber::util::TryInitError),
}

/// The filter: `--log-level` wins over `RUST_LOG`, which wins over [`DEFAULT_FILTER`].
/// Either may be a plain level or a full directive list.
pub fn filter(level: Option<&str>, rust_log: Option<&str>) -> Result<EnvFilter, LogError> {
    let chosen = level
        .or(rust_log.filter(|s| !s.trim().is_empty()))
        .unwrap_or(DEFAULT_FILTER);
    EnvFilter::try_new(chosen).map_err(|source| LogError::Filter {
        filter: chosen.to_owned(),
        source,
    })
}

/// Installs the process's logger.
pub fn init(format: LogFormat, filter: EnvFilter) -> Result<(), LogError> {
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Journald => registry
            .with(
                tracing_journald::layer()
                    .map_err(LogError::Journald)?
                    // EVENT=attached rather than F_EVENT=attached: none of our fields is
                    // a journal field's name.
                    .with_field_prefix(None),
            )
            .try_init(),
    };
    installed.map_err(LogError::Installed)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn journald_only_under_systemd() {
        assert_eq!(LogFormat::detect(None), LogFormat::Text);
        assert_eq!(LogFormat::detect(Some(OsStr::new(""))), LogFormat::Text);
        assert_eq!(
            LogFormat::detect(Some(OsStr::new("8:12345"))),
            LogFormat::Journald
        );
    }

    #[test]
    fn the_flag_wins_over_rust_log_which_wins_over_the_default() {
        assert_eq!(filter(None, None).unwrap().to_string(), "info");
        assert_eq!(filter(None, Some("  ")).unwrap().to_string(), "info");
        assert_eq!(filter(None, Some("debug")).unwrap().to_string(), "debug");
        assert_eq!(
            filter(Some("warn"), Some("debug")).unwrap().to_string(),
            "warn"
        );
        assert_eq!(
            filter(Some("mesh_ctl=trace"), None).unwrap().to_string(),
            "mesh_ctl=trace"
        );
    }

    #[test]
    fn a_bad_filter_is_refused_by_name() {
        let err = filter(Some("mesh_ctl=loud"), None).unwrap_err();
        assert!(matches!(&err, LogError::Filter { filter, .. } if filter == "mesh_ctl=loud"));
        let err = filter(None, Some("mesh_ctl=[")).unwrap_err();
        assert!(matches!(&err, LogError::Filter { filter, .. } if filter == "mesh_ctl=["));
    }

    /// Collects what a layer writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The JSON records the agent's events become under `filter`, as the lab reads them.
    fn json_records(filter: &str, emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::try_new(filter).unwrap())
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(out.clone()),
            );
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_keep_their_name_fields_and_level() {
        let records = json_records("info", || {
            crate::event!(
                ERROR,
                "probe_error",
                error = "sending: no route",
                slot = 3_u32
            );
            crate::event!(
                INFO,
                "attached",
                adopted = true,
                interfaces = %serde_json::json!(["m0", "m1"])
            );
            crate::event!(DEBUG, "chatty");
        });
        assert_eq!(records.len(), 2, "{records:?}");
        let e = &records[0];
        assert_eq!(e["level"], "ERROR");
        assert_eq!(e["event"], "probe_error");
        assert_eq!(e["message"], "probe_error");
        assert_eq!(e["error"], "sending: no route");
        assert_eq!(e["slot"], 3);
        let stamp = e["timestamp"].as_str().unwrap();
        // RFC 3339 in UTC: 2026-12-02T18:48:40.123456Z
        assert_eq!(stamp.as_bytes()[4], b'-');
        assert_eq!(stamp.as_bytes()[10], b'T');
        assert!(stamp.ends_with('Z'), "{stamp}");
        let a = &records[1];
        assert_eq!(a["level"], "INFO");
        assert_eq!(a["adopted"], true);
        assert_eq!(a["interfaces"], r#"["m0","m1"]"#);
    }

    #[test]
    fn the_level_turns_detail_up() {
        let records = json_records("debug", || crate::event!(DEBUG, "chatty"));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["level"], "DEBUG");
        assert!(json_records("warn", || crate::event!(INFO, "attached")).is_empty());
    }
}
