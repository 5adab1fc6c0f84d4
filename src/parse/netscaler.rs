//! The NetScaler payload header, native and CEF.
//!
//! Native: `[date:]time [GMT] [host] [PPE] : [partition] [FEATURE] EVENT [seq [n]] : body`, where every
//! bracketed part is missing in some firmware or relay; the whole date/host part is missing in
//! headerless lines (`default CMD_EXECUTED 4123456 0 : ...`, `[289]: AAA Message : ...`).
//! CEF: `CEF:0|vendor|product|version|class|name|severity|extension`.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};

use super::time;
use super::PayloadFormat;

/// The header's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeaderTime {
    Full(DateTime<Utc>),
    /// Only a time of day; the date came from the envelope or the record.
    TimeOfDay(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payload<'a> {
    pub format: PayloadFormat,
    pub timestamp: Option<HeaderTime>,
    pub gmt: bool,
    pub hostname: Option<&'a str>,
    pub ppe: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub name: &'a str,
    pub sequence: Option<u64>,
    pub cef_version: Option<&'a str>,
    pub cef_severity: Option<&'a str>,
    pub message: &'a str,
}

impl<'a> Payload<'a> {
    fn new(format: PayloadFormat, name: &'a str, message: &'a str) -> Self {
        Payload {
            format,
            timestamp: None,
            gmt: false,
            hostname: None,
            ppe: None,
            partition: None,
            feature: None,
            name,
            sequence: None,
            cef_version: None,
            cef_severity: None,
            message,
        }
    }
}

/// Parses a payload; `date_of` supplies the date for time-of-day-only headers.
pub fn parse(s: &str, date_of: DateTime<Utc>) -> Option<Payload<'_>> {
    let s = s.trim_start();
    if let Some(cef) = s.strip_prefix("CEF:") {
        return parse_cef(cef);
    }
    let (head, rest) = split_colon(s)?;
    let mut tokens = head.split_ascii_whitespace().peekable();
    let first = *tokens.peek()?;
    let (timestamp, gmt, hostname, ppe, feature_segment, body) = if time::is_netscaler_time(first) {
        tokens.next();
        let timestamp = match time::netscaler_datetime(first) {
            Some(t) => HeaderTime::Full(Utc.from_utc_datetime(&t)),
            None => HeaderTime::TimeOfDay(at_time_of(date_of, time::time_of_day(first)?)),
        };
        let gmt = tokens.next_if_eq(&"GMT").is_some();
        let rest_tokens: Vec<&str> = tokens.collect();
        let (hostname, ppe) = match rest_tokens.as_slice() {
            [] => (None, None),
            [one] if is_ppe(one) => (None, Some(*one)),
            [one] => (Some(*one), None),
            [host, ppe] => (Some(*host), Some(*ppe)),
            _ => return None,
        };
        let (segment, body) = split_colon(rest)?;
        (Some(timestamp), gmt, hostname, ppe, segment, body)
    } else {
        // Headerless: the first segment is already `[partition] [FEATURE] EVENT [seq [n]]`, possibly
        // behind the `[pid]:` fragment some relays leave.
        let segment = match head.split_once("]:") {
            Some((pid, after)) if pid.starts_with('[') && pid[1..].bytes().all(|b| b.is_ascii_digit()) => after,
            _ => head,
        };
        (None, false, None, None, segment, rest)
    };
    let mut payload = parse_feature_segment(feature_segment, body)?;
    payload.timestamp = timestamp;
    payload.gmt = gmt;
    payload.hostname = hostname;
    payload.ppe = ppe;
    Some(payload)
}

fn at_time_of(date_of: DateTime<Utc>, t: NaiveTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date_of.date_naive().and_time(t))
}

/// Splits at the first ` : ` (or a trailing ` :`); the body keeps its inner spacing but not the
/// padding after the colon.
fn split_colon(s: &str) -> Option<(&str, &str)> {
    if let Some(i) = s.find(" : ") {
        return Some((&s[..i], s[i + 3..].trim_start_matches(' ')));
    }
    if let Some(head) = s.strip_suffix(" :") {
        return Some((head, ""));
    }
    // `[289]: AAA Message : ...` has its separator after the pid fragment; handled by the caller.
    None
}

fn is_ppe(token: &str) -> bool {
    let tail = token.rsplit_once("PPE-").map(|(_, n)| n);
    matches!(tail, Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_feature(token: &str) -> bool {
    token.len() <= 24
        && token.as_bytes()[0].is_ascii_uppercase()
        && token.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn is_event_start(token: &str) -> bool {
    token.as_bytes()[0].is_ascii_alphabetic()
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `[partition] [FEATURE] EVENT [seq [n]]`, where EVENT may contain spaces (`APPFW_cross-site scripting`).
fn parse_feature_segment<'a>(segment: &'a str, body: &'a str) -> Option<Payload<'a>> {
    let mut words: Vec<&'a str> = segment.split_ascii_whitespace().collect();
    let mut numbers = Vec::with_capacity(2);
    while numbers.len() < 2 && words.len() > 1 && words.last()?.bytes().all(|b| b.is_ascii_digit()) {
        numbers.push(words.pop()?);
    }
    let sequence = numbers.last().and_then(|n| n.parse().ok());
    let (partition, feature, event_words) = match words.as_slice() {
        [] => return None,
        [_] => (None, None, &words[..]),
        [first, _, ..] if is_feature(first) => (None, Some(*first), &words[1..]),
        [first, _] => (Some(*first), None, &words[1..]),
        [first, second, _, ..] if is_feature(second) => (Some(*first), Some(*second), &words[2..]),
        _ => return None,
    };
    // Event names are one word, rarely two (`APPFW_cross-site scripting`); more means this was a body.
    if event_words.len() > 2 || !is_event_start(event_words[0]) {
        return None;
    }
    let start = event_words[0].as_ptr() as usize - segment.as_ptr() as usize;
    let last = event_words[event_words.len() - 1];
    let end = last.as_ptr() as usize - segment.as_ptr() as usize + last.len();
    let mut payload = Payload::new(PayloadFormat::Native, &segment[start..end], body);
    payload.partition = partition;
    payload.feature = feature;
    payload.sequence = sequence;
    Some(payload)
}

/// `0|vendor|product|version|class|name|severity|extension` (after `CEF:`); `\|` escapes a pipe.
fn parse_cef(s: &str) -> Option<Payload<'_>> {
    let mut fields: [&str; 7] = [""; 7];
    let mut rest = s;
    for field in fields.iter_mut() {
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'|' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return None;
        }
        *field = &rest[..i];
        rest = &rest[i + 1..];
    }
    let [version, _vendor, _product, product_version, class, name, severity] = fields;
    if version != "0" && version != "1" || name.is_empty() {
        return None;
    }
    let mut payload = Payload::new(PayloadFormat::Cef, name, rest);
    payload.feature = (!class.is_empty()).then_some(class);
    payload.cef_version = (!product_version.is_empty()).then_some(product_version);
    payload.cef_severity = (!severity.is_empty()).then_some(severity);
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_of() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2020, 1, 10, 0, 0, 0).unwrap()
    }

    #[test]
    fn partition_and_event_without_feature() {
        let p = parse("default CMD_EXECUTED 4123456 0 :  User nsroot", date_of()).unwrap();
        assert_eq!(
            (p.partition, p.feature, p.name, p.sequence),
            (Some("default"), None, "CMD_EXECUTED", Some(4123456))
        );
        assert_eq!(p.message, "User nsroot");
    }

    #[test]
    fn host_without_ppe() {
        let p = parse("1/29/2016:06:09:59 avolupt : ICA APPLICATION_LAUNCH nnumqua:session_guid x", date_of());
        // `ICA APPLICATION_LAUNCH nnumqua:session_guid x` has no ` : ` before the body: not a header.
        assert!(p.is_none());
        let p = parse("2/12/2016:13:12:33 nulapari : GUI CMD_EXECUTED : User ctetur", date_of()).unwrap();
        assert_eq!((p.hostname, p.ppe, p.feature, p.name), (Some("nulapari"), None, Some("GUI"), "CMD_EXECUTED"));
        assert!(!p.gmt);
    }

    #[test]
    fn body_keeps_colons() {
        let p =
            parse("10/08/2024:09:38:41 GMT h 0-PPE-1 : default SSLVPN HTTPREQUEST 5 0 : a : b : GET /x - -", date_of())
                .unwrap();
        assert_eq!(p.message, "a : b : GET /x - -");
    }

    #[test]
    fn cef_with_escaped_pipe() {
        let p = parse(r"CEF:0|Citrix|NetScaler|NS13.0|APPFW|APPFW_X\|Y|6|src=1.2.3.4", date_of()).unwrap();
        assert_eq!(p.name, r"APPFW_X\|Y");
        assert_eq!(p.message, "src=1.2.3.4");
        assert!(parse("CEF:0|Citrix|NetScaler", date_of()).is_none());
    }
}
