//! The parser against real data: every line of the public-sample fixtures parses, and golden records
//! pin the key fields of one line per event type.
//!
//! The golden records are the lines of `tests/fixtures/golden/events.jsonl`; what they must parse to is
//! the insta snapshot `tests/snapshots/parse_fixtures__golden_events.snap`. After a deliberate change to
//! the output, review it with `cargo insta review` (or `INSTA_UPDATE=always cargo test --test
//! parse_fixtures` and read the diff).

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use gatewatch::ecs::{event_doc, Origin};
use gatewatch::parse::{parse, reader, Dataset, ParseContext};
use serde_json::{Map, Value};

fn received() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap()
}

fn sample_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/fixtures/public-samples")];
    // The shared fixture set (beside the checkout in this workplace and in CI) includes files whose
    // licence keeps them out of the repository.
    let shared = root.join("../shared/fixtures/public-samples");
    if shared.is_dir() {
        dirs.push(shared);
    }
    dirs
}

/// Blocks of consecutive non-comment lines, with the dataset a `# --- path` marker names.
fn blocks(text: &str) -> Vec<(Option<Dataset>, usize, String)> {
    let mut out = Vec::new();
    let mut hint = None;
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.split('\n').enumerate() {
        if line.starts_with('#') {
            if !current.trim().is_empty() {
                out.push((hint, start, std::mem::take(&mut current)));
            }
            current.clear();
            if let Some(path) = line.strip_prefix("# --- ") {
                hint = path.split_whitespace().next().and_then(Dataset::from_path);
            }
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        out.push((hint, start, current));
    }
    out
}

#[test]
fn every_public_sample_line_parses() {
    let ctx = ParseContext::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in sample_dirs() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (hint, first_line, block) in blocks(&text) {
                for record in reader::records(&block) {
                    checked += 1;
                    if let Err(e) = parse(record.text.as_bytes(), received(), &ctx, hint) {
                        failures.push(format!(
                            "{}:{}: {e}: {}",
                            path.display(),
                            first_line + record.line - 1,
                            record.text
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 400, "only {checked} records read");
    assert!(failures.is_empty(), "{} of {checked} records failed:\n{}", failures.len(), failures.join("\n"));
}

/// Dotted paths → values, for the fields golden records compare.
fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Fields every event has, or that repeat the input: not worth pinning per line.
const BOILERPLATE: &[&str] = &[
    "ecs.version",
    "event.original",
    "event.kind",
    "observer.vendor",
    "observer.product",
    "observer.type",
    "gatewatch.source.file",
    "gatewatch.source.line",
];

#[test]
fn golden_key_fields_per_event_type() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let ctx = ParseContext::default();
    let mut cases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let case: Map<String, Value> = serde_json::from_str(line).unwrap();
        let record = case["line"].as_str().unwrap().to_owned();
        let hint = case.get("dataset").and_then(Value::as_str).and_then(Dataset::from_name);
        let event = parse(record.as_bytes(), received(), &ctx, hint)
            .unwrap_or_else(|e| panic!("line {}: {e}: {record}", n + 1));
        let mut actual = Map::new();
        let doc = event_doc(&event, Origin::File { file: "golden", line: n + 1 });
        flatten("", &Value::Object(doc.to_json()), &mut actual);
        for key in BOILERPLATE {
            actual.remove(*key);
        }
        assert!(actual.len() >= 3, "line {}: too few fields to pin: {actual:?}", n + 1);
        let mut pinned = case;
        pinned.insert("expect".into(), Value::Object(actual));
        cases.push(pinned);
    }
    // One snapshot of every case's fields (tests/snapshots/); review a deliberate change with
    // `cargo insta review` (or accept it with INSTA_UPDATE=always).
    insta::assert_json_snapshot!("golden_events", cases);
}
