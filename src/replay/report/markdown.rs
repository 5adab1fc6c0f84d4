//! The report as Markdown (for people) and JSON (for tools).

use std::fmt::Write as _;

use super::{ApplianceReport, Finding, Report};

/// A Markdown table row.
pub(super) fn md_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// Text for one Markdown line: newlines folded, backticks made quotes.
pub(super) fn inline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('`', "'")
}

pub(super) fn finding_line(out: &mut String, label: &str, f: &Option<Finding>) {
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
            appliance_section(&mut out, a);
        }
        out
    }
}

/// One appliance's section: verdict and reasons, first findings, behaviours, sources, accounts and
/// back-ends of the window, anomalies and actions.
fn appliance_section(out: &mut String, a: &ApplianceReport) {
    let _ = writeln!(out, "\n## {} — {}\n", a.appliance, a.verdict.as_str());
    for r in &a.reasons {
        let _ = writeln!(out, "- {r}");
    }
    if let Some(w) = &a.window {
        let _ = writeln!(out, "\n**Window of assumed compromise:** {} → {} ({})\n", w.start, w.end, w.basis);
    } else {
        let _ = writeln!(out);
    }
    finding_line(out, "First probe", &a.first_probe);
    finding_line(out, "First exploitation attempt", &a.first_exploit_attempt);
    finding_line(out, "First likely success", &a.first_likely_success);
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
    tables_section(out, a);
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

/// The appliance's source addresses, and the accounts and back-ends active during its window.
fn tables_section(out: &mut String, a: &ApplianceReport) {
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
}
