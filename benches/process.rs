//! The whole in-process path, stage by stage, on a realistic generated corpus: mostly benign traffic
//! with attacks a trickle (see `corpus_gen.rs`), GeoLite2 City + ASN from `.tools/geoip/` (installed by
//! `scripts/setup.sh`), 100,000 indicators of which 1% of the corpus's client addresses, and the shipped
//! rule pack. Each benchmark runs every record of the corpus through one more stage than the one before
//! (cumulative), so a stage's cost is the difference between two lines; `full_job` is what `gatewatch
//! replay --enriched-out` does per record: every enriched event and every alert written as JSON.
//! `cargo bench --bench process`

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

#[path = "corpus_gen.rs"]
mod corpus_gen;
#[path = "ioc_gen.rs"]
mod ioc_gen;
#[path = "samples.rs"]
mod samples;

use std::alloc::{GlobalAlloc, Layout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch::config::{FeedSettings, Settings};
use gatewatch::detect::{Publish, RuleSet, Worker};
use gatewatch::ecs::{event_doc, Origin, SourceRef};
use gatewatch::enrich::feeds::Format;
use gatewatch::enrich::Enricher;
use gatewatch::parse::{parse, Dataset, ParseContext};
use gatewatch::process::{Clocks, Created, Input, Processor};

/// The allocator the service ships with (`src/main.rs`), counting allocations while `COUNTING` is set
/// (the timed runs leave it off).
struct Counted;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on unchanged to mimalloc's implementation of the same method.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counted = Counted;

/// Heap allocations (and reallocations) per record of `run` over `records` records.
fn allocations_per_record(records: usize, run: impl FnOnce()) -> f64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    run();
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) as f64 / records as f64
}

/// Records per iteration; the address pool is larger than the GeoIP cache, as a fleet's is.
const RECORDS: usize = 50_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn enricher(dir: &Path, indicators: &[String]) -> Enricher {
    let geoip = root().join(".tools/geoip");
    let (city, asn) = (geoip.join("GeoLite2-City.mmdb"), geoip.join("GeoLite2-ASN.mmdb"));
    assert!(
        city.is_file() && asn.is_file(),
        "GeoLite2 databases missing under {}: run scripts/setup.sh",
        geoip.display()
    );
    let feed = dir.join("indicators.csv");
    let mut text = ioc_gen::csv_feed(100_000 - indicators.len());
    for ip in indicators {
        text.push_str(&format!("ipv4,{ip},bench,high\n"));
    }
    std::fs::write(&feed, text).unwrap();
    let mut settings = Settings::default();
    settings.enrich.geoip.city_db = Some(city);
    settings.enrich.geoip.asn_db = Some(asn);
    settings.enrich.ioc.feeds = vec![FeedSettings { name: "bench".into(), path: feed, format: Format::Csv }];
    let (enricher, _) = Enricher::load(&settings, true).unwrap();
    enricher
}

fn bench(c: &mut Criterion) {
    let options = Settings::default().detect.options();
    let (rules, errors) = RuleSet::load(&[root().join("rules")], &options);
    assert!(errors.is_empty(), "{errors:?}");
    let ctx = ParseContext::default();
    let received: DateTime<Utc> = Utc.with_ymd_and_hms(2020, 1, 20, 0, 0, 0).unwrap();
    let clocks = Clocks { received, indicators: received, created: Created::EventTime };
    let corpus = corpus_gen::Corpus::generate(RECORDS, &rules, &options);
    let dir = tempfile::tempdir().unwrap();
    let enricher = enricher(dir.path(), &corpus.indicators);
    let processor = Processor { ctx: &ctx, enricher: Some(&enricher), rules: &rules, detect: &options };
    let source = SourceRef { topic: "adc.raw", partition: 0, offset: 0 };
    fn input<'r>((hint, payload): &'r (Option<Dataset>, Vec<u8>), source: SourceRef<'r>) -> Input<'r> {
        Input { payload, hint: *hint, origin: Origin::Kafka(source), appliance: None }
    }

    // What the corpus is, checked once: every record parses, attacks alert, indicators hit.
    let mut worker = Worker::new(Publish::Immediately);
    let (mut alerts, mut hits) = (0, 0);
    for record in &corpus.records {
        let out = processor.process(Some(&mut worker), input(record, source), clocks).unwrap();
        alerts += out.alerts.len();
        hits += out.indicator_hits;
    }
    eprintln!(
        "process bench: {} records ({} attack lines), {} distinct client addresses, {alerts} alerts, {hits} indicator hits",
        corpus.records.len(),
        corpus.attacks,
        corpus.addresses
    );
    assert!(alerts >= corpus.attacks && hits > 0, "the corpus alerts and hits indicators");

    // Allocations per record, stage by stage (cumulative, as the timed runs below), in steady state:
    // the worker and the GeoIP cache have seen the corpus once already.
    let n = corpus.records.len();
    let parse_only = allocations_per_record(n, || {
        for (hint, r) in &corpus.records {
            drop(parse(r, received, &ctx, *hint));
        }
    });
    let with_ecs = allocations_per_record(n, || {
        for (hint, r) in &corpus.records {
            drop(event_doc(&parse(r, received, &ctx, *hint).unwrap(), source.into()));
        }
    });
    let with_enrich = allocations_per_record(n, || {
        for (hint, r) in &corpus.records {
            let event = parse(r, received, &ctx, *hint).unwrap();
            let mut doc = event_doc(&event, source.into());
            enricher.enrich(&event, &mut doc, received);
        }
    });
    let with_rules = allocations_per_record(n, || {
        for record in &corpus.records {
            drop(processor.process(Some(&mut worker), input(record, source), clocks).unwrap());
        }
    });
    let mut out = Vec::with_capacity(1 << 20);
    let full = allocations_per_record(n, || {
        for record in &corpus.records {
            let processed = processor.process(Some(&mut worker), input(record, source), clocks).unwrap();
            out.clear();
            processed.doc.write_json(&mut out);
            for alert in &processed.alerts {
                serde_json::to_writer(&mut out, &alert.doc).unwrap();
            }
        }
    });
    eprintln!(
        "process bench: allocations per record: parse {parse_only:.1}, +ECS {with_ecs:.1}, +enrich {with_enrich:.1}, +rules {with_rules:.1}, full job {full:.1}"
    );

    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(corpus.records.len() as u64));
    group.sample_size(10);
    group.bench_function("parse", |b| {
        b.iter(|| corpus.records.iter().filter(|(hint, r)| parse(r, received, &ctx, *hint).is_ok()).count())
    });
    group.bench_function("parse_ecs", |b| {
        b.iter(|| {
            corpus
                .records
                .iter()
                .map(|(hint, r)| event_doc(&parse(r, received, &ctx, *hint).unwrap(), source.into()).len())
                .sum::<usize>()
        })
    });
    group.bench_function("parse_ecs_enrich", |b| {
        b.iter(|| {
            let mut hits = 0;
            for (hint, r) in &corpus.records {
                let event = parse(r, received, &ctx, *hint).unwrap();
                let mut doc = event_doc(&event, source.into());
                hits += enricher.enrich(&event, &mut doc, received);
            }
            hits
        })
    });
    let mut worker = Worker::new(Publish::Immediately);
    group.bench_function("parse_ecs_enrich_rules", |b| {
        b.iter(|| {
            corpus
                .records
                .iter()
                .map(|r| processor.process(Some(&mut worker), input(r, source), clocks).unwrap().alerts.len())
                .sum::<usize>()
        })
    });
    let mut worker = Worker::new(Publish::Immediately);
    let mut out = Vec::with_capacity(1 << 20);
    group.bench_function("full_job", |b| {
        b.iter(|| {
            out.clear();
            for record in &corpus.records {
                let processed = processor.process(Some(&mut worker), input(record, source), clocks).unwrap();
                processed.doc.write_json(&mut out);
                out.push(b'\n');
                for alert in &processed.alerts {
                    serde_json::to_writer(&mut out, &alert.doc).unwrap();
                    out.push(b'\n');
                }
                if out.len() > 1 << 20 {
                    out.clear();
                }
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
