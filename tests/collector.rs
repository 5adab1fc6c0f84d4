//! OpenTelemetry export to a real collector, over OTLP/HTTP and OTLP/gRPC: rotel (PyPI `rotel`, an
//! OpenTelemetry collector written in Rust; `.tools/bin/rotel-agent`, installed by scripts/setup.sh)
//! with its debug exporter, which prints every metric data point and span it received. gatewatch runs
//! against the broker on real ADC lines; what the collector printed must match, series by series, what
//! the service's own `/metrics` says at the end, and carry the configured resource attributes.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

type Attributes = BTreeMap<String, String>;

/// One number the collector printed: the latest of each (resource, metric, attributes) wins.
#[derive(Debug, Clone)]
struct Point {
    resource: Attributes,
    metric: String,
    attributes: Attributes,
    value: f64,
}

#[derive(Debug, Clone, Default)]
struct Span {
    resource: Attributes,
    id: String,
    name: String,
    attributes: Attributes,
}

#[derive(Debug, Default)]
struct Printed {
    points: Vec<Point>,
    spans: Vec<Span>,
}

impl Printed {
    /// The latest value of `metric` with exactly these attributes, from the resource `run`.
    fn latest(&self, run: &str, metric: &str, attributes: &Attributes) -> Option<f64> {
        self.points
            .iter()
            .rev()
            .find(|p| {
                p.resource.get("test_run").map(String::as_str) == Some(run)
                    && p.metric == metric
                    && &p.attributes == attributes
            })
            .map(|p| p.value)
    }
}

/// `Str(x)`, `Int(3)`, `Double(0.5)`, `Bool(true)` → the text inside.
fn attribute_value(text: &str) -> String {
    match (text.find('('), text.rfind(')')) {
        (Some(open), Some(close)) if close > open => text[open + 1..close].to_owned(),
        _ => text.to_owned(),
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses rotel's `--debug-log-verbosity detailed` output (the OpenTelemetry Collector's debug
/// exporter format).
fn parse_debug_log(text: &str) -> Printed {
    #[derive(PartialEq)]
    enum Target {
        None,
        Resource,
        Point,
        Span,
    }
    let mut printed = Printed::default();
    let (mut resource, mut metric, mut point_attributes) = (Attributes::new(), String::new(), Attributes::new());
    let mut target = Target::None;
    let mut span: Option<Span> = None;
    for raw in text.lines() {
        let line = strip_ansi(raw);
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceMetrics #") || trimmed.starts_with("ResourceSpans #") {
            printed.spans.extend(span.take());
            resource = Attributes::new();
            target = Target::None;
        } else if trimmed == "Resource attributes:" {
            target = Target::Resource;
        } else if trimmed.starts_with("Metric #") || trimmed.starts_with("ScopeMetrics #") || trimmed == "Descriptor:" {
            target = Target::None;
        } else if let Some(name) = trimmed.strip_prefix("-> Name: ").filter(|_| target == Target::None) {
            metric = name.to_owned();
        } else if trimmed.starts_with("NumberDataPoints #") {
            point_attributes = Attributes::new();
            target = Target::None;
        } else if trimmed == "Data point attributes:" {
            target = Target::Point;
        } else if let Some(value) = trimmed.strip_prefix("Value: ") {
            if let Ok(value) = value.parse() {
                printed.points.push(Point {
                    resource: resource.clone(),
                    metric: metric.clone(),
                    attributes: point_attributes.clone(),
                    value,
                });
            }
            target = Target::None;
        } else if trimmed.starts_with("Span #") {
            printed.spans.extend(span.take());
            span = Some(Span { resource: resource.clone(), ..Default::default() });
            target = Target::None;
        } else if let Some(id) = trimmed.strip_prefix("ID").and_then(|r| r.trim_start().strip_prefix(": ")) {
            if let Some(span) = span.as_mut() {
                span.id = id.to_owned();
            }
        } else if let Some(name) = trimmed.strip_prefix("Name").and_then(|r| r.trim_start().strip_prefix(": ")) {
            if let Some(span) = span.as_mut() {
                span.name = name.to_owned();
            }
        } else if trimmed == "Attributes:" && span.is_some() {
            target = Target::Span;
        } else if let Some((key, value)) = trimmed.strip_prefix("-> ").and_then(|kv| kv.split_once(": ")) {
            let (key, value) = (key.to_owned(), attribute_value(value));
            match target {
                Target::Resource => {
                    resource.insert(key, value);
                }
                Target::Point => {
                    point_attributes.insert(key, value);
                }
                Target::Span => {
                    if let Some(span) = span.as_mut() {
                        span.attributes.insert(key, value);
                    }
                }
                Target::None => {}
            }
        } else if !trimmed.starts_with("-> ") && !trimmed.is_empty() && target != Target::Span {
            // Timestamps, descriptors' other fields: nothing to keep, and no attribute list goes on.
            if target == Target::Point {
                target = Target::None;
            }
        }
    }
    printed.spans.extend(span);
    printed
}

struct Collector {
    child: Child,
    out: PathBuf,
    http: String,
    grpc: String,
    _dir: tempfile::TempDir,
}

impl Collector {
    fn start() -> Collector {
        let binary = std::env::var_os("GATEWATCH_ROTEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/rotel-agent"));
        assert!(binary.exists(), "{} missing: run scripts/setup.sh", binary.display());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rotel.out");
        let (http, grpc) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(binary)
            .args(["start", "--otlp-http-endpoint", &http, "--otlp-grpc-endpoint", &grpc])
            .args(["--exporter", "blackhole", "--debug-log", "metrics", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed", "--batch-timeout", "100ms"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [&http, &grpc] {
            while std::net::TcpStream::connect(addr).is_err() {
                assert!(Instant::now() < deadline, "rotel does not listen on {addr}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Collector { child, out, http, grpc, _dir: dir }
    }

    fn printed(&self) -> Printed {
        parse_debug_log(&String::from_utf8_lossy(&std::fs::read(&self.out).unwrap()))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics` series of these families, as (OTLP name, attributes, value).
fn prometheus_series(body: &str, families: &[&str]) -> Vec<(String, Attributes, f64)> {
    let mut series = Vec::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else { continue };
        let (name, labels) = match name_labels.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        if !families.contains(&name) {
            continue;
        }
        let attributes: Attributes = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once("=\""))
            .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
            .collect();
        series.push((name.trim_end_matches("_total").to_owned(), attributes, value.parse().unwrap()));
    }
    series
}

/// The records of all `pipeline.batch` spans of the run `run`. An exporter that retries a batch the
/// collector was slow to acknowledge delivers its spans twice: each span id counts once.
fn batched_records(printed: &Printed, run: &str) -> i64 {
    let mut seen = std::collections::HashSet::new();
    printed
        .spans
        .iter()
        .filter(|s| s.name == "pipeline.batch" && s.resource.get("test_run").map(String::as_str) == Some(run))
        .filter(|s| s.id.is_empty() || seen.insert(s.id.clone()))
        .filter_map(|s| s.attributes.get("records").and_then(|r| r.parse::<i64>().ok()))
        .sum()
}

const FAMILIES: &[&str] = &[
    "gatewatch_records_in_total",
    "gatewatch_records_out_total",
    "gatewatch_parse_results_total",
    "gatewatch_parse_errors_total",
    "gatewatch_rule_hits_total",
    "gatewatch_alerts_total",
    "gatewatch_dlq_records_total",
    "gatewatch_reloads_total",
    "gatewatch_baseline_series",
    "gatewatch_rules_loaded",
];

fn exports_to_the_collector(protocol: &str) {
    let collector = Collector::start();
    let endpoint = format!("http://{}", if protocol == "grpc" { &collector.grpc } else { &collector.http });
    let broker = Broker::start();
    let topics = Topics::new(&format!("rotel-{protocol}"));
    topics.create(&broker, 2);
    let mut records: Vec<_> = sample_lines().into_iter().map(|l| (None, None, l)).collect();
    records.push((Some(0), None, b"not an adc line".to_vec()));
    broker.produce(&topics.input, &records);
    // Three CPU samples of one appliance: one series, still warming up.
    let samples = warming_cpu_samples("VPX01", 3);
    broker.produce(&topics.metrics, &samples);
    let run = format!("{protocol}-{}", std::process::id());
    let gw = Gatewatch::spawn(
        &broker,
        &topics,
        &[
            ("GATEWATCH__TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("GATEWATCH__TELEMETRY__OTLP_PROTOCOL", protocol),
            ("GATEWATCH__TELEMETRY__EXPORT_INTERVAL", "1s"),
            ("GATEWATCH__TELEMETRY__RESOURCE_ATTRIBUTES__TEST_RUN", &run),
            ("GATEWATCH__BASELINE__SNAPSHOT_INTERVAL", "1s"),
            // Records reach the offset ledger (and its delivery counters) with their state snapshot.
            ("GATEWATCH__DETECT__SNAPSHOT_INTERVAL", "200ms"),
        ],
    );
    // Everything consumed and the outputs settled (alerts included), as the service itself reports.
    let records_in = format!("gatewatch_records_in_total{{topic=\"{}\"}}", topics.input);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    loop {
        let (_, body) = gw.get("/metrics").unwrap_or_default();
        let settled = metric_value(&body, &records_in) == records.len() as f64
            && metric_value(&body, "gatewatch_baseline_series{state=\"warming\"}") == 1.0
            && prometheus_series(&body, FAMILIES) == prometheus_series(&last, FAMILIES);
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "gatewatch did not settle; log:\n{}", gw.log_text());
        last = body;
        std::thread::sleep(Duration::from_millis(1500));
    }
    let expected = prometheus_series(&last, FAMILIES);
    // Today: about 35 series (per topic, dataset, rule, stage, reason, component).
    assert!(expected.len() >= 20, "too few series to compare: {expected:?}");
    let names: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    for family in ["gatewatch_rule_hits", "gatewatch_alerts", "gatewatch_dlq_records", "gatewatch_reloads"] {
        assert!(names.contains(&family), "{family} missing from /metrics:\n{last}");
    }
    assert!(expected.iter().any(|(n, _, v)| n == "gatewatch_alerts" && *v > 0.0), "no alert raised:\n{last}");

    // The collector printed every one of those series with the service's own value.
    let deadline = Instant::now() + Duration::from_secs(30);
    let printed = loop {
        let printed = collector.printed();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, attributes, value)| printed.latest(&run, name, attributes) != Some(*value))
            .collect();
        let lag = printed
            .points
            .iter()
            .any(|p| p.metric == "gatewatch_consumer_lag" && p.attributes.get("topic") == Some(&topics.input));
        // Spans are exported in batches of their own: wait for ones that carry records.
        let spans = batched_records(&printed, &run) > 0 && printed.spans.iter().any(|s| s.name == "offsets.ack");
        if missing.is_empty() && lag && spans {
            break printed;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not print, as /metrics has them: {missing:?} (lag seen: {lag}, spans seen: {spans}); \
             gatewatch log:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Consumer lag per input partition, plausible: between none and everything.
    let lags: Vec<f64> = printed
        .points
        .iter()
        .filter(|p| p.metric == "gatewatch_consumer_lag" && p.attributes.get("topic") == Some(&topics.input))
        .map(|p| p.value)
        .collect();
    assert!(lags.iter().all(|l| (0.0..=records.len() as f64).contains(l)), "lag {lags:?}");
    // The resource: service name and the configured attribute, on metrics and spans alike.
    let point = printed.points.iter().find(|p| p.resource.get("test_run") == Some(&run)).unwrap();
    assert_eq!(point.resource.get("service.name").map(String::as_str), Some("gatewatch"));
    let spans: Vec<&Span> = printed.spans.iter().filter(|s| s.resource.get("test_run") == Some(&run)).collect();
    assert!(spans.iter().all(|s| s.resource.get("service.name").map(String::as_str) == Some("gatewatch")));
    // Batch spans, not per-record ones: their `records` (log lines and metric samples alike) add up to
    // at most what came in.
    let batched = batched_records(&printed, &run);
    let consumed = (records.len() + samples.len()) as i64;
    assert!(batched > 0 && batched <= consumed, "records in batch spans: {batched} of {consumed}");
    assert!(spans.len() < records.len(), "spans are per batch, not per record: {}", spans.len());
}

#[test]
fn metrics_and_spans_reach_the_rotel_collector_over_http() {
    exports_to_the_collector("http");
}

#[test]
fn metrics_and_spans_reach_the_rotel_collector_over_grpc() {
    exports_to_the_collector("grpc");
}

#[test]
fn the_debug_log_parser_reads_points_spans_and_resources() {
    let text = "ResourceMetrics #0\nResource attributes:\n     -> service.name: Str(gatewatch)\n     -> test_run: Str(r)\n\
ScopeMetrics #0\nMetric #0\nDescriptor:\n     -> Name: gatewatch_records_out\n     -> DataType: Sum\n\
NumberDataPoints #0\nData point attributes:\n     -> topic: Str(adc.enriched)\nStartTimestamp: 1\nTimestamp: 2\nValue: 28\n\
NumberDataPoints #1\nData point attributes:\n     -> topic: Str(adc.dlq)\nValue: 1\n\
ResourceSpans #0\nResource attributes:\n     -> test_run: Str(r)\nSpan #0\n    Name           : pipeline.batch\n\
Attributes:\n     -> records: Int(12)\n";
    let printed = parse_debug_log(text);
    let topic = |t: &str| Attributes::from([("topic".to_owned(), t.to_owned())]);
    assert_eq!(printed.latest("r", "gatewatch_records_out", &topic("adc.enriched")), Some(28.0));
    assert_eq!(printed.latest("r", "gatewatch_records_out", &topic("adc.dlq")), Some(1.0));
    assert_eq!(printed.spans.len(), 1);
    assert_eq!(printed.spans[0].name, "pipeline.batch");
    assert_eq!(printed.spans[0].attributes.get("records").map(String::as_str), Some("12"));
}
