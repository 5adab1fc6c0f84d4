//! Baselines through the real broker and the real binary: state kept across kill -9, a week of normal
//! appliance behaviour without alerts, a miner found within 30 minutes, bad samples dead-lettered.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::*;
use gatewatch::baseline::detector::{Detector, Params};
use serde_json::{json, Value};

const STEP: i64 = 300;
/// 2020-01-01 00:00 UTC, a Wednesday.
const START: i64 = 1_577_836_800;

/// Deterministic noise.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }

    fn gauss(&mut self) -> f64 {
        let (a, b) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// An appliance's CPU and memory at `t`: office-hours load on weekdays, a nightly backup from 02:00 to
/// 02:45, noise, and optionally a miner adding 45 points of CPU from `miner` on.
fn appliance(n: u64, t: i64, noise: &mut Noise, miner: Option<i64>) -> (f64, f64) {
    let hour = t.rem_euclid(86_400) as f64 / 3_600.0;
    let weekday = (t / 86_400 + 3) % 7 < 5;
    let office = (-(hour - 13.0).powi(2) / 18.0).exp();
    let backup = (2.0..2.75).contains(&hour);
    let mined = miner.is_some_and(|m| t >= m);
    let cpu = 0.12
        + 0.03 * n as f64
        + office * if weekday { 0.25 } else { 0.08 }
        + if backup { 0.35 } else { 0.0 }
        + if mined { 0.45 } else { 0.0 }
        + 0.015 * noise.gauss();
    let memory = 0.45 + 0.02 * n as f64 + 0.05 * office + if backup { 0.10 } else { 0.0 } + 0.005 * noise.gauss();
    (cpu.clamp(0.0, 1.0), memory.clamp(0.0, 1.0))
}

fn time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One sample record keyed by host; CPU as nested objects, memory as a flat dotted key (both accepted).
fn sample(host: &str, t: i64, cpu: f64, memory: f64) -> (Option<i32>, Option<String>, Vec<u8>) {
    let doc = json!({
        "@timestamp": time(t),
        "observer": {"hostname": host},
        "system": {"cpu": {"total": {"pct": cpu}}},
        "system.memory.used.pct": memory,
    });
    (None, Some(host.to_owned()), serde_json::to_vec(&doc).unwrap())
}

/// Enriched metric documents by metrics-topic offset (several when a record was processed twice).
fn scored_by_offset(records: &[Record], metrics_topic: &str) -> BTreeMap<i64, Vec<Value>> {
    let mut out: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for r in records {
        let v = r.json();
        if v["event"]["dataset"] == "citrix_adc.metrics" && v["gatewatch"]["source"]["topic"] == metrics_topic {
            out.entry(v["gatewatch"]["source"]["offset"].as_i64().unwrap()).or_default().push(v);
        }
    }
    out
}

#[test]
fn learned_state_survives_kill_9_and_the_next_instance_scores_as_the_first_would_have() {
    let broker = Broker::start();
    let topics = Topics::new("baseline-restart");
    topics.create(&broker, 1);
    let mut noise = Noise(7);
    let series: Vec<(i64, f64, f64)> = (0..550)
        .map(|i| {
            let t = START + i * STEP;
            let (cpu, memory) = appliance(0, t, &mut noise, None);
            (t, cpu, memory)
        })
        .collect();
    let (first, second) = series.split_at(400);
    let records =
        |part: &[(i64, f64, f64)]| part.iter().map(|(t, c, m)| sample("adc-1", *t, *c, *m)).collect::<Vec<_>>();
    let env = [("GATEWATCH__BASELINE__SNAPSHOT_EVERY", "64"), ("GATEWATCH__BASELINE__SNAPSHOT_INTERVAL", "1s")];

    let mut landed = broker.produce(&topics.metrics, &records(first));
    let mut gw = Gatewatch::spawn(&broker, &topics, &env);
    let before = broker.read(&topics.enriched, first.len(), Duration::from_secs(90));
    assert!(scored_by_offset(&before, &topics.metrics).len() >= first.len(), "log:\n{}", gw.log_text());
    gw.signal("KILL");
    assert!(!gw.wait_timeout(Duration::from_secs(10)).expect("killed").success());

    // More samples while it is down; another instance of the group takes over.
    landed.extend(broker.produce(&topics.metrics, &records(second)));
    let gw2 = Gatewatch::spawn(&broker, &topics, &env);
    let all = broker.read(&topics.enriched, before.len() + second.len(), Duration::from_secs(90));
    let docs = scored_by_offset(&all, &topics.metrics);
    assert_eq!(docs.len(), landed.len(), "every sample scored; log:\n{}", gw2.log_text());
    assert!(gw2.metric("gatewatch_baseline_restored_total") >= 2.0, "log:\n{}", gw2.log_text());

    // What one uninterrupted detector per metric gives for the whole series.
    let params = Params::default();
    let (mut cpu, mut memory) = (Detector::new(params), Detector::new(params));
    let mut checked = 0;
    for ((t, c, m), (_, offset)) in series.iter().zip(&landed) {
        let expected = [("cpu", cpu.update(*t, *c).score), ("memory", memory.update(*t, *m).score)];
        for doc in &docs[offset] {
            for (metric, score) in expected {
                let got = &doc["gatewatch"]["baseline"][metric];
                if got.get("replayed").is_some() {
                    continue; // applied before the snapshot the second instance restored
                }
                assert_eq!(got["score"].as_f64(), Some(score), "{metric} at offset {offset}: {doc}");
                checked += 1;
            }
        }
    }
    // The second instance did not start over: its samples are past the warm-up (a re-learning detector
    // would still be warming, scoring 0).
    for (_, offset) in &landed[400..] {
        let doc = docs[offset].last().unwrap();
        assert_eq!(doc["gatewatch"]["baseline"]["cpu"]["warming"], false, "{doc}");
    }
    assert!(checked >= 2 * landed.len());
}

#[test]
fn a_normal_week_raises_no_alert_and_a_miner_raises_one_within_30_minutes() {
    let broker = Broker::start();
    let topics = Topics::new("baseline-week");
    topics.create(&broker, 1);
    let miner = START + 5 * 86_400 + 12 * 3_600;
    let mut records = Vec::new();
    for n in 0..3u64 {
        let mut noise = Noise(42 + n);
        let host = format!("adc-{n}");
        for i in 0..7 * 288 {
            let t = START + i * STEP;
            let (cpu, memory) = appliance(n, t, &mut noise, (n == 1).then_some(miner));
            records.push(sample(&host, t, cpu, memory));
        }
    }
    broker.produce(&topics.metrics, &records);
    let gw = Gatewatch::spawn(&broker, &topics, &[]);
    let enriched = broker.read(&topics.enriched, records.len(), Duration::from_secs(180));
    assert_eq!(scored_by_offset(&enriched, &topics.metrics).len(), records.len(), "log:\n{}", gw.log_text());
    let alerts: Vec<Value> = broker.read(&topics.alerts, 1, Duration::from_secs(10)).iter().map(Record::json).collect();
    assert_eq!(alerts.len(), 1, "exactly the miner: {alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["gatewatch"]["stage"], "anomaly");
    assert_eq!(alert["observer"]["hostname"], "adc-1");
    let anomaly = &alert["gatewatch"]["anomaly"];
    assert_eq!(anomaly["metric"], "system.cpu.total.pct");
    let at = |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp();
    let (raised, start) = (at(&alert["@timestamp"]), at(&anomaly["start"]));
    assert!((miner..=miner + 30 * 60).contains(&raised), "raised {} for a miner from {}", time(raised), time(miner));
    assert!((miner - 30 * 60..=raised).contains(&start), "start {}", time(start));
    assert!(anomaly["observed"].as_f64().unwrap() > anomaly["expected"].as_f64().unwrap() + 0.3, "{anomaly}");
    assert_eq!(alert["event"]["start"], anomaly["start"]);
    assert!(alert["event"]["id"].as_str().unwrap().len() == 32 && alert["rule"]["id"] == "gatewatch-baseline-cpu");
}

/// The week above with other noise, and with gaps (appliance 0 unreachable for six hours, then for a
/// quarter of an hour): the service's alerting (detector, deviation gate, hysteresis) run directly,
/// twenty times, raises the miner once and nothing else.
#[test]
fn the_week_scenario_holds_for_other_noise_too() {
    let miner = START + 5 * 86_400 + 12 * 3_600;
    for seed in 0..20u64 {
        let mut partition = gatewatch::baseline::Partition::new(&gatewatch::config::BaselineSettings::default());
        let mut alerts = Vec::new();
        let mut offset = 0;
        for n in 0..3u64 {
            let mut noise = Noise(1000 * seed + n);
            for i in 0..7 * 288 {
                let t = START + i * STEP;
                let (cpu, memory) = appliance(n, t, &mut noise, (n == 1).then_some(miner));
                if n == 0 && ((700..772).contains(&i) || (1200..1203).contains(&i)) {
                    continue;
                }
                let (_, _, payload) = sample(&format!("adc-{n}"), t, cpu, memory);
                let s = gatewatch::baseline::Sample::parse(&payload).unwrap();
                offset += 1;
                let seen = partition.observe(&s, offset, json!(offset), "", Utc::now()).unwrap();
                alerts.extend(seen.alerts.into_iter().map(|a| (n, a.doc["@timestamp"].as_str().unwrap().to_owned())));
            }
        }
        assert_eq!(alerts.len(), 1, "seed {seed}: {alerts:?}");
        let raised = DateTime::parse_from_rfc3339(&alerts[0].1).unwrap().timestamp();
        assert!(alerts[0].0 == 1 && (miner..=miner + 1800).contains(&raised), "seed {seed}: {alerts:?}");
    }
}

#[test]
fn bad_samples_are_dead_lettered_with_a_reason_and_good_ones_flow() {
    let broker = Broker::start();
    let topics = Topics::new("baseline-dlq");
    topics.create(&broker, 1);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("metric_not_json", b"cpu=0.5".to_vec()),
        ("metric_missing_field", br#"{"observer":{"hostname":"adc-1"},"system.cpu.total.pct":0.5}"#.to_vec()),
        (
            "metric_invalid_value",
            br#"{"@timestamp":"2020-01-01T00:00:00Z","observer":{"hostname":"adc-1"},"system.cpu.total.pct":55}"#
                .to_vec(),
        ),
        ("metric_missing_field", br#"{"@timestamp":"2020-01-01T00:00:00Z","observer":{"hostname":"adc-1"}}"#.to_vec()),
    ];
    let mut records: Vec<_> = bad.iter().map(|(_, p)| (Some(0), None, p.clone())).collect();
    records.extend((0..5).map(|i| sample("adc-1", START + i * STEP, 0.2, 0.5)));
    broker.produce(&topics.metrics, &records);
    let gw = Gatewatch::spawn(&broker, &topics, &[]);
    let dlq: Vec<Value> =
        broker.read(&topics.dlq, bad.len(), Duration::from_secs(60)).iter().map(Record::json).collect();
    let reasons: Vec<&str> = dlq.iter().map(|v| v["error"]["type"].as_str().unwrap()).collect();
    assert_eq!(reasons, bad.iter().map(|(r, _)| *r).collect::<Vec<_>>(), "log:\n{}", gw.log_text());
    assert!(dlq[2]["error"]["message"].as_str().unwrap().contains("between 0 and 1"), "{}", dlq[2]);
    let enriched = broker.read(&topics.enriched, 5, Duration::from_secs(30));
    assert_eq!(scored_by_offset(&enriched, &topics.metrics).len(), 5);
}
