//! The reloader: one supervised thread that picks up changed rules, GeoIP databases and indicator
//! feeds while the service runs. A file-change notification (`notify`: the rule directories and the
//! directories of the databases and feeds, so a Kubernetes ConfigMap's `..data` swap counts) wakes it
//! at once; `enrich.reload_interval` bounds the wait when notifications are not available. Every
//! outcome is logged, counted (`gatewatch_reloads_total{component,outcome}`) and kept for `/readyz`'s
//! `failed_reloads`; a panic in a round is caught, reported the same way, and the next round runs. A
//! stop wakes the thread within a tick and [`Reloader::join`] waits for it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use gatewatch::config::Settings;
use gatewatch::detect::{DetectOptions, RuleSet};
use gatewatch::enrich::{Enricher, FileStamp, ReloadError, ReloadEvent};
use gatewatch::metrics::{Metrics, ReloadLabels};
use gatewatch::offsets::Stop;
use gatewatch::source::Health;

/// How often the thread looks at the stop flag and the clock.
const TICK: Duration = Duration::from_millis(200);
/// After a notification, how long to let related changes land (a ConfigMap update is several
/// renames) before reading.
const SETTLE: Duration = Duration::from_millis(300);

pub struct Reloader {
    thread: JoinHandle<()>,
    /// Kept alive for as long as the thread runs; dropping it ends the notifications.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// What the reloader watches and reloads.
struct Work {
    enricher: Arc<Enricher>,
    rules: Arc<ArcSwap<RuleSet>>,
    rule_dirs: Vec<PathBuf>,
    rule_options: DetectOptions,
    rule_stamp: Vec<(PathBuf, FileStamp)>,
    metrics: Metrics,
    health: Arc<Health>,
}

impl Reloader {
    pub fn spawn(
        settings: &Settings,
        enricher: Arc<Enricher>,
        rules: Arc<ArcSwap<RuleSet>>,
        metrics: Metrics,
        health: Arc<Health>,
        stop: Stop,
    ) -> std::io::Result<Reloader> {
        let (wake, woken) = mpsc::channel();
        // Held by the thread, so the channel stays open (and `recv_timeout` waits its tick) even when no
        // watcher could be made and the watcher's sender is gone.
        let keep_open = wake.clone();
        let watcher = watch(&watched(settings), wake);
        let rule_dirs = settings.detect.rules_dirs.clone();
        let mut work = Work {
            enricher,
            rules,
            rule_stamp: rules_stamp(&rule_dirs),
            rule_dirs,
            rule_options: settings.detect.options(),
            metrics,
            health,
        };
        let interval = settings.enrich.reload_interval;
        let thread = std::thread::Builder::new().name("gatewatch-reload".into()).spawn(move || {
            let _keep_open = keep_open;
            let mut waited = Duration::ZERO;
            while !stop.is_stopping() {
                let notified = match woken.recv_timeout(TICK) {
                    Ok(()) => true,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
                };
                waited += TICK;
                if !notified && waited < interval {
                    continue;
                }
                if notified {
                    std::thread::sleep(SETTLE);
                    while woken.try_recv().is_ok() {}
                }
                waited = Duration::ZERO;
                work.round();
            }
        })?;
        Ok(Reloader { thread, _watcher: watcher })
    }

    /// Waits for the thread to end (it ends within a tick of the stop).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the reloader thread panicked outside a round");
        }
    }
}

impl Work {
    /// One round: databases and feeds, then the rules when a rule file changed.
    fn round(&mut self) {
        // A panic in one round is reported (log, metric, /readyz) and the next round runs.
        let events = supervised("reloader", || self.enricher.reload())
            .unwrap_or_else(|error| vec![ReloadEvent { component: "reloader".into(), outcome: Err(error) }]);
        let panicked = events.iter().any(|e| e.component == "reloader");
        report_reloads(&self.metrics, &self.health, events);
        if !panicked {
            self.health.reloaded("reloader", Ok(()));
        }
        self.metrics.ioc_indicators.set(self.enricher.indicator_count() as i64);
        let now = rules_stamp(&self.rule_dirs);
        if now == self.rule_stamp {
            return;
        }
        self.rule_stamp = now;
        match supervised("rules", || RuleSet::load(&self.rule_dirs, &self.rule_options)) {
            Ok((set, errors)) => {
                report_rules(&self.metrics, &self.health, &set, errors);
                self.rules.store(Arc::new(set));
            }
            Err(error) => report_reloads(
                &self.metrics,
                &self.health,
                vec![ReloadEvent { component: "rules".into(), outcome: Err(error) }],
            ),
        }
    }
}

/// The directories whose changes may matter: the rule directories (recursively) and those holding the
/// databases and feeds.
fn watched(settings: &Settings) -> Vec<(PathBuf, RecursiveMode)> {
    let mut out: Vec<(PathBuf, RecursiveMode)> =
        settings.detect.rules_dirs.iter().map(|d| (d.clone(), RecursiveMode::Recursive)).collect();
    let geoip = &settings.enrich.geoip;
    let files = [geoip.city_db.as_deref(), geoip.asn_db.as_deref()]
        .into_iter()
        .flatten()
        .chain(settings.enrich.ioc.feeds.iter().map(|f| f.path.as_path()));
    for file in files {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !out.iter().any(|(d, _)| d == dir) {
            out.push((dir.to_path_buf(), RecursiveMode::NonRecursive));
        }
    }
    out
}

/// A watcher that wakes the reloader on any change under `paths`; `None` (with a warning) when the
/// system gives none, and the interval alone drives the reloads.
fn watch(paths: &[(PathBuf, RecursiveMode)], wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = wake.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "no file-change notifications: reloading on enrich.reload_interval only");
            return None;
        }
    };
    for (path, mode) in paths {
        if let Err(error) = watcher.watch(path, *mode) {
            tracing::warn!(%error, path = %path.display(), "not watched: its changes are seen on enrich.reload_interval");
        }
    }
    Some(watcher)
}

/// Every rule file's identity, to notice edits, additions and removals (a ConfigMap update swaps the
/// `..data` link, which changes what each file's symlink resolves to).
fn rules_stamp(dirs: &[PathBuf]) -> Vec<(PathBuf, FileStamp)> {
    gatewatch::detect::rule_files(dirs)
        .into_iter()
        .map(|path| {
            let stamp = FileStamp::of(&path);
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
pub fn report_rules(
    metrics: &Metrics,
    health: &Health,
    set: &RuleSet,
    errors: Vec<gatewatch::detect::sigma::RuleError>,
) {
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
pub fn report_reloads(metrics: &Metrics, health: &Health, events: Vec<ReloadEvent>) {
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
