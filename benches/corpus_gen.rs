//! A deterministic, realistic corpus for the whole-path benchmark: the records of the public-sample
//! fixtures (every format and family; the synthetic generator file left out) as templates, mostly
//! benign traffic with attacks a trickle. A template is an attack when the shipped rules alert on it
//! on its own; one record in `ATTACK_EVERY` is an attack (cycling through them), the others are benign
//! templates drawn at random. Each record's first IPv4 address is replaced by one from a pool of
//! `POOL` public addresses, 1% of which are on the indicator list, so GeoIP and indicator look-ups see
//! a fleet's spread of clients rather than the samples' few.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use gatewatch::detect::{DetectOptions, Publish, RuleSet, Worker};
use gatewatch::ecs::Origin;
use gatewatch::parse::{Dataset, ParseContext};
use gatewatch::process::{Clocks, Created, Input, Processor};
use regex::Regex;

use super::samples::{records, Rng};

const ATTACK_EVERY: usize = 1_000;
const POOL: usize = 100_000;

pub struct Corpus {
    /// (dataset hint, record)
    pub records: Vec<(Option<Dataset>, Vec<u8>)>,
    pub attacks: usize,
    /// Distinct client addresses in `records`.
    pub addresses: usize,
    /// The pool's addresses that are indicators (1%).
    pub indicators: Vec<String>,
}

/// A public-looking IPv4 address (no private, loopback, link-local, CGNAT or documentation /8s).
fn address(rng: &mut Rng) -> String {
    loop {
        let r = rng.next();
        let a = (r >> 8) as u8;
        if matches!(a, 0 | 10 | 100 | 127 | 169 | 172 | 192 | 198 | 203) || a >= 224 {
            continue;
        }
        return format!("{a}.{}.{}.{}", (r >> 16) as u8, (r >> 24) as u8, ((r >> 32) as u8).max(1));
    }
}

impl Corpus {
    pub fn generate(n: usize, rules: &RuleSet, options: &DetectOptions) -> Corpus {
        let ctx = ParseContext::default();
        let received = Utc.with_ymd_and_hms(2020, 1, 20, 0, 0, 0).unwrap();
        let clocks = Clocks { received, indicators: received, created: Created::EventTime };
        let processor = Processor { ctx: &ctx, enricher: None, rules, detect: options };
        let (mut benign, mut attacks) = (Vec::new(), Vec::new());
        for (hint, text) in records() {
            let input =
                Input { payload: text.as_bytes(), hint, origin: Origin::File { file: "t", line: 1 }, appliance: None };
            let mut worker = Worker::new(Publish::Immediately);
            // The samples' few unparseable records are the dead-letter tests' business.
            let alerts = processor.process(Some(&mut worker), input, clocks).map(|out| out.alerts.len());
            match alerts {
                Ok(0) => benign.push((hint, text)),
                Ok(_) => attacks.push((hint, text)),
                Err(_) => {}
            }
        }
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let pool: Vec<String> = (0..POOL).map(|_| address(&mut rng)).collect();
        let indicators = pool.iter().step_by(100).cloned().collect();
        let ipv4 = Regex::new(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap();
        let (mut records, mut used, mut attack_count) = (Vec::with_capacity(n), HashSet::new(), 0);
        for i in 0..n {
            let (hint, text) = if i % ATTACK_EVERY == ATTACK_EVERY - 1 {
                attack_count += 1;
                &attacks[(i / ATTACK_EVERY) % attacks.len()]
            } else {
                &benign[rng.next() as usize % benign.len()]
            };
            let client = &pool[rng.next() as usize % POOL];
            let record = match ipv4.find(text) {
                Some(m) => {
                    used.insert(client.clone());
                    format!("{}{client}{}", &text[..m.start()], &text[m.end()..])
                }
                None => text.clone(),
            };
            records.push((*hint, record.into_bytes()));
        }
        Corpus { records, attacks: attack_count, addresses: used.len(), indicators }
    }
}
