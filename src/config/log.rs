//! `[log]`: what the service logs and how.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive; `RUST_LOG` overrides it at run time.
    pub level: LogFilter,
    /// `json` (one object per line, for log shippers) or `text` (for people).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: LogFilter("info".into()), format: LogFormat::Json }
    }
}

/// A `tracing` filter directive (`info`, `gatewatch=debug,rdkafka=warn`), checked when it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogFilter(String);

impl LogFilter {
    /// The filter, ready for the subscriber.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        // Checked when read: a directive that parsed once parses again.
        tracing_subscriber::EnvFilter::try_new(&self.0).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    }
}

/// `log.level` is no filter directive.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a tracing filter directive ({reason})")]
pub struct BadLogFilter {
    text: String,
    reason: tracing_subscriber::filter::ParseError,
}

impl TryFrom<String> for LogFilter {
    type Error = BadLogFilter;

    fn try_from(text: String) -> Result<LogFilter, BadLogFilter> {
        match tracing_subscriber::EnvFilter::try_new(&text) {
            Ok(_) => Ok(LogFilter(text)),
            Err(reason) => Err(BadLogFilter { text, reason }),
        }
    }
}

impl From<LogFilter> for String {
    fn from(filter: LogFilter) -> String {
        filter.0
    }
}
