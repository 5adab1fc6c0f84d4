//! Times as gatewatch writes them: RFC 3339, in UTC, with a `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// With milliseconds: ECS documents (`@timestamp`, `event.created`, evidence times).
pub fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`millis`] appended to `out` as a JSON string, without building a `String` (years 0–9999; others
/// through [`millis`]).
pub fn write_millis_json(out: &mut Vec<u8>, t: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        out.push(b'"');
        out.extend_from_slice(millis(t).as_bytes());
        out.push(b'"');
        return;
    }
    // Leap seconds are kept in the nanoseconds (>= 1 s), which chrono writes as second 60.
    let (second, nanos) = match t.nanosecond() {
        n if n >= 1_000_000_000 => (t.second() + 1, n - 1_000_000_000),
        n => (t.second(), n),
    };
    let digits = |out: &mut Vec<u8>, n: u32, width: usize| {
        let mut buf = [b'0'; 4];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    out.push(b'"');
    digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    digits(out, t.month(), 2);
    out.push(b'-');
    digits(out, t.day(), 2);
    out.push(b'T');
    digits(out, t.hour(), 2);
    out.push(b':');
    digits(out, t.minute(), 2);
    out.push(b':');
    digits(out, second, 2);
    out.push(b'.');
    digits(out, nanos / 1_000_000, 3);
    out.extend_from_slice(b"Z\"");
}

/// To the second: the replay report and its run ids.
pub fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn utc_with_a_z() {
        let t = chrono::Utc.with_ymd_and_hms(2020, 1, 10, 8, 57, 43).unwrap();
        assert_eq!(super::millis(t), "2020-01-10T08:57:43.000Z");
        assert_eq!(super::seconds(t), "2020-01-10T08:57:43Z");
    }

    #[test]
    fn written_in_place_as_millis_writes_it() {
        let mut times: Vec<chrono::DateTime<chrono::Utc>> = vec![
            chrono::Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            chrono::Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            chrono::DateTime::from_timestamp(1_435_708_799, 1_999_999_999).unwrap(), // a leap second
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let secs = (state % 253_402_300_800) as i64;
            times.push(chrono::DateTime::from_timestamp(secs, (state >> 34) as u32 % 1_000_000_000).unwrap());
        }
        for t in times {
            let mut out = Vec::new();
            super::write_millis_json(&mut out, t);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", super::millis(t)), "{t:?}");
        }
    }
}
