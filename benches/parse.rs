//! Parse and ECS-serialization throughput on the real public sample lines.
//! `cargo bench --bench parse`

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch::ecs::{event_json, SourceRef};
use gatewatch::parse::{parse, Limits};

fn native_lines() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read(&path).unwrap();
            lines.extend(
                text.split(|b| *b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"#")).map(<[u8]>::to_vec),
            );
        }
    }
    lines
}

fn bench(c: &mut Criterion) {
    let lines = native_lines();
    let received = Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap();
    let limits = Limits { max_line: 1 << 16 };
    let parsed: Vec<_> = lines.iter().filter(|l| parse(l, received, limits).is_ok()).cloned().collect();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("all_samples", |b| {
        b.iter(|| lines.iter().filter(|l| parse(l, received, limits).is_ok()).count());
    });
    group.throughput(Throughput::Elements(parsed.len() as u64));
    group.bench_function("parse_and_serialize_netscaler", |b| {
        let source = SourceRef { topic: "adc.raw", partition: 0, offset: 0 };
        b.iter(|| parsed.iter().map(|l| event_json(&parse(l, received, limits).unwrap(), source).len()).sum::<usize>());
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
