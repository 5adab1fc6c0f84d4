//! `[output]`: the output topics and the bounds on what is written to them.

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSettings {
    /// Every parsed event as ECS JSON, keyed by the appliance host name.
    pub enriched_topic: String,
    /// Alerts, keyed by the alert id.
    pub alerts_topic: String,
    /// Records that could not be parsed: a JSON envelope with the reason and the original bytes.
    pub dlq_topic: String,
    /// Original bytes kept in a dead-letter record; longer originals are cut and flagged (the full
    /// record stays in the input topic at the coordinates the envelope names).
    pub dlq_max_original: ByteSize,
    /// Largest output record produced. An alert over it loses evidence text until it fits; any other
    /// output over it (or one the brokers refuse as too large or not allowed) is replaced by a dead
    /// letter with reason `output_rejected`, and the stream goes on. Keep it under the brokers'
    /// `message.max.bytes` (1 MiB by default) and the topics' `max.message.bytes`.
    pub max_message_bytes: ByteSize,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            enriched_topic: "adc.enriched".into(),
            alerts_topic: "adc.alerts".into(),
            dlq_topic: "adc.dlq".into(),
            dlq_max_original: ByteSize::kib(512),
            max_message_bytes: ByteSize::kib(1000),
        }
    }
}

impl OutputSettings {
    /// The three output topics with their keys.
    pub fn topics(&self) -> [(&'static str, &str); 3] {
        [
            ("output.enriched_topic", &self.enriched_topic),
            ("output.alerts_topic", &self.alerts_topic),
            ("output.dlq_topic", &self.dlq_topic),
        ]
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, topic) in self.topics() {
            if topic.trim().is_empty() {
                return Err(invalid(key, "\"\"", "must not be empty"));
            }
        }
        // A dead letter carries up to dlq_max_original bytes, base64-encoded when they are not text,
        // in an envelope: it must itself fit.
        let max_message = self.max_message_bytes.as_u64();
        let letter = self.dlq_max_original.as_u64() * 4 / 3 + 4096;
        if max_message < letter {
            return Err(invalid(
                "output.max_message_bytes",
                format!("{:?}", self.max_message_bytes.to_string()),
                format!("must hold a dead letter of output.dlq_max_original: at least {letter} bytes"),
            ));
        }
        Ok(())
    }
}
