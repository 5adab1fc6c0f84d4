//! `gatewatch baseline backtest`: the service's anomaly detector over a CSV series, offline.

use std::path::Path;
use std::process::ExitCode;

use gatewatch::config::Settings;

pub fn backtest(settings: &Settings, input: &Path, output: &Path) -> ExitCode {
    let params = gatewatch::baseline::detector::Params {
        threshold: settings.baseline.alert_threshold,
        warmup: settings.baseline.warmup,
        ..Default::default()
    };
    match gatewatch::baseline::backtest::run(input, output, params) {
        Ok(summary) => {
            println!(
                "backtest: {} rows, {} at or above the threshold {} → {}",
                summary.rows,
                summary.anomalies,
                params.threshold,
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gatewatch: {error:#}");
            ExitCode::FAILURE
        }
    }
}
