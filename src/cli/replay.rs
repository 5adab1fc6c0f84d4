//! `gatewatch replay`: history through the live rules and baselines, with the compromise-window report.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use gatewatch::config::Settings;
use gatewatch::replay::{Options, Source};

use super::{parse_mitigation, parse_time};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["kafka", "input"])))]
pub struct ReplayArgs {
    /// Start of the range (RFC 3339, or a date: 2019-12-17).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub from: DateTime<Utc>,
    /// End of the range, exclusive (default: the end of the data).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub to: Option<DateTime<Utc>>,
    /// Read a Kafka topic (the first of kafka.input_topics, or --topic) with an ephemeral group that
    /// never commits.
    #[arg(long)]
    pub kafka: bool,
    #[arg(long, requires = "kafka", value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Read files and globs (plain, .gz, .zst); `-` reads standard input.
    #[arg(long, num_args = 1.., value_name = "PATH|-")]
    pub input: Vec<String>,
    /// Metric samples (NDJSON, as on baseline.metrics_topic) for the baselines.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Write the alerts as NDJSON to FILE (`-`: stdout) instead of the alerts topic.
    #[arg(long = "alerts-out", value_name = "FILE|-")]
    pub alerts_out: Option<String>,
    /// Also write every enriched event as NDJSON to FILE (`-`: stdout), as the enriched topic
    /// carries it (re-ingesting history into a SIEM).
    #[arg(long = "enriched-out", value_name = "FILE|-")]
    pub enriched_out: Option<String>,
    /// Write the compromise-window report (FILE.md, FILE.json, or FILE.html: one self-contained
    /// page with a timeline per appliance; `-`: Markdown on stdout).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// When an appliance's mitigation or patch was in place (repeatable): HOST=DATE.
    #[arg(long = "mitigation-date", value_parser = parse_mitigation, value_name = "HOST=DATE")]
    pub mitigation_date: Vec<(String, DateTime<Utc>)>,
    /// Pin the indicator feeds: DIR is created from the configured feeds (and the time) when missing,
    /// and used instead of them when present, so the hunt can be repeated exactly.
    #[arg(long = "feeds-snapshot", value_name = "DIR")]
    pub feeds_snapshot: Option<PathBuf>,
    /// When exploits became public: mitigation after it means "assume compromise".
    #[arg(long = "exploit-published", value_parser = parse_time, default_value = "2020-01-10", value_name = "TIME")]
    pub exploit_published: DateTime<Utc>,
    /// Memory for putting file records in event-time order; beyond it, sorted runs go to temporary
    /// files (in TMPDIR) and are merged, so a replay's memory does not grow with its input.
    #[arg(long = "sort-memory", default_value = "64MiB", value_name = "SIZE")]
    pub sort_memory: bytesize::ByteSize,
}

pub fn replay(settings: &Settings, args: ReplayArgs) -> ExitCode {
    let source = if args.kafka { Source::Kafka { topic: args.topic } } else { Source::Files(args.input) };
    let options = Options {
        from: args.from,
        to: args.to,
        source,
        metrics: args.metrics,
        alerts_out: args.alerts_out,
        enriched_out: args.enriched_out,
        report: args.report,
        mitigations: args.mitigation_date.into_iter().collect(),
        publication: args.exploit_published,
        feeds_snapshot: args.feeds_snapshot,
        sort_memory: usize::try_from(args.sort_memory.as_u64()).unwrap_or(usize::MAX),
        progress: true,
    };
    match gatewatch::replay::run(settings, &options) {
        Ok((summary, report)) => {
            eprintln!(
                "replay {}: {} records ({} unparsed), {} metric samples",
                summary.run_id, summary.records, summary.unparsed, summary.samples
            );
            if summary.sort_runs > 0 {
                eprintln!("  ordered through {} sorted runs on disk (--sort-memory)", summary.sort_runs);
            }
            for (stage, n) in &summary.alerts {
                eprintln!("  alerts {stage:<18} {n}");
            }
            for a in &report.appliances {
                let (records, alerts) = summary.appliances.get(&a.appliance).copied().unwrap_or_default();
                eprintln!("  {:<24} {records:>8} records {alerts:>6} alerts  {}", a.appliance, a.verdict.as_str());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gatewatch: replay: {error:#}");
            ExitCode::FAILURE
        }
    }
}
