//! Times as gatewatch writes them: RFC 3339, in UTC, with a `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// With milliseconds: ECS documents (`@timestamp`, `event.created`, evidence times).
pub fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
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
}
