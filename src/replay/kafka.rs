//! Kafka replays: every partition of a topic from a time, read in parallel by consumers of an ephemeral
//! group that never commits, in offset order with its own detection state, as live.

use super::error::{kafka, refused, ReplayError, Result};
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{progress_bar, Analysed, Analyser, Engine, Options};
use crate::config::Settings;
use crate::detect::{Alert, Publish, Worker};
use crate::ecs::{Origin, SourceRef};
use crate::parse::Dataset;

/// Kafka: an ephemeral group (never committed); every partition read from its offset for `from` to the
/// offset for `to` (or its end) by a thread and consumer of its own, in parallel, each with its own
/// detection state, as live. Records are selected by their timestamps, `from <= timestamp < to`.
/// One partition's read: (partition, first offset, end offset if bounded).
type Planned = (i32, i64, Option<i64>);

/// What a partition thread sends: per record read, its timestamp and, when in range, what it gave;
/// at its end, the alerts its detection state still held.
enum Step {
    Read(i32, Option<DateTime<Utc>>, Option<Option<Box<Analysed>>>),
    Done(Vec<Alert>),
}

pub(super) fn replay_kafka(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    settings: &Settings,
    options: &Options,
    topic: &str,
) -> Result<()> {
    let mut config = crate::source::consumer_config(settings);
    config
        .set("group.id", format!("{}.replay.{}", settings.kafka.group_id, engine.run_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "latest");
    let (plan, total) = plan(&config, topic, options)?;
    let hint = settings.topic_datasets().get(topic).copied();
    let bar = progress_bar(options, total);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Step>(4096);
    std::thread::scope(|scope| -> Result<()> {
        let mut threads = Vec::new();
        for planned in plan {
            let (tx, config) = (tx.clone(), config.clone());
            threads.push(scope.spawn(move || read_partition(&config, topic, planned, analyser, options, hint, &tx)));
        }
        drop(tx);
        let mut failed = None;
        for step in rx {
            let applied = match step {
                Step::Read(p, ts, analysed) => {
                    bar.inc(1);
                    if let Some(t) = ts {
                        bar.set_message(format!("partition {p} at {}", crate::timefmt::seconds(t)));
                    }
                    analysed.map_or(Ok(()), |a| engine.apply(a.map(|a| *a)))
                }
                Step::Done(alerts) => engine.publish(alerts),
            };
            if let Err(e) = applied {
                failed = Some(e);
                break;
            }
        }
        for thread in threads {
            thread.join().map_err(|_| ReplayError::Panicked("a partition reader"))??;
        }
        failed.map_or(Ok(()), Err)
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Where each partition's read starts and ends (offsets for `--from` and `--to`), and about how many
/// records that is.
fn plan(config: &ClientConfig, topic: &str, options: &Options) -> Result<(Vec<Planned>, u64)> {
    let consumer: BaseConsumer = config.create().map_err(kafka("creating the replay consumer"))?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka("reading topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(refused(format!("topic {topic}: not found, or it has no partitions")));
    }
    let at = |t: DateTime<Utc>| -> Result<HashMap<i32, Offset>> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(t.timestamp_millis()))
                .map_err(kafka("looking up offsets for times"))?;
        }
        let found = consumer.offsets_for_times(tpl, timeout).map_err(kafka("looking up offsets for times"))?;
        Ok(found.elements().iter().map(|e| (e.partition(), e.offset())).collect())
    };
    let starts = at(options.from)?;
    let ends: HashMap<i32, Offset> = match options.to {
        Some(to) => at(to)?,
        None => HashMap::new(),
    };
    let mut plan = Vec::new();
    let mut total = 0u64;
    for p in &partitions {
        let Some(Offset::Offset(start)) = starts.get(p).copied() else { continue };
        // The offset for `to` bounds the read only when it lies after the start: a broker that answers
        // the earliest offset for every time (as tansu does) is read to its end instead. Every record is
        // checked against the range by its own timestamp either way.
        let end = match ends.get(p) {
            Some(Offset::Offset(e)) if *e > start => Some(*e),
            _ => None,
        };
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap_or((0, 0));
        total += (end.unwrap_or(high) - start).max(0) as u64;
        plan.push((*p, start, end));
    }
    Ok((plan, total))
}

/// A partition thread: reads its range with a consumer and a detection state of its own.
fn read_partition(
    config: &ClientConfig,
    topic: &str,
    (p, start, end): Planned,
    analyser: &Analyser<'_>,
    options: &Options,
    hint: Option<Dataset>,
    tx: &std::sync::mpsc::SyncSender<Step>,
) -> Result<()> {
    let consumer: BaseConsumer = config.create().map_err(kafka("creating a partition reader"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(kafka(format!("reading {topic}/{p}")))?;
    consumer.assign(&tpl).map_err(kafka(format!("reading {topic}/{p}")))?;
    let mut worker = Worker::new(Publish::Final);
    let mut idle = 0u32;
    let finish = |worker: &mut Worker| {
        let _ = tx.send(Step::Done(worker.flush_all()));
        Ok(())
    };
    loop {
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => {
                idle += 1;
                if idle > 120 {
                    return Err(refused(format!("{topic}/{p}: no data for a minute before its end")));
                }
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return finish(&mut worker),
            Some(Err(e)) => return Err(kafka(format!("reading {topic}/{p}"))(e)),
            Some(Ok(m)) => m,
        };
        idle = 0;
        let offset = message.offset();
        if end.is_some_and(|e| offset >= e) {
            return finish(&mut worker);
        }
        let ts = message.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis);
        let analysed = ts.filter(|t| *t >= options.from && options.to.is_none_or(|to| *t < to)).map(|t| {
            let origin = Origin::Kafka(SourceRef { topic, partition: p, offset });
            let payload = message.payload().unwrap_or_default();
            analyser.analyse(&mut worker, payload, t, hint, origin, None).map(Box::new)
        });
        if tx.send(Step::Read(p, ts, analysed)).is_err() {
            return Ok(()); // the main thread stopped on an error
        }
        if end.is_some_and(|e| offset + 1 >= e) {
            return finish(&mut worker);
        }
    }
}
