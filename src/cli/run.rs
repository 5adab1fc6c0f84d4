//! `gatewatch run`: the service. Starts the admin listener, checks the brokers, loads enrichment and
//! rules, starts the reloader, the NITRO poller, the readiness probe and the workers' polling threads; on
//! SIGTERM/SIGINT stops them all and joins every thread before exiting.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use gatewatch::config::Settings;
use gatewatch::detect::RuleSet;
use gatewatch::enrich::Enricher;
use gatewatch::metrics::Metrics;
use gatewatch::offsets::Stop;
use gatewatch::pipeline::{Outcome, Shared, Workers};
use gatewatch::sink::Sink;
use gatewatch::source::Health;

use super::reload::{report_reloads, report_rules, Reloader};
use super::{EXIT_CONFIG, EXIT_DRAIN_TIMED_OUT};

/// Runs the service and turns its end into the exit status: 0 a clean stop, 3 a stop whose drain timed
/// out, 2 brokers that refuse our TLS or login, 1 any other failure.
pub fn service(settings: Settings) -> ExitCode {
    match run(settings) {
        Ok(Outcome::Stopped) => ExitCode::SUCCESS,
        Ok(Outcome::StoppedLate) => {
            tracing::error!("stopped, but the drain timed out: the undelivered records will be replayed");
            ExitCode::from(EXIT_DRAIN_TIMED_OUT)
        }
        // Already logged, on one line naming the setting.
        Err(error) if error.downcast_ref::<gatewatch::kafka::Problem>().is_some() => ExitCode::from(EXIT_CONFIG),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "gatewatch stopped on a failure; a restart replays from the last commit"
            );
            ExitCode::FAILURE
        }
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
    let (rules, rule_errors) = RuleSet::load(&settings.detect.rules_dirs, &settings.detect.options());
    report_rules(&metrics, &health, &rules, rule_errors);
    let rules = Arc::new(arc_swap::ArcSwap::from_pointee(rules));
    let reloader =
        Reloader::spawn(&settings, enricher.clone(), rules.clone(), metrics.clone(), health.clone(), stop.clone())?;
    let nitro = gatewatch::baseline::nitro::spawn(&settings, metrics.clone(), stop.clone())
        .context("starting the NITRO poller")?;
    let shared = Shared {
        enricher,
        rules,
        runtime: runtime.handle().clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        stop: stop.clone(),
    };
    let workers = Workers::start(&settings, &shared).context("connecting to Kafka")?;
    drop(shared);
    let probe = spawn_probe(workers.sink(), health.clone(), metrics.clone(), stop.clone())?;
    runtime.spawn(stop_on_signal(stop.clone(), shutdown_timeout));

    let outcome = workers.run();
    // The workers end only once the stop is set (a signal or a failure): every other thread sees it.
    stop.request();
    reloader.join();
    if probe.join().is_err() {
        tracing::error!("the readiness probe thread panicked");
    }
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

/// Readiness: does the producer reach a broker? Probed off the runtime (the call blocks), every 2 s.
fn spawn_probe(sink: Arc<Sink>, health: Arc<Health>, metrics: Metrics, stop: Stop) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("gatewatch-probe".into()).spawn(move || {
        while !stop.is_stopping() {
            let reachable = sink.reaches_broker(Duration::from_secs(5));
            if health.producer_reachable.swap(reachable, Ordering::Relaxed) != reachable {
                if reachable {
                    tracing::info!("the producer reaches the brokers again");
                } else {
                    tracing::warn!("the producer does not reach the brokers: not ready");
                }
            }
            // Also covers assignment changes: this runs every 2 s.
            metrics.ready.set(i64::from(health.ready()));
            for _ in 0..20 {
                if stop.is_stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

/// On SIGTERM/SIGINT: asks every thread to stop. A watchdog bounds the drain, the final commit and the
/// close; past it the process exits with the status of a timed-out drain.
async fn stop_on_signal(stop: Stop, shutdown_timeout: Duration) {
    wait_for_signal().await;
    tracing::info!("signal received: stopping");
    stop.request();
    tokio::time::sleep(shutdown_timeout + Duration::from_secs(5)).await;
    tracing::error!("shutdown bound exceeded; exiting, uncommitted records will be replayed");
    std::process::exit(i32::from(EXIT_DRAIN_TIMED_OUT));
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
