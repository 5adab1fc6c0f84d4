//! Load time and memory of the indicator engine at a given feed size, for BENCHMARKS.md:
//! `cargo run --release --example ioc_scale -- 1000000`. One size per process, so the memory figures
//! are this size's alone.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

#[path = "../benches/ioc_gen.rs"]
mod ioc_gen;
#[path = "../benches/samples.rs"]
mod samples;

use std::time::Instant;

use gatewatch::config::{FeedSettings, Settings};
use gatewatch::enrich::feeds::Format;
use gatewatch::enrich::Enricher;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("feed.csv");
    std::fs::write(&path, ioc_gen::csv_feed(n)).expect("write feed");
    let file_mib = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let mut settings = Settings::default();
    settings.enrich.ioc.feeds = vec![FeedSettings { name: "gen".into(), path: path.clone(), format: Format::Csv }];
    let before = rss_kib("VmRSS:");
    let start = Instant::now();
    let (enricher, events) = Enricher::load(&settings, true).expect("feed loads");
    let took = start.elapsed();
    let after = rss_kib("VmRSS:");
    assert!(events.iter().all(|e| e.outcome.is_ok()));
    println!(
        "indicators={} feed_mib={file_mib:.1} load_s={:.3} rss_delta_mib={:.1} peak_rss_mib={:.1}",
        enricher.indicator_count(),
        took.as_secs_f64(),
        after.saturating_sub(before) as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
