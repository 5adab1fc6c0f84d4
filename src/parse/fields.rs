//! Fields: the ECS-named values a body parser extracts, borrowed from the record where possible.
//!
//! A body parser appends [`Field`]s in the order it finds them; `ecs` turns the dotted names into
//! nested JSON. Names are `&'static str` so a typo is a code change, not data.

use chrono::{DateTime, Utc};

use crate::spare;

/// `s` in ASCII lower case, handed to `f`: on the stack for names up to 64 bytes (body keys, looked
/// up case-insensitively per record), on the heap beyond.
pub fn with_ascii_lower<R>(s: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 64];
    match buf.get_mut(..s.len()) {
        Some(lower) => {
            lower.copy_from_slice(s.as_bytes());
            lower.make_ascii_lowercase();
            f(std::str::from_utf8(lower).expect("lower-casing ASCII letters keeps UTF-8 valid"))
        }
        None => f(&s.to_ascii_lowercase()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    /// A keyword gatewatch derives (`event.outcome: "failure"`), not text from the record.
    Keyword(&'static str),
    /// A value that had to be rebuilt (unescaped, decoded, joined).
    Owned(String),
    Int(i64),
    Float(f64),
    Time(DateTime<Utc>),
    List(Vec<&'a str>),
    /// Key/value pairs with no ECS home, serialized as an object.
    Pairs(Vec<(&'a str, &'a str)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    pub name: &'static str,
    pub value: Value<'a>,
}

/// The fields of one event, with helpers that parse common NetScaler value shapes.
///
/// Dropped fields leave their emptied buffer to the thread's next [`Fields::new`] ([`spare`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields<'a>(pub Vec<Field<'a>>);

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields::new()
    }
}

/// Buffers past this many fields are not kept.
const SPARE_FIELDS: usize = 256;

thread_local! {
    /// The emptied buffers of the thread's dropped fields.
    static SPARE: spare::Pool<Vec<Field<'static>>> = const { spare::Pool::new(Vec::new()) };
}

impl Drop for Fields<'_> {
    fn drop(&mut self) {
        for field in &mut self.0 {
            match &mut field.value {
                Value::List(items) => spare::keep_list(std::mem::take(items)),
                Value::Pairs(items) => spare::keep_pairs(std::mem::take(items)),
                _ => {}
            }
        }
        if (1..=SPARE_FIELDS).contains(&self.0.capacity()) {
            spare::keep(&SPARE, spare::recast(std::mem::take(&mut self.0)));
        }
    }
}

impl<'a> Fields<'a> {
    /// No fields yet, in a dropped one's buffer when the thread has one.
    pub fn new() -> Self {
        Fields(spare::take(&SPARE).map_or_else(|| Vec::with_capacity(16), spare::recast))
    }

    pub fn str(&mut self, name: &'static str, value: &'a str) {
        let value = value.trim();
        if !value.is_empty() && value != "-" {
            self.0.push(Field { name, value: Value::Str(value) });
        }
    }

    pub fn keyword(&mut self, name: &'static str, value: &'static str) {
        self.0.push(Field { name, value: Value::Keyword(value) });
    }

    pub fn owned(&mut self, name: &'static str, value: String) {
        self.0.push(Field { name, value: Value::Owned(value) });
    }

    pub fn int(&mut self, name: &'static str, value: &str) {
        if let Ok(n) = value.trim().parse::<i64>() {
            self.0.push(Field { name, value: Value::Int(n) });
        }
    }

    pub fn number(&mut self, name: &'static str, value: i64) {
        self.0.push(Field { name, value: Value::Int(value) });
    }

    pub fn float(&mut self, name: &'static str, value: f64) {
        self.0.push(Field { name, value: Value::Float(value) });
    }

    pub fn time(&mut self, name: &'static str, value: DateTime<Utc>) {
        self.0.push(Field { name, value: Value::Time(value) });
    }

    pub fn list(&mut self, name: &'static str, values: &[&'a str]) {
        if !values.is_empty() {
            let mut list = spare::list();
            list.extend_from_slice(values);
            self.0.push(Field { name, value: Value::List(list) });
        }
    }

    /// An address that may carry a port: `1.2.3.4`, `1.2.3.4:443`, `[::1]:443`, or an IPv6 address
    /// whose last group is the port as NetScaler writes it (`a1b2:...:c5d6:123`, nine groups).
    pub fn address(&mut self, ip_name: &'static str, port_name: &'static str, value: &'a str) {
        let value = value.trim().trim_matches('"');
        let (ip, port) = split_host_port(value);
        if is_ip(ip) {
            self.str(ip_name, ip);
            if let Some(port) = port {
                self.int(port_name, port);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.0.iter().find(|f| f.name == name).map(|f| &f.value)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Str(s) | Value::Keyword(s) => Some(s),
            Value::Owned(s) => Some(s),
            _ => None,
        }
    }

    pub fn get_int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

pub fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// Splits `host:port`; IPv6 forms are `[addr]:port` or NetScaler's nine-group `addr:port`.
pub fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if let Some(rest) = value.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once("]:") {
            return (ip, Some(port));
        }
        return (rest.trim_end_matches(']'), None);
    }
    let colons = value.bytes().filter(|b| *b == b':').count();
    match colons {
        0 => (value, None),
        1 => {
            let (ip, port) = value.split_once(':').expect("one colon");
            (ip, Some(port))
        }
        _ if is_ip(value) => (value, None),
        _ => match value.rsplit_once(':') {
            Some((ip, port)) if is_ip(ip) && port.bytes().all(|b| b.is_ascii_digit()) => (ip, Some(port)),
            _ => (value, None),
        },
    }
}

/// `HH:MM:SS` (hours may exceed 24) → nanoseconds, as ECS `event.duration` wants.
pub fn duration_nanos(value: &str) -> Option<i64> {
    let mut parts = value.trim().split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0..60).contains(&m) || !(0..60).contains(&s) {
        return None;
    }
    // Hours are unbounded in the format; anything past what nanoseconds in an i64 can hold
    // (about 2.5 million hours) is not a duration an appliance reported.
    ((i64::from(h) * 60 + m) * 60 + s).checked_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("1.2.3.4:443"), ("1.2.3.4", Some("443")));
        assert_eq!(split_host_port("1.2.3.4"), ("1.2.3.4", None));
        assert_eq!(split_host_port("[::1]:53"), ("::1", Some("53")));
        assert_eq!(split_host_port("2001:db8::1"), ("2001:db8::1", None));
        assert_eq!(
            split_host_port("a1b2:c3d4:e5f6:a7b8:c9d0:e1f2:a3b4:c5d6:123"),
            ("a1b2:c3d4:e5f6:a7b8:c9d0:e1f2:a3b4:c5d6", Some("123"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_nanos("00:05:53"), Some(353_000_000_000));
        assert_eq!(duration_nanos("15:05:35"), Some(54_335_000_000_000));
        // Found by the parse fuzz target: hours whose nanoseconds overflow an i64.
        assert_eq!(duration_nanos("009999999999:00:22"), None);
        assert_eq!(duration_nanos("-1:00:00"), None);
        assert_eq!(duration_nanos("2562047:47:16"), Some(9_223_372_036_000_000_000));
        assert_eq!(duration_nanos("x"), None);
    }
}
