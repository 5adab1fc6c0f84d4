//! Why a replay fails: every input, output and option names itself in the error.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading or writing what `what` names (an option with its path, an input file, a stream).
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A Kafka call, with what it was for.
    #[error("{what}: {source}")]
    Kafka { what: String, source: KafkaError },
    /// A JSON file that does not read (the `--feeds-snapshot` manifest).
    #[error("{what}: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("--input {pattern}: {source}")]
    Glob { pattern: String, source: glob::PatternError },
    /// An option, input, sample or rule the replay cannot use; the text says which and why.
    #[error("{0}")]
    Refused(String),
    #[error("loading enrichment databases and feeds: {0}")]
    Enrich(#[from] crate::enrich::EnrichError),
    /// A replay thread panicked; the text names it.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

pub type Result<T> = std::result::Result<T, ReplayError>;

/// An I/O error about what `what` names.
pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReplayError {
    move |source| ReplayError::Io { what: what.into(), source }
}

/// A Kafka error, with what the call was for.
pub(super) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
    move |source| ReplayError::Kafka { what: what.into(), source }
}

/// Refuses with a reason.
pub(super) fn refused(reason: impl Into<String>) -> ReplayError {
    ReplayError::Refused(reason.into())
}
