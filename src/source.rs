//! Source: the Kafka consumer group on the input topics, and what happens when partitions move.
//!
//! The consumer is polled by one dedicated thread (see `pipeline`), so its rebalance callbacks run
//! there and may block: on revocation they drain the revoked partitions' ackers (bounded by
//! `pipeline.shutdown_timeout`) and commit synchronously, so the next owner starts right after the last
//! fully delivered record. Anything not drained in time is simply not committed and is replayed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::config::Settings;
use crate::metrics::{Metrics, WorkerLabels};
use crate::offsets::Ledger;

/// What `/livez` and `/readyz` report.
#[derive(Default)]
pub struct Health {
    /// Input partitions held, per worker (each worker's consumer has its own assignment); `None` until
    /// the worker's first assignment and from a revocation until the group assigns again.
    assigned: Mutex<Vec<Option<usize>>>,
    /// The producer reaches the brokers: set by the readiness probe, cleared at once by librdkafka's
    /// "all brokers down" (the probe itself can wait behind a backlog).
    pub producer_reachable: Arc<AtomicBool>,
    /// Unix seconds of the service's start, until the first worker polls.
    started: AtomicU64,
    /// Unix seconds of each worker's last iteration of its polling loop.
    polls: Mutex<Vec<Arc<AtomicU64>>>,
    /// Components (`rules`, `feed:<name>`, `city`, `reloader`, ...) whose last (re)load failed, with
    /// the error. `/readyz` lists them; readiness itself is unaffected, since the previous version of
    /// each keeps serving.
    pub failed_reloads: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Partitions whose outputs wait out an outage (sent again until delivered).
    pub stalled_deliveries: Arc<std::sync::atomic::AtomicUsize>,
}

impl Health {
    /// Every worker has its assignment from the group — an empty one too: an instance the group leaves
    /// without partitions (more consumers than partitions) is a standby, ready to take some over, and
    /// a Deployment's rollout must not wait for it — the producer reaches the brokers and no delivery
    /// waits out an outage.
    pub fn ready(&self) -> bool {
        self.joined()
            && self.producer_reachable.load(Ordering::Relaxed)
            && self.stalled_deliveries.load(Ordering::Relaxed) == 0
    }

    /// Marks the start of the service (liveness counts from here until a worker polls).
    pub fn beat(&self) {
        self.started.store(unix_now(), Ordering::Relaxed);
    }

    /// A worker's heartbeat: the worker stores [`unix_now`] in it on every turn of its loop.
    pub fn poller(&self) -> Arc<AtomicU64> {
        let beat = Arc::new(AtomicU64::new(unix_now()));
        self.polls.lock().unwrap_or_else(PoisonError::into_inner).push(beat.clone());
        beat
    }

    /// How many workers will join the group: none counts as assigned until all have been.
    pub fn expect_workers(&self, workers: usize) {
        *self.assigned.lock().unwrap_or_else(PoisonError::into_inner) = vec![None; workers];
    }

    /// Records how many input partitions `worker` holds (`None`: its partitions were revoked and the
    /// group has not assigned again); returns how many all workers hold.
    pub fn set_assigned(&self, worker: usize, partitions: Option<usize>) -> usize {
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        if assigned.len() <= worker {
            assigned.resize(worker + 1, None);
        }
        assigned[worker] = partitions;
        assigned.iter().flatten().sum()
    }

    /// Every worker holds its assignment from the group (possibly empty).
    pub fn joined(&self) -> bool {
        let assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        !assigned.is_empty() && assigned.iter().all(Option::is_some)
    }

    /// Input partitions held by all workers while every worker has its assignment (0 while one has none).
    pub fn assigned(&self) -> usize {
        let assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        assigned.iter().copied().sum::<Option<usize>>().unwrap_or(0)
    }

    /// Records the outcome of a (re)load of `component`.
    pub fn reloaded(&self, component: &str, outcome: Result<(), &str>) {
        let mut failed = self.failed_reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(()) => failed.remove(component),
            Err(error) => failed.insert(component.to_owned(), error.to_owned()),
        };
    }

    /// The components whose last (re)load failed, comma-separated (`none` when there are none).
    pub fn failing_reloads(&self) -> String {
        let failed = self.failed_reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.is_empty() {
            return "none".into();
        }
        failed.keys().cloned().collect::<Vec<_>>().join(",")
    }

    /// Seconds since the stalest worker last went round its polling loop (since the start while none
    /// has started).
    pub fn since_last_poll(&self) -> u64 {
        let polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = polls.iter().map(|beat| beat.load(Ordering::Relaxed)).min();
        unix_now().saturating_sub(oldest.unwrap_or_else(|| self.started.load(Ordering::Relaxed)))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub struct SourceContext {
    /// Which worker polls this consumer (see `pipeline`).
    pub worker: usize,
    pub ledger: Arc<Ledger>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub drain_timeout: Duration,
    /// Partitions revoked since the polling thread last looked (it drops their per-partition state).
    pub revoked: std::sync::Mutex<Vec<(String, i32)>>,
    /// Exactly-once mode: the open transaction, aborted before partitions are given up.
    pub transaction: Option<Arc<crate::transaction::Guard>>,
}

pub type InputConsumer = BaseConsumer<SourceContext>;

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // librdkafka reports -1 for partitions it does not consume (and the internal UA partition).
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics.consumer_lag.get_or_create(&Metrics::partition(topic, *partition)).set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.metrics.rebalances.inc();
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if let Some(guard) = &self.transaction {
                    guard.abort_for_rebalance();
                }
                let keys: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let late = self.ledger.drain(Some(&keys), Instant::now() + self.drain_timeout);
                if !late.is_empty() {
                    tracing::warn!(?late, "revoked partitions not drained in time; their next owner replays");
                }
                commit_stored(consumer);
                tracing::info!(partitions = keys.len(), "partitions revoked");
                self.revoked.lock().expect("never held across a panic").extend(keys);
            }
            Rebalance::Assign(tpl) => tracing::info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0);
        // Revoked: out of the group's assignment until it assigns again (at once in a rebalance; not
        // while the consumer is out of the group).
        let held = (!matches!(rebalance, Rebalance::Revoke(_))).then_some(assigned);
        let total = self.health.set_assigned(self.worker, held);
        self.metrics.assigned_partitions.set(total as i64);
        let worker = WorkerLabels { worker: self.worker as u32 };
        self.metrics.worker_partitions.get_or_create(&worker).set(assigned as i64);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            if !is_nothing_to_commit(&error) {
                tracing::warn!(%error, "offset commit failed");
            }
            return;
        }
        for e in offsets.elements() {
            if let Offset::Offset(offset) = e.offset() {
                self.metrics.committed_offset.get_or_create(&Metrics::partition(e.topic(), e.partition())).set(offset);
            }
        }
    }
}

fn is_nothing_to_commit(error: &KafkaError) -> bool {
    matches!(error, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
}

/// Commits the stored offsets now. Nothing stored is not an error.
pub fn commit_stored(consumer: &InputConsumer) {
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        if !is_nothing_to_commit(&error) {
            tracing::warn!(%error, "synchronous offset commit failed; uncommitted records will be replayed");
        }
    }
}

/// `queued.max.messages.kbytes`: records fetched ahead per worker, in KiB.
const PREFETCH_KIB: u32 = 16_384;

/// librdkafka consumer settings; everything in [`crate::config::PROTECTED_LIBRDKAFKA_OPTIONS`] is set here.
pub fn consumer_config(settings: &Settings) -> ClientConfig {
    let k = &settings.kafka;
    let mut config = ClientConfig::new();
    let heartbeat = (k.session_timeout.as_millis() / 3).clamp(1, 3000);
    config.set("auto.commit.interval.ms", "1000").set("heartbeat.interval.ms", heartbeat.to_string());
    // Records fetched ahead, per worker (each has a consumer): librdkafka's default is 64 MiB per
    // consumer, which only adds memory here (a worker consumes ~20k records/s); `kafka.consumer_options`
    // may set it back.
    // (Bounding `queued.min.messages` as well — 10,000 records per partition, 50 ms fetch back-off —
    // saved ~35 MiB per worker but cost a third of the throughput on tansu: BENCHMARKS.md.)
    config.set("queued.max.messages.kbytes", PREFETCH_KIB.to_string());
    for (key, value) in &k.consumer_options {
        config.set(key, value);
    }
    for (key, value) in crate::kafka::connection_options(k) {
        config.set(key, value);
    }
    config
        .set("group.id", &k.group_id)
        // Exactly-once mode commits input offsets inside each output transaction instead.
        .set("enable.auto.commit", (k.delivery == crate::config::DeliveryMode::AtLeastOnce).to_string())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", k.start_from.as_librdkafka())
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", k.session_timeout.as_millis().to_string())
        .set("statistics.interval.ms", k.stats_interval.as_millis().to_string());
    config
}

/// Creates the consumer and subscribes it to the input topics.
pub fn subscribe(settings: &Settings, context: SourceContext) -> KafkaResult<InputConsumer> {
    let consumer: InputConsumer = consumer_config(settings).create_with_context(context)?;
    let mut topics: Vec<&str> = settings.kafka.input_topics.iter().map(String::as_str).collect();
    if let Some(metrics) = &settings.baseline.metrics_topic {
        topics.push(metrics);
    }
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consumer_fetches_a_bounded_amount_ahead_unless_told_otherwise() {
        let mut settings = Settings::default();
        assert_eq!(consumer_config(&settings).get("queued.max.messages.kbytes"), Some("16384"));
        settings.kafka.consumer_options.insert("queued.max.messages.kbytes".into(), "65536".into());
        assert_eq!(consumer_config(&settings).get("queued.max.messages.kbytes"), Some("65536"));
    }

    #[test]
    fn an_instance_is_assigned_once_every_worker_has_joined_and_counts_all_their_partitions() {
        let health = Health::default();
        health.producer_reachable.store(true, Ordering::Relaxed);
        health.expect_workers(2);
        assert_eq!(health.set_assigned(0, Some(3)), 3);
        // The second worker has not joined: its first assignment may still take partitions away.
        assert_eq!(health.assigned(), 0);
        assert!(!health.ready());
        assert_eq!(health.set_assigned(1, Some(0)), 3);
        assert_eq!(health.assigned(), 3);
        assert!(health.ready());
        health.set_assigned(1, Some(2));
        health.set_assigned(0, Some(1));
        assert_eq!(health.assigned(), 3);
        // A rebalance: revoked, not ready until the group assigns again.
        health.set_assigned(0, None);
        assert!(!health.ready());
        health.set_assigned(0, Some(1));
        assert!(health.ready());
    }

    #[test]
    fn an_instance_the_group_leaves_without_partitions_is_a_ready_standby() {
        let health = Health::default();
        health.producer_reachable.store(true, Ordering::Relaxed);
        health.expect_workers(2);
        assert!(!health.ready(), "not ready before the workers have their assignments");
        health.set_assigned(0, Some(0));
        assert!(!health.ready());
        health.set_assigned(1, Some(0));
        assert_eq!(health.assigned(), 0);
        assert!(health.ready(), "every worker has its (empty) assignment");
        health.producer_reachable.store(false, Ordering::Relaxed);
        assert!(!health.ready());
    }

    #[test]
    fn liveness_follows_the_stalest_worker() {
        let health = Health::default();
        health.beat();
        assert_eq!(health.since_last_poll(), 0);
        let (a, b) = (health.poller(), health.poller());
        a.store(unix_now(), Ordering::Relaxed);
        b.store(unix_now() - 400, Ordering::Relaxed);
        assert!(health.since_last_poll() >= 400);
        b.store(unix_now(), Ordering::Relaxed);
        assert!(health.since_last_poll() <= 1);
    }
}
