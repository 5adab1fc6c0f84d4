//! Parser throughput on a realistic mixed corpus: every record of the public-sample fixtures (packet-
//! engine audit lines of all families, CEF, httpaccess/httperror, shell and cron), read the way
//! `gatewatch parse` reads files, with each file's dataset hint. The synthetic generator file is left
//! out. `cargo bench --bench parse`

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

#[path = "samples.rs"]
mod samples;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch::ecs::{event_json, SourceRef};
use gatewatch::parse::{parse, Dataset, ParseContext};

fn corpus() -> Vec<(Option<Dataset>, Vec<u8>)> {
    samples::records().into_iter().map(|(hint, text)| (hint, text.into_bytes())).collect()
}

fn bench(c: &mut Criterion) {
    let corpus = corpus();
    let received = Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap();
    let ctx = ParseContext::default();
    assert!(corpus.iter().all(|(hint, r)| parse(r, received, &ctx, *hint).is_ok()), "the corpus parses");
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(corpus.len() as u64));
    group.bench_function("mixed_corpus", |b| {
        b.iter(|| corpus.iter().filter(|(hint, r)| parse(r, received, &ctx, *hint).is_ok()).count());
    });
    group.bench_function("mixed_corpus_to_ecs_json", |b| {
        let source = SourceRef { topic: "adc.raw", partition: 0, offset: 0 };
        b.iter(|| {
            corpus
                .iter()
                .map(|(hint, r)| event_json(&parse(r, received, &ctx, *hint).unwrap(), source).len())
                .sum::<usize>()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
