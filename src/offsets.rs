//! Offsets: the at-least-once ledger. An input offset is stored for commit only when every output of
//! that record, and of every earlier record of its partition, has a successful delivery report.
//!
//! Each assigned partition has one acker task fed in offset order by the polling thread. The acker
//! awaits each record's delivery futures in that order and stores `offset + 1` after the last one of a
//! batch succeeds. A failed delivery stops the whole worker ([`Stop::fail`]) without storing anything
//! past the last fully delivered record, so a restart replays from there: duplicates, never gaps.
//! On revocation and shutdown, [`Ledger::drain`] closes the ackers' queues and waits (bounded) until they
//! have stored what was delivered.

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::DeliveryFuture;
use rdkafka::Message;

use crate::ecs::SourceRef;
use crate::failure::Failure;
use crate::metrics::{Metrics, ReasonLabels};
use crate::sink::{rejects_record, DeadLetters, Delivery, OutputKind, Report, REJECTED};

/// One input record's outputs, in the order they were published.
pub struct Pending {
    pub offset: i64,
    pub deliveries: Vec<Delivery>,
}

/// Why and whether the worker must stop. `fail` records the first fatal reason and cancels.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    failure: Arc<OnceLock<Failure>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A graceful stop (signal).
    pub fn request(&self) {
        self.token.cancel();
    }

    /// A fatal stop: nothing more is stored, the process exits non-zero and the restart replays.
    pub fn fail(&self, reason: Failure) {
        let _ = self.failure.set(reason);
        self.token.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.get()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

type Key = (String, i32);

struct Acker {
    queue: mpsc::Sender<Pending>,
    done: std_mpsc::Receiver<()>,
}

/// The set of running ackers, one per (topic, partition) this instance consumes.
pub struct Ledger {
    ackers: Mutex<HashMap<Key, Acker>>,
    runtime: tokio::runtime::Handle,
    capacity: usize,
    metrics: Metrics,
    stop: Stop,
    faults: Faults,
}

/// How an acker meets delivery trouble: outputs the brokers refuse for good become dead letters, and a
/// wait past the stall threshold marks the partition stalled. Without either, a refusal stops the worker
/// and a wait is only a wait.
#[derive(Clone, Default)]
struct Faults {
    dead_letters: Option<DeadLetters>,
    stall: Option<Stall>,
}

/// When a partition counts as stalled: an output waited longer than `after` for its delivery (the
/// brokers are down, a leader is missing). `partitions` counts the stalled ones, for readiness.
#[derive(Clone)]
pub struct Stall {
    pub after: std::time::Duration,
    pub partitions: Arc<std::sync::atomic::AtomicUsize>,
}

/// What submitting a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// The worker is stopping; the record was not queued and will be replayed.
    Stopping,
}

/// The consumer operations an acker needs; implemented by librdkafka consumers.
pub trait OffsetStore: Send + Sync + 'static {
    fn store(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), KafkaError>;
}

impl<X: rdkafka::consumer::ConsumerContext + 'static> OffsetStore for rdkafka::consumer::BaseConsumer<X> {
    fn store(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset))?;
        self.store_offsets(&tpl)
    }
}

impl Ledger {
    pub fn new(runtime: tokio::runtime::Handle, capacity: usize, metrics: Metrics, stop: Stop) -> Ledger {
        Ledger { ackers: Mutex::new(HashMap::new()), runtime, capacity, metrics, stop, faults: Faults::default() }
    }

    /// Counts a partition as stalled while one of its outputs waits longer than `stall.after`.
    pub fn with_stall(mut self, stall: Stall) -> Ledger {
        self.faults.stall = Some(stall);
        self
    }

    /// Outputs the brokers refuse for good ([`crate::sink::rejects_record`]) are dead-lettered through
    /// `dead_letters` and the partition goes on; without it, any failed delivery stops the worker.
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Ledger {
        self.faults.dead_letters = Some(dead_letters);
        self
    }

    /// Whether the worker is stopping (a signal or a failure).
    pub fn is_stopping(&self) -> bool {
        self.stop.is_stopping()
    }

    /// Queues a record's outputs behind the earlier records of its partition, starting the partition's
    /// acker on first use. Blocks (the polling thread may) while the partition has `capacity` records in
    /// flight, unless the worker is stopping.
    pub fn submit(&self, topic: &str, partition: i32, pending: Pending, store: &Arc<dyn OffsetStore>) -> Submitted {
        let queue = {
            let mut ackers = self.ackers.lock().expect("ledger lock is never held across a panic");
            let key = (topic.to_owned(), partition);
            ackers.entry(key).or_insert_with(|| self.spawn(topic, partition, store.clone())).queue.clone()
        };
        let mut pending = pending;
        loop {
            match queue.try_send(pending) {
                Ok(()) => return Submitted::Queued,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if self.stop.is_stopping() {
                        return Submitted::Stopping;
                    }
                    pending = back;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // An acker only closes early after a failure it already reported through `stop`.
                    self.stop.fail(Failure::Tracking { topic: topic.to_owned(), partition });
                    return Submitted::Stopping;
                }
            }
        }
    }

    fn spawn(&self, topic: &str, partition: i32, store: Arc<dyn OffsetStore>) -> Acker {
        let (queue, rx) = mpsc::channel(self.capacity);
        let (done_tx, done) = std_mpsc::channel();
        let task =
            ack(rx, topic.to_owned(), partition, store, self.metrics.clone(), self.stop.clone(), self.faults.clone());
        self.runtime.spawn(async move {
            task.await;
            let _ = done_tx.send(());
        });
        Acker { queue, done }
    }

    /// Closes the queues of the given partitions (all when `None`) and waits until their ackers have
    /// stored what was delivered, or until `deadline`. Returns the partitions that did not finish in time.
    pub fn drain(&self, partitions: Option<&[Key]>, deadline: Instant) -> Vec<Key> {
        let taken: Vec<(Key, Acker)> = {
            let mut ackers = self.ackers.lock().expect("ledger lock is never held across a panic");
            match partitions {
                None => ackers.drain().collect(),
                Some(keys) => keys.iter().filter_map(|k| ackers.remove_entry(k)).collect(),
            }
        };
        let mut late = Vec::new();
        for (key, acker) in taken {
            drop(acker.queue);
            let left = deadline.saturating_duration_since(Instant::now());
            if acker.done.recv_timeout(left).is_err() {
                late.push(key);
            }
        }
        late
    }
}

/// One partition's acker: awaits deliveries in offset order and stores progress after each batch.
/// Waits for one delivery report: the failure, if any. Past `stall.after` the partition counts as
/// stalled until the report comes: librdkafka keeps trying, the partition waits, nothing past this
/// record is stored, and readiness is off until it is delivered.
async fn delivery_report(
    report: Report,
    stall: Option<&Stall>,
    source: SourceRef<'_>,
) -> Option<(KafkaError, Option<OwnedMessage>)> {
    let SourceRef { topic, partition, offset } = source;
    let mut future = match report {
        Report::Waiting(future) => future,
        Report::Received(outcome) => return failure(outcome),
    };
    let outcome = match stall {
        None => future.await,
        Some(stall) => match tokio::time::timeout(stall.after, &mut future).await {
            Ok(outcome) => outcome,
            Err(_) => {
                stall.partitions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%topic, partition, offset, "output not delivered yet: partition stalled");
                let outcome = future.await;
                stall.partitions.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(%topic, partition, offset, "partition delivering again");
                outcome
            }
        },
    };
    failure(outcome)
}

/// The failure a delivery report tells of, if any.
fn failure(outcome: <DeliveryFuture as std::future::Future>::Output) -> Option<(KafkaError, Option<OwnedMessage>)> {
    match outcome {
        Ok(Ok(_)) => None,
        Ok(Err((error, message))) => Some((error, Some(message))),
        Err(_) => Some((KafkaError::Canceled, None)),
    }
}

/// Replaces an output the brokers refused for good by its dead letter; true when the letter is
/// delivered.
async fn replace_refused(
    letters: &DeadLetters,
    refused: &OwnedMessage,
    error: &KafkaError,
    source: SourceRef<'_>,
    metrics: &Metrics,
) -> bool {
    let reason = format!("{} refused the output: {error}", refused.topic());
    tracing::warn!(topic = %source.topic, partition = source.partition, offset = source.offset, %reason, "output replaced by a dead letter");
    let payload = refused.payload().unwrap_or_default();
    match letters.publish(payload, &reason, source, refused.key()).await {
        Ok(()) => {
            metrics.dlq_records.get_or_create(&ReasonLabels { reason: REJECTED }).inc();
            true
        }
        Err(letter_error) => {
            tracing::error!(%letter_error, "the dead letter of a refused output was not delivered");
            false
        }
    }
}

async fn ack(
    mut rx: mpsc::Receiver<Pending>,
    topic: String,
    partition: i32,
    store: Arc<dyn OffsetStore>,
    metrics: Metrics,
    stop: Stop,
    faults: Faults,
) {
    let Faults { dead_letters, stall } = faults;
    let stored_gauge = metrics.stored_offset.get_or_create(&Metrics::partition(&topic, partition)).clone();
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        // One trace span per acknowledged batch (not entered: the acker awaits; it lasts the batch).
        let _span = tracing::info_span!("offsets.ack", topic = %topic, partition, records = batch.len() as i64);
        let mut last_delivered = None;
        for pending in batch.drain(..) {
            for delivery in pending.deliveries {
                let source = SourceRef { topic: &topic, partition, offset: pending.offset };
                if let Some((error, message)) = delivery_report(delivery.report, stall.as_ref(), source).await {
                    let out_topic = message.as_ref().map(|m| m.topic().to_owned()).unwrap_or_default();
                    metrics.delivery_failures.get_or_create(&Metrics::topic(&out_topic)).inc();
                    // A record the brokers will never take is replaced by its dead letter; the partition
                    // goes on (a dead letter refused in turn stops it).
                    let refused = match (&dead_letters, &message) {
                        (Some(letters), Some(m))
                            if rejects_record(&error) && !matches!(delivery.kind, OutputKind::DeadLetter { .. }) =>
                        {
                            Some((letters, m))
                        }
                        _ => None,
                    };
                    if let Some((letters, m)) = refused {
                        if replace_refused(letters, m, &error, source, &metrics).await {
                            continue;
                        }
                    }
                    if let Some(next) = last_delivered {
                        store_progress(&*store, &topic, partition, next, &stored_gauge);
                    }
                    let reason = if message.is_some() {
                        error.to_string()
                    } else {
                        "producer dropped the delivery report".into()
                    };
                    stop.fail(Failure::Delivery {
                        to: out_topic.to_string(),
                        topic: topic.clone(),
                        partition,
                        offset: pending.offset,
                        reason,
                    });
                    return;
                }
                delivery.delivered.inc();
                count_delivered(&metrics, delivery.kind);
            }
            last_delivered = Some(pending.offset + 1);
        }
        if let Some(next) = last_delivered {
            if !store_progress(&*store, &topic, partition, next, &stored_gauge) {
                return;
            }
        }
    }
}

fn count_delivered(metrics: &Metrics, kind: OutputKind) {
    if let OutputKind::DeadLetter { reason } = kind {
        metrics.dlq_records.get_or_create(&ReasonLabels { reason }).inc();
    }
}

fn store_progress(
    store: &dyn OffsetStore,
    topic: &str,
    partition: i32,
    next: i64,
    gauge: &prometheus_client::metrics::gauge::Gauge,
) -> bool {
    match store.store(topic, partition, next) {
        Ok(()) => {
            gauge.set(next);
            true
        }
        Err(error) => {
            // Only a partition that is no longer ours refuses a store; its next owner replays the rest.
            tracing::warn!(topic, partition, next_offset = next, %error, "offset store refused; partition revoked");
            false
        }
    }
}
