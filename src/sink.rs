//! Sink: output records → the idempotent Kafka producer, one [`DeliveryFuture`] per record.
//!
//! The sink never decides what is committed; it hands every delivery future to `offsets`, which
//! stores an input offset only when all outputs up to it are acknowledged.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use prometheus_client::metrics::counter::Counter;

use crate::config::Settings;
use crate::metrics::Metrics;

/// What an output record is, which fixes its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Enriched,
    Alert,
    DeadLetter {
        reason: &'static str,
    },
    /// A series state for `baseline.state_topic`.
    BaselineState,
}

/// One published record awaiting its delivery report.
pub struct Delivery {
    pub kind: OutputKind,
    pub future: DeliveryFuture,
    /// `records_out` for the record's topic, counted when the broker acknowledges it.
    pub delivered: Counter,
}

pub struct Sink {
    producer: FutureProducer,
    enriched_topic: String,
    alerts_topic: String,
    dlq_topic: String,
    state_topic: String,
    /// `records_out` per output topic, in [`OutputKind`] order (enriched, alerts, dead letters, state).
    delivered: [Counter; 4],
}

/// librdkafka producer settings; everything in [`crate::config::PROTECTED_LIBRDKAFKA_OPTIONS`] is set here.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    let k = &settings.kafka;
    let mut config = ClientConfig::new();
    config.set("linger.ms", "5").set("compression.type", "lz4").set("message.max.bytes", "4194304");
    for (key, value) in &k.producer_options {
        config.set(key, value);
    }
    for (key, value) in crate::kafka::connection_options(k) {
        config.set(key, value);
    }
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", k.delivery_timeout.as_millis().to_string());
    config
}

impl Sink {
    pub fn new(settings: &Settings, metrics: &Metrics) -> Result<Sink, KafkaError> {
        let producer: FutureProducer = producer_config(settings).create()?;
        let o = &settings.output;
        let counter = |topic: &str| metrics.records_out.get_or_create(&Metrics::topic(topic)).clone();
        Ok(Sink {
            producer,
            delivered: [
                counter(&o.enriched_topic),
                counter(&o.alerts_topic),
                counter(&o.dlq_topic),
                counter(&settings.baseline.state_topic),
            ],
            enriched_topic: o.enriched_topic.clone(),
            alerts_topic: o.alerts_topic.clone(),
            dlq_topic: o.dlq_topic.clone(),
            state_topic: settings.baseline.state_topic.clone(),
        })
    }

    fn index(kind: OutputKind) -> usize {
        match kind {
            OutputKind::Enriched => 0,
            OutputKind::Alert => 1,
            OutputKind::DeadLetter { .. } => 2,
            OutputKind::BaselineState => 3,
        }
    }

    pub fn topic(&self, kind: OutputKind) -> &str {
        [&self.enriched_topic, &self.alerts_topic, &self.dlq_topic, &self.state_topic][Self::index(kind)]
    }

    /// Enqueues one record. A full local queue is waited out (this runs on the polling thread, which may
    /// block); any other error is returned and must stop the worker.
    pub fn publish(&self, kind: OutputKind, key: Option<&[u8]>, payload: &[u8]) -> Result<Delivery, KafkaError> {
        self.publish_to(kind, None, key, payload)
    }

    /// [`Sink::publish`] to an explicit partition (`None`: the partitioner's choice by key).
    pub fn publish_to(
        &self,
        kind: OutputKind,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Delivery, KafkaError> {
        let topic = self.topic(kind);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(future) => {
                    let delivered = self.delivered[Self::index(kind)].clone();
                    return Ok(Delivery { kind, future, delivered });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered or to fail.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Asks a broker for metadata: the readiness probe's "the producer reaches the broker".
    pub fn reaches_broker(&self, timeout: Duration) -> bool {
        self.producer.client().fetch_metadata(Some(&self.dlq_topic), timeout).is_ok()
    }
}
