//! Sigma detection rules: YAML → a compiled [`Rule`] that evaluates an ECS document.
//!
//! Supported: named selections (maps = AND of fields, lists of maps = OR, lists of strings =
//! keywords on `message`/`event.original`), values and value lists (OR, or AND with `|all`), the
//! modifiers `contains`, `startswith`, `endswith`, `all`, `re`, `cidr`, `exists`, `lt`/`lte`/`gt`/`gte`,
//! `expand` (`%placeholder%` lists from the configuration), `null` values, and conditions with `and`,
//! `or`, `not`, parentheses, `1 of`/`all of` a selection pattern or `them`. String matching is
//! case-insensitive, as Sigma specifies; `re` is as written. Literal lists compile into one
//! Aho-Corasick automaton, regex lists into one `RegexSet`.
//!
//! Field names are ECS paths; Sigma's `webserver` names (`cs-uri-query`, `c-ip`, `cs-method`, ...)
//! are mapped ([`map_field`]). gatewatch's own rule attributes live under a `gatewatch:` key, which
//! Sigma tools ignore.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::doc::{Doc, Found};

mod condition;
mod field;

pub use condition::ConditionProblem;
use condition::{parse_condition, Cond};
pub use field::Need;
use field::{compile_selection, selection_matches, selection_need, to_string, Selection};
pub use field::{map_field, FieldProblem};

/// What went wrong loading a rule: the file, the line when known, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule file {file}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

/// Why a rule does not compile; [`RuleError`] adds its file.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A required part is missing or has the wrong shape; the text names it.
    #[error("{0}")]
    Shape(&'static str),
    #[error("placeholder %{0}% is not defined in detect.placeholders")]
    Placeholder(String),
    #[error("field {field:?}: {problem}")]
    Field { field: String, problem: FieldProblem },
    #[error("a selection must be a map or a list, not {0}")]
    SelectionType(String),
    #[error("keywords: {0}")]
    Keywords(aho_corasick::BuildError),
    #[error("selection {name:?}: {source}")]
    Selection { name: String, source: Box<CompileError> },
    #[error("condition {condition:?}: {problem}")]
    Condition { condition: String, problem: ConditionProblem },
    #[error("correlation: {0}")]
    Correlation(serde_yaml_ng::Error),
    #[error("timespan {0:?} is not like 30s, 5m, 1h or 1d")]
    Timespan(String),
}

/// The attack stage an alert reports (`gatewatch.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Probe,
    ExploitAttempt,
    ExploitSuccess,
    PostExploitation,
    SessionHijack,
    IocMatch,
    AuthAbuse,
    Anomaly,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Probe => "probe",
            Stage::ExploitAttempt => "exploit-attempt",
            Stage::ExploitSuccess => "exploit-success",
            Stage::PostExploitation => "post-exploitation",
            Stage::SessionHijack => "session-hijack",
            Stage::IocMatch => "ioc-match",
            Stage::AuthAbuse => "auth-abuse",
            Stage::Anomaly => "anomaly",
        }
    }
}

/// `gatewatch:` attributes of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    pub stage: Option<Stage>,
    /// Suppress repeats of this rule for the same key (`by` fields) within `window`.
    pub suppress: Option<SuppressSpec>,
    /// Lines the rule must fire on (`match`) and must not (`no_match`); run by `gatewatch rules test`.
    #[serde(default)]
    pub examples: Examples,
    /// Fields whose values make up the alert's key for suppression and grouping, when not suppressing.
    #[serde(default)]
    pub key: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressSpec {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(default)]
    pub by: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// Each entry is one scenario: a list of lines fed in order (a correlation needs several).
    #[serde(default, rename = "match")]
    pub matches: Vec<Example>,
    #[serde(default)]
    pub no_match: Vec<Example>,
    /// Placeholder values the examples assume (`blocked_countries: [KP]`), over the configured ones.
    #[serde(default)]
    pub placeholders: HashMap<String, Vec<String>>,
}

/// One example: a single line, or lines fed in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Example {
    Line(String),
    Lines(Vec<String>),
}

impl Example {
    pub fn lines(&self) -> Vec<&str> {
        match self {
            Example::Line(l) => vec![l.as_str()],
            Example::Lines(ls) => ls.iter().map(String::as_str).collect(),
        }
    }
}

/// The YAML document of a detection or correlation rule, as written.
#[derive(Debug, Deserialize)]
pub struct RawRule {
    pub title: String,
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub author: Option<String>,
    pub date: Option<serde_yaml_ng::Value>,
    pub modified: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub logsource: Option<LogSource>,
    pub detection: Option<serde_yaml_ng::Mapping>,
    pub correlation: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub gatewatch: Option<Extension>,
    #[serde(flatten)]
    pub other: HashMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogSource {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
}

/// The metadata every alert carries.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub description: String,
    pub references: Vec<String>,
    pub author: String,
    pub version: String,
    pub level: String,
    pub tags: Vec<String>,
    pub stage: Stage,
    pub suppress: Option<SuppressSpec>,
    pub key: Vec<String>,
    pub examples: Examples,
    pub file: String,
}

fn yaml_scalar(v: &Option<serde_yaml_ng::Value>) -> Option<String> {
    match v {
        Some(serde_yaml_ng::Value::String(s)) => Some(s.clone()),
        Some(serde_yaml_ng::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl RuleMeta {
    pub fn from_raw(raw: &RawRule, file: &str) -> Result<RuleMeta, CompileError> {
        let id = raw
            .id
            .clone()
            .or_else(|| raw.name.clone())
            .ok_or(CompileError::Shape("a rule needs an `id` (or `name`)"))?;
        let ext = raw.gatewatch.clone().unwrap_or_default();
        let level = raw.level.clone().unwrap_or_else(|| "medium".into());
        let stage = ext.stage.unwrap_or_else(|| default_stage(&raw.tags));
        Ok(RuleMeta {
            id,
            name: raw.name.clone(),
            title: raw.title.clone(),
            description: raw.description.clone().unwrap_or_default(),
            references: raw.references.clone(),
            author: raw.author.clone().unwrap_or_default(),
            version: yaml_scalar(&raw.modified).or_else(|| yaml_scalar(&raw.date)).unwrap_or_else(|| "1".into()),
            level,
            tags: raw.tags.clone(),
            stage,
            suppress: ext.suppress,
            key: ext.key,
            examples: ext.examples,
            file: file.to_owned(),
        })
    }
}

/// A public rule without a `gatewatch.stage`: exploitation tags mean an attempt.
fn default_stage(tags: &[String]) -> Stage {
    if tags.iter().any(|t| t.starts_with("cve.") || t == "attack.t1190") {
        Stage::ExploitAttempt
    } else {
        Stage::Anomaly
    }
}

/// What decides whether a rule's log source covers a document, looked up once per document.
pub struct DocFacts<'d> {
    /// An HTTP record: a request method, a requested URL (native AppFW records name the URL but not
    /// the method), or `event.category: web` (the appliance's access and error logs).
    web: bool,
    /// `event.dataset`.
    dataset: Found<'d>,
}

impl<'d> DocFacts<'d> {
    pub fn of(doc: &'d Doc<'_>) -> DocFacts<'d> {
        let web = !doc.lookup("http.request.method").is_empty()
            || !doc.lookup("url.original").is_empty()
            || doc.lookup("event.category").iter().any(|c| c.as_str() == Some("web"));
        let dataset = doc.lookup("event.dataset");
        DocFacts { web, dataset }
    }
}

/// A compiled detection rule.
#[derive(Debug)]
pub struct Rule {
    pub meta: RuleMeta,
    logsource: LogSource,
    selections: Vec<(String, Selection)>,
    condition: Cond,
}

impl Rule {
    /// Compiles a detection rule.
    pub fn compile(
        raw: &RawRule,
        file: &str,
        placeholders: &HashMap<String, Vec<String>>,
    ) -> Result<Rule, CompileError> {
        let meta = RuleMeta::from_raw(raw, file)?;
        let detection = raw.detection.as_ref().ok_or(CompileError::Shape("a detection rule needs `detection`"))?;
        let mut selections = Vec::new();
        let mut condition = None;
        for (k, v) in detection {
            let name = to_string(k).ok_or(CompileError::Shape("detection keys must be strings"))?;
            if name == "condition" {
                condition = Some(match v {
                    serde_yaml_ng::Value::String(s) => s.clone(),
                    serde_yaml_ng::Value::Sequence(items) => {
                        items.iter().filter_map(to_string).map(|c| format!("({c})")).collect::<Vec<_>>().join(" or ")
                    }
                    _ => return Err(CompileError::Shape("`condition` must be a string")),
                });
            } else if name != "timeframe" {
                let selection = compile_selection(v, placeholders)
                    .map_err(|e| CompileError::Selection { name: name.clone(), source: Box::new(e) })?;
                selections.push((name, selection));
            }
        }
        let condition = condition.ok_or(CompileError::Shape("detection needs a `condition`"))?;
        let names: Vec<String> = selections.iter().map(|(n, _)| n.clone()).collect();
        let condition = parse_condition(&condition, &names)
            .map_err(|problem| CompileError::Condition { condition: condition.clone(), problem })?;
        Ok(Rule { meta, logsource: raw.logsource.clone().unwrap_or_default(), selections, condition })
    }

    /// Does the rule's log source cover a document with these facts?
    fn applies(&self, facts: &DocFacts<'_>) -> bool {
        if matches!(self.logsource.category.as_deref(), Some("webserver" | "proxy")) && !facts.web {
            return false;
        }
        match self.logsource.service.as_deref() {
            Some(service) => facts
                .dataset
                .iter()
                .any(|d| d.as_str().is_some_and(|d| d == service || d.rsplit('.').next() == Some(service))),
            None => true,
        }
    }

    pub fn matches(&self, doc: &Doc<'_>) -> bool {
        self.matches_given(&DocFacts::of(doc), doc)
    }

    /// [`Rule::matches`] with the document's facts worked out once for every rule.
    pub fn matches_given(&self, facts: &DocFacts<'_>, doc: &Doc<'_>) -> bool {
        self.applies(facts) && self.eval(&self.condition, doc)
    }

    /// The names of the selections that hold for `doc`, in the rule's order (what an alert of this
    /// rule is about: `gatewatch.behaviour.selections`).
    pub fn matched_selections(&self, doc: &Doc<'_>) -> Vec<String> {
        self.selections.iter().filter(|(_, s)| selection_matches(s, doc)).map(|(name, _)| name.clone()).collect()
    }

    /// A value the rule cannot match without ([`Need`]), if a literal search can tell: the rule
    /// prefilter skips the rule for a record that has none.
    pub fn need(&self) -> Option<Need> {
        self.cond_need(&self.condition)
    }

    fn cond_need(&self, cond: &Cond) -> Option<Need> {
        match cond {
            Cond::Sel(i) => selection_need(&self.selections[*i].1),
            Cond::Not(_) => None,
            Cond::And(terms) => terms.iter().find_map(|t| self.cond_need(t)),
            Cond::Or(terms) => Need::any_of(terms.iter().map(|t| self.cond_need(t))),
        }
    }

    fn eval(&self, cond: &Cond, doc: &Doc<'_>) -> bool {
        match cond {
            Cond::Sel(i) => selection_matches(&self.selections[*i].1, doc),
            Cond::Not(inner) => !self.eval(inner, doc),
            Cond::And(terms) => terms.iter().all(|t| self.eval(t, doc)),
            Cond::Or(terms) => terms.iter().any(|t| self.eval(t, doc)),
        }
    }
}

/// Parses every YAML document of a rule file.
pub fn read_documents(path: &Path) -> Result<Vec<RawRule>, RuleError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleError {
        file: file.clone(),
        line: None,
        reason: e.to_string(),
    })?;
    parse_documents(&text, &file)
}

/// Parses every YAML document of a rule file's text; `file` names it in errors.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<RawRule>, RuleError> {
    let file = file.to_owned();
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        match RawRule::deserialize(document) {
            Ok(raw) => out.push(raw),
            Err(e) => {
                return Err(RuleError { file, line: e.location().map(|l| l.line()), reason: e.to_string() });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn rule(yaml: &str) -> Rule {
        let raw: RawRule = serde_yaml_ng::from_str(yaml).unwrap();
        let mut placeholders = HashMap::new();
        placeholders.insert("mgmt".to_string(), vec!["10.0.0.0/8".to_string()]);
        Rule::compile(&raw, "test.yml", &placeholders).unwrap()
    }

    fn doc(v: Json) -> Doc<'static> {
        match v {
            Json::Object(m) => Doc::from_json(m),
            _ => unreachable!(),
        }
    }

    const HEAD: &str = "title: t\nid: r1\nlogsource: {product: citrix}\n";

    #[test]
    fn a_rule_needs_the_literals_every_way_to_match_it_contains() {
        let need = |detection: &str| rule(&format!("{HEAD}detection:\n{detection}")).need();
        let at = |path: &str, literals: &[&str]| {
            Some(Need { path: path.into(), literals: literals.iter().map(|l| (*l).to_owned()).collect() })
        };
        let cases = [
            ("  s: {url.path|contains: ['/vpns/', '/VPN/']}\n  condition: s", at("url.path", &["/vpns/", "/VPN/"])),
            ("  s: {url.path: '/a', user.name: x}\n  condition: s", at("url.path", &["/a"])),
            (
                "  s: {url.path|startswith: /a}\n  f: {url.path|endswith: .b}\n  condition: s and not f",
                at("url.path", &["/a"]),
            ),
            ("  a: {url.path: /a}\n  b: {url.path|endswith: /b}\n  condition: a or b", at("url.path", &["/a", "/b"])),
            ("  a: {url.path: /a}\n  b: {user.name: x}\n  condition: a or b", None),
            ("  s: {url.path|re: '^/a'}\n  condition: s", None),
            ("  s: {url.path: '/a*'}\n  condition: s", None),
            ("  s: {source.ip|cidr: 10.0.0.0/8}\n  condition: s", None),
            ("  f: {url.path: /a}\n  condition: not f", None),
            ("  k: [wget, curl]\n  condition: k", at("event.original", &["wget", "curl"])),
        ];
        for (detection, want) in cases {
            assert_eq!(need(detection), want, "{detection}");
        }
    }

    #[test]
    fn modifiers() {
        let d = doc(json!({"url": {"original": "/VPN/../vpns/portal/scripts/newbm.pl", "path": "/vpns/cfg/smb.conf"},
                           "source": {"ip": "10.1.2.3"}, "http": {"response": {"status_code": 200}},
                           "user": {"name": "Admin"}}));
        let cases = [
            ("url.original|contains: '/../vpns/'", true),
            ("url.original|contains: '/../VPNS/'", true),
            ("url.original|startswith: '/vpn/'", true),
            ("url.path|endswith: 'smb.conf'", true),
            ("url.original|contains|all: ['/vpns/portal/scripts/', '.pl']", true),
            ("url.original|contains|all: ['/vpns/portal/scripts/', '.xml']", false),
            ("url.original|contains: ['nothing', 'newbm']", true),
            ("url.original|re: '^/VPN/\\.\\./'", true),
            ("url.original|re: '^/vpn/\\.\\./'", false),
            ("url.original|re|i: '^/vpn/\\.\\./'", true),
            ("source.ip|cidr: '10.0.0.0/8'", true),
            ("source.ip|cidr: '192.168.0.0/16'", false),
            ("source.ip|expand|cidr: '%mgmt%'", true),
            ("http.response.status_code: 200", true),
            ("http.response.status_code|gte: 400", false),
            ("http.response.status_code|lt: 300", true),
            ("user.name: admin", true),
            ("user.name: 'adm*'", true),
            ("user.name: 'a?min'", true),
            ("user.name|exists: true", true),
            ("user.domain|exists: true", false),
            ("user.domain: null", true),
            ("user.name: null", false),
        ];
        for (selection, want) in cases {
            let r = rule(&format!("{HEAD}detection:\n  sel:\n    {selection}\n  condition: sel\n"));
            assert_eq!(r.matches(&d), want, "{selection}");
        }
    }

    #[test]
    fn conditions() {
        let d = doc(json!({"a": "1", "b": "2"}));
        let sels = "  s_a: {a: '1'}\n  s_b: {b: '2'}\n  s_c: {c: '3'}\n  other: {a: 'x'}\n";
        for (condition, want) in [
            ("s_a and s_b", true),
            ("s_a and s_c", false),
            ("s_a or s_c", true),
            ("not s_c", true),
            ("s_a and not s_b", false),
            ("(s_a or s_c) and not other", true),
            ("1 of s_*", true),
            ("all of s_*", false),
            ("all of s_a", true),
            ("1 of them", true),
            ("all of them", false),
            ("not (s_c or other)", true),
        ] {
            let r = rule(&format!("{HEAD}detection:\n{sels}  condition: {condition}\n"));
            assert_eq!(r.matches(&d), want, "{condition}");
        }
    }

    #[test]
    fn list_selections_and_keywords() {
        let d = doc(json!({"a": "1", "event": {"original": "GET /x.php?cmd=id"}}));
        let r = rule(&format!("{HEAD}detection:\n  sel:\n    - a: '9'\n    - a: '1'\n  condition: sel\n"));
        assert!(r.matches(&d));
        let r = rule(&format!("{HEAD}detection:\n  kw:\n    - 'cmd=id'\n    - 'wget '\n  condition: kw\n"));
        assert!(r.matches(&d));
    }

    #[test]
    fn broken_rules_say_why() {
        let raw: RawRule =
            serde_yaml_ng::from_str(&format!("{HEAD}detection:\n  sel: {{a|bogus: x}}\n  condition: sel\n")).unwrap();
        let err = Rule::compile(&raw, "x.yml", &HashMap::new()).unwrap_err();
        let CompileError::Selection { name, source } = &err else { panic!("{err}") };
        assert_eq!(name, "sel");
        let bogus = matches!(&**source, CompileError::Field { problem: FieldProblem::Modifier(m), .. } if m == "bogus");
        assert!(bogus, "{err}");
        let raw: RawRule =
            serde_yaml_ng::from_str(&format!("{HEAD}detection:\n  sel: {{a: x}}\n  condition: sel and missing\n"))
                .unwrap();
        let err = Rule::compile(&raw, "x.yml", &HashMap::new()).unwrap_err();
        let missing =
            matches!(&err, CompileError::Condition { problem: ConditionProblem::NoSelection(n), .. } if n == "missing");
        assert!(missing, "{err}");
        let raw: RawRule =
            serde_yaml_ng::from_str(&format!("{HEAD}detection:\n  sel: {{a|expand: '%nope%'}}\n  condition: sel\n"))
                .unwrap();
        let err = Rule::compile(&raw, "x.yml", &HashMap::new()).unwrap_err();
        let CompileError::Selection { source, .. } = &err else { panic!("{err}") };
        assert!(matches!(&**source, CompileError::Placeholder(name) if name == "nope"), "{err}");
    }

    #[test]
    fn sigma_webserver_fields_map_to_ecs() {
        let r = rule("title: t\nid: r\nlogsource: {category: webserver}\ndetection:\n  sel:\n    cs-method: GET\n    sc-status: 200\n    cs-uri-stem|contains: '/oauth/idp/'\n  condition: sel\n");
        let hit = doc(
            json!({"http": {"request": {"method": "GET"}, "response": {"status_code": 200}}, "url": {"path": "/oauth/idp/.well-known/openid-configuration"}}),
        );
        assert!(r.matches(&hit));
        let miss = doc(
            json!({"http": {"request": {"method": "GET"}, "response": {"status_code": 404}}, "url": {"path": "/oauth/idp/x"}}),
        );
        assert!(!r.matches(&miss));
        // Not a web request: the logsource does not apply.
        let other = doc(json!({"url": {"path": "/oauth/idp/x"}}));
        assert!(!r.matches(&other));
    }
}
