//! Collecting what the report needs while a replay runs: per appliance the first probe, attempt and
//! likely success, post-exploitation findings, sources, sessions, back-end connections and the timeline;
//! and the verdict and window computed from them at the end.

use crate::doc::{Doc, Leaf};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::{
    ApplianceReport, Backend, Behaviour, Finding, MetricPoint, Report, Session, Source, Timeline, Verdict, Window,
};
use crate::detect::sigma::Stage;
use crate::detect::Alert;

/// Per appliance, at most this many distinct sessions (user, session id, client) and back-end
/// connections (address, port, user) are kept (the first seen), and as many alert sources.
pub(super) const MAX_ACTIVITY: usize = 100_000;

/// Per appliance, at most this many post-exploitation and anomaly findings are kept (the first to
/// arrive; a replay delivers each appliance's alerts in event-time order), and suppression summaries of
/// as many again; and at most `MAX_ACTIVITY` alert sources.
pub(super) const MAX_FINDINGS: usize = 10_000;

/// Evidence lines kept per finding.
pub(super) const MAX_EVIDENCE: usize = 5;

/// Alert ids listed per behaviour.
pub(super) const MAX_BEHAVIOUR_ALERTS: usize = 20;

/// Alert marks and metric points kept per appliance for the HTML timeline (the earliest ones).
pub(super) const MAX_TIMELINE: usize = 200_000;

/// A user seen at a time: (time, user, session id, client address).
pub(super) type Seen = (DateTime<Utc>, String, Option<String>, Option<String>);

/// A connection to a back-end: (time, back-end address, port, user).
pub(super) type Connection = (DateTime<Utc>, String, Option<u64>, Option<String>);

/// Sessions by (user, session id, client address): first and last seen.
type Sessions = HashMap<(String, Option<String>, Option<String>), (DateTime<Utc>, DateTime<Utc>)>;

/// Back-end connections by (address, port, user): first and last seen, and how many.
type Backends = HashMap<(String, Option<u64>, Option<String>), (DateTime<Utc>, DateTime<Utc>, u64)>;

#[derive(Default)]
pub(super) struct Activity {
    probe: Option<(DateTime<Utc>, Finding)>,
    attempt: Option<(DateTime<Utc>, Finding)>,
    success: Option<(DateTime<Utc>, Finding)>,
    /// Post-exploitation alerts: time, finding, behaviour, matches (`gatewatch.count`).
    post: Vec<(DateTime<Utc>, Finding, String, u64)>,
    anomalies: Vec<(DateTime<Utc>, Finding)>,
    others: BTreeMap<&'static str, u64>,
    sources: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>, Source)>,
    /// Per (user, session id, client address): first and last seen. One entry per session, not per
    /// record, so a replay's memory does not grow with the records of known sessions.
    sessions: Sessions,
    /// Per (back-end address, port, user): first and last seen, and how many connections.
    backends: Backends,
    last_seen: Option<DateTime<Utc>>,
    timeline: Timeline,
}

/// Collects what the report needs while a replay runs.
#[derive(Default)]
pub struct Hunt {
    appliances: BTreeMap<String, Activity>,
}

pub(super) fn path<'d>(doc: &'d Json, dotted: &str) -> Option<&'d Json> {
    dotted.split('.').try_fold(doc, |node, part| node.get(part))
}

pub(super) fn field<'d>(doc: &'d Map<String, Json>, dotted: &str) -> Option<&'d Json> {
    let (head, rest) = dotted.split_once('.').unwrap_or((dotted, ""));
    let node = doc.get(head)?;
    if rest.is_empty() {
        Some(node)
    } else {
        path(node, rest)
    }
}

pub(super) fn text(doc: &Json, dotted: &str) -> Option<String> {
    match path(doc, dotted)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn time(doc: &Json, dotted: &str) -> Option<DateTime<Utc>> {
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
    pub fn of(doc: &Doc<'_>, at: DateTime<Utc>) -> Option<Sighting> {
        let host = doc.text("observer.hostname")?;
        // Accounts of people and administrators (gateway sessions, AAA, CLI/GUI/API); the local users of
        // the appliance's own shell and cron records (nobody, root) are not accounts to reset.
        let dataset = doc.text("event.dataset").unwrap_or_default();
        let local = dataset.ends_with(".shell") || dataset.ends_with(".cron");
        let user = doc.text("user.name").filter(|u| !u.is_empty() && u != "-" && !local);
        let session = user.clone().map(|user| {
            let session = doc.text("citrix_adc.log.session_id");
            let client = doc.text("client.ip").or_else(|| doc.text("source.ip"));
            (at, user, session, client)
        });
        // Connections through the gateway (SSLVPN TCP/UDP/HTTP, TCP CONN records): the back-end side.
        let feature = doc.text("citrix_adc.log.feature").unwrap_or_default();
        let backend = if matches!(feature.as_str(), "SSLVPN" | "TCP" | "ICA") {
            doc.text("destination.ip").map(|ip| {
                let port = match doc.get("destination.port") {
                    Some(Leaf::Int(n)) => u64::try_from(n).ok(),
                    Some(Leaf::UInt(n)) => Some(n),
                    _ => None,
                };
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
        if let Some((at, user, session, client)) = session {
            let (full, key) = (a.sessions.len() >= MAX_ACTIVITY, (user, session, client));
            match a.sessions.get_mut(&key) {
                Some(span) => *span = (span.0.min(at), span.1.max(at)),
                None if !full => drop(a.sessions.insert(key, (at, at))),
                None => {}
            }
        }
        if let Some((at, ip, port, user)) = backend {
            let (full, key) = (a.backends.len() >= MAX_ACTIVITY, (ip, port, user));
            match a.backends.get_mut(&key) {
                Some(seen) => *seen = (seen.0.min(at), seen.1.max(at), seen.2 + 1),
                None if !full => drop(a.backends.insert(key, (at, at, 1))),
                None => {}
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
            at: crate::timefmt::seconds(at),
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
                let room = if alert.update { 2 * MAX_FINDINGS } else { MAX_FINDINGS };
                if a.post.len() < room {
                    a.post.push((at, finding, behaviour, count))
                }
            }
            Stage::Anomaly if a.anomalies.len() < MAX_FINDINGS => a.anomalies.push((at, finding)),
            Stage::Anomaly => {}
            Stage::IocMatch | Stage::AuthAbuse => *a.others.entry(alert.stage.as_str()).or_default() += 1,
        }
        if let Some(ip) =
            text(doc, "source.ip").filter(|ip| a.sources.len() < MAX_ACTIVITY || a.sources.contains_key(ip))
        {
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

/// A time range of assumed compromise, with what its ends are based on.
type Span = (DateTime<Utc>, DateTime<Utc>, String);

pub(super) fn appliance_report(
    host: String,
    mut a: Activity,
    mitigations: &BTreeMap<String, DateTime<Utc>>,
    publication: DateTime<Utc>,
    range_end: Option<DateTime<Utc>>,
) -> ApplianceReport {
    let behaviours = distinct_post(&mut a);
    a.anomalies.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.alert_id.cmp(&y.1.alert_id)));
    let mitigated = mitigations.get(&host).copied();
    let (verdict, reasons) = verdict(&a, mitigated, publication);
    let window = window(&a, verdict, mitigated, publication, range_end);
    let in_window = |t: DateTime<Utc>| window.as_ref().is_some_and(|(s, e, _)| t >= *s && t <= *e);
    let bounds = window.as_ref().map(|(s, e, _)| (*s, *e));
    let sessions = sessions_in(&a.sessions, bounds);
    let backends = backends_in(&a.backends, bounds);
    let mut sources: Vec<Source> = a
        .sources
        .into_values()
        .map(|(first, last, mut s)| {
            s.first = crate::timefmt::seconds(first);
            s.last = crate::timefmt::seconds(last);
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
        window: window.map(|(s, e, basis)| Window {
            start: crate::timefmt::seconds(s),
            end: crate::timefmt::seconds(e),
            basis,
        }),
        sources,
        sessions_in_window: sessions,
        backends_in_window: backends,
        other_alerts: a.others,
        mitigated: mitigated.map(crate::timefmt::seconds),
        timeline,
    }
}

/// Post-exploitation alerts in time order, each once (a suppression summary is its first alert again,
/// same id, with the window's count), grouped into behaviours.
fn distinct_post(a: &mut Activity) -> Vec<Behaviour> {
    a.post.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.alert_id.cmp(&y.1.alert_id)));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, f, _, n) in &a.post {
        let c = counts.entry(f.alert_id.clone()).or_default();
        *c = (*c).max(*n);
    }
    let mut seen = BTreeSet::new();
    a.post.retain(|(_, f, _, _)| seen.insert(f.alert_id.clone()));
    group_behaviours(&a.post, &counts)
}

/// The verdict and the reasons for it.
fn verdict(a: &Activity, mitigated: Option<DateTime<Utc>>, publication: DateTime<Utc>) -> (Verdict, Vec<String>) {
    let at = crate::timefmt::seconds;
    let mut reasons = Vec::new();
    let mut verdict = Verdict::NotSeen;
    let mut raise = |v: Verdict, why: String| {
        verdict = verdict.max(v);
        reasons.push(why);
    };
    if let Some((t, f)) = &a.probe {
        raise(Verdict::Probed, format!("probed from {} ({})", at(*t), f.rule));
    }
    if let Some((t, f)) = &a.attempt {
        raise(Verdict::Attempted, format!("exploitation attempted from {} ({})", at(*t), f.rule));
    }
    if let Some((t, f)) = &a.success {
        raise(Verdict::LikelyCompromised, format!("likely successful exploitation at {} ({})", at(*t), f.rule));
    }
    if let Some((t, f, _, _)) = a.post.first() {
        raise(Verdict::Compromised, format!("post-exploitation activity from {} ({})", at(*t), f.rule));
    }
    if let Some(m) = mitigated {
        if m > publication {
            let why = format!(
                "mitigated {} — after the exploit publication on {}: assume compromise",
                at(m),
                at(publication)
            );
            raise(Verdict::LikelyCompromised, why);
        } else {
            reasons.push(format!("mitigated {} — before the exploit publication on {}", at(m), at(publication)));
        }
    }
    if reasons.is_empty() {
        reasons.push("no probe, exploitation or post-exploitation alert in the replayed range".into());
    }
    (verdict, reasons)
}

/// The window starts with the first exploitation evidence (attempt, success or post-exploitation);
/// when only the late-mitigation rule applies, with the exploit publication. It ends with the
/// mitigation, else with the end of the replayed range (or the appliance's last record).
fn window(
    a: &Activity,
    verdict: Verdict,
    mitigated: Option<DateTime<Utc>>,
    publication: DateTime<Utc>,
    range_end: Option<DateTime<Utc>>,
) -> Option<Span> {
    if verdict < Verdict::Attempted {
        return None;
    }
    let evidence_start =
        [a.attempt.as_ref().map(|x| x.0), a.success.as_ref().map(|x| x.0), a.post.first().map(|x| x.0)]
            .into_iter()
            .flatten()
            .min();
    let (start, basis) = match evidence_start {
        Some(t) => (t, "first exploitation evidence".to_owned()),
        None => (publication, "exploit publication (mitigated late)".to_owned()),
    };
    let end = mitigated.filter(|m| *m > start).or(range_end).or(a.last_seen).unwrap_or(start);
    let end_basis = if mitigated.is_some_and(|m| m > start) { "mitigation" } else { "end of the replayed range" };
    Some((start, end, format!("{basis} → {end_basis}")))
}

/// The part of a span `[first, last]` inside the window, if they meet: a session seen before and after
/// the window was active across it.
fn clip(first: DateTime<Utc>, last: DateTime<Utc>, window: Option<Bounds>) -> Option<(String, String)> {
    let (start, end) = window?;
    (first <= end && last >= start)
        .then(|| (crate::timefmt::seconds(first.max(start)), crate::timefmt::seconds(last.min(end))))
}

/// A window's start and end.
type Bounds = (DateTime<Utc>, DateTime<Utc>);

/// The accounts active in the window, per user: first and last seen within it.
fn sessions_in(seen: &Sessions, window: Option<Bounds>) -> Vec<Session> {
    let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
    for ((user, session, client), (first, last)) in seen {
        let Some((first, last)) = clip(*first, *last, window) else { continue };
        let s = sessions.entry(user.clone()).or_insert_with(|| Session {
            user: user.clone(),
            first: first.clone(),
            last: last.clone(),
            sessions: BTreeSet::new(),
            client_ips: BTreeSet::new(),
        });
        s.first = s.first.clone().min(first);
        s.last = s.last.clone().max(last);
        s.sessions.extend(session.clone());
        s.client_ips.extend(client.clone());
    }
    sessions.into_values().collect()
}

/// The back-ends connected to in the window, per address: the connections of every (port, user) seen
/// within it, and first and last seen within it.
fn backends_in(connections: &Backends, window: Option<Bounds>) -> Vec<Backend> {
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    for ((ip, port, user), (first, last, count)) in connections {
        let Some((first, last)) = clip(*first, *last, window) else { continue };
        let b = backends.entry(ip.clone()).or_insert_with(|| Backend {
            ip: ip.clone(),
            ports: BTreeSet::new(),
            first: first.clone(),
            last: last.clone(),
            users: BTreeSet::new(),
            connections: 0,
        });
        b.first = b.first.clone().min(first);
        b.last = b.last.clone().max(last);
        b.ports.extend(*port);
        b.users.extend(user.clone());
        b.connections += count;
    }
    backends.into_values().collect()
}

/// Post-exploitation alerts (one per id, in time order) grouped by (rule, behaviour), in order of
/// first appearance.
pub(super) fn group_behaviours(
    post: &[(DateTime<Utc>, Finding, String, u64)],
    counts: &BTreeMap<String, u64>,
) -> Vec<Behaviour> {
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
                first: crate::timefmt::seconds(*at),
                last: crate::timefmt::seconds(*at),
                alert_ids: Vec::new(),
                evidence: f.evidence.clone(),
            });
            groups.len() - 1
        });
        let g = &mut groups[slot];
        g.count += n;
        g.last = crate::timefmt::seconds(*at);
        if g.alert_ids.len() < MAX_BEHAVIOUR_ALERTS {
            g.alert_ids.push(f.alert_id.clone());
        }
    }
    groups
}

/// What an evidence line did, without when and by which process instance: the message after a
/// syslog `program[pid]: ` header (a shell or cron command), else an access log's request line, else
/// the whole line; whitespace folded.
pub(super) fn behaviour_of(evidence: &str) -> String {
    let what = match evidence.split_once("]: ") {
        Some((_, message)) => message,
        None => match evidence.split('"').nth(1) {
            Some(request) if !request.trim().is_empty() => request,
            _ => evidence,
        },
    };
    what.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    #[test]
    fn a_session_seen_in_many_records_is_kept_once_and_reported_within_the_window() {
        let mut hunt = Hunt::default();
        let start = at("2020-01-10T00:00:00Z");
        for minute in 0..1_000 {
            let t = start + chrono::Duration::minutes(minute);
            let session = Some((t, "alice".to_owned(), Some("s1".to_owned()), Some("198.51.100.7".to_owned())));
            let backend = Some((t, "10.0.0.5".to_owned(), Some(445), Some("alice".to_owned())));
            hunt.event(Sighting { host: "adc".into(), at: t, session, backend });
        }
        let a = &hunt.appliances["adc"];
        // One entry per session and per back-end connection kind, however many records name them.
        assert_eq!((a.sessions.len(), a.backends.len()), (1, 1));
        let window = Some((at("2020-01-10T05:00:00Z"), at("2020-01-10T06:00:00Z")));
        let sessions = sessions_in(&a.sessions, window);
        assert_eq!(sessions.len(), 1);
        // Seen before and after the window: active across it.
        assert_eq!(
            (sessions[0].first.as_str(), sessions[0].last.as_str()),
            ("2020-01-10T05:00:00Z", "2020-01-10T06:00:00Z")
        );
        let backends = backends_in(&a.backends, window);
        assert_eq!(
            (backends[0].connections, backends[0].ports.iter().copied().collect::<Vec<_>>()),
            (1_000, vec![445])
        );
        // A window the session never met lists nothing.
        let later = Some((at("2020-01-12T00:00:00Z"), at("2020-01-13T00:00:00Z")));
        assert!(sessions_in(&a.sessions, later).is_empty() && backends_in(&a.backends, later).is_empty());
        assert!(sessions_in(&a.sessions, None).is_empty());
    }
}
