//! The NetScaler payload header, native and CEF.
//!
//! Native: `[date:]time [GMT] [host] [PPE] : [partition] [FEATURE] EVENT [seq [n]] : body`, where every
//! bracketed part is missing in some firmware or relay; the whole date/host part is missing in
//! headerless lines (`default CMD_EXECUTED 4123456 0 : ...`, `[289]: AAA Message : ...`).
//! CEF: `CEF:0|vendor|product|version|class|name|severity|extension`, also without the `CEF:0|vendor|
//! product` prefix as some relays cut it (`APPFW_COOKIE |1.3|x|y|medium|src=...`).
//!
//! The header clock is returned raw ([`Clock`]): the date order and time zone belong to the appliance,
//! which is only known once the host name is read.

use smallvec::SmallVec;

use super::time;
use super::PayloadFormat;

/// The header's date and time tokens, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock<'a> {
    /// `MM/DD/YYYY`-like; `None` when the header carries only a time of day.
    pub date: Option<&'a str>,
    pub time: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payload<'a> {
    pub format: PayloadFormat,
    pub clock: Option<Clock<'a>>,
    pub gmt: bool,
    pub hostname: Option<&'a str>,
    pub ppe: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub name: &'a str,
    pub sequence: Option<u64>,
    pub cef_version: Option<&'a str>,
    pub cef_severity: Option<&'a str>,
    /// The body after the header (for CEF, the extension).
    pub message: &'a str,
}

impl<'a> Payload<'a> {
    pub fn new(format: PayloadFormat, name: &'a str, message: &'a str) -> Self {
        Payload {
            format,
            clock: None,
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

/// Parses a NetScaler payload (native header or CEF), or `None` when `s` is neither.
pub fn parse(s: &str) -> Option<Payload<'_>> {
    let s = s.trim_start();
    if let Some(cef) = s.strip_prefix("CEF:") {
        return parse_cef(cef);
    }
    let (head, rest) = split_colon(s)?;
    let mut tokens = head.split_ascii_whitespace().peekable();
    let first = *tokens.peek()?;
    if !time::is_netscaler_time(first) {
        // Headerless: the first segment is already `[partition] [FEATURE] EVENT [seq [n]]`, possibly
        // behind the `[pid]:` fragment some relays leave.
        let segment = match head.split_once("]:") {
            Some((pid, after)) if pid.starts_with('[') && pid[1..].bytes().all(|b| b.is_ascii_digit()) => after,
            _ => head,
        };
        return strict_segment(segment, rest);
    }
    tokens.next();
    let clock = match first.split_once(':') {
        Some((date, time)) if date.contains('/') => Clock { date: Some(date), time },
        _ => Clock { date: None, time: first },
    };
    let gmt = tokens.next_if_eq(&"GMT").is_some();
    let rest_tokens: SmallVec<[&str; 4]> = tokens.collect();
    let (hostname, ppe) = match rest_tokens.as_slice() {
        [] => (None, None),
        [one] if is_ppe(one) => (None, Some(*one)),
        [one] => (Some(*one), None),
        [host, ppe] => (Some(*host), Some(*ppe)),
        _ => return None,
    };
    let mut payload = feature_segment(rest)?;
    payload.clock = Some(clock);
    payload.gmt = gmt;
    payload.hostname = hostname;
    payload.ppe = ppe;
    Some(payload)
}

/// The part after the host: strictly `segment : body`, else `[partition] FEATURE EVENT [seq] body`
/// (bodies glued to the event name with `:` or `word:` occur in relayed and generated data).
fn feature_segment(rest: &str) -> Option<Payload<'_>> {
    if let Some((segment, body)) = split_colon(rest) {
        if segment.split_ascii_whitespace().count() <= 6 {
            if let Some(p) = strict_segment(segment, body) {
                return Some(p);
            }
        }
    }
    let words: SmallVec<[&str; 4]> = rest.split_ascii_whitespace().take(4).collect();
    let (partition, feature_at) = match words.as_slice() {
        [f, ..] if is_feature(f) => (None, 0),
        [p, f, ..] if is_feature(f) => (Some(*p), 1),
        _ => return None,
    };
    let feature = words[feature_at];
    let name = *words.get(feature_at + 1)?;
    let name = name.split(':').next().unwrap_or(name);
    if name.is_empty() || !is_event_start(name) {
        return None;
    }
    let name_end = offset_in(rest, name) + name.len();
    let mut body = rest[name_end..].trim_start();
    let mut sequence = None;
    if let Some((number, after)) = body.split_once(' ') {
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            sequence = number.parse().ok();
            body = after.trim_start();
        }
    }
    let body = body.strip_prefix(':').unwrap_or(body).trim_start();
    let mut payload = Payload::new(PayloadFormat::Native, name, body);
    payload.partition = partition;
    payload.feature = Some(feature);
    payload.sequence = sequence;
    Some(payload)
}

fn offset_in(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
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

pub fn is_feature(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 24
        && token.as_bytes()[0].is_ascii_uppercase()
        && token.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn is_event_start(token: &str) -> bool {
    token.as_bytes()[0].is_ascii_alphabetic()
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `[partition] [FEATURE] EVENT [seq [n]]`, where EVENT may contain spaces (`APPFW_cross-site scripting`).
fn strict_segment<'a>(segment: &'a str, body: &'a str) -> Option<Payload<'a>> {
    let mut words: SmallVec<[&'a str; 8]> = segment.split_ascii_whitespace().collect();
    let mut numbers: SmallVec<[&str; 2]> = SmallVec::new();
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
    let start = offset_in(segment, event_words[0]);
    let last = event_words[event_words.len() - 1];
    let end = offset_in(segment, last) + last.len();
    let mut payload = Payload::new(PayloadFormat::Native, &segment[start..end], body);
    payload.partition = partition;
    payload.feature = feature;
    payload.sequence = sequence;
    Some(payload)
}

/// `0|vendor|product|version|class|name|severity|extension` (after `CEF:`); `\|` escapes a pipe.
fn parse_cef(s: &str) -> Option<Payload<'_>> {
    let ([version, _vendor, _product, product_version, class, name, severity], rest) = super::cef::split_header(s)?;
    if version != "0" && version != "1" || name.is_empty() {
        return None;
    }
    let mut payload = Payload::new(PayloadFormat::Cef, name, rest);
    payload.feature = (!class.is_empty()).then_some(class);
    payload.cef_version = (!product_version.is_empty()).then_some(product_version);
    payload.cef_severity = (!severity.is_empty()).then_some(severity);
    Some(payload)
}

/// CEF with its `CEF:0|vendor|product` prefix cut: `NAME |version|x|y|severity|extension`.
pub fn parse_cut_cef(s: &str) -> Option<Payload<'_>> {
    let (name, rest) = s.split_once(" |")?;
    if !is_feature(name) {
        return None;
    }
    let mut parts = rest.splitn(5, '|');
    let version = parts.next()?;
    let (_, _, severity, ext) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // The class (`APPFW`) was cut with the prefix; the name alone says what it was.
    let mut payload = Payload::new(PayloadFormat::Cef, name, ext);
    payload.cef_version = Some(version);
    payload.cef_severity = Some(severity);
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_and_event_without_feature() {
        let p = parse("default CMD_EXECUTED 4123456 0 :  User nsroot").unwrap();
        assert_eq!(
            (p.partition, p.feature, p.name, p.sequence),
            (Some("default"), None, "CMD_EXECUTED", Some(4123456))
        );
        assert_eq!(p.message, "User nsroot");
    }

    #[test]
    fn host_without_ppe_and_glued_bodies() {
        let p = parse("2/12/2016:13:12:33 nulapari : GUI CMD_EXECUTED : User ctetur").unwrap();
        assert_eq!((p.hostname, p.ppe, p.feature, p.name), (Some("nulapari"), None, Some("GUI"), "CMD_EXECUTED"));
        assert!(!p.gmt);
        assert_eq!(p.clock, Some(Clock { date: Some("2/12/2016"), time: "13:12:33" }));
        let p = parse("4/9/2016:17:22:51 rehe : SSLVPN UDPFLOWSTAT :Context ume - SessionId: x").unwrap();
        assert_eq!((p.feature, p.name, p.message), (Some("SSLVPN"), "UDPFLOWSTAT", "Context ume - SessionId: x"));
        let p = parse("1/29/2016:06:09:59 avolupt : ICA APPLICATION_LAUNCH nnumqua:session_guid e - flags t").unwrap();
        assert_eq!((p.feature, p.name), (Some("ICA"), "APPLICATION_LAUNCH"));
        assert_eq!(p.message, "nnumqua:session_guid e - flags t");
    }

    #[test]
    fn body_keeps_colons() {
        let p =
            parse("10/08/2024:09:38:41 GMT h 0-PPE-1 : default SSLVPN HTTPREQUEST 5 0 : a : b : GET /x - -").unwrap();
        assert_eq!(p.message, "a : b : GET /x - -");
    }

    #[test]
    fn cef_with_escaped_pipe_and_cut_prefix() {
        let p = parse(r"CEF:0|Citrix|NetScaler|NS13.0|APPFW|APPFW_X\|Y|6|src=1.2.3.4").unwrap();
        assert_eq!(p.name, r"APPFW_X\|Y");
        assert_eq!(p.message, "src=1.2.3.4");
        assert!(parse("CEF:0|Citrix|NetScaler").is_none());
        let p = parse_cut_cef("APPFW_COOKIE |1.3626|uaera|sitas|medium|src=10.12.182.150 spt=7788").unwrap();
        assert_eq!((p.name, p.cef_severity, p.message), ("APPFW_COOKIE", Some("medium"), "src=10.12.182.150 spt=7788"));
    }
}
