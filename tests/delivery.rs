//! At-least-once delivery against a real broker, driving the real `gatewatch run` binary.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::time::{Duration, Instant};

use common::*;

fn lines_to_records(lines: &[Vec<u8>], partitions: i32) -> Vec<(Option<i32>, Option<String>, Vec<u8>)> {
    lines.iter().enumerate().map(|(i, l)| (Some(i as i32 % partitions), None, l.clone())).collect()
}

#[test]
fn every_input_record_yields_exactly_one_enriched_or_dead_letter_record() {
    let broker = Broker::start();
    let topics = Topics::new("exactly-one");
    topics.create(&broker, 3);
    let lines = sample_lines();
    let landed = broker.produce(&topics.input, &lines_to_records(&lines, 3));
    let gw = Gatewatch::spawn(&broker, &topics, &[]);

    let enriched = broker.read(&topics.enriched, 1, Duration::from_secs(60));
    let dlq = broker.read(&topics.dlq, 1, Duration::from_secs(30));
    assert_eq!(enriched.len() + dlq.len(), landed.len(), "log:\n{}", gw.log_text());
    let all: Vec<Record> = enriched.iter().chain(&dlq).cloned().collect();
    let seen = coverage(&all, &topics.input);
    assert_all_covered(&seen, &landed);
    let dupes: usize = seen.values().flat_map(|m| m.values()).filter(|n| **n > 1).count();
    assert_eq!(dupes, 0, "a clean run publishes each input once");
    // The enriched topic is keyed by appliance and carries ECS fields.
    let with_host = enriched.iter().filter(|r| r.key.is_some()).count();
    assert!(with_host > enriched.len() / 2, "{with_host} of {} enriched records keyed", enriched.len());
    let first = enriched[0].json();
    assert_eq!(first["event"]["dataset"], "citrix_adc.log");
    assert!(first["event"]["original"].is_string());
}

#[test]
fn poison_records_go_to_the_dead_letter_topic_with_a_reason_and_later_records_flow() {
    let broker = Broker::start();
    let topics = Topics::new("poison");
    topics.create(&broker, 1);
    let good = b"<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b".to_vec();
    let mut huge = b"<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 2 0 : ".to_vec();
    huge.resize(1 << 20, b'A');
    let poison: Vec<Vec<u8>> =
        vec![vec![0xff, 0xfe, 0x00, 0x9c, 0x80, 0x01], Vec::new(), huge, b"just some text".to_vec()];
    let mut records: Vec<_> = poison.iter().map(|p| (Some(0), None, p.clone())).collect();
    records.extend((0..20).map(|_| (Some(0), None, good.clone())));
    let landed = broker.produce(&topics.input, &records);
    let gw = Gatewatch::spawn(&broker, &topics, &[]);

    let enriched = broker.read(&topics.enriched, 20, Duration::from_secs(60));
    let dlq = broker.read(&topics.dlq, 4, Duration::from_secs(30));
    assert_eq!(enriched.len(), 20, "log:\n{}", gw.log_text());
    assert_eq!(dlq.len(), 4);
    let mut reasons: Vec<(i64, String)> = dlq
        .iter()
        .map(|r| {
            let v = r.json();
            assert!(!v["error"]["message"].as_str().unwrap().is_empty());
            (r.source().2, v["error"]["type"].as_str().unwrap().to_owned())
        })
        .collect();
    reasons.sort();
    let expected: Vec<(i64, String)> = landed[..4]
        .iter()
        .zip(["not_utf8", "empty", "too_long", "unrecognised"])
        .map(|((_, o), r)| (*o, r.to_owned()))
        .collect();
    assert_eq!(reasons, expected);
    let binary = dlq.iter().map(Record::json).find(|v| v["error"]["type"] == "not_utf8").unwrap();
    assert_eq!(binary["gatewatch"]["dlq"]["original_base64"], "//4AnIAB");
    let long = dlq.iter().map(Record::json).find(|v| v["error"]["type"] == "too_long").unwrap();
    assert_eq!(long["gatewatch"]["dlq"]["original_bytes"], 1 << 20);
    assert_eq!(long["gatewatch"]["dlq"]["truncated"], true);
    // Later records still flowed, in order, after the poison.
    let last_poison = landed[3].1;
    assert!(enriched.iter().all(|r| r.source().2 > last_poison));
    assert!(gw.get("/livez").is_some_and(|(s, _)| s == 200));
}

/// One SSLVPN LOGIN line of about `len` bytes.
fn login(seq: usize, len: usize) -> Vec<u8> {
    let mut line = format!(
        "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN {seq} 0 : Context a@b - SessionId: {seq} - "
    )
    .into_bytes();
    line.resize(len.max(line.len()), b'x');
    line
}

/// Offsets committed for `topics.input`'s partition 0 once the instance stopped on SIGTERM.
fn stop_and_read_commit(broker: &Broker, topics: &Topics, gw: &mut Gatewatch) -> i64 {
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops within the drain bound");
    assert!(status.success(), "log:\n{}", gw.log_text());
    broker.committed(&topics.group, &topics.input, 1)[&0]
}

#[test]
fn an_output_over_the_size_limit_is_dead_lettered_and_the_stream_goes_on() {
    let broker = Broker::start();
    let topics = Topics::new("oversize");
    topics.create(&broker, 1);
    let mut records: Vec<(Option<i32>, Option<String>, Vec<u8>)> =
        (0..10).map(|i| (Some(0), None, login(i, 0))).collect();
    // Its enriched document (the line twice, as message and event.original) is over 8 KiB.
    records.push((Some(0), None, login(10, 12_000)));
    // A probe with a long query: the event is too large, its alert fits once its evidence is cut.
    let query = "q".repeat(2_500);
    let probe = format!(
        r#"203.0.113.9 - - [11/Jan/2020:10:00:00 +0000] "GET /vpn/../vpns/cfg/smb.conf?{query} HTTP/1.1" 404 1 "-" "curl""#
    );
    records.push((Some(0), None, probe.into_bytes()));
    records.extend((11..21).map(|i| (Some(0), None, login(i, 0))));
    let landed = broker.produce(&topics.input, &records);
    let config = "[output]\nmax_message_bytes = \"8KiB\"\ndlq_max_original = \"1KiB\"\n";
    let mut gw = Gatewatch::spawn_with_config(&broker, &topics, &[], Some(config));

    let enriched = broker.read(&topics.enriched, 20, Duration::from_secs(60));
    let dlq = broker.read(&topics.dlq, 2, Duration::from_secs(30));
    let alerts = broker.read(&topics.alerts, 1, Duration::from_secs(30));
    assert_eq!(enriched.len(), 20, "log:\n{}", gw.log_text());
    assert_eq!(dlq.len(), 2, "log:\n{}", gw.log_text());
    for letter in dlq.iter().map(Record::json) {
        assert_eq!(letter["error"]["type"], "output_rejected", "{letter}");
        let message = letter["error"]["message"].as_str().unwrap();
        assert!(message.contains("output.max_message_bytes (8192)"), "{message}");
        assert_eq!(letter["gatewatch"]["dlq"]["truncated"], true);
        assert!(letter.to_string().len() <= 8192);
    }
    let sources: Vec<i64> = dlq.iter().map(|r| r.json()["gatewatch"]["source"]["offset"].as_i64().unwrap()).collect();
    assert_eq!(sources, vec![landed[10].1, landed[11].1]);
    assert_eq!(alerts.len(), 1);
    let alert = alerts[0].json();
    assert_eq!(alert["rule"]["id"], "gw-citrix-cve-2019-19781-probe");
    assert_eq!(alert["gatewatch"]["evidence_truncated"], true);
    assert!(alerts[0].value.len() <= 8192, "{}", alerts[0].value.len());
    assert!(gw.get("/livez").is_some_and(|(s, _)| s == 200), "still up");
    assert_eq!(stop_and_read_commit(&broker, &topics, &mut gw), landed.last().unwrap().1 + 1, "offsets move past it");
}

#[test]
fn an_output_the_producer_refuses_is_dead_lettered_and_the_stream_goes_on() {
    let broker = Broker::start();
    let topics = Topics::new("refused");
    topics.create(&broker, 1);
    let mut records: Vec<(Option<i32>, Option<String>, Vec<u8>)> =
        (0..5).map(|i| (Some(0), None, login(i, 0))).collect();
    records.push((Some(0), None, login(5, 9_000)));
    records.extend((6..11).map(|i| (Some(0), None, login(i, 0))));
    let landed = broker.produce(&topics.input, &records);
    // Within output.max_message_bytes, but over what this producer may send: librdkafka refuses it.
    let config = "[output]\ndlq_max_original = \"1KiB\"\n[kafka.producer_options]\n\"message.max.bytes\" = \"6000\"\n";
    let mut gw = Gatewatch::spawn_with_config(&broker, &topics, &[], Some(config));

    let enriched = broker.read(&topics.enriched, 10, Duration::from_secs(60));
    let dlq = broker.read(&topics.dlq, 1, Duration::from_secs(30));
    assert_eq!(enriched.len(), 10, "log:\n{}", gw.log_text());
    assert_eq!(dlq.len(), 1);
    let letter = dlq[0].json();
    assert_eq!(letter["error"]["type"], "output_rejected");
    assert!(letter["error"]["message"].as_str().unwrap().contains("refused the output"), "{letter}");
    assert_eq!(letter["gatewatch"]["source"]["offset"], landed[5].1);
    assert_eq!(stop_and_read_commit(&broker, &topics, &mut gw), landed.last().unwrap().1 + 1);
}

#[test]
fn a_stop_whose_drain_times_out_exits_with_status_3_within_the_bound() {
    let broker = Broker::start();
    let topics = Topics::new("late-stop");
    topics.create(&broker, 3);
    let lines = sample_lines();
    let batch: Vec<Vec<u8>> = lines.iter().cycle().take(20_000).cloned().collect();
    broker.produce(&topics.input, &lines_to_records(&batch, 3));
    let bound = Duration::from_secs(3);
    let mut gw = Gatewatch::spawn(&broker, &topics, &[("GATEWATCH__PIPELINE__SHUTDOWN_TIMEOUT", "3s")]);
    gw.wait_for_outputs(&topics, 200.0, Duration::from_secs(60));
    // Frozen brokers: what is in flight cannot be delivered, so the drain cannot finish.
    if !broker.signal("STOP") {
        eprintln!("skipped: the broker is not this harness's process");
        return;
    }
    gw.signal("TERM");
    // The drain's bound, plus the watchdog's 5 s for the final commit and close, plus slack.
    let status = gw.wait_timeout(bound + Duration::from_secs(8));
    broker.signal("CONT");
    let status = status.expect("exited within the bound");
    assert_eq!(status.code(), Some(3), "log:\n{}", gw.log_text());
}

#[test]
fn kill_9_mid_stream_then_restart_leaves_no_gaps() {
    let broker = Broker::start();
    let topics = Topics::new("kill9");
    topics.create(&broker, 3);
    let lines = sample_lines();
    let batch: Vec<Vec<u8>> = lines.iter().cycle().take(20_000).cloned().collect();
    let mut landed = broker.produce(&topics.input, &lines_to_records(&batch, 3));
    let mut gw = Gatewatch::spawn(&broker, &topics, &[]);
    // Kill as soon as part of the stream is out.
    gw.wait_for_outputs(&topics, 300.0, Duration::from_secs(60));
    gw.signal("KILL");
    let before_kill = gw.outputs(&topics);
    assert!(before_kill < landed.len() as f64, "killed after the stream ended ({before_kill} outputs)");
    let status = gw.wait_timeout(Duration::from_secs(10)).expect("killed");
    assert!(!status.success());
    // More input arrives while it is down; then the same group restarts.
    landed.extend(broker.produce(&topics.input, &lines_to_records(&batch[..1000], 3)));
    let gw2 = Gatewatch::spawn(&broker, &topics, &[]);

    let all = topics.outputs_covering(&broker, &landed, Duration::from_secs(90));
    let seen = coverage(&all, &topics.input);
    assert_all_covered(&seen, &landed);
    assert!(all.len() >= landed.len(), "log:\n{}", gw2.log_text());
}

#[test]
fn sigterm_mid_stream_exits_zero_within_the_bound_and_commits_exactly_what_was_delivered() {
    let broker = Broker::start();
    let topics = Topics::new("sigterm");
    topics.create(&broker, 3);
    let lines = sample_lines();
    let batch: Vec<Vec<u8>> = lines.iter().cycle().take(20_000).cloned().collect();
    let landed = broker.produce(&topics.input, &lines_to_records(&batch, 3));
    let bound = Duration::from_secs(5);
    let mut gw = Gatewatch::spawn(&broker, &topics, &[("GATEWATCH__PIPELINE__SHUTDOWN_TIMEOUT", "5s")]);
    gw.wait_for_outputs(&topics, 200.0, Duration::from_secs(60));
    let signalled = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_timeout(bound + Duration::from_secs(2)).expect("exited within the bound");
    let took = signalled.elapsed();
    assert!(status.success(), "exit {status:?}; log:\n{}", gw.log_text());
    assert!(took <= bound, "took {took:?}");

    let committed = broker.committed(&topics.group, &topics.input, 3);
    let all = topics.outputs(&broker, 1, Duration::from_secs(30));
    let seen = coverage(&all, &topics.input);
    let total_committed: i64 = committed.values().sum();
    assert!(total_committed > 0 && (total_committed as usize) < landed.len(), "stopped mid-stream: {committed:?}");
    for partition in 0..3 {
        let delivered: Vec<i64> = seen.get(&partition).map(|m| m.keys().copied().collect()).unwrap_or_default();
        let commit = committed.get(&partition).copied().unwrap_or(0);
        // Offsets below the commit all have output, and nothing past it was delivered: equal, not just covered.
        let expected: Vec<i64> =
            landed.iter().filter(|(p, o)| *p == partition && *o < commit).map(|(_, o)| *o).collect();
        assert_eq!(delivered, expected, "partition {partition} committed {commit}");
    }
}

#[test]
fn a_second_instance_joining_mid_stream_loses_nothing_across_the_rebalance() {
    let broker = Broker::start();
    let topics = Topics::new("rebalance");
    topics.create(&broker, 4);
    let lines = sample_lines();
    let batch: Vec<Vec<u8>> = lines.iter().cycle().take(400).cloned().collect();
    let mut landed = broker.produce(&topics.input, &lines_to_records(&batch, 4));
    // Only the input topic, so the partitions split between the instances are all syslog ones.
    let no_baselines = [("GATEWATCH__BASELINE__METRICS_TOPIC", "")];
    let a = Gatewatch::spawn(&broker, &topics, &no_baselines);
    a.wait_ready(Duration::from_secs(60));
    assert_eq!(a.metric("gatewatch_assigned_partitions"), 4.0);
    // Keep the stream going while the second instance joins.
    let b = Gatewatch::spawn(&broker, &topics, &no_baselines);
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.metric("gatewatch_assigned_partitions") == 0.0 || a.metric("gatewatch_assigned_partitions") == 4.0 {
        landed.extend(broker.produce(&topics.input, &lines_to_records(&batch[..40], 4)));
        assert!(Instant::now() < deadline, "b never got partitions; log:\n{}", b.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        landed.extend(broker.produce(&topics.input, &lines_to_records(&batch[..40], 4)));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(a.metric("gatewatch_assigned_partitions") + b.metric("gatewatch_assigned_partitions"), 4.0);
    let all = topics.outputs_covering(&broker, &landed, Duration::from_secs(90));
    let seen = coverage(&all, &topics.input);
    assert_all_covered(&seen, &landed);
    let b_in: f64 = b.metric(&format!("gatewatch_records_in_total{{topic=\"{}\"}}", topics.input));
    assert!(b_in > 0.0, "the second instance consumed nothing");
}

#[test]
fn two_workers_of_one_instance_split_the_partitions_and_lose_nothing() {
    let broker = Broker::start();
    let topics = Topics::new("workers");
    topics.create(&broker, 4);
    let lines = sample_lines();
    let batch: Vec<Vec<u8>> = lines.iter().cycle().take(2_000).cloned().collect();
    let landed = broker.produce(&topics.input, &lines_to_records(&batch, 4));
    let settings = [("GATEWATCH__BASELINE__METRICS_TOPIC", ""), ("GATEWATCH__PIPELINE__WORKERS", "2")];
    let gw = Gatewatch::spawn(&broker, &topics, &settings);
    let all = topics.outputs_covering(&broker, &landed, Duration::from_secs(90));
    let seen = coverage(&all, &topics.input);
    assert_all_covered(&seen, &landed);
    // Each worker's consumer holds partitions of its own; together, all of them.
    gw.wait_ready(Duration::from_secs(30));
    let held: Vec<f64> = (0..2).map(|w| gw.metric(&format!("gatewatch_worker_partitions{{worker=\"{w}\"}}"))).collect();
    assert!(held.iter().all(|n| *n > 0.0), "a worker holds no partition: {held:?}; log:\n{}", gw.log_text());
    assert_eq!(held.iter().sum::<f64>(), 4.0, "{held:?}");
    assert_eq!(gw.metric("gatewatch_assigned_partitions"), 4.0);
    assert!(gw.log_text().contains("workers started"), "{}", gw.log_text());
}

#[test]
fn an_event_from_a_listed_ip_comes_out_enriched_with_its_indicator() {
    let broker = Broker::start();
    let topics = Topics::new("enrich-e2e");
    topics.create(&broker, 1);
    let geoip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/geoip");
    let feeds = tempfile::tempdir().unwrap();
    let feed = feeds.path().join("cert.csv");
    std::fs::write(&feed, "type,value,source,confidence\nipv4,8.8.4.4,CERT-Test,high\n").unwrap();
    let config = format!(
        "[enrich.geoip]\ncity_db = {:?}\nasn_db = {:?}\n[[enrich.ioc.feeds]]\nname = \"cert\"\npath = {:?}\nformat = \"csv\"\n",
        geoip.join("GeoLite2-City.mmdb"),
        geoip.join("GeoLite2-ASN.mmdb"),
        feed
    );
    let listed = b"<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default AAA LOGIN_FAILED 1 0 : User nsroot - Client_ip 8.8.4.4 - Failure_reason \"bad\"".to_vec();
    let clean = b"<134> 01/10/2020:08:57:44 GMT vpx01 0-PPE-0 : default AAA LOGIN_FAILED 2 0 : User nsroot - Client_ip 1.1.1.1 - Failure_reason \"bad\"".to_vec();
    broker.produce(&topics.input, &[(Some(0), None, listed), (Some(0), None, clean)]);
    let gw = Gatewatch::spawn_with_config(&broker, &topics, &[], Some(&config));
    let out = broker.read(&topics.enriched, 2, Duration::from_secs(60));
    assert_eq!(out.len(), 2, "log:\n{}", gw.log_text());
    let docs: Vec<serde_json::Value> = out.iter().map(Record::json).collect();
    let hit = docs.iter().find(|d| d["source"]["ip"] == "8.8.4.4").unwrap();
    let enrichment = &hit["threat"]["enrichments"][0];
    assert_eq!(enrichment["indicator"]["ip"], "8.8.4.4");
    assert_eq!(enrichment["indicator"]["provider"], "CERT-Test");
    assert_eq!(enrichment["feed"]["name"], "cert");
    assert_eq!(enrichment["matched"]["field"], "source.ip");
    assert_eq!(hit["source"]["as"]["number"], 15169);
    assert_eq!(hit["source"]["geo"]["country_iso_code"], "US");
    let clean = docs.iter().find(|d| d["source"]["ip"] == "1.1.1.1").unwrap();
    assert!(clean.get("threat").is_none());
    assert_eq!(clean["source"]["as"]["number"], 13335);
    assert!(gw.metric("gatewatch_ioc_hits_total") >= 2.0);
    assert_eq!(gw.metric("gatewatch_ioc_indicators"), 1.0);
}

#[test]
fn replacing_the_city_database_mid_stream_changes_enrichment_without_a_restart() {
    let broker = Broker::start();
    let topics = Topics::new("geo-reload");
    topics.create(&broker, 1);
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmdb/write-city.pl");
    let write = |out: &std::path::Path, city: &str| {
        let ok = std::process::Command::new("perl")
            .arg(&script)
            .arg(out)
            .args(["AA", "Testland", city, "8.8.8.0/24"])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let live = dir.path().join("City.mmdb");
    write(&live, "Alpha");
    let config = format!("[enrich.geoip]\ncity_db = {live:?}\n");
    let gw =
        Gatewatch::spawn_with_config(&broker, &topics, &[("GATEWATCH__ENRICH__RELOAD_INTERVAL", "1s")], Some(&config));
    let line = |seq: u32| {
        format!("<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default AAA LOGIN_FAILED {seq} 0 : User a - Client_ip 8.8.8.8").into_bytes()
    };
    broker.produce(&topics.input, &[(Some(0), None, line(1))]);
    let first = broker.read(&topics.enriched, 1, Duration::from_secs(60));
    assert_eq!(first.len(), 1, "log:\n{}", gw.log_text());
    assert_eq!(first[0].json()["source"]["geo"]["city_name"], "Alpha");

    // Replace the database the way geoipupdate does: write aside, rename over.
    write(&dir.path().join("next.mmdb"), "Beta");
    std::fs::rename(dir.path().join("next.mmdb"), &live).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.metric("gatewatch_reloads_total{component=\"geoip-city\",outcome=\"ok\"}") < 1.0 {
        assert!(Instant::now() < deadline, "no reload; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.produce(&topics.input, &[(Some(0), None, line(2))]);
    let both = broker.read(&topics.enriched, 2, Duration::from_secs(60));
    let second = both.iter().map(Record::json).find(|d| d["citrix_adc"]["log"]["sequence"] == 2).unwrap();
    assert_eq!(second["source"]["geo"]["city_name"], "Beta");
}
