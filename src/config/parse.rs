//! `[parse]` and `[devices.<host>]`: how lines are read, and how each appliance writes dates.

use std::collections::BTreeMap;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Settings};
use crate::parse::{Dataset, DateOrder, Device, ParseContext};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParseSettings {
    /// Longest line parsed; longer records go to the dead-letter topic.
    pub max_line: ByteSize,
    /// Day/month order of ambiguous NetScaler dates for appliances without a `[devices.<host>]` entry.
    pub date_order: DateOrder,
    /// IANA time zone of times written without `GMT`, for appliances without their own.
    pub timezone: chrono_tz::Tz,
    /// Input topics that carry one appliance file each, and which (`httpaccess`, `httperror`, `shell`,
    /// `cron`, `syslog`, `log`): lets free-text lines such as httperror's stderr captures parse.
    pub topic_datasets: BTreeMap<String, Dataset>,
}

impl Default for ParseSettings {
    fn default() -> Self {
        ParseSettings {
            max_line: ByteSize::kib(64),
            date_order: DateOrder::Mdy,
            timezone: chrono_tz::UTC,
            topic_datasets: BTreeMap::new(),
        }
    }
}

impl ParseSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_line.as_u64() == 0 {
            return Err(invalid("parse.max_line", "\"0B\"", "must be larger than zero"));
        }
        Ok(())
    }
}

/// `[devices.<host>]`: how one appliance writes dates and times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSettings {
    /// `mdy` or `dmy`; unset = `parse.date_order`.
    pub date_order: Option<DateOrder>,
    /// IANA zone of times written without `GMT`; unset = `parse.timezone`.
    pub timezone: Option<chrono_tz::Tz>,
}

impl Settings {
    /// The parser's view of the settings.
    pub fn parse_context(&self) -> ParseContext {
        let default_device = Device { date_order: self.parse.date_order, timezone: self.parse.timezone };
        let devices = self
            .devices
            .iter()
            .map(|(host, d)| {
                let device = Device {
                    date_order: d.date_order.unwrap_or(default_device.date_order),
                    timezone: d.timezone.unwrap_or(default_device.timezone),
                };
                (host.to_ascii_lowercase(), device)
            })
            .collect();
        ParseContext { max_line: self.parse.max_line.as_u64() as usize, default_device, devices }
    }

    /// The dataset hint of each input topic named in `parse.topic_datasets`.
    pub fn topic_datasets(&self) -> std::collections::HashMap<String, Dataset> {
        self.parse.topic_datasets.iter().map(|(t, d)| (t.clone(), *d)).collect()
    }
}
