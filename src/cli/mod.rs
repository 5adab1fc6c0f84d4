//! The `gatewatch` command line: the arguments, and one module per command. `main.rs` dispatches.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

pub mod baseline;
pub mod check;
pub mod parse;
pub mod reload;
pub mod replay;
pub mod rules;
pub mod run;

/// Exit status of a configuration error or a refused connection (one line names the setting).
pub const EXIT_CONFIG: u8 = 2;
/// Exit status of a stop whose drain did not finish within `pipeline.shutdown_timeout`: the records
/// not delivered are replayed by the next owner.
pub const EXIT_DRAIN_TIMED_OUT: u8 = 3;

/// Citrix ADC / NetScaler syslog from Kafka → ECS events, alerts and a dead-letter topic, at least once.
#[derive(Parser)]
#[command(name = "gatewatch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file layered over config/default.toml; GATEWATCH__SECTION__KEY variables override both.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Consume the input topics and publish events, alerts and dead letters until SIGTERM/SIGINT.
    Run,
    /// Validate the configuration without touching the network; non-zero exit names the bad key or file.
    Check {
        /// Also connect with the configured Kafka clients: brokers, TLS, login, topics (exist, have
        /// leaders, readable), the group's offsets and the producer; each failure on one line naming
        /// the setting. Publishes nothing.
        #[arg(long)]
        connect: bool,
    },
    /// Work with the detection rules.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Parse log files (or stdin) offline and print one ECS JSON object per record.
    Parse {
        /// Files to read; `-` or none reads stdin. Multi-line records (bash commands, honeypot dumps) are joined.
        #[arg(value_name = "FILE")]
        files: Vec<String>,
        /// The dataset of every input (httpaccess, httperror, shell, cron, syslog, log, honeypot);
        /// default: guessed from each file name.
        #[arg(long, value_name = "NAME")]
        dataset: Option<String>,
        /// Print counts per dataset (parsed, unknown, errors) instead of the events.
        #[arg(long)]
        stats: bool,
    },
    /// Replay history through the live rules and baselines; write the alerts and a compromise-window
    /// report per appliance.
    Replay(replay::ReplayArgs),
    /// Work with the CPU/memory baselines.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
}

#[derive(Subcommand)]
pub enum BaselineAction {
    /// Run the service's anomaly detector over a CSV series offline (rows `timestamp,value`), writing
    /// `timestamp,value,anomaly_score`; `baseline.alert_threshold` and `baseline.warmup` apply.
    Backtest {
        #[arg(long, value_name = "FILE.csv")]
        input: PathBuf,
        #[arg(long, value_name = "FILE.csv")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RulesAction {
    /// Run every rule's own examples (lines it must fire on, and must not); non-zero exit on a failure.
    Test,
}

/// A command-line value that does not parse.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0:?} is not an RFC 3339 time or a YYYY-MM-DD date")]
    Time(String),
    #[error("{0:?} is not HOST=DATE")]
    Mitigation(String),
    #[error("{0:?}: the host is empty")]
    EmptyHost(String),
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, ArgError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| ArgError::Time(text.to_owned()))
}

fn parse_mitigation(text: &str) -> Result<(String, DateTime<Utc>), ArgError> {
    let (host, date) = text.split_once('=').ok_or_else(|| ArgError::Mitigation(text.to_owned()))?;
    if host.is_empty() {
        return Err(ArgError::EmptyHost(text.to_owned()));
    }
    Ok((host.to_owned(), parse_time(date)?))
}
