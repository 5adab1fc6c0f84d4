//! The `gatewatch` command line: `run` the service, `check` the configuration offline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use gatewatch::config::Settings;
use gatewatch::detect::RuleSet;
use gatewatch::enrich::{Enricher, ReloadError, ReloadEvent};
use gatewatch::metrics::{Metrics, ReloadLabels};
use gatewatch::offsets::Stop;
use gatewatch::pipeline::{Outcome, Pipeline};
use gatewatch::source::Health;

/// mimalloc: the record path allocates per record (documents, strings), and glibc's allocator spent a
/// third of a replay's time in malloc/free (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Citrix ADC / NetScaler syslog from Kafka → ECS events, alerts and a dead-letter topic, at least once.
#[derive(Parser)]
#[command(name = "gatewatch", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Configuration file layered over config/default.toml; GATEWATCH__SECTION__KEY variables override both.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    #[command(group(clap::ArgGroup::new("source").required(true).args(["kafka", "input"])))]
    Replay {
        /// Start of the range (RFC 3339, or a date: 2019-12-17).
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        from: DateTime<Utc>,
        /// End of the range, exclusive (default: the end of the data).
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        to: Option<DateTime<Utc>>,
        /// Read a Kafka topic (the first of kafka.input_topics, or --topic) with an ephemeral group that
        /// never commits.
        #[arg(long)]
        kafka: bool,
        #[arg(long, requires = "kafka", value_name = "TOPIC")]
        topic: Option<String>,
        /// Read files and globs (plain, .gz, .zst); `-` reads standard input.
        #[arg(long, num_args = 1.., value_name = "PATH|-")]
        input: Vec<String>,
        /// Metric samples (NDJSON, as on baseline.metrics_topic) for the baselines.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
        /// Write the alerts as NDJSON to FILE (`-`: stdout) instead of the alerts topic.
        #[arg(long = "alerts-out", value_name = "FILE|-")]
        alerts_out: Option<String>,
        /// Also write every enriched event as NDJSON to FILE (`-`: stdout), as the enriched topic
        /// carries it (re-ingesting history into a SIEM).
        #[arg(long = "enriched-out", value_name = "FILE|-")]
        enriched_out: Option<String>,
        /// Write the compromise-window report (FILE.md, FILE.json, or FILE.html: one self-contained
        /// page with a timeline per appliance; `-`: Markdown on stdout).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// When an appliance's mitigation or patch was in place (repeatable): HOST=DATE.
        #[arg(long = "mitigation-date", value_parser = parse_mitigation, value_name = "HOST=DATE")]
        mitigation_date: Vec<(String, DateTime<Utc>)>,
        /// Pin the indicator feeds: DIR is created from the configured feeds (and the time) when missing,
        /// and used instead of them when present, so the hunt can be repeated exactly.
        #[arg(long = "feeds-snapshot", value_name = "DIR")]
        feeds_snapshot: Option<PathBuf>,
        /// When exploits became public: mitigation after it means "assume compromise".
        #[arg(long = "exploit-published", value_parser = parse_time, default_value = "2020-01-10", value_name = "TIME")]
        exploit_published: DateTime<Utc>,
        /// Memory for putting file records in event-time order; beyond it, sorted runs go to temporary
        /// files (in TMPDIR) and are merged, so a replay's memory does not grow with its input.
        #[arg(long = "sort-memory", default_value = "64MiB", value_name = "SIZE")]
        sort_memory: bytesize::ByteSize,
    },
    /// Work with the CPU/memory baselines.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
}

#[derive(Subcommand)]
enum BaselineAction {
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
enum RulesAction {
    /// Run every rule's own examples (lines it must fire on, and must not); non-zero exit on a failure.
    Test,
}

fn main() -> ExitCode {
    gatewatch::secrets::install_panic_hook();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gatewatch: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Rules { action: RulesAction::Test } => {
            let (enricher, _) = match Enricher::load(&settings, false) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("gatewatch: {error}");
                    return ExitCode::from(2);
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
        Command::Check { connect } => {
            let (rules, rule_errors) =
                gatewatch::detect::RuleSet::load(&settings.detect.rules_dirs, &settings.detect.options());
            if !rule_errors.is_empty() {
                for error in &rule_errors {
                    eprintln!("gatewatch: {error}");
                }
                return ExitCode::from(2);
            }
            println!(
                "rules ok: {} detection rules, {} correlation rules from {:?}",
                rules.rules.len(),
                rules.correlations.len(),
                settings.detect.rules_dirs
            );
            let (enricher, _) = match gatewatch::enrich::Enricher::load(&settings, true) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("gatewatch: {error}");
                    return ExitCode::from(2);
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
            if !connect {
                return ExitCode::SUCCESS;
            }
            match gatewatch::kafka::connect(&settings, gatewatch::kafka::CONNECT_TIMEOUT) {
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
        Command::Parse { files, dataset, stats } => {
            let hint = match dataset.as_deref().map(|d| (d, gatewatch::parse::Dataset::from_name(d))) {
                None => None,
                Some((_, Some(d))) => Some(d),
                Some((name, None)) => {
                    eprintln!("gatewatch: --dataset {name:?}: not a dataset (httpaccess, httperror, shell, cron, syslog, log, honeypot)");
                    return ExitCode::from(2);
                }
            };
            match gatewatch::inspect::run(&files, &settings.parse_context(), hint, stats) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("gatewatch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Baseline { action: BaselineAction::Backtest { input, output } } => {
            let params = gatewatch::baseline::detector::Params {
                threshold: settings.baseline.alert_threshold,
                warmup: settings.baseline.warmup,
                ..Default::default()
            };
            match gatewatch::baseline::backtest::run(&input, &output, params) {
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
        Command::Replay {
            from,
            to,
            kafka,
            topic,
            input,
            metrics,
            alerts_out,
            enriched_out,
            report,
            mitigation_date,
            exploit_published,
            feeds_snapshot,
            sort_memory,
        } => {
            let options = gatewatch::replay::Options {
                from,
                to,
                source: if kafka {
                    gatewatch::replay::Source::Kafka { topic }
                } else {
                    gatewatch::replay::Source::Files(input)
                },
                metrics,
                alerts_out,
                enriched_out,
                report,
                mitigations: mitigation_date.into_iter().collect(),
                publication: exploit_published,
                feeds_snapshot,
                sort_memory: usize::try_from(sort_memory.as_u64()).unwrap_or(usize::MAX),
                progress: true,
            };
            match gatewatch::replay::run(&settings, &options) {
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
                        eprintln!(
                            "  {:<24} {records:>8} records {alerts:>6} alerts  {}",
                            a.appliance,
                            a.verdict.as_str()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("gatewatch: replay: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => match run(settings) {
            Ok(_) => ExitCode::SUCCESS,
            // Already logged, on one line naming the setting.
            Err(error) if error.downcast_ref::<gatewatch::kafka::Problem>().is_some() => ExitCode::from(2),
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "gatewatch stopped on a failure; a restart replays from the last commit"
                );
                ExitCode::FAILURE
            }
        },
    }
}

fn run(settings: Settings) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("gatewatch-rt")
        .build()
        .context("starting the async runtime")?;
    let metrics = Metrics::new();
    let telemetry = {
        let _guard = runtime.enter();
        gatewatch::telemetry::init(&settings, &metrics)?
    };
    let health = Arc::new(Health::default());
    health.beat();
    let stop = Stop::new();
    let shutdown_timeout = settings.pipeline.shutdown_timeout;

    let admin = gatewatch::admin::spawn(&settings.admin, metrics.clone(), health.clone())
        .with_context(|| format!("admin.listen = \"{}\": cannot listen", settings.admin.listen))?;
    preflight(&settings)?;
    let (enricher, events) = Enricher::load(&settings, false).context("loading enrichment databases")?;
    let enricher = Arc::new(enricher);
    report_reloads(&metrics, &health, events);
    metrics.ioc_indicators.set(enricher.indicator_count() as i64);
    let reload_interval = settings.enrich.reload_interval;
    let (reloader, reload_metrics, reload_stop) = (enricher.clone(), metrics.clone(), stop.clone());
    let reload_health = health.clone();
    std::thread::Builder::new().name("gatewatch-reload".into()).spawn(move || {
        let mut waited = Duration::ZERO;
        while !reload_stop.is_stopping() {
            std::thread::sleep(Duration::from_millis(200));
            waited += Duration::from_millis(200);
            if waited >= reload_interval {
                waited = Duration::ZERO;
                // A panic in one round is reported (log, metric, /readyz) and the next round runs.
                let events = supervised("reloader", || reloader.reload())
                    .unwrap_or_else(|error| vec![ReloadEvent { component: "reloader".into(), outcome: Err(error) }]);
                let panicked = events.iter().any(|e| e.component == "reloader");
                report_reloads(&reload_metrics, &reload_health, events);
                if !panicked {
                    reload_health.reloaded("reloader", Ok(()));
                }
                reload_metrics.ioc_indicators.set(reloader.indicator_count() as i64);
            }
        }
    })?;
    let (rules, rule_errors) = RuleSet::load(&settings.detect.rules_dirs, &settings.detect.options());
    report_rules(&metrics, &health, &rules, rule_errors);
    let rules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let (rules_reloader, rules_metrics, rules_stop) = (rules.clone(), metrics.clone(), stop.clone());
    let rules_health = health.clone();
    let (rule_dirs, rule_options) = (settings.detect.rules_dirs.clone(), settings.detect.options());
    std::thread::Builder::new().name("gatewatch-rules".into()).spawn(move || {
        let mut stamp = rules_stamp(&rule_dirs);
        let mut waited = Duration::ZERO;
        while !rules_stop.is_stopping() {
            std::thread::sleep(Duration::from_millis(200));
            waited += Duration::from_millis(200);
            if waited < reload_interval {
                continue;
            }
            waited = Duration::ZERO;
            let now = rules_stamp(&rule_dirs);
            if now != stamp {
                stamp = now;
                match supervised("rules", || RuleSet::load(&rule_dirs, &rule_options)) {
                    Ok((set, errors)) => {
                        report_rules(&rules_metrics, &rules_health, &set, errors);
                        rules_reloader.store(Arc::new(set));
                    }
                    Err(error) => report_reloads(
                        &rules_metrics,
                        &rules_health,
                        vec![ReloadEvent { component: "rules".into(), outcome: Err(error) }],
                    ),
                }
            }
        }
    })?;
    let nitro = gatewatch::baseline::nitro::spawn(&settings, metrics.clone(), stop.clone())
        .context("starting the NITRO poller")?;
    let pipeline = Pipeline::start(
        settings,
        enricher,
        rules,
        runtime.handle().clone(),
        metrics.clone(),
        health.clone(),
        stop.clone(),
    )
    .context("connecting to Kafka")?;

    // Readiness: does the producer reach a broker? Probed off the runtime (the call blocks).
    let sink = pipeline.sink();
    let probe_stop = stop.clone();
    let probe_health = health.clone();
    let probe_metrics = metrics.clone();
    std::thread::Builder::new().name("gatewatch-probe".into()).spawn(move || {
        while !probe_stop.is_stopping() {
            let reachable = sink.reaches_broker(Duration::from_secs(5));
            if probe_health.producer_reachable.swap(reachable, Ordering::Relaxed) != reachable {
                if reachable {
                    tracing::info!("the producer reaches the brokers again");
                } else {
                    tracing::warn!("the producer does not reach the brokers: not ready");
                }
            }
            // Also covers assignment changes: this runs every 2 s.
            probe_metrics.ready.set(i64::from(probe_health.ready()));
            for _ in 0..20 {
                if probe_stop.is_stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })?;

    let signal_stop = stop.clone();
    runtime.spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        signal_stop.request();
        // The drain is bounded by shutdown_timeout; this bounds the final commit and close as well.
        tokio::time::sleep(shutdown_timeout + Duration::from_secs(5)).await;
        tracing::error!("shutdown bound exceeded; exiting, uncommitted records will be replayed");
        std::process::exit(0);
    });

    let poller = std::thread::Builder::new().name("gatewatch-poll".into()).spawn(move || pipeline.run())?;
    let outcome = poller.join().map_err(|_| anyhow::anyhow!("the polling thread panicked"))?;
    if let Some(nitro) = nitro {
        let _ = nitro.join();
    }
    {
        let _guard = runtime.enter();
        telemetry.shutdown();
    }
    admin.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(outcome?)
}

/// Connects once before anything starts: brokers that refuse our TLS or login stop the service with
/// one line naming the setting (retrying cannot help); unreachable brokers or missing topics are
/// warnings (librdkafka keeps retrying, and the topics may be created later).
fn preflight(settings: &Settings) -> anyhow::Result<()> {
    let problems = match gatewatch::kafka::connect(settings, gatewatch::kafka::CONNECT_TIMEOUT) {
        Ok(connected) => {
            tracing::info!(brokers = connected.brokers, "kafka connection checked");
            return Ok(());
        }
        Err(problems) => problems,
    };
    if let Some(refused) = problems.iter().find(|p| p.refused) {
        tracing::error!(setting = %refused.setting, "{}", refused.message);
        return Err(refused.clone().into());
    }
    for problem in problems {
        tracing::warn!(setting = %problem.setting, "{}; starting anyway", problem.message);
    }
    Ok(())
}

/// A time on the command line: RFC 3339, or a date (midnight UTC).
/// An optional path as `check` reports it: quoted, or `off`.
fn off_or(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(|| "off".to_owned(), |p| format!("{p:?}"))
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

/// Every rule file's identity, to notice edits, additions and removals (a ConfigMap update swaps the
/// `..data` link, which changes what each file's symlink resolves to).
fn rules_stamp(dirs: &[PathBuf]) -> Vec<(PathBuf, gatewatch::enrich::FileStamp)> {
    gatewatch::detect::rule_files(dirs)
        .into_iter()
        .map(|path| {
            let stamp = gatewatch::enrich::FileStamp::of(&path);
            (path, stamp)
        })
        .collect()
}

/// Runs one round of background work; a panic becomes an error naming `what` instead of ending the
/// thread silently.
fn supervised<T>(what: &str, work: impl FnOnce() -> T) -> Result<T, ReloadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        ReloadError::Panicked { what: what.to_owned(), message }
    })
}

/// Logs and counts a rules (re)load; broken files are reported and the others run.
fn report_rules(metrics: &Metrics, health: &Health, set: &RuleSet, errors: Vec<gatewatch::detect::sigma::RuleError>) {
    metrics.rules_loaded.set(set.len() as i64);
    let outcome = if errors.is_empty() { "ok" } else { "error" };
    health.reloaded("rules", errors.first().map(|e| e.to_string()).as_deref().map_or(Ok(()), Err));
    metrics.reloads.get_or_create(&ReloadLabels { component: "rules".into(), outcome }).inc();
    for error in errors {
        tracing::error!(file = %error.file, line = ?error.line, reason = %error.reason, "rule file not loaded");
    }
    tracing::info!(rules = set.rules.len(), correlations = set.correlations.len(), "rules loaded");
}

/// Logs and counts what a (re)load did, and keeps `/readyz`'s list of failed reloads.
fn report_reloads(metrics: &Metrics, health: &Health, events: Vec<ReloadEvent>) {
    for event in events {
        let outcome = if event.outcome.is_ok() { "ok" } else { "error" };
        let error = event.outcome.as_ref().err().map(ToString::to_string);
        health.reloaded(&event.component, error.as_deref().map_or(Ok(()), Err));
        metrics.reloads.get_or_create(&ReloadLabels { component: event.component.clone(), outcome }).inc();
        match event.outcome {
            Ok(detail) => tracing::info!(component = %event.component, %detail, "loaded"),
            Err(error) => tracing::error!(component = %event.component, %error, "load failed"),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_background_work_becomes_an_error_naming_it() {
        assert_eq!(supervised("reloader", || 7).unwrap(), 7);
        let error = supervised("reloader", || -> u32 { panic!("regex set too big") }).unwrap_err();
        assert_eq!(error.to_string(), "reloader panicked: regex set too big; keeping the previous version");
        let error = supervised("rules", || -> u32 { panic!("{}", String::from("owned")) }).unwrap_err();
        assert!(error.to_string().starts_with("rules panicked: owned"), "{error}");
        // Reported, the component shows in /readyz until a clean round.
        let health = Health::default();
        report_reloads(
            &Metrics::default(),
            &health,
            vec![ReloadEvent { component: "reloader".into(), outcome: Err(error) }],
        );
        assert_eq!(health.failing_reloads(), "reloader");
        health.reloaded("reloader", Ok(()));
        assert_eq!(health.failing_reloads(), "none");
    }
}
