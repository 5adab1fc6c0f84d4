//! The baseline stage of the pipeline: metrics records in, enriched samples, anomaly alerts and series
//! states out, with the state written before the metrics offsets that produced it are committed.
//!
//! Records of a metrics partition are held back from the offset ledger until the next snapshot of that
//! partition: the snapshot's deliveries ride on the first held record, so no held record is committed
//! before the state that includes it is acknowledged. Dropping held records (a crash, a revocation) is
//! safe: the next owner restores the last snapshot and replays them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use serde_json::json;

use super::{Partition, Sample};
use crate::changelog::{read_partition, RestoreContext, StatePartition};
use crate::config::Settings;
use crate::ecs::SourceRef;
use crate::failure::Failure;
use crate::metrics::{Metrics, ReasonLabels, StageLabels, WarmupLabels};
use crate::offsets::{Ledger, OffsetStore, Pending, Submitted};
use crate::sink::{Delivery, OutputKind, Sink};

struct Held {
    partition: Partition,
    records: Vec<Pending>,
    oldest: Option<Instant>,
}

pub struct BaselineStage {
    settings: crate::config::BaselineSettings,
    /// `baseline.metrics_topic`.
    topic: String,
    restorer: BaseConsumer<RestoreContext>,
    partitions: HashMap<i32, Held>,
    dlq_max: usize,
}

impl BaselineStage {
    /// `None` when no metrics topic is configured.
    pub fn new(settings: &Settings) -> Result<Option<BaselineStage>, KafkaError> {
        let Some(topic) = settings.baseline.metrics_topic.clone() else {
            return Ok(None);
        };
        Ok(Some(BaselineStage {
            settings: settings.baseline.clone(),
            topic,
            restorer: crate::changelog::restorer(settings, "restore")?,
            partitions: HashMap::new(),
            dlq_max: settings.output.dlq_max_original.as_u64() as usize,
        }))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads partition `partition` of the state topic to its end.
    fn restore(&self, partition: i32, metrics: &Metrics) -> Result<Partition, Failure> {
        let mut restored = Partition::new(&self.settings);
        let at = StatePartition {
            topic: &self.settings.state_topic,
            partition,
            key: "baseline.state_topic",
            partitioned_like: "baseline.metrics_topic",
            timeout_key: "baseline.restore_timeout",
        };
        let read = read_partition(&self.restorer, &at, self.settings.restore_timeout, |key, payload| {
            restored.restore([(key, payload)]);
        })?;
        let (series, _) = restored.counts();
        metrics.baseline_restored.inc_by(series as u64);
        tracing::info!(partition, read, series, "baseline state restored");
        Ok(restored)
    }

    /// Forgets the partitions of the metrics topic among `revoked` (taken by the pipeline from the
    /// rebalance callback, which runs inside the consumer's poll): their held records are not committed
    /// and their next owner — this instance too, if they come back — restores their state.
    pub fn forget(&mut self, revoked: &[(String, i32)], metrics: &Metrics) {
        let mut forgot = false;
        for (topic, p) in revoked {
            if *topic == self.topic {
                forgot |= self.partitions.remove(p).is_some();
            }
        }
        if forgot {
            self.report(metrics);
        }
    }

    /// Handles one metrics record. `Err` is fatal (the pipeline stops).
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        received: DateTime<Utc>,
        sink: &Sink,
        metrics: &Metrics,
        ledger: &Ledger,
        store: &Arc<dyn OffsetStore>,
    ) -> Result<Submitted, Failure> {
        // A rebalance during the poll that returned this record may have taken partitions away (and
        // given them back): the pipeline made the stage forget them before handing it the record.
        let (partition, offset) = (message.partition(), message.offset());
        if !self.partitions.contains_key(&partition) {
            let restored = self.restore(partition, metrics)?;
            self.partitions.insert(partition, Held { partition: restored, records: Vec::new(), oldest: None });
        }
        let topic = self.topic.clone();
        let source = SourceRef { topic: &topic, partition, offset };
        let payload = message.payload().unwrap_or_default();
        let origin = json!({"topic": topic, "partition": partition, "offset": offset});
        let held = self.partitions.get_mut(&partition).expect("inserted above");
        let observed = Sample::parse(payload).and_then(|sample| {
            let original = String::from_utf8_lossy(payload);
            held.partition.observe(&sample, offset, origin, &original, Utc::now()).map(|o| (sample, o))
        });
        let mut deliveries: Vec<Delivery> = Vec::new();
        let published = match observed {
            Ok((sample, observation)) => {
                let result = if observation.replayed { "replayed" } else { "scored" };
                metrics.baseline_samples.get_or_create(&ReasonLabels { reason: result }).inc();
                let json = serde_json::to_vec(&observation.doc).expect("a JSON map serializes");
                let mut outs = vec![sink.publish(OutputKind::Enriched, Some(sample.host.as_bytes()), &json)];
                for alert in &observation.alerts {
                    metrics.alerts.get_or_create(&StageLabels { stage: alert.stage.as_str() }).inc();
                    metrics.rule_hits.get_or_create(&crate::metrics::RuleLabels { rule: alert.rule_id.clone() }).inc();
                    let json = serde_json::to_vec(&alert.doc).expect("a JSON value serializes");
                    outs.push(sink.publish(OutputKind::Alert, Some(alert.id.as_bytes()), &json));
                }
                outs
            }
            Err(error) => {
                let reason = error.code();
                metrics.parse_errors.get_or_create(&ReasonLabels { reason }).inc();
                let json = crate::ecs::dead_letter(payload, reason, &error.to_string(), source, received, self.dlq_max);
                vec![sink.publish(OutputKind::DeadLetter { reason }, message.key(), &json)]
            }
        };
        for p in published {
            deliveries.push(
                p.map_err(|e| Failure::kafka(format!("producing the outputs of {topic}/{partition}@{offset}"), e))?,
            );
        }
        held.oldest.get_or_insert_with(Instant::now);
        held.records.push(Pending { offset, deliveries });
        if held.records.len() >= self.settings.snapshot_every {
            return self.flush(partition, sink, metrics, ledger, store);
        }
        Ok(Submitted::Queued)
    }

    /// Flushes every partition whose oldest held record is older than `baseline.snapshot_interval`
    /// (or every partition when `all`).
    pub fn flush_due(
        &mut self,
        all: bool,
        sink: &Sink,
        metrics: &Metrics,
        ledger: &Ledger,
        store: &Arc<dyn OffsetStore>,
    ) -> Result<Submitted, Failure> {
        // Runs once per polled record: finds due partitions one at a time, allocating nothing when none is.
        let interval = self.settings.snapshot_interval;
        while let Some(partition) = self
            .partitions
            .iter()
            .find(|(_, h)| h.oldest.is_some_and(|t| all || t.elapsed() >= interval))
            .map(|(p, _)| *p)
        {
            if self.flush(partition, sink, metrics, ledger, store)? == Submitted::Stopping {
                return Ok(Submitted::Stopping);
            }
        }
        Ok(Submitted::Queued)
    }

    /// Writes the changed series of `partition` and hands its held records to the ledger, the first
    /// one carrying the state's deliveries.
    fn flush(
        &mut self,
        partition: i32,
        sink: &Sink,
        metrics: &Metrics,
        ledger: &Ledger,
        store: &Arc<dyn OffsetStore>,
    ) -> Result<Submitted, Failure> {
        let Some(held) = self.partitions.get_mut(&partition) else { return Ok(Submitted::Queued) };
        let mut records = std::mem::take(&mut held.records);
        held.oldest = None;
        let states = held.partition.snapshot();
        if let Some(first) = records.first_mut() {
            for (key, state) in &states {
                let delivery = sink
                    .publish_to(OutputKind::BaselineState, Some(partition), Some(key.as_bytes()), Some(state))
                    .map_err(|e| Failure::kafka(format!("writing the baseline state of {key}"), e))?;
                first.deliveries.push(delivery);
            }
        }
        metrics.baseline_snapshots.inc_by(states.len() as u64);
        self.report(metrics);
        for pending in records {
            if ledger.submit(&self.topic, partition, pending, store) == Submitted::Stopping {
                return Ok(Submitted::Stopping);
            }
        }
        Ok(Submitted::Queued)
    }

    fn report(&self, metrics: &Metrics) {
        let (mut series, mut warming) = (0, 0);
        for held in self.partitions.values() {
            let (s, w) = held.partition.counts();
            series += s;
            warming += w;
        }
        metrics.baseline_series.get_or_create(&WarmupLabels { state: "warming" }).set(warming as i64);
        metrics.baseline_series.get_or_create(&WarmupLabels { state: "ready" }).set((series - warming) as i64);
    }
}
