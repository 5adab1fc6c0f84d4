//! Sink: output records → the idempotent Kafka producer, one [`DeliveryFuture`] per record.
//!
//! The sink never decides what is committed; it hands every delivery future to `offsets`, which
//! stores an input offset only when all outputs up to it are acknowledged.

use std::future::Future;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};

use prometheus_client::metrics::counter::Counter;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::config::{DeliveryMode, Settings};
use crate::ecs::{self, SourceRef};
use crate::metrics::Metrics;

/// Bound on each transaction call of exactly-once mode (librdkafka retries inside it).
const TRANSACTION_WAIT: Duration = Duration::from_secs(30);

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
    /// A detection state entry for `detect.state_topic`.
    DetectState,
}

/// One published record awaiting its delivery report.
pub struct Delivery {
    pub kind: OutputKind,
    pub report: Report,
    /// `records_out` for the record's topic, counted when the broker acknowledges it.
    pub delivered: Counter,
}

/// What the producer said of one record: still to come, or already received (a report awaited early,
/// before the record reached its partition's acker).
pub enum Report {
    Waiting(DeliveryFuture),
    Received(<DeliveryFuture as std::future::Future>::Output),
}

impl Delivery {
    /// Waits until `deadline` for the report without consuming it: true once it has come.
    pub fn wait_until(&mut self, deadline: std::time::Instant) -> bool {
        use std::task::{Context, Poll, Waker};
        loop {
            let Report::Waiting(future) = &mut self.report else { return true };
            // The producer's own thread resolves the future; polling it here only looks.
            if let Poll::Ready(outcome) = std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop())) {
                self.report = Report::Received(outcome);
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The producer's context: librdkafka's errors are logged as by default, and "all brokers down" clears
/// the shared reachability flag at once.
pub struct Reachability(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ClientContext for Reachability {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.0.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!("librdkafka: {}: {}", error, reason);
    }
}

pub struct Sink {
    producer: FutureProducer<Reachability>,
    enriched_topic: String,
    alerts_topic: String,
    dlq_topic: String,
    state_topic: String,
    detect_state_topic: String,
    /// `records_out` per output topic, in [`OutputKind`] order (enriched, alerts, dead letters, the
    /// baseline state, the detection state).
    delivered: [Counter; 5],
}

/// librdkafka producer settings; everything in [`crate::config::PROTECTED_LIBRDKAFKA_OPTIONS`] is set here.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    let k = &settings.kafka;
    let mut config = ClientConfig::new();
    // librdkafka's own limit stays above ours (output.max_message_bytes), which is checked first and
    // turns an oversized output into a dead letter instead of a producer error.
    let max = (settings.output.max_message_bytes.as_u64() + 65_536).max(4_194_304);
    config.set("linger.ms", "5").set("compression.type", "lz4").set("message.max.bytes", max.to_string());
    for (key, value) in &k.producer_options {
        config.set(key, value);
    }
    for (key, value) in crate::kafka::connection_options(k) {
        config.set(key, value);
    }
    // No delivery is ever given up for the brokers' trouble: librdkafka retries it, in order and
    // idempotently, until the brokers take it (an outage pauses the stream, it does not end the
    // process). `kafka.delivery_timeout` is when a waiting partition counts as stalled (see offsets).
    config.set("enable.idempotence", "true").set("acks", "all");
    if k.delivery == DeliveryMode::ExactlyOnce {
        // A transaction bounds its messages' time (librdkafka derives message.timeout.ms from
        // transaction.timeout.ms); a failed one is aborted and its records processed again.
        config.set("transactional.id", k.transactional_id());
    } else {
        config.set("message.timeout.ms", "0");
    }
    config
}

impl Sink {
    /// The producer, clearing `reachable` when librdkafka reports every broker down.
    pub fn new(
        settings: &Settings,
        metrics: &Metrics,
        reachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Sink, KafkaError> {
        let producer: FutureProducer<Reachability> =
            producer_config(settings).create_with_context(Reachability(reachable))?;
        if settings.kafka.delivery == DeliveryMode::ExactlyOnce {
            // Fences this transactional.id's previous instance and aborts what it left open.
            producer.init_transactions(TRANSACTION_WAIT)?;
        }
        let o = &settings.output;
        let counter = |topic: &str| metrics.records_out.get_or_create(&Metrics::topic(topic)).clone();
        // Without a state topic no detection state is produced; its counter stays at zero.
        let detect_state_topic = settings.detect.state_topic.clone().unwrap_or_default();
        Ok(Sink {
            producer,
            delivered: [
                counter(&o.enriched_topic),
                counter(&o.alerts_topic),
                counter(&o.dlq_topic),
                counter(&settings.baseline.state_topic),
                counter(&detect_state_topic),
            ],
            enriched_topic: o.enriched_topic.clone(),
            alerts_topic: o.alerts_topic.clone(),
            dlq_topic: o.dlq_topic.clone(),
            state_topic: settings.baseline.state_topic.clone(),
            detect_state_topic,
        })
    }

    fn index(kind: OutputKind) -> usize {
        match kind {
            OutputKind::Enriched => 0,
            OutputKind::Alert => 1,
            OutputKind::DeadLetter { .. } => 2,
            OutputKind::BaselineState => 3,
            OutputKind::DetectState => 4,
        }
    }

    pub fn topic(&self, kind: OutputKind) -> &str {
        [&self.enriched_topic, &self.alerts_topic, &self.dlq_topic, &self.state_topic, &self.detect_state_topic]
            [Self::index(kind)]
    }

    /// Enqueues one record. A full local queue is waited out (this runs on the polling thread, which may
    /// block); any other error is returned and must stop the worker.
    pub fn publish(&self, kind: OutputKind, key: Option<&[u8]>, payload: &[u8]) -> Result<Delivery, KafkaError> {
        self.publish_to(kind, None, key, Some(payload))
    }

    /// [`Sink::publish`] to an explicit partition (`None`: the partitioner's choice by key); a `None`
    /// payload is a tombstone (a compacted topic's deletion of `key`).
    pub fn publish_to(
        &self,
        kind: OutputKind,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<Delivery, KafkaError> {
        let topic = self.topic(kind);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
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
                    return Ok(Delivery { kind, report: Report::Waiting(future), delivered });
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

    /// Exactly-once mode: opens a transaction for the outputs that follow.
    pub fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.producer.begin_transaction()
    }

    /// Exactly-once mode: commits the open transaction with the input offsets it covers.
    pub fn commit_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<(), KafkaError> {
        self.producer.send_offsets_to_transaction(offsets, group, TRANSACTION_WAIT)?;
        self.producer.commit_transaction(TRANSACTION_WAIT)
    }

    /// Exactly-once mode: commits the open transaction, which covers no input offsets.
    pub fn commit_outputs(&self) -> Result<(), KafkaError> {
        self.producer.commit_transaction(TRANSACTION_WAIT)
    }

    /// Exactly-once mode: aborts the open transaction; its outputs are never read by `read_committed`
    /// consumers.
    pub fn abort_transaction(&self) -> Result<(), KafkaError> {
        self.producer.abort_transaction(TRANSACTION_WAIT)
    }

    /// A handle that dead-letters outputs the brokers refuse (see [`DeadLetters`]).
    pub fn dead_letters(&self, settings: &Settings) -> DeadLetters {
        DeadLetters {
            producer: self.producer.clone(),
            topic: self.dlq_topic.clone(),
            delivered: self.delivered[Self::index(OutputKind::DeadLetter { reason: REJECTED })].clone(),
            max_original: settings.output.dlq_max_original.as_u64() as usize,
        }
    }

    /// Asks the dead-letter topic's leader for its offsets: the readiness probe's "the producer reaches
    /// the brokers". (A metadata request is not enough: librdkafka may answer it from its cache while
    /// every broker is down.)
    pub fn reaches_broker(&self, timeout: Duration) -> bool {
        self.producer.client().fetch_watermarks(&self.dlq_topic, 0, timeout).is_ok()
    }
}

/// The dead-letter reason of an output the brokers will never take.
pub const REJECTED: &str = "output_rejected";

/// Does this producer error concern the record itself (too large, invalid, a topic this principal may
/// not write)? Such a record fails the same way after every restart: it is dead-lettered, and the stream
/// goes on. Anything else (timeouts, a fenced producer, the brokers unreachable) is not the record's fault.
pub fn rejects_record(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::PolicyViolation
        )
    )
}

/// What an output of one input record is checked against before it is produced.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `output.max_message_bytes`.
    pub max_message: usize,
    /// `output.dlq_max_original`.
    pub max_original: usize,
}

impl Bounds {
    pub fn new(settings: &Settings) -> Bounds {
        Bounds {
            max_message: settings.output.max_message_bytes.as_u64() as usize,
            max_original: settings.output.dlq_max_original.as_u64() as usize,
        }
    }
}

/// Publishes one output of the input record at `source`; an output over `output.max_message_bytes`,
/// or one the producer refuses as such ([`rejects_record`]), is replaced by a dead letter with reason
/// `output_rejected`, the error and (cut to `dlq_max_original`) the refused output.
pub fn publish_bounded(
    sink: &Sink,
    bounds: Bounds,
    kind: OutputKind,
    key: Option<&[u8]>,
    payload: &[u8],
    source: SourceRef<'_>,
    received: DateTime<Utc>,
) -> Result<Delivery, KafkaError> {
    let topic = sink.topic(kind);
    let refused = if payload.len() > bounds.max_message {
        format!(
            "the output for {topic} has {} bytes, more than output.max_message_bytes ({})",
            payload.len(),
            bounds.max_message
        )
    } else {
        match sink.publish(kind, key, payload) {
            Err(error) if rejects_record(&error) => format!("{topic} refused the output: {error}"),
            other => return other,
        }
    };
    tracing::warn!(
        topic = source.topic,
        partition = source.partition,
        offset = source.offset,
        reason = %refused,
        "output replaced by a dead letter"
    );
    let letter = ecs::dead_letter(payload, REJECTED, &refused, source, received, bounds.max_original);
    sink.publish(OutputKind::DeadLetter { reason: REJECTED }, key, &letter)
}

/// Publishes an alert (keyed by its id) through [`publish_bounded`]: evidence text gives way first, and
/// an alert that still does not fit is dead-lettered whole.
pub fn publish_alert(
    sink: &Sink,
    bounds: Bounds,
    alert: &mut crate::detect::Alert,
    source: SourceRef<'_>,
    received: DateTime<Utc>,
) -> Result<Delivery, KafkaError> {
    let json = fit_alert(&mut alert.doc, bounds.max_message)
        .unwrap_or_else(|| serde_json::to_vec(&alert.doc).expect("a JSON value always serializes"));
    publish_bounded(sink, bounds, OutputKind::Alert, Some(alert.id.as_bytes()), &json, source, received)
}

/// Cuts an alert's evidence lines until its JSON fits in `max` bytes (evidence is a sample; the count
/// stays, and `gatewatch.evidence_truncated` says it was cut). Returns the JSON, or `None` when even
/// without evidence lines it does not fit.
pub fn fit_alert(doc: &mut Json, max: usize) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(doc).expect("a JSON value always serializes");
    if json.len() <= max {
        return Some(json);
    }
    let count = doc["gatewatch"]["evidence"].as_array().map_or(0, Vec::len).max(1);
    let over = json.len() - max;
    // Each line gives up an equal share of the excess, and a little more for the marks.
    let mut budget = 0usize;
    if let Some(items) = doc["gatewatch"]["evidence"].as_array() {
        let longest = items.iter().filter_map(|e| e["original"].as_str()).map(str::len).max().unwrap_or(0);
        budget = longest.saturating_sub(over / count + 64);
    }
    if let Some(items) = doc["gatewatch"]["evidence"].as_array_mut() {
        for item in items {
            if let Some(line) = item["original"].as_str() {
                if line.len() > budget {
                    let mut cut = budget;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    item["original"] = Json::from(format!("{}…", &line[..cut]));
                }
            }
        }
    }
    doc["gatewatch"]["evidence_truncated"] = Json::Bool(true);
    let json = serde_json::to_vec(doc).expect("a JSON value always serializes");
    (json.len() <= max).then_some(json)
}

/// Dead-letters outputs that the brokers refused in their delivery report, from the acker that learns
/// of it, so a record the brokers will never take does not stop the stream.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer<Reachability>,
    topic: String,
    delivered: Counter,
    max_original: usize,
}

impl DeadLetters {
    /// Publishes the dead letter for `refused` (an output of the input record at `source`) and waits
    /// for its delivery. An error means the dead letter itself was not delivered.
    pub async fn publish(
        &self,
        refused: &[u8],
        reason: &str,
        source: SourceRef<'_>,
        key: Option<&[u8]>,
    ) -> Result<(), KafkaError> {
        let letter = ecs::dead_letter(refused, REJECTED, reason, source, Utc::now(), self.max_original);
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(&letter);
        if let Some(key) = key {
            record = record.key(key);
        }
        let future = loop {
            match self.producer.send_result(record) {
                Ok(future) => break future,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((error, _)) => return Err(error),
            }
        };
        match future.await {
            Ok(Ok(_)) => {
                self.delivered.inc();
                Ok(())
            }
            Ok(Err((error, _))) => Err(error),
            Err(_) => Err(KafkaError::Canceled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_errors_are_told_from_connection_errors() {
        for code in [RDKafkaErrorCode::MessageSizeTooLarge, RDKafkaErrorCode::TopicAuthorizationFailed] {
            assert!(rejects_record(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        for code in [RDKafkaErrorCode::MessageTimedOut, RDKafkaErrorCode::ProducerFenced, RDKafkaErrorCode::QueueFull] {
            assert!(!rejects_record(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        assert!(!rejects_record(&KafkaError::Canceled));
    }

    #[test]
    fn an_alert_too_large_loses_evidence_text_not_its_count() {
        let line = "x".repeat(64 * 1024);
        let mut doc = json!({
            "event": {"id": "a"},
            "gatewatch": {"count": 20, "evidence": (0..20).map(|_| json!({"original": line})).collect::<Vec<_>>()},
        });
        let json = fit_alert(&mut doc, 100_000).expect("fits once the lines are cut");
        assert!(json.len() <= 100_000, "{}", json.len());
        assert_eq!(doc["gatewatch"]["count"], 20);
        assert_eq!(doc["gatewatch"]["evidence"].as_array().unwrap().len(), 20);
        assert_eq!(doc["gatewatch"]["evidence_truncated"], true);
        assert!(doc["gatewatch"]["evidence"][0]["original"].as_str().unwrap().ends_with('…'));
        let mut small = json!({"event": {"id": "b"}, "gatewatch": {"evidence": [{"original": "short"}]}});
        assert!(fit_alert(&mut small, 1000).is_some());
        assert!(small["gatewatch"].get("evidence_truncated").is_none());
        let mut huge = json!({"url": {"original": "y".repeat(5000)}, "gatewatch": {"evidence": []}});
        assert!(fit_alert(&mut huge, 1000).is_none());
    }

    #[test]
    fn a_report_awaited_early_waits_for_the_broker_and_is_kept_for_the_acker() {
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("alerts", 1, 1).unwrap();
        mock.create_topic("down", 1, 1).unwrap();
        let leaderless = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        mock.topic_error("down", leaderless).unwrap();
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
        let send = |topic: &str| Delivery {
            kind: OutputKind::Alert,
            report: Report::Waiting(
                producer.send_result(FutureRecord::<[u8], [u8]>::to(topic).payload(b"{}")).unwrap(),
            ),
            delivered: Counter::default(),
        };
        let within = |d: Duration| std::time::Instant::now() + d;
        let mut first = send("alerts");
        assert!(first.wait_until(within(Duration::from_secs(10))));
        assert!(matches!(first.report, Report::Received(Ok(Ok(_)))));
        // Without a leader the report does not come: the wait ends at its deadline, the future kept.
        let mut second = send("down");
        assert!(!second.wait_until(within(Duration::from_millis(500))));
        assert!(matches!(second.report, Report::Waiting(_)));
        mock.topic_error("down", rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
        assert!(second.wait_until(within(Duration::from_secs(20))));
        assert!(matches!(second.report, Report::Received(Ok(Ok(_)))));
    }
}
