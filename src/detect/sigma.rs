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
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

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

/// What is wrong with a condition.
#[derive(Debug, thiserror::Error)]
pub enum ConditionProblem {
    #[error("condition names {0:?}, which matches no selection")]
    NoSelection(String),
    #[error("condition ends early")]
    EndsEarly,
    #[error("unbalanced parentheses in condition")]
    Unbalanced,
    #[error("expected `of` after {0:?}")]
    ExpectedOf(String),
    #[error("expected a selection pattern after `of`")]
    ExpectedPattern,
    #[error("unexpected {0:?} in condition")]
    Unexpected(String),
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

/// One value test.
#[derive(Debug)]
enum Pred {
    Eq(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Re(Regex),
    Cidr(IpAddr, u8),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
    Exists(bool),
}

#[derive(Debug)]
enum Values {
    /// Any of these predicates.
    Any(Vec<Pred>),
    /// Every one of these predicates.
    All(Vec<Pred>),
    /// Any of these literals anywhere in the value (`contains` lists).
    Literals(AhoCorasick),
    /// Any of these regexes.
    Regexes(RegexSet),
    /// The field must be absent (`null`).
    Absent,
}

#[derive(Debug)]
struct FieldTest {
    path: String,
    values: Values,
}

#[derive(Debug)]
enum Selection {
    /// Every field test holds.
    All(Vec<FieldTest>),
    /// Any of these selections holds.
    Any(Vec<Selection>),
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

/// A compiled detection rule.
#[derive(Debug)]
pub struct Rule {
    pub meta: RuleMeta,
    logsource: LogSource,
    selections: Vec<(String, Selection)>,
    condition: Cond,
}

fn to_string(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Sigma wildcards (`*`, `?`) in a plain value become a regex; `\\*` stays literal.
fn wildcard(value: &str) -> Option<Regex> {
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

fn compile_field(
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
        let mut expanded = Vec::new();
        for v in &raw {
            let s = to_string(v).unwrap_or_default();
            match s.strip_prefix('%').and_then(|s| s.strip_suffix('%')) {
                Some(name) => match placeholders.get(name) {
                    Some(values) => expanded.extend(values.iter().map(|v| serde_yaml_ng::Value::String(v.clone()))),
                    None => return Err(CompileError::Placeholder(name.to_owned())),
                },
                None => expanded.push(v.clone()),
            }
        }
        raw = expanded;
    }
    let all = modifiers.contains(&"all");
    let known = [
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
    if let Some(unknown) = modifiers.iter().find(|m| !known.contains(m)) {
        return Err(bad(FieldProblem::Modifier((*unknown).to_owned())));
    }
    let strings: Vec<String> = raw
        .iter()
        .map(|v| to_string(v).ok_or_else(|| bad(FieldProblem::NotScalar(format!("{v:?}")))))
        .collect::<Result<_, _>>()?;
    let has = |m: &str| modifiers.contains(&m);
    if has("re") {
        let flags = format!(
            "{}{}{}",
            if has("i") { "i" } else { "" },
            if has("m") { "m" } else { "" },
            if has("s") { "s" } else { "" }
        );
        let patterns: Vec<String> =
            strings.iter().map(|p| if flags.is_empty() { p.clone() } else { format!("(?{flags}){p}") }).collect();
        if all {
            let preds = patterns
                .iter()
                .map(|p| Regex::new(p).map(Pred::Re).map_err(|e| bad(e.into())))
                .collect::<Result<_, _>>()?;
            return Ok(FieldTest { path, values: Values::All(preds) });
        }
        let set = RegexSet::new(&patterns).map_err(|e| bad(e.into()))?;
        return Ok(FieldTest { path, values: Values::Regexes(set) });
    }
    if has("contains") && !all && strings.len() > 1 {
        let automaton =
            AhoCorasick::builder().ascii_case_insensitive(true).build(&strings).map_err(|e| bad(e.into()))?;
        return Ok(FieldTest { path, values: Values::Literals(automaton) });
    }
    let mut preds = Vec::with_capacity(strings.len());
    for s in strings {
        let lower = s.to_lowercase();
        let number = |s: &str| s.parse::<f64>().map_err(|_| bad(FieldProblem::NotNumber(s.to_owned())));
        let pred = if has("cidr") {
            let not_cidr = || bad(FieldProblem::NotCidr(s.clone()));
            let (ip, len) = s.split_once('/').ok_or_else(not_cidr)?;
            let ip: IpAddr = ip.parse().map_err(|_| not_cidr())?;
            Pred::Cidr(ip, len.parse().map_err(|_| not_cidr())?)
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
            Pred::Contains(lower)
        } else if has("startswith") {
            Pred::StartsWith(lower)
        } else if has("endswith") {
            Pred::EndsWith(lower)
        } else if let Some(re) = wildcard(&s) {
            Pred::Re(re)
        } else {
            Pred::Eq(lower)
        };
        preds.push(pred);
    }
    Ok(FieldTest { path, values: if all { Values::All(preds) } else { Values::Any(preds) } })
}

fn compile_selection(
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
            Ok(Selection::All(vec![FieldTest { path: "event.original".into(), values: Values::Literals(automaton) }]))
        }
        other => Err(CompileError::SelectionType(format!("{other:?}"))),
    }
}

/// Tokens of a condition.
fn tokenize(condition: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in condition.chars() {
        match c {
            '(' | ')' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

struct CondParser<'a> {
    tokens: Vec<String>,
    pos: usize,
    names: &'a [String],
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Cond, ConditionProblem> {
        let mut terms = vec![self.and()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("or")) {
            self.next();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Cond::Or(terms) })
    }

    fn and(&mut self) -> Result<Cond, ConditionProblem> {
        let mut terms = vec![self.not()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("and")) {
            self.next();
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Cond::And(terms) })
    }

    fn not(&mut self) -> Result<Cond, ConditionProblem> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.next();
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn matching(&self, pattern: &str) -> Result<Vec<usize>, ConditionProblem> {
        let found: Vec<usize> = if pattern == "them" {
            (0..self.names.len()).collect()
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            self.names.iter().enumerate().filter(|(_, n)| n.starts_with(prefix)).map(|(i, _)| i).collect()
        } else {
            self.names.iter().position(|n| n == pattern).into_iter().collect()
        };
        if found.is_empty() {
            return Err(ConditionProblem::NoSelection(pattern.to_owned()));
        }
        Ok(found)
    }

    fn atom(&mut self) -> Result<Cond, ConditionProblem> {
        let token = self.next().ok_or(ConditionProblem::EndsEarly)?;
        match token.as_str() {
            "(" => {
                let inner = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(inner),
                    _ => Err(ConditionProblem::Unbalanced),
                }
            }
            "1" | "any" | "all" => {
                let of = self.next();
                if !of.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("of")) {
                    return Err(ConditionProblem::ExpectedOf(token));
                }
                let pattern = self.next().ok_or(ConditionProblem::ExpectedPattern)?;
                let sels: Vec<Cond> = self.matching(&pattern)?.into_iter().map(Cond::Sel).collect();
                Ok(if token == "all" { Cond::And(sels) } else { Cond::Or(sels) })
            }
            name => Ok(Cond::Sel(self.matching(name)?[0])),
        }
    }
}

fn parse_condition(condition: &str, names: &[String]) -> Result<Cond, ConditionProblem> {
    let mut parser = CondParser { tokens: tokenize(condition), pos: 0, names };
    let cond = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(ConditionProblem::Unexpected(parser.tokens[parser.pos].clone()));
    }
    Ok(cond)
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

    /// Does the rule's log source cover this document?
    fn applies(&self, doc: &Map<String, Json>) -> bool {
        // HTTP records: a request method, a requested URL (native AppFW records name the URL but not
        // the method), or `event.category: web` (the appliance's access and error logs).
        let web = matches!(self.logsource.category.as_deref(), Some("webserver" | "proxy"));
        if web
            && lookup(doc, "http.request.method").is_empty()
            && lookup(doc, "url.original").is_empty()
            && !lookup(doc, "event.category").iter().any(|c| c.as_str() == Some("web"))
        {
            return false;
        }
        match self.logsource.service.as_deref() {
            Some(service) => lookup(doc, "event.dataset")
                .iter()
                .any(|d| d.as_str().is_some_and(|d| d == service || d.rsplit('.').next() == Some(service))),
            None => true,
        }
    }

    pub fn matches(&self, doc: &Map<String, Json>) -> bool {
        self.applies(doc) && self.eval(&self.condition, doc)
    }

    /// The names of the selections that hold for `doc`, in the rule's order (what an alert of this
    /// rule is about: `gatewatch.behaviour.selections`).
    pub fn matched_selections(&self, doc: &Map<String, Json>) -> Vec<String> {
        self.selections.iter().filter(|(_, s)| selection_matches(s, doc)).map(|(name, _)| name.clone()).collect()
    }

    fn eval(&self, cond: &Cond, doc: &Map<String, Json>) -> bool {
        match cond {
            Cond::Sel(i) => selection_matches(&self.selections[*i].1, doc),
            Cond::Not(inner) => !self.eval(inner, doc),
            Cond::And(terms) => terms.iter().all(|t| self.eval(t, doc)),
            Cond::Or(terms) => terms.iter().any(|t| self.eval(t, doc)),
        }
    }
}

/// Every value at a dotted path (arrays flattened; `threat.enrichments.indicator.ip` reaches into the
/// array's objects).
pub fn lookup<'d>(doc: &'d Map<String, Json>, path: &str) -> Vec<&'d Json> {
    let mut current: Vec<&Json> = Vec::new();
    let mut parts = path.split('.');
    let Some(first) = parts.next() else { return current };
    // Keys may themselves contain dots (`citrix_adc.log.fields` pairs); objects are tried first.
    if let Some(v) = doc.get(first) {
        current.push(v);
    }
    for part in parts {
        let mut next = Vec::new();
        for v in current {
            match v {
                Json::Object(o) => next.extend(o.get(part)),
                Json::Array(items) => next.extend(items.iter().filter_map(|i| i.get(part))),
                _ => {}
            }
        }
        current = next;
    }
    let mut flat = Vec::with_capacity(current.len());
    for v in current {
        match v {
            Json::Array(items) => flat.extend(items.iter()),
            other => flat.push(other),
        }
    }
    flat
}

fn value_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn pred_matches(pred: &Pred, value: &Json) -> bool {
    if let Pred::Exists(_) = pred {
        return true;
    }
    let number = || value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
    let Some(text) = value_text(value) else { return false };
    match pred {
        Pred::Eq(want) => text.to_lowercase() == *want,
        Pred::Contains(want) => text.to_lowercase().contains(want.as_str()),
        Pred::StartsWith(want) => text.to_lowercase().starts_with(want.as_str()),
        Pred::EndsWith(want) => text.to_lowercase().ends_with(want.as_str()),
        Pred::Re(re) => re.is_match(&text),
        Pred::Cidr(net, len) => match (text.parse::<IpAddr>(), net) {
            (Ok(IpAddr::V4(ip)), IpAddr::V4(net)) => {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
                u32::from(ip) & mask == u32::from(*net) & mask
            }
            (Ok(IpAddr::V6(ip)), IpAddr::V6(net)) => {
                let mask = if *len == 0 { 0 } else { u128::MAX << (128 - u32::from(*len)) };
                u128::from(ip) & mask == u128::from(*net) & mask
            }
            _ => false,
        },
        Pred::Lt(n) => number().is_some_and(|v| v < *n),
        Pred::Lte(n) => number().is_some_and(|v| v <= *n),
        Pred::Gt(n) => number().is_some_and(|v| v > *n),
        Pred::Gte(n) => number().is_some_and(|v| v >= *n),
        Pred::Exists(_) => true,
    }
}

fn field_matches(test: &FieldTest, doc: &Map<String, Json>) -> bool {
    let values = lookup(doc, &test.path);
    match &test.values {
        Values::Absent => values.is_empty() || values.iter().all(|v| v.is_null()),
        Values::Any(preds) => {
            if let [Pred::Exists(want)] = preds.as_slice() {
                return values.is_empty() != *want;
            }
            preds.iter().any(|p| values.iter().any(|v| pred_matches(p, v)))
        }
        Values::All(preds) => preds.iter().all(|p| values.iter().any(|v| pred_matches(p, v))),
        Values::Literals(automaton) => values.iter().filter_map(|v| value_text(v)).any(|t| automaton.is_match(&t)),
        Values::Regexes(set) => values.iter().filter_map(|v| value_text(v)).any(|t| set.is_match(&t)),
    }
}

fn selection_matches(selection: &Selection, doc: &Map<String, Json>) -> bool {
    match selection {
        Selection::All(tests) => tests.iter().all(|t| field_matches(t, doc)),
        Selection::Any(options) => options.iter().any(|o| selection_matches(o, doc)),
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
    use serde_json::json;

    fn rule(yaml: &str) -> Rule {
        let raw: RawRule = serde_yaml_ng::from_str(yaml).unwrap();
        let mut placeholders = HashMap::new();
        placeholders.insert("mgmt".to_string(), vec!["10.0.0.0/8".to_string()]);
        Rule::compile(&raw, "test.yml", &placeholders).unwrap()
    }

    fn doc(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => unreachable!(),
        }
    }

    const HEAD: &str = "title: t\nid: r1\nlogsource: {product: citrix}\n";

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
