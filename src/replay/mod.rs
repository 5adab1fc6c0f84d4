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

pub mod html;
pub mod order;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::baseline::{Partition, Sample};
use crate::config::Settings;
use crate::detect::{Alert, DetectOptions, Publish, RuleSet, Worker};
use crate::ecs::{Origin, SourceRef};
use crate::enrich::Enricher;
use crate::parse::{self, reader, Dataset, ParseContext, TimestampSource};
use crate::process::{Clocks, Created, Input, Processor};
use report::{Hunt, Report, Sighting};

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
    fn open(settings: &Settings, target: Option<&str>) -> anyhow::Result<AlertOut> {
        Ok(match target {
            Some("-") => AlertOut::Writer(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            Some(path) => AlertOut::Writer(Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("--alerts-out {path}"))?,
            ))),
            None => AlertOut::Kafka {
                // A replay is a batch job: an alert the brokers do not take within the delivery timeout
                // fails it, instead of waiting for them without limit as the live service does.
                producer: crate::sink::producer_config(settings)
                    .set("message.timeout.ms", settings.kafka.delivery_timeout.as_millis().to_string())
                    .create()
                    .context("creating the alerts producer")?,
                topic: settings.output.alerts_topic.clone(),
                pending: Vec::new(),
            },
        })
    }

    fn write(&mut self, alert: &Alert) -> anyhow::Result<()> {
        let json = serde_json::to_vec(&alert.doc).expect("alerts serialize");
        match self {
            AlertOut::Writer(w) => {
                w.write_all(&json)?;
                w.write_all(b"\n")?;
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
                        Err((e, _)) => bail!("publishing an alert to {topic}: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            AlertOut::Writer(mut w) => w.flush()?,
            AlertOut::Kafka { topic, pending, .. } => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    for delivery in pending {
                        match delivery.await {
                            Ok(Ok(_)) => {}
                            Ok(Err((e, _))) => bail!("an alert was not acknowledged by {topic}: {e}"),
                            Err(_) => bail!("an alert's delivery was cancelled"),
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
        let json = self.serialize.then(|| serde_json::to_vec(&processed.doc).expect("documents serialize"));
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
    fn apply(&mut self, analysed: Option<Analysed>) -> anyhow::Result<()> {
        self.summary.records += 1;
        let Some(a) = analysed else {
            self.summary.unparsed += 1;
            return Ok(());
        };
        if let Some(sighting) = a.sighting {
            self.hunt.event(sighting);
        }
        if let (Some(out), Some(json)) = (self.enriched.as_mut(), &a.json) {
            out.write_all(json).context("writing --enriched-out")?;
            out.write_all(b"\n").context("writing --enriched-out")?;
        }
        self.summary.appliances.entry(a.host).or_default().0 += 1;
        self.publish(a.alerts)
    }

    fn publish(&mut self, alerts: Vec<Alert>) -> anyhow::Result<()> {
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
    fn finish_workers(&mut self, mut flushed: Vec<(String, Vec<Alert>)>) -> anyhow::Result<()> {
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

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A replay's identity: the same inputs, range, rules and mitigations give the same id.
fn run_id(options: &Options, inputs: &[(String, u64)], rules: &RuleSet) -> String {
    let mut h = Sha256::new();
    h.update(rfc3339(options.from));
    h.update(options.to.map(rfc3339).unwrap_or_default());
    for (name, size) in inputs {
        h.update(format!("\0{name}\0{size}"));
    }
    if let Some(m) = &options.metrics {
        h.update(format!("\0metrics\0{}", m.display()));
    }
    for (host, date) in &options.mitigations {
        h.update(format!("\0{host}={}", rfc3339(*date)));
    }
    h.update(rfc3339(options.publication));
    if let Some(dir) = &options.feeds_snapshot {
        h.update(format!("\0feeds\0{}", dir.display()));
    }
    for rule in &rules.rules {
        h.update(format!("\0{}@{}", rule.meta.id, rule.meta.version));
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Expands globs; a pattern that matches nothing is an error naming it.
pub fn expand(patterns: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            let mut matched: Vec<PathBuf> =
                glob::glob(pattern).with_context(|| format!("--input {pattern}"))?.filter_map(Result::ok).collect();
            if matched.is_empty() {
                bail!("--input {pattern}: matches no file");
            }
            matched.sort();
            out.extend(matched);
        } else {
            out.push(PathBuf::from(pattern));
        }
    }
    Ok(out)
}

/// A file's bytes, decompressed by extension (`.gz`, `.zst`); `-` is standard input, as it comes.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    open(path)?.read_to_end(&mut out).with_context(|| format!("reading {}", path.display()))?;
    Ok(out)
}

/// A file as a stream, decompressed by extension (`.gz`, `.zst`); `-` is standard input.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    const BUFFER: usize = 1 << 16;
    if path == Path::new("-") {
        return Ok(Box::new(std::io::BufReader::with_capacity(BUFFER, std::io::stdin())));
    }
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(std::io::BufReader::with_capacity(BUFFER, flate2::read::MultiGzDecoder::new(file))),
        Some("zst") => Box::new(std::io::BufReader::with_capacity(
            BUFFER,
            zstd::stream::read::Decoder::new(file).with_context(|| format!("{}", path.display()))?,
        )),
        _ => Box::new(std::io::BufReader::with_capacity(BUFFER, file)),
    })
}

/// The dataset a file name implies, looking through a compression extension.
fn hint_for(path: &Path) -> Option<Dataset> {
    let name = path.to_string_lossy();
    let name = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).unwrap_or(&name);
    Dataset::from_path(name)
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

/// The manifest of a feed snapshot directory.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    version: u32,
    as_of: DateTime<Utc>,
    feeds: Vec<SnapshotFeed>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotFeed {
    name: String,
    format: crate::enrich::feeds::Format,
    file: String,
    sha256: String,
}

const SNAPSHOT_MANIFEST: &str = "snapshot.json";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Settings whose feeds are those of the snapshot in `dir` (created from the configured feeds first
/// when `dir` does not exist), and the snapshot's time.
fn pin_feeds(settings: &Settings, dir: &Path) -> anyhow::Result<(Settings, DateTime<Utc>)> {
    let manifest = dir.join(SNAPSHOT_MANIFEST);
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("--feeds-snapshot {}", dir.display()))?;
        let mut feeds = Vec::new();
        for (i, feed) in settings.enrich.ioc.feeds.iter().enumerate() {
            let bytes =
                std::fs::read(&feed.path).with_context(|| format!("feed {}: {}", feed.name, feed.path.display()))?;
            let file =
                format!("{i:02}-{}", Path::new(&feed.path).file_name().and_then(|n| n.to_str()).unwrap_or("feed"));
            std::fs::write(dir.join(&file), &bytes)?;
            feeds.push(SnapshotFeed { name: feed.name.clone(), format: feed.format, file, sha256: sha256_hex(&bytes) });
        }
        let snapshot = Snapshot { version: 1, as_of: Utc::now(), feeds };
        std::fs::write(&manifest, serde_json::to_vec_pretty(&snapshot)?)?;
    }
    let snapshot: Snapshot = serde_json::from_slice(
        &std::fs::read(&manifest).with_context(|| format!("--feeds-snapshot: {}", manifest.display()))?,
    )
    .with_context(|| format!("--feeds-snapshot: {}", manifest.display()))?;
    let mut pinned = settings.clone();
    pinned.enrich.ioc.feeds.clear();
    for feed in &snapshot.feeds {
        let path = dir.join(&feed.file);
        let bytes = std::fs::read(&path).with_context(|| format!("--feeds-snapshot: {}", path.display()))?;
        if sha256_hex(&bytes) != feed.sha256 {
            bail!("--feeds-snapshot: {} changed since the snapshot was taken", path.display());
        }
        pinned.enrich.ioc.feeds.push(crate::config::FeedSettings {
            name: feed.name.clone(),
            path,
            format: feed.format,
        });
    }
    Ok((pinned, snapshot.as_of))
}

/// Runs a replay.
pub fn run(settings: &Settings, options: &Options) -> anyhow::Result<(Summary, Report)> {
    let (pinned, as_of) = match &options.feeds_snapshot {
        Some(dir) => {
            let (pinned, as_of) = pin_feeds(settings, dir)?;
            (Some(pinned), Some(as_of))
        }
        None => (None, None),
    };
    let settings = pinned.as_ref().unwrap_or(settings);
    if options.to.is_some_and(|to| to <= options.from) {
        bail!("--to must be later than --from");
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
        bail!("{} would all write to stdout", to_stdout.join(" and "));
    }
    let (enricher, events) = Enricher::load(settings, true).context("loading enrichment databases and feeds")?;
    drop(events);
    let detect = settings.detect.options();
    let (rules, errors) = RuleSet::load(&settings.detect.rules_dirs, &detect);
    if let Some(error) = errors.first() {
        bail!("rule file {}: {}", error.file, error.reason);
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
        enriched: match options.enriched_out.as_deref() {
            None => None,
            Some("-") => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            Some(path) => Some(Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("--enriched-out {path}"))?,
            ))),
        },
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
    let Engine { out, enriched, hunt, summary, .. } = engine;
    out.finish()?;
    if let Some(mut enriched) = enriched {
        enriched.flush().context("writing --enriched-out")?;
    }
    let header = Report {
        version: 1,
        run_id: summary.run_id.clone(),
        from: rfc3339(options.from),
        to: options.to.map(rfc3339),
        exploit_publication: rfc3339(options.publication),
        records: summary.records,
        unparsed: summary.unparsed,
        alerts: summary.alerts.clone(),
        appliances: Vec::new(),
    };
    let report = hunt.report(header, &options.mitigations, options.publication, options.to);
    if let Some(path) = &options.report {
        if path == Path::new("-") {
            std::io::stdout().write_all(report.markdown().as_bytes())?;
            return Ok((summary, report));
        }
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => report.json(),
            Some("md") => report.markdown(),
            Some("html") => report.html(),
            _ => bail!("--report {}: the name must end in .md, .json or .html", path.display()),
        };
        std::fs::write(path, text).with_context(|| format!("--report {}", path.display()))?;
    }
    Ok((summary, report))
}

/// The appliance of a file's records that do not name one (the appliance's own httpaccess, bash and
/// cron files): the directory the file sits in, as a collection laid out `<appliance>/<file>` has it.
fn directory_appliance(path: &Path) -> Option<String> {
    let dir = path.parent()?.file_name()?.to_str()?;
    (!dir.is_empty() && dir != "." && dir != "..").then(|| dir.to_owned())
}

/// Files: every record parsed once to learn its appliance and time, then replayed in event-time order
/// (ties in appliance, file and line order), each appliance's records by one worker thread with the
/// appliance's detection state. Files are read as streams and ordered by an external merge sort
/// ([`order`]), so memory stays within `sort_memory` plus the engine's whatever the input.
fn replay_files(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    options: &Options,
    inputs: &[(String, u64)],
    workers: usize,
) -> anyhow::Result<()> {
    // A record is read against the end of the replay window, else its file's modification time: never
    // the wall clock, so a replay's output does not depend on the day it runs.
    let mut clocks = Vec::new();
    let mut hints = Vec::new();
    let mut sorter = order::Sorter::new(options.sort_memory, std::env::temp_dir());
    // Records per appliance, to spread the appliances over the threads.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for (i, (name, _)) in inputs.iter().enumerate() {
        let path = Path::new(name);
        let hint = hint_for(path);
        let received = options.to.or_else(|| reader::file_clock(path)).unwrap_or_else(Utc::now);
        clocks.push(received);
        hints.push(hint);
        let dir = directory_appliance(path);
        let mut stream = reader::Stream::new(open(path)?);
        let mut record = reader::Record::default();
        while stream.next_into(&mut record).with_context(|| format!("reading {name}"))? {
            match parse::parse(record.text.as_bytes(), received, &analyser.ctx, hint) {
                // A record without a time of its own (an httperror line) is dated by the replay, and
                // belongs to it whatever the range.
                Ok(event)
                    if event.timestamp_source == TimestampSource::Record
                        || (event.timestamp >= options.from && options.to.is_none_or(|to| event.timestamp < to)) =>
                {
                    let host =
                        event.appliance().map(str::to_owned).or_else(|| dir.clone()).unwrap_or_else(|| "-".into());
                    let at = event.timestamp;
                    match sizes.get_mut(&host) {
                        Some(n) => *n += 1,
                        None => {
                            sizes.insert(host.clone(), 1);
                        }
                    }
                    let text = std::mem::take(&mut record.text);
                    sorter
                        .push(order::Item { host, at, file: i as u32, line: record.line as u64, text })
                        .context("ordering the records")?;
                }
                Ok(_) => {}
                Err(_) => {
                    engine.summary.records += 1;
                    engine.summary.unparsed += 1;
                }
            }
        }
    }
    let (ordered, stats) = sorter.finish().context("ordering the records")?;
    engine.summary.sort_runs = stats.runs;
    let files = Files { names: inputs, clocks: &clocks, hints: &hints };
    let flushed = process_in_order(engine, analyser, options, &files, ordered, &sizes, workers)?;
    engine.finish_workers(flushed)
}

/// What the records of a file replay need from their file.
struct Files<'a> {
    names: &'a [(String, u64)],
    clocks: &'a [DateTime<Utc>],
    hints: &'a [Option<Dataset>],
}

/// Appliance → thread: the largest appliances first, each to the thread with the fewest records so far
/// (ties to the lower thread), so the threads finish together as far as the appliances allow. The output
/// does not depend on it: each appliance's records stay in order on one thread, and what they give is
/// written in the merge's order.
fn spread(sizes: &HashMap<String, u64>, workers: usize) -> HashMap<String, usize> {
    let mut by_size: Vec<(&String, u64)> = sizes.iter().map(|(h, n)| (h, *n)).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut load = vec![0u64; workers.max(1)];
    let mut out = HashMap::new();
    for (host, n) in by_size {
        let thread = (0..load.len()).min_by_key(|t| load[*t]).expect("at least one thread");
        load[thread] += n;
        out.insert(host.clone(), thread);
    }
    out
}

/// Records handed to the worker threads at once: consecutive in the merge's order, split by thread.
const CHUNK: usize = 512;
/// Most chunks dispatched and not yet written out: bounds the memory of a replay's reordering whatever
/// the speed of each thread.
const OUTSTANDING_CHUNKS: usize = 16;

/// The ordered records through `workers` threads: each appliance's records go to one thread (its
/// detection state lives there), in order; what they give is written out in the merge's order, so the
/// output is the same for any number of threads. Returns what each appliance's detection state still
/// held at the end.
fn process_in_order(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    options: &Options,
    files: &Files<'_>,
    ordered: order::Merge,
    sizes: &HashMap<String, u64>,
    workers: usize,
) -> anyhow::Result<Vec<(String, Vec<Alert>)>> {
    enum Out {
        Records(Vec<(u64, Option<Analysed>)>),
        Flushed(Vec<(String, Vec<Alert>)>),
    }
    let workers = workers.max(1);
    let bar = progress_bar(options, sizes.values().sum());
    let mut flushed = Vec::new();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Out>(OUTSTANDING_CHUNKS * workers);
        // A token per chunk between dispatch and write-out.
        let (token_tx, token_rx) = std::sync::mpsc::sync_channel::<()>(OUTSTANDING_CHUNKS);
        let mut inputs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, order::Item)>>(OUTSTANDING_CHUNKS);
            let out_tx = out_tx.clone();
            inputs.push(tx);
            threads.push(scope.spawn(move || {
                let mut states: HashMap<String, Worker> = HashMap::new();
                for part in rx {
                    let mut results = Vec::with_capacity(part.len());
                    for (seq, item) in part {
                        if !states.contains_key(&item.host) {
                            states.insert(item.host.clone(), Worker::new(Publish::Final));
                        }
                        let state = states.get_mut(&item.host).expect("inserted above");
                        let file = item.file as usize;
                        let origin = Origin::File { file: &files.names[file].0, line: item.line as usize };
                        let appliance = (item.host != "-").then_some(item.host.as_str());
                        let (received, hint) = (files.clocks[file], files.hints[file]);
                        results.push((
                            seq,
                            analyser.analyse(state, item.text.as_bytes(), received, hint, origin, appliance),
                        ));
                    }
                    if out_tx.send(Out::Records(results)).is_err() {
                        return; // the writer stopped on an error
                    }
                }
                let _ = out_tx.send(Out::Flushed(states.into_iter().map(|(h, mut w)| (h, w.flush_all())).collect()));
            }));
        }
        drop(out_tx);
        let reader = scope.spawn(move || -> anyhow::Result<()> {
            let thread_of = spread(sizes, workers);
            let mut ordered = ordered.enumerate().peekable();
            while ordered.peek().is_some() {
                let mut parts: Vec<Vec<(u64, order::Item)>> = (0..workers).map(|_| Vec::new()).collect();
                for (seq, item) in ordered.by_ref().take(CHUNK) {
                    let item = item.context("ordering the records")?;
                    parts[thread_of.get(&item.host).copied().unwrap_or(0)].push((seq as u64, item));
                }
                if token_tx.send(()).is_err() {
                    return Ok(()); // the writer stopped on an error
                }
                for (thread, part) in parts.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                    if inputs[thread].send(part).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        let mut next = 0u64;
        let mut waiting = BTreeMap::new();
        let mut written = Ok(());
        'out: for out in out_rx {
            match out {
                Out::Records(results) => {
                    waiting.extend(results);
                    while let Some(analysed) = waiting.remove(&next) {
                        if next.is_multiple_of(CHUNK as u64) {
                            let _ = token_rx.recv();
                            bar.set_position(next);
                            if let Some(a) = &analysed {
                                bar.set_message(format!("{} at {}", a.host, rfc3339(a.at)));
                            }
                        }
                        next += 1;
                        written = engine.apply(analysed);
                        if written.is_err() {
                            break 'out;
                        }
                    }
                }
                Out::Flushed(states) => flushed.extend(states),
            }
        }
        drop(token_rx);
        let read = reader.join().map_err(|_| anyhow!("the replay reader panicked"))?;
        for thread in threads {
            thread.join().map_err(|_| anyhow!("a replay worker panicked"))?;
        }
        written?;
        read
    })?;
    bar.finish_and_clear();
    Ok(flushed)
}

/// Kafka: an ephemeral group (never committed); every partition read from its offset for `from` to the
/// offset for `to` (or its end) by a thread and consumer of its own, in parallel, each with its own
/// detection state, as live. Records are selected by their timestamps, `from <= timestamp < to`.
fn replay_kafka(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    settings: &Settings,
    options: &Options,
    topic: &str,
) -> anyhow::Result<()> {
    let mut config = crate::source::consumer_config(settings);
    config
        .set("group.id", format!("{}.replay.{}", settings.kafka.group_id, engine.run_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "latest");
    let consumer: BaseConsumer = config.create().context("creating the replay consumer")?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).context("reading topic metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic}: not found, or it has no partitions");
    }
    let at = |t: DateTime<Utc>| -> anyhow::Result<HashMap<i32, Offset>> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(t.timestamp_millis()))?;
        }
        let found = consumer.offsets_for_times(tpl, timeout).context("looking up offsets for times")?;
        Ok(found.elements().iter().map(|e| (e.partition(), e.offset())).collect())
    };
    let starts = at(options.from)?;
    let ends: HashMap<i32, Offset> = match options.to {
        Some(to) => at(to)?,
        None => HashMap::new(),
    };
    // (partition, first offset, end offset if bounded)
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
    drop(consumer);
    let hint = settings.topic_datasets().get(topic).copied();
    let bar = progress_bar(options, total);
    /// What a partition thread sends: per record read, its timestamp and, when in range, what it gave;
    /// at its end, the alerts its detection state still held.
    enum Step {
        Read(i32, Option<DateTime<Utc>>, Option<Option<Box<Analysed>>>),
        Done(Vec<Alert>),
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Step>(4096);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut threads = Vec::new();
        for (p, start, end) in plan {
            let (tx, config) = (tx.clone(), config.clone());
            threads.push(scope.spawn(move || -> anyhow::Result<()> {
                let consumer: BaseConsumer = config.create().context("creating a partition reader")?;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
                consumer.assign(&tpl)?;
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
                                bail!("{topic}/{p}: no data for a minute before its end");
                            }
                            continue;
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) => return finish(&mut worker),
                        Some(Err(e)) => bail!("reading {topic}/{p}: {e}"),
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
            }));
        }
        drop(tx);
        let mut failed = None;
        for step in rx {
            let applied = match step {
                Step::Read(p, ts, analysed) => {
                    bar.inc(1);
                    if let Some(t) = ts {
                        bar.set_message(format!("partition {p} at {}", rfc3339(t)));
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
            thread.join().map_err(|_| anyhow!("a partition reader panicked"))??;
        }
        failed.map_or(Ok(()), Err)
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Metric samples (NDJSON, optionally compressed) through the baselines, per appliance in time order.
fn replay_metrics(engine: &mut Engine, settings: &Settings, options: &Options, path: &Path) -> anyhow::Result<()> {
    let bytes = read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let name = path.display().to_string();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sample = Sample::parse(line.as_bytes()).map_err(|e| anyhow!("{name}:{}: {e}", i + 1))?;
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
            .map_err(|e| anyhow!("{name}:{line}: {e}"))?;
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
        assert_eq!(read_file(&gz).unwrap(), text);
        assert_eq!(read_file(&zst).unwrap(), text);
        let pattern = format!("{}/*.log.*", dir.path().display());
        assert_eq!(expand(&[pattern]).unwrap(), vec![gz, zst]);
        assert!(expand(&[format!("{}/none-*.log", dir.path().display())]).is_err());
    }
}
