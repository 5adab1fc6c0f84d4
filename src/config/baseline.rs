//! `[baseline]`: per-appliance CPU/memory baselines and the NITRO poller (see `crate::baseline`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{empty_is_none, shown};
use super::{invalid, ConfigError};
use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineSettings {
    /// Topic of metric samples (JSON, ECS/Metricbeat names, keyed by appliance); unset or `""` = no
    /// baselines.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub metrics_topic: Option<String>,
    /// Compacted topic holding each series' detector state, partitioned like `metrics_topic`.
    pub state_topic: String,
    /// Anomaly score (0..1) at or above which a series raises an anomaly alert.
    pub alert_threshold: f64,
    /// Samples a series learns from before it scores...
    pub warmup: u64,
    /// ...and the time they must span (so every time of day has been seen).
    #[serde(with = "humantime_serde")]
    pub warmup_span: Duration,
    /// An anomalous score raises an alert only when the sample is also this far (in fraction points)
    /// from what the appliance usually shows at that time of day: CPU wiggles of a few points are noise
    /// to a SOC, a miner is tens of points.
    pub min_deviation: f64,
    /// Which deviations alert: `up` (more CPU or memory than usual: miners, backdoors, leaks), `down`,
    /// or `both`. Scores in the enriched samples cover both directions regardless.
    pub direction: Direction,
    /// An open anomaly closes after its scores stay below the threshold this long; until then it raises
    /// no second alert.
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// Series state is written to `state_topic` after this many samples of a partition...
    pub snapshot_every: usize,
    /// ...or when its oldest unsnapshotted sample is this old, whichever comes first. Offsets of the
    /// metrics topic are committed only up to the last written state, so nothing learned is lost.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// Bound on reading a partition's state back when it is assigned.
    #[serde(with = "humantime_serde")]
    pub restore_timeout: Duration,
    /// Bound on the series one partition holds (memory); samples of further series are dead-lettered.
    pub max_series_per_partition: usize,
    pub nitro: NitroSettings,
}

impl Default for BaselineSettings {
    fn default() -> Self {
        let params = crate::baseline::detector::Params::default();
        BaselineSettings {
            metrics_topic: Some("adc.metrics".into()),
            state_topic: "adc.baselines".into(),
            alert_threshold: params.threshold,
            warmup: params.warmup,
            warmup_span: Duration::from_secs(params.warmup_span as u64),
            min_deviation: 0.1,
            direction: Direction::Up,
            clear_after: Duration::from_secs(6 * 3600),
            snapshot_every: 100,
            snapshot_interval: Duration::from_secs(60),
            restore_timeout: Duration::from_secs(60),
            max_series_per_partition: 50_000,
            nitro: NitroSettings::default(),
        }
    }
}

/// `baseline.direction`: which side of the usual an alert is raised for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Both,
}

/// `[baseline.nitro]`: the built-in poller of `GET /nitro/v1/stat/system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NitroSettings {
    /// Appliance name (its `observer.hostname`) → NITRO base URL, e.g. `adc1 = "https://10.0.0.5"`.
    /// Empty = no polling.
    pub appliances: BTreeMap<String, String>,
    /// Time between two polls of one appliance.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// NITRO user (`X-NITRO-USER`); set it from the environment (`GATEWATCH__BASELINE__NITRO__USERNAME`).
    pub username: String,
    /// File holding the NITRO password (a mounted secret); `password` is used when this is unset.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The password itself, for environments that inject it as a variable
    /// (`GATEWATCH__BASELINE__NITRO__PASSWORD`).
    pub password: Secret,
    /// Verify the appliance's TLS certificate (against `ca_file`, or the system's roots).
    pub tls_verify: bool,
    /// Accept `http://` appliance URLs. Off by default: the NITRO credentials travel in headers.
    pub allow_http: bool,
    /// PEM file of the CA that signed the appliances' certificates; unset = the system's roots.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for NitroSettings {
    fn default() -> Self {
        NitroSettings {
            appliances: BTreeMap::new(),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            username: String::new(),
            password_file: None,
            password: Secret::default(),
            tls_verify: true,
            allow_http: false,
            ca_file: None,
        }
    }
}

impl BaselineSettings {
    /// The section's own rules; those involving other sections are in [`super::Settings::validate`].
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(self.alert_threshold > 0.0 && self.alert_threshold <= 1.0) {
            return Err(invalid("baseline.alert_threshold", self.alert_threshold, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.min_deviation) {
            return Err(invalid("baseline.min_deviation", self.min_deviation, "must be in [0, 1]"));
        }
        if self.snapshot_every == 0 {
            return Err(invalid("baseline.snapshot_every", 0, "must be at least 1"));
        }
        if self.max_series_per_partition == 0 {
            return Err(invalid("baseline.max_series_per_partition", 0, "must be at least 1"));
        }
        for (key, value) in [
            ("baseline.snapshot_interval", self.snapshot_interval),
            ("baseline.restore_timeout", self.restore_timeout),
            ("baseline.nitro.interval", self.nitro.interval),
            ("baseline.nitro.timeout", self.nitro.timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        if let Some(metrics) = &self.metrics_topic {
            if self.state_topic.trim().is_empty() {
                return Err(invalid(
                    "baseline.state_topic",
                    "\"\"",
                    "must name a topic when baseline.metrics_topic is set",
                ));
            }
            if self.state_topic == *metrics {
                return Err(invalid(
                    "baseline.state_topic",
                    format!("{:?}", self.state_topic),
                    "must differ from the metrics and input topics",
                ));
            }
        }
        self.nitro.check(self.metrics_topic.is_some())
    }
}

impl NitroSettings {
    fn check(&self, metrics_on: bool) -> Result<(), ConfigError> {
        for (name, url) in &self.appliances {
            let reason = if url.starts_with("https://") {
                continue;
            } else if url.starts_with("http://") {
                if self.allow_http {
                    continue;
                }
                "must be an https:// URL: the NITRO credentials travel in request headers \
                 (set baseline.nitro.allow_http = true to accept http:// on a trusted network)"
            } else {
                "must be an https:// URL"
            };
            return Err(invalid(format!("baseline.nitro.appliances.{name}"), format!("{url:?}"), reason));
        }
        if !self.appliances.is_empty() {
            if !metrics_on {
                return Err(invalid("baseline.metrics_topic", "\"\"", "the NITRO poller publishes to it"));
            }
            if self.username.is_empty() {
                return Err(invalid("baseline.nitro.username", "\"\"", "must be set when appliances are polled"));
            }
        }
        for (key, path) in
            [("baseline.nitro.password_file", &self.password_file), ("baseline.nitro.ca_file", &self.ca_file)]
        {
            if path.as_ref().is_some_and(|p| !p.is_file()) {
                return Err(invalid(key, shown(path), "file not found"));
            }
        }
        Ok(())
    }
}
