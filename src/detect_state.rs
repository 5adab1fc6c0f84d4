//! The detection state of the input partitions this instance owns — each partition's correlation
//! groups and suppression windows ([`Worker`]) — and its changelog on `detect.state_topic`.
//!
//! With a state topic, a partition's records are held back from the offset ledger until the next
//! snapshot of that partition, as the baseline stage does: everything published so far is first
//! delivered (a producer flush, waiting at most a second: during an outage the state is written all
//! the same, so the held records reach the ledger, whose stall detection and readiness cover them),
//! then the entries that changed are written (deleted ones as tombstones)
//! with the offset they cover, riding on the first held record, so no input offset is committed
//! before the state that includes it. A partition assigned to this instance is read back from the
//! topic first; records below the offset its state covers (the uncommitted tail a restart replays)
//! are republished but not evaluated again: their effect is in the state and their alerts were
//! delivered before it was written (outside an outage: see RELIABILITY.md for the one edge). Correlations and suppression windows therefore span kill -9,
//! deploys and rebalances, and alert ids stay those of an uninterrupted run.
//!
//! Not carried over: the few seconds of WAF/access-log request pairing (`detect::dedupe`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;

use crate::changelog::{read_partition, RestoreContext, StatePartition};
use crate::config::{DetectSettings, Settings};
use crate::detect::correlate::Capped;
use crate::detect::{Alert, Publish, Worker};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::offsets::{Ledger, OffsetStore, Pending, Submitted};
use crate::sink::{Delivery, OutputKind, Sink};

/// Key separator inside the state topic: `<input topic>␟<partition>␟<entry>`.
const SEP: char = '\u{1f}';
/// The entry holding the next input offset a partition's written state covers.
const OFFSET: &str = "o";
/// How long a snapshot waits for the alerts of the records it covers; then it is written all the same.
const ALERT_WAIT: Duration = Duration::from_secs(1);

/// Where settled records and snapshots go.
#[derive(Clone, Copy)]
pub struct Outlets<'a> {
    pub sink: &'a Sink,
    pub ledger: &'a Ledger,
    pub store: &'a Arc<dyn OffsetStore>,
    pub metrics: &'a Metrics,
}

/// One partition's detection state on this instance.
struct Owned {
    worker: Worker,
    /// Records below this offset are already in the restored state.
    evaluated_below: i64,
    /// Records processed since the last snapshot, in offset order, not yet handed to the ledger.
    held: Vec<Pending>,
    oldest: Option<Instant>,
}

struct Changelog {
    settings: DetectSettings,
    /// `detect.state_topic`.
    topic: String,
    restorer: BaseConsumer<RestoreContext>,
    max_bytes: usize,
    /// Records one partition may hold before processing waits for a snapshot (the ledger's bound).
    max_held: usize,
    /// How long the last snapshot, when the instance stops, waits for the outputs before it.
    stop_wait: Duration,
}

/// The detection state of every partition this instance owns.
pub struct PartitionStates {
    partitions: HashMap<String, HashMap<i32, Owned>>,
    changelog: Option<Changelog>,
}

impl PartitionStates {
    /// With `detect.state_topic` empty the state is memory only: records go to the ledger at once.
    pub fn new(settings: &Settings) -> Result<PartitionStates, KafkaError> {
        let d = &settings.detect;
        let changelog = match &d.state_topic {
            None => None,
            Some(topic) => Some(Changelog {
                settings: d.clone(),
                topic: topic.clone(),
                restorer: crate::changelog::restorer(settings, "detect-restore")?,
                max_bytes: settings.output.max_message_bytes.as_u64() as usize,
                max_held: settings.pipeline.max_in_flight_per_partition.max(d.snapshot_every),
                stop_wait: settings.pipeline.shutdown_timeout / 2,
            }),
        };
        Ok(PartitionStates { partitions: HashMap::new(), changelog })
    }

    /// The worker that evaluates record `offset` of `topic`/`partition`, reading the partition's state
    /// back first if it is new here; `None` when the record is already in the restored state.
    pub fn worker(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        metrics: &Metrics,
    ) -> Result<Option<&mut Worker>, Failure> {
        // Looked up by `&str`: the topic is copied only for a partition's first record.
        if !self.partitions.contains_key(topic) {
            self.partitions.insert(topic.to_owned(), HashMap::new());
        }
        let partitions = self.partitions.get_mut(topic).expect("inserted above");
        let owned = match partitions.entry(partition) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(match &self.changelog {
                Some(log) => log.restore(topic, partition, metrics)?,
                None => Owned {
                    worker: Worker::new(Publish::Immediately),
                    evaluated_below: -1,
                    held: Vec::new(),
                    oldest: None,
                },
            }),
        };
        Ok((offset >= owned.evaluated_below).then_some(&mut owned.worker))
    }

    /// Hands a processed record's outputs on: to the ledger at once without a state topic, otherwise
    /// held until its partition's next snapshot (written now if due).
    pub fn settle(
        &mut self,
        topic: &str,
        partition: i32,
        pending: Pending,
        out: &Outlets<'_>,
    ) -> Result<Submitted, Failure> {
        let Outlets { ledger, store, .. } = *out;
        let Some(max_held) = self.changelog.as_ref().map(|l| l.max_held) else {
            return Ok(ledger.submit(topic, partition, pending, store));
        };
        let Some(owned) = self.partitions.get_mut(topic).and_then(|p| p.get_mut(&partition)) else {
            // Only records of partitions with a worker are processed.
            return Ok(ledger.submit(topic, partition, pending, store));
        };
        owned.oldest.get_or_insert_with(Instant::now);
        owned.held.push(pending);
        // Bounded memory while the brokers are away: processing waits for the snapshot.
        while self.held(topic, partition) >= max_held {
            if self.flush_due(false, out)? == Submitted::Stopping || ledger.is_stopping() {
                return Ok(Submitted::Stopping);
            }
            if self.held(topic, partition) >= max_held {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(Submitted::Queued)
    }

    fn held(&self, topic: &str, partition: i32) -> usize {
        self.partitions.get(topic).and_then(|p| p.get(&partition)).map_or(0, |o| o.held.len())
    }

    /// Writes the snapshots that are due (every partition's when `all`) and hands their records to the
    /// ledger.
    pub fn flush_due(&mut self, all: bool, out: &Outlets<'_>) -> Result<Submitted, Failure> {
        let Outlets { sink, ledger, store, metrics } = *out;
        let Some(log) = self.changelog.as_mut() else { return Ok(Submitted::Queued) };
        let (every, interval) = (log.settings.snapshot_every, log.settings.snapshot_interval);
        let due = |o: &Owned| o.oldest.is_some_and(|t| all || o.held.len() >= every || t.elapsed() >= interval);
        // Runs once per polled record: looks, allocating nothing, unless something is due.
        if !self.partitions.values().flat_map(HashMap::values).any(due) {
            return Ok(Submitted::Queued);
        }
        // The alerts of the records the state now covers are delivered, as far as the brokers allow
        // within a short wait, before the state that follows from them is written: a restart does not
        // evaluate those records again (their other outputs are published again, since their offsets
        // are committed only after every delivery). During an outage the state is written all the
        // same, so the records reach the ledger, whose stall detection and readiness cover them. Only
        // the alerts are awaited, not the whole producer queue: processing does not stop to let the
        // brokers catch up with every enriched event.
        let deadline = Instant::now() + if all { log.stop_wait } else { ALERT_WAIT };
        let alerts = self
            .partitions
            .values_mut()
            .flat_map(HashMap::values_mut)
            .filter(|o| due(o))
            .flat_map(|o| o.held.iter_mut().flat_map(|p| p.deliveries.iter_mut()))
            .filter(|d| d.kind == OutputKind::Alert);
        let mut waiting = 0;
        for alert in alerts {
            waiting += usize::from(!alert.wait_until(deadline));
        }
        if waiting > 0 {
            tracing::debug!(waiting, "detection state written while alerts before it still wait for delivery");
        }
        for (topic, partitions) in &mut self.partitions {
            for (&partition, owned) in partitions.iter_mut().filter(|(_, o)| due(o)) {
                let records = log.snapshot(topic, partition, owned, sink, metrics)?;
                for pending in records {
                    if ledger.submit(topic, partition, pending, store) == Submitted::Stopping {
                        return Ok(Submitted::Stopping);
                    }
                }
            }
        }
        Ok(Submitted::Queued)
    }

    /// Drops the state of the partitions among `revoked` (their held records are not committed: the
    /// next owner restores the written state and replays them) and returns the summaries of their open
    /// suppression windows, which the next owner carries on.
    pub fn revoke(&mut self, revoked: &[(String, i32)]) -> Vec<(String, i32, Vec<Alert>)> {
        let mut out = Vec::new();
        for (topic, partition) in revoked {
            if let Some(owned) = self.partitions.get_mut(topic).and_then(|p| p.remove(partition)) {
                out.push((topic.clone(), *partition, owned.worker.open_summaries()));
            }
        }
        out
    }

    /// Exactly-once mode: writes what changed in `topic`/`partition`'s state and the offset `next` it
    /// now covers, inside the open transaction (which carries the input offsets too).
    pub fn write_in_transaction(
        &mut self,
        topic: &str,
        partition: i32,
        next: i64,
        sink: &Sink,
        metrics: &Metrics,
    ) -> Result<(), KafkaError> {
        let (Some(log), Some(owned)) =
            (self.changelog.as_ref(), self.partitions.get_mut(topic).and_then(|p| p.get_mut(&partition)))
        else {
            return Ok(());
        };
        // The transaction's commit stands for these deliveries.
        write_changes(&mut owned.worker, log.max_bytes, topic, partition, next, sink, metrics).map(drop)
    }

    /// Drops `topic`/`partition`'s state (exactly-once mode, after an aborted transaction): it is read
    /// back from the committed state before the partition's next record.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.partitions.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    /// What the caps dropped in every partition since the last call.
    pub fn take_capped(&mut self) -> Capped {
        let mut total = Capped::default();
        for owned in self.partitions.values_mut().flat_map(HashMap::values_mut) {
            total.add(owned.worker.take_capped());
        }
        total
    }

    /// The summaries of every open suppression window, when the instance stops (the windows stay open
    /// in the written state).
    pub fn open_summaries(&self) -> Vec<(String, i32, Vec<Alert>)> {
        let mut out = Vec::new();
        for (topic, partitions) in &self.partitions {
            for (partition, owned) in partitions {
                out.push((topic.clone(), *partition, owned.worker.open_summaries()));
            }
        }
        out
    }
}

impl Changelog {
    fn partition<'a>(&'a self, partition: i32) -> StatePartition<'a> {
        StatePartition {
            topic: &self.topic,
            partition,
            key: "detect.state_topic",
            partitioned_like: "kafka.input_topics",
            timeout_key: "detect.restore_timeout",
        }
    }

    /// Reads `topic`/`partition`'s state back from its partition of the state topic.
    fn restore(&self, topic: &str, partition: i32, metrics: &Metrics) -> Result<Owned, Failure> {
        let mut worker = Worker::new(Publish::Immediately);
        let prefix = format!("{topic}{SEP}{partition}{SEP}");
        let (mut evaluated_below, mut entries, mut unreadable) = (-1i64, 0u64, 0u64);
        let read =
            read_partition(&self.restorer, &self.partition(partition), self.settings.restore_timeout, |key, value| {
                let Some(entry) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(&prefix)) else { return };
                if entry == OFFSET {
                    let next = value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<i64>().ok());
                    evaluated_below = next.unwrap_or(evaluated_below);
                    return;
                }
                match worker.restore_entry(entry, value) {
                    Ok(()) => entries += 1,
                    Err(error) => {
                        unreadable += 1;
                        tracing::warn!(%error, topic, partition, "detection state entry left out");
                    }
                }
            })?;
        metrics.detect_state_restored.inc_by(entries);
        tracing::info!(
            topic,
            partition,
            read,
            entries,
            unreadable,
            evaluated_below,
            groups = worker.correlation_groups_total(),
            windows = worker.suppression_windows(),
            "detection state restored"
        );
        Ok(Owned { worker, evaluated_below, held: Vec::new(), oldest: None })
    }

    /// Writes what changed in `owned`'s state and the offset it now covers, the deliveries riding on
    /// the first held record; returns the held records.
    fn snapshot(
        &self,
        topic: &str,
        partition: i32,
        owned: &mut Owned,
        sink: &Sink,
        metrics: &Metrics,
    ) -> Result<Vec<Pending>, Failure> {
        let mut records = std::mem::take(&mut owned.held);
        owned.oldest = None;
        let Some(next) = records.last().map(|p| p.offset + 1) else { return Ok(records) };
        let deliveries = write_changes(&mut owned.worker, self.max_bytes, topic, partition, next, sink, metrics)
            .map_err(|e| Failure::kafka(format!("writing the detection state of {topic}/{partition}"), e))?;
        records.first_mut().expect("not empty").deliveries.extend(deliveries);
        Ok(records)
    }
}

/// Publishes what changed in `worker` since the last call, and `next`, the input offset the written
/// state now covers, to the partition's key space of the state topic.
fn write_changes(
    worker: &mut Worker,
    max_bytes: usize,
    topic: &str,
    partition: i32,
    next: i64,
    sink: &Sink,
    metrics: &Metrics,
) -> Result<Vec<Delivery>, KafkaError> {
    let mut changes = worker.take_changes(max_bytes);
    changes.push((OFFSET.to_owned(), Some(next.to_string().into_bytes())));
    let mut deliveries = Vec::with_capacity(changes.len());
    for (entry, value) in &changes {
        let key = format!("{topic}{SEP}{partition}{SEP}{entry}");
        deliveries.push(sink.publish_to(
            OutputKind::DetectState,
            Some(partition),
            Some(key.as_bytes()),
            value.as_deref(),
        )?);
    }
    metrics.detect_state_written.inc_by(changes.len() as u64);
    Ok(deliveries)
}
