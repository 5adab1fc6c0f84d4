//! ECS: a parsed [`AdcEvent`] → the JSON document published on the enriched topic, and a rejected
//! record → the dead-letter envelope. Both name their input record under `gatewatch.source` so loss and
//! duplication can be audited by coordinates.
//!
//! Field names follow ECS 8.x and, beyond ECS, Elastic's `citrix_adc` integration (`citrix_adc.log.*`),
//! so existing SIEM searches work on gatewatch output.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use serde_json::{Map, Value as Json};

use crate::doc::{Doc, Val};
use crate::intern;
use crate::parse::{syslog, AdcEvent, Coverage, Dataset, ParseError, PayloadFormat, TimestampSource, Value};
use crate::spare;

pub const ECS_VERSION: &str = "8.11.0";

/// Where an output came from: an input record's Kafka coordinates.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Where an output came from: Kafka coordinates, or a file and line (`gatewatch parse`, replays).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Origin<'a> {
    Kafka(SourceRef<'a>),
    File { file: &'a str, line: usize },
}

impl<'a> From<SourceRef<'a>> for Origin<'a> {
    fn from(source: SourceRef<'a>) -> Self {
        Origin::Kafka(source)
    }
}

#[derive(Serialize)]
struct Gatewatch<'a, D: Serialize> {
    source: Origin<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlq: Option<D>,
}

fn skip<T>(v: &Option<T>) -> bool {
    v.is_none()
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

/// Sets `path` (dotted) in `root`, creating objects on the way. The first value set wins: body
/// parsers add the most specific value first.
pub fn insert(root: &mut Map<String, Json>, path: &str, value: Json) {
    let mut node = root;
    let mut rest = path;
    // Keys are copied only when they are new: most steps of a path (`citrix_adc`, `log`) exist already.
    while let Some((part, tail)) = rest.split_once('.') {
        if !node.contains_key(part) {
            node.insert(part.to_owned(), Json::Object(Map::new()));
        }
        match node.get_mut(part) {
            Some(Json::Object(map)) => node = map,
            _ => return,
        }
        rest = tail;
    }
    if !node.contains_key(rest) {
        node.insert(rest.to_owned(), value);
    }
}

/// Appends `key` in snake case to `out`: `Client_security_expression` → `client_security_expression`,
/// `ICAPServer` → `icap_server`, `Content-Type` → `content_type`.
fn push_snake_case(out: &mut String, key: &str) {
    let start = out.len();
    let mut chars = key.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        if c.is_ascii_uppercase() {
            if let Some(prev) = prev {
                let next_lower = chars.peek().is_some_and(char::is_ascii_lowercase);
                if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                    out.push('_');
                }
            }
        }
        match c {
            ' ' | '-' | '.' => out.push('_'),
            c => out.push(c.to_ascii_lowercase()),
        }
        prev = Some(c);
    }
    if out[start..].contains("__") {
        let collapsed = out[start..].replace("__", "_");
        out.truncate(start);
        out.push_str(&collapsed);
    }
}

/// The families of keys Elastic nests: `app_process_id` → `app.process_id`.
const NESTED_PREFIXES: [&str; 7] =
    ["channel_update_", "nsica_session_", "l7_latency_", "l7_threshold_breach_", "clientside_", "serverside_", "app_"];

/// Elastic's nesting ([`NESTED_PREFIXES`]) of the name `out` ends with from `start`.
fn nest(out: &mut String, start: usize) {
    if let Some(prefix) = NESTED_PREFIXES.iter().find(|p| out[start..].starts_with(*p)) {
        let at = start + prefix.len() - 1;
        out.replace_range(at..=at, ".");
    }
}

fn field_val<'r>(value: &Value<'r>) -> Val<'r> {
    match value {
        Value::Str(s) => Val::text(s),
        Value::Keyword(s) => Val::from(*s),
        Value::Owned(s) => Val::from(s.clone()),
        Value::Int(n) => Val::Int(*n),
        Value::Float(f) => Val::from(*f),
        Value::Time(t) => Val::Time(*t),
        Value::List(items) => {
            let mut list = spare::list();
            list.extend_from_slice(items);
            Val::List(list)
        }
        Value::Pairs(pairs) => {
            let mut copy = spare::pairs();
            copy.extend_from_slice(pairs);
            Val::Pairs(copy)
        }
    }
}

/// ECS `event.category` / `event.type` / `event.outcome`, as Elastic's `citrix_adc` integration sets
/// them (by the record's feature, and its event name for connection ends and commands), so dashboards
/// and rules written for it work on these events.
type Class = (&'static [&'static str], &'static [&'static str], Option<&'static str>);

fn classify(event: &AdcEvent<'_>) -> Option<Class> {
    match event.dataset {
        Dataset::HttpAccess if event.fields.get_str("http.request.method").is_some() => {
            return Some((&["web"], &["access"], None))
        }
        Dataset::HttpError => return Some((&["web"], &["error"], None)),
        Dataset::AdcLog => {}
        _ => return None,
    }
    let name = event.name()?;
    // Headerless relays (`<135> default LOGOUT ...`) drop the feature; the gateway's own events imply it.
    let feature = event.feature().or(match name {
        "LOGIN" | "LOGOUT" | "HTTPREQUEST" | "ICASTART" | "ICAEND_CONNSTAT" | "TCPCONNSTAT" | "UDPFLOWSTAT"
        | "TCPCONN_TIMEDOUT" => Some("SSLVPN"),
        _ => None,
    });
    Some(match (feature, name) {
        (_, "CONN_TERMINATE" | "CONN_DELINK" | "OTHERCONN_DELINK" | "NAT_CONN_DELINK" | "NAT_OTHERCONN_DELINK") => {
            (&["network"], &["end", "connection"], None)
        }
        (_, "CMD_EXECUTED" | "ZEBOS_CMD_EXECUTED") => (&["process"], &["start"], None),
        (_, "LOGIN_FAILED") => (&["authentication"], &["info"], Some("failure")),
        // A gateway login or logout is a successful authentication event (Elastic leaves the outcome
        // unset; brute-force rules pair it with the failures).
        (Some("SSLVPN" | "AAA"), "LOGIN" | "LOGOUT") => (&["authentication"], &["info"], Some("success")),
        // Gateway sessions and their logins; AAATM (traffic management) records are network ones.
        (Some("SSLVPN" | "AAA"), _) => (&["authentication"], &["info"], None),
        _ => (&["network"], &["info"], None),
    })
}

/// The enriched-topic document for one event, as JSON.
pub fn event_json<'s>(event: &AdcEvent<'_>, source: impl Into<Origin<'s>>) -> Vec<u8> {
    event_doc(event, source.into()).to_vec()
}

/// The document of one event, for the stages that add to it (enrichment) and read it (rules).
pub fn event_doc<'r>(event: &AdcEvent<'r>, source: Origin<'r>) -> Doc<'r> {
    let mut doc = Doc::new();
    doc.insert("@timestamp", Val::Time(event.timestamp));
    doc.insert("ecs.version", Val::from(ECS_VERSION));
    let module = match event.dataset {
        Dataset::Honeypot => "citrix_honeypot",
        _ => "citrix_adc",
    };
    doc.insert("event.kind", Val::from("event"));
    doc.insert("event.module", Val::from(module));
    doc.insert("event.dataset", Val::from(event.dataset.as_str()));
    // The action the appliance took (`act=blocked`, an ACL's `ALLOW`), else the event name.
    if let Some(Value::Str(action)) = event.fields.get("citrix_adc.log.action") {
        doc.insert("event.action", Val::Str(intern::lower(action)));
    } else if let Some(action) = event.action {
        doc.insert("event.action", Val::Str(intern::lower_snake(action)));
    }
    doc.insert("event.original", Val::text(event.original));
    if let Some((category, kinds, outcome)) = classify(event) {
        doc.insert("event.category", Val::Keywords(category));
        doc.insert("event.type", Val::Keywords(kinds));
        if let Some(outcome) = outcome {
            doc.insert("event.outcome", Val::from(outcome));
        }
    }
    if let Some(host) = event.appliance() {
        doc.insert("observer.hostname", Val::text(host));
    }
    doc.insert("observer.vendor", Val::from("Citrix"));
    doc.insert("observer.product", Val::from("Netscaler"));
    doc.insert("observer.type", Val::from("firewall"));

    envelope_fields(&mut doc, &event.envelope);
    // `message`: the record's text, a CEF record's `msg` or an ALG record's own text (set below).
    let mut message = Val::text(event.message);
    if let Some(h) = &event.header {
        if let Some(msg) = header_fields(&mut doc, event, h) {
            message = msg;
        }
    }
    body_fields(&mut doc, event);
    // The record's text and, behind an RFC 5424 relay, its time, whatever the record is.
    if event.dataset == Dataset::AdcLog || event.envelope.format == syslog::EnvelopeFormat::Rfc5424 {
        doc.insert("citrix_adc.log.message", Val::text(event.message.trim_start()));
        if let (syslog::EnvelopeFormat::Rfc5424, Some(at)) = (event.envelope.format, event.envelope.timestamp) {
            doc.insert("citrix_adc.log.timestamp", Val::Time(at));
        }
    }
    // Elastic's lower-case copies of the protocol names, and an ALG record's own text as `message`.
    for (ours, ecs) in
        [("citrix_adc.log.protocol", "network.protocol"), ("citrix_adc.log.transport", "network.transport")]
    {
        if let Some(name) = doc.get_str(ours) {
            let lower = intern::lower(name);
            doc.insert(ecs, Val::Str(lower));
        }
    }
    if let Some(text) = doc.get_string("citrix_adc.log.infomsg") {
        message = text;
    }
    doc.set("message", message);
    let timestamp_source = match event.timestamp_source {
        TimestampSource::Header => "header",
        TimestampSource::Envelope => "envelope",
        TimestampSource::Record => "record",
    };
    doc.insert("gatewatch.timestamp_source", Val::from(timestamp_source));
    if event.local_time {
        doc.insert("gatewatch.local_time", Val::Bool(true));
    }
    if event.coverage == Coverage::Unknown {
        doc.insert("gatewatch.coverage", Val::from("unknown"));
    }
    match source {
        Origin::Kafka(SourceRef { topic, partition, offset }) => {
            doc.insert("gatewatch.source.topic", Val::text(topic));
            doc.insert("gatewatch.source.partition", Val::Int(partition.into()));
            doc.insert("gatewatch.source.offset", Val::Int(offset));
        }
        Origin::File { file, line } => {
            doc.insert("gatewatch.source.file", Val::text(file));
            doc.insert("gatewatch.source.line", Val::UInt(line as u64));
        }
    }
    doc
}

/// The syslog envelope: `log.syslog.*`.
fn envelope_fields<'r>(doc: &mut Doc<'r>, env: &syslog::Envelope<'r>) {
    if let Some(p) = env.priority {
        doc.insert("log.syslog.priority", Val::Int(p.into()));
    }
    if let Some(code) = env.facility {
        doc.insert("log.syslog.facility.code", Val::Int(code.into()));
        if let Some(name) = syslog::facility_name(code) {
            doc.insert("log.syslog.facility.name", Val::from(name));
        }
    }
    if let Some(code) = env.severity {
        doc.insert("log.syslog.severity.code", Val::Int(code.into()));
        if let Some(name) = syslog::severity_name(code) {
            doc.insert("log.syslog.severity.name", Val::from(name));
        }
    }
    for (path, value) in [
        ("log.syslog.hostname", env.hostname),
        ("log.syslog.appname", env.appname),
        ("log.syslog.procid", env.procid),
        ("log.syslog.msgid", env.msgid),
    ] {
        if let Some(v) = value {
            doc.insert(path, Val::text(v));
        }
    }
    if let Some(format) = env.format.as_str() {
        doc.insert("log.syslog.format", Val::from(format));
    }
}

/// The NetScaler header (`event.sequence`, `citrix_adc.log.feature`, `.name`, ...) and the body as
/// `citrix_adc.log.message`. Returns a CEF record's `msg`, its `message`.
fn header_fields<'r>(
    doc: &mut Doc<'r>,
    event: &AdcEvent<'r>,
    h: &crate::parse::netscaler::Payload<'r>,
) -> Option<Val<'r>> {
    if let Some(seq) = h.sequence {
        doc.insert("event.sequence", Val::UInt(seq));
        doc.insert("citrix_adc.log.sequence", Val::UInt(seq));
    }
    if let Some(feature) = h.feature {
        doc.insert("citrix_adc.log.feature", Val::text(feature));
    }
    doc.insert("citrix_adc.log.name", Val::text(h.name));
    for (path, value) in [
        ("citrix_adc.log.ppe", h.ppe),
        ("citrix_adc.log.partition", h.partition),
        ("citrix_adc.log.cef_version", h.cef_version),
        ("citrix_adc.log.cef_severity", h.cef_severity),
    ] {
        if let Some(v) = value {
            doc.insert(path, Val::text(v));
        }
    }
    let format = match h.format {
        PayloadFormat::Native => "native",
        PayloadFormat::Cef => "cef",
    };
    doc.insert("citrix_adc.log.format", Val::from(format));
    match h.format {
        // Elastic keeps the body as `citrix_adc.log.message` too.
        PayloadFormat::Native => {
            // The body as the record has it, trailing blanks included (the header parser trims).
            let start = (event.message.as_ptr() as usize).wrapping_sub(event.original.as_ptr() as usize);
            let body = match event.original.get(start..) {
                Some(rest) if rest.starts_with(event.message) => rest,
                _ => event.message,
            };
            let body = body.trim_start();
            let body = match body.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
                Some(inner) if !inner.contains('"') => inner,
                _ => body,
            };
            doc.insert("citrix_adc.log.message", Val::text(body));
            None
        }
        // A CEF record's text is its `msg`.
        PayloadFormat::Cef => {
            // Elastic keeps the CEF record itself as citrix_adc.log.message, its msg as `message`.
            if let Some(at) = event.original.find("CEF:") {
                doc.insert("citrix_adc.log.message", Val::text(&event.original[at..]));
            }
            match event.fields.get("citrix_adc.log.msg") {
                Some(Value::Str(msg)) => Some(Val::text(msg)),
                Some(Value::Owned(msg)) => Some(Val::from(msg.clone())),
                _ => None,
            }
        }
    }
}

/// The body's fields; keys with no mapping of their own under `citrix_adc.log` by their snake_case
/// name (what Elastic's integration calls them), or under `citrix_adc.log.fields` when that name is
/// taken.
fn body_fields<'r>(doc: &mut Doc<'r>, event: &AdcEvent<'r>) {
    let mut unnamed = None;
    for field in &event.fields.0 {
        match (field.name, &field.value) {
            ("citrix_adc.log.fields", Value::Pairs(pairs)) => unnamed = Some(pairs),
            _ => {
                doc.insert(field.name, field_val(&field.value));
            }
        }
    }
    let mut taken = Map::new();
    for (key, value) in unnamed.into_iter().flatten() {
        let path = intern::build(|path| {
            path.push_str("citrix_adc.log.");
            let name = path.len();
            push_snake_case(path, key);
            nest(path, name);
        });
        if !doc.insert(path, Val::text(value)) {
            taken.entry((*key).to_owned()).or_insert_with(|| Json::from(*value));
        }
    }
    if !taken.is_empty() {
        doc.set("citrix_adc.log.fields", Val::Json(Json::Object(taken)));
    }
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
pub fn dead_letter_json<'s>(
    original: &[u8],
    error: &ParseError,
    source: impl Into<Origin<'s>>,
    received: DateTime<Utc>,
    max_original: usize,
) -> Vec<u8> {
    dead_letter(original, error.code(), &error.to_string(), source, received, max_original)
}

/// [`dead_letter_json`] for a reason that is not a parse error (`code` is a bounded identifier).
pub fn dead_letter<'s>(
    original: &[u8],
    code: &'static str,
    message: &str,
    source: impl Into<Origin<'s>>,
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
    let doc = DeadLetter {
        timestamp: crate::timefmt::millis(received),
        ecs: Ecs { version: ECS_VERSION },
        event: DeadLetterEvent { kind: "pipeline_error", original: text },
        error: DeadLetterError { kind: code, message },
        gatewatch: Gatewatch {
            source: source.into(),
            dlq: Some(DeadLetterDetail { original_bytes: original.len(), truncated, original_base64: base64 }),
        },
    };
    serde_json::to_vec(&doc).expect("the envelope has only string keys and serializable values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParseContext};
    use chrono::TimeZone;
    use serde_json::Value;

    const SOURCE: SourceRef<'static> = SourceRef { topic: "adc.raw", partition: 2, offset: 41 };

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap()
    }

    /// The key naming as first written (a `Vec<char>` and three strings per key): the in-place version
    /// must name every key the same.
    fn reference_name(key: &str) -> String {
        let chars: Vec<char> = key.chars().collect();
        let mut out = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                    out.push('_');
                }
            }
            match c {
                ' ' | '-' | '.' => out.push('_'),
                c => out.push(c.to_ascii_lowercase()),
            }
        }
        let name = out.replace("__", "_");
        for prefix in NESTED_PREFIXES {
            if let Some(rest) = name.strip_prefix(prefix) {
                return format!("{}.{rest}", &prefix[..prefix.len() - 1]);
            }
        }
        name
    }

    #[test]
    fn body_keys_are_named_in_place_as_before() {
        for key in [
            "Client_security_expression",
            "ICAPServer",
            "Content-Type",
            "X-Forwarded-For",
            "app_process_id",
            "App Process ID",
            "nsica_session_reconnect_count",
            "l7_latency_thresholdFactor",
            "HTTPSServer2Name",
            "a__b",
            "A___B",
            "a - b",
            "ÄBcDé",
            "x.y.Z",
            "_",
            "",
        ] {
            let mut out = String::from("citrix_adc.log.");
            push_snake_case(&mut out, key);
            nest(&mut out, "citrix_adc.log.".len());
            assert_eq!(out, format!("citrix_adc.log.{}", reference_name(key)), "{key:?}");
        }
    }

    #[test]
    fn insert_keeps_the_first_value_and_never_replaces_a_scalar_with_an_object() {
        let mut root = Map::new();
        insert(&mut root, "citrix_adc.log.name", Json::from("LOGIN"));
        insert(&mut root, "citrix_adc.log.name", Json::from("LOGOUT"));
        insert(&mut root, "citrix_adc.log.feature", Json::from("SSLVPN"));
        insert(&mut root, "citrix_adc.log.name.deeper", Json::from(1));
        insert(&mut root, "message", Json::from("m"));
        assert_eq!(
            Json::Object(root),
            serde_json::json!({"citrix_adc": {"log": {"name": "LOGIN", "feature": "SSLVPN"}}, "message": "m"})
        );
    }

    #[test]
    fn event_document_has_ecs_fields_and_source() {
        let line =
            "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 4783495 0 : Context a@b - SessionId: 1";
        let event = parse(line.as_bytes(), received(), &ParseContext::default(), None).unwrap();
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
        assert_eq!(doc["citrix_adc"]["log"]["session_id"], "1");
        assert_eq!(doc["event"]["category"], serde_json::json!(["authentication"]));
        assert_eq!(doc["event"]["outcome"], "success");
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
