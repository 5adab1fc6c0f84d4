//! Field for field against Elastic's `citrix_adc` integration: its own ingest-pipeline tests (inputs and
//! `-expected.json` documents, under `tests/fixtures/elastic/`) through `gatewatch parse`.
//!
//! Compared: every field of an expected document in `citrix_adc.log.*`, `source`, `destination`,
//! `client`, `server`, `user`, `event.{action,outcome,category,type,kind}`, `http`, `url`, `observer`,
//! `network`, `@timestamp` and `message` — except `*.geo.*` and `*.as.*`, which come from a GeoIP
//! database (Elastic's tests use MaxMind's test databases; the enrichment tests cover ours). A
//! difference we keep on purpose is listed in `allow-list.toml` with its reason: it is reported and
//! counted as a disagreement, never as agreement. Any other difference fails the test.
//!
//! Run with `-- --nocapture` to see the agreement per file and in total.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const FAMILIES: &[&str] = &[
    "citrix_adc.log.",
    "source.",
    "destination.",
    "client.",
    "server.",
    "user.",
    "event.action",
    "event.outcome",
    "event.category",
    "event.type",
    "event.kind",
    "http.",
    "url.",
    "observer.",
    "network.",
    "@timestamp",
    "message",
];

fn compared(field: &str) -> bool {
    FAMILIES.iter().any(|f| if f.ends_with('.') { field.starts_with(f) } else { field == *f })
        && !field.contains(".geo.")
        && !field.contains(".as.")
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Equal as Elasticsearch would index them: numbers by value (`0` and `0.0`; a string holding a
/// number is coerced into a numeric field, and a number is indexed as its text in a keyword field),
/// dates by instant, arrays as sets.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            s.parse::<f64>().ok() == n.as_f64() && !s.is_empty()
        }
        (Value::Array(a), Value::Array(b)) => {
            let sorted = |v: &Vec<Value>| {
                let mut s: Vec<String> = v.iter().map(Value::to_string).collect();
                s.sort();
                s.dedup();
                s
            };
            sorted(a) == sorted(b)
        }
        // Dates by instant (`2025-01-12T21:06:37Z` and `...37.000Z`).
        (Value::String(a), Value::String(b)) if a != b => {
            match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        (Value::Array(a), b) if a.len() == 1 => same(&a[0], b),
        (a, Value::Array(b)) if b.len() == 1 => same(a, &b[0]),
        (a, b) => a == b,
    }
}

#[derive(Debug, serde::Deserialize)]
struct AllowList {
    difference: Vec<Allowed>,
}

/// A difference kept on purpose: `field` in `files` (test names; none = every file), optionally only
/// for some records, with the reason.
#[derive(Debug, serde::Deserialize)]
struct Allowed {
    field: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    records: Vec<usize>,
    reason: String,
}

impl Allowed {
    fn covers(&self, file: &str, record: usize, field: &str) -> bool {
        let field_matches = match self.field.strip_suffix('*') {
            Some(prefix) => field.starts_with(prefix),
            None => field == self.field,
        };
        field_matches
            && (self.files.is_empty() || self.files.iter().any(|f| f == file))
            && (self.records.is_empty() || self.records.contains(&record))
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    compared: usize,
    agreed: usize,
    allowed: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.compared += other.compared;
        self.agreed += other.agreed;
        self.allowed += other.allowed;
    }

    fn percent(&self) -> f64 {
        100.0 * self.agreed as f64 / self.compared.max(1) as f64
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elastic")
}

/// The test inputs: `NAME` with `NAME-expected.jsonl` next to it, and `NAME.toml` when the test has
/// settings (Elastic's `-config.yml`, in our terms).
fn cases(dir: &Path) -> Vec<(String, PathBuf, PathBuf, Option<PathBuf>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(test) = name.strip_suffix("-expected.jsonl") else { continue };
        let input = dir.join(test);
        assert!(input.exists(), "{name} has no input {test}");
        let config = dir.join(format!("{test}.toml"));
        out.push((test.to_owned(), input, path, config.exists().then_some(config)));
    }
    out.sort();
    out
}

/// Elastic's JSON inputs (`{"events": [{"message": ...}]}`) as the lines a relay would deliver.
fn as_lines(input: &Path, dir: &Path) -> PathBuf {
    if input.extension().is_none_or(|e| e != "json") {
        return input.to_owned();
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    let mut text = String::new();
    for event in doc["events"].as_array().unwrap() {
        text.push_str(event["message"].as_str().unwrap().trim_end_matches('\n'));
        text.push('\n');
    }
    let lines = dir.join(input.file_name().unwrap()).with_extension("log");
    std::fs::write(&lines, text).unwrap();
    // Records without a date of their own are dated by the shipper's `@timestamp` in Elastic's tests;
    // a file's records without one are dated by its clock (modification time) in gatewatch.
    let shipped: Vec<&str> =
        doc["events"].as_array().unwrap().iter().filter_map(|e| e["@timestamp"].as_str()).collect();
    // (Where the events were shipped at different times, as in the month-first test, each carries a date.)
    if let Some(first) = shipped.first().filter(|first| shipped.iter().all(|t| t == *first)) {
        let at = chrono::DateTime::parse_from_rfc3339(first).unwrap();
        let file = std::fs::File::options().write(true).open(&lines).unwrap();
        file.set_modified(std::time::SystemTime::from(at)).unwrap();
    }
    lines
}

fn parse(input: &Path, config: Option<&Path>) -> Vec<BTreeMap<String, Value>> {
    let tmp = tempfile::tempdir().unwrap();
    let input = &as_lines(input, tmp.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    cmd.arg("parse").env_clear().current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.arg(input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut flat = BTreeMap::new();
            flatten("", &serde_json::from_slice(l).unwrap(), &mut flat);
            flat
        })
        .collect()
}

#[test]
fn elastic_pipeline_tests_agree_field_for_field() {
    let dir = fixtures();
    let allow: AllowList = toml::from_str(&std::fs::read_to_string(dir.join("allow-list.toml")).unwrap()).unwrap();
    let mut total = Tally::default();
    let mut ours = Tally::default();
    let mut unexplained = Vec::new();
    let mut allowed_seen = vec![0usize; allow.difference.len()];
    println!("{:<58} {:>8} {:>7} {:>8} {:>7}", "Elastic pipeline test", "compared", "agree", "allowed", "%");
    for (test, input, expected, config) in cases(&dir) {
        let actual = parse(&input, config.as_deref());
        let mut file = Tally::default();
        let mut records = 0;
        for line in std::fs::read_to_string(&expected).unwrap().lines() {
            let case: Value = serde_json::from_str(line).unwrap();
            let record = case["record"].as_u64().unwrap() as usize;
            records += 1;
            let Some(doc) = actual.get(record - 1) else {
                unexplained.push(format!("{test} #{record}: no output record"));
                continue;
            };
            let mut fields = BTreeMap::new();
            flatten("", &case["expected"], &mut fields);
            for (field, want) in fields.iter().filter(|(f, _)| compared(f)) {
                let mut tally = Tally { compared: 1, ..Default::default() };
                let got = doc.get(field);
                if got.is_some_and(|g| same(want, g)) {
                    tally.agreed = 1;
                } else if let Some(i) = allow.difference.iter().position(|a| a.covers(&test, record, field)) {
                    tally.allowed = 1;
                    allowed_seen[i] += 1;
                } else {
                    unexplained.push(format!(
                        "{test} #{record}: {field}: Elastic {want}, gatewatch {}",
                        got.map_or("(absent)".to_owned(), Value::to_string)
                    ));
                }
                file.add(tally);
                if field.starts_with("citrix_adc.log.") {
                    ours.add(tally);
                }
            }
        }
        assert_eq!(actual.len(), records, "{test}: records out vs expected documents");
        println!("{test:<58} {:>8} {:>7} {:>8} {:>6.1}%", file.compared, file.agreed, file.allowed, file.percent());
        total.add(file);
    }
    println!(
        "{:<58} {:>8} {:>7} {:>8} {:>6.1}%",
        "total",
        total.compared,
        total.agreed,
        total.allowed,
        total.percent()
    );
    println!(
        "{:<58} {:>8} {:>7} {:>8} {:>6.1}%",
        "  of which citrix_adc.log.*",
        ours.compared,
        ours.agreed,
        ours.allowed,
        ours.percent()
    );
    println!("\nallowed differences (allow-list.toml):");
    for (a, n) in allow.difference.iter().zip(&allowed_seen) {
        println!("  {n:>4} × {} — {}", a.field, a.reason);
    }
    assert!(unexplained.is_empty(), "{} unexplained differences:\n{}", unexplained.len(), unexplained.join("\n"));
    for (a, n) in allow.difference.iter().zip(&allowed_seen) {
        assert!(*n > 0, "allow-list entry {} matches no difference: remove it", a.field);
    }
    assert!(total.percent() >= 95.0, "overall agreement {:.1}% < 95%", total.percent());
    assert!(ours.percent() >= 95.0, "citrix_adc.log.* agreement {:.1}% < 95%", ours.percent());
}

/// The same comparison against SEKOIA's intake-format tests for Citrix ADC (`Citrix/citrix-adc/tests/*.json`
/// of SEKOIA-IO/intake-formats: an input message and the fields SEKOIA's parser is expected to give). No
/// licence is visible in that repository, so its tests are not copied here: point
/// `GATEWATCH_SEKOIA_INTAKE_FORMATS` at a checkout and run
/// `cargo test --test elastic_compat -- --ignored --nocapture`. SEKOIA's own taxonomy (`observer.name`,
/// `*.address`, the whole line as `message`, `event.type: start` for a login) is not what gatewatch follows,
/// so this is a report: it lists every difference and asserts only that each test input is parsed into one
/// event.
#[test]
#[ignore = "needs a checkout of SEKOIA-IO/intake-formats in GATEWATCH_SEKOIA_INTAKE_FORMATS"]
fn sekoia_intake_format_tests_field_for_field_report() {
    let root =
        PathBuf::from(std::env::var("GATEWATCH_SEKOIA_INTAKE_FORMATS").expect("GATEWATCH_SEKOIA_INTAKE_FORMATS"));
    let mut tests: Vec<PathBuf> = std::fs::read_dir(root.join("Citrix/citrix-adc/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no SEKOIA tests under {}", root.display());
    let tmp = tempfile::tempdir().unwrap();
    let mut total = Tally::default();
    let mut differences = Vec::new();
    println!("{:<58} {:>8} {:>7} {:>7}", "SEKOIA intake-format test", "compared", "agree", "%");
    for path in &tests {
        let test = path.file_name().unwrap().to_string_lossy().into_owned();
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let input = tmp.path().join(format!("{test}.log"));
        std::fs::write(&input, format!("{}\n", case["input"]["message"].as_str().unwrap().replace('\n', " "))).unwrap();
        let actual = parse(&input, None);
        assert_eq!(actual.len(), 1, "{test}: one event per input");
        let mut fields = BTreeMap::new();
        flatten("", &case["expected"], &mut fields);
        let mut file = Tally::default();
        for (field, want) in fields.iter().filter(|(f, _)| compared(f)) {
            let got = actual[0].get(field);
            let agreed = got.is_some_and(|g| same(want, g));
            file.add(Tally { compared: 1, agreed: usize::from(agreed), allowed: 0 });
            if !agreed {
                differences.push(format!(
                    "{test}: {field}: SEKOIA {want}, gatewatch {}",
                    got.map_or("(absent)".to_owned(), Value::to_string)
                ));
            }
        }
        println!("{test:<58} {:>8} {:>7} {:>6.1}%", file.compared, file.agreed, file.percent());
        total.add(file);
    }
    println!("{:<58} {:>8} {:>7} {:>6.1}%", "total", total.compared, total.agreed, total.percent());
    println!("\ndifferences:\n{}", differences.join("\n"));
}
