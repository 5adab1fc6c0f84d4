//! `[enrich]`: GeoIP databases and indicator feeds.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::values::empty_is_none;
use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichSettings {
    /// Longest wait before changed rules, databases and feeds are looked for; a file-change
    /// notification wakes the reloader sooner.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    pub geoip: GeoipSettings,
    pub ioc: IocSettings,
}

impl Default for EnrichSettings {
    fn default() -> Self {
        EnrichSettings {
            reload_interval: Duration::from_secs(10),
            geoip: GeoipSettings::default(),
            ioc: IocSettings::default(),
        }
    }
}

impl EnrichSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.reload_interval.is_zero() {
            return Err(invalid("enrich.reload_interval", "\"0s\"", "must be longer than zero"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, feed) in self.ioc.feeds.iter().enumerate() {
            if feed.name.trim().is_empty() || !names.insert(feed.name.as_str()) {
                return Err(invalid(
                    format!("enrich.ioc.feeds[{i}].name"),
                    format!("{:?}", feed.name),
                    "must be non-empty and unique",
                ));
            }
            if feed.path.as_os_str().is_empty() {
                return Err(invalid(format!("enrich.ioc.feeds[{i}].path"), "\"\"", "must name a file"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoipSettings {
    /// GeoLite2/GeoIP2 City database; unset or `""` = no city data.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub city_db: Option<PathBuf>,
    /// GeoLite2/GeoIP2 ASN database; unset or `""` = no AS data.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    /// IP roles to enrich.
    pub roles: Vec<GeoRole>,
}

impl Default for GeoipSettings {
    fn default() -> Self {
        GeoipSettings {
            city_db: None,
            asn_db: None,
            roles: vec![GeoRole::Source, GeoRole::Client, GeoRole::Destination, GeoRole::Server],
        }
    }
}

/// An address role GeoIP enrichment looks at (`enrich.geoip.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeoRole {
    Source,
    Client,
    Destination,
    Server,
    Host,
}

impl GeoRole {
    /// The ECS field group of the role (`source` for `source.ip`, `source.geo`, `source.as`).
    pub fn group(self) -> &'static str {
        match self {
            GeoRole::Source => "source",
            GeoRole::Client => "client",
            GeoRole::Destination => "destination",
            GeoRole::Server => "server",
            GeoRole::Host => "host",
        }
    }

    /// The role's ECS `geo` object (`source.geo`).
    pub fn geo_field(self) -> &'static str {
        match self {
            GeoRole::Source => "source.geo",
            GeoRole::Client => "client.geo",
            GeoRole::Destination => "destination.geo",
            GeoRole::Server => "server.geo",
            GeoRole::Host => "host.geo",
        }
    }

    /// The role's ECS `as` object (`source.as`).
    pub fn as_field(self) -> &'static str {
        match self {
            GeoRole::Source => "source.as",
            GeoRole::Client => "client.as",
            GeoRole::Destination => "destination.as",
            GeoRole::Server => "server.as",
            GeoRole::Host => "host.as",
        }
    }

    /// The ECS field holding the role's address.
    pub fn ip_field(self) -> &'static str {
        match self {
            GeoRole::Source => "source.ip",
            GeoRole::Client => "client.ip",
            GeoRole::Destination => "destination.ip",
            GeoRole::Server => "server.ip",
            GeoRole::Host => "host.ip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IocSettings {
    pub feeds: Vec<FeedSettings>,
    /// Largest feed read (after gunzipping a `.gz` feed); a larger one is refused and its previous
    /// version kept.
    pub max_feed_bytes: ByteSize,
}

impl Default for IocSettings {
    fn default() -> Self {
        IocSettings { feeds: Vec::new(), max_feed_bytes: ByteSize::mib(256) }
    }
}

/// `[[enrich.ioc.feeds]]`: one indicator file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    pub name: String,
    pub path: PathBuf,
    pub format: crate::enrich::feeds::Format,
}
