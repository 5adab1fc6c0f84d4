//! Field access and value tests: a selection's fields compiled to predicates, and their evaluation
//! against an ECS document.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::net::IpAddr;

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use regex::{Regex, RegexSet};
use smallvec::SmallVec;

use crate::doc::{Doc, Leaf};

use super::CompileError;

/// The Sigma `webserver` taxonomy and common aliases → ECS paths.
pub fn map_field(field: &str) -> &str {
    match field {
        "cs-uri-query" | "cs-uri" | "c-uri" | "url" => "url.original",
        "cs-uri-stem" | "c-uri-stem" => "url.path",
        "cs-method" | "c-method" => "http.request.method",
        "sc-status" | "response" => "http.response.status_code",
        "c-ip" | "client_ip" | "src_ip" => "source.ip",
        "s-ip" | "dst_ip" => "destination.ip",
        "cs-user-agent" | "c-useragent" | "useragent" => "user_agent.original",
        "cs-host" | "vhost" => "url.domain",
        "cs-referer" | "cs-referrer" => "http.request.referrer",
        "cs-username" => "user.name",
        "sc-bytes" => "http.response.body.bytes",
        "cs-bytes" => "http.request.bytes",
        other => other,
    }
}

/// What is wrong with one field of a selection.
#[derive(Debug, thiserror::Error)]
pub enum FieldProblem {
    #[error("modifier {0:?} is not supported")]
    Modifier(String),
    #[error("value {0} is not a scalar")]
    NotScalar(String),
    #[error("{0}")]
    Regex(#[from] regex::Error),
    #[error("{0}")]
    Literals(#[from] aho_corasick::BuildError),
    #[error("{0:?} is not a number")]
    NotNumber(String),
    #[error("{0:?} is not a CIDR")]
    NotCidr(String),
}

/// One value test. Text tests hold their literal in lower case and compare it with a value's folded
/// text ([`Subject::folded`]) ignoring ASCII case.
#[derive(Debug)]
pub(super) enum Pred {
    Eq(String),
    /// The literal, and a searcher for it ignoring ASCII case.
    Contains(String, AhoCorasick),
    StartsWith(String),
    EndsWith(String),
    Re(Regex),
    Cidr(IpNet),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
    Exists(bool),
}

#[derive(Debug)]
pub(super) enum Values {
    /// Any of these predicates.
    Any(Vec<Pred>),
    /// Every one of these predicates.
    All(Vec<Pred>),
    /// Any of these literals anywhere in the value (`contains` lists), and a searcher for them.
    Literals(Vec<String>, AhoCorasick),
    /// Any of these regexes.
    Regexes(RegexSet),
    /// The field must be absent (`null`).
    Absent,
}

#[derive(Debug)]
pub(super) struct FieldTest {
    path: String,
    values: Values,
}

#[derive(Debug)]
pub(super) enum Selection {
    /// Every field test holds.
    All(Vec<FieldTest>),
    /// Any of these selections holds.
    Any(Vec<Selection>),
}

pub(super) fn to_string(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Sigma wildcards (`*`, `?`) in a plain value become a regex; `\\*` stays literal.
pub(super) fn wildcard(value: &str) -> Option<Regex> {
    if !value.contains(['*', '?']) {
        return None;
    }
    let mut pattern = String::from("(?is)^");
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                pattern.push_str(&regex::escape(&chars.next().unwrap_or('\\').to_string()))
            }
            '*' => pattern.push_str(".*"),
            '?' => pattern.push('.'),
            c => pattern.push_str(&regex::escape(&c.to_string())),
        }
    }
    pattern.push('$');
    Regex::new(&pattern).ok()
}

/// The modifiers `compile_field` understands.
const MODIFIERS: [&str; 15] = [
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "cidr",
    "exists",
    "lt",
    "lte",
    "gt",
    "gte",
    "expand",
    "i",
    "m",
    "s",
];

pub(super) fn compile_field(
    key: &str,
    value: &serde_yaml_ng::Value,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<FieldTest, CompileError> {
    let bad = |problem: FieldProblem| CompileError::Field { field: key.to_owned(), problem };
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let modifiers: Vec<&str> = parts.collect();
    let path = map_field(field).to_owned();
    let mut raw: Vec<serde_yaml_ng::Value> = match value {
        serde_yaml_ng::Value::Sequence(items) => items.clone(),
        serde_yaml_ng::Value::Null => return Ok(FieldTest { path, values: Values::Absent }),
        other => vec![other.clone()],
    };
    if modifiers.contains(&"expand") {
        raw = expand(&raw, placeholders)?;
    }
    if let Some(unknown) = modifiers.iter().find(|m| !MODIFIERS.contains(m)) {
        return Err(bad(FieldProblem::Modifier((*unknown).to_owned())));
    }
    let strings: Vec<String> = raw
        .iter()
        .map(|v| to_string(v).ok_or_else(|| bad(FieldProblem::NotScalar(format!("{v:?}")))))
        .collect::<Result<_, _>>()?;
    let has = |m: &str| modifiers.contains(&m);
    let all = has("all");
    let values = if has("re") {
        regexes(&strings, &has, all).map_err(|e| bad(e.into()))?
    } else if has("contains") && !all && strings.len() > 1 {
        let automaton =
            AhoCorasick::builder().ascii_case_insensitive(true).build(&strings).map_err(|e| bad(e.into()))?;
        Values::Literals(strings, automaton)
    } else {
        let preds = strings.into_iter().map(|s| predicate(s, &has).map_err(bad)).collect::<Result<_, _>>()?;
        if all {
            Values::All(preds)
        } else {
            Values::Any(preds)
        }
    };
    Ok(FieldTest { path, values })
}

/// `%name%` values replaced by the configured list of that name (`expand`).
fn expand(
    raw: &[serde_yaml_ng::Value],
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<Vec<serde_yaml_ng::Value>, CompileError> {
    let mut expanded = Vec::new();
    for v in raw {
        let s = to_string(v).unwrap_or_default();
        match s.strip_prefix('%').and_then(|s| s.strip_suffix('%')) {
            Some(name) => match placeholders.get(name) {
                Some(values) => expanded.extend(values.iter().map(|v| serde_yaml_ng::Value::String(v.clone()))),
                None => return Err(CompileError::Placeholder(name.to_owned())),
            },
            None => expanded.push(v.clone()),
        }
    }
    Ok(expanded)
}

/// `re` values with their `i`/`m`/`s` flags: one `RegexSet` for any, each on its own for `all`.
fn regexes(strings: &[String], has: &impl Fn(&str) -> bool, all: bool) -> Result<Values, regex::Error> {
    let flags: String = ["i", "m", "s"].into_iter().filter(|f| has(f)).collect();
    let patterns: Vec<String> =
        strings.iter().map(|p| if flags.is_empty() { p.clone() } else { format!("(?{flags}){p}") }).collect();
    if all {
        let preds = patterns.iter().map(|p| Regex::new(p).map(Pred::Re)).collect::<Result<_, _>>()?;
        return Ok(Values::All(preds));
    }
    Ok(Values::Regexes(RegexSet::new(&patterns)?))
}

/// One value's test under the field's modifiers.
fn predicate(s: String, has: &impl Fn(&str) -> bool) -> Result<Pred, FieldProblem> {
    let lower = s.to_lowercase();
    let number = |s: &str| s.parse::<f64>().map_err(|_| FieldProblem::NotNumber(s.to_owned()));
    Ok(if has("cidr") {
        Pred::Cidr(s.parse().map_err(|_| FieldProblem::NotCidr(s.clone()))?)
    } else if has("exists") {
        Pred::Exists(lower == "true")
    } else if has("lt") {
        Pred::Lt(number(&s)?)
    } else if has("lte") {
        Pred::Lte(number(&s)?)
    } else if has("gt") {
        Pred::Gt(number(&s)?)
    } else if has("gte") {
        Pred::Gte(number(&s)?)
    } else if has("contains") {
        Pred::Contains(lower.clone(), AhoCorasick::builder().ascii_case_insensitive(true).build([lower])?)
    } else if has("startswith") {
        Pred::StartsWith(lower)
    } else if has("endswith") {
        Pred::EndsWith(lower)
    } else if let Some(re) = wildcard(&s) {
        Pred::Re(re)
    } else {
        Pred::Eq(lower)
    })
}

pub(super) fn compile_selection(
    value: &serde_yaml_ng::Value,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<Selection, CompileError> {
    match value {
        serde_yaml_ng::Value::Mapping(map) => {
            let mut tests = Vec::with_capacity(map.len());
            for (k, v) in map {
                let key = to_string(k).ok_or(CompileError::Shape("selection keys must be strings"))?;
                tests.push(compile_field(&key, v, placeholders)?);
            }
            Ok(Selection::All(tests))
        }
        serde_yaml_ng::Value::Sequence(items) if items.iter().all(|i| i.is_mapping()) => {
            Ok(Selection::Any(items.iter().map(|i| compile_selection(i, placeholders)).collect::<Result<_, _>>()?))
        }
        serde_yaml_ng::Value::Sequence(items) => {
            // Keywords: any of them anywhere in the line.
            let words: Vec<String> = items.iter().filter_map(to_string).collect();
            let automaton =
                AhoCorasick::builder().ascii_case_insensitive(true).build(&words).map_err(CompileError::Keywords)?;
            let values = Values::Literals(words, automaton);
            Ok(Selection::All(vec![FieldTest { path: "event.original".into(), values }]))
        }
        other => Err(CompileError::SelectionType(format!("{other:?}"))),
    }
}

/// `text` in lower case, copied only when a letter in it is not lower case already (upper- and
/// title-case letters are alphabetic; lower-case letters and non-letters lower-case to themselves).
fn lowercase(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| c.is_lowercase() || !c.is_alphabetic()) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.to_lowercase())
    }
}

/// One value under test, its text and folded text worked out once for all the predicates of the
/// test (and only when a predicate needs them: a number is written out only for a text predicate).
struct Subject<'v> {
    leaf: Leaf<'v>,
    text: OnceCell<Option<Cow<'v, str>>>,
    /// The lower-case text of a non-ASCII text, when it differs from the text.
    lower: OnceCell<Option<String>>,
}

impl<'v> Subject<'v> {
    fn new(leaf: Leaf<'v>) -> Self {
        Subject { leaf, text: OnceCell::new(), lower: OnceCell::new() }
    }

    fn text(&self) -> Option<&str> {
        self.text.get_or_init(|| self.leaf.text()).as_deref()
    }

    /// The text to compare with lower-case literals ignoring ASCII case: an ASCII text as it is (no
    /// copy), else its lower-case form — equal, ignoring ASCII case, exactly when the lower-case text
    /// is.
    fn folded(&self) -> Option<&str> {
        let text = self.text()?;
        if text.is_ascii() {
            return Some(text);
        }
        let lower = self.lower.get_or_init(|| match lowercase(text) {
            Cow::Borrowed(_) => None,
            Cow::Owned(lower) => Some(lower),
        });
        Some(lower.as_deref().unwrap_or(text))
    }

    fn number(&self) -> Option<f64> {
        self.leaf.as_f64().or_else(|| self.leaf.as_str().and_then(|s| s.trim().parse().ok()))
    }
}

fn pred_matches(pred: &Pred, value: &Subject<'_>) -> bool {
    let folded = || value.folded().map(str::as_bytes);
    match pred {
        Pred::Exists(_) => true,
        Pred::Eq(want) => folded().is_some_and(|t| t.eq_ignore_ascii_case(want.as_bytes())),
        Pred::Contains(_, want) => folded().is_some_and(|t| want.is_match(t)),
        Pred::StartsWith(want) => {
            folded().is_some_and(|t| t.get(..want.len()).is_some_and(|s| s.eq_ignore_ascii_case(want.as_bytes())))
        }
        Pred::EndsWith(want) => folded()
            .is_some_and(|t| t.len() >= want.len() && t[t.len() - want.len()..].eq_ignore_ascii_case(want.as_bytes())),
        Pred::Re(re) => value.text().is_some_and(|t| re.is_match(t)),
        Pred::Cidr(net) => value.text().and_then(|t| t.parse::<IpAddr>().ok()).is_some_and(|ip| net.contains(&ip)),
        // Numbers compare as numbers; a value with no text (an object) matches none.
        _ if matches!(value.leaf, Leaf::Null | Leaf::Object) => false,
        Pred::Lt(n) => value.number().is_some_and(|v| v < *n),
        Pred::Lte(n) => value.number().is_some_and(|v| v <= *n),
        Pred::Gt(n) => value.number().is_some_and(|v| v > *n),
        Pred::Gte(n) => value.number().is_some_and(|v| v >= *n),
    }
}

pub(super) fn field_matches(test: &FieldTest, doc: &Doc<'_>) -> bool {
    let values = doc.lookup(&test.path);
    match &test.values {
        Values::Absent => values.is_empty() || values.iter().all(|v| v.is_null()),
        Values::Any(preds) => {
            if let [Pred::Exists(want)] = preds.as_slice() {
                return values.is_empty() != *want;
            }
            values.iter().any(|&v| {
                let subject = Subject::new(v);
                preds.iter().any(|p| pred_matches(p, &subject))
            })
        }
        Values::All(preds) => {
            let subjects: SmallVec<[Subject<'_>; 4]> = values.iter().map(|&v| Subject::new(v)).collect();
            preds.iter().all(|p| subjects.iter().any(|s| pred_matches(p, s)))
        }
        Values::Literals(_, automaton) => values.iter().filter_map(Leaf::text).any(|t| automaton.is_match(&*t)),
        Values::Regexes(set) => values.iter().filter_map(Leaf::text).any(|t| set.is_match(&t)),
    }
}

/// What a test, selection or condition needs to hold: a value at `path` whose text contains one of
/// `literals`, ASCII case ignored (the rule prefilter's question). Holds for an ASCII text; a text
/// with other characters is compared lower-cased by the tests, which a literal search does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub path: String,
    pub literals: Vec<String>,
}

impl Need {
    /// What any one of several alternatives needs: their literals together, when every alternative
    /// has a need and all are at the same path.
    pub(super) fn any_of(mut needs: impl Iterator<Item = Option<Need>>) -> Option<Need> {
        let mut all = needs.next()??;
        for need in needs {
            let need = need?;
            if need.path != all.path {
                return None;
            }
            all.literals.extend(need.literals);
        }
        Some(all)
    }
}

/// The literal a text predicate's value must contain (an equal, prefixed or suffixed text contains it).
fn literal(pred: &Pred) -> Option<&str> {
    match pred {
        Pred::Eq(s) | Pred::Contains(s, _) | Pred::StartsWith(s) | Pred::EndsWith(s) => Some(s),
        _ => None,
    }
}

fn test_need(test: &FieldTest) -> Option<Need> {
    let literals: Vec<String> = match &test.values {
        // Any predicate may hold: each must be a text one.
        Values::Any(preds) => preds.iter().map(|p| literal(p).map(str::to_owned)).collect::<Option<_>>()?,
        // Every predicate must hold: one text predicate's literal is needed.
        Values::All(preds) => vec![preds.iter().find_map(literal)?.to_owned()],
        Values::Literals(strings, _) => strings.clone(),
        Values::Regexes(_) | Values::Absent => return None,
    };
    (!literals.is_empty()).then(|| Need { path: test.path.clone(), literals })
}

/// What `selection` needs to hold, if a literal search can tell.
pub(super) fn selection_need(selection: &Selection) -> Option<Need> {
    match selection {
        Selection::All(tests) => tests.iter().find_map(test_need),
        Selection::Any(options) => Need::any_of(options.iter().map(selection_need)),
    }
}

pub(super) fn selection_matches(selection: &Selection, doc: &Doc<'_>) -> bool {
    match selection {
        Selection::All(tests) => tests.iter().all(|t| field_matches(t, doc)),
        Selection::Any(options) => options.iter().any(|o| selection_matches(o, doc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_lowered_as_str_to_lowercase_does_and_copied_only_when_needed() {
        for text in ["/vpns/portal", "POST /VPN", "Straße", "ǅemal", "ⒶⅠ", "日本", "ΣΑΣ", "mixedCase 42"] {
            assert_eq!(lowercase(text), text.to_lowercase(), "{text}");
        }
        assert!(matches!(lowercase("/vpns/portal/scripts/newbm.pl"), Cow::Borrowed(_)));
        assert_eq!(Leaf::of(&json!(true)).text().as_deref(), Some("true"));
        assert_eq!(Leaf::of(&json!(7)).text().as_deref(), Some("7"));
    }

    #[test]
    fn text_predicates_ignoring_ascii_case_agree_with_comparing_lower_case_texts() {
        let texts =
            ["/VPN/../vpns/cfg/smb.conf", "POST", "Straße", "STRASSE", "ǅemal", "ΣΑΣ", "İstanbul", "\u{212A}elvin", ""];
        let needles = ["/vpns/", "post", "STRASSE", "straße", "ǆ", "σας", "i̇st", "kelvin", "", "e"];
        for text in texts {
            let reference = lowercase(text);
            for needle in needles {
                let want = needle.to_lowercase();
                let cases = [
                    ("contains", reference.contains(want.as_str())),
                    ("startswith", reference.starts_with(want.as_str())),
                    ("endswith", reference.ends_with(want.as_str())),
                    ("eq", reference == want),
                ];
                for (modifier, expected) in cases {
                    let pred = predicate(needle.to_owned(), &|m: &str| m == modifier).unwrap();
                    let got = pred_matches(&pred, &Subject::new(Leaf::Str(text)));
                    assert_eq!(got, expected, "{text:?} {modifier} {needle:?}");
                }
            }
        }
    }
}
