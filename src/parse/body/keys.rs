//! `key value` / `key:value` / `key=value` bodies: segments, keys mapped to ECS fields (`key_field`),
//! values applied with their types and times.

use smallvec::SmallVec;

use super::http::url_fields;
use super::names::{elastic_copies, key_field, Target, TWO_WORD_KEYS};
use crate::parse::appliance;
use crate::parse::fields::{self, Fields, Value};
use crate::parse::time;
use crate::parse::Device;
use crate::spare;

pub(super) fn apply<'a>(
    key: &'a str,
    value: &'a str,
    device: Device,
    out: &mut Fields<'a>,
    extra: &mut Vec<(&'a str, &'a str)>,
) {
    let value = unquote(value.trim());
    let before = out.0.len();
    let value = if key.eq_ignore_ascii_case("handshaketime") { value.trim_end_matches("ms").trim_end() } else { value };
    fill(key_field(key), key, value, device, out, extra);
    fields::with_ascii_lower(key, |lower| copies_and_zone(key, lower, value, before, out));
}

/// The fields Elastic also fills from this key, and the zone name next to a GMT time.
fn copies_and_zone<'a>(key: &str, lower: &str, value: &str, before: usize, out: &mut Fields<'a>) {
    for (from, to) in elastic_copies(lower) {
        let copy = out.0[before..].iter().find(|f| f.name == *from).map(|f| f.value.clone());
        if let Some(value) = copy {
            out.0.push(fields::Field { name: to, value });
        }
    }
    // `Start_time "07/09/2024:20:44:03 GMT"`: Elastic keeps the zone name next to the time.
    if value.ends_with("GMT") {
        let zone = match key_field(key) {
            Some(Target::Time("citrix_adc.log.start_time")) => Some("citrix_adc.log.start_time_timezone"),
            Some(Target::Time("citrix_adc.log.end_time")) => Some("citrix_adc.log.end_time_timezone"),
            Some(Target::Time("citrix_adc.log.delink_time")) => Some("citrix_adc.log.delink_timezone"),
            _ => None,
        };
        if let (Some(zone), true) = (zone, out.0.len() > before) {
            out.keyword(zone, "GMT");
        }
    }
}

/// A value into the field its key's target names; what has no field goes to `extra`.
fn fill<'a>(
    target: Option<Target>,
    key: &'a str,
    value: &'a str,
    device: Device,
    out: &mut Fields<'a>,
    extra: &mut Vec<(&'a str, &'a str)>,
) {
    match target {
        Some(Target::Str(name)) => out.str(name, value),
        Some(Target::Int(name)) => {
            if value.trim().parse::<i64>().is_ok() {
                out.int(name, value);
            } else {
                out.str(name, value);
            }
        }
        Some(Target::Address(ip, port)) => {
            let before = out.0.len();
            out.address(ip, port, value);
            if out.0.len() == before && !value.is_empty() {
                // Not an address (sanitised `a.b.c.d`, `"Mapped Ip"`): keep it, unmapped.
                extra.push((key, value));
            }
        }
        Some(Target::Time(name)) => match parse_body_time(value, device) {
            Some(t) => out.time(name, t),
            None => extra.push((key, value)),
        },
        Some(Target::Duration) => match fields::duration_nanos(value) {
            Some(n) => {
                out.number("event.duration", n);
                out.str("citrix_adc.log.duration", value);
            }
            None => extra.push((key, value)),
        },
        Some(other) => fill_special(other, key, value, out, extra),
        None if value.is_empty() => {}
        None => extra.push((key, value)),
    }
}

/// The targets with a shape of their own: identities, groups, TLS versions, URLs, epoch times,
/// forwarded addresses, alert levels, percentages.
fn fill_special<'a>(
    target: Target,
    key: &'a str,
    value: &'a str,
    out: &mut Fields<'a>,
    extra: &mut Vec<(&'a str, &'a str)>,
) {
    match target {
        Target::Context => match value.rsplit_once('@') {
            Some((user, ip)) => {
                out.str("citrix_adc.log.context.user.name", user);
                // The session's user names the event (as in Elastic's pipeline); a record's own `User`
                // is kept as citrix_adc.log.user.
                out.str("user.name", user);
                out.address("citrix_adc.log.context.client.ip", "citrix_adc.log.context.client.port", ip);
            }
            None => out.str("citrix_adc.log.context.user.name", value),
        },
        Target::UserDomain => match value.split_once(':') {
            Some((user, domain)) => {
                // An ICA record's `username:domainname` names the event rather than the session's login
                // (the Context, kept as citrix_adc.log.user), as in Elastic's pipeline.
                if let Some(login) = out.get("citrix_adc.log.context.user.name").cloned() {
                    for f in out.0.iter_mut().filter(|f| f.name == "user.name" && f.value == login) {
                        f.value = Value::Str(user.trim());
                    }
                    out.0.push(fields::Field { name: "citrix_adc.log.user", value: login });
                }
                out.str("user.name", user);
                out.str("user.domain", domain);
            }
            None => out.str("user.name", value),
        },
        Target::Groups => {
            out.str("citrix_adc.log.groups", value);
            let groups: SmallVec<[&str; 16]> =
                value.split(',').map(str::trim).filter(|g| !g.is_empty() && *g != "N/A").collect();
            out.list("user.group.name", &groups);
        }
        Target::TlsVersion(name) => {
            out.str(name, value);
            if let Some(v) = value.strip_prefix("TLSv").or_else(|| value.strip_prefix("TLS")) {
                out.keyword("tls.version_protocol", "tls");
                out.str("tls.version", v);
            } else if let Some(v) = value.strip_prefix("SSLv") {
                out.keyword("tls.version_protocol", "ssl");
                out.str("tls.version", v);
            }
        }
        Target::Url(name) => {
            out.str(name, value);
            url_fields(value, out);
        }
        Target::EpochMillis(name) => {
            let millis = value.trim_end_matches("(ms)").trim().parse::<i64>().ok();
            match millis.and_then(chrono::DateTime::from_timestamp_millis) {
                Some(t) => out.time(name, t),
                None => extra.push((key, value)),
            }
        }
        Target::ForwardedFor => {
            let first = value.split(',').next().unwrap_or_default().trim();
            if fields::is_ip(first) {
                out.str("citrix_adc.log.x_forwarded_for_ip", first);
                out.str("network.forwarded_ip", first);
            } else if !value.is_empty() {
                extra.push((key, value));
            }
        }
        Target::Alert => {
            out.str("citrix_adc.log.alert_type", key);
            out.str("citrix_adc.log.alert_level", value);
        }
        Target::Percent(name) => match value.trim_end_matches('%').trim().parse::<f64>() {
            Ok(n) => out.float(name, n),
            Err(_) => extra.push((key, value)),
        },
        _ => extra.push((key, value)),
    }
}

pub(super) fn unquote(s: &str) -> &str {
    let s = s.trim();
    // `\"TimedOut\"`: quotes a relay escaped once too often.
    if s.len() >= 4 && s.starts_with("\\\"") && s.ends_with("\\\"") {
        return &s[2..s.len() - 2];
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// A body time: `MM/DD/YYYY:HH:MM:SS[ ZONE]` (also `...:SSGMT`, and day-first when the appliance's date
/// order says so) or RFC 3339. Without a zone it is the appliance's local time, as its header's is.
pub(super) fn parse_body_time(value: &str, device: Device) -> Option<chrono::DateTime<chrono::Utc>> {
    let value = value.trim();
    let (value, zone) = match value.rsplit_once(' ').and_then(|(t, z)| Some((t.trim_end(), time_zone(z)?))) {
        Some((t, zone)) => (t, Some(zone)),
        None => match value.strip_suffix("GMT") {
            Some(t) => (t.trim_end(), Some(BodyZone::Fixed(chrono::FixedOffset::east_opt(0)?))),
            None => (value, None),
        },
    };
    // RFC 3339 says its own offset (also `2023-04-01T12:00:00Z GMT`).
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let t = time::netscaler_datetime(value, device.date_order)
        .or_else(|| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .or_else(|| chrono::NaiveDateTime::parse_from_str(value, "%b %e %H:%M:%S %Y").ok())?;
    Some(match zone {
        Some(BodyZone::Fixed(offset)) => (t - offset).and_utc(),
        Some(BodyZone::Named(tz)) => appliance::local_to_utc(t, tz),
        None => appliance::local_to_utc(t, device.timezone),
    })
}

/// The zone written after a body time.
pub(super) enum BodyZone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

/// `GMT`, `UTC`, `Z`, `+02:00`, `+0200`, an IANA name, or a North American abbreviation (`PST` reads
/// as Los Angeles time on that date, as Java's and Elastic's date parsers read it).
pub(super) fn time_zone(zone: &str) -> Option<BodyZone> {
    let named = |name: &str| name.parse::<chrono_tz::Tz>().ok().map(BodyZone::Named);
    match zone {
        "GMT" | "UTC" | "UT" | "Z" => chrono::FixedOffset::east_opt(0).map(BodyZone::Fixed),
        "PST" | "PDT" => named("America/Los_Angeles"),
        "MST" | "MDT" => named("America/Denver"),
        "CST" | "CDT" => named("America/Chicago"),
        "EST" | "EDT" => named("America/New_York"),
        _ if zone.starts_with(['+', '-']) => {
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seconds = digits[..2].parse::<i32>().ok()? * 3600 + digits[2..].parse::<i32>().ok()? * 60;
            let seconds = if zone.starts_with('-') { -seconds } else { seconds };
            chrono::FixedOffset::east_opt(seconds).map(BodyZone::Fixed)
        }
        _ if zone.contains('/') => named(zone),
        _ => None,
    }
}

/// Splits a body at ` - ` (and ` --> `) outside double quotes.
pub(super) fn segments(body: &str) -> SmallVec<[&str; 32]> {
    let bytes = body.as_bytes();
    let mut out = SmallVec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b' ' if !quoted => {
                for sep in [&b" - "[..], &b" --> "[..], &b" :- "[..]] {
                    if bytes[i..].starts_with(sep) {
                        out.push(&body[start..i]);
                        start = i + sep.len();
                        i = start - 1;
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&body[start..]);
    out
}

/// `[TECHSUPPORT][ENUMERATION] rest` → the tags, and `rest`.
pub(super) fn split_tags(s: &str) -> (SmallVec<[&str; 8]>, &str) {
    let mut tags = SmallVec::new();
    let mut rest = s.trim_start();
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) if !inner[..end].contains(' ') || inner[..end].contains('=') => {
                tags.push(&inner[..end]);
                rest = inner[end + 1..].trim_start();
            }
            _ => break,
        }
    }
    (tags, rest)
}

/// The generic `Key value - Key value` reader.
pub fn key_values<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) {
    let (tags, body) = split_tags(body);
    if let Some(uuid) = tags.iter().find_map(|t| t.strip_prefix("ICAUUID=")) {
        out.str("citrix_adc.log.ica_uuid", uuid);
    }
    out.list("tags", &tags);
    // `... - Session_ID: session123 -`: a dangling separator ends some bodies.
    let body = body.trim_end().strip_suffix(" -").unwrap_or(body).trim_end();
    let mut extra = spare::pairs();
    let mut queue = segments(body);
    queue.reverse();
    while let Some(segment) = queue.pop() {
        let segment = segment.trim();
        if segment.is_empty() || segment == "-" {
            continue;
        }
        let segment = segment.strip_prefix("- ").unwrap_or(segment);
        // `SessionId: 1234 - [TECHSUPPORT] User u`: a tag in front of a pair.
        let segment = if segment.starts_with('[') { split_tags(segment).1 } else { segment };
        let (key, value) = split_key(segment);
        // `SERVER_AUTHENTICATED -SerialNumber "..."`: a flag, then a pair whose ` - ` lost a space.
        if let Some(rest) = value.strip_prefix('-') {
            if key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                if key.contains("AUTHENTICATED") {
                    out.str("citrix_adc.log.server_authentication", key);
                }
                queue.push(rest);
                continue;
            }
        }
        let value = match glued(key, value) {
            Some((first, rest)) => {
                queue.push(rest);
                first
            }
            None => value,
        };
        // `Delink Time 07/07/2024:19:25:29  Total_bytes_send 963`: a time whose ` - ` went missing.
        let value = match (key_field(key), value.split_once("  ")) {
            (Some(Target::Time(_)), Some((time, rest)))
                if !rest.trim().is_empty() && !rest.trim().starts_with("GMT") && !value.starts_with('"') =>
            {
                queue.push(rest);
                time
            }
            _ => value,
        };
        // `SessionId: 651173- User x`: a value glued to the next pair by a missing space.
        let value = match value.split_once("- ") {
            Some((first, rest)) if !first.contains(' ') && !first.starts_with('"') && !rest.is_empty() => {
                queue.push(rest);
                first
            }
            _ => value,
        };
        apply(key, value, device, out, &mut extra);
    }
    if extra.is_empty() {
        spare::keep_pairs(extra);
    } else {
        out.0.push(fields::Field { name: "citrix_adc.log.fields", value: Value::Pairs(extra) });
    }
    fill_defaults(out);
}

/// A value that runs into the next pair because its separator went missing: `1.128.0.0:80 User: x`
/// (after an address), `"NA"Session New` (after a quoted value), `15 Action: ALLOW` (a known key
/// followed by a colon), `2023-04-01T12:00:00Z GMT Total_bytes_send 1` (after a zone). Returns the
/// value and the rest.
pub(super) fn glued<'a>(key: &str, value: &'a str) -> Option<(&'a str, &'a str)> {
    let target = key_field(key);
    if let Some(inner) = value.strip_prefix('"') {
        let close = inner.find('"')?;
        let rest = &inner[close + 1..];
        return (!rest.trim().is_empty()).then(|| (&value[..close + 2], rest.trim()));
    }
    if matches!(target, Some(Target::Address(..))) {
        if let Some((first, rest)) = value.split_once(' ') {
            if !rest.trim().is_empty() {
                return Some((first, rest.trim()));
            }
        }
    }
    if matches!(target, Some(Target::Time(_))) {
        if let Some(i) = value.find(" GMT ") {
            return Some((&value[..i + 4], value[i + 5..].trim()));
        }
    }
    let mut at = 0;
    for token in value.split(' ') {
        if at > 0 {
            if let Some(name) = token.strip_suffix(':') {
                if key_field(name).is_some() {
                    return Some((value[..at].trim_end(), &value[at..]));
                }
            }
        }
        at += token.len() + 1;
    }
    None
}

/// Fields implied by others when the body did not name them: the user of `Context user@ip`, and the
/// client address as `source.ip` (so rules on `source.ip` see SSLVPN logins too).
pub(super) fn fill_defaults<'a>(out: &mut Fields<'a>) {
    if !out.has("user.name") {
        let user: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("citrix_adc.log.context.user.name", Value::Str(user)) => Some(*user),
            _ => None,
        });
        if let Some(user) = user {
            out.str("user.name", user);
        }
    }
    // The session's user and client, as Elastic copies them from the `Context`, when the body has no
    // `Client_ip` / `username` of its own.
    for (context, copy) in [
        ("citrix_adc.log.context.client.ip", "citrix_adc.log.client_ip"),
        ("citrix_adc.log.context.user.name", "citrix_adc.log.username"),
    ] {
        if !out.has(copy) {
            let value: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
                (name, Value::Str(v)) if name == context => Some(*v),
                _ => None,
            });
            if let Some(value) = value {
                out.str(copy, value);
            }
        }
    }
    // The session's client, when no `Client_ip` named it.
    if !out.has("client.ip") {
        let context: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("citrix_adc.log.context.client.ip", Value::Str(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = context {
            out.str("client.ip", ip);
        }
    }
    if !out.has("source.ip") {
        let client: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("client.ip", Value::Str(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = client {
            out.str("source.ip", ip);
        }
    }
    // A login written as a mail address is also the user's address and domain.
    let user: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
        ("user.name", Value::Str(u)) => Some(*u),
        _ => None,
    });
    if let Some((local, domain)) = user.and_then(|u| u.split_once('@')) {
        if !local.is_empty() && domain.contains('.') && !domain.contains('@') {
            out.str("user.email", user.unwrap_or_default());
            if !out.has("user.domain") {
                out.str("user.domain", domain);
            }
        }
    }
}

pub(super) fn split_key(segment: &str) -> (&str, &str) {
    for key in TWO_WORD_KEYS {
        if segment.len() > key.len() && segment.as_bytes()[..key.len()].eq_ignore_ascii_case(key.as_bytes()) {
            let rest = &segment[key.len()..];
            if rest.starts_with([' ', ':']) {
                return (&segment[..key.len()], rest.trim_start_matches(':').trim());
            }
        }
    }
    if let Some((key, value)) = segment.split_once(':') {
        if !key.is_empty() && !key.contains(' ') && !key.contains('/') && value.starts_with(' ') && key.len() <= 40 {
            return (key, value.trim());
        }
        // `username:domainname value`
        if let Some((k, v)) = segment.split_once(' ') {
            if k.contains(':') && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_') {
                return (k, v.trim());
            }
        }
    }
    match segment.split_once(' ') {
        Some((key, value)) => (key, value.trim()),
        None => (segment, ""),
    }
}
