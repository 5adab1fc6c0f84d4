//! The syslog envelope around an ADC payload: `<PRI>`, RFC 5424, RFC 3164 (BSD) and RFC 3339-stamped
//! relay prefixes, plus the relay decorations seen in the field (`<local0.info>` tokens, relay IPs,
//! `svm_service:` tags). [`split`] never fails: a line without an envelope is all payload.

use chrono::{DateTime, Utc};

use super::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvelopeFormat {
    #[default]
    None,
    Rfc3164,
    Rfc5424,
    /// An RFC 3339 timestamp and relay address in front of the payload (rsyslog's default file format).
    Rfc3339,
}

impl EnvelopeFormat {
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            EnvelopeFormat::None => None,
            EnvelopeFormat::Rfc3164 => Some("rfc3164"),
            EnvelopeFormat::Rfc5424 => Some("rfc5424"),
            EnvelopeFormat::Rfc3339 => Some("rfc3339"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope<'a> {
    pub format: EnvelopeFormat,
    pub priority: Option<u8>,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub timestamp: Option<DateTime<Utc>>,
    /// The host the relay names: the sender's address or name.
    pub hostname: Option<&'a str>,
    pub appname: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

pub fn facility_name(code: u8) -> Option<&'static str> {
    FACILITIES.get(code as usize).copied()
}

pub fn severity_name(code: u8) -> Option<&'static str> {
    SEVERITIES.get(code as usize).copied()
}

fn severity_code(name: &str) -> Option<u8> {
    let name = match name {
        "warn" => "warning",
        "error" => "err",
        "emergency" | "panic" => "emerg",
        "critical" => "crit",
        other => other,
    };
    SEVERITIES.iter().position(|s| *s == name).map(|p| p as u8)
}

/// Splits `<PRI>` off the front.
fn split_pri(s: &str) -> Option<(u8, &str)> {
    let inner = s.strip_prefix('<')?;
    let end = inner.find('>')?;
    let digits = &inner[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u16 = digits.parse().ok()?;
    (pri <= 191).then_some((pri as u8, &inner[end + 1..]))
}

/// A `<facility.severity>` token as some relays write it.
fn facility_severity_token(token: &str) -> Option<(u8, u8)> {
    let (f, s) = token.strip_prefix('<')?.strip_suffix('>')?.split_once('.')?;
    let facility = FACILITIES.iter().position(|x| *x == f)? as u8;
    Some((facility, severity_code(s)?))
}

fn next_token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(' ');
    s.split_once(' ').unwrap_or((s, ""))
}

/// Splits the envelope off `line`; `reference` completes year-less BSD timestamps.
pub fn split(line: &str, reference: DateTime<Utc>) -> (Envelope<'_>, &str) {
    let mut env = Envelope::default();
    let mut rest = line.trim_start();
    if let Some((pri, after)) = split_pri(rest) {
        env.priority = Some(pri);
        env.facility = Some(pri >> 3);
        env.severity = Some(pri & 7);
        rest = after;
        if let Some(after) = rest.strip_prefix("1 ") {
            if let Some(payload) = split_rfc5424(after, &mut env) {
                return (env, payload);
            }
        }
        rest = rest.trim_start();
    }
    if let Some((at, after)) = time::split_bsd(rest, reference) {
        env.format = EnvelopeFormat::Rfc3164;
        env.timestamp = Some(at);
        rest = after;
    } else if let Some((at, after)) = time::split_rfc3339(rest) {
        env.format = EnvelopeFormat::Rfc3339;
        env.timestamp = Some(at);
        rest = after;
    } else {
        return (env, rest);
    }
    // Relay decorations between the relay timestamp and the payload: at most a facility token, a host
    // and a tag, in the orders seen in real data.
    for _ in 0..3 {
        let (token, after) = next_token(rest);
        if token.is_empty() || time::is_netscaler_time(token) || token.starts_with("CEF:") {
            break;
        }
        if let Some((facility, severity)) = facility_severity_token(token) {
            if env.priority.is_none() {
                env.facility = Some(facility);
                env.severity = Some(severity);
            }
        } else if let Some(tag) = token.strip_suffix(':') {
            let (app, pid) = match tag.split_once('[') {
                Some((app, pid)) => (app, pid.strip_suffix(']')),
                None => (tag, None),
            };
            env.appname = Some(app);
            env.procid = pid;
        } else if env.hostname.is_none() {
            env.hostname = Some(token);
        } else {
            break;
        }
        rest = after;
    }
    (env, rest.trim_start_matches(' '))
}

/// `TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]` after `<PRI>1 `.
fn split_rfc5424<'a>(s: &'a str, env: &mut Envelope<'a>) -> Option<&'a str> {
    let nil = |v: &'a str| (v != "-").then_some(v);
    let (ts, s) = s.split_once(' ')?;
    let (host, s) = s.split_once(' ')?;
    let (app, s) = s.split_once(' ')?;
    let (procid, s) = s.split_once(' ')?;
    let (msgid, s) = s.split_once(' ').unwrap_or((s, ""));
    let msg = skip_structured_data(s)?;
    env.format = EnvelopeFormat::Rfc5424;
    env.timestamp = match nil(ts) {
        Some(ts) => Some(DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc)),
        None => None,
    };
    env.hostname = nil(host);
    env.appname = nil(app);
    env.procid = nil(procid);
    env.msgid = nil(msgid);
    Some(msg.strip_prefix('\u{feff}').unwrap_or(msg))
}

fn skip_structured_data(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix('-') {
        return Some(rest.strip_prefix(' ').unwrap_or(rest));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while bytes.get(i) == Some(&b'[') {
        let mut escaped = false;
        i += 1;
        loop {
            match *bytes.get(i)? {
                b'\\' if !escaped => escaped = true,
                b']' if !escaped => break,
                _ => escaped = false,
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0).then(|| s[i..].strip_prefix(' ').unwrap_or(&s[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reference() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 8, 10, 0, 0, 0).unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let line = r#"<134>1 2024-08-09T10:00:00Z relay01 netscaler - - [meta seq="1" note="a\]b"] 08/09/2024:10:00:00 GMT ns 0-PPE-0 : x"#;
        let (env, payload) = split(line, reference());
        assert_eq!(env.format, EnvelopeFormat::Rfc5424);
        assert_eq!(env.hostname, Some("relay01"));
        assert_eq!(env.appname, Some("netscaler"));
        assert_eq!(env.procid, None);
        assert_eq!(env.timestamp, Some(Utc.with_ymd_and_hms(2024, 8, 9, 10, 0, 0).unwrap()));
        assert_eq!(payload, "08/09/2024:10:00:00 GMT ns 0-PPE-0 : x");
    }

    #[test]
    fn pri_decodes_facility_and_severity() {
        let (env, payload) = split(" <131> 10/08/2024:09:38:41  HOST 0-PPE-1 : x", reference());
        assert_eq!((env.priority, env.facility, env.severity), (Some(131), Some(16), Some(3)));
        assert_eq!(env.format, EnvelopeFormat::None);
        assert_eq!(payload, "10/08/2024:09:38:41  HOST 0-PPE-1 : x");
    }

    #[test]
    fn bsd_with_host_and_tag() {
        let (env, payload) = split("Jan 19 23:00:06 Stage-NS01 newsyslog[14448]: logfile turned over", reference());
        assert_eq!(env.hostname, Some("Stage-NS01"));
        assert_eq!(env.appname, Some("newsyslog"));
        assert_eq!(env.procid, Some("14448"));
        assert_eq!(payload, "logfile turned over");
    }

    #[test]
    fn no_envelope() {
        let (env, payload) = split("hello there", reference());
        assert_eq!(env, Envelope::default());
        assert_eq!(payload, "hello there");
    }
}
