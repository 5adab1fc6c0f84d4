//! `[kafka]`: brokers, the consumer group, the delivery guarantee and the connection's security.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{empty_is_none, shown};
use super::{invalid, ConfigError, REDACTED_VALUE, SASL_PASSWORD_ENV};
use crate::secrets::Secret;

/// librdkafka properties gatewatch sets itself because at-least-once delivery depends on them.
/// Passing one through `kafka.consumer_options` / `kafka.producer_options` is a configuration error.
pub const PROTECTED_LIBRDKAFKA_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "isolation.level",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "retries",
    "message.send.max.retries",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transactional.id",
    "enable.gapless.guarantee",
    "session.timeout.ms",
    "statistics.interval.ms",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list of bootstrap brokers.
    pub brokers: String,
    /// Consumer group shared by every gatewatch instance of one deployment.
    pub group_id: String,
    /// Topics carrying raw ADC syslog lines, one line per record.
    pub input_topics: Vec<String>,
    /// Where a group without committed offsets starts: `earliest` (default: lose nothing) or `latest`.
    pub start_from: StartFrom,
    /// Consumer group session timeout; also bounds how long a dead instance holds its partitions.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long an output may wait for its delivery before its partition counts as stalled (`/readyz`
    /// not ready). The delivery is never given up for the brokers' trouble: it is retried until taken.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How often librdkafka reports statistics (consumer lag); `0s` turns lag metrics off.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// `at-least-once` (outputs, then offsets: duplicates after a crash, never gaps) or `exactly-once`
    /// (outputs, detection state and input offsets committed in one Kafka transaction per batch;
    /// consumers of the outputs read with `isolation.level=read_committed`).
    pub delivery: DeliveryMode,
    /// The producer's `transactional.id` in exactly-once mode: stable per instance, so a restarted
    /// instance aborts what its predecessor left open; unset or `""` = `<group_id>-<host name>`.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub transactional_id: Option<String>,
    /// Exactly-once mode: a transaction is committed after this many records...
    pub transaction_records: usize,
    /// ...or when it is this old, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub transaction_interval: Duration,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka `security.protocol`).
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`); empty = none.
    pub sasl_mechanism: SaslMechanism,
    pub sasl_username: String,
    /// File holding the SASL password (a mounted secret); unset = none. Read once at start-up.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub sasl_password_file: Option<PathBuf>,
    /// The content of `sasl_password_file`, read by [`Settings::load`]; never configured directly, so
    /// a password cannot sit in a config file.
    #[serde(skip)]
    pub sasl_password: Secret,
    /// CA bundle to verify the brokers (PEM); unset = the system's.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ssl_ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS (PEM); unset = none.
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ssl_certificate_file: Option<PathBuf>,
    #[serde(deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ssl_key_file: Option<PathBuf>,
    /// Extra librdkafka consumer properties, passed through unchanged.
    pub consumer_options: BTreeMap<String, String>,
    /// Extra librdkafka producer properties, passed through unchanged.
    pub producer_options: BTreeMap<String, String>,
}

/// librdkafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// librdkafka `sasl.mechanism`; `""` = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "")]
    None,
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "GSSAPI")]
    Gssapi,
    #[serde(rename = "OAUTHBEARER")]
    Oauthbearer,
}

impl SaslMechanism {
    pub fn as_librdkafka(self) -> Option<&'static str> {
        match self {
            SaslMechanism::None => None,
            SaslMechanism::Plain => Some("PLAIN"),
            SaslMechanism::ScramSha256 => Some("SCRAM-SHA-256"),
            SaslMechanism::ScramSha512 => Some("SCRAM-SHA-512"),
            SaslMechanism::Gssapi => Some("GSSAPI"),
            SaslMechanism::Oauthbearer => Some("OAUTHBEARER"),
        }
    }
}

/// `kafka.delivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    AtLeastOnce,
    ExactlyOnce,
}

impl KafkaSettings {
    /// The `transactional.id` of exactly-once mode.
    pub fn transactional_id(&self) -> String {
        if let Some(id) = &self.transactional_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "gatewatch".into());
        format!("{}-{host}", self.group_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            group_id: "gatewatch".into(),
            input_topics: vec!["adc.raw".into()],
            start_from: StartFrom::Earliest,
            session_timeout: Duration::from_secs(45),
            delivery_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
            delivery: DeliveryMode::AtLeastOnce,
            transactional_id: None,
            transaction_records: 1000,
            transaction_interval: Duration::from_millis(500),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::None,
            sasl_username: String::new(),
            sasl_password_file: None,
            sasl_password: Secret::default(),
            ssl_ca_file: None,
            ssl_certificate_file: None,
            ssl_key_file: None,
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// The section's own rules; those involving other sections are in [`super::Settings::validate`].
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "\"\"", "must name at least one host:port"));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "\"\"", "must not be empty"));
        }
        if self.input_topics.is_empty() || self.input_topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.input_topics",
                format!("{:?}", self.input_topics),
                "must list non-empty topic names",
            ));
        }
        for (key, value) in
            [("kafka.session_timeout", self.session_timeout), ("kafka.delivery_timeout", self.delivery_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        if self.delivery == DeliveryMode::ExactlyOnce {
            if self.transaction_records == 0 {
                return Err(invalid("kafka.transaction_records", 0, "must be at least 1"));
            }
            if self.transaction_interval.is_zero() {
                return Err(invalid("kafka.transaction_interval", "\"0s\"", "must be longer than zero"));
            }
        }
        self.check_security()?;
        for (key, path) in [
            ("kafka.sasl_password_file", &self.sasl_password_file),
            ("kafka.ssl_ca_file", &self.ssl_ca_file),
            ("kafka.ssl_certificate_file", &self.ssl_certificate_file),
            ("kafka.ssl_key_file", &self.ssl_key_file),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_file()) {
                return Err(invalid(key, shown(path), "file not found"));
            }
        }
        for (section, options) in
            [("kafka.consumer_options", &self.consumer_options), ("kafka.producer_options", &self.producer_options)]
        {
            for name in options.keys() {
                if PROTECTED_LIBRDKAFKA_OPTIONS.contains(&name.as_str()) {
                    // The value is never echoed: it may be a password.
                    return Err(invalid(
                        format!("{section}.\"{name}\""),
                        REDACTED_VALUE,
                        "gatewatch sets this librdkafka option itself; at-least-once delivery depends on it \
                         (use the kafka.* settings where one exists)",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl KafkaSettings {
    /// Security settings that only make sense together.
    fn check_security(&self) -> Result<(), ConfigError> {
        let k = self;
        let protocol = format!("{:?}", k.security_protocol.as_librdkafka());
        match (k.security_protocol.uses_sasl(), k.sasl_mechanism) {
            (true, SaslMechanism::None) => {
                return Err(invalid(
                    "kafka.sasl_mechanism",
                    "\"\"",
                    format!("must be set when kafka.security_protocol = {protocol}"),
                ))
            }
            (false, mechanism) if mechanism != SaslMechanism::None => {
                return Err(invalid(
                    "kafka.security_protocol",
                    protocol,
                    "must be sasl_plaintext or sasl_ssl when kafka.sasl_mechanism is set",
                ))
            }
            _ => {}
        }
        if matches!(k.sasl_mechanism, SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512) {
            if k.sasl_username.is_empty() {
                return Err(invalid("kafka.sasl_username", "\"\"", "must be set for PLAIN and SCRAM logins"));
            }
            let from_env = !k.sasl_password.expose().is_empty();
            if k.sasl_password_file.is_none() && !from_env {
                return Err(invalid(
                    "kafka.sasl_password_file",
                    "\"\"",
                    format!(
                        "must name the file holding the password (mount it from a secret), or set {SASL_PASSWORD_ENV}"
                    ),
                ));
            }
            if k.sasl_password_file.is_some() && from_env {
                return Err(invalid(
                    "kafka.sasl_password_file",
                    shown(&k.sasl_password_file),
                    format!("and {SASL_PASSWORD_ENV} are both set: keep one"),
                ));
            }
        }
        if !k.security_protocol.uses_tls() {
            for (key, path) in [
                ("kafka.ssl_ca_file", &k.ssl_ca_file),
                ("kafka.ssl_certificate_file", &k.ssl_certificate_file),
                ("kafka.ssl_key_file", &k.ssl_key_file),
            ] {
                if path.is_some() {
                    return Err(invalid(
                        key,
                        shown(path),
                        format!("has no effect with kafka.security_protocol = {protocol}: use ssl or sasl_ssl"),
                    ));
                }
            }
        }
        if k.ssl_certificate_file.is_none() != k.ssl_key_file.is_none() {
            let (key, path) = if k.ssl_key_file.is_none() {
                ("kafka.ssl_key_file", &k.ssl_key_file)
            } else {
                ("kafka.ssl_certificate_file", &k.ssl_certificate_file)
            };
            return Err(invalid(key, shown(path), "mutual TLS needs both the certificate and its key"));
        }
        Ok(())
    }
}
