//! Heap allocations of the record path, counted by a counting global allocator: once warm, a record that
//! no rule matches goes through parse → ECS document → GeoIP City/ASN and indicators → the shipped
//! rules → its JSON without a single heap allocation (the `serde_json::Map` document took over 150 per
//! record; the flat document 19, before its buffers were reused and derived names interned).

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gatewatch::config::{FeedSettings, Settings};
use gatewatch::detect::{Publish, RuleSet, Worker};
use gatewatch::ecs::Origin;
use gatewatch::enrich::feeds::Format;
use gatewatch::enrich::Enricher;
use gatewatch::parse::{Dataset, ParseContext};
use gatewatch::process::{Clocks, Created, Input, Processor};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Counts the allocations of the thread that asked for counting (other test threads are not counted).
struct Counted;

fn count() {
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is passed on unchanged to the system allocator's implementation of the same method.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counted = Counted;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every record of the public sample files (packet-engine records — connections, SSL VPN sessions,
/// AAA, WAF native and CEF, SNMP — and the appliance's own httpaccess, httperror, shell and cron
/// files), each with the dataset its file name implies.
fn records() -> Vec<(Option<Dataset>, String)> {
    let dir = root().join("tests/fixtures/public-samples");
    let mut records = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let hint = Dataset::from_path(&path.to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty());
        records.extend(lines.map(|line| (hint, line.to_owned())));
    }
    records
}

fn enricher(dir: &Path) -> Enricher {
    let geoip = root().join(".tools/geoip");
    assert!(geoip.join("GeoLite2-City.mmdb").exists(), "{} missing: run scripts/setup.sh", geoip.display());
    let feed = dir.join("indicators.csv");
    let mut text = String::from("type,value\n");
    for i in 0..1000 {
        text.push_str(&format!("ipv4,198.18.{}.{}\n", i / 250, i % 250));
    }
    std::fs::write(&feed, text).unwrap();
    let mut settings = Settings::default();
    settings.enrich.geoip.city_db = Some(geoip.join("GeoLite2-City.mmdb"));
    settings.enrich.geoip.asn_db = Some(geoip.join("GeoLite2-ASN.mmdb"));
    settings.enrich.ioc.feeds = vec![FeedSettings { name: "test".into(), path: feed, format: Format::Csv }];
    Enricher::load(&settings, true).unwrap().0
}

#[test]
fn a_record_no_rule_matches_goes_through_the_whole_path_without_allocating() {
    let options = Settings::default().detect.options();
    let (rules, errors) = RuleSet::load(&[root().join("rules")], &options);
    assert!(errors.is_empty(), "{errors:?}");
    let ctx = ParseContext::default();
    let dir = tempfile::tempdir().unwrap();
    let enricher = enricher(dir.path());
    let processor = Processor { ctx: &ctx, enricher: Some(&enricher), rules: &rules, detect: &options };
    let received: DateTime<Utc> = "2024-08-01T00:00:00Z".parse().unwrap();
    let clocks = Clocks { received, indicators: received, created: Created::EventTime };
    let input = |(hint, line): (Option<Dataset>, &'static str), offset: usize| Input {
        payload: line.as_bytes(),
        hint,
        origin: Origin::File { file: "sample.log", line: offset },
        appliance: None,
    };

    // The records no rule matches (the rest alert or feed correlations, which keep evidence).
    let lines: Vec<(Option<Dataset>, &'static str)> =
        records().into_iter().map(|(hint, l)| (hint, &*Box::leak(l.into_boxed_str()))).collect();
    let mut worker = Worker::new(Publish::Immediately);
    let quiet: Vec<(Option<Dataset>, &'static str)> = lines
        .iter()
        .copied()
        .filter(|&record| {
            let out = processor.process(Some(&mut worker), input(record, 0), clocks);
            out.is_ok_and(|p| p.alerts.is_empty() && !rules.rules.iter().any(|r| r.matches(&p.doc)))
        })
        .collect();
    assert!(quiet.len() >= 300, "{} quiet records of {}", quiet.len(), lines.len());
    let datasets: std::collections::BTreeSet<String> = quiet
        .iter()
        .map(|&record| processor.process(None, input(record, 0), clocks).unwrap().event.dataset.as_str().to_owned())
        .collect();
    assert!(datasets.len() >= 5, "records of several datasets: {datasets:?}");

    // Warm: the GeoIP cache holds the records' addresses, the buffers kept for reuse have grown.
    let mut out = Vec::with_capacity(1 << 16);
    let run = |worker: &mut Worker, out: &mut Vec<u8>| {
        for (i, &record) in quiet.iter().enumerate() {
            let processed = processor.process(Some(worker), input(record, i), clocks).unwrap();
            out.clear();
            processed.doc.write_json(out);
        }
    };
    run(&mut worker, &mut out);
    run(&mut worker, &mut out);
    let total = allocations(|| run(&mut worker, &mut out));
    eprintln!("{} quiet records of {datasets:?}: {total} allocations", quiet.len());
    assert_eq!(total, 0, "allocations for {} records", quiet.len());
    assert!(out.starts_with(b"{\"@timestamp\":"), "the last record was written");
}
