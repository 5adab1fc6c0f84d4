//! Kafka connections: the connection and security options every client shares, what this build of
//! librdkafka can honour (checked offline when the settings load), and the live connection check
//! behind `gatewatch check --connect` and the start of `gatewatch run`.
//!
//! Takes [`Settings`]; produces librdkafka options, [`ConfigError`]s naming the gatewatch key, and
//! [`Problem`]s — one line each, naming the setting to look at. Nothing here prints a secret: errors
//! about protected options name the key only, and every librdkafka message passes through
//! [`crate::secrets::redact`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::{invalid, ConfigError, KafkaSettings, SaslMechanism, Settings, REDACTED_VALUE};
use crate::secrets::redact;

/// How long the connection check waits for the brokers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection and security properties both clients share.
pub fn connection_options(k: &KafkaSettings) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("bootstrap.servers", k.brokers.clone()),
        ("security.protocol", k.security_protocol.as_librdkafka().to_owned()),
    ];
    if let Some(mechanism) = k.sasl_mechanism.as_librdkafka() {
        out.push(("sasl.mechanism", mechanism.to_owned()));
        if !k.sasl_username.is_empty() {
            out.push(("sasl.username", k.sasl_username.clone()));
        }
        if !k.sasl_password.is_empty() {
            out.push(("sasl.password", k.sasl_password.expose().to_owned()));
        }
    }
    for (key, path) in [
        ("ssl.ca.location", &k.ssl_ca_file),
        ("ssl.certificate.location", &k.ssl_certificate_file),
        ("ssl.key.location", &k.ssl_key_file),
    ] {
        if let Some(path) = path {
            out.push((key, path.display().to_string()));
        }
    }
    out
}

/// librdkafka options whose values are secrets (or contain them).
fn is_sensitive(option: &str) -> bool {
    option.contains("password")
        || option.contains("secret")
        || option.ends_with(".pem")
        || option == "sasl.oauthbearer.config"
        || option == "sasl.jaas.config"
}

/// The gatewatch key that sets a librdkafka option (`side` names the pass-through table otherwise).
fn setting_of(option: &str, side: &str) -> String {
    let key = match option {
        "bootstrap.servers" => "kafka.brokers",
        "security.protocol" => "kafka.security_protocol",
        "sasl.mechanism" | "sasl.mechanisms" => "kafka.sasl_mechanism",
        "sasl.username" => "kafka.sasl_username",
        "sasl.password" => "kafka.sasl_password_file",
        "ssl.ca.location" => "kafka.ssl_ca_file",
        "ssl.certificate.location" => "kafka.ssl_certificate_file",
        "ssl.key.location" => "kafka.ssl_key_file",
        "group.id" => "kafka.group_id",
        "session.timeout.ms" => "kafka.session_timeout",
        "message.timeout.ms" => "kafka.delivery_timeout",
        "statistics.interval.ms" => "kafka.stats_interval",
        _ => return format!("{side}.\"{option}\""),
    };
    key.to_owned()
}

/// A librdkafka error as one line without secrets: a rejected option is named, its value only when
/// it is not sensitive.
pub fn describe_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, option, value) => {
            let description = if is_sensitive(option) {
                description.replace(value.as_str(), REDACTED_VALUE)
            } else {
                description.clone()
            };
            redact(&format!("librdkafka option {option:?}: {description}")).into_owned()
        }
        other => redact(&other.to_string()).into_owned(),
    }
}

/// The features this build of librdkafka was compiled with (`ssl`, `sasl_scram`, …).
pub fn builtin_features() -> Vec<String> {
    ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|f| f.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Fails on settings this build cannot honour: a security protocol or SASL mechanism librdkafka was
/// built without, or an option librdkafka rejects. Offline: no client is created.
pub fn check_build(settings: &Settings) -> Result<(), ConfigError> {
    let k = &settings.kafka;
    let features = builtin_features();
    let mut needs = Vec::new();
    if k.security_protocol.uses_tls() {
        needs.push(("kafka.security_protocol", k.security_protocol.as_librdkafka(), "ssl"));
    }
    let feature = match k.sasl_mechanism {
        SaslMechanism::None => None,
        SaslMechanism::Plain => Some("sasl_plain"),
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => Some("sasl_scram"),
        SaslMechanism::Gssapi => Some("sasl_gssapi"),
        SaslMechanism::Oauthbearer => Some("sasl_oauthbearer"),
    };
    if let (Some(feature), Some(name)) = (feature, k.sasl_mechanism.as_librdkafka()) {
        needs.push(("kafka.sasl_mechanism", name, feature));
    }
    for (key, value, feature) in needs {
        if !features.iter().any(|f| f == feature) {
            return Err(invalid(
                key,
                format!("{value:?}"),
                format!(
                    "this build of gatewatch cannot use it: its librdkafka was built without {feature} (built with: {})",
                    features.join(", ")
                ),
            ));
        }
    }
    for (key, path, marker) in [
        ("kafka.ssl_ca_file", &k.ssl_ca_file, "-----BEGIN CERTIFICATE-----"),
        ("kafka.ssl_certificate_file", &k.ssl_certificate_file, "-----BEGIN CERTIFICATE-----"),
        ("kafka.ssl_key_file", &k.ssl_key_file, "PRIVATE KEY-----"),
    ] {
        let Some(path) = path else { continue };
        let text = std::fs::read(path).map_err(|e| invalid(key, format!("{path:?}"), format!("unreadable: {e}")))?;
        if !String::from_utf8_lossy(&text).contains(marker) {
            return Err(invalid(key, format!("{path:?}"), format!("is not a PEM file (no {marker:?} in it)")));
        }
    }
    for (side, config) in [
        ("kafka.consumer_options", crate::source::consumer_config(settings)),
        ("kafka.producer_options", crate::sink::producer_config(settings)),
    ] {
        if let Err(KafkaError::ClientConfig(_, description, option, value)) = config.create_native_config() {
            let shown = if is_sensitive(&option) { REDACTED_VALUE.to_owned() } else { format!("{value:?}") };
            let description =
                if is_sensitive(&option) { description.replace(value.as_str(), REDACTED_VALUE) } else { description };
            return Err(invalid(setting_of(&option, side), shown, redact(&description).into_owned()));
        }
    }
    Ok(())
}

/// One thing the connection check found wrong, naming the setting to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct Problem {
    pub setting: String,
    pub message: String,
    /// The brokers answered and refused us (TLS, authentication): retrying will not help.
    pub refused: bool,
}

impl Problem {
    fn new(setting: impl Into<String>, message: impl Into<String>, refused: bool) -> Problem {
        Problem { setting: setting.into(), message: redact(&message.into()).into_owned(), refused }
    }
}

/// A client context that keeps librdkafka's errors for the check instead of logging them, so a wrong
/// CA or password gives one line, not a stream of retries.
#[derive(Default)]
struct Watch {
    errors: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl ClientContext for Watch {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _message: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 64 {
            errors.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

impl ConsumerContext for Watch {}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl Watch {
    /// The first error that means the brokers refused us, as a problem naming the setting.
    fn refusal(&self, k: &KafkaSettings) -> Option<Problem> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.iter().find_map(|(code, reason)| refusal(k, *code, reason))
    }

    fn last_error(&self) -> Option<String> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).last().map(|(_, reason)| reason.clone())
    }
}

/// Classifies a librdkafka error: TLS and authentication failures name the setting behind them.
fn refusal(k: &KafkaSettings, code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Problem> {
    let lower = reason.to_ascii_lowercase();
    if code == Some(RDKafkaErrorCode::Authentication) || lower.contains("sasl authentication") {
        let mechanism = k.sasl_mechanism.as_librdkafka().unwrap_or("?");
        return Some(Problem::new(
            "kafka.sasl_password_file",
            format!(
                "the brokers refused the {mechanism} login of kafka.sasl_username = {:?} (wrong password, user or \
                 mechanism): {reason}",
                k.sasl_username
            ),
            true,
        ));
    }
    // A refused client certificate shows after the handshake (TLS 1.3), as a transport failure.
    if code == Some(RDKafkaErrorCode::SSL) || lower.contains("ssl handshake failed") || lower.contains("ssl routines") {
        if lower.contains("certificate verify failed") || lower.contains("could not be verified") {
            let ca = match &k.ssl_ca_file {
                None => "(the system's roots)".to_owned(),
                Some(path) => format!("{path:?}"),
            };
            return Some(Problem::new(
                format!("kafka.ssl_ca_file = {ca}"),
                format!("the brokers' certificate is not signed by this CA: {reason}"),
                true,
            ));
        }
        if lower.contains("alert") {
            return Some(Problem::new(
                "kafka.ssl_certificate_file",
                format!(
                    "the brokers ended the TLS handshake (a missing or untrusted client certificate for mutual TLS?): \
                     {reason}"
                ),
                true,
            ));
        }
        return Some(Problem::new(
            "kafka.security_protocol",
            format!("TLS handshake with the brokers failed (does their listener speak TLS?): {reason}"),
            true,
        ));
    }
    None
}

/// What a successful connection check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub brokers: usize,
    /// (setting, topic, partitions)
    pub topics: Vec<(String, String, usize)>,
}

/// The topics the configuration names, with the key that names each: (key, topic, read by us).
fn named_topics(settings: &Settings) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> =
        settings.kafka.input_topics.iter().map(|t| ("kafka.input_topics".to_owned(), t.clone(), true)).collect();
    for (key, topic) in settings.output.topics() {
        out.push((key.to_owned(), topic.to_owned(), false));
    }
    let b = &settings.baseline;
    if let Some(metrics) = &b.metrics_topic {
        out.push(("baseline.metrics_topic".to_owned(), metrics.clone(), true));
        // The state topic is written, and read back when a partition is assigned.
        out.push(("baseline.state_topic".to_owned(), b.state_topic.clone(), true));
    }
    if let Some(state) = &settings.detect.state_topic {
        out.push(("detect.state_topic".to_owned(), state.clone(), true));
    }
    out
}

/// Waits for the brokers' metadata, giving up early when they refused us.
fn fetch_metadata<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    watch: &Watch,
    k: &KafkaSettings,
    serve: &dyn Fn(),
    deadline: Instant,
) -> Result<Metadata, Problem> {
    loop {
        let error = match client.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => error,
        };
        serve();
        if let Some(problem) = watch.refusal(k) {
            return Err(problem);
        }
        if Instant::now() >= deadline {
            let last = watch.last_error().unwrap_or_else(|| describe_error(&error));
            return Err(Problem::new(
                format!("kafka.brokers = {:?}", k.brokers),
                format!("no broker answered within {}s: {last}", CONNECT_TIMEOUT.as_secs()),
                false,
            ));
        }
    }
}

/// Connects with the configured clients and checks what the service needs: the brokers answer and
/// accept our TLS and login; every named topic exists with a leader for each partition; the input,
/// metrics and state topics are readable (offsets listed) and the group's offsets can be fetched; the
/// producer is accepted (metadata, and its idempotent producer id is not refused). Writing is not
/// tried: the check publishes nothing.
pub fn connect(settings: &Settings, timeout: Duration) -> Result<Connected, Vec<Problem>> {
    let k = &settings.kafka;
    let deadline = Instant::now() + timeout;
    let client_problem = |e: KafkaError| vec![Problem::new("kafka", describe_error(&e), true)];
    let mut consumer_config = crate::source::consumer_config(settings);
    consumer_config.set_log_level(RDKafkaLogLevel::Emerg).set("statistics.interval.ms", "0");
    let consumer: BaseConsumer<Watch> =
        consumer_config.create_with_context(Watch::default()).map_err(client_problem)?;
    let serve_consumer = || {
        let _ = consumer.poll(Duration::ZERO);
    };
    let metadata =
        fetch_metadata(consumer.client(), consumer.context(), k, &serve_consumer, deadline).map_err(|p| vec![p])?;

    let mut problems = Vec::new();
    let topics = check_topics(settings, &consumer, &metadata, deadline, &mut problems);

    check_producer(settings, deadline, &mut problems).map_err(client_problem)?;
    if problems.is_empty() {
        Ok(Connected { brokers: metadata.brokers().len(), topics })
    } else {
        Err(problems)
    }
}

/// Every topic the settings name: it exists, each partition has a leader, the ones read are readable,
/// and the group's committed offsets for the input topics can be read. (key, topic, partitions) of
/// those that exist.
fn check_topics(
    settings: &Settings,
    consumer: &BaseConsumer<Watch>,
    metadata: &Metadata,
    deadline: Instant,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String, usize)> {
    let mut topics = Vec::new();
    let mut readable = TopicPartitionList::new();
    for (key, name, read) in named_topics(settings) {
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
            problems.push(Problem::new(format!("{key} = {name:?}"), "topic does not exist", false));
            continue;
        };
        if let Some(error) = topic.error() {
            let code = RDKafkaErrorCode::from(error);
            problems.push(Problem::new(format!("{key} = {name:?}"), format!("topic not usable: {code}"), false));
            continue;
        }
        for p in topic.partitions() {
            if p.leader() < 0 || p.error().is_some() {
                problems.push(Problem::new(
                    format!("{key} = {name:?}"),
                    format!("partition {} has no leader", p.id()),
                    false,
                ));
            } else if read {
                let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                if let Err(error) = consumer.fetch_watermarks(&name, p.id(), remaining) {
                    problems.push(Problem::new(
                        format!("{key} = {name:?}"),
                        format!("partition {} not readable: {}", p.id(), describe_error(&error)),
                        false,
                    ));
                }
                if key == "kafka.input_topics" {
                    let _ = readable.add_partition_offset(&name, p.id(), rdkafka::Offset::Invalid);
                }
            }
        }
        topics.push((key, name, topic.partitions().len()));
    }
    if readable.count() > 0 {
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        if let Err(error) = consumer.committed_offsets(readable, remaining) {
            problems.push(Problem::new(
                format!("kafka.group_id = {:?}", settings.kafka.group_id),
                format!("the group's committed offsets cannot be read: {}", describe_error(&error)),
                false,
            ));
        }
    }
    topics
}

/// The idempotent producer connects and gets its producer id (a refusal is a fatal error).
fn check_producer(settings: &Settings, deadline: Instant, problems: &mut Vec<Problem>) -> Result<(), KafkaError> {
    let mut producer_config = crate::sink::producer_config(settings);
    producer_config.set_log_level(RDKafkaLogLevel::Emerg).set("statistics.interval.ms", "0");
    let producer: BaseProducer<Watch> = producer_config.create_with_context(Watch::default())?;
    let serve_producer = || producer.poll(Duration::ZERO);
    match fetch_metadata(producer.client(), producer.context(), &settings.kafka, &serve_producer, deadline) {
        Ok(_) => {
            let settle = Instant::now() + Duration::from_secs(1);
            while Instant::now() < settle && producer.client().fatal_error().is_none() {
                producer.poll(Duration::from_millis(100));
            }
            if let Some((code, reason)) = producer.client().fatal_error() {
                problems.push(Problem::new("kafka", format!("the producer was refused: {code}: {reason}"), true));
            }
        }
        Err(problem) => problems.push(problem),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_sensitive_options_never_show_their_value() {
        let error = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"t0p-secret\" for configuration property \"ssl.key.password\"".into(),
            "ssl.key.password".into(),
            "t0p-secret".into(),
        );
        let text = describe_error(&error);
        assert!(text.contains("ssl.key.password") && !text.contains("t0p-secret"), "{text}");
    }

    #[test]
    fn this_build_speaks_tls_and_scram() {
        let features = builtin_features();
        for needed in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(features.iter().any(|f| f == needed), "{needed} missing from {features:?}");
        }
    }

    #[test]
    fn refusals_name_the_setting_behind_them() {
        let k = KafkaSettings { ssl_ca_file: Some("/etc/ca.pem".into()), ..KafkaSettings::default() };
        let ssl = refusal(
            &k,
            Some(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        )
        .unwrap();
        assert_eq!(ssl.setting, "kafka.ssl_ca_file = \"/etc/ca.pem\"");
        let auth = refusal(&k, Some(RDKafkaErrorCode::Authentication), "SASL authentication error: bad").unwrap();
        assert_eq!(auth.setting, "kafka.sasl_password_file");
        assert!(refusal(&k, Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down").is_none());
    }
}
