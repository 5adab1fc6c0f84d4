//! Timestamps as ADCs and relays write them: NetScaler `MM/DD/YYYY:HH:MM:SS` (and day-first and
//! year-first variants), BSD `Mmm dd HH:MM:SS` without a year, and RFC 3339.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

fn number(s: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if s.len() < min_len || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` (hour 24 is rejected: real files contain it, and it is not a valid time).
pub fn time_of_day(s: &str) -> Option<NaiveTime> {
    let (h, rest) = s.split_once(':')?;
    at_hour(number(h, 1, 2)?, rest)
}

/// `MM:SS` past hour `h`.
fn at_hour(h: u32, minutes_seconds: &str) -> Option<NaiveTime> {
    let mut parts = minutes_seconds.splitn(2, ':');
    let m = number(parts.next()?, 2, 2)?;
    let sec = number(parts.next()?, 2, 2)?;
    NaiveTime::from_hms_opt(h, m, sec)
}

/// How an appliance writes the two leading numbers of `NN/NN/YYYY` (its `date_order` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// Month first (the NetScaler default).
    #[default]
    Mdy,
    /// Day first.
    Dmy,
}

/// A NetScaler date: `M/D/YYYY`, `D/M/YYYY` or `YYYY/M/D`. A value only one order can read (a first
/// number above 12, or a second above 12) is read that way; otherwise `order` decides.
pub fn netscaler_date(s: &str, order: DateOrder) -> Option<NaiveDate> {
    let mut parts = s.splitn(3, '/');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if a.len() == 4 {
        return NaiveDate::from_ymd_opt(number(a, 4, 4)? as i32, number(b, 1, 2)?, number(c, 1, 2)?);
    }
    let (a, b, year) = (number(a, 1, 2)?, number(b, 1, 2)?, number(c, 4, 4)? as i32);
    let day_first = a > 12 || (b <= 12 && order == DateOrder::Dmy);
    if day_first {
        NaiveDate::from_ymd_opt(year, b, a)
    } else {
        NaiveDate::from_ymd_opt(year, a, b)
    }
}

/// A NetScaler `date:HH:MM:SS` token.
pub fn netscaler_datetime(s: &str, order: DateOrder) -> Option<NaiveDateTime> {
    let (date, time) = s.split_once(':')?;
    Some(netscaler_date(date, order)?.and_time(time_of_day(time)?))
}

/// True when `s` looks like a NetScaler date-time or time-of-day token.
pub fn is_netscaler_time(s: &str) -> bool {
    netscaler_datetime(s, DateOrder::Mdy).is_some() || time_of_day(s).is_some()
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const FULL_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `Jun` or `June` (some relays spell the month out).
fn month(word: &str) -> Option<u32> {
    let i = MONTHS.iter().position(|m| *m == word).or_else(|| FULL_MONTHS.iter().position(|m| *m == word))?;
    Some(i as u32 + 1)
}

/// Splits a BSD `Mmm dd HH:MM:SS` prefix off `s`. The year is the one that puts the time closest to
/// `reference` without running more than a day ahead of it (a December line read in January belongs to
/// the previous year).
pub fn split_bsd(s: &str, reference: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
    let (word, rest) = s.split_once(' ')?;
    let month = month(word)?;
    let rest = rest.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let day = number(day, 1, 2)?;
    let (time, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    // FreeBSD's syslogd on the appliance writes midnight as hour 24 of the previous day.
    let (time, next_day) = match time.strip_prefix("24:") {
        Some(ms) => (at_hour(0, ms)?, Duration::days(1)),
        None => (time_of_day(time)?, Duration::zero()),
    };
    let mut year = reference.year();
    let mut at = Utc.from_utc_datetime(&NaiveDate::from_ymd_opt(year, month, day)?.and_time(time)) + next_day;
    if at > reference + Duration::days(1) {
        year -= 1;
        at = Utc.from_utc_datetime(&NaiveDate::from_ymd_opt(year, month, day)?.and_time(time)) + next_day;
    }
    Some((at, rest))
}

/// Splits an RFC 3339 timestamp token off `s`.
pub fn split_rfc3339(s: &str) -> Option<(DateTime<Utc>, &str)> {
    let (token, rest) = s.split_once(' ').unwrap_or((s, ""));
    let at = DateTime::parse_from_rfc3339(token).ok()?;
    Some((at.with_timezone(&Utc), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_orders() {
        use DateOrder::*;
        assert_eq!(netscaler_date("10/08/2024", Mdy), NaiveDate::from_ymd_opt(2024, 10, 8));
        assert_eq!(netscaler_date("10/08/2024", Dmy), NaiveDate::from_ymd_opt(2024, 8, 10));
        // Unambiguous values ignore the configured order.
        assert_eq!(netscaler_date("21/08/2024", Mdy), NaiveDate::from_ymd_opt(2024, 8, 21));
        assert_eq!(netscaler_date("08/21/2024", Dmy), NaiveDate::from_ymd_opt(2024, 8, 21));
        assert_eq!(netscaler_date("2023/08/01", Dmy), NaiveDate::from_ymd_opt(2023, 8, 1));
        assert_eq!(netscaler_date("1/29/2016", Mdy), NaiveDate::from_ymd_opt(2016, 1, 29));
        assert_eq!(netscaler_date("13/13/2016", Mdy), None);
    }

    #[test]
    fn hour_24_is_midnight_of_the_next_day() {
        let reference = Utc.with_ymd_and_hms(2020, 1, 25, 0, 0, 0).unwrap();
        let (at, _) = split_bsd("Jan 19 24:23:56 <local7.notice> ns", reference).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2020, 1, 20, 0, 23, 56).unwrap());
    }

    #[test]
    fn invalid_times_are_rejected() {
        assert!(time_of_day("24:23:56").is_none());
        assert!(time_of_day("12:3:56").is_none());
        assert!(netscaler_datetime("1/29/2016:06:09:59", DateOrder::Mdy).is_some());
    }

    #[test]
    fn bsd_year_rolls_back_across_new_year() {
        let jan = Utc.with_ymd_and_hms(2020, 1, 2, 0, 0, 0).unwrap();
        let (at, rest) = split_bsd("Dec 31 23:59:59 host x", jan).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2019, 12, 31, 23, 59, 59).unwrap());
        assert_eq!(rest, "host x");
        let (at, _) = split_bsd("Oct  1 06:02:44 netscaler", jan).unwrap();
        assert_eq!(at.year(), 2019);
        let (at, _) = split_bsd("Jan  2 00:30:00 h", jan).unwrap();
        assert_eq!(at.year(), 2020);
        let (at, _) = split_bsd("June 8 00:21:09 <local0.info>", jan).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2019, 6, 8, 0, 21, 9).unwrap());
    }
}
