//! `gatewatch rules test`: every rule's own examples.

use std::process::ExitCode;

use gatewatch::config::Settings;
use gatewatch::enrich::Enricher;

use super::EXIT_CONFIG;

pub fn test(settings: &Settings) -> ExitCode {
    let (enricher, _) = match Enricher::load(settings, false) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("gatewatch: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let report = gatewatch::detect::examples::run(
        &settings.detect.rules_dirs,
        &settings.detect.options(),
        &settings.parse_context(),
        Some(&enricher),
    );
    for failure in &report.failures {
        println!("FAIL {failure}");
    }
    for missing in &report.missing {
        println!("WARN {missing}: needs at least one `match` and one `no_match` example");
    }
    println!(
        "rules: {} rules, {} examples, {} passed, {} failed",
        report.rules,
        report.examples,
        report.examples - report.failures.len().min(report.examples),
        report.failures.len()
    );
    if report.failures.is_empty() && report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
