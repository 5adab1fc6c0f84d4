//! What the benchmarks share: the public-sample records as `gatewatch parse` reads them, and a small
//! deterministic generator.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point
#![allow(dead_code)] // each benchmark uses part of it

use std::path::Path;

use gatewatch::parse::{reader, Dataset};

/// xorshift: every run measures the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every record of `tests/fixtures/public-samples/` (the synthetic generator file left out), with its
/// file section's dataset hint, multi-line records joined, as `gatewatch parse` reads the files.
pub fn records() -> Vec<(Option<Dataset>, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut records = Vec::new();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "log")) {
        if path.to_string_lossy().contains("generated") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let (mut hint, mut block) = (None, String::new());
        for line in text.lines().chain(std::iter::once("#")) {
            if line.starts_with('#') {
                records.extend(reader::records(&block).iter().map(|r| (hint, r.text.to_owned())));
                block.clear();
                if let Some(p) = line.strip_prefix("# --- ") {
                    hint = p.split_whitespace().next().and_then(Dataset::from_path);
                }
            } else {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    records
}
