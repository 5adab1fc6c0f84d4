//! The hunt report as one self-contained HTML file (`--report hunt.html`): no script, no fetch, inline
//! CSS and SVG, readable printed. A fleet overview (one row per appliance: verdict, window, first
//! probe and exploitation), then per appliance that saw anything a timeline from `--from` — alerts as
//! marks per stage, the CPU/memory series with the learned band and the anomalies, the exploit
//! publication and mitigation dates, the assumed-compromise window shaded — followed by the evidence:
//! first findings, post-exploitation behaviours (each once, with its count), sources, the accounts to
//! reset, the back-ends contacted and what to do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::report::{ApplianceReport, Finding, MetricPoint, Report, Verdict};

/// Timeline lanes, in the order an intrusion goes: (stage, label).
const STAGES: [(&str, &str); 8] = [
    ("probe", "probe"),
    ("exploit-attempt", "exploitation attempt"),
    ("exploit-success", "likely success"),
    ("session-hijack", "session hijack"),
    ("post-exploitation", "post-exploitation"),
    ("ioc-match", "indicator match"),
    ("auth-abuse", "auth abuse"),
    ("anomaly", "anomaly"),
];

const WIDTH: f64 = 960.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 12.0;
const LANE: f64 = 18.0;
const CHART: f64 = 80.0;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;margin:24px auto;max-width:1000px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:2px solid #d7dce5;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#5a6478}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e3e7ee;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f4f6fa}
code{font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;word-break:break-all;white-space:pre-wrap}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.verdict.compromised{background:#b3261e}.verdict.likely-compromised{background:#e4572e}
.verdict.attempted{background:#e6a100}.verdict.probed{background:#3f7fbf}.verdict.not-seen{background:#8a94a6}
svg.timeline{width:100%;height:auto;border:1px solid #e3e7ee;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#3a4254}
.lane{fill:#f7f8fb}.window{fill:#b3261e;fill-opacity:.10}.window-edge{stroke:#b3261e;stroke-width:1}
.mitigation{stroke:#1b7f3b;stroke-width:2;stroke-dasharray:5 3}.publication{stroke:#6b7385;stroke-width:1;stroke-dasharray:2 3}
.mark{fill-opacity:.9}.mark.probe{fill:#3f7fbf}.mark.exploit-attempt{fill:#e6a100}.mark.exploit-success{fill:#e4572e}
.mark.session-hijack{fill:#e4572e}.mark.post-exploitation{fill:#b3261e}.mark.ioc-match{fill:#7b4fb3}
.mark.auth-abuse{fill:#2a9d8f}.mark.anomaly{fill:#c2185b}
.band{fill:#3f7fbf;fill-opacity:.18}.series{fill:none;stroke:#1d2330;stroke-width:1.2}
.anomaly-mark{fill:#c2185b}.axis{stroke:#9aa3b5;stroke-width:1}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.count{font-weight:600;text-align:right;white-space:nowrap}
@media print{body{margin:0;max-width:none}section.appliance{break-before:page}svg.timeline{border:none}}
";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// An id usable in a URL fragment.
fn anchor(appliance: &str) -> String {
    let safe: String = appliance.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("appliance-{safe}")
}

fn verdict_badge(v: Verdict) -> String {
    format!("<span class=\"verdict {0}\">{0}</span>", v.as_str())
}

/// Time → x across the drawing area.
struct Scale {
    start: i64,
    end: i64,
}

impl Scale {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let span = (self.end - self.start).max(1) as f64;
        let f = ((t.timestamp() - self.start) as f64 / span).clamp(0.0, 1.0);
        LEFT + f * (WIDTH - LEFT - RIGHT)
    }
}

impl Report {
    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>gatewatch hunt report {}</title>\
             <style>{STYLE}</style></head><body>\n",
            escape(&self.run_id)
        );
        let _ = writeln!(out, "<header><h1>Compromise-window report</h1>");
        let _ = writeln!(
            out,
            "<p class=\"meta\">Replay <code>{}</code> of {} → {}: {} records ({} unparsed); exploit publication taken as {}.</p>",
            escape(&self.run_id),
            escape(&self.from),
            escape(self.to.as_deref().unwrap_or("the end of the data")),
            self.records,
            self.unparsed,
            escape(&self.exploit_publication)
        );
        if !self.alerts.is_empty() {
            let alerts: Vec<String> = self.alerts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            let _ = writeln!(out, "<p class=\"meta\">Alerts: {}.</p>", escape(&alerts.join(", ")));
        }
        let _ = writeln!(out, "</header>");
        self.overview(&mut out);
        for a in self.ordered().into_iter().filter(|a| a.verdict > Verdict::NotSeen || !a.timeline.series.is_empty()) {
            self.appliance(&mut out, a);
        }
        out.push_str("</body></html>\n");
        out
    }

    /// Most serious first, then by name.
    fn ordered(&self) -> Vec<&ApplianceReport> {
        let mut all: Vec<&ApplianceReport> = self.appliances.iter().collect();
        all.sort_by(|a, b| b.verdict.cmp(&a.verdict).then_with(|| a.appliance.cmp(&b.appliance)));
        all
    }

    fn overview(&self, out: &mut String) {
        let _ = writeln!(out, "<section class=\"fleet\"><h2>Fleet</h2><table id=\"fleet\">");
        let _ = writeln!(
            out,
            "<tr><th>appliance</th><th>verdict</th><th>window of assumed compromise</th><th>first probe</th>\
             <th>first exploitation</th><th>behaviours</th><th>sources</th><th>accounts to reset</th><th>back-ends</th></tr>"
        );
        for a in self.ordered() {
            let name = if a.verdict > Verdict::NotSeen || !a.timeline.series.is_empty() {
                format!("<a href=\"#{}\">{}</a>", anchor(&a.appliance), escape(&a.appliance))
            } else {
                escape(&a.appliance)
            };
            let window =
                a.window.as_ref().map_or("—".to_owned(), |w| format!("{} → {}", escape(&w.start), escape(&w.end)));
            let first = |f: &Option<Finding>| f.as_ref().map_or("—".to_owned(), |f| escape(&f.at));
            let _ = writeln!(
                out,
                "<tr class=\"row {}\"><td>{name}</td><td>{}</td><td>{window}</td><td>{}</td><td>{}</td>\
                 <td class=\"count\">{}</td><td class=\"count\">{}</td><td class=\"count\">{}</td><td class=\"count\">{}</td></tr>",
                a.verdict.as_str(),
                verdict_badge(a.verdict),
                first(&a.first_probe),
                first(&a.first_exploit_attempt),
                a.behaviours.len(),
                a.sources.len(),
                a.sessions_in_window.len(),
                a.backends_in_window.len()
            );
        }
        let _ = writeln!(out, "</table></section>");
    }

    fn appliance(&self, out: &mut String, a: &ApplianceReport) {
        let _ = writeln!(
            out,
            "<section class=\"appliance\" id=\"{}\"><h2>{} {}</h2>",
            anchor(&a.appliance),
            escape(&a.appliance),
            verdict_badge(a.verdict)
        );
        let _ = writeln!(out, "<ul class=\"reasons\">");
        for r in &a.reasons {
            let _ = writeln!(out, "<li>{}</li>", escape(r));
        }
        let _ = writeln!(out, "</ul>");
        if let Some(w) = &a.window {
            let _ = writeln!(
                out,
                "<p><strong>Window of assumed compromise:</strong> {} → {} ({})</p>",
                escape(&w.start),
                escape(&w.end),
                escape(&w.basis)
            );
        }
        self.timeline(out, a);
        evidence(out, a);
        let _ = writeln!(out, "</section>");
    }

    /// The appliance's timeline: lanes of alert marks, then one chart per metric series.
    fn timeline(&self, out: &mut String, a: &ApplianceReport) {
        let t = &a.timeline;
        let Some(start) = parse(&self.from) else { return };
        let mut end = self.to.as_deref().and_then(parse).or(t.span.map(|s| s.1)).unwrap_or(start);
        for extra in [a.window.as_ref().and_then(|w| parse(&w.end)), a.mitigated.as_deref().and_then(parse)] {
            end = end.max(extra.unwrap_or(end));
        }
        if end <= start {
            end = start + chrono::Duration::hours(1);
        }
        let scale = Scale { start: start.timestamp(), end: end.timestamp() };
        let lanes: Vec<(&str, &str)> =
            STAGES.iter().copied().filter(|(stage, _)| t.marks.iter().any(|(_, s)| s == stage)).collect();
        let top = 22.0;
        let charts_top = top + lanes.len() as f64 * LANE + 8.0;
        let axis_y = charts_top + t.series.len() as f64 * (CHART + 16.0) + 4.0;
        let height = axis_y + 20.0;
        let _ = writeln!(
            out,
            "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" \
             aria-label=\"timeline of {}\">",
            escape(&a.appliance)
        );
        self.markers(out, &scale, a, (start, end), top, axis_y);
        // Alert marks: one bar per pixel column and stage, with how many alerts it stands for.
        for (i, (stage, label)) in lanes.iter().enumerate() {
            lane(out, &scale, &t.marks, (stage, label), top + i as f64 * LANE);
        }
        // Metric series: the learned band (outside warm-up), the values, the anomalies.
        for (i, (metric, points)) in t.series.iter().enumerate() {
            let y0 = charts_top + i as f64 * (CHART + 16.0);
            chart(out, &scale, metric, points, y0, &a.anomalies);
        }
        axis(out, &scale, start, axis_y);
        let _ = writeln!(out, "</svg>");
        let legend: Vec<String> =
            lanes.iter().map(|(s, l)| format!("<span><svg width=\"10\" height=\"10\"><rect class=\"mark {s}\" width=\"10\" height=\"10\"/></svg> {l}</span>")).collect();
        let _ = writeln!(
            out,
            "<p class=\"legend\">{} <span>shaded: assumed compromise</span> <span>green dashes: mitigation</span> \
             <span>grey dots: exploit publication</span> <span>blue band: learned usual range</span></p>",
            legend.join(" ")
        );
    }

    /// The window of assumed compromise, the exploit publication and the mitigation.
    fn markers(
        &self,
        out: &mut String,
        scale: &Scale,
        a: &ApplianceReport,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        top: f64,
        axis_y: f64,
    ) {
        // The window, and the dates that decide the verdict.
        if let Some((ws, we)) = a.window.as_ref().and_then(|w| Some((parse(&w.start)?, parse(&w.end)?))) {
            let (x0, x1) = (scale.x(ws), scale.x(we));
            let _ = writeln!(
                out,
                "<rect class=\"window\" x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{:.1}\"><title>assumed compromise {} → {}</title></rect>",
                top - 6.0,
                (x1 - x0).max(1.5),
                axis_y - top + 6.0,
                ws.to_rfc3339(),
                we.to_rfc3339()
            );
            let _ = writeln!(out, "<text x=\"{:.1}\" y=\"12\">assumed compromise</text>", x0.min(WIDTH - 130.0));
        }
        if let Some(p) = parse(&self.exploit_publication).filter(|p| *p >= start && *p <= end) {
            let x = scale.x(p);
            let _ = writeln!(
                out,
                "<line class=\"publication\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{axis_y}\"><title>exploit published {}</title></line>",
                top - 6.0,
                escape(&self.exploit_publication)
            );
        }
        if let Some(m) = a.mitigated.as_deref().and_then(parse) {
            let x = scale.x(m);
            let _ = writeln!(
                out,
                "<line class=\"mitigation\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{axis_y}\"><title>mitigated {}</title></line>",
                top - 6.0,
                m.to_rfc3339()
            );
            let _ =
                writeln!(out, "<text x=\"{:.1}\" y=\"{}\">mitigated</text>", (x + 3.0).min(WIDTH - 60.0), axis_y - 4.0);
        }
    }
}

/// One stage's lane of alert marks: one bar per pixel column, with how many alerts it stands for.
fn lane(
    out: &mut String,
    scale: &Scale,
    marks: &[(DateTime<Utc>, &'static str)],
    (stage, label): (&str, &str),
    y: f64,
) {
    let _ = writeln!(
            out,
            "<rect class=\"lane\" x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"/><text x=\"4\" y=\"{:.1}\">{label}</text>",
            WIDTH - LEFT - RIGHT,
            LANE - 4.0,
            y + LANE - 8.0
        );
    let mut columns: BTreeMap<i64, (u64, DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for (at, _) in marks.iter().filter(|(_, s)| *s == stage) {
        let c = columns.entry(scale.x(*at).round() as i64).or_insert((0, *at, *at));
        c.0 += 1;
        c.1 = c.1.min(*at);
        c.2 = c.2.max(*at);
    }
    for (x, (n, first, last)) in columns {
        let _ = writeln!(
                out,
                "<rect class=\"mark {stage}\" x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"{:.1}\"><title>{n} {label} alert(s) {} → {}</title></rect>",
                x as f64 - 1.5,
                y + 1.0,
                LANE - 6.0,
                first.to_rfc3339(),
                last.to_rfc3339()
            );
    }
}

/// The time axis with six labels.
fn axis(out: &mut String, scale: &Scale, start: DateTime<Utc>, axis_y: f64) {
    let _ =
        writeln!(out, "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{axis_y}\" y2=\"{axis_y}\"/>", WIDTH - RIGHT);
    for k in 0..=5 {
        let at = DateTime::from_timestamp(scale.start + (scale.end - scale.start) * k / 5, 0).unwrap_or(start);
        let x = scale.x(at);
        let anchor = match k {
            0 => "start",
            5 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            axis_y + 14.0,
            at.format("%Y-%m-%d %H:%M")
        );
    }
}

/// One metric chart (fractions 0..1), downsampled to one point per pixel column.
fn chart(out: &mut String, scale: &Scale, metric: &str, points: &[MetricPoint], y0: f64, anomalies: &[Finding]) {
    let y = |v: f64| y0 + CHART - v.clamp(0.0, 1.0) * CHART;
    let _ = writeln!(
        out,
        "<rect class=\"lane\" x=\"{LEFT}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{CHART}\"/><text x=\"4\" y=\"{:.1}\">{} (0–100%)</text>",
        WIDTH - LEFT - RIGHT,
        y0 + 14.0,
        escape(metric)
    );
    // Per column: mean value, the band's lowest low and highest high, warming if all were.
    let mut columns: BTreeMap<i64, (f64, u32, f64, f64, bool)> = BTreeMap::new();
    for p in points {
        let c = columns.entry(scale.x(p.at).round() as i64).or_insert((0.0, 0, f64::MAX, f64::MIN, true));
        c.0 += p.value;
        c.1 += 1;
        if !p.warming {
            c.2 = c.2.min(p.low);
            c.3 = c.3.max(p.high);
        }
        c.4 &= p.warming;
    }
    // The band, in runs of learned columns.
    let learned: Vec<(f64, f64, f64)> =
        columns.iter().filter(|(_, c)| !c.4).map(|(x, c)| (*x as f64, c.2, c.3)).collect();
    for run in learned.chunk_by(|a, b| b.0 - a.0 <= 6.0) {
        let mut path = String::new();
        for (i, (x, _, high)) in run.iter().enumerate() {
            let _ = write!(path, "{}{x:.1},{:.1}", if i == 0 { "M" } else { " L" }, y(*high));
        }
        for (x, low, _) in run.iter().rev() {
            let _ = write!(path, " L{x:.1},{:.1}", y(*low));
        }
        let _ = writeln!(out, "<path class=\"band\" d=\"{path} Z\"/>");
    }
    let line: Vec<String> = columns.iter().map(|(x, c)| format!("{x},{:.1}", y(c.0 / f64::from(c.1)))).collect();
    let _ = writeln!(
        out,
        "<polyline class=\"series\" points=\"{}\"><title>{}</title></polyline>",
        line.join(" "),
        escape(metric)
    );
    for f in anomalies.iter().filter(|f| f.rule.ends_with(&format!("-{metric}"))) {
        let Some(at) = parse(&f.at) else { continue };
        let x = scale.x(at);
        let _ = writeln!(
            out,
            "<circle class=\"anomaly-mark\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\"><title>anomaly {}: {}</title></circle>",
            y0 + 6.0,
            escape(&f.at),
            escape(&f.evidence.join(" "))
        );
    }
}

/// A titled table of escaped cells, or "None seen." when there are no rows.
fn table(out: &mut String, title: &str, class: &str, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = writeln!(out, "<h3>{}</h3>", escape(title));
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        let _ = writeln!(out, "<p>None seen.</p>");
        return;
    }
    let head: String = headers.iter().map(|h| format!("<th>{}</th>", escape(h))).collect();
    let _ = writeln!(out, "<table class=\"{class}\"><tr>{head}</tr>");
    for cells in rows {
        let cells: String = cells.iter().map(|c| format!("<td>{}</td>", escape(c))).collect();
        let _ = writeln!(out, "<tr>{cells}</tr>");
    }
    let _ = writeln!(out, "</table>");
}

fn code_cell(lines: &[String]) -> String {
    lines.iter().map(|l| format!("<code>{}</code>", escape(l.trim()))).collect::<Vec<_>>().join("<br>")
}

/// The evidence after the timeline.
fn evidence(out: &mut String, a: &ApplianceReport) {
    let _ = writeln!(out, "<h3>First findings</h3><table class=\"findings\"><tr><th></th><th>when</th><th>rule</th><th>evidence</th></tr>");
    for (label, f) in [
        ("first probe", &a.first_probe),
        ("first exploitation attempt", &a.first_exploit_attempt),
        ("first likely success", &a.first_likely_success),
    ] {
        match f {
            Some(f) => {
                let _ = writeln!(
                    out,
                    "<tr><th>{label}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&f.at),
                    escape(&f.rule),
                    code_cell(&f.evidence)
                );
            }
            None => {
                let _ = writeln!(out, "<tr><th>{label}</th><td colspan=\"3\">none</td></tr>");
            }
        }
    }
    let _ = writeln!(out, "</table>");
    if !a.behaviours.is_empty() {
        let matches: u64 = a.behaviours.iter().map(|b| b.count).sum();
        let _ = writeln!(
            out,
            "<h3>Post-exploitation behaviours</h3><p class=\"meta\">{} distinct behaviours from {} alerts ({matches} matches); \
             each is listed once.</p><table class=\"behaviours\"><tr><th>count</th><th>first</th><th>last</th><th>rule</th><th>behaviour</th></tr>",
            a.behaviours.len(),
            a.post_exploitation.len()
        );
        for b in &a.behaviours {
            let _ = writeln!(
                out,
                "<tr class=\"behaviour\"><td class=\"count\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                b.count,
                escape(&b.first),
                escape(&b.last),
                escape(&b.rule),
                escape(&b.behaviour)
            );
        }
        let _ = writeln!(out, "</table>");
    }
    if !a.sources.is_empty() {
        let headers = ["address", "first", "last", "stages", "country / city", "AS", "indicators"];
        table(out, "Source addresses", "sources", &headers, a.sources.iter().map(|s| s.cells().to_vec()));
    }
    if a.window.is_some() {
        let headers = ["user", "first", "last", "sessions", "client addresses"];
        let rows = a.sessions_in_window.iter().map(|s| s.cells().to_vec());
        table(out, "Accounts to reset (active during the window)", "accounts", &headers, rows);
        let headers = ["address", "ports", "first", "last", "users", "connections"];
        let rows = a.backends_in_window.iter().map(|b| b.cells().to_vec());
        table(out, "Back-end systems contacted during the window", "backends", &headers, rows);
    }
    if !a.anomalies.is_empty() {
        let _ = writeln!(out, "<h3>CPU / memory anomalies</h3><ul class=\"anomalies\">");
        for f in &a.anomalies {
            let _ = writeln!(
                out,
                "<li>{} <code>{}</code>: {}</li>",
                escape(&f.at),
                escape(&f.rule),
                escape(&f.evidence.join(" "))
            );
        }
        let _ = writeln!(out, "</ul>");
    }
    if !a.other_alerts.is_empty() {
        let others = a.other_alerts.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "<p>Other alerts: {}.</p>", escape(&others));
    }
    let _ = writeln!(out, "<h3>Recommended actions</h3><ol class=\"actions\">");
    for action in &a.actions {
        let _ = writeln!(out, "<li>{}</li>", escape(action));
    }
    let _ = writeln!(out, "</ol>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_anchors_are_safe() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(anchor("adc dc1/01"), "appliance-adc-dc1-01");
    }
}
