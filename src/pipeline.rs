//! Pipeline: `source → parse → ecs → sink`, with `offsets` closing the loop back to the source.
//!
//! ```text
//!  adc.raw ──poll──▶ parse ──ok──▶ ecs ──▶ enrich ─────────▶ adc.enriched ─┐
//!                        └─err─▶ ecs::dead_letter_json ──▶ adc.dlq ──────┤ delivery reports
//!                       └─▶ detect (Sigma rules, correlations) ──▶ adc.alerts ──┤
//!                                                                        ▼
//!             commit ◀── store offset+1 ◀── offsets (per-partition acker, in offset order)
//! ```
//!
//! One thread polls the consumer, parses and publishes; it is the only thread that touches the
//! consumer's queue, so rebalance callbacks run there. Ackers run on the tokio runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::Consumer;
use rdkafka::Message;

use crate::baseline::stage::BaselineStage;
use crate::config::Settings;
use crate::detect::{RuleSet, Worker};
use crate::ecs::{self, SourceRef};
use crate::enrich::Enricher;
use crate::metrics::{DatasetLabels, Metrics, ReasonLabels, RuleLabels, StageLabels};
use crate::offsets::{Ledger, OffsetStore, Pending, Stall, Stop, Submitted};
use crate::parse::{Coverage, Dataset, ParseContext};
use crate::process::{Clocks, Created, Input, Processor};
use crate::sink::{publish_alert, publish_bounded, Bounds, OutputKind, Sink};
use crate::source::{self, Health, InputConsumer, SourceContext};
use arc_swap::ArcSwap;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped on request; everything delivered was committed.
    Stopped,
    /// Stopped on request, but some partitions did not drain within `pipeline.shutdown_timeout`.
    StoppedLate,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Fatal(String),
}

/// Everything the polling thread needs, built once before the first message.
pub struct Pipeline {
    settings: Settings,
    enricher: Arc<Enricher>,
    rules: Arc<ArcSwap<RuleSet>>,
    consumer: Arc<InputConsumer>,
    sink: Arc<Sink>,
    metrics: Metrics,
    health: Arc<Health>,
    stop: Stop,
    baseline: Option<BaselineStage>,
}

impl Pipeline {
    /// Creates the producer and the subscribed consumer. `runtime` runs the ackers.
    pub fn start(
        settings: Settings,
        enricher: Arc<Enricher>,
        rules: Arc<ArcSwap<RuleSet>>,
        runtime: tokio::runtime::Handle,
        metrics: Metrics,
        health: Arc<Health>,
        stop: Stop,
    ) -> Result<Pipeline, RunError> {
        let sink = Arc::new(Sink::new(&settings, &metrics, health.producer_reachable.clone())?);
        let ledger = Arc::new(
            Ledger::new(runtime, settings.pipeline.max_in_flight_per_partition, metrics.clone(), stop.clone())
                .with_dead_letters(sink.dead_letters(&settings))
                .with_stall(Stall {
                    after: settings.kafka.delivery_timeout,
                    partitions: health.stalled_deliveries.clone(),
                }),
        );
        let context = SourceContext {
            ledger,
            metrics: metrics.clone(),
            health: health.clone(),
            drain_timeout: settings.pipeline.shutdown_timeout,
            revoked: Default::default(),
        };
        let baseline = BaselineStage::new(&settings)?;
        let consumer = Arc::new(source::subscribe(&settings, context)?);
        Ok(Pipeline { settings, enricher, rules, consumer, sink, metrics, health, stop, baseline })
    }

    pub fn sink(&self) -> Arc<Sink> {
        self.sink.clone()
    }

    /// Polls until stopped. Must run on a thread of its own (it blocks).
    pub fn run(mut self) -> Result<Outcome, RunError> {
        let store: Arc<dyn OffsetStore> = self.consumer.clone();
        let ctx: ParseContext = self.settings.parse_context();
        let detect_options = self.settings.detect.options();
        // Detection state is owned per input partition, as the partition's key (the appliance) implies.
        let mut workers: HashMap<String, HashMap<i32, Worker>> = HashMap::new();
        let hints = self.settings.topic_datasets();
        // `parse_results` handles per (dataset, result), so counting allocates nothing.
        let parse_results: Vec<[Counter; 2]> = Dataset::ALL
            .iter()
            .map(|d| {
                let counter = |result| {
                    let labels = DatasetLabels { dataset: d.as_str(), result };
                    self.metrics.parse_results.get_or_create(&labels).clone()
                };
                [counter("parsed"), counter("unknown")]
            })
            .collect();
        let dlq_max = self.settings.output.dlq_max_original.as_u64() as usize;
        let bounds = Bounds::new(&self.settings);
        let poll_interval = Duration::from_millis(100);
        // `records_in` handles per input topic, so counting a record allocates nothing.
        let mut records_in: HashMap<String, Counter> = HashMap::new();
        tracing::info!(
            topics = ?self.settings.kafka.input_topics,
            metrics = %self.settings.baseline.metrics_topic,
            group = %self.settings.kafka.group_id,
            "consuming"
        );
        // One trace span per batch of records (at most a second or 1,000 records), never per record.
        let new_batch =
            || tracing::info_span!("pipeline.batch", records = tracing::field::Empty, alerts = tracing::field::Empty);
        let mut batch = new_batch();
        let (mut batch_records, mut batch_alerts, mut batch_started) = (0u64, 0u64, Instant::now());
        while !self.stop.is_stopping() {
            self.health.beat();
            if batch_records >= 1000 || (batch_records > 0 && batch_started.elapsed() >= Duration::from_secs(1)) {
                batch.record("records", batch_records as i64);
                batch.record("alerts", batch_alerts as i64);
                batch = new_batch();
                (batch_records, batch_alerts, batch_started) = (0, 0, Instant::now());
            }
            if self.baseline_housekeeping(false, &store) == Submitted::Stopping {
                break;
            }
            let polled = self.consumer.poll(poll_interval);
            // A rebalance inside that poll may have taken partitions away (and given them back): their
            // state goes before any is used again.
            let revoked =
                std::mem::take(&mut *self.consumer.context().revoked.lock().expect("never held across a panic"));
            if !revoked.is_empty() {
                forget_revoked(&revoked, &mut workers, &self.sink, bounds);
                if let Some(stage) = self.baseline.as_mut() {
                    stage.forget(&revoked, &self.metrics);
                }
            }
            let message = match polled {
                None => continue,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // Consumer errors are reported and retried by librdkafka; they are not about a record.
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
            };
            let _in_batch = batch.enter();
            batch_records += 1;
            let topic = message.topic();
            let partition = message.partition();
            let offset = message.offset();
            let payload = message.payload().unwrap_or_default();
            match records_in.get(topic) {
                Some(counter) => {
                    counter.inc();
                }
                None => {
                    let counter = self.metrics.records_in.get_or_create(&Metrics::topic(topic)).clone();
                    counter.inc();
                    records_in.insert(topic.to_owned(), counter);
                }
            };
            let received = message
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or_else(Utc::now);
            if let Some(stage) = self.baseline.as_mut().filter(|s| s.topic() == topic) {
                let context = self.consumer.context();
                match stage.handle(&message, received, &self.sink, &self.metrics, &context.ledger, &store) {
                    Ok(Submitted::Queued) => continue,
                    Ok(Submitted::Stopping) => break,
                    Err(reason) => {
                        self.stop.fail(reason);
                        break;
                    }
                }
            }
            let source = SourceRef { topic, partition, offset };
            let hint = if hints.is_empty() { None } else { hints.get(topic).copied() };
            let mut alerts = Vec::new();
            // Looked up by `&str`: the topic is copied only for a partition's first record.
            if !workers.contains_key(topic) {
                workers.insert(topic.to_owned(), HashMap::new());
            }
            let worker = workers.get_mut(topic).expect("inserted above").entry(partition).or_default();
            let rules = self.rules.load();
            let processor =
                Processor { ctx: &ctx, enricher: Some(&self.enricher), rules: &rules, detect: &detect_options };
            let now = Utc::now();
            let clocks = Clocks { received, indicators: now, created: Created::At(now) };
            let input = Input { payload, hint, origin: source.into(), appliance: None };
            let published = match processor.process(worker, input, clocks) {
                Ok(processed) => {
                    let event = &processed.event;
                    let dataset = Dataset::ALL.iter().position(|d| *d == event.dataset).unwrap_or(0);
                    parse_results[dataset][usize::from(event.coverage == Coverage::Unknown)].inc();
                    self.metrics.ioc_hits.inc_by(processed.indicator_hits as u64);
                    alerts = processed.alerts;
                    let json = serde_json::to_vec(&processed.doc).expect("a JSON map always serializes");
                    let key = event.appliance().map(str::as_bytes);
                    publish_bounded(&self.sink, bounds, OutputKind::Enriched, key, &json, source, received)
                }
                Err(error) => {
                    let reason = error.code();
                    self.metrics.parse_errors.get_or_create(&ReasonLabels { reason }).inc();
                    tracing::debug!(topic, partition, offset, %error, "record sent to the dead-letter topic");
                    let json = ecs::dead_letter_json(payload, &error, source, received, dlq_max);
                    self.sink.publish(OutputKind::DeadLetter { reason }, message.key(), &json)
                }
            };
            batch_alerts += alerts.iter().filter(|a| !a.update).count() as u64;
            let mut deliveries = Vec::with_capacity(1 + alerts.len());
            let mut failed = None;
            match published {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => failed = Some(error),
            }
            for alert in &mut alerts {
                // A suppression summary updates an alert already counted.
                if !alert.update {
                    self.metrics.alerts.get_or_create(&StageLabels { stage: alert.stage.as_str() }).inc();
                    self.metrics.rule_hits.get_or_create(&RuleLabels { rule: alert.rule_id.clone() }).inc();
                }
                match publish_alert(&self.sink, bounds, alert, source, received) {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(error) => failed = Some(error),
                }
            }
            if let Some(error) = failed {
                self.stop.fail(format!("producing the outputs of {topic}/{partition}@{offset}: {error}"));
                break;
            }
            let pending = Pending { offset, deliveries };
            if self.consumer.context().ledger.submit(topic, partition, pending, &store) == Submitted::Stopping {
                break;
            }
        }
        batch.record("records", batch_records as i64);
        batch.record("alerts", batch_alerts as i64);
        drop(batch);
        if self.stop.failure().is_none() {
            // Held metrics records and their state go out now, so the next owner need not replay them.
            self.baseline_housekeeping(true, &store);
            // Open suppression windows end with the instance: their summaries go out, as on expiry.
            for (topic, partitions) in workers.drain() {
                for (partition, worker) in partitions {
                    publish_summaries(&self.sink, bounds, &topic, partition, worker);
                }
            }
            if let Err(error) = self.sink.flush(Duration::from_secs(5)) {
                tracing::warn!(%error, "suppression summaries may not all be delivered");
            }
        }
        self.shut_down()
    }

    /// Writes the baseline state snapshots that are due.
    fn baseline_housekeeping(&mut self, all: bool, store: &Arc<dyn OffsetStore>) -> Submitted {
        let context = self.consumer.context();
        let Some(stage) = self.baseline.as_mut() else {
            return Submitted::Queued;
        };
        match stage.flush_due(all, &self.sink, &self.metrics, &context.ledger, store) {
            Ok(submitted) => submitted,
            Err(reason) => {
                self.stop.fail(reason);
                Submitted::Stopping
            }
        }
    }

    fn shut_down(self) -> Result<Outcome, RunError> {
        if let Some(reason) = self.stop.failure() {
            // Nothing past the failed record was stored, so closing the consumer commits only what was
            // delivered. The short drain lets the ackers (which hold the consumer) finish so it closes.
            self.consumer.context().ledger.drain(None, Instant::now() + Duration::from_secs(1));
            return Err(RunError::Fatal(reason.to_owned()));
        }
        let deadline = Instant::now() + self.settings.pipeline.shutdown_timeout;
        tracing::info!("stopping: draining in-flight deliveries");
        let late = self.consumer.context().ledger.drain(None, deadline);
        if let Some(reason) = self.stop.failure() {
            return Err(RunError::Fatal(reason.to_owned()));
        }
        source::commit_stored(&self.consumer);
        self.consumer.unsubscribe();
        if late.is_empty() {
            tracing::info!("stopped: every delivered record is committed");
            Ok(Outcome::Stopped)
        } else {
            tracing::warn!(?late, "stopped before these partitions drained; their tail will be replayed");
            Ok(Outcome::StoppedLate)
        }
    }
}

/// Drops the detection state of the partitions revoked since the last look: each worker publishes the
/// summaries of its open suppression windows and goes, so a partition that comes back starts afresh and
/// never counts its replayed tail twice.
fn forget_revoked(
    revoked: &[(String, i32)],
    workers: &mut HashMap<String, HashMap<i32, Worker>>,
    sink: &Sink,
    bounds: Bounds,
) {
    for (topic, partition) in revoked {
        if let Some(worker) = workers.get_mut(topic).and_then(|w| w.remove(partition)) {
            publish_summaries(sink, bounds, topic, *partition, worker);
        }
    }
}

/// Publishes what a partition's detection state still holds — the summaries of its open suppression
/// windows — when the partition leaves this instance. They update alerts already delivered, so no input
/// offset waits for them; a failure is logged, not fatal.
fn publish_summaries(sink: &Sink, bounds: Bounds, topic: &str, partition: i32, mut worker: Worker) {
    let now = Utc::now();
    for mut alert in worker.flush_all() {
        let source = SourceRef { topic, partition, offset: -1 };
        if let Err(error) = publish_alert(sink, bounds, &mut alert, source, now) {
            tracing::warn!(topic, partition, %error, alert = %alert.id, "suppression summary not published");
        }
    }
}
