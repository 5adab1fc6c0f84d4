//! Why a run ends in failure: the error type of every stage boundary that can stop the service.
//!
//! A failure is fatal by design: nothing past the failed record is stored, the process exits non-zero
//! and the restart replays from the last committed offset. Per-record problems (a record that does not
//! parse, an output the brokers refuse) are no failures: they become dead letters and the stream goes on.

use std::time::Duration;

use rdkafka::error::KafkaError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A Kafka call failed in a way retrying does not mend; `doing` says what it was for.
    #[error("{doing}: {source}")]
    Kafka { doing: String, source: KafkaError },
    /// Reading a state partition back did not finish within its bound.
    #[error("reading {topic}/{partition} took longer than {key} ({timeout:?})")]
    RestoreTimeout { topic: String, partition: i32, key: &'static str, timeout: Duration },
    /// The state topic lacks the partition an input partition needs.
    #[error("{key} = {topic:?} has no partition {partition}: create it with as many partitions as {like}")]
    MissingStatePartition { key: &'static str, topic: String, partition: i32, like: &'static str },
    /// An output's delivery failed for good.
    #[error("delivery to {to} of the output of {topic}/{partition}@{offset} failed: {reason}")]
    Delivery { to: String, topic: String, partition: i32, offset: i64, reason: String },
    /// A worker thread could not be started, or panicked.
    #[error("worker {worker}: {what}")]
    Worker { worker: usize, what: String },
    /// The offset tracking of a partition ended while its records were in flight.
    #[error("offset tracking for {topic}/{partition} stopped")]
    Tracking { topic: String, partition: i32 },
}

impl Failure {
    /// A failed Kafka call, with what it was for.
    pub fn kafka(doing: impl Into<String>, source: KafkaError) -> Failure {
        Failure::Kafka { doing: doing.into(), source }
    }
}
