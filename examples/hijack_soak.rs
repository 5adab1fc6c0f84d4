//! Soak of the session-hijack correlation (CVE-2023-4966: one session id from two autonomous systems
//! within 12 h), for RELIABILITY.md: `cargo run --release --example hijack_soak -- 1000000`.
//!
//! Normal VPN traffic — many overlapping sessions, each from one client address, each record enriched
//! with the real GeoLite2 ASN database — goes through the service's record path (`process`) with the
//! shipped rules. Printed at 10k, 100k, 1M (and 2M, 3M) records: the time per record of the last
//! stretch, the process's RSS and the correlation's groups. Flat time and RSS mean no state grows per
//! record; the groups level off at the sessions of the last 12 hours (the correlation's timespan).

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use gatewatch::config::Settings;
use gatewatch::detect::{RuleSet, Worker};
use gatewatch::ecs::Origin;
use gatewatch::enrich::Enricher;
use gatewatch::process::{Clocks, Created, Input, Processor};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Client addresses of a handful of real networks, so the ASN look-up answers.
const CLIENTS: [&str; 8] =
    ["81.2.69.142", "8.8.8.8", "1.1.1.1", "9.9.9.9", "89.160.20.128", "175.16.199.1", "216.160.83.56", "2.125.160.216"];

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings::default();
    settings.enrich.geoip.asn_db = Some(root.join(".tools/geoip/GeoLite2-ASN.mmdb"));
    let (enricher, _) = Enricher::load(&settings, true).expect("the ASN database (scripts/setup.sh) loads");
    let options = settings.detect.options();
    let (rules, errors) = RuleSet::load(&[root.join("rules")], &options);
    assert!(errors.is_empty(), "{errors:?}");
    let ctx = settings.parse_context();
    let processor = Processor { ctx: &ctx, enricher: Some(&enricher), rules: &rules, detect: &options };
    let mut worker = Worker::default();
    let start: DateTime<Utc> = "2023-10-20T00:00:00Z".parse().expect("a valid time");
    // 50 records a session, 2,000 sessions open at once, a record every 50 ms: 1M records span 14 h.
    let (per_session, open) = (50u64, 2_000u64);
    let mut alerts = 0usize;
    let mut stretch = Instant::now();
    let mut done_before = 0u64;
    println!("records  ns/record(stretch)  rss_mib  hijack_groups  alerts");
    for i in 0..n {
        let session = (i / (per_session * open)) * open + i % open;
        let client = CLIENTS[(session % CLIENTS.len() as u64) as usize];
        let at = start + Duration::milliseconds(i as i64 * 50);
        let line = format!(
            "<134> {} GMT gw1 0-PPE-0 : default SSLVPN HTTPREQUEST {i} 0 : Context u{session}@{client} - SessionId: {session} - {client} User u{session} : Group(s) staff : Vserver 10.0.0.10:443 - {} GMT : SSO is ON : GET /Citrix/StoreWeb/ - -",
            at.format("%m/%d/%Y:%H:%M:%S"),
            at.format("%m/%d/%Y:%H:%M:%S")
        );
        let clocks = Clocks { received: at, indicators: at, created: Created::EventTime };
        let input = Input {
            payload: line.as_bytes(),
            hint: None,
            origin: Origin::File { file: "soak", line: i as usize },
            appliance: None,
        };
        let processed = processor.process(Some(&mut worker), input, clocks).expect("the generated line parses");
        assert!(processed.doc.contains("source.as"), "enriched with the ASN");
        alerts += processed.alerts.len();
        let done = i + 1;
        if [10_000, 100_000, 1_000_000, 2_000_000, 3_000_000].contains(&done) || done == n {
            let ns = stretch.elapsed().as_nanos() as f64 / (done - done_before) as f64;
            let groups = worker.correlation_groups("gw-citrix-cve-2023-4966-session-hijack");
            println!("{done:>7}  {ns:>18.0}  {:>7.1}  {groups:>13}  {alerts:>6}", rss_mib());
            stretch = Instant::now();
            done_before = done;
        }
    }
    assert_eq!(alerts, 0, "normal sessions raise no hijack alert");
}
