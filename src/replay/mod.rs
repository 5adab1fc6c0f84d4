//! `gatewatch replay`: history through the live parser, enrichment, rules and baselines, in event time.
//!
//! Sources: a Kafka topic from a time (start offsets by offsets-for-times; every partition read in
//! parallel by a consumer of its own in an ephemeral group that never commits, in offset order with its
//! own detection state, exactly as live), or files (plain, `.gz`, `.zst`; records put in event-time
//! order per appliance). Metric samples (`--metrics`) go through the baselines. The same record gives the
//! same alert with the same `event.id` as live processing; replayed alerts carry the tag `retro` and
//! `gatewatch.replay.run_id`, and `event.created` is the event's time, so a replay over the same inputs
//! writes byte-identical alerts. Alerts go to an NDJSON file (or stdout) or to the alerts topic; the
//! compromise-window report (`report`) to Markdown, JSON or HTML (`html`).

mod error;
mod files;
pub mod html;
mod kafka;
pub mod order;
pub mod report;
mod snapshot;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::baseline::{Partition, Sample};
use crate::config::Settings;
use crate::detect::{Alert, DetectOptions, RuleSet, Worker};
use crate::ecs::Origin;
use crate::enrich::Enricher;
use crate::parse::{Dataset, ParseContext};
use crate::process::{Clocks, Created, Input, Processor};

use error::{io, kafka, refused};
pub use error::{ReplayError, Result};
use files::replay_files;
pub use files::{expand, open, read_file};
use kafka::replay_kafka;
use report::{Hunt, Report, Sighting};
use snapshot::pin_feeds;

/// Where the history comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A topic (`None`: the first of `kafka.input_topics`).
    Kafka { topic: Option<String> },
    /// Files and globs.
    Files(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub source: Source,
    pub metrics: Option<PathBuf>,
    /// NDJSON file for the alerts, `-` for stdout; `None`: the alerts topic.
    pub alerts_out: Option<String>,
    /// NDJSON file (`-`: stdout) for every enriched event, as the enriched topic would carry it.
    pub enriched_out: Option<String>,
    /// `.md` or `.json`; `-`: Markdown on stdout.
    pub report: Option<PathBuf>,
    pub mitigations: BTreeMap<String, DateTime<Utc>>,
    pub publication: DateTime<Utc>,
    /// Indicator feeds pinned to a directory: created from the configured feeds when it does not exist,
    /// used instead of them (and their clock) when it does, so a hunt can be repeated exactly.
    pub feeds_snapshot: Option<PathBuf>,
    /// Bytes of file records held to put them in event-time order before sorted runs are spilled to
    /// temporary files.
    pub sort_memory: usize,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub run_id: String,
    pub records: u64,
    pub unparsed: u64,
    pub samples: u64,
    pub alerts: BTreeMap<&'static str, u64>,
    /// Appliance → (records, alerts).
    pub appliances: BTreeMap<String, (u64, u64)>,
    /// Sorted runs the file records went through on disk (0: they fitted `sort_memory`).
    pub sort_runs: usize,
}

/// Where alerts go.
enum AlertOut {
    Writer(Box<dyn Write>),
    Kafka { producer: FutureProducer, topic: String, pending: Vec<rdkafka::producer::DeliveryFuture> },
}

impl AlertOut {
    fn open(settings: &Settings, target: Option<&str>) -> Result<AlertOut> {
        Ok(match target {
            Some("-") => AlertOut::Writer(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            Some(path) => AlertOut::Writer(Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(io(format!("--alerts-out {path}")))?,
            ))),
            None => AlertOut::Kafka {
                // A replay is a batch job: an alert the brokers do not take within the delivery timeout
                // fails it, instead of waiting for them without limit as the live service does.
                producer: crate::sink::producer_config(settings)
                    .set("message.timeout.ms", settings.kafka.delivery_timeout.as_millis().to_string())
                    .create()
                    .map_err(kafka("creating the alerts producer"))?,
                topic: settings.output.alerts_topic.clone(),
                pending: Vec::new(),
            },
        })
    }

    fn write(&mut self, alert: &Alert) -> Result<()> {
        let json = serde_json::to_vec(&alert.doc).expect("alerts serialize");
        match self {
            AlertOut::Writer(w) => {
                w.write_all(&json).map_err(io("writing the alerts"))?;
                w.write_all(b"\n").map_err(io("writing the alerts"))?;
            }
            AlertOut::Kafka { producer, topic, pending } => {
                let mut record = FutureRecord::<str, [u8]>::to(topic).key(alert.id.as_str()).payload(&json);
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => break pending.push(delivery),
                        Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(kafka(format!("publishing an alert to {topic}"))(e)),
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            AlertOut::Writer(mut w) => w.flush().map_err(io("writing the alerts"))?,
            AlertOut::Kafka { topic, pending, .. } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(io("starting the alerts runtime"))?;
                rt.block_on(async {
                    for delivery in pending {
                        match delivery.await {
                            Ok(Ok(_)) => {}
                            Ok(Err((e, _))) => {
                                return Err(kafka(format!("an alert was not acknowledged by {topic}"))(e))
                            }
                            Err(_) => return Err(refused("an alert's delivery was cancelled")),
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}

/// What one record gave: its appliance, event time, what the report takes from it, its enriched
/// document as JSON (when `--enriched-out` wants it) and its alerts — all taken where the record was
/// processed, so the document itself is dropped there.
struct Analysed {
    host: String,
    at: DateTime<Utc>,
    sighting: Option<Sighting>,
    json: Option<Vec<u8>>,
    alerts: Vec<Alert>,
}

/// The per-record machinery: parse, enrich, detect. Shared by the partition threads of a Kafka replay;
/// the detection state (`Worker`) is the caller's.
struct Analyser<'a> {
    ctx: ParseContext,
    enricher: &'a Enricher,
    rules: &'a RuleSet,
    detect: DetectOptions,
    /// The indicators' clock (expiry): a pinned snapshot's time, else now.
    as_of: Option<DateTime<Utc>>,
    /// Serialize the enriched document (`--enriched-out`).
    serialize: bool,
}

impl Analyser<'_> {
    /// `None` when the record does not parse. `appliance` names the appliance of records that do not.
    fn analyse(
        &self,
        worker: &mut Worker,
        payload: &[u8],
        received: DateTime<Utc>,
        hint: Option<Dataset>,
        origin: Origin<'_>,
        appliance: Option<&str>,
    ) -> Option<Analysed> {
        let processor =
            Processor { ctx: &self.ctx, enricher: Some(self.enricher), rules: self.rules, detect: &self.detect };
        // Alerts are dated by event time, so a rerun writes byte-identical alerts.
        let clocks = Clocks { received, indicators: self.as_of.unwrap_or_else(Utc::now), created: Created::EventTime };
        let processed = processor.process(Some(worker), Input { payload, hint, origin, appliance }, clocks).ok()?;
        let host = processed.event.appliance().or(appliance).unwrap_or("-").to_owned();
        let json = self.serialize.then(|| processed.doc.to_vec());
        let at = processed.event.timestamp;
        let sighting = Sighting::of(&processed.doc, at);
        Some(Analysed { host, at, sighting, json, alerts: processed.alerts })
    }
}

/// What a replay accumulates: the alert output, the report's material and the counts.
struct Engine {
    run_id: String,
    out: AlertOut,
    /// `--enriched-out`: every enriched event as NDJSON.
    enriched: Option<Box<dyn Write>>,
    hunt: Hunt,
    summary: Summary,
}

impl Engine {
    /// Counts a record and publishes what it gave.
    fn apply(&mut self, analysed: Option<Analysed>) -> Result<()> {
        self.summary.records += 1;
        let Some(a) = analysed else {
            self.summary.unparsed += 1;
            return Ok(());
        };
        if let Some(sighting) = a.sighting {
            self.hunt.event(sighting);
        }
        if let (Some(out), Some(json)) = (self.enriched.as_mut(), &a.json) {
            out.write_all(json).map_err(io("writing --enriched-out"))?;
            out.write_all(b"\n").map_err(io("writing --enriched-out"))?;
        }
        self.summary.appliances.entry(a.host).or_default().0 += 1;
        self.publish(a.alerts)
    }

    fn publish(&mut self, alerts: Vec<Alert>) -> Result<()> {
        for mut alert in alerts {
            retro(&mut alert, &self.run_id);
            *self.summary.alerts.entry(alert.stage.as_str()).or_default() += 1;
            let host = alert.doc["observer"]["hostname"].as_str().unwrap_or("-").to_owned();
            self.summary.appliances.entry(host).or_default().1 += 1;
            self.hunt.alert(&alert);
            self.out.write(&alert)?;
        }
        Ok(())
    }

    /// Emits what the detection states still held (suppression summaries) once the history is done, in
    /// the order of their appliances.
    fn finish_workers(&mut self, mut flushed: Vec<(String, Vec<Alert>)>) -> Result<()> {
        flushed.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, alerts) in flushed {
            self.publish(alerts)?;
        }
        Ok(())
    }
}

/// Marks an alert as replayed; its id stays what live processing gives.
fn retro(alert: &mut Alert, run_id: &str) {
    let Some(doc) = alert.doc.as_object_mut() else { return };
    match doc.get_mut("tags") {
        Some(Json::Array(tags)) => tags.push(json!("retro")),
        _ => {
            doc.insert("tags".into(), json!(["retro"]));
        }
    }
    if let Some(Json::Object(g)) = doc.get_mut("gatewatch") {
        g.insert("replay".into(), json!({"run_id": run_id}));
    }
}

/// A replay's identity: the same inputs, range, rules and mitigations give the same id.
fn run_id(options: &Options, inputs: &[(String, u64)], rules: &RuleSet) -> String {
    let mut h = Sha256::new();
    h.update(crate::timefmt::seconds(options.from));
    h.update(options.to.map(crate::timefmt::seconds).unwrap_or_default());
    for (name, size) in inputs {
        h.update(format!("\0{name}\0{size}"));
    }
    if let Some(m) = &options.metrics {
        h.update(format!("\0metrics\0{}", m.display()));
    }
    for (host, date) in &options.mitigations {
        h.update(format!("\0{host}={}", crate::timefmt::seconds(*date)));
    }
    h.update(crate::timefmt::seconds(options.publication));
    if let Some(dir) = &options.feeds_snapshot {
        h.update(format!("\0feeds\0{}", dir.display()));
    }
    for rule in &rules.rules {
        h.update(format!("\0{}@{}", rule.meta.id, rule.meta.version));
    }
    hex::encode(&h.finalize()[..8])
}

fn progress_bar(options: &Options, len: u64) -> indicatif::ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records {per_sec} ETA {eta} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// Runs a replay.
pub fn run(settings: &Settings, options: &Options) -> Result<(Summary, Report)> {
    let (pinned, as_of) = match &options.feeds_snapshot {
        Some(dir) => {
            let (pinned, as_of) = pin_feeds(settings, dir)?;
            (Some(pinned), Some(as_of))
        }
        None => (None, None),
    };
    let settings = pinned.as_ref().unwrap_or(settings);
    check_options(options)?;
    let (enricher, events) = Enricher::load(settings, true)?;
    drop(events);
    let detect = settings.detect.options();
    let (rules, errors) = RuleSet::load(&settings.detect.rules_dirs, &detect);
    if let Some(error) = errors.first() {
        return Err(refused(format!("rule file {}: {}", error.file, error.reason)));
    }
    let inputs: Vec<(String, u64)> = match &options.source {
        Source::Files(patterns) => expand(patterns)?
            .into_iter()
            .map(|p| {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p.display().to_string(), size)
            })
            .collect(),
        Source::Kafka { topic } => vec![(format!("kafka:{}", topic.clone().unwrap_or_default()), 0)],
    };
    let run_id = run_id(options, &inputs, &rules);
    let analyser = Analyser {
        ctx: settings.parse_context(),
        enricher: &enricher,
        rules: &rules,
        detect,
        as_of,
        serialize: options.enriched_out.is_some(),
    };
    let mut engine = Engine {
        out: AlertOut::open(settings, options.alerts_out.as_deref())?,
        enriched: enriched_out(options.enriched_out.as_deref())?,
        hunt: Hunt::default(),
        summary: Summary { run_id: run_id.clone(), ..Summary::default() },
        run_id,
    };
    match &options.source {
        Source::Files(_) => {
            let workers = settings.pipeline.worker_count();
            replay_files(&mut engine, &analyser, options, &inputs, workers)?
        }
        Source::Kafka { topic } => {
            let topic = topic.clone().unwrap_or_else(|| settings.kafka.input_topics[0].clone());
            replay_kafka(&mut engine, &analyser, settings, options, &topic)?
        }
    }
    if let Some(metrics) = &options.metrics {
        replay_metrics(&mut engine, settings, options, metrics)?;
    }
    finish(engine, options)
}

/// Options that cannot work together: an empty range, two outputs on stdout.
fn check_options(options: &Options) -> Result<()> {
    if options.to.is_some_and(|to| to <= options.from) {
        return Err(refused("--to must be later than --from"));
    }
    let to_stdout: Vec<&str> = [
        ("--alerts-out -", options.alerts_out.as_deref() == Some("-")),
        ("--enriched-out -", options.enriched_out.as_deref() == Some("-")),
        ("--report -", options.report.as_deref() == Some(Path::new("-"))),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if to_stdout.len() > 1 {
        return Err(refused(format!("{} would all write to stdout", to_stdout.join(" and "))));
    }
    Ok(())
}

/// `--enriched-out`: a file, stdout (`-`), or nothing.
fn enriched_out(path: Option<&str>) -> Result<Option<Box<dyn Write>>> {
    Ok(match path {
        None => None,
        Some("-") => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(io(format!("--enriched-out {path}")))?,
        ))),
    })
}

/// Flushes the outputs and writes the report.
fn finish(engine: Engine, options: &Options) -> Result<(Summary, Report)> {
    let Engine { out, enriched, hunt, summary, .. } = engine;
    out.finish()?;
    if let Some(mut enriched) = enriched {
        enriched.flush().map_err(io("writing --enriched-out"))?;
    }
    let header = Report {
        version: 1,
        run_id: summary.run_id.clone(),
        from: crate::timefmt::seconds(options.from),
        to: options.to.map(crate::timefmt::seconds),
        exploit_publication: crate::timefmt::seconds(options.publication),
        records: summary.records,
        unparsed: summary.unparsed,
        alerts: summary.alerts.clone(),
        appliances: Vec::new(),
    };
    let report = hunt.report(header, &options.mitigations, options.publication, options.to);
    if let Some(path) = &options.report {
        if path == Path::new("-") {
            std::io::stdout().write_all(report.markdown().as_bytes()).map_err(io("--report -"))?;
            return Ok((summary, report));
        }
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => report.json(),
            Some("md") => report.markdown(),
            Some("html") => report.html(),
            _ => return Err(refused(format!("--report {}: the name must end in .md, .json or .html", path.display()))),
        };
        std::fs::write(path, text).map_err(io(format!("--report {}", path.display())))?;
    }
    Ok((summary, report))
}

/// The most a `--metrics` file may hold once decompressed (it is read whole and sorted): about five
/// million samples.
pub const MAX_METRICS_BYTES: u64 = 1 << 30;

/// Metric samples (NDJSON, optionally compressed) through the baselines, per appliance in time order.
fn replay_metrics(engine: &mut Engine, settings: &Settings, options: &Options, path: &Path) -> Result<()> {
    let bytes = read_file(path, MAX_METRICS_BYTES)?;
    let text = String::from_utf8_lossy(&bytes);
    let name = path.display().to_string();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sample = Sample::parse(line.as_bytes()).map_err(|e| refused(format!("{name}:{}: {e}", i + 1)))?;
        if sample.at >= options.from && options.to.is_none_or(|to| sample.at < to) {
            samples.push((i + 1, line, sample));
        }
    }
    samples.sort_by(|a, b| (&a.2.host, a.2.at, a.0).cmp(&(&b.2.host, b.2.at, b.0)));
    let mut partition = Partition::new(&settings.baseline);
    for (n, (line, original, sample)) in samples.iter().enumerate() {
        let origin = json!({"file": name, "line": line});
        let seen = partition
            .observe(sample, n as i64, origin, original, sample.at)
            .map_err(|e| refused(format!("{name}:{line}: {e}")))?;
        engine.summary.samples += 1;
        engine.hunt.sample(sample, &seen.doc);
        engine.publish(seen.alerts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retro_alerts_keep_their_id_and_gain_the_tag_and_run() {
        let mut alert = Alert {
            id: "abc".into(),
            rule_id: "r".into(),
            stage: crate::detect::sigma::Stage::Probe,
            doc: json!({"event": {"id": "abc"}, "gatewatch": {"stage": "probe"}}),
            update: false,
        };
        retro(&mut alert, "run1");
        assert_eq!(alert.doc["tags"], json!(["retro"]));
        assert_eq!(alert.doc["gatewatch"]["replay"]["run_id"], "run1");
        assert_eq!(alert.doc["event"]["id"], "abc");
    }

    #[test]
    fn compressed_inputs_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"line one\nline two\n";
        let gz = dir.path().join("a.log.gz");
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
        e.write_all(text).unwrap();
        e.finish().unwrap();
        let zst = dir.path().join("b.log.zst");
        std::fs::write(&zst, zstd::encode_all(&text[..], 3).unwrap()).unwrap();
        assert_eq!(read_file(&gz, 1 << 20).unwrap(), text);
        assert_eq!(read_file(&zst, 1 << 20).unwrap(), text);
        let pattern = format!("{}/*.log.*", dir.path().display());
        assert_eq!(expand(&[pattern]).unwrap(), vec![gz, zst]);
        assert!(expand(&[format!("{}/none-*.log", dir.path().display())]).is_err());
    }

    #[test]
    fn a_compressed_input_read_whole_is_refused_past_its_bound_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bomb = dir.path().join("samples.ndjson.gz");
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&bomb).unwrap(), flate2::Compression::best());
        for _ in 0..64 {
            e.write_all(&[b'\n'; 1 << 16]).unwrap();
        }
        e.finish().unwrap();
        assert!(std::fs::metadata(&bomb).unwrap().len() < 16 << 10, "a small file inflating to 4 MiB");
        let error = read_file(&bomb, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("samples.ndjson.gz") && error.contains("more than 1.0 MiB"), "{error}");
        assert_eq!(read_file(&bomb, 4 << 20).unwrap().len(), 4 << 20, "exactly the bound is read");
    }
}
