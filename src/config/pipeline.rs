//! `[pipeline]`: back-pressure, shutdown and worker threads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Input records per partition whose outputs may await delivery at once; consumption pauses beyond it.
    pub max_in_flight_per_partition: usize,
    /// Bound on a graceful stop (SIGTERM/SIGINT) and on draining revoked partitions in a rebalance.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Threads that process records (file replays: appliances spread over them); 0 = one per core.
    pub workers: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings { max_in_flight_per_partition: 10_000, shutdown_timeout: Duration::from_secs(20), workers: 0 }
    }
}

impl PipelineSettings {
    /// `workers`, with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.shutdown_timeout.is_zero() {
            return Err(invalid("pipeline.shutdown_timeout", "\"0s\"", "must be longer than zero"));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(invalid("pipeline.max_in_flight_per_partition", 0, "must be at least 1"));
        }
        Ok(())
    }
}
