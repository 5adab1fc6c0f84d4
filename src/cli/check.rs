//! `gatewatch check [--connect]`: the configuration, rules and enrichment, offline; then, optionally,
//! the brokers.

use std::path::PathBuf;
use std::process::ExitCode;

use gatewatch::config::Settings;
use gatewatch::detect::RuleSet;
use gatewatch::enrich::Enricher;

use super::EXIT_CONFIG;

pub fn check(settings: &Settings, connect: bool) -> ExitCode {
    let (rules, rule_errors) = RuleSet::load(&settings.detect.rules_dirs, &settings.detect.options());
    if !rule_errors.is_empty() {
        for error in &rule_errors {
            eprintln!("gatewatch: {error}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    println!(
        "rules ok: {} detection rules, {} correlation rules from {:?}",
        rules.rules.len(),
        rules.correlations.len(),
        settings.detect.rules_dirs
    );
    let (enricher, _) = match Enricher::load(settings, true) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("gatewatch: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!(
        "enrichment ok: city db {}, asn db {}, {} feeds, {} indicators",
        off_or(&settings.enrich.geoip.city_db),
        off_or(&settings.enrich.geoip.asn_db),
        settings.enrich.ioc.feeds.len(),
        enricher.indicator_count()
    );
    println!(
        "configuration ok: brokers {}, group {}, input {:?} → {}, {}, {}",
        settings.kafka.brokers,
        settings.kafka.group_id,
        settings.kafka.input_topics,
        settings.output.enriched_topic,
        settings.output.alerts_topic,
        settings.output.dlq_topic
    );
    if connect {
        return check_connection(settings);
    }
    ExitCode::SUCCESS
}

fn check_connection(settings: &Settings) -> ExitCode {
    match gatewatch::kafka::connect(settings, gatewatch::kafka::CONNECT_TIMEOUT) {
        Ok(connected) => {
            let topics: Vec<String> =
                connected.topics.iter().map(|(_, t, partitions)| format!("{t} ({partitions})")).collect();
            println!(
                "kafka ok: {} brokers over {}, topics {}",
                connected.brokers,
                settings.kafka.security_protocol.as_librdkafka(),
                topics.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("gatewatch: {problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An optional path as `check` reports it: quoted, or `off`.
fn off_or(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(|| "off".to_owned(), |p| format!("{p:?}"))
}
