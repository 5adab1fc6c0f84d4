//! Compacted state topics read back: the baselines' series states and the detection state are written
//! to a topic partitioned like their input, and a partition's state is read to its end when the
//! partition is assigned.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::Settings;
use crate::failure::Failure;

/// The restoring consumer's context: reaching the end of a state partition is how a restore ends, not
/// an error worth logging.
pub struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition comes as a consumption error or, from the fetcher, as a global one.
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(%error, reason, "state topic reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// A consumer for reading state partitions (assigned by hand, never committing), in a group of its own
/// named after the service's with `suffix`.
pub fn restorer(settings: &Settings, suffix: &str) -> Result<BaseConsumer<RestoreContext>, KafkaError> {
    let mut config: ClientConfig = crate::source::consumer_config(settings);
    config
        .set("group.id", format!("{}.{suffix}", settings.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // Polled only while restoring: statistics would pile up in its queue and come out as a burst of
        // log lines (lag is the input consumer's to report).
        .set("statistics.interval.ms", "0");
    config.create_with_context(RestoreContext)
}

/// Where a state partition is and what names it in the configuration (for errors).
pub struct StatePartition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The configuration key naming the state topic, e.g. `detect.state_topic`.
    pub key: &'static str,
    /// The key naming the topics it must be partitioned like.
    pub partitioned_like: &'static str,
    /// The key of the bound on the read, e.g. `detect.restore_timeout`.
    pub timeout_key: &'static str,
}

/// Reads `at` from its beginning to its end, handing each record's key and payload (`None`: a
/// tombstone) to `each`; returns how many records there were.
pub fn read_partition(
    consumer: &BaseConsumer<RestoreContext>,
    at: &StatePartition<'_>,
    timeout: Duration,
    mut each: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<usize, Failure> {
    let (topic, partition) = (at.topic, at.partition);
    let mut tpl = TopicPartitionList::new();
    let assigning = || format!("assigning {topic}/{partition}");
    tpl.add_partition_offset(topic, partition, Offset::Beginning).map_err(|e| Failure::kafka(assigning(), e))?;
    consumer.assign(&tpl).map_err(|e| Failure::kafka(assigning(), e))?;
    let deadline = Instant::now() + timeout;
    let mut records = 0usize;
    let outcome = loop {
        if Instant::now() >= deadline {
            break Err(Failure::RestoreTimeout { topic: topic.to_owned(), partition, key: at.timeout_key, timeout });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => {
                records += 1;
                each(m.key().unwrap_or_default(), m.payload());
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break Ok(records),
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownPartition))) => {
                break Err(Failure::MissingStatePartition {
                    key: at.key,
                    topic: topic.to_owned(),
                    partition,
                    like: at.partitioned_like,
                })
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "reading a state topic"),
        }
    };
    let _ = consumer.unassign();
    outcome
}
