//! One request, two logs: the AppFW (WAF) and the appliance's web server access log can both record
//! the same request. A rule that matched a request in one log does not match it again, within a few
//! seconds, in the other (same source address, same normalised path); a repeat in the same log is a
//! new request and counts.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::doc::Doc;

/// How far apart the two logs' timestamps of one request may be.
const TOLERANCE: Duration = Duration::seconds(5);

/// Most requests remembered; beyond it the oldest are forgotten first.
const MAX_REQUESTS: usize = 100_000;

/// What identifies a web request across logs, and which log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    key: String,
    dataset: String,
}

fn first_text<'d>(doc: &'d Doc<'_>, path: &str) -> Option<&'d str> {
    doc.lookup(path).into_iter().find_map(|v| v.as_str())
}

impl Request {
    /// The request a web record describes; `None` for records that are not web requests.
    pub fn of(doc: &Doc<'_>) -> Option<Request> {
        let path = first_text(doc, "gatewatch.url.normalized_path")?;
        let source = first_text(doc, "source.ip")?;
        let dataset = first_text(doc, "event.dataset").unwrap_or("");
        Some(Request { key: format!("{source} {}", path.to_ascii_lowercase()), dataset: dataset.to_owned() })
    }
}

/// Requests recently matched, per rule.
#[derive(Debug, Default)]
pub struct Requests {
    seen: HashMap<(String, String), (DateTime<Utc>, String)>,
    /// Insertion order, for expiry without a scan.
    order: VecDeque<(DateTime<Utc>, (String, String))>,
}

impl Requests {
    /// Has `rule` already matched this request in another log within [`TOLERANCE`]? If not, the
    /// request is remembered for it.
    pub fn seen_in_another_log(&mut self, rule: &str, request: &Request, at: DateTime<Utc>) -> bool {
        let key = (rule.to_owned(), request.key.clone());
        if let Some((t, dataset)) = self.seen.get(&key) {
            if *dataset != request.dataset && (at - *t).abs() <= TOLERANCE {
                return true;
            }
        }
        self.seen.insert(key.clone(), (at, request.dataset.clone()));
        self.order.push_back((at, key));
        while self.order.len() > MAX_REQUESTS {
            self.forget_oldest();
        }
        false
    }

    /// Forgets requests older than the tolerance before `now` (event time).
    pub fn expire(&mut self, now: DateTime<Utc>) {
        while self.order.front().is_some_and(|(t, _)| now - *t > TOLERANCE) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((t, key)) = self.order.pop_front() {
            // A later sighting of the same request replaced the entry: keep that one.
            if self.seen.get(&key).is_some_and(|(seen, _)| *seen == t) {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn request(dataset: &str) -> Request {
        let doc = json!({
            "event": {"dataset": dataset},
            "source": {"ip": "203.0.113.9"},
            "gatewatch": {"url": {"normalized_path": "/vpns/cfg/smb.conf"}},
        });
        Request::of(&Doc::from_json(doc.as_object().unwrap().clone())).unwrap()
    }

    #[test]
    fn the_other_log_of_one_request_is_a_duplicate_a_repeat_in_the_same_log_is_not() {
        let t = Utc.with_ymd_and_hms(2020, 1, 11, 10, 0, 0).unwrap();
        let mut r = Requests::default();
        assert!(!r.seen_in_another_log("probe", &request("citrix_adc.log"), t));
        assert!(r.seen_in_another_log("probe", &request("citrix_adc.httpaccess"), t + Duration::seconds(1)));
        assert!(!r.seen_in_another_log("other-rule", &request("citrix_adc.httpaccess"), t));
        assert!(!r.seen_in_another_log("probe", &request("citrix_adc.log"), t + Duration::seconds(2)));
        r.expire(t + Duration::minutes(1));
        assert!(!r.seen_in_another_log("probe", &request("citrix_adc.httpaccess"), t + Duration::minutes(1)));
        assert!(r.seen.len() <= 2);
    }
}
