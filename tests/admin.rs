//! The admin listener against a real broker: readiness follows the assignment, metrics follow the data.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn readyz_is_not_ready_before_assignment_and_ready_after() {
    let broker = Broker::start();
    let topics = Topics::new("readyz");
    topics.create(&broker, 2);
    let gw = Gatewatch::spawn(&broker, &topics, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(answer) = gw.get("/readyz") {
            break answer;
        }
        assert!(Instant::now() < deadline, "admin listener never answered; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(10));
    };
    // Joining the group takes seconds; the first answer comes before the assignment.
    assert_eq!(first.0, 503, "{first:?}");
    assert!(first.1.contains("assigned=false"), "{first:?}");
    assert_eq!(gw.metric("gatewatch_ready"), 0.0);
    assert_eq!(gw.get("/livez").map(|(s, _)| s), Some(200));
    gw.wait_ready(Duration::from_secs(60));
    let (status, body) = gw.get("/readyz").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("assigned=true") && body.contains("producer_reachable=true"), "{body}");
    // The same as a metric, for alerting (the chart's GatewatchNotReady); updated every 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("gatewatch_ready") != 1.0 {
        assert!(Instant::now() < deadline, "gatewatch_ready stayed 0 while /readyz says ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The input partitions and the metrics topic's.
    assert_eq!(gw.metric("gatewatch_assigned_partitions"), 2.0 + f64::from(METRICS_PARTITIONS));
}

#[test]
fn an_instance_left_without_partitions_is_a_ready_standby_and_takes_over_when_the_other_leaves() {
    let broker = Broker::start();
    let topics = Topics::new("standby");
    topics.create(&broker, 1);
    // One input partition and no metrics topic: of two one-worker instances, one holds nothing.
    let settings = [("GATEWATCH__BASELINE__METRICS_TOPIC", ""), ("GATEWATCH__PIPELINE__WORKERS", "1")];
    let a = Gatewatch::spawn(&broker, &topics, &settings);
    a.wait_ready(Duration::from_secs(60));
    let b = Gatewatch::spawn(&broker, &topics, &settings);
    // The group may give the partition to either; both are ready, one of them holding nothing.
    let held = |gw: &Gatewatch| gw.metric("gatewatch_assigned_partitions");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = |gw: &Gatewatch| gw.get("/readyz").is_some_and(|(s, _)| s == 200);
    while !(ready(&a) && ready(&b) && held(&a) + held(&b) == 1.0) {
        assert!(Instant::now() < deadline, "not both ready; logs:\n{}\n{}", a.log_text(), b.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut holder, standby) = if held(&a) == 1.0 { (a, b) } else { (b, a) };
    let (status, body) = standby.get("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("assigned=true") && body.contains("partitions=0"), "{body}");

    // The holder leaves; the standby takes the partition and processes what arrives.
    holder.signal("TERM");
    assert!(holder.wait_timeout(Duration::from_secs(30)).is_some_and(|s| s.success()), "log:\n{}", holder.log_text());
    let records: Vec<_> = sample_lines()[..20].iter().map(|l| (Some(0), None, l.clone())).collect();
    let landed = broker.produce(&topics.input, &records);
    let outputs = topics.outputs_covering(&broker, &landed, Duration::from_secs(60));
    assert_all_covered(&coverage(&outputs, &topics.input), &landed);
    assert_eq!(held(&standby), 1.0, "log:\n{}", standby.log_text());
    assert_eq!(standby.get("/readyz").map(|(s, _)| s), Some(200));
}

#[test]
fn metrics_count_what_the_test_sent() {
    let broker = Broker::start();
    let topics = Topics::new("metrics");
    topics.create(&broker, 2);
    let good = b"<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b".to_vec();
    let mut records: Vec<_> = (0..37).map(|i| (Some(i % 2), None, good.clone())).collect();
    records.extend((0..5).map(|i| (Some(i % 2), None, Vec::new())));
    records.extend((0..3).map(|i| (Some(i % 2), None, b"not a netscaler line".to_vec())));
    broker.produce(&topics.input, &records);
    let gw = Gatewatch::spawn(&broker, &topics, &[]);
    let all = topics.outputs(&broker, 45, Duration::from_secs(60));
    assert_eq!(all.len(), 45, "log:\n{}", gw.log_text());
    // Offsets are stored after delivery; give the acker a moment to record the last batch.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.outputs(&topics) < 45.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, body) = gw.get("/metrics").unwrap();
    let value = |series: String| metric_value(&body, &series);
    assert_eq!(value(format!("gatewatch_records_in_total{{topic=\"{}\"}}", topics.input)), 45.0, "{body}");
    assert_eq!(value(format!("gatewatch_records_out_total{{topic=\"{}\"}}", topics.enriched)), 37.0, "{body}");
    assert_eq!(value(format!("gatewatch_records_out_total{{topic=\"{}\"}}", topics.dlq)), 8.0, "{body}");
    assert_eq!(value("gatewatch_parse_errors_total{reason=\"empty\"}".into()), 5.0, "{body}");
    assert_eq!(value("gatewatch_parse_errors_total{reason=\"unrecognised\"}".into()), 3.0, "{body}");
    assert_eq!(value("gatewatch_dlq_records_total{reason=\"empty\"}".into()), 5.0, "{body}");
    assert_eq!(
        value("gatewatch_parse_results_total{dataset=\"citrix_adc.log\",result=\"parsed\"}".into()),
        37.0,
        "{body}"
    );
    assert_eq!(value(format!("gatewatch_delivery_failures_total{{topic=\"{}\"}}", topics.enriched)), 0.0);
    // Consumer lag per partition comes from librdkafka statistics (1 s in tests) and drains to zero.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = gw.get("/metrics").unwrap();
        let lags: Vec<f64> = (0..2)
            .map(|p| {
                metric_value(&body, &format!("gatewatch_consumer_lag{{topic=\"{}\",partition=\"{p}\"}}", topics.input))
            })
            .collect();
        let present = (0..2)
            .all(|p| body.contains(&format!("gatewatch_consumer_lag{{topic=\"{}\",partition=\"{p}\"}}", topics.input)));
        if present && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "consumer lag not reported as drained: {lags:?}\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_changed_feed_is_picked_up_on_its_file_change_notification_not_the_interval() {
    let broker = Broker::start();
    let topics = Topics::new("feed-notify");
    topics.create(&broker, 1);
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.csv");
    std::fs::write(&feed, "type,value\nipv4,198.51.100.7\n").unwrap();
    let config = format!("[[enrich.ioc.feeds]]\nname = \"watch\"\npath = {feed:?}\nformat = \"csv\"\n");
    // An interval the test never reaches: only the notification can wake the reloader.
    let mut gw =
        Gatewatch::spawn_with_config(&broker, &topics, &[("GATEWATCH__ENRICH__RELOAD_INTERVAL", "1h")], Some(&config));
    gw.wait_ready(Duration::from_secs(60));
    assert_eq!(gw.metric("gatewatch_ioc_indicators"), 1.0);
    // Written aside and renamed over, as a ConfigMap update or a feed fetcher does.
    std::fs::write(dir.path().join("feed.new"), "type,value\nipv4,198.51.100.7\nipv4,198.51.100.8\n").unwrap();
    std::fs::rename(dir.path().join("feed.new"), &feed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("gatewatch_ioc_indicators") < 2.0 {
        assert!(Instant::now() < deadline, "the changed feed is not picked up; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A stop joins the reloader with the other threads and exits cleanly.
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "exit {status:?}; log:\n{}", gw.log_text());
}

#[test]
fn a_feed_broken_while_running_is_reported_in_metrics_and_logs_and_the_old_one_kept() {
    let broker = Broker::start();
    let topics = Topics::new("feed-reload");
    topics.create(&broker, 1);
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.csv");
    std::fs::write(&feed, "type,value\nipv4,198.51.100.7\n").unwrap();
    let config = format!("[[enrich.ioc.feeds]]\nname = \"watch\"\npath = {feed:?}\nformat = \"csv\"\n");
    let gw =
        Gatewatch::spawn_with_config(&broker, &topics, &[("GATEWATCH__ENRICH__RELOAD_INTERVAL", "1s")], Some(&config));
    gw.wait_ready(Duration::from_secs(60));
    assert_eq!(gw.metric("gatewatch_ioc_indicators"), 1.0);
    assert_eq!(gw.metric("gatewatch_reloads_total{component=\"feed:watch\",outcome=\"ok\"}"), 1.0);

    std::fs::write(dir.path().join("feed.new"), "no header here\n\"broken").unwrap();
    std::fs::rename(dir.path().join("feed.new"), &feed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.metric("gatewatch_reloads_total{component=\"feed:watch\",outcome=\"error\"}") < 1.0 {
        assert!(Instant::now() < deadline, "no reload error reported; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gw.metric("gatewatch_ioc_indicators"), 1.0, "the previous version stays");
    let log = gw.log_text();
    assert!(log.contains("load failed") && log.contains("feed.csv"), "{log}");
    // /readyz names the failing component and stays ready: the previous version keeps serving.
    let (status, body) = gw.get("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("failed_reloads=feed:watch"), "{body}");
    // Unreadable is as broken as garbage; fixed, the component leaves the list.
    std::fs::remove_file(&feed).unwrap();
    std::fs::create_dir(&feed).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(gw.get("/readyz").unwrap().1.contains("failed_reloads=feed:watch"));
    std::fs::remove_dir(&feed).unwrap();
    std::fs::write(&feed, "type,value\nipv4,198.51.100.7\nipv4,198.51.100.8\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.get("/readyz").unwrap().1.contains("failed_reloads=none") {
        assert!(Instant::now() < deadline, "the fixed feed is not picked up; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gw.metric("gatewatch_ioc_indicators"), 2.0);
    std::fs::write(&feed, "no header here\n\"broken").unwrap();

    // The same file makes `gatewatch check` fail, naming the feed.
    std::fs::write(dir.path().join("check.toml"), &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["check", "--config"])
        .arg(dir.path().join("check.toml"))
        .current_dir(dir.path())
        .env_clear()
        .env("GATEWATCH__DETECT__RULES_DIRS", std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("watch") && stderr.contains("feed.csv"), "{stderr}");
}

#[test]
fn a_rule_added_while_running_fires_without_a_restart_and_a_broken_one_is_reported() {
    let broker = Broker::start();
    let topics = Topics::new("rule-reload");
    topics.create(&broker, 1);
    let rules = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/citrix/cve-2019-19781-probe.yml");
    std::fs::copy(&shipped, rules.path().join("probe.yml")).unwrap();
    let rules_dir = rules.path().display().to_string();
    let gw = Gatewatch::spawn(
        &broker,
        &topics,
        &[("GATEWATCH__DETECT__RULES_DIRS", &rules_dir), ("GATEWATCH__ENRICH__RELOAD_INTERVAL", "1s")],
    );
    gw.wait_ready(Duration::from_secs(60));
    assert_eq!(gw.metric("gatewatch_rules_loaded"), 1.0);
    let line = |user: &str| {
        format!("<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default CLI CMD_EXECUTED 1 0 : User {user} - Remote_ip 203.0.113.5 - Command \"show ns config\" - Status \"Success\"").into_bytes()
    };
    broker.produce(&topics.input, &[(Some(0), None, line("first"))]);
    assert_eq!(broker.read(&topics.enriched, 1, Duration::from_secs(60)).len(), 1);
    assert!(broker.read(&topics.alerts, 0, Duration::from_secs(3)).is_empty());

    // A new rule and a broken one appear: the good one is used, the broken one reported.
    let admin = "title: t\nid: test-any-command\nlogsource: {product: citrix}\ndetection:\n  sel:\n    citrix_adc.log.name: CMD_EXECUTED\n  condition: sel\nlevel: low\ngatewatch: {stage: auth-abuse}\n";
    std::fs::write(rules.path().join("any-command.yml"), admin).unwrap();
    std::fs::write(rules.path().join("broken.yml"), "title: broken\nid: b\ndetection: [\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.metric("gatewatch_rules_loaded") < 2.0 {
        assert!(Instant::now() < deadline, "rules not reloaded; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.metric("gatewatch_reloads_total{component=\"rules\",outcome=\"error\"}") >= 1.0);
    assert!(gw.log_text().contains("broken.yml"));
    broker.produce(&topics.input, &[(Some(0), None, line("second"))]);
    let alerts = broker.read(&topics.alerts, 1, Duration::from_secs(60));
    assert_eq!(alerts.len(), 1, "log:\n{}", gw.log_text());
    assert_eq!(alerts[0].json()["rule"]["id"], "test-any-command");
    assert_eq!(alerts[0].json()["user"]["name"], "second");
}

#[test]
fn runs_and_stops_cleanly_with_every_file_system_read_only() {
    let broker = Broker::start();
    let topics = Topics::new("read-only");
    topics.create(&broker, 1);
    let line =
        b"<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN LOGIN 1 0 : User alice - Client_ip 8.8.8.8"
            .to_vec();
    broker.produce(&topics.input, &[(Some(0), None, line.clone()), (Some(0), None, b"junk".to_vec())]);
    let mut gw = Gatewatch::spawn_read_only(&broker, &topics);
    let out = topics.outputs(&broker, 2, Duration::from_secs(60));
    assert_eq!(out.len(), 2, "log:\n{}", gw.log_text());
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "exit {status:?}; log:\n{}", gw.log_text());
    assert!(!gw.log_text().contains("Read-only file system"), "{}", gw.log_text());
}

/// Opens connections that send half a request and then wait, one every `every`, keeping the last
/// `keep` open, until `stop` is set; returns how many it opened.
fn slow_clients(
    addr: String,
    every: Duration,
    keep: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut open = std::collections::VecDeque::new();
        let mut opened = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && opened < 20_000 {
            if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
                open.push_back(stream);
                opened += 1;
                if open.len() > keep {
                    open.pop_front();
                }
            }
            std::thread::sleep(every);
        }
        opened
    })
}

#[test]
fn slow_clients_neither_lock_out_the_probes_nor_slow_the_records() {
    let broker = Broker::start();
    let topics = Topics::new("slowloris");
    topics.create(&broker, 1);
    let gw = Gatewatch::spawn(
        &broker,
        &topics,
        &[("GATEWATCH__ADMIN__MAX_CONNECTIONS", "16"), ("GATEWATCH__ADMIN__HEADER_TIMEOUT", "2s")],
    );
    gw.wait_ready(Duration::from_secs(60));
    let line = b"<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b".to_vec();
    let batch: Vec<_> = (0..2000).map(|_| (Some(0), None, line.clone())).collect();

    let started = Instant::now();
    broker.produce(&topics.input, &batch);
    gw.wait_for_outputs(&topics, 2000.0, Duration::from_secs(120));
    let quiet = started.elapsed();

    // 200 half-sent requests a second, 500 held open, for the whole second batch.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = slow_clients(gw.admin.clone(), Duration::from_millis(5), 500, stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    broker.produce(&topics.input, &batch);
    let mut probes = 0;
    let mut attacked = None;
    while attacked.is_none() || probes < 30 {
        if attacked.is_none() && gw.outputs(&topics) >= 4000.0 {
            attacked = Some(started.elapsed());
        }
        let asked = Instant::now();
        let answer = gw.get("/livez");
        assert_eq!(answer.as_ref().map(|(s, _)| *s), Some(200), "/livez locked out after {probes} probes: {answer:?}");
        assert!(asked.elapsed() < Duration::from_secs(2), "/livez took {:?}", asked.elapsed());
        probes += 1;
        assert!(started.elapsed() < Duration::from_secs(120), "records stalled; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let attacked = attacked.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = attack.join().unwrap();
    let closed = gw.metric("gatewatch_admin_connections_closed_total");
    println!(
        "2000 records: {:.2}s without slow clients, {:.2}s with {opened} slow connections ({closed} closed early); \
         {probes} /livez probes all answered",
        quiet.as_secs_f64(),
        attacked.as_secs_f64()
    );
    assert!(opened > 100 && closed > 0.0, "the attack did not fill the cap: opened {opened}, closed {closed}");
    assert_eq!(gw.outputs(&topics), 4000.0);
}
