//! A partition's detection state as a changelog: each correlation group and each open suppression
//! window is one entry, written when it changed and deleted (a tombstone) when it went, so a compacted
//! topic holds exactly the live state and a restart reads back only that.
//!
//! Entry keys (inside the partition's key space, see `crate::detect_state`):
//! `c␟<correlation id>␟<group>` a correlation group, `s␟<rule id>␟<suppression key>` a suppression
//! window, `w` the partition's event-time watermark. Values are JSON.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::correlate::Group;
use super::{Alert, Suppressed, Worker};

const SEP: char = '\u{1f}';
const WATERMARK: &str = "w";

/// `chrono::Duration` as milliseconds.
pub(super) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &chrono::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_milliseconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<chrono::Duration, D::Error> {
        let ms = i64::deserialize(d)?;
        chrono::Duration::try_milliseconds(ms)
            .ok_or_else(|| serde::de::Error::custom(format!("{ms} ms is out of range")))
    }
}

/// One changed entry: its key and its value (`None`: deleted).
pub type Change = (String, Option<Vec<u8>>);

/// A state entry that could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("state entry {key:?}: unknown kind")]
    UnknownKind { key: String },
    #[error("state entry {key:?}: the alert is not an ECS document")]
    Shape { key: String },
    #[error("state entry {key:?}: {source}")]
    Invalid { key: String, source: serde_json::Error },
}

impl Worker {
    /// The entries changed since the last call, each serialized to at most `max_bytes` (the evidence
    /// originals of an oversized entry are shortened to fit; the counts stay exact).
    pub fn take_changes(&mut self, max_bytes: usize) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, state) in &mut self.correlations {
            for (group, value) in state.take_changes() {
                out.push((format!("c{SEP}{id}{SEP}{group}"), value.map(|g| bounded(g, max_bytes))));
            }
        }
        for key in std::mem::take(&mut self.changed_windows) {
            let value = self.suppressed.get(&key).map(|s| bounded(s, max_bytes));
            out.push((format!("s{SEP}{}{SEP}{}", key.0, key.1), value));
        }
        if !out.is_empty() {
            if let Some(w) = self.watermark {
                out.push((WATERMARK.to_owned(), Some(serde_json::to_vec(&w).expect("a time serializes"))));
            }
        }
        out
    }

    /// Applies one entry written by [`Worker::take_changes`] (`None`: a deletion). Entries are applied
    /// in the order they were written; the last one of a key wins.
    pub fn restore_entry(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), RestoreError> {
        let invalid = |source| RestoreError::Invalid { key: key.to_owned(), source };
        let mut parts = key.splitn(3, SEP);
        match (parts.next(), parts.next(), parts.next()) {
            (Some("c"), Some(id), Some(name)) => {
                let group: Option<Group> = value.map(serde_json::from_slice).transpose().map_err(invalid)?;
                self.correlations.entry(id.to_owned()).or_default().restore(name, group);
            }
            (Some("s"), Some(rule), Some(k)) => {
                let window: Option<Suppressed> = value.map(serde_json::from_slice).transpose().map_err(invalid)?;
                // Summaries update the alert document in place: it must be one.
                if let Some(doc) = window.as_ref().map(|w| &w.alert.doc) {
                    let nested = |k: &str| doc.get(k).is_some_and(|v| !v.is_object());
                    if !doc.is_object() || nested("gatewatch") || nested("event") {
                        return Err(RestoreError::Shape { key: key.to_owned() });
                    }
                }
                let id = (rule.to_owned(), k.to_owned());
                if let Some(old) = self.suppressed.remove(&id) {
                    self.expiries.remove(&(old.end(), id.clone()));
                }
                if let Some(w) = window {
                    self.expiries.insert((w.end(), id.clone()));
                    self.suppressed.insert(id, w);
                }
            }
            (Some(WATERMARK), None, None) => {
                let at: Option<DateTime<Utc>> = value.map(serde_json::from_slice).transpose().map_err(invalid)?;
                self.watermark = at.max(self.watermark);
            }
            _ => return Err(RestoreError::UnknownKind { key: key.to_owned() }),
        }
        Ok(())
    }

    /// What the open suppression windows would publish if they closed now (the summaries of those with
    /// repeats), leaving them open: sent when the partition leaves this instance, whose next owner
    /// carries the windows on from the written state.
    pub fn open_summaries(&self) -> Vec<Alert> {
        let mut windows: Vec<&Suppressed> = self.suppressed.values().filter(|s| s.count > 1).collect();
        windows.sort_by(|a, b| (a.first, &a.alert.id).cmp(&(b.first, &b.alert.id)));
        windows.into_iter().filter_map(|s| s.clone().summary(self.publish)).collect()
    }

    /// Whether anything changed since the state was last taken.
    pub fn has_changes(&self) -> bool {
        !self.changed_windows.is_empty() || self.correlations.values().any(super::correlate::State::has_changes)
    }
}

/// `value` as JSON of at most `max_bytes` where that can be had by shortening evidence originals.
fn bounded<T: serde::Serialize>(value: &T, max_bytes: usize) -> Vec<u8> {
    let bytes = serde_json::to_vec(value).expect("detection state serializes");
    if bytes.len() <= max_bytes {
        return bytes;
    }
    let mut doc: Json = serde_json::from_slice(&bytes).expect("just written");
    let mut originals = 0usize;
    count_originals(&doc, &mut originals);
    let limit = max_bytes / (2 * originals.max(1));
    shorten_originals(&mut doc, limit);
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

fn count_originals(doc: &Json, n: &mut usize) {
    match doc {
        Json::Object(map) => {
            for (k, v) in map {
                if k == "original" && v.is_string() {
                    *n += 1;
                } else {
                    count_originals(v, n);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| count_originals(v, n)),
        _ => {}
    }
}

fn shorten_originals(doc: &mut Json, limit: usize) {
    match doc {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Json::String(s) if k == "original" && s.len() > limit => {
                        let mut cut = limit;
                        while !s.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        s.truncate(cut);
                    }
                    _ => shorten_originals(v, limit),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| shorten_originals(v, limit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{DetectOptions, RuleSet};
    use crate::ecs::{Origin, SourceRef};
    use serde_json::json;

    fn rules() -> (RuleSet, DetectOptions) {
        let options = crate::config::Settings::default().detect.options();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let (set, errors) = RuleSet::load(&[dir], &options);
        assert!(errors.is_empty(), "{errors:?}");
        (set, options)
    }

    /// A login failure of `user` from 198.51.100.50, `i` ten-second steps into the hour.
    fn failure(user: &str, i: i64) -> (crate::doc::Doc<'static>, Origin<'static>, DateTime<Utc>) {
        let at = DateTime::<Utc>::from_timestamp(1_578_736_800 + i * 10, 0).unwrap();
        let doc = json!({
            "@timestamp": at.to_rfc3339(),
            "event": {"dataset": "citrix_adc.log", "original": format!("failure {i} {}", "x".repeat(2000))},
            "citrix_adc": {"log": {"name": "LOGIN_FAILED"}},
            "observer": {"hostname": "vpx01", "vendor": "Citrix", "product": "NetScaler"},
            "user": {"name": user},
            "source": {"ip": "198.51.100.50"},
        });
        let origin = Origin::Kafka(SourceRef { topic: "adc.raw", partition: 0, offset: i });
        (crate::doc::Doc::from_json(doc.as_object().unwrap().clone()), origin, at)
    }

    fn feed(
        worker: &mut Worker,
        set: &RuleSet,
        options: &DetectOptions,
        user: &str,
        range: std::ops::Range<i64>,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for i in range {
            let (doc, origin, at) = failure(user, i);
            alerts.extend(worker.evaluate(set, options, &doc, origin, at, at));
        }
        alerts
    }

    fn restored(changes: &[Change]) -> Worker {
        let mut worker = Worker::new(crate::detect::Publish::Immediately);
        for (key, value) in changes {
            worker.restore_entry(key, value.as_deref()).unwrap();
        }
        worker
    }

    #[test]
    fn a_correlation_carried_over_by_its_changes_fires_as_an_uninterrupted_one_would() {
        let (set, options) = rules();
        let mut whole = Worker::new(crate::detect::Publish::Immediately);
        let expected = feed(&mut whole, &set, &options, "bob", 0..10);
        let expected: Vec<_> = expected.iter().filter(|a| a.rule_id == "gw-citrix-bruteforce").collect();
        assert_eq!(expected.len(), 1);

        let mut before = Worker::new(crate::detect::Publish::Immediately);
        assert!(feed(&mut before, &set, &options, "bob", 0..6).is_empty());
        assert!(before.has_changes());
        let changes = before.take_changes(1 << 20);
        assert!(!before.has_changes(), "taking the changes clears them");
        assert!(changes.iter().any(|(k, v)| k.starts_with("c\u{1f}gw-citrix-bruteforce\u{1f}") && v.is_some()));
        let mut after = restored(&changes);
        let fired = feed(&mut after, &set, &options, "bob", 6..10);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].id, expected[0].id);
        assert_eq!(fired[0].doc["gatewatch"]["evidence"], expected[0].doc["gatewatch"]["evidence"]);
    }

    #[test]
    fn a_window_that_closed_is_written_as_a_deletion_and_an_open_one_keeps_suppressing() {
        let (set, options) = rules();
        let mut worker = Worker::new(crate::detect::Publish::Immediately);
        assert_eq!(feed(&mut worker, &set, &options, "bob", 0..10).len(), 1);
        let changes = worker.take_changes(1 << 20);
        let window = changes.iter().find(|(k, _)| k.starts_with("s\u{1f}gw-citrix-bruteforce\u{1f}")).unwrap();
        assert!(window.1.is_some());
        // Restored, the window still suppresses: ten more failures raise nothing new.
        let mut next = restored(&changes);
        assert_eq!(next.suppression_windows(), 1);
        assert!(feed(&mut next, &set, &options, "bob", 10..20).is_empty());
        // The repeat (the correlation reached ten again) is counted on the restored window.
        assert_eq!(next.open_summaries()[0].doc["gatewatch"]["suppressed"], 1);
        // Two hours on, the window has closed: its entry is deleted.
        let (doc, origin, at) = failure("alice", 720);
        let closed = next.evaluate(&set, &options, &doc, origin, at, at);
        assert_eq!(closed.len(), 1, "the summary of the closed window");
        let changes = next.take_changes(1 << 20);
        assert!(changes.iter().any(|(k, v)| k == &window.0 && v.is_none()), "{changes:?}");
        assert_eq!(restored(&changes).suppression_windows(), 0);
    }

    #[test]
    fn oversized_entries_shorten_their_evidence_originals_to_fit() {
        let (set, options) = rules();
        let mut worker = Worker::new(crate::detect::Publish::Immediately);
        feed(&mut worker, &set, &options, "bob", 0..9);
        for (key, value) in worker.take_changes(4096) {
            let value = value.unwrap();
            assert!(value.len() <= 4096, "{key}: {} bytes", value.len());
        }
    }

    #[test]
    fn unreadable_entries_are_errors_that_name_the_key() {
        let mut worker = Worker::new(crate::detect::Publish::Immediately);
        let error = worker.restore_entry("c\u{1f}x\u{1f}g", Some(b"{")).unwrap_err();
        assert!(error.to_string().contains(&format!("{:?}", "c\u{1f}x\u{1f}g")), "{error}");
        assert!(matches!(worker.restore_entry("z", None), Err(RestoreError::UnknownKind { .. })));
    }
}
