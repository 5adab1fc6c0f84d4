//! Detect: enriched ECS documents → alerts, with Sigma rules and Sigma correlations from `rules/`.
//!
//! A [`RuleSet`] is compiled once from the rules directory (a broken file is reported with its line
//! and left out; the others run) and shared read-only; [`Worker`] holds the mutable state one
//! partition owns — correlation windows and suppression — driven by event time, so a replay gives
//! the same alerts as live processing did. Alert ids are derived from the rule, its version and the
//! coordinates of the contributing records, so redelivery and replays produce the same ids.

mod alert;
pub mod behaviour;
pub mod correlate;
mod dedupe;
pub mod examples;
mod prefilter;
pub mod sigma;
mod snapshot;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};

use crate::doc::Doc;
use crate::ecs::Origin;
pub use alert::alert_id;
use alert::{alert_doc, suppression_key};
use behaviour::Behaviour;
use correlate::{Correlation, Evidence, Fired};
use sigma::{Rule, RuleError, RuleMeta, Stage};

/// Every rule of the rules directory, compiled.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub correlations: Vec<Correlation>,
    /// For each rule, the (correlation, step) pairs that count it.
    feeds: Vec<Vec<(usize, usize)>>,
    /// Rules that only feed correlations and do not alert on their own.
    silent: Vec<bool>,
    /// Which rules a record could match, by their literals.
    prefilter: prefilter::Prefilter,
}

/// Settings the detector needs.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    pub placeholders: HashMap<String, Vec<String>>,
    /// Most groups one correlation keeps per partition (and most open suppression windows).
    pub max_groups: usize,
    /// Most distinct values one `value_count` group keeps.
    pub max_values: usize,
    /// Most evidence records an alert carries (its count stays exact).
    pub max_evidence: usize,
    /// Suppression window for rules that do not set their own.
    pub default_suppress: Option<Duration>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            placeholders: HashMap::new(),
            max_groups: 100_000,
            max_values: 10_000,
            max_evidence: correlate::MAX_EVIDENCE,
            default_suppress: None,
        }
    }
}

/// The rule files under `dirs` (`**/*.yml`, `**/*.yaml`), each real file once, in a stable order.
///
/// Entries whose name starts with a dot are skipped: Kubernetes lays a ConfigMap volume out as a
/// timestamped `..2026_…` directory, a `..data` symlink to it and one symlink per file, so following
/// the dot-entries would load every rule three times. Files reached twice (symlinks, overlapping
/// directories) are listed once, under the first path that reached them.
pub fn rule_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    found.push(path);
                }
            }
        }
        found.sort();
        for path in found {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.insert(real) {
                out.push(path);
            }
        }
    }
    out
}

impl RuleSet {
    /// Loads `rules/**/*.yml`. Broken files are returned as errors and left out.
    pub fn load(dirs: &[PathBuf], options: &DetectOptions) -> (RuleSet, Vec<RuleError>) {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        for dir in dirs {
            if !dir.is_dir() {
                errors.push(RuleError {
                    file: dir.display().to_string(),
                    line: None,
                    reason: "not a directory".into(),
                });
            }
        }
        // Rule id → the file that defined it first: a second definition is refused, never merged or
        // silently preferred (a custom rule cannot shadow a shipped one unnoticed).
        let mut defined: HashMap<String, String> = HashMap::new();
        for path in rule_files(dirs) {
            match sigma::read_documents(&path) {
                Ok(documents) => set.add(documents, &path.display().to_string(), options, &mut defined, &mut errors),
                Err(e) => errors.push(e),
            }
        }
        set.link(&mut errors);
        (set, errors)
    }

    /// The rules of one file's text (`file` names it in errors), as [`RuleSet::load`] compiles them.
    pub fn from_yaml(text: &str, file: &str, options: &DetectOptions) -> (RuleSet, Vec<RuleError>) {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        match sigma::parse_documents(text, file) {
            Ok(documents) => set.add(documents, file, options, &mut HashMap::new(), &mut errors),
            Err(e) => errors.push(e),
        }
        set.link(&mut errors);
        (set, errors)
    }

    /// Compiles the documents of `file`, refusing ids `defined` already holds.
    fn add(
        &mut self,
        documents: Vec<sigma::RawRule>,
        file: &str,
        options: &DetectOptions,
        defined: &mut HashMap<String, String>,
        errors: &mut Vec<RuleError>,
    ) {
        let set = self;
        let file = file.to_owned();
        {
            for raw in documents {
                if let Some(id) = raw.id.as_deref() {
                    if let Some(first) = defined.get(id) {
                        errors.push(RuleError {
                            file: file.clone(),
                            line: None,
                            reason: format!(
                                "rule {:?}: duplicate id {id:?}, already defined in {first}; not loaded",
                                raw.title
                            ),
                        });
                        continue;
                    }
                    defined.insert(id.to_owned(), file.clone());
                }
                let compiled = if raw.correlation.is_some() {
                    Correlation::compile(&raw, &file).map(|c| set.correlations.push(c))
                } else {
                    Rule::compile(&raw, &file, &options.placeholders).map(|r| set.rules.push(r))
                };
                if let Err(reason) = compiled {
                    errors.push(RuleError {
                        file: file.clone(),
                        line: None,
                        reason: format!("rule {:?}: {reason}", raw.title),
                    });
                }
            }
        }
    }

    /// Resolves correlation references (by id or name).
    fn link(&mut self, errors: &mut Vec<RuleError>) {
        self.prefilter = prefilter::Prefilter::new(&self.rules);
        self.feeds = vec![Vec::new(); self.rules.len()];
        self.silent = vec![false; self.rules.len()];
        let mut broken = Vec::new();
        for (ci, c) in self.correlations.iter().enumerate() {
            for (step, reference) in c.rules.iter().enumerate() {
                let found = self
                    .rules
                    .iter()
                    .position(|r| &r.meta.id == reference || r.meta.name.as_deref() == Some(reference));
                match found {
                    Some(ri) => {
                        self.feeds[ri].push((ci, step));
                        if !c.generate {
                            self.silent[ri] = true;
                        }
                    }
                    None => {
                        errors.push(RuleError {
                            file: c.meta.file.clone(),
                            line: None,
                            reason: format!("correlation {:?} references unknown rule {reference:?}", c.meta.id),
                        });
                        broken.push(ci);
                    }
                }
            }
        }
        if !broken.is_empty() {
            // Drop broken correlations and relink.
            let mut i = 0;
            self.correlations.retain(|_| {
                let keep = !broken.contains(&i);
                i += 1;
                keep
            });
            let mut ignored = Vec::new();
            self.link(&mut ignored);
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len() + self.correlations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An alert, ready to publish (keyed by `id`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub id: String,
    pub rule_id: String,
    pub stage: Stage,
    pub doc: Json,
    /// A later state of an alert already published under the same id (`event.action`
    /// `alert-updated`: a suppression window's summary), not a new alert.
    pub update: bool,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Suppressed {
    alert: Alert,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    #[serde(with = "snapshot::millis")]
    window: chrono::Duration,
    count: u64,
}

/// How a [`Worker`] publishes an alert that a suppression window may still update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Publish {
    /// At once, then again (same id, `alert-updated`) when its window closes with repeats: live
    /// processing, where an analyst must not wait an hour for the first sign.
    #[default]
    Immediately,
    /// Once, in its final state, when its window closes: a replay's alerts file, read by tools that do
    /// not upsert by id.
    Final,
}

/// The mutable detection state one partition owns.
#[derive(Default)]
pub struct Worker {
    correlations: HashMap<String, correlate::State>,
    suppressed: HashMap<(String, String), Suppressed>,
    /// When each open window ends, in order: closing the due ones never scans the others.
    expiries: std::collections::BTreeSet<(DateTime<Utc>, (String, String))>,
    watermark: Option<DateTime<Utc>>,
    publish: Publish,
    requests: dedupe::Requests,
    /// Suppression windows opened, changed or closed since the state was last written out.
    changed_windows: std::collections::HashSet<(String, String)>,
    capped: correlate::Capped,
}

impl Worker {
    /// A worker that publishes alerts the given way (the default is [`Publish::Immediately`]).
    pub fn new(publish: Publish) -> Worker {
        Worker { publish, ..Worker::default() }
    }

    /// Evaluates one enriched document. `origin` names the record (Kafka coordinates or file/line; made
    /// JSON only for evidence), `at` is its event time, `now` the wall clock for `event.created`.
    pub fn evaluate(
        &mut self,
        set: &RuleSet,
        options: &DetectOptions,
        doc: &Doc<'_>,
        origin: Origin<'_>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        self.watermark = Some(self.watermark.map_or(at, |w| w.max(at)));
        let mut alerts = self.flush(at);
        self.requests.expire(at);
        // Worked out only for a record some rule matches: most records match none.
        let mut request: Option<Option<dedupe::Request>> = None;
        let mut evidence_of_this: Option<Evidence> = None;
        let mut evidence = || {
            evidence_of_this
                .get_or_insert_with(|| Evidence {
                    at,
                    origin: serde_json::to_value(origin).expect("coordinates and file names serialize"),
                    original: doc.text("event.original").unwrap_or_default(),
                })
                .clone()
        };
        let facts = sigma::DocFacts::of(doc);
        let possible = set.prefilter.possible(doc, set.rules.len());
        for (ri, rule) in set.rules.iter().enumerate() {
            if !possible.contains(ri) || !rule.matches_given(&facts, doc) {
                continue;
            }
            // The WAF and the access log may both record one request: the rule sees it once.
            let request = request.get_or_insert_with(|| dedupe::Request::of(doc));
            if request.as_ref().is_some_and(|r| self.requests.seen_in_another_log(&rule.meta.id, r, at)) {
                continue;
            }
            if !set.silent[ri] {
                let e = evidence();
                let behaviour = Behaviour::of_match(rule.matched_selections(doc), doc);
                let alert = alert_doc(&rule.meta, doc, std::slice::from_ref(&e), 1, &behaviour, now);
                alerts.extend(self.suppress(&rule.meta, options, doc, &behaviour, alert, at));
            }
            for &(ci, step) in &set.feeds[ri] {
                let c = &set.correlations[ci];
                let group: Option<Vec<(String, String)>> =
                    c.group_by.iter().map(|f| doc.text(f).map(|v| (f.clone(), v))).collect();
                let Some(group) = group else { continue };
                let value = c.field.as_deref().and_then(|f| doc.text(f));
                if c.kind == correlate::Kind::ValueCount && value.is_none() {
                    continue;
                }
                // The id is copied only for the correlation's first group.
                if !self.correlations.contains_key(&c.meta.id) {
                    self.correlations.insert(c.meta.id.clone(), correlate::State::default());
                }
                let state = self.correlations.get_mut(&c.meta.id).expect("inserted above");
                if let Some(Fired { evidence: ev, count, group }) =
                    state.observe(c, step, group, value, evidence(), options)
                {
                    let behaviour = Behaviour::of_group(&group);
                    let mut alert = alert_doc(&c.meta, doc, &ev, count, &behaviour, now);
                    let g: Map<String, Json> = group.into_iter().map(|(k, v)| (k, Json::from(v))).collect();
                    alert.doc["gatewatch"]["group"] = Json::Object(g);
                    alerts.extend(self.suppress(&c.meta, options, doc, &behaviour, alert, at));
                }
            }
        }
        alerts
    }

    /// One alert per rule and key within the suppression window; the window's summary (same id, with
    /// the count) is emitted when it closes. The key is the rule's `suppress.by`: field paths and
    /// `behaviour` (what happened: the matched selections and the normalised command, indicator or
    /// path) or `selection` (the matched selections alone); by default the appliance (or the rule's
    /// `key`) and `behaviour`, so a new command or indicator always raises its own alert.
    fn suppress(
        &mut self,
        meta: &RuleMeta,
        options: &DetectOptions,
        doc: &Doc<'_>,
        behaviour: &Behaviour,
        alert: Alert,
        at: DateTime<Utc>,
    ) -> Vec<Alert> {
        let Some(window) = meta.suppress.as_ref().map(|s| s.window).or(options.default_suppress) else {
            return vec![alert];
        };
        let key = suppression_key(meta, doc, behaviour);
        match self.suppressed.get_mut(&(meta.id.clone(), key.clone())) {
            Some(s) if at < s.end() => {
                s.count = s.count.saturating_add(1);
                s.last = s.last.max(at);
                self.changed_windows.insert((meta.id.clone(), key));
                Vec::new()
            }
            _ => {
                let publish = self.publish;
                let mut out = Vec::new();
                if self.suppressed.len() >= options.max_groups {
                    // Bounded state: the window that ends first closes early (its summary goes out now).
                    while let Some((_, k)) = self.expiries.pop_first() {
                        if let Some(s) = self.suppressed.remove(&k) {
                            out.extend(s.summary(publish));
                            self.changed_windows.insert(k);
                            self.capped.windows += 1;
                            break;
                        }
                    }
                }
                let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
                let open = Suppressed { alert: alert.clone(), first: at, last: at, window, count: 1 };
                let key = (meta.id.clone(), key);
                self.expiries.insert((open.end(), key.clone()));
                self.changed_windows.insert(key.clone());
                // A window that closed without a flush (no later event moved the watermark) ends here.
                let previous = self.suppressed.insert(key, open).and_then(|s| s.summary(publish));
                out.extend(previous);
                if publish == Publish::Immediately {
                    out.push(alert);
                }
                out
            }
        }
    }

    /// Closes suppression windows that ended before `watermark` (event time) and returns what they
    /// publish: summaries of those that suppressed anything, and with [`Publish::Final`] every alert.
    pub fn flush(&mut self, watermark: DateTime<Utc>) -> Vec<Alert> {
        let publish = self.publish;
        let mut out: Vec<(DateTime<Utc>, Alert)> = Vec::new();
        while self.expiries.first().is_some_and(|(end, _)| *end <= watermark) {
            let (end, key) = self.expiries.pop_first().expect("checked above");
            // The entry of a window that closed early and was reopened is stale: the new one has its own.
            if self.suppressed.get(&key).is_none_or(|s| s.end() != end) {
                continue;
            }
            let s = self.suppressed.remove(&key).expect("found above");
            self.changed_windows.insert(key);
            let first = s.first;
            out.extend(s.summary(publish).map(|a| (first, a)));
        }
        // In the order the alerts were raised, whatever the index's order.
        out.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        out.into_iter().map(|(_, a)| a).collect()
    }

    /// Groups a correlation currently tracks (for benchmarks and metrics).
    pub fn correlation_groups(&self, correlation: &str) -> usize {
        self.correlations.get(correlation).map_or(0, correlate::State::groups)
    }

    /// What the caps dropped since the last call (for `gatewatch_detect_capped_total`).
    pub fn take_capped(&mut self) -> correlate::Capped {
        let mut total = std::mem::take(&mut self.capped);
        for state in self.correlations.values_mut() {
            total.add(state.take_capped());
        }
        total
    }

    /// Groups all correlations track.
    pub fn correlation_groups_total(&self) -> usize {
        self.correlations.values().map(correlate::State::groups).sum()
    }

    /// Open suppression windows (for tests and metrics).
    pub fn suppression_windows(&self) -> usize {
        self.suppressed.len()
    }

    /// Closes every open window (shutdown, end of a replay).
    pub fn flush_all(&mut self) -> Vec<Alert> {
        self.flush(DateTime::<Utc>::MAX_UTC)
    }
}

impl Suppressed {
    /// When the window ends (event time).
    fn end(&self) -> DateTime<Utc> {
        self.first.checked_add_signed(self.window).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// What a closing window publishes: with [`Publish::Immediately`] the first alert again (same id,
    /// `event.action: alert-updated`) with the number of matches, if there were repeats; with
    /// [`Publish::Final`] the alert in its final state, repeats or not.
    fn summary(self, publish: Publish) -> Option<Alert> {
        if self.count <= 1 {
            return (publish == Publish::Final).then_some(self.alert);
        }
        let mut alert = self.alert;
        let first = alert.doc["gatewatch"]["count"].as_u64().unwrap_or(1);
        alert.doc["gatewatch"]["count"] = json!(first.saturating_add(self.count - 1));
        alert.doc["gatewatch"]["suppressed"] = json!(self.count - 1);
        alert.doc["gatewatch"]["last_seen"] = json!(crate::timefmt::millis(self.last));
        if publish == Publish::Immediately {
            alert.doc["event"]["action"] = json!("alert-updated");
            alert.update = true;
        }
        Some(alert)
    }
}
