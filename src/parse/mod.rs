//! Parse: raw record bytes → a borrowed [`AdcEvent`], or a [`ParseError`] that says why not.
//!
//! A record is one log record as an ADC (or a relay in front of it) sent it: an optional syslog
//! envelope ([`syslog`]: RFC 3164, RFC 5424, RFC 3339-stamped relays, or none) around one of
//! - a NetScaler packet-engine payload ([`netscaler`]: native header or CEF; body fields by [`body`]
//!   and [`cef`]) — dataset `citrix_adc.log`;
//! - a line of the appliance's own files ([`appliance`]): httpaccess, httperror, bash/sh/notice,
//!   cron and other FreeBSD syslog — datasets `citrix_adc.httpaccess` … `citrix_adc.syslog`;
//! - a citrix-honeypot record — dataset `citrix_honeypot.log`.
//!
//! Fields borrow from the record; a value is copied only when it had to be rebuilt (unescaped,
//! decoded). Per-appliance settings ([`ParseContext`]) decide ambiguous dates and local time zones.

pub mod appliance;
pub mod body;
pub mod cef;
pub mod fields;
pub mod netscaler;
pub mod reader;
pub mod syslog;
pub mod time;

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};

pub use body::Coverage;
pub use fields::{Field, Fields, Value};
pub use time::DateOrder;

/// Why a record is not an event. Each variant has a fixed [`ParseError::code`] for metrics and the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty record")]
    Empty,
    #[error("record of {len} bytes exceeds parse.max_line ({max} bytes)")]
    TooLong { len: usize, max: usize },
    #[error("record is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("no NetScaler header, CEF payload or appliance log format found")]
    Unrecognised,
}

impl ParseError {
    /// A short, bounded identifier: safe as a metric label, stable for DLQ consumers.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLong { .. } => "too_long",
            ParseError::NotUtf8 { .. } => "not_utf8",
            ParseError::Unrecognised => "unrecognised",
        }
    }

    pub const CODES: [&'static str; 4] = ["empty", "too_long", "not_utf8", "unrecognised"];
}

/// What kind of log a record is; `event.dataset` in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    /// The packet engine's audit log (ns.log): native and CEF.
    AdcLog,
    HttpAccess,
    HttpError,
    /// bash.log, sh.log, notice.log.
    Shell,
    Cron,
    /// Other FreeBSD syslog lines of the appliance.
    Syslog,
    /// citrix-honeypot hits.log and logins.log.
    Honeypot,
}

impl Dataset {
    pub const ALL: [Dataset; 7] = [
        Dataset::AdcLog,
        Dataset::HttpAccess,
        Dataset::HttpError,
        Dataset::Shell,
        Dataset::Cron,
        Dataset::Syslog,
        Dataset::Honeypot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::AdcLog => "citrix_adc.log",
            Dataset::HttpAccess => "citrix_adc.httpaccess",
            Dataset::HttpError => "citrix_adc.httperror",
            Dataset::Shell => "citrix_adc.shell",
            Dataset::Cron => "citrix_adc.cron",
            Dataset::Syslog => "citrix_adc.syslog",
            Dataset::Honeypot => "citrix_honeypot.log",
        }
    }

    /// The short names used in configuration and on the command line (`httperror`, `shell`, ...).
    pub fn from_name(name: &str) -> Option<Dataset> {
        Some(match name {
            "log" | "ns" | "citrix_adc.log" => Dataset::AdcLog,
            "httpaccess" | "citrix_adc.httpaccess" => Dataset::HttpAccess,
            "httperror" | "citrix_adc.httperror" => Dataset::HttpError,
            "shell" | "bash" | "sh" | "notice" | "citrix_adc.shell" => Dataset::Shell,
            "cron" | "citrix_adc.cron" => Dataset::Cron,
            "syslog" | "citrix_adc.syslog" => Dataset::Syslog,
            "honeypot" | "citrix_honeypot.log" => Dataset::Honeypot,
            _ => return None,
        })
    }

    /// Guesses the dataset of a file from its path (`/var/log/httperror.log.2` → httperror).
    pub fn from_path(path: &str) -> Option<Dataset> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let name = name.split('.').next().unwrap_or(name);
        match name {
            "httpaccess" | "httpaccess-vpn" => Some(Dataset::HttpAccess),
            "httperror" | "httperror-vpn" => Some(Dataset::HttpError),
            "bash" | "sh" | "notice" => Some(Dataset::Shell),
            "cron" => Some(Dataset::Cron),
            "hits" | "logins" => Some(Dataset::Honeypot),
            "ns" | "newnslog" => Some(Dataset::AdcLog),
            _ => None,
        }
    }
}

/// Written as its ECS name; read from any name [`Dataset::from_name`] knows (`parse.topic_datasets`).
impl serde::Serialize for Dataset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Dataset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Dataset, D::Error> {
        let name = String::deserialize(deserializer)?;
        Dataset::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{name:?} is not a dataset (httpaccess, httperror, shell, cron, syslog, log, honeypot)"
            ))
        })
    }
}

/// The payload shape a `citrix_adc.log` record carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Native,
    Cef,
}

/// Which clock `AdcEvent::timestamp` came from, most to least precise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    /// The payload carried a full date and time (NetScaler header, access-log bracket, ...).
    Header,
    /// The syslog envelope (relay) timestamp.
    Envelope,
    /// Neither carried a date: the Kafka record timestamp (or the time of processing).
    Record,
}

/// Per-appliance reading rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    pub date_order: DateOrder,
    /// The zone of times written without `GMT` (and of the appliance's own syslog files).
    pub timezone: chrono_tz::Tz,
}

impl Default for Device {
    fn default() -> Self {
        Device { date_order: DateOrder::Mdy, timezone: chrono_tz::UTC }
    }
}

/// Everything parsing needs besides the record, built once from the settings.
#[derive(Debug, Clone)]
pub struct ParseContext {
    pub max_line: usize,
    pub default_device: Device,
    /// Keyed by lower-cased host name.
    pub devices: HashMap<String, Device>,
}

impl Default for ParseContext {
    fn default() -> Self {
        ParseContext { max_line: 64 * 1024, default_device: Device::default(), devices: HashMap::new() }
    }
}

impl ParseContext {
    pub fn device(&self, host: Option<&str>) -> Device {
        host.and_then(|h| {
            if h.bytes().any(|b| b.is_ascii_uppercase()) {
                fields::with_ascii_lower(h, |lower| self.devices.get(lower))
            } else {
                self.devices.get(h)
            }
        })
        .copied()
        .unwrap_or(self.default_device)
    }
}

/// One parsed record; every `&str` borrows from it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdcEvent<'a> {
    pub dataset: Dataset,
    pub timestamp: DateTime<Utc>,
    pub timestamp_source: TimestampSource,
    /// The time was written in appliance local time (no `GMT`) and converted with its time zone.
    pub local_time: bool,
    pub original: &'a str,
    pub envelope: syslog::Envelope<'a>,
    /// The NetScaler (or CEF) header, for `citrix_adc.log` records.
    pub header: Option<netscaler::Payload<'a>>,
    /// The appliance host named by the payload (for non-NetScaler records, the syslog host).
    pub host: Option<&'a str>,
    /// `event.action`.
    pub action: Option<&'a str>,
    /// The human-readable text: the NetScaler body, the shell command line, the error line.
    pub message: &'a str,
    pub fields: Fields<'a>,
    pub coverage: Coverage,
}

impl<'a> AdcEvent<'a> {
    /// The appliance this event came from: the payload's host name, else the relay-reported host.
    pub fn appliance(&self) -> Option<&'a str> {
        self.host.or(self.envelope.hostname)
    }

    /// The NetScaler event name (`LOGIN`, `CMD_EXECUTED`, ...), when this is a packet-engine record.
    pub fn name(&self) -> Option<&'a str> {
        self.header.as_ref().map(|h| h.name)
    }

    pub fn feature(&self) -> Option<&'a str> {
        self.header.as_ref().and_then(|h| h.feature)
    }
}

/// Parses one record. `received` dates records whose envelope and payload carry no (full) date and
/// completes year-less BSD timestamps; `hint` names the dataset when the transport knows it (a topic
/// or file dedicated to one appliance log), which lets free-text lines such as httperror's stderr
/// captures parse.
///
/// ```
/// use chrono::Utc;
/// use gatewatch::parse::{parse, ParseContext};
///
/// let line = b"<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN LOGIN 42 0 : User alice";
/// let event = parse(line, Utc::now(), &ParseContext::default(), None).unwrap();
/// assert_eq!(event.appliance(), Some("vpx01"));
/// assert_eq!((event.feature(), event.name()), (Some("SSLVPN"), Some("LOGIN")));
/// assert_eq!(event.fields.get_str("user.name"), Some("alice"));
/// assert_eq!(event.timestamp.to_rfc3339(), "2020-01-10T08:57:43+00:00");
/// assert_eq!(parse(b"", Utc::now(), &ParseContext::default(), None).unwrap_err().code(), "empty");
/// ```
pub fn parse<'a>(
    bytes: &'a [u8],
    received: DateTime<Utc>,
    ctx: &ParseContext,
    hint: Option<Dataset>,
) -> Result<AdcEvent<'a>, ParseError> {
    parse_to(bytes, received, ctx, hint, Depth::Full)
}

/// What [`parse`] gives but a NetScaler record's body fields: the record's time, appliance and dataset
/// (or the same error), for putting records in order before they are parsed in full — the body is most
/// of the work and decides none of them.
pub fn locate<'a>(
    bytes: &'a [u8],
    received: DateTime<Utc>,
    ctx: &ParseContext,
    hint: Option<Dataset>,
) -> Result<AdcEvent<'a>, ParseError> {
    parse_to(bytes, received, ctx, hint, Depth::Locate)
}

/// How far a record is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Full,
    /// Everything but a NetScaler record's body fields.
    Locate,
}

fn parse_to<'a>(
    bytes: &'a [u8],
    received: DateTime<Utc>,
    ctx: &ParseContext,
    hint: Option<Dataset>,
    depth: Depth,
) -> Result<AdcEvent<'a>, ParseError> {
    if bytes.len() > ctx.max_line {
        return Err(ParseError::TooLong { len: bytes.len(), max: ctx.max_line });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 { offset: e.valid_up_to() })?;
    let (original, line, hint) = unwrap_line(text, hint)?;
    let (envelope, payload) = syslog::split(line, received);
    let device = ctx.device(envelope.hostname);
    let mut event = AdcEvent {
        dataset: Dataset::AdcLog,
        timestamp: received,
        timestamp_source: TimestampSource::Record,
        local_time: false,
        original,
        header: None,
        host: None,
        action: None,
        message: payload,
        fields: Fields::new(),
        coverage: Coverage::Known,
        envelope,
    };
    if let Some(t) = event.envelope.timestamp {
        // BSD timestamps carry no zone: the appliance's own files are written in its local time.
        event.timestamp = if event.envelope.format == syslog::EnvelopeFormat::Rfc3164 {
            appliance::local_to_utc(t.naive_utc(), device.timezone)
        } else {
            t
        };
        event.timestamp_source = TimestampSource::Envelope;
    }
    read_payload(event, payload, hint, device, ctx, depth)
}

/// The record's line without line ends, CSV quotes or a `grep` file-name prefix: (the original, the
/// line to parse, the dataset hint, from that file name if the caller gave none).
fn unwrap_line(text: &str, hint: Option<Dataset>) -> Result<(&str, &str, Option<Dataset>), ParseError> {
    let mut line = text.trim_end_matches(['\r', '\n', '\0']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    // CSV exports quote whole lines: `"2023/07/04:09:03:41 ... (x = ""y"")"`.
    if line.len() > 2 && line.starts_with('"') && line.ends_with('"') && !line[1..].starts_with(' ') {
        line = &line[1..line.len() - 1];
    }
    let original = line;
    // `grep` output keeps the file name: `/var/log/httpaccess.log.4:127.0.0.2 - - [...]`.
    let mut hint = hint;
    if line.starts_with('/') {
        if let Some((path, rest)) = line.split_once(':') {
            if !path.contains(' ') {
                hint = hint.or(Dataset::from_path(path));
                line = rest;
            }
        }
    }
    Ok((original, line, hint))
}

/// The payload after the envelope: a NetScaler record, one of the appliance's own files, a cut CEF
/// record, a body without its header, or an httperror line the hint vouches for.
fn read_payload<'a>(
    mut event: AdcEvent<'a>,
    payload: &'a str,
    hint: Option<Dataset>,
    device: Device,
    ctx: &ParseContext,
    depth: Depth,
) -> Result<AdcEvent<'a>, ParseError> {
    if let Some(mut header) = netscaler::parse(payload) {
        // `<134>1 ... HOST APPFW 0-PPE-0 - - default APPFW_POLICY_HIT ...`: an RFC 5424 relay carries the
        // feature as the APP-NAME and the PPE as the PROCID.
        if header.feature.is_none() && event.envelope.format == syslog::EnvelopeFormat::Rfc5424 {
            header.feature = event.envelope.appname.filter(|a| netscaler::is_feature(a));
        }
        adc_log(&mut event, header, ctx, depth);
        return Ok(event);
    }
    if let Some(dataset) = appliance_file(&mut event, payload, hint, device) {
        event.dataset = dataset;
        return Ok(event);
    }
    if let Some(header) = netscaler::parse_cut_cef(payload) {
        adc_log(&mut event, header, ctx, depth);
        return Ok(event);
    }
    if let Some(name) = body_only(payload) {
        // A NetScaler body whose header was cut off by the relay or the exporter.
        let header = netscaler::Payload::new(PayloadFormat::Native, name, payload);
        adc_log(&mut event, header, ctx, depth);
        event.coverage = Coverage::Unknown;
        return Ok(event);
    }
    if hint == Some(Dataset::HttpError) {
        event.dataset = Dataset::HttpError;
        event.action = Some("error");
        appliance::httperror(payload, &mut event.fields);
        return Ok(event);
    }
    Err(ParseError::Unrecognised)
}

/// Fills a `citrix_adc.log` event from its header: clock, host, body fields.
fn adc_log<'a>(event: &mut AdcEvent<'a>, header: netscaler::Payload<'a>, ctx: &ParseContext, depth: Depth) {
    event.dataset = Dataset::AdcLog;
    event.host = header.hostname.or(match header.format {
        PayloadFormat::Cef => event.envelope.hostname,
        PayloadFormat::Native => None,
    });
    let device = ctx.device(event.appliance());
    if let Some(clock) = header.clock {
        let t = time::time_of_day(clock.time);
        let date = match clock.date {
            Some(d) => time::netscaler_date(d, device.date_order).map(|d| (d, TimestampSource::Header)),
            None => Some((event.timestamp.date_naive(), event.timestamp_source)),
        };
        if let (Some(t), Some((date, source))) = (t, date) {
            let naive = NaiveDateTime::new(date, t);
            event.timestamp = if header.gmt {
                Utc.from_utc_datetime(&naive)
            } else {
                appliance::local_to_utc(naive, device.timezone)
            };
            event.local_time = !header.gmt;
            event.timestamp_source = source;
        }
    }
    event.message = header.message;
    event.action = Some(header.name);
    event.coverage = match header.format {
        PayloadFormat::Native if depth == Depth::Locate => Coverage::Known,
        PayloadFormat::Native => body::parse(header.feature, header.name, header.message, device, &mut event.fields),
        PayloadFormat::Cef => {
            if depth == Depth::Full {
                cef::extension(header.message, &mut event.fields);
            }
            // A BSD relay header has no year; the record's `cs5` has it.
            if let (syslog::EnvelopeFormat::Rfc3164, Some(at), Some(year)) =
                (event.envelope.format, event.envelope.timestamp, cef::year(header.message))
            {
                if let Some(naive) = at.naive_utc().with_year(year) {
                    event.timestamp = appliance::local_to_utc(naive, device.timezone);
                }
            }
            Coverage::Known
        }
    };
    // Elastic's integration files the relay that forwarded the record as its client when the record
    // names none; its dashboards count records per `client.ip`.
    if let Some(relay) = event.envelope.hostname.filter(|h| fields::is_ip(h)) {
        if !event.fields.has("client.ip") {
            event.fields.str("client.ip", relay);
        }
    }
    event.header = Some(header);
}

/// A shell or cron record, by the program its syslog line names.
fn shell_or_cron<'a>(event: &mut AdcEvent<'a>, program: Option<&'a str>, payload: &'a str) -> Option<Dataset> {
    match program {
        Some("bash" | "sh" | "-sh" | "-bash" | "csh" | "tcsh") => {
            event.host = event.envelope.hostname;
            event.action = appliance::shell(payload, &mut event.fields).or(Some("shell"));
            event.fields.str("process.name", program.unwrap_or_default());
            if let Some(pid) = event.envelope.procid {
                event.fields.int("process.pid", pid);
            }
            Some(Dataset::Shell)
        }
        Some("cron" | "crond") => {
            event.host = event.envelope.hostname;
            event.action = appliance::cron(payload, &mut event.fields);
            if let Some(pid) = event.envelope.procid {
                event.fields.int("process.pid", pid);
            }
            Some(Dataset::Cron)
        }
        _ => None,
    }
}

/// The appliance's own log files, recognised by shape, by the syslog program name, or by `hint`.
fn appliance_file<'a>(
    event: &mut AdcEvent<'a>,
    payload: &'a str,
    hint: Option<Dataset>,
    device: Device,
) -> Option<Dataset> {
    let program = event.envelope.appname.map(|a| a.rsplit('/').next().unwrap_or(a));
    if let Some(dataset) = shell_or_cron(event, program, payload) {
        return Some(dataset);
    }
    let mut fields = Fields::default();
    if let Some(at) = appliance::httpaccess(payload, &mut fields) {
        event.fields = fields;
        if let Some(at) = at {
            event.timestamp = at;
            event.timestamp_source = TimestampSource::Header;
        }
        event.host = event.envelope.hostname;
        event.action = Some("http-request");
        return Some(Dataset::HttpAccess);
    }
    if let Some((at, rest)) = appliance::honeypot_start(payload) {
        event.timestamp = at;
        event.timestamp_source = TimestampSource::Header;
        event.action = Some(appliance::honeypot(rest, &mut event.fields));
        return Some(Dataset::Honeypot);
    }
    if payload.starts_with('[') && hint.is_none_or(|h| h == Dataset::HttpError) {
        let mut fields = Fields::default();
        if let Some(local) = appliance::httperror(payload, &mut fields) {
            event.fields = fields;
            event.timestamp = appliance::local_to_utc(local, device.timezone);
            event.timestamp_source = TimestampSource::Header;
            event.local_time = true;
            event.action = Some("error");
            return Some(Dataset::HttpError);
        }
    }
    if let (Some(program), Some(_)) = (program, event.envelope.timestamp) {
        // Any other program on the appliance's FreeBSD syslog (newsyslog, sshd, ...).
        event.host = event.envelope.hostname;
        event.fields.str("process.name", program);
        if let Some(pid) = event.envelope.procid {
            event.fields.int("process.pid", pid);
        }
        event.action = Some("syslog");
        event.coverage = Coverage::Unknown;
        return Some(Dataset::Syslog);
    }
    if appliance::is_shell(payload) {
        event.host = event.envelope.hostname;
        event.action = appliance::shell(payload, &mut event.fields);
        return Some(Dataset::Shell);
    }
    match hint {
        Some(Dataset::Shell) => {
            event.action = appliance::shell(payload, &mut event.fields);
            event.action.map(|_| Dataset::Shell)
        }
        Some(Dataset::Cron) => {
            event.action = appliance::cron(payload, &mut event.fields);
            event.action.map(|_| Dataset::Cron)
        }
        _ => None,
    }
}

/// Event names inferred for NetScaler bodies that arrive without their header (see [`body_only`]);
/// the only header names that do not come from the record itself.
pub const INFERRED_NAMES: [&str; 4] = ["SESSION", "CMD_EXECUTED", "SSL_HANDSHAKE", "CONNECTION"];

/// Recognises a NetScaler body without its header by its leading key; returns the event name it
/// implies (one of [`INFERRED_NAMES`]).
fn body_only(payload: &str) -> Option<&'static str> {
    let first = payload.split([' ', ':']).next()?;
    let name = match first {
        "Context" if payload.contains(" - SessionId: ") => "SESSION",
        "User" if payload.contains(" - Remote_ip ") && payload.contains(" - Command ") => "CMD_EXECUTED",
        "SPCBId" if payload.contains(" - ClientIP ") => "SSL_HANDSHAKE",
        "Source" if payload.contains(" - Destination ") => "CONNECTION",
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ctx() -> ParseContext {
        ParseContext::default()
    }

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn locating_a_record_finds_what_parsing_it_finds_without_its_body_fields() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
        let mut located = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let hint = Dataset::from_path(&path.to_string_lossy());
            let text = std::fs::read_to_string(&path).unwrap();
            for record in reader::records(&text) {
                let full = parse(record.text.as_bytes(), received(), &ctx(), hint);
                let located_event = locate(record.text.as_bytes(), received(), &ctx(), hint);
                match (full, located_event) {
                    (Ok(full), Ok(found)) => {
                        fn key<'e>(e: &AdcEvent<'e>) -> impl PartialEq + std::fmt::Debug + 'e {
                            (e.timestamp, e.timestamp_source, e.local_time, e.appliance(), e.dataset, e.name())
                        }
                        assert_eq!(key(&full), key(&found), "{}", record.text);
                        located += 1;
                    }
                    (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{}", record.text),
                    (a, b) => panic!("{}: parse {:?}, locate {:?}", record.text, a.is_ok(), b.is_ok()),
                }
            }
        }
        assert!(located > 400, "{located} records located");
        let line = b"<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN LOGIN 42 0 : User alice";
        assert!(locate(line, received(), &ctx(), None).unwrap().fields.0.is_empty(), "the body is not parsed");
    }

    fn ok(line: &str) -> AdcEvent<'_> {
        parse(line.as_bytes(), received(), &ctx(), None).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn rejects_empty_binary_and_oversized_records_with_reasons() {
        assert_eq!(parse(b"", received(), &ctx(), None), Err(ParseError::Empty));
        assert_eq!(parse(b"  \r\n", received(), &ctx(), None), Err(ParseError::Empty));
        assert_eq!(parse(b"ab\xff\xfe", received(), &ctx(), None), Err(ParseError::NotUtf8 { offset: 2 }));
        let long = vec![b'a'; 70_000];
        assert_eq!(parse(&long, received(), &ctx(), None), Err(ParseError::TooLong { len: 70_000, max: 65536 }));
        assert_eq!(parse(b"hello world", received(), &ctx(), None), Err(ParseError::Unrecognised));
    }

    #[test]
    fn native_line_with_pri_and_gmt() {
        let e = ok("<134> 09/09/2024:20:46:07 GMT PRODSY3VPX01 0-PPE-1 : default SSLVPN UDPFLOWSTAT 4783495 0 : Context a@b - SessionId: 1234");
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 9, 9, 20, 46, 7).unwrap());
        assert_eq!(e.timestamp_source, TimestampSource::Header);
        assert!(!e.local_time);
        assert_eq!(e.envelope.priority, Some(134));
        assert_eq!(e.header.as_ref().unwrap().hostname, Some("PRODSY3VPX01"));
        assert_eq!(e.header.as_ref().unwrap().ppe, Some("0-PPE-1"));
        assert_eq!(e.header.as_ref().unwrap().partition, Some("default"));
        assert_eq!(e.header.as_ref().unwrap().feature, Some("SSLVPN"));
        assert_eq!(e.header.as_ref().unwrap().name, "UDPFLOWSTAT");
        assert_eq!(e.header.as_ref().unwrap().sequence, Some(4783495));
        assert_eq!(e.header.as_ref().unwrap().message, "Context a@b - SessionId: 1234");
    }

    #[test]
    fn bsd_relay_with_facility_token_and_event_name_with_space() {
        let e = ok("Jun 22 19:14:37 <local0.info> 81.2.69.144 06/22/2015:19:14:37 GMT ns 0-PPE-1 : default APPFW APPFW_cross-site scripting 60 0 : 175.16.199.1 616-PPE1 y/3u");
        assert_eq!(e.envelope.hostname, Some("81.2.69.144"));
        assert_eq!(e.envelope.facility, Some(16));
        assert_eq!(e.envelope.severity, Some(6));
        assert_eq!(e.header.as_ref().unwrap().hostname, Some("ns"));
        assert_eq!(e.header.as_ref().unwrap().name, "APPFW_cross-site scripting");
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2015, 6, 22, 19, 14, 37).unwrap());
    }

    #[test]
    fn legacy_ppe_without_partition_or_second_integer() {
        let e = ok("10/03/2013:16:49:07 GMT dk-lb001a PPE-4 : UI CMD_EXECUTED 10367926 : User so_readonly - Remote_ip 10.70.66.56 - Command \"stat lb vserver\" - Status \"Success\"");
        assert_eq!(e.header.as_ref().unwrap().hostname, Some("dk-lb001a"));
        assert_eq!(e.header.as_ref().unwrap().ppe, Some("PPE-4"));
        assert_eq!(e.header.as_ref().unwrap().partition, None);
        assert_eq!(
            (e.header.as_ref().unwrap().feature, e.header.as_ref().unwrap().name, e.header.as_ref().unwrap().sequence),
            (Some("UI"), "CMD_EXECUTED", Some(10367926))
        );
    }

    #[test]
    fn sdx_svm_service_relay_and_day_first_date() {
        let e = ok("<134>Jun 18 18:18:42 svm_service: 1.1.1.1  18/06/2020:16:18:42 GMT mynetscaler2 0-PPE-0 : GUI CMD_EXECUTED : User nsroot - Remote_ip 10.55.1.100");
        assert_eq!(e.envelope.appname, Some("svm_service"));
        assert_eq!(e.envelope.hostname, Some("1.1.1.1"));
        assert_eq!(e.header.as_ref().unwrap().hostname, Some("mynetscaler2"));
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2020, 6, 18, 16, 18, 42).unwrap());
        assert_eq!(e.header.as_ref().unwrap().sequence, None);
    }

    #[test]
    fn rfc3339_relay_and_year_first_date() {
        let e = ok("2023-08-01T00:14:15.285005+00:00 172.17.7.7  2023/08/01:00:14:15 GMT mpx2 0-PPE-1 : default SSLVPN LOGIN 18219290 0 : Context x");
        assert_eq!(e.envelope.hostname, Some("172.17.7.7"));
        assert_eq!(e.header.as_ref().unwrap().hostname, Some("mpx2"));
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2023, 8, 1, 0, 14, 15).unwrap());
    }

    #[test]
    fn time_of_day_only_takes_the_date_from_the_record() {
        let e = ok("06:29:05 GMT mymachine 0-PPE-1 : default EVENT MONITORUP 1141302652 0 : Monitor up");
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 8, 10, 6, 29, 5).unwrap());
        assert_eq!(e.timestamp_source, TimestampSource::Record);
    }

    #[test]
    fn headerless_bodies() {
        let e = ok("<135> default CMD_EXECUTED 4123456 0 :  User nsroot - Command \"show ns capacity\"");
        assert_eq!(
            (e.header.as_ref().unwrap().partition, e.header.as_ref().unwrap().feature, e.header.as_ref().unwrap().name),
            (Some("default"), None, "CMD_EXECUTED")
        );
        assert_eq!(e.timestamp_source, TimestampSource::Record);
        let e = ok("[289]: AAA Message : In receive_ldap_user_search_event: user not found");
        assert_eq!((e.header.as_ref().unwrap().feature, e.header.as_ref().unwrap().name), (Some("AAA"), "Message"));
        assert_eq!(e.header.as_ref().unwrap().message, "In receive_ldap_user_search_event: user not found");
    }

    #[test]
    fn cef_behind_bsd_relay() {
        let e = ok("Jun 12 23:37:17 <local0.info> 81.2.69.144 CEF:0|Citrix|NetScaler|NS11.0|APPFW|APPFW_STARTURL|6|src=175.16.199.1 spt=47606 method=GET");
        assert_eq!(e.header.as_ref().unwrap().format, PayloadFormat::Cef);
        assert_eq!(
            (e.header.as_ref().unwrap().feature, e.header.as_ref().unwrap().name),
            (Some("APPFW"), "APPFW_STARTURL")
        );
        assert_eq!(e.header.as_ref().unwrap().cef_severity, Some("6"));
        assert_eq!(e.appliance(), Some("81.2.69.144"));
        assert_eq!(e.header.as_ref().unwrap().message, "src=175.16.199.1 spt=47606 method=GET");
        // June 12 is before the record's August date, so it stays in the record's year.
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 6, 12, 23, 37, 17).unwrap());
    }

    #[test]
    fn appliance_lines_get_their_datasets() {
        for (line, dataset, action) in [
            ("Jan 19 23:00:06 <cron.info> Stage-NS01 /usr/sbin/cron[14451]: (nobody) CMD (curl http://x/ci.sh | sh)", Dataset::Cron, "cron-command"),
            ("192.168.0.4 - - [28/Nov/2019:22:28:20 +0000] \"POST /vpns/portal/scripts/newbm.pl HTTP/1.1\" 200 135", Dataset::HttpAccess, "http-request"),
            ("Jan 19 24:23:56 <local7.notice> ns bash[1173]: root on (null) return_code=\"1\"", Dataset::Shell, "shell-return-code"),
            ("Jan 19 23:00:06 Stage-NS01 newsyslog[14448]: logfile turned over due to size>100K", Dataset::Syslog, "syslog"),
            ("/var/log/httpaccess.log.4:127.0.0.2 - - [13/Jan/2020:08:28:31 +0000] \"GET /x HTTP/1.1\" 404 48 \"-\" \"curl/7.58.0\"", Dataset::HttpAccess, "http-request"),
        ] {
            let e = ok(line);
            assert_eq!((e.dataset, e.action), (dataset, Some(action)), "{line}");
        }
    }

    #[test]
    fn per_device_date_order_and_time_zone() {
        let mut ctx = ctx();
        ctx.devices.insert("vpx-eu".into(), Device { date_order: DateOrder::Dmy, timezone: chrono_tz::Europe::Berlin });
        let line = "03/04/2020:10:00:00 VPX-EU 0-PPE-0 : default SSLVPN LOGIN 1 0 : User a";
        let e = parse(line.as_bytes(), received(), &ctx, None).unwrap();
        // Day first, Berlin summer time (UTC+2) on 3 April 2020.
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2020, 4, 3, 8, 0, 0).unwrap());
        assert!(e.local_time);
        // The same line from an appliance without settings: month first, UTC.
        let other = line.replace("VPX-EU", "vpx-us");
        let e = parse(other.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2020, 3, 4, 10, 0, 0).unwrap());
        // GMT wins over the appliance's zone; an unambiguous date over its order.
        let gmt = "21/04/2020:10:00:00 GMT vpx-eu 0-PPE-0 : default SSLVPN LOGIN 1 0 : User a";
        let e = parse(gmt.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2020, 4, 21, 10, 0, 0).unwrap());
        assert!(!e.local_time);
    }

    #[test]
    fn body_times_of_a_day_first_appliance_are_read_day_first() {
        // Elastic's test-citrix-native-with-delink: an appliance writing 10 August 2024 as 10/08/2024.
        let mut ctx = ctx();
        ctx.devices.insert("sysloghost".into(), Device { date_order: DateOrder::Dmy, timezone: chrono_tz::UTC });
        let terminate = "<123> 10/08/2024:09:38:41  SYSLOGHOST 0-PPE-1 : default TCP CONN_TERMINATE 6715345 0 :  Source 127.1.2.1:80 - Destination 127.1.1.2:20714 - Start Time 10/08/2024:09:37:54  - End Time 10/08/2024:09:38:41  - Total_bytes_send 1 - Total_bytes_recv 1 ";
        let e = parse(terminate.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 8, 10, 9, 38, 41).unwrap());
        let at = |name| match e.fields.get(name) {
            Some(fields::Value::Time(t)) => *t,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(at("citrix_adc.log.start_time"), Utc.with_ymd_and_hms(2024, 8, 10, 9, 37, 54).unwrap());
        assert_eq!(at("citrix_adc.log.end_time"), Utc.with_ymd_and_hms(2024, 8, 10, 9, 38, 41).unwrap());
        let delink = "<131> 10/08/2024:09:38:41  SYSLOGHOST 0-PPE-1 : default TCP CONN_DELINK 6715345 0 :  Source 127.1.2.1:80 - Vserver 81.2.69.144:80 - NatIP 192.168.10.10:52187 - Destination 81.2.69.144:80 - Delink Time 10/08/2024:09:38:41  - Total_bytes_send 0 - Total_bytes_recv 3118";
        let e = parse(delink.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(
            e.fields.get("citrix_adc.log.delink_time"),
            Some(&fields::Value::Time(Utc.with_ymd_and_hms(2024, 8, 10, 9, 38, 41).unwrap()))
        );
        // A month-first appliance reads the same body as 8 October.
        let month_first = delink.replace("SYSLOGHOST", "other");
        let e = parse(month_first.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(
            e.fields.get("citrix_adc.log.delink_time"),
            Some(&fields::Value::Time(Utc.with_ymd_and_hms(2024, 10, 8, 9, 38, 41).unwrap()))
        );
    }

    #[test]
    fn appliance_files_use_the_appliance_time_zone() {
        let mut ctx = ctx();
        ctx.devices.insert("ns".into(), Device { date_order: DateOrder::Mdy, timezone: chrono_tz::America::New_York });
        let line = "Jan 19 23:00:06 <cron.info> ns /usr/sbin/cron[1]: (nobody) CMD (ls /)";
        let e = parse(line.as_bytes(), received(), &ctx, None).unwrap();
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 1, 20, 4, 0, 6).unwrap());
    }

    #[test]
    fn lines_of_64_kib_parse_and_longer_ones_are_refused() {
        let head = "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN Message 1 0 : ";
        let mut line = head.as_bytes().to_vec();
        line.resize(64 * 1024, b'x');
        let e = parse(&line, received(), &ctx(), None).unwrap();
        assert_eq!(e.message.len(), 64 * 1024 - head.len());
        drop(e);
        line.push(b'x');
        assert_eq!(parse(&line, received(), &ctx(), None), Err(ParseError::TooLong { len: 65537, max: 65536 }));
    }

    #[test]
    fn truncated_lines_never_panic_and_keep_what_they_have() {
        let line = "<134> 09/09/2024:20:46:07 GMT PRODSY3VPX01 0-PPE-1 : default SSLVPN UDPFLOWSTAT 4783495 0 : Context a@b - SessionId: 1234 - User u - Client_ip 1.2.3.4";
        for cut in 0..=line.len() {
            let _ = parse(&line.as_bytes()[..cut], received(), &ctx(), None);
        }
        let e = ok(&line[..line.find("Client_ip").unwrap() + 9]);
        assert_eq!(e.fields.get_str("citrix_adc.log.user"), Some("u"));
        let e = ok(&line[..line.find("UDPFLOW").unwrap() + 7]);
        assert_eq!((e.feature(), e.name()), (Some("SSLVPN"), Some("UDPFLOW")));
        // Cut inside a multi-byte character: the invalid tail is reported, not parsed.
        let utf8 = "<134> 09/09/2024:20:46:07 GMT h 0-PPE-1 : default AAA Message 1 0 : Benutzer Jörg";
        let cut = &utf8.as_bytes()[..utf8.find('ö').unwrap() + 1];
        assert!(matches!(parse(cut, received(), &ctx(), None), Err(ParseError::NotUtf8 { .. })));
    }

    #[test]
    fn body_only_lines_get_an_inferred_event_name() {
        let e = ok("User nisiu - Remote_ip 10.101.178.146 - Command \"ptatem\" - Status \"unknown\"");
        assert_eq!(e.name(), Some("CMD_EXECUTED"));
        assert!(INFERRED_NAMES.contains(&e.name().unwrap()));
        assert_eq!(e.coverage, Coverage::Unknown);
        assert_eq!(e.fields.get_str("source.ip"), Some("10.101.178.146"));
    }

    /// Inputs the `parse` fuzz target flagged (fuzz/artifacts): values gatewatch derives must not pose
    /// as text borrowed from the record.
    #[test]
    fn fuzz_findings_derived_values_are_marked_as_derived() {
        let e = ok("AF_MALFORMED_REQ_ERR |1.3141|etd|omnisi|high|src=10.186.166.215 spt=553 method=GET");
        assert_eq!((e.feature(), e.name()), (None, Some("AF_MALFORMED_REQ_ERR")));
        let e = ok("2020/01/23 08:26:03 Failed login from xxx.xxx.xxx.xxx user:admin pass:admin");
        assert_eq!(e.fields.get("event.outcome"), Some(&Value::Keyword("failure")));
        let e = ok("User nisiu - Remote_ip 10.101.178.146 - Command \"ptatem\" - Status \"unknown\"");
        assert_eq!(e.fields.get("event.outcome"), Some(&Value::Keyword("failure")));
    }

    #[test]
    fn free_text_needs_the_httperror_hint() {
        let line = b"wget: not found";
        assert_eq!(parse(line, received(), &ctx(), None), Err(ParseError::Unrecognised));
        let e = parse(line, received(), &ctx(), Some(Dataset::HttpError)).unwrap();
        assert_eq!(e.dataset, Dataset::HttpError);
        assert_eq!(e.fields.get_str("process.name"), Some("wget"));
        assert_eq!(e.timestamp_source, TimestampSource::Record);
    }
}
