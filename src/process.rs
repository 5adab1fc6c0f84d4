//! Process: one record → its ECS event, enriched, evaluated by the rules — the one record path that
//! the live pipeline, replays and the rules' own examples share, so they cannot drift apart.
//!
//! It takes the record's bytes, the dataset its transport implies, where it came from (Kafka
//! coordinates or file and line), the appliance its location implies, and the clocks to use; it
//! produces the parsed event, the enriched document (as published on the enriched topic) and the alerts
//! of the partition's [`Worker`]. A record that does not parse is the caller's to dead-letter.

use chrono::{DateTime, Utc};

use crate::detect::{Alert, DetectOptions, RuleSet, Worker};
use crate::doc::{Doc, Val};
use crate::ecs::{self, Origin};
use crate::enrich::Enricher;
use crate::parse::{self, AdcEvent, Dataset, ParseContext, ParseError};

/// The finished components a record goes through.
pub struct Processor<'a> {
    pub ctx: &'a ParseContext,
    /// `None`: no enrichment (`gatewatch rules test` without databases).
    pub enricher: Option<&'a Enricher>,
    pub rules: &'a RuleSet,
    pub detect: &'a DetectOptions,
}

/// The clocks a record is processed with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clocks {
    /// When the record arrived (its Kafka timestamp; a replay's end): dates records without a time of
    /// their own and completes year-less timestamps.
    pub received: DateTime<Utc>,
    /// The indicators' clock (their expiry): now live, a pinned feed snapshot's time in a replay.
    pub indicators: DateTime<Utc>,
    /// `event.created` of the alerts.
    pub created: Created,
}

/// What `event.created` says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Created {
    /// This time: the wall clock of the live decision.
    At(DateTime<Utc>),
    /// The record's event time: replays and examples, so reruns are byte-identical.
    EventTime,
}

/// One record to process.
#[derive(Debug, Clone, Copy)]
pub struct Input<'r> {
    pub payload: &'r [u8],
    /// The dataset the transport implies (a topic's or a file name's), when the payload does not say.
    pub hint: Option<Dataset>,
    pub origin: Origin<'r>,
    /// The appliance the record's location implies (a replay's `<appliance>/<file>` layout), for records
    /// that name none.
    pub appliance: Option<&'r str>,
}

/// What one record gave.
pub struct Processed<'r> {
    pub event: AdcEvent<'r>,
    /// The enriched-topic document.
    pub doc: Doc<'r>,
    pub alerts: Vec<Alert>,
    /// Indicator matches of the enrichment.
    pub indicator_hits: usize,
}

impl Processor<'_> {
    /// parse → ECS → enrich → detect, with `worker` the detection state of the record's partition
    /// (`None`: the record is already in that state — a restart's replayed tail — and is not evaluated).
    pub fn process<'r>(
        &self,
        worker: Option<&mut Worker>,
        input: Input<'r>,
        clocks: Clocks,
    ) -> Result<Processed<'r>, ParseError> {
        let event = parse::parse(input.payload, clocks.received, self.ctx, input.hint)?;
        let mut doc = ecs::event_doc(&event, input.origin);
        if event.appliance().is_none() {
            if let Some(host) = input.appliance {
                doc.insert("observer.hostname", Val::text(host));
            }
        }
        let indicator_hits = self.enricher.map_or(0, |e| e.enrich(&event, &mut doc, clocks.indicators));
        let at = event.timestamp;
        let created = match clocks.created {
            Created::At(t) => t,
            Created::EventTime => at,
        };
        let alerts = match worker {
            Some(worker) => worker.evaluate(self.rules, self.detect, &doc, input.origin, at, created),
            None => Vec::new(),
        };
        Ok(Processed { event, doc, alerts, indicator_hits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Publish;
    use serde_json::{json, Value as Json};

    #[test]
    fn a_record_becomes_an_event_a_document_and_its_alerts() {
        let options = crate::config::Settings::default().detect.options();
        let rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let (rules, errors) = RuleSet::load(&[rules_dir], &options);
        assert!(errors.is_empty(), "{errors:?}");
        let ctx = ParseContext::default();
        let processor = Processor { ctx: &ctx, enricher: None, rules: &rules, detect: &options };
        let received: DateTime<Utc> = "2020-02-01T00:00:00Z".parse().unwrap();
        let clocks = Clocks { received, indicators: received, created: Created::EventTime };
        let line = br#"203.0.113.9 - - [11/Jan/2020:10:00:00 +0000] "GET /vpn/../vpns/cfg/smb.conf HTTP/1.1" 200 146 "-" "curl""#;
        let input = Input {
            payload: line,
            hint: Some(Dataset::HttpAccess),
            origin: Origin::File { file: "gw-lon-01/httpaccess.log", line: 7 },
            appliance: Some("gw-lon-01"),
        };
        let mut worker = Worker::new(Publish::Immediately);
        let out = processor.process(Some(&mut worker), input, clocks).unwrap();
        let doc = Json::Object(out.doc.to_json());
        assert_eq!(doc["observer"]["hostname"], "gw-lon-01", "the location names the appliance");
        assert_eq!(doc["gatewatch"]["source"], json!({"file": "gw-lon-01/httpaccess.log", "line": 7}));
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].doc["event"]["created"], "2020-01-11T10:00:00.000Z");
        assert_eq!(out.alerts[0].doc["gatewatch"]["evidence"][0]["source"]["line"], 7);
        let err = processor.process(Some(&mut worker), Input { payload: b"\xff", ..input }, clocks).err().unwrap();
        assert_eq!(err.code(), "not_utf8");
    }
}
