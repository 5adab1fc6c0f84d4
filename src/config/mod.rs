//! Settings: what gatewatch reads at start-up, and nothing else.
//!
//! Layers, later wins: built-in defaults (`Settings::default`) < `config/default.toml` (when present in
//! the working directory) < the file named by `--config` < `GATEWATCH__SECTION__KEY` environment
//! variables. Every struct denies unknown fields, so a typo fails start-up with the key's name instead of
//! being silently ignored. Values are parsed once, by serde, into their types — enums for closed sets,
//! `chrono_tz::Tz` for zones, `Option` for what `""` turns off — so a bad value is an error naming its
//! key. [`Settings::validate`] checks what types cannot: each section's bounds (its `check`, in the
//! section's file next to its defaults) and the rules across sections. Nothing on the per-event path
//! reads configuration again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

mod admin;
mod baseline;
mod detect;
mod enrich;
mod kafka;
mod log;
mod output;
mod parse;
mod pipeline;
mod telemetry;
mod values;

pub use admin::AdminSettings;
pub use baseline::{BaselineSettings, Direction, NitroSettings};
pub use detect::DetectSettings;
pub use enrich::{EnrichSettings, FeedSettings, GeoRole, GeoipSettings, IocSettings};
pub use kafka::{
    DeliveryMode, KafkaSettings, SaslMechanism, SecurityProtocol, StartFrom, PROTECTED_LIBRDKAFKA_OPTIONS,
};
pub use log::{LogFilter, LogFormat, LogSettings};
pub use output::OutputSettings;
pub use parse::{DeviceSettings, ParseSettings};
pub use pipeline::PipelineSettings;
pub use telemetry::{OtlpProtocol, TelemetrySettings};

/// Environment variable prefix; `GATEWATCH__KAFKA__BROKERS` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "GATEWATCH";
/// Separator between the prefix and key path segments in environment variable names.
pub const ENV_SEPARATOR: &str = "__";
/// The project's documented defaults file, read from the working directory when it exists.
pub const DEFAULT_FILE: &str = "config/default.toml";

/// Keys whose environment value is a comma-separated list.
/// The environment variable that may carry the SASL password instead of `kafka.sasl_password_file`.
pub const SASL_PASSWORD_ENV: &str = "GATEWATCH__KAFKA__SASL_PASSWORD";
const ENV_LIST_KEYS: &[&str] = &["kafka.input_topics", "detect.rules_dirs", "enrich.geoip.roles"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} (--config): not found")]
    MissingFile { path: PathBuf },
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("config key {key} = {value}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// Stands for a value an error message must not repeat.
pub const REDACTED_VALUE: &str = "[redacted]";

pub(crate) fn invalid(key: impl Into<String>, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub output: OutputSettings,
    pub pipeline: PipelineSettings,
    pub parse: ParseSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub enrich: EnrichSettings,
    pub detect: DetectSettings,
    pub telemetry: TelemetrySettings,
    pub baseline: BaselineSettings,
    /// Per-appliance reading rules, keyed by host name as the appliance writes it (case-insensitive).
    pub devices: BTreeMap<String, DeviceSettings>,
}

impl Settings {
    /// Loads every layer and validates the result. `file` is the `--config` argument.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(Path::new(DEFAULT_FILE), file, std::env::vars())
    }

    /// [`Settings::load`] with the defaults file and the environment made explicit, for tests.
    pub fn load_from(
        defaults_file: &Path,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let builtin = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(builtin);
        if defaults_file.is_file() {
            builder = builder.add_source(config::File::from(defaults_file).format(config::FileFormat::Toml));
        }
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile { path: path.to_path_buf() });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let mut env: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}"))).collect();
        // The SASL password is no configuration key (it may not sit in a file of settings): it comes
        // from `kafka.sasl_password_file` or from this variable, and never reaches the config layers.
        let env_sasl_password = env.remove(SASL_PASSWORD_ENV);
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .list_separator(",")
            .try_parsing(true)
            .source(Some(env));
        for key in ENV_LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        if let Some(password) = env_sasl_password {
            crate::secrets::register(&password);
            settings.kafka.sasl_password = Secret::from(password);
        }
        settings.validate()?;
        crate::secrets::register(settings.baseline.nitro.password.expose());
        if let Some(path) = &settings.kafka.sasl_password_file {
            settings.kafka.sasl_password = crate::secrets::read_file(path)
                .map_err(|e| invalid("kafka.sasl_password_file", format!("{path:?}"), format!("unreadable: {e}")))?;
        }
        crate::kafka::check_build(&settings)?;
        Ok(settings)
    }

    /// Checks what deserialization cannot: each section's bounds and required names (its `check`),
    /// then the rules across sections: distinct topics, exactly-once without baselines.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.check()?;
        self.output.check()?;
        self.pipeline.check()?;
        self.parse.check()?;
        self.admin.check()?;
        self.enrich.check()?;
        self.detect.check()?;
        self.telemetry.check()?;
        self.baseline.check()?;
        self.check_topics()
    }

    /// No output or state topic may be an input topic, and each state topic is a topic of its own.
    fn check_topics(&self) -> Result<(), ConfigError> {
        let inputs = &self.kafka.input_topics;
        let metrics = self.baseline.metrics_topic.as_ref();
        if self.kafka.delivery == DeliveryMode::ExactlyOnce && metrics.is_some() {
            return Err(invalid(
                "kafka.delivery",
                "\"exactly-once\"",
                "covers the log topics only: set baseline.metrics_topic = \"\" (run baselines in an at-least-once \
                 deployment of their own)",
            ));
        }
        for (key, topic) in self.output.topics() {
            if inputs.iter().any(|t| t == topic) || metrics.is_some_and(|m| m == topic) {
                return Err(invalid(
                    key,
                    format!("{topic:?}"),
                    "is also an input topic: gatewatch would consume its own output",
                ));
            }
        }
        if let Some(state) = &self.detect.state_topic {
            let b = &self.baseline;
            let taken = inputs.contains(state)
                || metrics == Some(state)
                || *state == b.state_topic
                || self.output.topics().iter().any(|(_, t)| t == state);
            if taken {
                return Err(invalid(
                    "detect.state_topic",
                    format!("{state:?}"),
                    "must be a topic of its own (not an input, output or baseline topic)",
                ));
            }
        }
        if metrics.is_some() && inputs.contains(&self.baseline.state_topic) {
            return Err(invalid(
                "baseline.state_topic",
                format!("{:?}", self.baseline.state_topic),
                "must differ from the metrics and input topics",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytesize::ByteSize;

    use super::*;
    use crate::parse::DateOrder;

    fn load(file_text: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewatch.toml");
        if let Some(text) = file_text {
            std::fs::write(&path, text).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load_from(Path::new("/nonexistent/default.toml"), file_text.map(|_| path.as_path()), env)
    }

    #[test]
    fn default_toml_equals_builtin_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
        let from_file: Settings = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(from_file, Settings::default(), "{} drifted from Settings::default()", path.display());
    }

    #[test]
    fn default_toml_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let previous = lines[..i].iter().rev().map(|l| l.trim()).find(|l| !l.is_empty()).unwrap_or("");
            assert!(previous.starts_with('#'), "key without a comment above it: {line}");
        }
    }

    #[test]
    fn exactly_once_is_refused_with_baselines_on_and_taken_with_them_off() {
        let err = load(Some("[kafka]\ndelivery = \"exactly-once\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("kafka.delivery") && err.contains("baseline.metrics_topic"), "{err}");
        let s = load(
            Some(
                "[kafka]\ndelivery = \"exactly-once\"\ntransactional_id = \"gw-1\"\n[baseline]\nmetrics_topic = \"\"\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(s.kafka.delivery, DeliveryMode::ExactlyOnce);
        assert_eq!(s.kafka.transactional_id(), "gw-1");
        let err = load(Some("[kafka]\ndelivery = \"twice\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("twice") || err.contains("delivery"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let s = load(
            Some("[kafka]\nbrokers = \"file:9092\"\ngroup_id = \"from-file\"\n"),
            &[("GATEWATCH__KAFKA__BROKERS", "env:9092"), ("GATEWATCH__KAFKA__INPUT_TOPICS", "a,b")],
        )
        .unwrap();
        assert_eq!(s.kafka.brokers, "env:9092");
        assert_eq!(s.kafka.group_id, "from-file");
        assert_eq!(s.kafka.input_topics, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn human_readable_durations_and_sizes() {
        let s = load(Some("[kafka]\nsession_timeout = \"6s\"\n[parse]\nmax_line = \"1MiB\"\n"), &[]).unwrap();
        assert_eq!(s.kafka.session_timeout, Duration::from_secs(6));
        assert_eq!(s.parse.max_line, ByteSize::mib(1));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(Some("[kafka]\nbrokerz = \"x:1\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
        let err = load(None, &[("GATEWATCH__KAFKA__GROUPID", "x")]).unwrap_err().to_string();
        assert!(err.contains("groupid"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load(Some("[kafka]\nsession_timeout = 5\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("session_timeout"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Settings::load_from(Path::new("/nonexistent"), Some(Path::new("/no/such/gw.toml")), []).unwrap_err();
        assert!(err.to_string().contains("/no/such/gw.toml"), "{err}");
    }

    #[test]
    fn protected_librdkafka_option_is_rejected() {
        let err =
            load(Some("[kafka.consumer_options]\n\"enable.auto.commit\" = \"false\"\n"), &[]).unwrap_err().to_string();
        // Named, but its value is not repeated: a protected option may as well be `sasl.password`.
        assert!(err.contains("enable.auto.commit") && err.contains("[redacted]") && !err.contains("false"), "{err}");
        assert!(load(Some("[kafka.producer_options]\n\"compression.type\" = \"zstd\"\n"), &[]).is_ok());
    }

    #[test]
    fn devices_and_time_zones() {
        let s = load(
            Some("[parse]\ntimezone = \"Europe/Vienna\"\n[devices.VPX01]\ndate_order = \"dmy\"\n[devices.vpx02]\ntimezone = \"Asia/Tokyo\"\n"),
            &[],
        )
        .unwrap();
        let ctx = s.parse_context();
        assert_eq!(ctx.device(Some("VPX01")).date_order, DateOrder::Dmy);
        assert_eq!(ctx.device(Some("vpx01")).timezone, chrono_tz::Europe::Vienna);
        assert_eq!(ctx.device(Some("vpx02")).timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(ctx.device(Some("other")).date_order, DateOrder::Mdy);
        let err = load(Some("[devices.x]\ntimezone = \"Mars/Olympus\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("devices.x.timezone") && err.contains("Mars/Olympus"), "{err}");
        let err = load(Some("[devices.x]\ndate_order = \"ymd\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("date_order"), "{err}");
        let err = load(Some("[parse.topic_datasets]\n\"adc.files\" = \"apache\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("adc.files") && err.contains("apache"), "{err}");
    }

    #[test]
    fn sasl_password_from_the_environment_instead_of_a_file() {
        let text =
            "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"gw\"\n";
        let s = load(Some(text), &[(SASL_PASSWORD_ENV, "env-s3cret")]).unwrap();
        assert_eq!(s.kafka.sasl_password.expose(), "env-s3cret");
        assert!(crate::kafka::connection_options(&s.kafka).contains(&("sasl.password", "env-s3cret".into())));
        assert!(!format!("{s:?}").contains("env-s3cret"));
        let err = load(Some(text), &[]).unwrap_err().to_string();
        assert!(err.contains("kafka.sasl_password_file") && err.contains(SASL_PASSWORD_ENV), "{err}");
        let both = format!("{text}sasl_password_file = \"/run/secrets/kafka\"\n");
        let err = load(Some(&both), &[(SASL_PASSWORD_ENV, "env-s3cret")]).unwrap_err().to_string();
        assert!(err.contains("both set") && !err.contains("env-s3cret"), "{err}");
    }

    #[test]
    fn kafka_security_settings_become_librdkafka_options() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let text = format!(
            "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"gw\"\nsasl_password_file = {:?}\n",
            password
        );
        let s = load(Some(&text), &[]).unwrap();
        let options = crate::kafka::connection_options(&s.kafka);
        assert!(options.contains(&("security.protocol", "sasl_ssl".into())));
        assert!(options.contains(&("sasl.password", "s3cret".into())));
        assert!(options.contains(&("sasl.username", "gw".into())));
        assert_eq!(format!("{:?}", s.kafka.sasl_password), "[redacted]");
        assert!(!format!("{s:?}").contains("s3cret"));
        let err = load(Some("[kafka]\nssl_ca_file = \"/no/ca.pem\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("kafka.ssl_ca_file") && err.contains("/no/ca.pem"), "{err}");
        let err = load(Some("[kafka]\nsecurity_protocol = \"tls\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("security_protocol"), "{err}");
        let err = load(Some("[kafka.producer_options]\n\"sasl.password\" = \"pr0tected-value\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sasl.password") && !err.contains("pr0tected-value"), "{err}");
        let err = load(Some("[kafka]\nsecurity_protocol = \"sasl_ssl\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("kafka.sasl_mechanism"), "{err}");
        let err = load(Some("[kafka]\nsasl_mechanism = \"SCRAM-SHA-256\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("kafka.security_protocol") && err.contains("plaintext"), "{err}");
        let err = load(Some("[kafka]\nsecurity_protocol = \"ssl\"\nsasl_mechanism = \"SCRAM-SHA-1\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sasl_mechanism") && err.contains("SCRAM-SHA-1"), "{err}");
    }

    #[test]
    fn nitro_password_never_shows_in_debug_and_http_needs_allow_http() {
        let s = load(None, &[("GATEWATCH__BASELINE__NITRO__PASSWORD", "n1tro-s3cret")]).unwrap();
        assert_eq!(s.baseline.nitro.password.expose(), "n1tro-s3cret");
        assert!(!format!("{s:?}").contains("n1tro-s3cret"));
        let http = "[baseline.nitro]\nusername = \"u\"\n[baseline.nitro.appliances]\nadc1 = \"http://10.0.0.5\"\n";
        let err = load(Some(http), &[]).unwrap_err().to_string();
        assert!(err.contains("baseline.nitro.appliances.adc1") && err.contains("allow_http"), "{err}");
        let allowed = http.replace("username = \"u\"\n", "username = \"u\"\nallow_http = true\n");
        assert!(load(Some(&allowed), &[]).is_ok(), "{allowed}");
    }

    #[test]
    fn output_topic_equal_to_input_is_rejected() {
        let err = load(Some("[output]\ndlq_topic = \"adc.raw\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("output.dlq_topic") && err.contains("adc.raw"), "{err}");
    }
}
