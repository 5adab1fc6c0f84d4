//! Exactly-once delivery (`kafka.delivery = "exactly-once"`): the outputs of a batch of input records,
//! the detection state they changed and the input offsets after them are committed in one Kafka
//! transaction, so a `read_committed` consumer of the outputs sees each input's outputs once, whatever
//! crashes in between.
//!
//! A transaction opens before the first output of a batch and is committed after
//! `kafka.transaction_records` records or `kafka.transaction_interval`, when the instance stops, and
//! not across a rebalance: a revocation aborts the open one (its records are processed again by the
//! partitions' next owner, from the committed offsets and the committed state). A transaction that
//! fails to commit is aborted, and its partitions are rewound to where it began and their detection
//! state read back, so the batch is processed again. Only fatal producer errors (a fenced instance)
//! end the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::detect_state::PartitionStates;
use crate::failure::Failure;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::sink::Sink;
use crate::source::InputConsumer;

/// Whether a transaction is open, shared with the rebalance callback, which aborts it before the
/// partitions it covers are given up.
pub struct Guard {
    sink: Arc<Sink>,
    open: AtomicBool,
    aborted: AtomicBool,
}

impl Guard {
    pub fn new(sink: Arc<Sink>) -> Arc<Guard> {
        Arc::new(Guard { sink, open: AtomicBool::new(false), aborted: AtomicBool::new(false) })
    }

    /// Called on revocation (inside the consumer's poll).
    pub fn abort_for_rebalance(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            match self.sink.abort_transaction() {
                Ok(()) => tracing::info!("open transaction aborted for the rebalance; its records are processed again"),
                Err(error) => tracing::warn!(%error, "aborting the open transaction for the rebalance"),
            }
            self.aborted.store(true, Ordering::SeqCst);
        }
    }
}

/// The open transaction of the polling thread.
pub struct Transactions {
    guard: Arc<Guard>,
    max_records: usize,
    max_age: Duration,
    started: Instant,
    records: usize,
    /// topic → partition → (first offset, next offset) of the records the open transaction covers
    /// (looked up by `&str`: a record allocates nothing).
    offsets: HashMap<String, HashMap<i32, (i64, i64)>>,
}

/// How committing went.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Nothing was open, or it committed.
    Done,
    /// It failed and was aborted; its partitions were rewound to be processed again.
    Rewound,
}

impl Transactions {
    pub fn new(settings: &KafkaSettings, guard: Arc<Guard>) -> Transactions {
        Transactions {
            guard,
            max_records: settings.transaction_records,
            max_age: settings.transaction_interval,
            started: Instant::now(),
            records: 0,
            offsets: HashMap::new(),
        }
    }

    /// Opens a transaction unless one is open (before a record's first output).
    pub fn begin(&mut self, sink: &Sink) -> Result<(), KafkaError> {
        if !self.guard.open.load(Ordering::SeqCst) {
            sink.begin_transaction()?;
            self.guard.open.store(true, Ordering::SeqCst);
            self.started = Instant::now();
            self.records = 0;
        }
        Ok(())
    }

    /// Counts record `offset` of `topic`/`partition` into the open transaction.
    pub fn add(&mut self, topic: &str, partition: i32, offset: i64) {
        self.records += 1;
        if !self.offsets.contains_key(topic) {
            self.offsets.insert(topic.to_owned(), HashMap::new());
        }
        let partitions = self.offsets.get_mut(topic).expect("inserted above");
        partitions.entry(partition).and_modify(|(_, next)| *next = offset + 1).or_insert((offset, offset + 1));
    }

    /// Whether the open transaction should be committed now.
    pub fn due(&self) -> bool {
        self.guard.open.load(Ordering::SeqCst)
            && (self.records >= self.max_records || self.started.elapsed() >= self.max_age)
    }

    /// After a poll: if a rebalance aborted the open transaction, the partitions it covered that this
    /// instance still owns are rewound (the revoked ones are their next owner's).
    pub fn after_rebalance(&mut self, consumer: &InputConsumer, states: &mut PartitionStates) {
        if self.guard.aborted.swap(false, Ordering::SeqCst) {
            self.rewind(consumer, states);
        }
    }

    /// Writes the changed detection state of the covered partitions, sends their offsets and commits.
    /// A failure that is not fatal aborts and rewinds; `Err` is fatal (fenced, misconfigured).
    pub fn commit(
        &mut self,
        sink: &Sink,
        consumer: &InputConsumer,
        states: &mut PartitionStates,
        metrics: &Metrics,
    ) -> Result<Committed, Failure> {
        if !self.guard.open.load(Ordering::SeqCst) {
            return Ok(Committed::Done);
        }
        let outcome = self.try_commit(sink, consumer, states, metrics);
        match outcome {
            Ok(()) => {
                self.guard.open.store(false, Ordering::SeqCst);
                self.offsets.clear();
                metrics.transactions.get_or_create(&OutcomeLabels { outcome: "committed" }).inc();
                Ok(Committed::Done)
            }
            Err(error) if is_fatal(&error) => Err(Failure::kafka("committing a transaction", error)),
            Err(error) => {
                tracing::warn!(%error, records = self.records, "transaction not committed; aborting and processing its records again");
                self.guard.open.store(false, Ordering::SeqCst);
                metrics.transactions.get_or_create(&OutcomeLabels { outcome: "aborted" }).inc();
                if let Err(error) = sink.abort_transaction() {
                    if is_fatal(&error) {
                        return Err(Failure::kafka("aborting a transaction", error));
                    }
                    tracing::warn!(%error, "aborting the transaction");
                }
                self.rewind(consumer, states);
                Ok(Committed::Rewound)
            }
        }
    }

    fn try_commit(
        &mut self,
        sink: &Sink,
        consumer: &InputConsumer,
        states: &mut PartitionStates,
        metrics: &Metrics,
    ) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in &self.offsets {
            for (partition, (_, next)) in partitions {
                states.write_in_transaction(topic, *partition, *next, sink, metrics)?;
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
            }
        }
        match consumer.group_metadata() {
            Some(group) if tpl.count() > 0 => sink.commit_transaction(&tpl, &group),
            _ => sink.commit_outputs(),
        }
    }

    /// Seeks the covered partitions back to where the transaction began and drops their detection state
    /// (read back from the committed state before their next record).
    fn rewind(&mut self, consumer: &InputConsumer, states: &mut PartitionStates) {
        let owned: Vec<(String, i32)> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
            .unwrap_or_default();
        for (topic, partitions) in self.offsets.drain() {
            for (partition, (first, _)) in partitions {
                states.forget(&topic, partition);
                if owned.contains(&(topic.clone(), partition)) {
                    if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(first), Duration::from_secs(10))
                    {
                        tracing::warn!(%error, topic, partition, "rewinding after an aborted transaction");
                    }
                }
            }
        }
    }
}

fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        other => other.rdkafka_error_code().is_some_and(|c| {
            matches!(c, rdkafka::types::RDKafkaErrorCode::Fatal | rdkafka::types::RDKafkaErrorCode::Fenced)
        }),
    }
}
