//! `[detect]`: Sigma rules, correlation bounds and the detection-state changelog.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::empty_is_none;
use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectSettings {
    /// Directories of Sigma rules (`**/*.yml`), read at start-up and whenever a file changes.
    pub rules_dirs: Vec<PathBuf>,
    /// Most groups (e.g. source addresses) one correlation rule tracks per partition, and most open
    /// suppression windows; beyond it the least recently seen goes (`gatewatch_detect_capped_total`).
    pub max_groups: usize,
    /// Most distinct values one `value_count` group keeps; beyond it the longest unseen goes.
    pub max_values: usize,
    /// Most evidence records an alert carries (its `gatewatch.count` stays exact).
    pub max_evidence: usize,
    /// Suppression window for rules that set none; "0s" = no suppression unless a rule asks for it.
    #[serde(with = "humantime_serde")]
    pub default_suppress: Duration,
    /// Lists rules refer to as `%name%` with the `expand` modifier.
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Compacted topic holding each input partition's correlation and suppression state (partitioned
    /// like the input topics), restored when a partition is assigned; unset or `""` = state lives in
    /// memory only and every restart or rebalance starts detection afresh.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    /// Detection state is written to `state_topic` after this many records of a partition...
    pub snapshot_every: usize,
    /// ...or when its oldest unsnapshotted record is this old, whichever comes first. Input offsets
    /// are committed only up to the last written state, so no correlation is blinded by a restart.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// Bound on reading a partition's state back when it is assigned.
    #[serde(with = "humantime_serde")]
    pub restore_timeout: Duration,
}

impl Default for DetectSettings {
    fn default() -> Self {
        let mut placeholders = BTreeMap::new();
        placeholders.insert(
            "management_networks".to_owned(),
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].map(String::from).to_vec(),
        );
        placeholders.insert("blocked_countries".to_owned(), Vec::new());
        DetectSettings {
            rules_dirs: vec!["rules".into()],
            max_groups: 100_000,
            max_values: 10_000,
            max_evidence: 20,
            default_suppress: Duration::ZERO,
            placeholders,
            state_topic: Some("adc.detect-state".into()),
            snapshot_every: 5_000,
            snapshot_interval: Duration::from_secs(5),
            restore_timeout: Duration::from_secs(60),
        }
    }
}

impl DetectSettings {
    pub fn options(&self) -> crate::detect::DetectOptions {
        let mut placeholders: std::collections::HashMap<String, Vec<String>> =
            self.placeholders.clone().into_iter().collect();
        // The layered loader drops empty lists; the shipped rules' placeholders always exist.
        for name in ["management_networks", "blocked_countries"] {
            placeholders.entry(name.to_owned()).or_default();
        }
        crate::detect::DetectOptions {
            placeholders,
            max_groups: self.max_groups,
            max_values: self.max_values,
            max_evidence: self.max_evidence,
            default_suppress: (!self.default_suppress.is_zero()).then_some(self.default_suppress),
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("detect.snapshot_every", self.snapshot_every),
            ("detect.max_groups", self.max_groups),
            ("detect.max_values", self.max_values),
            ("detect.max_evidence", self.max_evidence),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be at least 1"));
            }
        }
        for (key, value) in
            [("detect.snapshot_interval", self.snapshot_interval), ("detect.restore_timeout", self.restore_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        Ok(())
    }
}
