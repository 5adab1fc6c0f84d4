//! `[telemetry]`: OTLP export of metrics and traces.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::empty_is_none;
use super::{invalid, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    Http,
    Grpc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP collector endpoint (`http://collector:4318` for HTTP, `http://collector:4317` for gRPC);
    /// unset or `""` = no OTLP export (the Prometheus `/metrics` endpoint is always on).
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// How often metrics are exported.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Bound on one export.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Extra resource attributes (e.g. `deployment.environment`).
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Http,
            export_interval: Duration::from_secs(30),
            export_timeout: Duration::from_secs(10),
            service_name: "gatewatch".into(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

impl TelemetrySettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.export_interval.is_zero() {
            return Err(invalid("telemetry.export_interval", "\"0s\"", "must be longer than zero"));
        }
        if let Some(endpoint) = self.otlp_endpoint.as_deref().filter(|e| !e.starts_with("http")) {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                format!("{endpoint:?}"),
                "must be an http:// or https:// URL",
            ));
        }
        Ok(())
    }
}
