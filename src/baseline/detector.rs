//! The anomaly detector of one metric series: online, one pass, bounded memory.
//!
//! Each sample is judged by four kinds of evidence, each turned into a score in [0, 1] by how rare it is
//! in the series' own history:
//!
//! * **patterns** — the sample, quantised on the range learned during warm-up, together with the
//!   samples before it (contexts of 1..`context` samples), and together with its time-of-day slot (one
//!   of `day_slots` per day), is looked up in the patterns seen so far. The share of unseen contexts,
//!   averaged over the last `short` samples (and, with a weight, now), is the novelty: daily rhythms,
//!   the nightly backup and other recurring shapes become known patterns, a new shape — or a familiar
//!   level at an unfamiliar time of day — does not.
//! * **values** — how often values in the sample's part of the range have occurred (averaged over the
//!   last `short` samples): a level the series rarely visits.
//! * **excursion** — the distance from a slowly moving centre in units of the usual spread: spikes.
//! * **range** — the sample leaves every value seen so far by more than `spatial_margin` of the range.
//!
//! A score is `-ln(tail) / ln(horizon)`, where `tail` is the share of the history (a decaying histogram
//! of the evidence, `horizon` samples long) at least as extreme as now; the sample's score is the
//! largest weighted one. After a score reaches `threshold`, scores are held below it for `refractory`
//! samples while the detector learns the new situation, so a sustained shift is reported once.
//!
//! Parameters were tuned on the Numenta Anomaly Benchmark (see BENCHMARKS.md).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Samples learned from before any score (the value range of the patterns is fixed then).
    pub warmup: u64,
    /// ...and the time they must span, in seconds, so every time of day has been seen once.
    pub warmup_span: i64,
    /// Score at or above which a sample is anomalous.
    pub threshold: f64,
    /// Samples after an anomalous one whose scores are held below the threshold.
    pub refractory: u32,
    /// Quantisation levels across the warm-up range (values beyond it get levels of their own).
    pub levels: f64,
    /// Longest context, in samples.
    pub context: usize,
    /// Time-of-day slots: a level is also judged against the levels seen in its slot (0 = off).
    pub day_slots: u32,
    /// Histogram bins of the value evidence.
    pub bins: usize,
    /// Samples averaged by the "recent" evidence.
    pub short: usize,
    /// History length, in samples, that the rarity of evidence is judged against.
    pub horizon: f64,
    /// Pseudo-count of the rarity estimate (how cautious the first judgements are).
    pub prior: f64,
    /// A value beyond the seen range by this share of the range is anomalous by itself.
    pub spatial_margin: f64,
    /// Adaptation rate of the excursion centre and spread.
    pub excursion_rate: f64,
    pub weight_patterns: f64,
    pub weight_patterns_now: f64,
    pub weight_values: f64,
    pub weight_excursion: f64,
    pub weight_range: f64,
    /// Bound on remembered patterns; the least recently seen half is forgotten when it is reached.
    pub max_patterns: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            warmup: 200,
            warmup_span: 86_400,
            threshold: 0.45,
            refractory: 100,
            levels: 3.5,
            context: 3,
            day_slots: 48,
            bins: 40,
            short: 10,
            horizon: 10_000.0,
            prior: 1.0,
            spatial_margin: 0.05,
            excursion_rate: 0.003,
            weight_patterns: 1.0,
            weight_patterns_now: 0.0,
            weight_values: 0.5,
            weight_excursion: 0.6,
            weight_range: 0.5,
            max_patterns: 8_192,
        }
    }
}

/// The judgement of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Anomaly score in [0, 1]; 0 during warm-up.
    pub score: f64,
    /// What the series usually shows at this time of day, and the band around it.
    pub expected: f64,
    pub low: f64,
    pub high: f64,
}

/// How rare a piece of evidence is against its own decaying history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rarity {
    /// Largest evidence value the histogram resolves.
    scale: f64,
    /// The last `window` evidence values (ring buffer), averaged before judging.
    recent: Vec<f64>,
    next: usize,
    window: usize,
    histogram: Vec<f64>,
    total: f64,
}

const RARITY_BINS: usize = 64;

impl Rarity {
    fn new(scale: f64, window: usize) -> Rarity {
        Rarity {
            scale,
            recent: Vec::with_capacity(window),
            next: 0,
            window: window.max(1),
            histogram: vec![0.0; RARITY_BINS],
            total: 0.0,
        }
    }

    /// Adds one evidence value; returns its rarity score in [0, 1].
    fn judge(&mut self, evidence: f64, p: &Params) -> f64 {
        if self.recent.len() < self.window {
            self.recent.push(evidence);
        } else {
            self.recent[self.next] = evidence;
            self.next = (self.next + 1) % self.window;
        }
        let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        let bin = ((mean / self.scale * RARITY_BINS as f64) as usize).min(RARITY_BINS - 1);
        let at_least: f64 = self.histogram[bin..].iter().sum();
        let tail = (at_least + p.prior) / (self.total + p.prior);
        let keep = 1.0 - 1.0 / p.horizon;
        for h in &mut self.histogram {
            *h *= keep;
        }
        self.total = self.total * keep + 1.0;
        self.histogram[bin] += 1.0;
        (-tail.ln() / p.horizon.ln()).clamp(0.0, 1.0)
    }
}

/// Contexts of quantised samples seen so far, with when each was last seen (for forgetting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Patterns {
    /// Set when warm-up ends: the quantisation origin and step.
    base: f64,
    step: f64,
    /// The last `context` levels, oldest first.
    recent: Vec<i64>,
    seen: HashMap<u64, u64>,
    clock: u64,
}

impl Patterns {
    /// The share of the sample's contexts never seen before; learns them.
    fn novelty(&mut self, ts: i64, x: f64, p: &Params) -> f64 {
        let level = ((x - self.base) / self.step).floor() as i64;
        self.recent.push(level);
        if self.recent.len() > p.context {
            self.recent.remove(0);
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut keys = Vec::with_capacity(self.recent.len() + 1);
        for (k, v) in self.recent.iter().rev().enumerate() {
            hash = (hash ^ (*v as u64)).wrapping_mul(0x0100_0000_01b3) ^ (k as u64);
            keys.push(hash);
        }
        if p.day_slots > 0 {
            let slot = (ts.rem_euclid(86_400) * i64::from(p.day_slots)) / 86_400;
            keys.push((0x9e37_79b9_7f4a_7c15 ^ (slot as u64) << 32).wrapping_mul(0x0100_0000_01b3) ^ (level as u64));
        }
        let mut new = 0usize;
        for key in &keys {
            self.clock += 1;
            if self.seen.insert(*key, self.clock).is_none() {
                new += 1;
            }
        }
        if self.seen.len() > p.max_patterns {
            self.forget();
        }
        new as f64 / keys.len() as f64
    }

    /// Drops the least recently seen half (deterministic: every touch has its own clock value).
    fn forget(&mut self) {
        let mut ages: Vec<u64> = self.seen.values().copied().collect();
        let half = ages.len() / 2;
        let (_, cut, _) = ages.select_nth_unstable(half);
        let cut = *cut;
        self.seen.retain(|_, seen| *seen >= cut);
    }
}

/// Time-of-day profile behind the `expected` value and band of a verdict (explanations and alert
/// gating; the score does not use it): per half-hour slot, the mean of the samples seen there (a
/// running mean that turns into a moving one after ten visits) and their mean absolute deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    mean: Vec<f64>,
    spread: Vec<f64>,
    count: Vec<u32>,
}

impl Profile {
    const SLOTS: i64 = 48;
    const SLOWEST: f64 = 0.1;

    fn new() -> Profile {
        let n = Self::SLOTS as usize;
        Profile { mean: vec![0.0; n], spread: vec![0.0; n], count: vec![0; n] }
    }

    /// Expected value and band at `ts` (before learning `x`; a slot's first visit expects `x` itself).
    fn explain(&mut self, ts: i64, x: f64) -> (f64, f64, f64) {
        let slot = (ts.rem_euclid(86_400) * Self::SLOTS / 86_400) as usize;
        let (mean, spread) = if self.count[slot] == 0 { (x, 0.0) } else { (self.mean[slot], self.spread[slot]) };
        self.count[slot] = self.count[slot].saturating_add(1);
        let rate = (1.0 / f64::from(self.count[slot])).max(Self::SLOWEST);
        let d = x - mean;
        self.spread[slot] += rate * (d.abs() - self.spread[slot]);
        self.mean[slot] = mean + rate * d;
        (mean, mean - 3.0 * spread, mean + 3.0 * spread)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    p: Params,
    n: u64,
    lo: f64,
    hi: f64,
    values: Vec<f64>,
    values_total: f64,
    centre: f64,
    spread: f64,
    /// Warm-up samples (time, value), kept until the pattern range is fixed (at most `warmup` of them).
    warm: Vec<(i64, f64)>,
    patterns: Option<Patterns>,
    rarity_patterns: Rarity,
    rarity_patterns_now: Rarity,
    rarity_values: Rarity,
    rarity_excursion: Rarity,
    profile: Profile,
    quiet: u32,
    /// Times of the first and the latest sample.
    first: i64,
    last: i64,
}

impl Detector {
    pub fn new(p: Params) -> Detector {
        Detector {
            n: 0,
            lo: 0.0,
            hi: 0.0,
            values: vec![0.0; p.bins.max(2)],
            values_total: 0.0,
            centre: 0.0,
            spread: 0.0,
            warm: Vec::new(),
            patterns: None,
            rarity_patterns: Rarity::new(1.0, p.short),
            rarity_patterns_now: Rarity::new(1.0, 1),
            rarity_values: Rarity::new(VALUE_SCALE, p.short),
            rarity_excursion: Rarity::new(EXCURSION_LIMIT.ln_1p(), 1),
            profile: Profile::new(),
            quiet: 0,
            first: 0,
            last: 0,
            p,
        }
    }

    /// Still learning: every score is 0.
    pub fn warming(&self) -> bool {
        self.n <= self.p.warmup || self.last - self.first < self.p.warmup_span
    }

    /// Judges the sample `x` taken at `ts` (Unix seconds) and learns from it.
    pub fn update(&mut self, ts: i64, x: f64) -> Verdict {
        if self.n == 0 {
            self.first = ts;
        }
        self.last = ts;
        let (expected, low, high) = self.profile.explain(ts, x);
        let mut score = self.evidence(ts, x);
        if self.quiet > 0 {
            self.quiet -= 1;
            score = score.min(self.p.threshold * 0.5);
        } else if score >= self.p.threshold {
            self.quiet = self.p.refractory;
        }
        Verdict { score, expected, low, high }
    }

    fn evidence(&mut self, ts: i64, x: f64) -> f64 {
        let p = self.p;
        if self.n == 0 {
            (self.lo, self.hi, self.centre) = (x, x, x);
        }
        self.n += 1;

        // Range and value histogram over everything seen so far.
        let span_before = self.hi - self.lo;
        let outside = x < self.lo || x > self.hi;
        let beyond = span_before > 0.0
            && (x > self.hi + p.spatial_margin * span_before || x < self.lo - p.spatial_margin * span_before);
        self.lo = self.lo.min(x);
        self.hi = self.hi.max(x);
        let span = (self.hi - self.lo).max(1e-9);
        let bins = self.values.len();
        let bin = ((((x - self.lo) / span) * (bins as f64 - 1.0)).round() as usize).min(bins - 1);
        let share = (self.values[bin] + 0.5) / (self.values_total + 0.5 * bins as f64);
        let value_evidence = if outside && span_before > 0.0 { (bins as f64).ln() + 2.0 } else { -share.ln() };
        self.values_total += 1.0;
        self.values[bin] += 1.0;

        // Patterns, once the warm-up has fixed their quantisation.
        let (pattern_recent, pattern_now) = match self.learn_patterns(ts, x) {
            Some(novelty) => (self.rarity_patterns.judge(novelty, &p), self.rarity_patterns_now.judge(novelty, &p)),
            None => (0.0, 0.0),
        };
        let values = self.rarity_values.judge(value_evidence, &p);

        // Excursion from a slow centre.
        let excursion = (x - self.centre).abs() / (self.spread + 1e-9 + 1e-6 * x.abs());
        let excursion = if self.n > 2 { self.rarity_excursion.judge(excursion.ln_1p(), &p) } else { 0.0 };
        self.spread += p.excursion_rate * ((x - self.centre).abs() - self.spread);
        self.centre += p.excursion_rate * (x - self.centre);

        let score = (values * p.weight_values)
            .max(pattern_recent * p.weight_patterns)
            .max(pattern_now * p.weight_patterns_now)
            .max(excursion * p.weight_excursion)
            .max(if beyond { p.weight_range } else { 0.0 });
        if self.warming() {
            0.0
        } else {
            score
        }
    }

    /// Pattern novelty of `x`, or `None` while the warm-up range is still being collected.
    fn learn_patterns(&mut self, ts: i64, x: f64) -> Option<f64> {
        let p = &self.p;
        if let Some(patterns) = &mut self.patterns {
            return Some(patterns.novelty(ts, x, p));
        }
        self.warm.push((ts, x));
        if (self.warm.len() as u64) < p.warmup.max(1) {
            return None;
        }
        if self.last - self.first < p.warmup_span {
            return None;
        }
        let lo = self.warm.iter().map(|w| w.1).fold(f64::INFINITY, f64::min);
        let hi = self.warm.iter().map(|w| w.1).fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo { hi - lo } else { (hi.abs() * 0.1).max(1e-6) };
        let mut patterns =
            Patterns { base: lo, step: span / p.levels, recent: Vec::new(), seen: HashMap::new(), clock: 0 };
        for (t, v) in std::mem::take(&mut self.warm) {
            patterns.novelty(t, v, p);
        }
        self.patterns = Some(patterns);
        // The last warm-up sample was learned above: nothing of it is new.
        Some(0.0)
    }
}

/// Largest value evidence: a value outside the seen range scores `ln(bins) + 2`.
const VALUE_SCALE: f64 = 6.0;
/// Largest excursion the evidence resolves, in units of the usual spread.
const EXCURSION_LIMIT: f64 = 1000.0;
