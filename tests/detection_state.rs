//! Detection state at the edges of a partition's life on an instance: open suppression windows publish
//! their summaries (`alert-updated`, same `event.id`) when the instance stops and when a rebalance takes
//! the partition away, instead of vanishing with the process.

mod common;

use std::time::Duration;

use common::*;

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
