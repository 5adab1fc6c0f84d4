//! ECS: a parsed [`AdcEvent`] → the JSON document published on the enriched topic, and a rejected
//! record → the dead-letter envelope. Both name their input record under `gatewatch.source` so loss and
//! duplication can be audited by coordinates.
//!
//! Field names follow ECS 8.x and, beyond ECS, Elastic's `citrix_adc` integration (`citrix_adc.log.*`),
//! so existing SIEM searches work on gatewatch output.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::parse::{syslog, AdcEvent, ParseError, PayloadFormat, TimestampSource};

pub const ECS_VERSION: &str = "8.11.0";

/// Where an output came from: an input record's Kafka coordinates.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Serialize)]
struct Gatewatch<'a, D: Serialize> {
    source: SourceRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlq: Option<D>,
}

fn skip<T>(v: &Option<T>) -> bool {
    v.is_none()
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    message: &'a str,
    event: Event<'a>,
    observer: Observer<'a>,
    #[serde(skip_serializing_if = "skip")]
    log: Option<Log<'a>>,
    citrix_adc: CitrixAdc<'a>,
    gatewatch: Gatewatch<'a, ()>,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    module: &'static str,
    dataset: &'static str,
    action: String,
    original: &'a str,
    #[serde(skip_serializing_if = "skip")]
    sequence: Option<u64>,
}

#[derive(Serialize)]
struct Observer<'a> {
    #[serde(skip_serializing_if = "skip")]
    hostname: Option<&'a str>,
    vendor: &'static str,
    product: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Log<'a> {
    syslog: Syslog<'a>,
}

#[derive(Serialize)]
struct Code {
    code: u8,
    #[serde(skip_serializing_if = "skip")]
    name: Option<&'static str>,
}

#[derive(Serialize)]
struct Syslog<'a> {
    #[serde(skip_serializing_if = "skip")]
    priority: Option<u8>,
    #[serde(skip_serializing_if = "skip")]
    facility: Option<Code>,
    #[serde(skip_serializing_if = "skip")]
    severity: Option<Code>,
    #[serde(skip_serializing_if = "skip")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    appname: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    procid: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    msgid: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    format: Option<&'static str>,
}

#[derive(Serialize)]
struct CitrixAdc<'a> {
    log: CitrixLog<'a>,
}

#[derive(Serialize)]
struct CitrixLog<'a> {
    #[serde(skip_serializing_if = "skip")]
    feature: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "skip")]
    sequence: Option<u64>,
    #[serde(skip_serializing_if = "skip")]
    ppe: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    partition: Option<&'a str>,
    format: &'static str,
    #[serde(skip_serializing_if = "skip")]
    cef_version: Option<&'a str>,
    #[serde(skip_serializing_if = "skip")]
    cef_severity: Option<&'a str>,
    timestamp_source: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    local_time: bool,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The enriched-topic document for one event.
pub fn event_json(event: &AdcEvent<'_>, source: SourceRef<'_>) -> Vec<u8> {
    let env = &event.envelope;
    let log = (env.priority.is_some() || env.facility.is_some() || env.hostname.is_some() || env.appname.is_some())
        .then(|| Log {
            syslog: Syslog {
                priority: env.priority,
                facility: env.facility.map(|code| Code { code, name: syslog::facility_name(code) }),
                severity: env.severity.map(|code| Code { code, name: syslog::severity_name(code) }),
                hostname: env.hostname,
                appname: env.appname,
                procid: env.procid,
                msgid: env.msgid,
                format: env.format.as_str(),
            },
        });
    let doc = Document {
        timestamp: rfc3339(event.timestamp),
        ecs: Ecs { version: ECS_VERSION },
        message: event.header.message,
        event: Event {
            kind: "event",
            module: "citrix_adc",
            dataset: "citrix_adc.log",
            action: event.header.name.to_ascii_lowercase().replace(' ', "_"),
            original: event.original,
            sequence: event.header.sequence,
        },
        observer: Observer { hostname: event.appliance(), vendor: "Citrix", product: "Netscaler", kind: "firewall" },
        log,
        citrix_adc: CitrixAdc {
            log: CitrixLog {
                feature: event.header.feature,
                name: event.header.name,
                sequence: event.header.sequence,
                ppe: event.header.ppe,
                partition: event.header.partition,
                format: match event.header.format {
                    PayloadFormat::Native => "native",
                    PayloadFormat::Cef => "cef",
                },
                cef_version: event.header.cef_version,
                cef_severity: event.header.cef_severity,
                timestamp_source: match event.timestamp_source {
                    TimestampSource::Header => "header",
                    TimestampSource::Envelope => "envelope",
                    TimestampSource::Record => "record",
                },
                local_time: event.local_time,
            },
        },
        gatewatch: Gatewatch { source, dlq: None },
    };
    serde_json::to_vec(&doc).expect("the document has only string keys and serializable values")
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    event: DeadLetterEvent<'a>,
    error: DeadLetterError<'a>,
    gatewatch: Gatewatch<'a, DeadLetterDetail>,
}

#[derive(Serialize)]
struct DeadLetterEvent<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "skip")]
    original: Option<&'a str>,
}

#[derive(Serialize)]
struct DeadLetterError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct DeadLetterDetail {
    original_bytes: usize,
    truncated: bool,
    #[serde(skip_serializing_if = "skip")]
    original_base64: Option<String>,
}

/// The dead-letter envelope for a rejected record: the reason, the coordinates and the original bytes —
/// as `event.original` when they are UTF-8, else as `gatewatch.dlq.original_base64` — cut to `max_original`.
pub fn dead_letter_json(
    original: &[u8],
    error: &ParseError,
    source: SourceRef<'_>,
    received: DateTime<Utc>,
    max_original: usize,
) -> Vec<u8> {
    let truncated = original.len() > max_original;
    let kept = &original[..original.len().min(max_original)];
    let (text, base64) = match std::str::from_utf8(kept) {
        Ok(text) => (Some(text), None),
        // A cut inside a multi-byte character leaves valid UTF-8 up to the cut.
        Err(e) if truncated && e.error_len().is_none() => {
            (Some(std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or("")), None)
        }
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(kept))),
    };
    let message = error.to_string();
    let doc = DeadLetter {
        timestamp: rfc3339(received),
        ecs: Ecs { version: ECS_VERSION },
        event: DeadLetterEvent { kind: "pipeline_error", original: text },
        error: DeadLetterError { kind: error.code(), message: &message },
        gatewatch: Gatewatch {
            source,
            dlq: Some(DeadLetterDetail { original_bytes: original.len(), truncated, original_base64: base64 }),
        },
    };
    serde_json::to_vec(&doc).expect("the envelope has only string keys and serializable values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, Limits};
    use chrono::TimeZone;
    use serde_json::Value;

    const SOURCE: SourceRef<'static> = SourceRef { topic: "adc.raw", partition: 2, offset: 41 };

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn event_document_has_ecs_fields_and_source() {
        let line =
            "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 4783495 0 : Context a@b - SessionId: 1";
        let event = parse(line.as_bytes(), received(), Limits { max_line: 1 << 16 }).unwrap();
        let doc: Value = serde_json::from_slice(&event_json(&event, SOURCE)).unwrap();
        assert_eq!(doc["@timestamp"], "2024-09-09T20:46:07.000Z");
        assert_eq!(doc["observer"]["hostname"], "VPX01");
        assert_eq!(doc["observer"]["vendor"], "Citrix");
        assert_eq!(doc["event"]["dataset"], "citrix_adc.log");
        assert_eq!(doc["event"]["action"], "login");
        assert_eq!(doc["event"]["original"], line);
        assert_eq!(doc["message"], "Context a@b - SessionId: 1");
        assert_eq!(doc["log"]["syslog"]["severity"]["name"], "info");
        assert_eq!(doc["citrix_adc"]["log"]["feature"], "SSLVPN");
        assert_eq!(doc["gatewatch"]["source"], serde_json::json!({"topic": "adc.raw", "partition": 2, "offset": 41}));
    }

    #[test]
    fn dead_letter_keeps_binary_as_base64_and_flags_truncation() {
        let doc: Value = serde_json::from_slice(&dead_letter_json(
            b"\xff\x00ab",
            &ParseError::NotUtf8 { offset: 0 },
            SOURCE,
            received(),
            100,
        ))
        .unwrap();
        assert_eq!(doc["error"]["type"], "not_utf8");
        assert_eq!(doc["gatewatch"]["dlq"]["original_base64"], "/wBhYg==");
        assert_eq!(doc["gatewatch"]["source"]["offset"], 41);
        assert!(doc["event"].get("original").is_none());

        let long = vec![b'x'; 300];
        let err = ParseError::TooLong { len: 300, max: 200 };
        let doc: Value = serde_json::from_slice(&dead_letter_json(&long, &err, SOURCE, received(), 100)).unwrap();
        assert_eq!(doc["gatewatch"]["dlq"]["truncated"], true);
        assert_eq!(doc["gatewatch"]["dlq"]["original_bytes"], 300);
        assert_eq!(doc["event"]["original"].as_str().unwrap().len(), 100);
        assert!(doc["error"]["message"].as_str().unwrap().contains("parse.max_line"));
    }
}
