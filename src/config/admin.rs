//! `[admin]`: the HTTP listener of probes and metrics.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of the admin HTTP listener (`/livez`, `/readyz`, `/metrics`). All interfaces by
    /// default, for the kubelet's probes and Prometheus; `127.0.0.1:9464` keeps it on the host.
    pub listen: SocketAddr,
    /// Connections open at once; a further one closes the oldest.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a connection may take from accept to the end of its one response.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 9464)),
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl AdminSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid("admin.max_connections", 0, "must be at least 1"));
        }
        for (key, value) in
            [("admin.header_timeout", self.header_timeout), ("admin.request_timeout", self.request_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        Ok(())
    }
}
