//! Regression on five Numenta Anomaly Benchmark series (tests/fixtures/nab, MIT): the shipped detector,
//! with the shipped threshold, detects every labelled anomaly window and raises at most two detections
//! elsewhere after NAB's probationary period. The full-corpus score is in BENCHMARKS.md
//! (`scripts/nab.sh`); these files guard it in the test suite.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::collections::BTreeMap;
use std::path::Path;

use gatewatch::baseline::backtest::parse_timestamp;
use gatewatch::baseline::detector::{Detector, Params};

fn fixture(rel: &str) -> Vec<(String, i64, f64)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab").join(rel);
    let mut reader = csv::Reader::from_path(&path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), parse_timestamp(&r[0]).unwrap(), r[1].parse().unwrap())
        })
        .collect()
}

#[test]
fn detects_every_labelled_window_with_few_false_alarms() {
    let windows: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab/windows.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(windows.len(), 5);
    let params = Params::default();
    for (file, labelled) in &windows {
        let rows = fixture(file);
        let probation = (rows.len() as f64 * 0.15).floor() as usize;
        let mut detector = Detector::new(params);
        let detections: Vec<(usize, &str)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, (text, ts, x))| {
                (detector.update(*ts, *x).score >= params.threshold).then_some((i, text.as_str()))
            })
            .collect();
        // NAB window bounds carry microseconds; the data's timestamps do not.
        let inside = |text: &str, w: &[String; 2]| text >= &w[0][..19] && text <= &w[1][..19];
        for w in labelled {
            assert!(
                detections.iter().any(|(_, t)| inside(t, w)),
                "{file}: window {w:?} not detected; detections at {detections:?}"
            );
        }
        let elsewhere =
            detections.iter().filter(|(i, t)| *i >= probation && !labelled.iter().any(|w| inside(t, w))).count();
        assert!(elsewhere <= 2, "{file}: {elsewhere} detections outside the labelled windows: {detections:?}");
    }
}

/// A series whose whole state went through the state topic's JSON in the middle scores exactly like one
/// that never stopped: what a restart on another instance relies on.
#[test]
fn state_survives_serialization_exactly() {
    let rows = fixture("realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv");
    let mut straight = Detector::new(Params::default());
    let mut restarted = Detector::new(Params::default());
    for (i, (_, ts, x)) in rows.iter().enumerate() {
        if i % 997 == 0 {
            let json = serde_json::to_vec(&restarted).unwrap();
            restarted = serde_json::from_slice(&json).unwrap();
        }
        assert_eq!(straight.update(*ts, *x), restarted.update(*ts, *x), "row {i}");
    }
}
