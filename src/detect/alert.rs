//! An alert's document: its id from the rule and the contributing records, ECS fields, severity,
//! evidence and behaviour; and the key suppression groups repeats by.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use super::behaviour::{self, Behaviour};
use super::correlate::Evidence;
use super::sigma::RuleMeta;
use super::Alert;
use crate::doc::Doc;

/// ECS `event.severity` for a Sigma level.
pub(super) fn severity(level: &str) -> u8 {
    match level {
        "informational" => 1,
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "critical" => 99,
        _ => 47,
    }
}

/// Deterministic alert id: the rule, its version and where its evidence came from.
pub fn alert_id(meta: &RuleMeta, evidence: &[Evidence]) -> String {
    let mut h = Sha256::new();
    h.update(meta.id.as_bytes());
    h.update(b"\0");
    h.update(meta.version.as_bytes());
    for e in evidence {
        h.update(b"\0");
        h.update(e.origin.to_string().as_bytes());
    }
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

/// The alert document (see the README's alert schema).
pub(super) fn alert_doc(
    meta: &RuleMeta,
    trigger: &Doc<'_>,
    evidence: &[Evidence],
    count: u64,
    behaviour: &Behaviour,
    now: DateTime<Utc>,
) -> Alert {
    let id = alert_id(meta, evidence);
    let at = trigger.top("@timestamp").unwrap_or_else(|| Json::from(crate::timefmt::millis(now)));
    let mut doc = json!({
        "@timestamp": at,
        "ecs": {"version": crate::ecs::ECS_VERSION},
        "message": meta.title,
        "event": {
            "kind": "alert",
            "id": id,
            "severity": severity(&meta.level),
            "created": crate::timefmt::millis(now),
            "module": "gatewatch",
            "dataset": "gatewatch.alert",
        },
        "rule": {
            "id": meta.id,
            "name": meta.title,
            "version": meta.version,
            "description": meta.description,
            "reference": meta.references,
            "author": [meta.author],
            "ruleset": "gatewatch",
        },
        "gatewatch": {
            "stage": meta.stage.as_str(),
            "level": meta.level,
            "count": count,
            "evidence": evidence.iter().map(|e| json!({
                "@timestamp": crate::timefmt::millis(e.at),
                "source": e.origin,
                "original": e.original,
            })).collect::<Vec<_>>(),
            "rule_file": meta.file,
            "behaviour": behaviour,
        },
    });
    let out = doc.as_object_mut().expect("built as an object");
    for path in ["observer", "source", "user", "client", "destination", "url", "threat"] {
        if let Some(v) = trigger.top(path) {
            out.insert(path.to_owned(), v);
        }
    }
    tag_fields(&meta.tags, out);
    Alert { id, rule_id: meta.id.clone(), stage: meta.stage, doc, update: false }
}

/// The suppression key of an alert (see [`Worker::suppress`]).
pub(super) fn suppression_key(meta: &RuleMeta, doc: &Doc<'_>, behaviour: &Behaviour) -> String {
    let configured = meta.suppress.as_ref().map(|s| s.by.as_slice()).filter(|b| !b.is_empty());
    let default: Vec<String>;
    let by: &[String] = match configured {
        Some(by) => by,
        None => {
            let place = if meta.key.is_empty() { vec!["observer.hostname".to_owned()] } else { meta.key.clone() };
            default = place.into_iter().chain([behaviour::BEHAVIOUR.to_owned()]).collect();
            &default
        }
    };
    by.iter()
        .map(|f| match f.as_str() {
            behaviour::BEHAVIOUR => behaviour.key(),
            behaviour::SELECTION => behaviour.selections.join(","),
            path => doc.text(path).unwrap_or_default(),
        })
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// The rule's tags as ECS: `attack.t1190` → `threat.technique.id`, `attack.initial_access` →
/// `threat.tactic.name`, `cve.2019-19781` → `vulnerability.id`.
fn tag_fields(tags: &[String], out: &mut Map<String, Json>) {
    let mut techniques = Vec::new();
    let mut tactics = Vec::new();
    let mut cves = Vec::new();
    for tag in tags {
        if let Some(t) = tag.strip_prefix("attack.") {
            if t.len() > 1 && t.as_bytes()[0] == b't' && t.as_bytes()[1].is_ascii_digit() {
                techniques.push(t.to_uppercase());
            } else {
                tactics.push(t.to_owned());
            }
        } else if let Some(cve) = tag.strip_prefix("cve.") {
            cves.push(format!("CVE-{}", cve.trim_start_matches("cve-").to_uppercase()));
        }
    }
    if !cves.is_empty() {
        out.insert("vulnerability".into(), json!({"id": cves, "classification": "CVE"}));
    }
    if !techniques.is_empty() || !tactics.is_empty() {
        let threat = out.entry("threat").or_insert_with(|| json!({}));
        if let Json::Object(t) = threat {
            t.insert("framework".into(), json!("MITRE ATT&CK"));
            if !techniques.is_empty() {
                t.insert("technique".into(), json!({"id": techniques}));
            }
            if !tactics.is_empty() {
                t.insert("tactic".into(), json!({"name": tactics}));
            }
        }
    }
}
