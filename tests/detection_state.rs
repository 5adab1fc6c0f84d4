//! Detection state at the edges of a partition's life on an instance: open suppression windows publish
//! their summaries (`alert-updated`, same `event.id`) when the instance stops and when a rebalance takes
//! the partition away, and correlations and suppression windows carry on from `detect.state_topic`
//! across kill -9 and rebalances, with the alert ids of an uninterrupted run.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use gatewatch::detect::{Publish, RuleSet, Worker};
use gatewatch::ecs::SourceRef;
use gatewatch::parse::ParseContext;
use gatewatch::process::{Clocks, Created, Input, Processor};

/// Snapshots written often, so a test can wait for one.
const FAST_SNAPSHOTS: [(&str, &str); 1] = [("GATEWATCH__DETECT__SNAPSHOT_INTERVAL", "200ms")];

/// `n` AAA login failures of `user` from `ip`, ten seconds apart from `first` (sequence numbers `seq..`).
fn failures(user: &str, ip: &str, first: u32, n: u32) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| {
            format!(
                "<132> 01/11/2020:10:{:02}:{:02} GMT vpx01 0-PPE-0 : default AAA LOGIN_FAILED {i} 0 : User {user} - \
                 Client_ip {ip} - Failure_reason \"Username/Password mismatch\"",
                i / 6,
                (i % 6) * 10
            )
            .into_bytes()
        })
        .collect()
}

/// The alerts of an uninterrupted run over `records` (payload, partition, offset) of `topic`: the same
/// record path in process, with no restart anywhere.
fn uninterrupted(topic: &str, records: &[(Vec<u8>, i32, i64)]) -> Vec<serde_json::Value> {
    let settings = gatewatch::config::Settings::default();
    let options = settings.detect.options();
    let rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let (rules, errors) = RuleSet::load(&[rules_dir], &options);
    assert!(errors.is_empty(), "{errors:?}");
    let ctx = ParseContext::default();
    let processor = Processor { ctx: &ctx, enricher: None, rules: &rules, detect: &options };
    let received: DateTime<Utc> = "2020-01-12T00:00:00Z".parse().unwrap();
    let clocks = Clocks { received, indicators: received, created: Created::EventTime };
    let mut workers = std::collections::HashMap::new();
    let mut alerts = Vec::new();
    for (payload, partition, offset) in records {
        let worker = workers.entry(*partition).or_insert_with(|| Worker::new(Publish::Immediately));
        let source = SourceRef { topic, partition: *partition, offset: *offset };
        let input = Input { payload, hint: None, origin: source.into(), appliance: None };
        let out = processor.process(Some(worker), input, clocks).expect("parses");
        alerts.extend(out.alerts.into_iter().map(|a| a.doc));
    }
    alerts
}

fn of_rule(alerts: &[Record], rule: &str) -> Vec<serde_json::Value> {
    alerts.iter().map(Record::json).filter(|a| a["rule"]["id"] == rule).collect()
}

/// Waits until the group has committed `offset` on every listed partition (state written first).
fn wait_committed(broker: &Broker, topics: &Topics, partitions: i32, offsets: &[(i32, i64)], gw: &Gatewatch) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = broker.committed(&topics.group, &topics.input, partitions);
        if offsets.iter().all(|(p, o)| committed.get(p).is_some_and(|c| c >= o)) {
            return;
        }
        assert!(Instant::now() < deadline, "not committed: {committed:?}, want {offsets:?}; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_brute_force_straddling_kill_9_fires_once_with_the_id_of_an_uninterrupted_run() {
    let broker = Broker::start();
    let topics = Topics::new("state-kill9");
    topics.create(&broker, 1);
    let lines = failures("bob", "198.51.100.50", 1, 10);
    let to_records = |lines: &[Vec<u8>]| lines.iter().map(|l| (Some(0), None, l.clone())).collect::<Vec<_>>();
    let mut landed = broker.produce(&topics.input, &to_records(&lines[..6]));
    let mut gw = Gatewatch::spawn(&broker, &topics, &FAST_SNAPSHOTS);
    assert_eq!(broker.read(&topics.enriched, 6, Duration::from_secs(60)).len(), 6, "log:\n{}", gw.log_text());
    wait_committed(&broker, &topics, 1, &[(0, 6)], &gw);
    gw.signal("KILL");
    assert!(!gw.wait_timeout(Duration::from_secs(10)).expect("killed").success());

    // The rest of the attempts arrive while it is down; another instance of the group takes over.
    landed.extend(broker.produce(&topics.input, &to_records(&lines[6..])));
    let gw2 = Gatewatch::spawn(&broker, &topics, &FAST_SNAPSHOTS);
    assert!(broker.read(&topics.enriched, 10, Duration::from_secs(60)).len() >= 10, "log:\n{}", gw2.log_text());
    let alerts = broker.read(&topics.alerts, 1, Duration::from_secs(30));
    let fired = of_rule(&alerts, "gw-citrix-bruteforce");
    assert_eq!(fired.len(), 1, "fires once across the restart; log:\n{}", gw2.log_text());
    assert_eq!(fired[0]["gatewatch"]["count"], 10);
    let records: Vec<_> = lines.iter().zip(&landed).map(|(l, (p, o))| (l.clone(), *p, *o)).collect();
    let expected: Vec<_> = uninterrupted(&topics.input, &records)
        .into_iter()
        .filter(|a| a["rule"]["id"] == "gw-citrix-bruteforce")
        .collect();
    assert_eq!(expected.len(), 1);
    assert_eq!(fired[0]["event"]["id"], expected[0]["event"]["id"], "the id of an uninterrupted run");
    assert_eq!(fired[0]["gatewatch"]["evidence"], expected[0]["gatewatch"]["evidence"]);
    assert!(gw2.metric("gatewatch_detect_state_restored_total") >= 1.0, "log:\n{}", gw2.log_text());
    assert!(gw2.log_text().contains("detection state restored"), "{}", gw2.log_text());
}

#[test]
fn a_suppression_window_straddling_kill_9_does_not_alert_again_and_keeps_counting() {
    let broker = Broker::start();
    let topics = Topics::new("state-suppress");
    topics.create(&broker, 1);
    let lines = probes("203.0.113.9", 20);
    let to_records = |lines: &[Vec<u8>]| lines.iter().map(|l| (Some(0), None, l.clone())).collect::<Vec<_>>();
    broker.produce(&topics.input, &to_records(&lines[..10]));
    let mut gw = Gatewatch::spawn(&broker, &topics, &FAST_SNAPSHOTS);
    assert_eq!(broker.read(&topics.enriched, 10, Duration::from_secs(60)).len(), 10, "log:\n{}", gw.log_text());
    wait_committed(&broker, &topics, 1, &[(0, 10)], &gw);
    gw.signal("KILL");
    assert!(!gw.wait_timeout(Duration::from_secs(10)).expect("killed").success());
    let first = broker.read(&topics.alerts, 1, Duration::from_secs(10));
    assert_eq!(first.len(), 1);

    broker.produce(&topics.input, &to_records(&lines[10..]));
    let mut gw2 = Gatewatch::spawn(&broker, &topics, &FAST_SNAPSHOTS);
    assert!(broker.read(&topics.enriched, 20, Duration::from_secs(60)).len() >= 20, "log:\n{}", gw2.log_text());
    let alerts = broker.read(&topics.alerts, 1, Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "no second alert for the open window; log:\n{}", gw2.log_text());

    // The window's summary, on stop, counts the matches on both sides of the restart.
    gw2.signal("TERM");
    assert!(gw2.wait_timeout(Duration::from_secs(30)).expect("stops").success(), "log:\n{}", gw2.log_text());
    let alerts = broker.read(&topics.alerts, 2, Duration::from_secs(30));
    let updated = updates(&alerts);
    assert_eq!(updated.len(), 1, "log:\n{}", gw2.log_text());
    assert_eq!(updated[0]["event"]["id"], first[0].json()["event"]["id"]);
    assert_eq!(updated[0]["gatewatch"]["count"], 20);
}

#[test]
fn partitions_moving_between_instances_count_every_record_once() {
    let broker = Broker::start();
    let topics = Topics::new("state-rebalance");
    topics.create(&broker, 2);
    let bob = failures("bob", "198.51.100.50", 1, 10);
    let eve = failures("eve", "198.51.100.60", 1, 10);
    let records = |from: usize, to: usize| {
        let mut out: Vec<_> = bob[from..to].iter().map(|l| (Some(0), None, l.clone())).collect();
        out.extend(eve[from..to].iter().map(|l| (Some(1), None, l.clone())));
        out
    };
    let mut landed = broker.produce(&topics.input, &records(0, 6));
    // One worker per instance: with two each, the second instance's workers may both be left without
    // one of the two partitions, and this test is about partitions moving between instances.
    let one_worker = [FAST_SNAPSHOTS[0], ("GATEWATCH__PIPELINE__WORKERS", "1")];
    let first = Gatewatch::spawn(&broker, &topics, &one_worker);
    assert_eq!(broker.read(&topics.enriched, 12, Duration::from_secs(60)).len(), 12, "log:\n{}", first.log_text());
    wait_committed(&broker, &topics, 2, &[(0, 6), (1, 6)], &first);

    // A second instance joins: at least one partition moves to it, with its state.
    let second = Gatewatch::spawn(&broker, &topics, &one_worker);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.log_text().contains("partitions revoked") {
        assert!(Instant::now() < deadline, "no rebalance; log:\n{}", first.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    second.wait_ready(Duration::from_secs(60));
    landed.extend(broker.produce(&topics.input, &records(6, 10)));
    assert!(broker.read(&topics.enriched, 20, Duration::from_secs(60)).len() >= 20, "log:\n{}", second.log_text());
    let alerts = broker.read(&topics.alerts, 2, Duration::from_secs(30));
    let fired = of_rule(&alerts, "gw-citrix-bruteforce");
    assert_eq!(fired.len(), 2, "one per account; first:\n{}\nsecond:\n{}", first.log_text(), second.log_text());

    let mut all = Vec::new();
    let lines: Vec<_> = bob[..6].iter().chain(&eve[..6]).chain(&bob[6..]).chain(&eve[6..]).collect();
    for (line, (p, o)) in lines.into_iter().zip(&landed) {
        all.push((line.clone(), *p, *o));
    }
    let expected = uninterrupted(&topics.input, &all);
    for alert in &fired {
        assert_eq!(alert["gatewatch"]["count"], 10, "{alert}");
        assert!(
            expected.iter().any(|e| e["event"]["id"] == alert["event"]["id"]),
            "not an id of the uninterrupted run: {alert}"
        );
    }
    drop(second);
}

/// `n` probes of the appliance from `source`, a minute apart: one alert, suppressed repeats.
fn probes(source: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{source} - - [11/Jan/2020:10:{:02}:00 +0000] "GET /vpn/../vpns/cfg/smb.conf?{i} HTTP/1.1" 404 1 "-" "curl""#,
                i % 60
            )
            .into_bytes()
        })
        .collect()
}

fn updates(alerts: &[Record]) -> Vec<serde_json::Value> {
    alerts.iter().map(Record::json).filter(|a| a["event"]["action"] == "alert-updated").collect()
}

#[test]
fn open_suppression_windows_publish_their_summaries_on_stop() {
    let broker = Broker::start();
    let topics = Topics::new("summary-stop");
    topics.create(&broker, 1);
    let records: Vec<_> = probes("203.0.113.9", 30).into_iter().map(|l| (Some(0), None, l)).collect();
    broker.produce(&topics.input, &records);
    let mut gw = Gatewatch::spawn(&broker, &topics, &[]);
    assert_eq!(broker.read(&topics.enriched, 30, Duration::from_secs(60)).len(), 30, "log:\n{}", gw.log_text());
    let first = broker.read(&topics.alerts, 1, Duration::from_secs(30));
    assert_eq!(first.len(), 1, "one alert while the window is open; log:\n{}", gw.log_text());
    assert!(updates(&first).is_empty());

    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops within the drain bound");
    assert!(status.success(), "log:\n{}", gw.log_text());
    let alerts = broker.read(&topics.alerts, 2, Duration::from_secs(30));
    let updated = updates(&alerts);
    assert_eq!(updated.len(), 1, "the window's summary went out on stop; log:\n{}", gw.log_text());
    assert_eq!(updated[0]["event"]["id"], first[0].json()["event"]["id"]);
    assert_eq!(alerts[1].key, first[0].key, "keyed by the same id: consumers upsert");
    assert_eq!(updated[0]["gatewatch"]["count"], 30);
}

#[test]
fn a_revoked_partition_publishes_its_summaries_and_drops_its_state() {
    let broker = Broker::start();
    let topics = Topics::new("summary-revoke");
    topics.create(&broker, 2);
    let mut records: Vec<_> = probes("203.0.113.9", 30).into_iter().map(|l| (Some(0), None, l)).collect();
    records.extend(probes("198.51.100.4", 30).into_iter().map(|l| (Some(1), None, l)));
    broker.produce(&topics.input, &records);
    let first = Gatewatch::spawn(&broker, &topics, &[]);
    assert_eq!(broker.read(&topics.enriched, 60, Duration::from_secs(60)).len(), 60, "log:\n{}", first.log_text());
    let alerts = broker.read(&topics.alerts, 2, Duration::from_secs(30));
    assert_eq!(alerts.len(), 2);
    assert!(updates(&alerts).is_empty());

    // A second instance joins: the rebalance takes at least one partition from the first, whose open
    // window is summarised while both keep running.
    let second = Gatewatch::spawn(&broker, &topics, &[]);
    let alerts = broker.read(&topics.alerts, 3, Duration::from_secs(60));
    let updated = updates(&alerts);
    assert!(!updated.is_empty(), "no summary on revoke; log:\n{}", first.log_text());
    for u in &updated {
        assert_eq!(u["gatewatch"]["count"], 30, "{u}");
        assert!(alerts.iter().take(2).any(|a| a.json()["event"]["id"] == u["event"]["id"]));
    }
    assert!(first.log_text().contains("partitions revoked"), "{}", first.log_text());
    drop(second);
}

#[test]
fn what_the_group_cap_drops_is_counted() {
    let broker = Broker::start();
    let topics = Topics::new("state-capped");
    topics.create(&broker, 1);
    let mut lines = failures("bob", "198.51.100.50", 1, 3);
    lines.extend(failures("eve", "198.51.100.60", 4, 3));
    broker.produce(&topics.input, &lines.into_iter().map(|l| (Some(0), None, l)).collect::<Vec<_>>());
    let gw = Gatewatch::spawn(&broker, &topics, &[("GATEWATCH__DETECT__MAX_GROUPS", "1")]);
    assert_eq!(broker.read(&topics.enriched, 6, Duration::from_secs(60)).len(), 6, "log:\n{}", gw.log_text());
    let series = "gatewatch_detect_capped_total{what=\"correlation_group\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    // Each account is a group of the brute-force correlation: eve's first failure evicts bob's group.
    while gw.metric(series) < 1.0 {
        assert!(Instant::now() < deadline, "{series} not counted; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}
