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
//! Each worker thread polls a consumer of its own, parses and publishes; it is the only thread that
//! touches that consumer's queue, so its rebalance callbacks run there. Ackers run on the tokio runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use crate::baseline::stage::BaselineStage;
use crate::config::DeliveryMode;
use crate::config::Settings;
use crate::detect::{Alert, DetectOptions, RuleSet};
use crate::detect_state::{Outlets, PartitionStates};
use crate::ecs::{self, SourceRef};
use crate::enrich::Enricher;
use crate::failure::Failure;
use crate::metrics::{CapLabels, DatasetLabels, Metrics, ReasonLabels, RuleLabels, StageLabels};
use crate::offsets::{Ledger, OffsetStore, Pending, Stall, Stop, Submitted};
use crate::parse::{Coverage, Dataset, ParseContext};
use crate::process::{Clocks, Created, Input, Processor};
use crate::sink::{publish_alert, publish_bounded, Bounds, Delivery, OutputKind, Sink};
use crate::source::{self, Health, InputConsumer, SourceContext};
use crate::transaction::{Guard, Transactions};
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
    #[error(transparent)]
    Fatal(#[from] Failure),
}

/// How long one poll waits for a record.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the polling loop needs besides the pipeline, built once per run.
struct RunContext {
    store: Arc<dyn OffsetStore>,
    ctx: ParseContext,
    detect_options: DetectOptions,
    hints: HashMap<String, Dataset>,
    /// Per dataset: the `parsed` and `unknown` counters.
    parse_results: Vec<[Counter; 2]>,
    dlq_max: usize,
    bounds: Bounds,
    /// `records_in` per input topic.
    records_in: HashMap<String, Counter>,
}

/// What every worker shares: the loaded enrichment and rules, the runtime of the ackers, the metrics,
/// the health and the stop.
#[derive(Clone)]
pub struct Shared {
    pub enricher: Arc<Enricher>,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub runtime: tokio::runtime::Handle,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub stop: Stop,
}

/// The live service's workers (`pipeline.workers`, default one per core). Each has a consumer of its
/// own in the group, so the group gives each worker its own input (and metrics) partitions, and with
/// them their ledger, detection state and baselines: no record, document or state crosses threads.
/// They share one producer. Exactly-once mode runs one worker.
pub struct Workers {
    pipelines: Vec<Pipeline>,
}

impl Workers {
    /// Creates every worker's consumer (subscribed) and the producer(s).
    pub fn start(settings: &Settings, shared: &Shared) -> Result<Workers, RunError> {
        let exactly_once = settings.kafka.delivery == DeliveryMode::ExactlyOnce;
        // Exactly once runs one worker: with a transactional producer per worker, tansu gave some inputs'
        // outputs more than once across kill -9 restarts (tests/exactly_once.rs), cause not found yet.
        let count = if exactly_once { 1 } else { settings.pipeline.worker_count() };
        if exactly_once && settings.pipeline.worker_count() > 1 {
            tracing::info!(
                pipeline.workers = settings.pipeline.workers,
                "exactly-once mode processes records on one worker"
            );
        }
        // The producer is shared at least once; exactly once, the one worker makes its transactional one.
        let shared_sink = if exactly_once {
            None
        } else {
            Some(Arc::new(Sink::new(settings, &shared.metrics, shared.health.producer_reachable.clone())?))
        };
        shared.health.expect_workers(count);
        let mut pipelines = Vec::with_capacity(count);
        for worker in 0..count {
            pipelines.push(Pipeline::start(settings.clone(), shared, worker, shared_sink.clone())?);
        }
        tracing::info!(workers = count, "workers started");
        Ok(Workers { pipelines })
    }

    /// A producer of the service (for the readiness probe).
    pub fn sink(&self) -> Arc<Sink> {
        self.pipelines[0].sink.clone()
    }

    /// Runs every worker on a thread of its own until stopped; a failure of one stops all. The first
    /// failure, else `StoppedLate` if any worker's drain timed out.
    pub fn run(self) -> Result<Outcome, RunError> {
        let mut threads = Vec::with_capacity(self.pipelines.len());
        for pipeline in self.pipelines {
            let (stop, worker) = (pipeline.stop.clone(), pipeline.worker);
            let thread =
                std::thread::Builder::new().name(format!("gatewatch-poll-{worker}")).spawn(move || pipeline.run());
            match thread {
                Ok(thread) => threads.push((worker, thread)),
                Err(error) => {
                    stop.fail(Failure::Worker { worker, what: format!("cannot start its thread: {error}") });
                    break;
                }
            }
        }
        let mut outcome = Ok(Outcome::Stopped);
        for (worker, thread) in threads {
            let ended = thread.join().unwrap_or_else(|_| {
                let failure = Failure::Worker { worker, what: "its thread panicked".into() };
                Err(RunError::Fatal(failure))
            });
            outcome = match (outcome, ended) {
                (Err(first), _) => Err(first),
                (Ok(_), Err(error)) => Err(error),
                (Ok(Outcome::StoppedLate), Ok(_)) | (Ok(_), Ok(Outcome::StoppedLate)) => Ok(Outcome::StoppedLate),
                (Ok(_), Ok(Outcome::Stopped)) => Ok(Outcome::Stopped),
            };
        }
        outcome
    }
}

/// One worker: its consumer and everything its polling thread needs, built once before the first
/// message.
pub struct Pipeline {
    worker: usize,
    settings: Settings,
    enricher: Arc<Enricher>,
    rules: Arc<ArcSwap<RuleSet>>,
    consumer: Arc<InputConsumer>,
    sink: Arc<Sink>,
    metrics: Metrics,
    /// This worker's heartbeat for `/livez`.
    beat: Arc<AtomicU64>,
    stop: Stop,
    baseline: Option<BaselineStage>,
    /// Detection state per input partition, with its changelog.
    states: PartitionStates,
    /// Exactly-once mode: the open transaction.
    txn: Option<Transactions>,
}

impl Pipeline {
    /// Creates the worker's consumer (subscribed), and its producer unless given one to share.
    fn start(
        settings: Settings,
        shared: &Shared,
        worker: usize,
        sink: Option<Arc<Sink>>,
    ) -> Result<Pipeline, RunError> {
        let Shared { enricher, rules, runtime, metrics, health, stop } = shared.clone();
        let sink = match sink {
            Some(sink) => sink,
            None => Arc::new(Sink::new(&settings, &metrics, health.producer_reachable.clone())?),
        };
        let ledger = Arc::new(
            Ledger::new(runtime, settings.pipeline.max_in_flight_per_partition, metrics.clone(), stop.clone())
                .with_dead_letters(sink.dead_letters(&settings))
                .with_stall(Stall {
                    after: settings.kafka.delivery_timeout,
                    partitions: health.stalled_deliveries.clone(),
                }),
        );
        let guard = (settings.kafka.delivery == DeliveryMode::ExactlyOnce).then(|| Guard::new(sink.clone()));
        let context = SourceContext {
            worker,
            ledger,
            metrics: metrics.clone(),
            health: health.clone(),
            drain_timeout: settings.pipeline.shutdown_timeout,
            revoked: Default::default(),
            transaction: guard.clone(),
        };
        let baseline = BaselineStage::new(&settings)?;
        let states = PartitionStates::new(&settings)?;
        let txn = guard.map(|g| Transactions::new(&settings.kafka, g));
        let consumer = Arc::new(source::subscribe(&settings, context)?);
        let beat = health.poller();
        Ok(Pipeline { worker, settings, enricher, rules, consumer, sink, metrics, beat, stop, baseline, states, txn })
    }

    /// Polls until stopped. Must run on a thread of its own (it blocks).
    fn run(mut self) -> Result<Outcome, RunError> {
        let mut run = self.run_context();
        // Polled records borrow the consumer; a handle of its own leaves `self` free for their handling.
        let consumer = self.consumer.clone();
        tracing::info!(
            worker = self.worker,
            topics = ?self.settings.kafka.input_topics,
            metrics = ?self.settings.baseline.metrics_topic,
            group = %self.settings.kafka.group_id,
            "consuming"
        );
        // One trace span per batch of records (at most a second or 1,000 records), never per record.
        let worker = self.worker;
        let new_batch = || {
            tracing::info_span!(
                "pipeline.batch",
                worker,
                records = tracing::field::Empty,
                alerts = tracing::field::Empty
            )
        };
        let mut batch = new_batch();
        let (mut batch_records, mut batch_alerts, mut batch_started) = (0u64, 0u64, Instant::now());
        while !self.stop.is_stopping() {
            self.beat.store(source::unix_now(), Ordering::Relaxed);
            if batch_records >= 1000 || (batch_records > 0 && batch_started.elapsed() >= Duration::from_secs(1)) {
                batch.record("records", batch_records as i64);
                batch.record("alerts", batch_alerts as i64);
                batch = new_batch();
                self.count_capped();
                (batch_records, batch_alerts, batch_started) = (0, 0, Instant::now());
            }
            if self.baseline_housekeeping(false, &run.store) == Submitted::Stopping
                || self.detection_housekeeping(false, &run.store) == Submitted::Stopping
                || self.transaction_housekeeping(false) == Submitted::Stopping
            {
                break;
            }
            let polled = consumer.poll(POLL_INTERVAL);
            if !self.after_rebalance(run.bounds) {
                break;
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
            match self.handle(&message, &mut run) {
                Some(alerts) => batch_alerts += alerts,
                None => break,
            }
        }
        batch.record("records", batch_records as i64);
        batch.record("alerts", batch_alerts as i64);
        drop(batch);
        if self.stop.failure().is_none() {
            self.write_out_state(&run);
        }
        self.shut_down()
    }

    /// What the polling loop needs, built once per run: counters resolved ahead, so counting a
    /// record allocates nothing.
    fn run_context(&self) -> RunContext {
        // `parse_results` handles per (dataset, result).
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
        RunContext {
            store: self.consumer.clone(),
            ctx: self.settings.parse_context(),
            detect_options: self.settings.detect.options(),
            hints: self.settings.topic_datasets(),
            parse_results,
            dlq_max: self.settings.output.dlq_max_original.as_u64() as usize,
            bounds: Bounds::new(&self.settings),
            records_in: HashMap::new(),
        }
    }

    /// A rebalance inside the last poll may have taken partitions away (and given them back): their
    /// state goes before any is used again, and their open suppression windows are summarised (the
    /// next owner carries them on). False when the pipeline must stop.
    fn after_rebalance(&mut self, bounds: Bounds) -> bool {
        let revoked = std::mem::take(&mut *self.consumer.context().revoked.lock().expect("never held across a panic"));
        if let Some(txn) = self.txn.as_mut() {
            txn.after_rebalance(&self.consumer, &mut self.states);
        }
        if revoked.is_empty() {
            return true;
        }
        if let Some(Err(error)) = self.txn.as_mut().map(|t| t.begin(&self.sink)) {
            self.stop.fail(Failure::kafka("opening a transaction", error));
            return false;
        }
        for (topic, partition, summaries) in self.states.revoke(&revoked) {
            publish_summaries(&self.sink, bounds, &topic, partition, summaries);
        }
        if let Some(stage) = self.baseline.as_mut() {
            stage.forget(&revoked, &self.metrics);
        }
        true
    }

    /// One input record through the record path (or the baseline stage) to its outputs, and on to the
    /// ledger or the transaction. The number of new alerts, or `None` when the pipeline must stop.
    fn handle(&mut self, message: &BorrowedMessage<'_>, run: &mut RunContext) -> Option<u64> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let payload = message.payload().unwrap_or_default();
        match run.records_in.get(topic) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                let counter = self.metrics.records_in.get_or_create(&Metrics::topic(topic)).clone();
                counter.inc();
                run.records_in.insert(topic.to_owned(), counter);
            }
        };
        let received =
            message.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_else(Utc::now);
        if let Some(stage) = self.baseline.as_mut().filter(|s| s.topic() == topic) {
            let context = self.consumer.context();
            return match stage.handle(message, received, &self.sink, &self.metrics, &context.ledger, &run.store) {
                Ok(Submitted::Queued) => Some(0),
                Ok(Submitted::Stopping) => None,
                Err(reason) => {
                    self.stop.fail(reason);
                    None
                }
            };
        }
        let source = SourceRef { topic, partition, offset };
        let hint = if run.hints.is_empty() { None } else { run.hints.get(topic).copied() };
        if let Some(Err(error)) = self.txn.as_mut().map(|t| t.begin(&self.sink)) {
            self.stop.fail(Failure::kafka("opening a transaction", error));
            return None;
        }
        // Detection state is owned per input partition, as the partition's key (the appliance) implies.
        let worker = match self.states.worker(topic, partition, offset, &self.metrics) {
            Ok(worker) => worker,
            Err(reason) => {
                self.stop.fail(reason);
                return None;
            }
        };
        let rules = self.rules.load();
        let processor =
            Processor { ctx: &run.ctx, enricher: Some(&self.enricher), rules: &rules, detect: &run.detect_options };
        let now = Utc::now();
        let clocks = Clocks { received, indicators: now, created: Created::At(now) };
        let input = Input { payload, hint, origin: source.into(), appliance: None };
        let (published, mut alerts) = match processor.process(worker, input, clocks) {
            Ok(processed) => {
                let event = &processed.event;
                let dataset = Dataset::ALL.iter().position(|d| *d == event.dataset).unwrap_or(0);
                run.parse_results[dataset][usize::from(event.coverage == Coverage::Unknown)].inc();
                self.metrics.ioc_hits.inc_by(processed.indicator_hits as u64);
                let json = processed.doc.to_vec();
                let key = event.appliance().map(str::as_bytes);
                let published =
                    publish_bounded(&self.sink, run.bounds, OutputKind::Enriched, key, &json, source, received);
                (published, processed.alerts)
            }
            Err(error) => {
                let reason = error.code();
                self.metrics.parse_errors.get_or_create(&ReasonLabels { reason }).inc();
                tracing::debug!(topic, partition, offset, %error, "record sent to the dead-letter topic");
                let json = ecs::dead_letter_json(payload, &error, source, received, run.dlq_max);
                (self.sink.publish(OutputKind::DeadLetter { reason }, message.key(), &json), Vec::new())
            }
        };
        let new_alerts = alerts.iter().filter(|a| !a.update).count() as u64;
        let deliveries = match self.publish_alerts(published, &mut alerts, run.bounds, source, received) {
            Ok(deliveries) => deliveries,
            Err(error) => {
                self.stop.fail(Failure::kafka(format!("producing the outputs of {topic}/{partition}@{offset}"), error));
                return None;
            }
        };
        self.settle(topic, partition, Pending { offset, deliveries }, &run.store).then_some(new_alerts)
    }

    /// The record's alerts produced after its event (or dead letter); every delivery, or the first
    /// error.
    fn publish_alerts(
        &self,
        published: Result<Delivery, KafkaError>,
        alerts: &mut [Alert],
        bounds: Bounds,
        source: SourceRef<'_>,
        received: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, KafkaError> {
        let mut deliveries = Vec::with_capacity(1 + alerts.len());
        let mut failed = None;
        match published {
            Ok(delivery) => deliveries.push(delivery),
            Err(error) => failed = Some(error),
        }
        for alert in alerts {
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
        failed.map_or(Ok(deliveries), Err)
    }

    /// Hands the record's deliveries on: to the open transaction (its commit stands for every delivery
    /// and the offset), or to the partition's detection state and the ledger. False when the pipeline
    /// must stop.
    fn settle(&mut self, topic: &str, partition: i32, pending: Pending, store: &Arc<dyn OffsetStore>) -> bool {
        if let Some(txn) = self.txn.as_mut() {
            txn.add(topic, partition, pending.offset);
            return true;
        }
        let context = self.consumer.context();
        let out = Outlets { sink: &self.sink, ledger: &context.ledger, store, metrics: &self.metrics };
        match self.states.settle(topic, partition, pending, &out) {
            Ok(Submitted::Queued) => true,
            Ok(Submitted::Stopping) => false,
            Err(reason) => {
                self.stop.fail(reason);
                false
            }
        }
    }

    /// On a clean stop: held metrics records and their state go out, so the next owner need not replay
    /// them; open suppression windows are summarised (they stay open in the written state), then the
    /// state of every partition is written and its records committed.
    fn write_out_state(&mut self, run: &RunContext) {
        self.baseline_housekeeping(true, &run.store);
        if let Some(Err(error)) = self.txn.as_mut().map(|t| t.begin(&self.sink)) {
            tracing::warn!(%error, "opening the last transaction");
        }
        for (topic, partition, summaries) in self.states.open_summaries() {
            publish_summaries(&self.sink, run.bounds, &topic, partition, summaries);
        }
        self.detection_housekeeping(true, &run.store);
        self.transaction_housekeeping(true);
        if let Err(error) = self.sink.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "suppression summaries may not all be delivered");
        }
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

    /// Counts what the detection state's caps dropped since the last look.
    fn count_capped(&mut self) {
        let capped = self.states.take_capped();
        for (what, n) in
            [("correlation_group", capped.groups), ("value", capped.values), ("suppression_window", capped.windows)]
        {
            if n > 0 {
                self.metrics.detect_capped.get_or_create(&CapLabels { what }).inc_by(n);
            }
        }
    }

    /// Exactly-once mode: commits the open transaction when it is due (or now, when `all`).
    fn transaction_housekeeping(&mut self, all: bool) -> Submitted {
        let Some(txn) = self.txn.as_mut() else { return Submitted::Queued };
        if !all && !txn.due() {
            return Submitted::Queued;
        }
        match txn.commit(&self.sink, &self.consumer, &mut self.states, &self.metrics) {
            Ok(_) => Submitted::Queued,
            Err(reason) => {
                self.stop.fail(reason);
                Submitted::Stopping
            }
        }
    }

    /// Writes the detection state snapshots that are due (at-least-once mode: exactly-once writes them
    /// in each transaction).
    fn detection_housekeeping(&mut self, all: bool, store: &Arc<dyn OffsetStore>) -> Submitted {
        if self.txn.is_some() {
            return Submitted::Queued;
        }
        let context = self.consumer.context();
        let out = Outlets { sink: &self.sink, ledger: &context.ledger, store, metrics: &self.metrics };
        match self.states.flush_due(all, &out) {
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
            return Err(RunError::Fatal(reason.clone()));
        }
        let deadline = Instant::now() + self.settings.pipeline.shutdown_timeout;
        tracing::info!("stopping: draining in-flight deliveries");
        let late = self.consumer.context().ledger.drain(None, deadline);
        if let Some(reason) = self.stop.failure() {
            return Err(RunError::Fatal(reason.clone()));
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

/// Publishes the summaries of a partition's open suppression windows when the partition leaves this
/// instance. They update alerts already delivered, so no input offset waits for them; a failure is
/// logged, not fatal.
fn publish_summaries(sink: &Sink, bounds: Bounds, topic: &str, partition: i32, summaries: Vec<Alert>) {
    let now = Utc::now();
    for mut alert in summaries {
        let source = SourceRef { topic, partition, offset: -1 };
        if let Err(error) = publish_alert(sink, bounds, &mut alert, source, now) {
            tracing::warn!(topic, partition, %error, alert = %alert.id, "suppression summary not published");
        }
    }
}
