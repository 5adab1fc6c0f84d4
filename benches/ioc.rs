//! Per-event indicator look-up cost at 1k, 100k and 1M indicators: every record of the public-sample
//! corpus is parsed once, then enriched (IOC matching only, no GeoIP) per iteration.
//! `cargo bench --bench ioc`

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

#[path = "ioc_gen.rs"]
mod ioc_gen;
#[path = "samples.rs"]
mod samples;

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatewatch::config::{FeedSettings, GeoRole, Settings};
use gatewatch::ecs::{event_doc, SourceRef};
use gatewatch::enrich::feeds::Format;
use gatewatch::enrich::Enricher;
use gatewatch::parse::{parse, reader, ParseContext};

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") && !path.to_string_lossy().contains("generated") {
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            records.extend(reader::records(&text).iter().map(|r| r.text.as_bytes().to_vec()));
        }
    }
    records
}

fn bench(c: &mut Criterion) {
    let records = corpus();
    let received = Utc.with_ymd_and_hms(2020, 1, 20, 0, 0, 0).unwrap();
    let ctx = ParseContext::default();
    let events: Vec<_> = records.iter().filter_map(|r| parse(r, received, &ctx, None).ok()).collect();
    let source = SourceRef { topic: "adc.raw", partition: 0, offset: 0 };
    let docs: Vec<_> = events.iter().map(|e| event_doc(e, source.into())).collect();
    let mut group = c.benchmark_group("ioc_lookup_per_event");
    group.throughput(Throughput::Elements(events.len() as u64));
    for n in [1_000usize, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.csv");
        std::fs::write(&path, ioc_gen::csv_feed(n)).unwrap();
        let mut settings = Settings::default();
        settings.enrich.geoip.roles = vec![GeoRole::Source, GeoRole::Client, GeoRole::Destination, GeoRole::Server];
        settings.enrich.ioc.feeds = vec![FeedSettings { name: "gen".into(), path: path.clone(), format: Format::Csv }];
        let (enricher, _) = Enricher::load(&settings, true).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut hits = 0;
                for (event, doc) in events.iter().zip(&docs) {
                    let mut doc = doc.clone();
                    hits += enricher.enrich(event, &mut doc, received);
                }
                hits
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
