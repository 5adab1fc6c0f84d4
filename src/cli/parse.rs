//! `gatewatch parse`: files (or stdin) to ECS JSON, offline.

use std::process::ExitCode;

use gatewatch::config::Settings;
use gatewatch::parse::Dataset;

use super::EXIT_CONFIG;

pub fn parse(settings: &Settings, files: &[String], dataset: Option<&str>, stats: bool) -> ExitCode {
    let hint = match dataset.map(|d| (d, Dataset::from_name(d))) {
        None => None,
        Some((_, Some(d))) => Some(d),
        Some((name, None)) => {
            eprintln!(
                "gatewatch: --dataset {name:?}: not a dataset (httpaccess, httperror, shell, cron, syslog, log, honeypot)"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match gatewatch::inspect::run(files, &settings.parse_context(), hint, stats) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatewatch: {error}");
            ExitCode::FAILURE
        }
    }
}
