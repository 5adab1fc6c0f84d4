//! `gatewatch rules test`: every rule's own examples — lines (or ECS documents) it must fire on and
//! lines it must not — run through the same parser, enrichment and detector as the service.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::{sigma, DetectOptions, RuleSet, Worker};
use crate::doc::Doc;
use crate::ecs::Origin;
use crate::enrich::Enricher;
use crate::parse::{Dataset, ParseContext};
use crate::process::{Clocks, Created, Input, Processor};

/// One example that did not behave.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub rule: String,
    pub file: String,
    pub example: String,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}: {}", self.rule, self.file, self.example, self.reason)
    }
}

/// Why an example could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("unknown dataset {0:?}")]
    Dataset(String),
    #[error("example JSON is not an object")]
    NotAnObject,
    #[error("does not parse: {0}")]
    Parse(#[from] crate::parse::ParseError),
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub rules: usize,
    pub examples: usize,
    pub failures: Vec<Failure>,
    /// Rules without both a positive and a negative example.
    pub missing: Vec<String>,
}

/// The clocks of an example: a fixed reference time (year-less lines land in January 2020).
fn clocks(reference: DateTime<Utc>) -> Clocks {
    Clocks { received: reference, indicators: reference, created: Created::At(reference) }
}

/// `[dataset=httperror] line`: a line whose dataset only its transport knows.
fn split_hint(line: &str) -> Result<(Option<Dataset>, &str), ExampleError> {
    Ok(match line.strip_prefix("[dataset=").and_then(|r| r.split_once("] ")) {
        Some((name, rest)) => (Some(Dataset::from_name(name).ok_or_else(|| ExampleError::Dataset(name.into()))?), rest),
        None => (None, line),
    })
}

/// An ECS document written as JSON (for rules that depend on enrichment).
fn json_document(line: &str) -> Option<Result<Doc<'static>, ExampleError>> {
    line.trim_start().starts_with('{').then(|| match serde_json::from_str(line) {
        Ok(Json::Object(doc)) => Ok(Doc::from_json(doc)),
        _ => Err(ExampleError::NotAnObject),
    })
}

/// A line (or an ECS document written as JSON) → the enriched document the detector sees, through the
/// service's own record path.
pub fn document(
    line: &str,
    ctx: &ParseContext,
    enricher: Option<&Enricher>,
    reference: DateTime<Utc>,
) -> Result<Map<String, Json>, ExampleError> {
    if let Some(doc) = json_document(line) {
        return doc.map(|doc| doc.to_json());
    }
    let (hint, line) = split_hint(line)?;
    let (rules, detect) = (RuleSet::default(), DetectOptions::default());
    let processor = Processor { ctx, enricher, rules: &rules, detect: &detect };
    let input =
        Input { payload: line.as_bytes(), hint, origin: Origin::File { file: "example", line: 0 }, appliance: None };
    Ok(processor.process(Some(&mut Worker::default()), input, clocks(reference))?.doc.to_json())
}

fn event_time(doc: &Doc<'_>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    doc.get_str("@timestamp")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(fallback)
}

/// The ids of the rules that alerted or matched on an example, in order.
type Fired = Vec<String>;

/// Feeds `lines` in order through a fresh worker; returns the ids of the rules that alerted or matched
/// (a rule that only feeds correlations matches without alerting).
fn fire(
    set: &RuleSet,
    options: &DetectOptions,
    lines: &[&str],
    ctx: &ParseContext,
    enricher: Option<&Enricher>,
) -> Result<Fired, ExampleError> {
    let reference: DateTime<Utc> = "2020-01-20T00:00:00Z".parse().expect("a valid RFC 3339 literal");
    let processor = Processor { ctx, enricher, rules: set, detect: options };
    let mut worker = Worker::default();
    let mut fired = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (doc, alerts) = match json_document(line) {
            Some(doc) => {
                let doc = doc?;
                let at = event_time(&doc, reference);
                let alerts =
                    worker.evaluate(set, options, &doc, Origin::File { file: "example", line: i + 1 }, at, reference);
                (doc, alerts)
            }
            None => {
                let (hint, line) = split_hint(line)?;
                let origin = Origin::File { file: "example", line: i + 1 };
                let input = Input { payload: line.as_bytes(), hint, origin, appliance: None };
                let processed = processor.process(Some(&mut worker), input, clocks(reference))?;
                (processed.doc, processed.alerts)
            }
        };
        fired.extend(set.rules.iter().filter(|r| r.matches(&doc)).map(|r| r.meta.id.clone()));
        fired.extend(alerts.into_iter().map(|a| a.rule_id));
    }
    fired.extend(worker.flush_all().into_iter().map(|a| a.rule_id));
    Ok(fired)
}

/// Runs the examples of every rule under `dirs`.
pub fn run(dirs: &[PathBuf], options: &DetectOptions, ctx: &ParseContext, enricher: Option<&Enricher>) -> Report {
    let mut report = Report::default();
    let (base, errors) = RuleSet::load(dirs, options);
    for e in errors {
        report.failures.push(Failure {
            rule: "-".into(),
            file: e.file.clone(),
            example: "-".into(),
            reason: e.to_string(),
        });
    }
    let metas: Vec<&sigma::RuleMeta> =
        base.rules.iter().map(|r| &r.meta).chain(base.correlations.iter().map(|c| &c.meta)).collect();
    for meta in metas {
        report.rules += 1;
        let ex = &meta.examples;
        if ex.matches.is_empty() || ex.no_match.is_empty() {
            report.missing.push(format!("{} ({})", meta.id, meta.file));
        }
        let overridden;
        let set = if ex.placeholders.is_empty() {
            &base
        } else {
            let mut opts = options.clone();
            opts.placeholders.extend(ex.placeholders.clone());
            overridden = RuleSet::load(dirs, &opts).0;
            &overridden
        };
        for (want, examples) in [(true, &ex.matches), (false, &ex.no_match)] {
            for (i, example) in examples.iter().enumerate() {
                report.examples += 1;
                let label = format!("{} #{}", if want { "match" } else { "no_match" }, i + 1);
                let failure = |reason: String| Failure {
                    rule: meta.id.clone(),
                    file: meta.file.clone(),
                    example: label.clone(),
                    reason,
                };
                match fire(set, options, &example.lines(), ctx, enricher) {
                    Ok(fired) => {
                        let got = fired.iter().any(|id| id == &meta.id);
                        if got != want {
                            let reason =
                                if want { format!("did not fire (fired: {fired:?})") } else { "fired".to_owned() };
                            report.failures.push(failure(reason));
                        }
                    }
                    Err(reason) => report.failures.push(failure(reason.to_string())),
                }
            }
        }
    }
    report
}
