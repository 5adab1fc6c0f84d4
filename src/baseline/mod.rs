//! Baselines: each appliance's CPU and memory series, learned online, scored, and kept across restarts.
//!
//! ```text
//!  adc.metrics ──▶ Sample::parse ──▶ Partition::observe ──▶ adc.enriched (sample + score, expected band)
//!   (NITRO poller,          │                  └─ anomaly opens ──▶ adc.alerts (stage "anomaly")
//!    Metricbeat, …)         └─ invalid ──▶ adc.dlq
//!  Partition::snapshot ──▶ adc.baselines (compacted; key = series, partition = the metrics partition)
//!  assignment ──▶ Partition::restore ◀── adc.baselines
//! ```
//!
//! A series — one metric of one appliance — lives in the partition its appliance's key maps to, so one
//! worker owns it. Its state (the detector, the open anomaly, the last metrics offset applied) is written
//! to the state topic in the partition of the same number; the pipeline commits metrics offsets only up
//! to the last written state, and samples at or below a series' applied offset are skipped when
//! replayed. A new owner therefore continues exactly where the old one stopped.

pub mod backtest;
pub mod detector;
pub mod nitro;
pub mod stage;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::config::BaselineSettings;
use crate::detect::sigma::Stage;
use crate::detect::Alert;
use detector::{Detector, Params};

/// Version of the state records; a record of another version is ignored (the series re-learns).
pub const STATE_VERSION: u32 = 1;

/// The metrics a sample may carry: the ECS/Metricbeat field, and the short name used in outputs.
pub const METRICS: [(&str, &str); 4] = [
    ("system.cpu.total.pct", "cpu"),
    ("system.memory.used.pct", "memory"),
    ("citrix_adc.cpu.packet_engine.pct", "cpu_packet_engine"),
    ("citrix_adc.cpu.management.pct", "cpu_management"),
];

/// One metric sample: fractions 0..1 of one appliance at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub host: String,
    /// Indexes into [`METRICS`] with their values, in [`METRICS`] order.
    pub values: Vec<(usize, f64)>,
    /// The sample as received, for the enriched output.
    pub doc: Map<String, Json>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    #[error("metric sample is not a JSON object: {0}")]
    NotJson(String),
    #[error("metric sample has no {0}")]
    Missing(&'static str),
    #[error("metric sample field {field} = {value}: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
}

impl SampleError {
    /// A short, bounded identifier: safe as a metric label, stable for DLQ consumers.
    pub fn code(&self) -> &'static str {
        match self {
            SampleError::NotJson(_) => "metric_not_json",
            SampleError::Missing(_) => "metric_missing_field",
            SampleError::Invalid { .. } => "metric_invalid_value",
        }
    }
}

/// A field by its dotted name: as a flat key (`"system.cpu.total.pct": 0.4`) or nested objects.
fn field<'d>(doc: &'d Map<String, Json>, path: &str) -> Option<&'d Json> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match doc.get(head)? {
        Json::Object(inner) => field(inner, rest),
        _ => None,
    }
}

impl Sample {
    pub fn parse(payload: &[u8]) -> Result<Sample, SampleError> {
        let doc: Map<String, Json> =
            serde_json::from_slice(payload).map_err(|e| SampleError::NotJson(e.to_string()))?;
        let at = match field(&doc, "@timestamp") {
            None => return Err(SampleError::Missing("@timestamp")),
            Some(Json::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid("@timestamp", s, "is not an RFC 3339 time"))?,
            Some(Json::Number(n)) => n
                .as_i64()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .ok_or_else(|| invalid("@timestamp", n, "is not epoch milliseconds"))?,
            Some(other) => return Err(invalid("@timestamp", other, "is not a time")),
        };
        let host = match field(&doc, "observer.hostname") {
            Some(Json::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(other) => return Err(invalid("observer.hostname", other, "must be a non-empty string")),
            None => return Err(SampleError::Missing("observer.hostname")),
        };
        let mut values = Vec::new();
        for (i, (name, _)) in METRICS.iter().enumerate() {
            let Some(v) = field(&doc, name) else { continue };
            let Some(x) = v.as_f64() else {
                return Err(invalid(name, v, "is not a number"));
            };
            // A small tolerance for rounding on the sender's side; anything else is a unit error.
            if !(-1e-9..=1.0 + 1e-9).contains(&x) {
                return Err(invalid(name, v, "must be a fraction between 0 and 1"));
            }
            values.push((i, x.clamp(0.0, 1.0)));
        }
        if values.is_empty() {
            return Err(SampleError::Missing("metric (system.cpu.total.pct, system.memory.used.pct, ...)"));
        }
        Ok(Sample { at, host, values, doc })
    }
}

fn invalid(field: &'static str, value: impl std::fmt::Display, reason: &'static str) -> SampleError {
    SampleError::Invalid { field, value: value.to_string(), reason }
}

/// An anomaly that raised its alert and has not yet calmed down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAnomaly {
    pub id: String,
    pub start: DateTime<Utc>,
    /// When the series last deviated from its usual values in the alerting direction.
    pub last_high: DateTime<Utc>,
}

/// Everything one series keeps; this is what the state topic holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesState {
    pub version: u32,
    pub host: String,
    pub metric: String,
    /// Metrics-topic offset of the last sample applied; replays at or below it are skipped.
    pub offset: i64,
    pub last: Option<DateTime<Utc>>,
    /// First time of the current run of elevated scores (at least half the threshold).
    pub elevated_since: Option<DateTime<Utc>>,
    pub anomaly: Option<OpenAnomaly>,
    pub detector: Detector,
}

impl SeriesState {
    /// Opens, keeps or closes the series' anomaly at `at`; returns the new anomaly's start when one opens.
    fn track(
        &mut self,
        elevated: bool,
        anomalous: bool,
        deviating: bool,
        clear_after: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if elevated {
            self.elevated_since.get_or_insert(at);
        } else {
            self.elevated_since = None;
        }
        if let Some(open) = &mut self.anomaly {
            if deviating {
                open.last_high = at;
            } else if at - open.last_high >= clear_after {
                self.anomaly = None;
            }
            return None;
        }
        if !anomalous {
            return None;
        }
        let start = self.elevated_since.unwrap_or(at);
        let id = anomaly_id(&self.host, &self.metric, start);
        self.anomaly = Some(OpenAnomaly { id, start, last_high: at });
        Some(start)
    }
}

/// What scoring one metric of a sample gave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    pub score: f64,
    pub expected: f64,
    pub low: f64,
    pub high: f64,
    pub warming: bool,
}

/// The outputs of one sample.
#[derive(Debug, Default)]
pub struct Observation {
    /// The enriched document (the sample, `event.*`, and `gatewatch.baseline.<metric>`).
    pub doc: Map<String, Json>,
    pub alerts: Vec<Alert>,
    /// The sample was already applied to every series it touches (a replay after a restart).
    pub replayed: bool,
}

impl crate::config::Direction {
    /// Whether `observed` deviates in this direction from `expected` by at least `min`, and leaves the
    /// band `low..=high` on that side.
    pub fn deviates(self, observed: f64, expected: f64, low: f64, high: f64, min: f64) -> bool {
        let up = observed - expected >= min && observed > high;
        let down = expected - observed >= min && observed < low;
        match self {
            crate::config::Direction::Up => up,
            crate::config::Direction::Down => down,
            crate::config::Direction::Both => up || down,
        }
    }
}

/// The series of one metrics partition, and which of them changed since the last snapshot.
pub struct Partition {
    series: HashMap<String, SeriesState>,
    dirty: BTreeSet<String>,
    params: Params,
    min_deviation: f64,
    direction: crate::config::Direction,
    clear_after: chrono::Duration,
    max_series: usize,
}

/// The state topic's key of a series.
pub fn series_key(host: &str, metric: &str) -> String {
    format!("{host}|{metric}")
}

impl Partition {
    pub fn new(settings: &BaselineSettings) -> Partition {
        let params = Params {
            threshold: settings.alert_threshold,
            warmup: settings.warmup,
            warmup_span: settings.warmup_span.as_secs() as i64,
            ..Params::default()
        };
        Partition {
            series: HashMap::new(),
            dirty: BTreeSet::new(),
            params,
            min_deviation: settings.min_deviation,
            direction: settings.direction,
            clear_after: chrono::Duration::from_std(settings.clear_after).unwrap_or(chrono::Duration::MAX),
            max_series: settings.max_series_per_partition,
        }
    }

    /// Loads state records (key, payload) read from the state topic, later records winning; a `None`
    /// payload (a tombstone) forgets the series. Returns how many series were restored.
    pub fn restore<'a>(&mut self, records: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> usize {
        for (key, payload) in records {
            let key = String::from_utf8_lossy(key).into_owned();
            match payload.map(serde_json::from_slice::<SeriesState>) {
                Some(Ok(state)) if state.version == STATE_VERSION => {
                    self.series.insert(key, state);
                }
                Some(Ok(state)) => {
                    tracing::warn!(%key, version = state.version, "state record of another version ignored; the series re-learns");
                }
                Some(Err(error)) => tracing::warn!(%key, %error, "unreadable state record ignored"),
                None => {
                    self.series.remove(&key);
                }
            }
        }
        self.series.len()
    }

    /// Series held, and how many of them are still warming up.
    pub fn counts(&self) -> (usize, usize) {
        let warming = self.series.values().filter(|s| s.detector.warming()).count();
        (self.series.len(), warming)
    }

    pub fn series(&self, key: &str) -> Option<&SeriesState> {
        self.series.get(key)
    }

    /// Scores one sample read at `offset`; `origin` names the record for alert evidence.
    pub fn observe(
        &mut self,
        sample: &Sample,
        offset: i64,
        origin: Json,
        original: &str,
        now: DateTime<Utc>,
    ) -> Result<Observation, SampleError> {
        let mut out = Observation { doc: sample.doc.clone(), alerts: Vec::new(), replayed: true };
        let mut scores = Map::new();
        for &(index, value) in &sample.values {
            let (metric, short) = METRICS[index];
            let key = series_key(&sample.host, metric);
            if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
                return Err(invalid(
                    "observer.hostname",
                    &sample.host,
                    "would add a series beyond baseline.max_series_per_partition",
                ));
            }
            let state = self.series.entry(key.clone()).or_insert_with(|| SeriesState {
                version: STATE_VERSION,
                host: sample.host.clone(),
                metric: metric.to_owned(),
                offset: -1,
                last: None,
                elevated_since: None,
                anomaly: None,
                detector: Detector::new(self.params),
            });
            if offset <= state.offset {
                scores.insert(short.into(), json!({"replayed": true}));
                continue;
            }
            out.replayed = false;
            state.offset = offset;
            self.dirty.insert(key);
            if state.last.is_some_and(|last| sample.at <= last) {
                // Out of order or repeated in time: it cannot be learned from without breaking the series.
                scores.insert(short.into(), json!({"stale": true}));
                continue;
            }
            state.last = Some(sample.at);
            let verdict = state.detector.update(sample.at.timestamp(), value);
            let scored = Scored {
                score: verdict.score,
                expected: verdict.expected,
                low: verdict.low,
                high: verdict.high,
                warming: state.detector.warming(),
            };
            scores.insert(short.into(), serde_json::to_value(scored).expect("plain numbers serialize"));
            let threshold = self.params.threshold;
            // Away from the usual in the alerting direction: what keeps an open anomaly open...
            let deviating =
                self.direction.deviates(value, scored.expected, scored.low, scored.high, self.min_deviation);
            // ...and anomalous to the detector as well: what opens one.
            let anomalous = deviating && scored.score >= threshold;
            let elevated = scored.score >= threshold * 0.5;
            if let Some(start) = state.track(elevated, anomalous, deviating, self.clear_after, sample.at) {
                let id = state.anomaly.as_ref().map(|a| a.id.clone()).unwrap_or_default();
                out.alerts.push(anomaly_alert(id, state, scored, value, start, sample.at, &origin, original, now));
            }
        }
        let doc = &mut out.doc;
        crate::ecs::insert(doc, "event.kind", json!("metric"));
        crate::ecs::insert(doc, "event.module", json!("citrix_adc"));
        crate::ecs::insert(doc, "event.dataset", json!("citrix_adc.metrics"));
        crate::ecs::insert(doc, "gatewatch.source", origin);
        crate::ecs::insert(doc, "gatewatch.baseline", Json::Object(scores));
        Ok(out)
    }

    /// The changed series as (key, state record), clearing the change marks.
    pub fn snapshot(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|key| {
                let state = self.series.get(&key)?;
                Some((key, serde_json::to_vec(state).expect("series state serializes")))
            })
            .collect()
    }

    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }
}

/// Deterministic: the same series and start give the same id, live or replayed.
pub fn anomaly_id(host: &str, metric: &str, start: DateTime<Utc>) -> String {
    let mut h = Sha256::new();
    for part in ["gatewatch-baseline", host, metric, &crate::timefmt::millis(start)] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    hex::encode(&h.finalize()[..16])
}

#[allow(clippy::too_many_arguments)]
fn anomaly_alert(
    id: String,
    state: &SeriesState,
    scored: Scored,
    value: f64,
    start: DateTime<Utc>,
    at: DateTime<Utc>,
    origin: &Json,
    original: &str,
    now: DateTime<Utc>,
) -> Alert {
    let metric = state.metric.as_str();
    let short = METRICS.iter().find(|(m, _)| *m == metric).map_or(metric, |(_, s)| *s);
    let rule_id = format!("gatewatch-baseline-{short}");
    let message = format!(
        "{metric} of {} deviates from its baseline: {value:.3} observed, {:.3} expected ({:.3}..{:.3})",
        state.host, scored.expected, scored.low, scored.high
    );
    let duration = (at - start).num_seconds();
    let doc = json!({
        "@timestamp": crate::timefmt::millis(at),
        "ecs": {"version": crate::ecs::ECS_VERSION},
        "message": message,
        "event": {
            "kind": "alert",
            "id": id,
            "severity": 47,
            "created": crate::timefmt::millis(now),
            "module": "gatewatch",
            "dataset": "gatewatch.alert",
            "start": crate::timefmt::millis(start),
            "duration": duration.saturating_mul(1_000_000_000),
        },
        "rule": {
            "id": rule_id,
            "name": format!("{short} deviates from the appliance's baseline"),
            "version": "1",
            "description": "A CPU or memory series left the band its appliance's own history predicts \
                            (crypto miners and backdoors show up here first).",
            "ruleset": "gatewatch",
        },
        "observer": {"hostname": state.host},
        "gatewatch": {
            "stage": Stage::Anomaly.as_str(),
            "level": "medium",
            "count": 1,
            "anomaly": {
                "metric": metric,
                "observed": value,
                "expected": scored.expected,
                "band": {"low": scored.low, "high": scored.high},
                "score": scored.score,
                "start": crate::timefmt::millis(start),
                "duration_s": duration,
            },
            "evidence": [{"@timestamp": crate::timefmt::millis(at), "source": origin, "original": original}],
        },
    });
    Alert { id, rule_id, stage: Stage::Anomaly, doc, update: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(json: &str) -> Result<Sample, SampleError> {
        Sample::parse(json.as_bytes())
    }

    #[test]
    fn samples_in_flat_or_nested_form() {
        let nested = sample(r#"{"@timestamp":"2020-01-10T10:05:00Z","observer":{"hostname":"a"},"system":{"cpu":{"total":{"pct":0.5}}}}"#).unwrap();
        let flat = sample(r#"{"@timestamp":1578650700000,"observer.hostname":"a","system.cpu.total.pct":0.5,"system.memory.used.pct":1}"#).unwrap();
        assert_eq!((nested.at, nested.values.clone()), (flat.at, vec![(0, 0.5)]));
        assert_eq!(flat.values, vec![(0, 0.5), (1, 1.0)]);
    }

    #[test]
    fn bad_samples_name_the_field() {
        let e =
            sample(r#"{"@timestamp":"yesterday","observer":{"hostname":"a"},"system.cpu.total.pct":0.5}"#).unwrap_err();
        assert!(matches!(e, SampleError::Invalid { field: "@timestamp", .. }), "{e}");
        let e = sample(
            r#"{"@timestamp":"2020-01-10T10:05:00Z","observer":{"hostname":"a"},"system.memory.used.pct":"lots"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("system.memory.used.pct") && e.code() == "metric_invalid_value", "{e}");
        assert_eq!(sample("[1,2]").unwrap_err().code(), "metric_not_json");
    }

    #[test]
    fn replays_and_stale_samples_do_not_teach_the_detector() {
        let mut p = Partition::new(&BaselineSettings::default());
        let s = |t: &str, x: f64| {
            sample(&format!(r#"{{"@timestamp":"{t}","observer":{{"hostname":"a"}},"system.cpu.total.pct":{x}}}"#))
                .unwrap()
        };
        let now = Utc::now();
        p.observe(&s("2020-01-10T10:05:00Z", 0.2), 7, json!(7), "", now).unwrap();
        let learned = serde_json::to_string(&p.series("a|system.cpu.total.pct").unwrap().detector).unwrap();
        // The same offset again (a replay after a restart), and a second copy of the same time (another
        // poller): neither changes the series.
        let replay = p.observe(&s("2020-01-10T10:05:00Z", 0.9), 7, json!(7), "", now).unwrap();
        assert!(replay.replayed && replay.doc["gatewatch"]["baseline"]["cpu"]["replayed"] == true);
        let copy = p.observe(&s("2020-01-10T10:05:00Z", 0.9), 8, json!(8), "", now).unwrap();
        assert_eq!(copy.doc["gatewatch"]["baseline"]["cpu"]["stale"], true);
        let state = p.series("a|system.cpu.total.pct").unwrap();
        assert_eq!(serde_json::to_string(&state.detector).unwrap(), learned);
        assert_eq!(state.offset, 8);
        // The snapshot holds the series once, and restoring it gives the same state.
        let snapshot = p.snapshot();
        assert_eq!(snapshot.len(), 1);
        let mut restored = Partition::new(&BaselineSettings::default());
        restored.restore(snapshot.iter().map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))));
        assert_eq!(
            serde_json::to_string(&restored.series("a|system.cpu.total.pct").unwrap().detector).unwrap(),
            learned
        );
        assert!(!p.has_changes());
    }
}
