//! Sigma correlation rules: `event_count`, `value_count`, `temporal` and `temporal_ordered` over the
//! matches of other rules, grouped by fields, within a timespan of event time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::sigma::{CompileError, RawRule, RuleMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorrelation {
    #[serde(rename = "type")]
    kind: Kind,
    rules: Vec<String>,
    #[serde(default, rename = "group-by")]
    group_by: Vec<String>,
    timespan: String,
    #[serde(default)]
    condition: Option<RawCondition>,
    #[serde(default)]
    generate: bool,
    #[serde(default)]
    aliases: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    field: Option<String>,
    gt: Option<u64>,
    gte: Option<u64>,
    lt: Option<u64>,
    lte: Option<u64>,
    eq: Option<u64>,
}

/// A compiled correlation rule.
#[derive(Debug)]
pub struct Correlation {
    pub meta: RuleMeta,
    pub kind: Kind,
    /// Ids or names of the rules whose matches it counts, in order.
    pub rules: Vec<String>,
    pub group_by: Vec<String>,
    pub timespan: Duration,
    /// Fires at a count (or distinct-value count) of at least this.
    pub threshold: u64,
    pub field: Option<String>,
    /// The referenced rules also alert on their own.
    pub generate: bool,
}

/// Sigma timespans: `30s`, `5m`, `1h`, `1d`.
fn timespan(s: &str) -> Result<Duration, CompileError> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| CompileError::Timespan(s.to_owned()))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(CompileError::Timespan(s.to_owned())),
    };
    Ok(Duration::from_secs(secs))
}

impl Correlation {
    pub fn compile(raw: &RawRule, file: &str) -> Result<Correlation, CompileError> {
        let meta = RuleMeta::from_raw(raw, file)?;
        let value = raw.correlation.clone().ok_or(CompileError::Shape("not a correlation rule"))?;
        let c: RawCorrelation = serde_yaml_ng::from_value(value).map_err(CompileError::Correlation)?;
        if c.aliases.is_some() {
            return Err(CompileError::Shape(
                "correlation.aliases is not supported yet: use the same field name in the referenced rules",
            ));
        }
        if c.rules.is_empty() {
            return Err(CompileError::Shape("correlation.rules is empty"));
        }
        let (threshold, field) = match (&c.kind, &c.condition) {
            (Kind::EventCount | Kind::ValueCount, Some(cond)) => {
                let t = cond.gte.or(cond.gt.map(|g| g + 1)).or(cond.eq).ok_or(CompileError::Shape(
                    "correlation.condition needs gte, gt or eq (lt/lte are not supported for alerting)",
                ))?;
                let _ = (cond.lt, cond.lte);
                (t, cond.field.clone())
            }
            (Kind::EventCount | Kind::ValueCount, None) => {
                return Err(CompileError::Shape("correlation.condition is required"))
            }
            (_, _) => (c.rules.len() as u64, None),
        };
        if c.kind == Kind::ValueCount && field.is_none() {
            return Err(CompileError::Shape("value_count needs correlation.condition.field"));
        }
        Ok(Correlation {
            meta,
            kind: c.kind,
            rules: c.rules,
            group_by: c.group_by,
            timespan: timespan(&c.timespan)?,
            threshold,
            field,
            generate: c.generate,
        })
    }
}

/// One contributing record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Evidence {
    pub at: DateTime<Utc>,
    pub origin: serde_json::Value,
    pub original: String,
}

/// Most evidence entries an alert carries by default (`detect.max_evidence`); the count says how many
/// there were.
pub const MAX_EVIDENCE: usize = 20;

#[derive(Debug, Default, serde::Serialize, Deserialize)]
pub(super) struct Group {
    /// event_count: the times of the matches in the window (at most the threshold: reaching it fires
    /// and clears), with the evidence of the latest [`MAX_EVIDENCE`] of them.
    times: VecDeque<DateTime<Utc>>,
    sample: VecDeque<Evidence>,
    /// value_count: each distinct value in the window, with when it was last seen and the evidence of
    /// that record. At most the threshold of them: reaching it fires and clears, so a group that repeats
    /// one value for hours (a normal VPN session) holds one entry, not every event.
    values: HashMap<String, (DateTime<Utc>, Evidence)>,
    /// temporal(_ordered): per referenced rule, the evidence of its latest (in-order) match.
    steps: Vec<Option<Evidence>>,
    last: Option<DateTime<Utc>>,
}

/// What a group's evidence fires with: the evidence kept and how many records it stands for.
type Firing = (Vec<Evidence>, u64);

impl Group {
    /// `event_count`: the match's time and evidence; fires at the threshold within the timespan.
    fn count_event(
        &mut self,
        evidence: Evidence,
        horizon: DateTime<Utc>,
        threshold: u64,
        max_evidence: usize,
    ) -> Option<Firing> {
        self.times.push_back(evidence.at);
        self.sample.push_back(evidence);
        while self.times.front().is_some_and(|t| *t < horizon) {
            self.times.pop_front();
        }
        while self.sample.len() > max_evidence || self.sample.front().is_some_and(|e| e.at < horizon) {
            self.sample.pop_front();
        }
        (self.times.len() as u64 >= threshold).then(|| {
            let n = self.times.len() as u64;
            self.times.clear();
            (self.sample.drain(..).collect::<Vec<_>>(), n)
        })
    }

    /// `value_count`: the match's value (the longest unseen goes beyond `detect.max_values`); fires at
    /// the threshold of distinct values within the timespan.
    fn count_value(
        &mut self,
        value: Option<String>,
        evidence: Evidence,
        horizon: DateTime<Utc>,
        threshold: u64,
        caps: &super::DetectOptions,
        capped: &mut Capped,
    ) -> Option<Firing> {
        let at = evidence.at;
        if let Some(value) = value {
            if !self.values.contains_key(&value) && self.values.len() >= caps.max_values {
                let oldest = self.values.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.values.remove(&oldest);
                    capped.values += 1;
                }
            }
            self.values.insert(value, (at, evidence));
        }
        // Expiry is checked only when the count could fire: at most `threshold` entries to look at.
        if self.values.len() as u64 >= threshold {
            self.values.retain(|_, (t, _)| *t >= horizon);
        }
        (self.values.len() as u64 >= threshold).then(|| {
            let mut evidence: Vec<Evidence> = self.values.drain().map(|(_, (_, e))| e).collect();
            evidence.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.origin.to_string().cmp(&b.origin.to_string())));
            let n = evidence.len() as u64;
            evidence.truncate(caps.max_evidence);
            (evidence, n)
        })
    }

    /// `temporal` / `temporal_ordered`: the match as step `step`; fires when every step is there within
    /// the timespan (in order, for `temporal_ordered`).
    fn take_step(
        &mut self,
        c: &Correlation,
        step: usize,
        evidence: Evidence,
        span: chrono::Duration,
    ) -> Option<Firing> {
        let at = evidence.at;
        if self.steps.len() != c.rules.len() {
            self.steps = vec![None; c.rules.len()];
        }
        let in_order = c.kind == Kind::TemporalOrdered;
        if !in_order || step == 0 || self.steps[step - 1].as_ref().is_some_and(|e| e.at <= at) {
            self.steps[step] = Some(evidence);
        }
        // Later steps that now precede an earlier one are no longer in order.
        let complete = self.steps.iter().all(Option::is_some);
        let first = self.steps.iter().flatten().map(|e| e.at).min();
        let within = first.is_some_and(|f| at - f <= span);
        (complete && within).then(|| {
            let evidence: Vec<Evidence> = self.steps.iter_mut().filter_map(Option::take).collect();
            let n = evidence.len() as u64;
            (evidence, n)
        })
    }
}

/// What fired: the evidence and how many records took part.
#[derive(Debug)]
pub struct Fired {
    pub evidence: Vec<Evidence>,
    pub count: u64,
    pub group: Vec<(String, String)>,
}

/// A correlation's state, owned by one partition worker.
#[derive(Debug, Default)]
pub struct State {
    groups: HashMap<String, Group>,
    /// Observations since idle groups were last swept.
    since_sweep: u32,
    /// Groups changed or dropped since the state was last written out ([`State::take_changes`]).
    changed: std::collections::HashSet<String>,
    /// What the caps dropped since [`State::take_capped`].
    capped: Capped,
}

/// What the state caps (`detect.max_groups`, `detect.max_values`) dropped before it could expire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Capped {
    /// Correlation groups evicted (the least recently seen) to make room for a new one.
    pub groups: u64,
    /// Distinct values of a `value_count` group forgotten (the longest unseen) for a new one.
    pub values: u64,
    /// Suppression windows closed early (the one ending first) for a new one.
    pub windows: u64,
}

impl Capped {
    pub fn add(&mut self, other: Capped) {
        self.groups += other.groups;
        self.values += other.values;
        self.windows += other.windows;
    }
}

/// Every this many observations, groups idle for longer than the timespan are dropped: they can no
/// longer fire, and a day of VPN sessions must not pile up until `max_groups`.
const SWEEP_EVERY: u32 = 4096;

impl State {
    /// Feeds one match of referenced rule `step` (index into `correlation.rules`).
    pub fn observe(
        &mut self,
        c: &Correlation,
        step: usize,
        group: Vec<(String, String)>,
        value: Option<String>,
        evidence: Evidence,
        caps: &super::DetectOptions,
    ) -> Option<Fired> {
        let max_groups = caps.max_groups;
        let key = group.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\u{1f}");
        let at = evidence.at;
        let span = chrono::Duration::from_std(c.timespan).unwrap_or(chrono::Duration::MAX);
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(at - span);
        }
        if !self.groups.contains_key(&key) && self.groups.len() >= max_groups {
            self.evict(at - span, max_groups);
        }
        if !self.changed.contains(&key) {
            self.changed.insert(key.clone());
        }
        let capped = &mut self.capped;
        // The key is copied only for a new group.
        if !self.groups.contains_key(&key) {
            self.groups.insert(key.clone(), Group::default());
        }
        let g = self.groups.get_mut(&key).expect("inserted above");
        g.last = Some(g.last.map_or(at, |l| l.max(at)));
        let horizon = at - span;
        let fired = match c.kind {
            Kind::EventCount => g.count_event(evidence, horizon, c.threshold, caps.max_evidence),
            Kind::ValueCount => g.count_value(value, evidence, horizon, c.threshold, caps, capped),
            Kind::Temporal | Kind::TemporalOrdered => g.take_step(c, step, evidence, span),
        };
        fired.map(|(evidence, count)| Fired { evidence, count, group })
    }

    /// Drops the groups last seen before `horizon`.
    fn sweep(&mut self, horizon: DateTime<Utc>) {
        let changed = &mut self.changed;
        self.groups.retain(|k, g| {
            let keep = g.last.is_some_and(|l| l >= horizon);
            if !keep {
                changed.insert(k.clone());
            }
            keep
        });
    }

    /// Drops groups idle since before `horizon`; if none are, the least recently seen.
    fn evict(&mut self, horizon: DateTime<Utc>, max_groups: usize) {
        self.sweep(horizon);
        while self.groups.len() >= max_groups {
            let Some(oldest) = self.groups.iter().min_by_key(|(_, g)| g.last).map(|(k, _)| k.clone()) else { break };
            self.groups.remove(&oldest);
            self.changed.insert(oldest);
            self.capped.groups += 1;
        }
    }

    /// The groups changed since the last call, each with its current state (`None`: dropped).
    pub(super) fn take_changes(&mut self) -> Vec<(String, Option<&Group>)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|k| {
                let group = self.groups.get(&k);
                (k, group)
            })
            .collect()
    }

    /// What the caps dropped since the last call.
    pub fn take_capped(&mut self) -> Capped {
        std::mem::take(&mut self.capped)
    }

    pub(super) fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Puts back one group as written by [`State::take_changes`] (`None`: it was dropped).
    pub(super) fn restore(&mut self, key: &str, group: Option<Group>) {
        match group {
            Some(g) => self.groups.insert(key.to_owned(), g),
            None => self.groups.remove(key),
        };
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation(yaml: &str) -> Correlation {
        let raw: RawRule = serde_yaml_ng::from_str(yaml).unwrap();
        Correlation::compile(&raw, "c.yml").unwrap()
    }

    fn ev(minute: i64) -> Evidence {
        Evidence {
            at: DateTime::<Utc>::from_timestamp(1_578_900_000 + minute * 60, 0).unwrap(),
            origin: serde_json::json!({"offset": minute}),
            original: format!("line {minute}"),
        }
    }

    fn caps(max_groups: usize) -> super::super::DetectOptions {
        super::super::DetectOptions { max_groups, ..Default::default() }
    }

    fn group(v: &str) -> Vec<(String, String)> {
        vec![("source.ip".into(), v.into())]
    }

    #[test]
    fn event_count_fires_at_the_threshold_within_the_window() {
        let c = correlation("title: bf\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 5m\n  condition: {gte: 3}\n");
        let mut s = State::default();
        assert!(s.observe(&c, 0, group("a"), None, ev(0), &caps(100)).is_none());
        assert!(s.observe(&c, 0, group("a"), None, ev(1), &caps(100)).is_none());
        // Another group does not count.
        assert!(s.observe(&c, 0, group("b"), None, ev(2), &caps(100)).is_none());
        let fired = s.observe(&c, 0, group("a"), None, ev(3), &caps(100)).unwrap();
        assert_eq!(fired.count, 3);
        assert_eq!(fired.evidence.len(), 3);
        // Window expiry by event time: two old ones fall out before the third arrives.
        assert!(s.observe(&c, 0, group("a"), None, ev(10), &caps(100)).is_none());
        assert!(s.observe(&c, 0, group("a"), None, ev(11), &caps(100)).is_none());
        assert!(s.observe(&c, 0, group("a"), None, ev(20), &caps(100)).is_none());
    }

    #[test]
    fn value_count_counts_distinct_values() {
        let c = correlation("title: spray\nid: c2\ncorrelation:\n  type: value_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 10m\n  condition: {field: user.name, gte: 3}\n");
        let mut s = State::default();
        for (m, user) in [(0, "a"), (1, "a"), (2, "b")] {
            assert!(s.observe(&c, 0, group("x"), Some(user.into()), ev(m), &caps(100)).is_none());
        }
        assert!(s.observe(&c, 0, group("x"), Some("c".into()), ev(3), &caps(100)).is_some());
    }

    #[test]
    fn value_count_state_stays_one_entry_per_distinct_value() {
        let c = correlation("title: hijack\nid: c5\ncorrelation:\n  type: value_count\n  rules: [r]\n  group-by: [citrix_adc.log.session_id]\n  timespan: 12h\n  condition: {field: source.as.number, gte: 2}\n");
        let mut s = State::default();
        // A normal session: thousands of records from one autonomous system.
        for m in 0..5_000 {
            assert!(s.observe(&c, 0, group("session-1"), Some("3320".into()), ev(m % 600), &caps(100)).is_none());
        }
        let g = &s.groups["session-1"];
        assert_eq!((g.values.len(), g.times.len(), g.sample.len()), (1, 0, 0));
        // The same session from a second one: the hijack, with one record of each as evidence.
        let fired = s.observe(&c, 0, group("session-1"), Some("64496".into()), ev(601), &caps(100)).unwrap();
        assert_eq!(fired.count, 2);
        assert_eq!(fired.evidence.len(), 2);
        // A value seen only outside the window does not count.
        assert!(s.observe(&c, 0, group("s2"), Some("1".into()), ev(0), &caps(100)).is_none());
        assert!(s.observe(&c, 0, group("s2"), Some("2".into()), ev(13 * 60), &caps(100)).is_none());
    }

    #[test]
    fn groups_idle_past_the_timespan_are_swept() {
        let c = correlation("title: bf\nid: c7\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 5m\n  condition: {gte: 100}\n");
        let mut s = State::default();
        for i in 0..1000 {
            s.observe(&c, 0, group(&format!("old-{i}")), None, ev(0), &caps(100_000));
        }
        assert_eq!(s.groups(), 1000);
        // An hour later, one group is busy: the idle ones go at the next sweep.
        for _ in 0..SWEEP_EVERY {
            s.observe(&c, 0, group("busy"), None, ev(60), &caps(100_000));
        }
        assert!(s.groups() <= 2, "{}", s.groups());
    }

    #[test]
    fn event_count_keeps_a_bounded_sample_of_evidence() {
        let c = correlation("title: bf\nid: c6\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {gte: 50}\n");
        let mut s = State::default();
        for m in 0..49 {
            assert!(s.observe(&c, 0, group("a"), None, ev(m), &caps(100)).is_none());
        }
        assert_eq!(s.groups["a"].sample.len(), MAX_EVIDENCE);
        let fired = s.observe(&c, 0, group("a"), None, ev(49), &caps(100)).unwrap();
        assert_eq!(fired.count, 50);
        assert_eq!(fired.evidence.len(), MAX_EVIDENCE);
        assert_eq!(fired.evidence.last().unwrap().original, "line 49", "the latest records");
    }

    #[test]
    fn temporal_and_ordered() {
        let t = correlation("title: t\nid: c3\ncorrelation:\n  type: temporal\n  rules: [w, r]\n  group-by: [source.ip]\n  timespan: 10m\n");
        let mut s = State::default();
        assert!(s.observe(&t, 1, group("x"), None, ev(0), &caps(100)).is_none());
        assert!(s.observe(&t, 0, group("x"), None, ev(1), &caps(100)).is_some(), "temporal: any order");
        let o = correlation("title: o\nid: c4\ncorrelation:\n  type: temporal_ordered\n  rules: [w, r]\n  group-by: [source.ip]\n  timespan: 10m\n");
        let mut s = State::default();
        assert!(s.observe(&o, 1, group("x"), None, ev(0), &caps(100)).is_none());
        assert!(
            s.observe(&o, 0, group("x"), None, ev(1), &caps(100)).is_none(),
            "fetch before write is not the sequence"
        );
        assert!(s.observe(&o, 1, group("x"), None, ev(2), &caps(100)).is_some());
        // Too far apart.
        assert!(s.observe(&o, 0, group("y"), None, ev(0), &caps(100)).is_none());
        assert!(s.observe(&o, 1, group("y"), None, ev(30), &caps(100)).is_none());
    }

    #[test]
    fn unsupported_forms_are_refused_by_name() {
        for (yaml, word) in [
            ("title: x\nid: c\ncorrelation:\n  type: event_count\n  rules: [r]\n  timespan: 5m\n  condition: {lt: 3}\n", "lt/lte"),
            ("title: x\nid: c\ncorrelation:\n  type: event_count\n  rules: [r]\n  timespan: 5m\n  condition: {gte: 3}\n  aliases: {ip: {a: source.ip}}\n", "aliases"),
            ("title: x\nid: c\ncorrelation:\n  type: event_count\n  rules: [r]\n  timespan: 5x\n  condition: {gte: 3}\n", "timespan"),
            ("title: x\nid: c\ncorrelation:\n  type: value_count\n  rules: [r]\n  timespan: 5m\n  condition: {gte: 3}\n", "field"),
        ] {
            let raw: RawRule = serde_yaml_ng::from_str(yaml).unwrap();
            let err = Correlation::compile(&raw, "c.yml").unwrap_err();
            assert!(err.to_string().contains(word), "{word}: {err}");
        }
    }

    #[test]
    fn state_is_bounded() {
        let c = correlation("title: bf\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 5m\n  condition: {gte: 100}\n");
        let mut s = State::default();
        for i in 0..1000 {
            s.observe(&c, 0, group(&i.to_string()), None, ev(i % 3), &caps(50));
        }
        assert!(s.groups() <= 50);
    }

    #[test]
    fn caps_drop_the_least_recent_and_count_what_they_dropped() {
        let c = correlation("title: bf\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {gte: 3}\n");
        let mut s = State::default();
        for (i, g) in ["a", "b", "c"].into_iter().enumerate() {
            s.observe(&c, 0, group(g), None, ev(i as i64), &caps(2));
        }
        assert_eq!(s.groups(), 2);
        assert_eq!(s.take_capped(), Capped { groups: 1, ..Capped::default() });
        assert_eq!(s.take_capped(), Capped::default(), "taken");

        let v = correlation("title: vc\nid: c2\ncorrelation:\n  type: value_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 1h\n  condition: {field: user.name, gte: 100}\n");
        let mut s = State::default();
        let options = super::super::DetectOptions { max_values: 3, ..Default::default() };
        for (m, user) in ["u1", "u2", "u3", "u4", "u5"].into_iter().enumerate() {
            assert!(s.observe(&v, 0, group("x"), Some(user.into()), ev(m as i64), &options).is_none());
        }
        assert_eq!(s.groups["x"].values.len(), 3);
        assert!(!s.groups["x"].values.contains_key("u1"), "the longest unseen value went first");
        assert_eq!(s.take_capped().values, 2);
    }
}
