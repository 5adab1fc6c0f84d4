//! Settings: what gatewatch reads at start-up, and nothing else.
//!
//! Layers, later wins: built-in defaults (`Settings::default`) < `config/default.toml` (when present in
//! the working directory) < the file named by `--config` < `GATEWATCH__SECTION__KEY` environment
//! variables. Every struct denies unknown fields, so a typo fails start-up with the key's name instead of
//! being silently ignored. [`Settings::load`] deserializes and [`Settings::validate`] checks what serde
//! cannot (cross-field rules, librdkafka options the delivery guarantee depends on). Nothing on the
//! per-event path reads configuration again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::parse::{Dataset, DateOrder, Device, ParseContext};
use crate::secrets::Secret;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichSettings {
    /// How often changed GeoIP databases and indicator feeds are looked for.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoipSettings {
    /// GeoLite2/GeoIP2 City database; empty = no city data.
    pub city_db: String,
    /// GeoLite2/GeoIP2 ASN database; empty = no AS data.
    pub asn_db: String,
    /// IP roles to enrich: any of source, client, destination, server, host.
    pub roles: Vec<String>,
}

impl Default for GeoipSettings {
    fn default() -> Self {
        GeoipSettings {
            city_db: String::new(),
            asn_db: String::new(),
            roles: ["source", "client", "destination", "server"].map(String::from).to_vec(),
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
    pub path: String,
    pub format: crate::enrich::feeds::Format,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectSettings {
    /// Directories of Sigma rules (`**/*.yml`), read at start-up and whenever a file changes.
    pub rules_dirs: Vec<String>,
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
    /// like the input topics), restored when a partition is assigned; empty = state lives in memory
    /// only and every restart or rebalance starts detection afresh.
    pub state_topic: String,
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
            state_topic: "adc.detect-state".into(),
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

    pub fn dirs(&self) -> Vec<PathBuf> {
        self.rules_dirs.iter().map(PathBuf::from).collect()
    }
}

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
    /// empty = no OTLP export (the Prometheus `/metrics` endpoint is always on).
    pub otlp_endpoint: String,
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
            otlp_endpoint: String::new(),
            otlp_protocol: OtlpProtocol::Http,
            export_interval: Duration::from_secs(30),
            export_timeout: Duration::from_secs(10),
            service_name: "gatewatch".into(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

/// `[baseline]`: per-appliance CPU/memory baselines (see `crate::baseline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineSettings {
    /// Topic of metric samples (JSON, ECS/Metricbeat names, keyed by appliance); empty = no baselines.
    pub metrics_topic: String,
    /// Compacted topic holding each series' detector state, partitioned like `metrics_topic`.
    pub state_topic: String,
    /// Anomaly score (0..1) at or above which a series raises an anomaly alert.
    pub alert_threshold: f64,
    /// Samples a series learns from before it scores...
    pub warmup: u64,
    /// ...and the time they must span (so every time of day has been seen).
    #[serde(with = "humantime_serde")]
    pub warmup_span: Duration,
    /// An anomalous score raises an alert only when the sample is also this far (in fraction points)
    /// from what the appliance usually shows at that time of day: CPU wiggles of a few points are noise
    /// to a SOC, a miner is tens of points.
    pub min_deviation: f64,
    /// Which deviations alert: `up` (more CPU or memory than usual: miners, backdoors, leaks), `down`,
    /// or `both`. Scores in the enriched samples cover both directions regardless.
    pub direction: Direction,
    /// An open anomaly closes after its scores stay below the threshold this long; until then it raises
    /// no second alert.
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// Series state is written to `state_topic` after this many samples of a partition...
    pub snapshot_every: usize,
    /// ...or when its oldest unsnapshotted sample is this old, whichever comes first. Offsets of the
    /// metrics topic are committed only up to the last written state, so nothing learned is lost.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// Bound on reading a partition's state back when it is assigned.
    #[serde(with = "humantime_serde")]
    pub restore_timeout: Duration,
    /// Bound on the series one partition holds (memory); samples of further series are dead-lettered.
    pub max_series_per_partition: usize,
    pub nitro: NitroSettings,
}

impl Default for BaselineSettings {
    fn default() -> Self {
        BaselineSettings {
            metrics_topic: "adc.metrics".into(),
            state_topic: "adc.baselines".into(),
            alert_threshold: crate::baseline::detector::Params::default().threshold,
            warmup: crate::baseline::detector::Params::default().warmup,
            warmup_span: Duration::from_secs(crate::baseline::detector::Params::default().warmup_span as u64),
            min_deviation: 0.1,
            direction: Direction::Up,
            clear_after: Duration::from_secs(6 * 3600),
            snapshot_every: 100,
            snapshot_interval: Duration::from_secs(60),
            restore_timeout: Duration::from_secs(60),
            max_series_per_partition: 50_000,
            nitro: NitroSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Both,
}

impl Direction {
    /// Whether `observed` deviates in this direction from `expected` by at least `min`, and leaves the
    /// band `low..=high` on that side.
    pub fn deviates(self, observed: f64, expected: f64, low: f64, high: f64, min: f64) -> bool {
        let up = observed - expected >= min && observed > high;
        let down = expected - observed >= min && observed < low;
        match self {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up || down,
        }
    }
}

/// `[baseline.nitro]`: the built-in poller of `GET /nitro/v1/stat/system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NitroSettings {
    /// Appliance name (its `observer.hostname`) → NITRO base URL, e.g. `adc1 = "https://10.0.0.5"`.
    /// Empty = no polling.
    pub appliances: BTreeMap<String, String>,
    /// Time between two polls of one appliance.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// NITRO user (`X-NITRO-USER`); set it from the environment (`GATEWATCH__BASELINE__NITRO__USERNAME`).
    pub username: String,
    /// File holding the NITRO password (a mounted secret); `password` is used when this is empty.
    pub password_file: String,
    /// The password itself, for environments that inject it as a variable
    /// (`GATEWATCH__BASELINE__NITRO__PASSWORD`).
    pub password: Secret,
    /// Verify the appliance's TLS certificate (against `ca_file`, or the system's roots).
    pub tls_verify: bool,
    /// Accept `http://` appliance URLs. Off by default: the NITRO credentials travel in headers.
    pub allow_http: bool,
    /// PEM file of the CA that signed the appliances' certificates.
    pub ca_file: String,
}

impl Default for NitroSettings {
    fn default() -> Self {
        NitroSettings {
            appliances: BTreeMap::new(),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            username: String::new(),
            password_file: String::new(),
            password: Secret::default(),
            tls_verify: true,
            allow_http: false,
            ca_file: String::new(),
        }
    }
}

/// `[devices.<host>]`: how one appliance writes dates and times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSettings {
    /// `mdy` or `dmy`; unset = `parse.date_order`.
    pub date_order: Option<DateOrder>,
    /// IANA zone of times written without `GMT`; unset = `parse.timezone`.
    pub timezone: Option<String>,
}

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
    /// instance aborts what its predecessor left open; "" = `<group_id>-<host name>`.
    pub transactional_id: String,
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
    /// File holding the SASL password (a mounted secret); empty = none. Read once at start-up.
    pub sasl_password_file: String,
    /// The content of `sasl_password_file`, read by [`Settings::load`]; never configured directly, so
    /// a password cannot sit in a config file.
    #[serde(skip)]
    pub sasl_password: Secret,
    /// CA bundle to verify the brokers (PEM); empty = the system's.
    pub ssl_ca_file: String,
    /// Client certificate and key for mutual TLS (PEM); empty = none.
    pub ssl_certificate_file: String,
    pub ssl_key_file: String,
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
        if !self.transactional_id.is_empty() {
            return self.transactional_id.clone();
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
            transactional_id: String::new(),
            transaction_records: 1000,
            transaction_interval: Duration::from_millis(500),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::None,
            sasl_username: String::new(),
            sasl_password_file: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_file: String::new(),
            ssl_certificate_file: String::new(),
            ssl_key_file: String::new(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
        }
    }
}

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParseSettings {
    /// Longest line parsed; longer records go to the dead-letter topic.
    pub max_line: ByteSize,
    /// Day/month order of ambiguous NetScaler dates for appliances without a `[devices.<host>]` entry.
    pub date_order: DateOrder,
    /// IANA time zone of times written without `GMT`, for appliances without their own.
    pub timezone: String,
    /// Input topics that carry one appliance file each, and which (`httpaccess`, `httperror`, `shell`,
    /// `cron`, `syslog`, `log`): lets free-text lines such as httperror's stderr captures parse.
    pub topic_datasets: BTreeMap<String, String>,
}

impl Default for ParseSettings {
    fn default() -> Self {
        ParseSettings {
            max_line: ByteSize::kib(64),
            date_order: DateOrder::Mdy,
            timezone: "UTC".into(),
            topic_datasets: BTreeMap::new(),
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive; `RUST_LOG` overrides it at run time.
    pub level: String,
    /// `json` (one object per line, for log shippers) or `text` (for people).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into(), format: LogFormat::Json }
    }
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
        if !settings.kafka.sasl_password_file.is_empty() {
            let path = Path::new(&settings.kafka.sasl_password_file);
            settings.kafka.sasl_password = crate::secrets::read_file(path)
                .map_err(|e| invalid("kafka.sasl_password_file", format!("{path:?}"), format!("unreadable: {e}")))?;
        }
        crate::kafka::check_build(&settings)?;
        Ok(settings)
    }

    /// Checks what deserialization cannot: non-empty names, distinct topics, positive bounds and the
    /// librdkafka options reserved for the delivery guarantee.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "\"\"", "must name at least one host:port"));
        }
        if k.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "\"\"", "must not be empty"));
        }
        if k.input_topics.is_empty() || k.input_topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.input_topics",
                format!("{:?}", k.input_topics),
                "must list non-empty topic names",
            ));
        }
        for (key, value) in
            [("kafka.session_timeout", k.session_timeout), ("kafka.delivery_timeout", k.delivery_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        if self.telemetry.export_interval.is_zero() {
            return Err(invalid("telemetry.export_interval", "\"0s\"", "must be longer than zero"));
        }
        if !self.telemetry.otlp_endpoint.is_empty() && !self.telemetry.otlp_endpoint.starts_with("http") {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                format!("{:?}", self.telemetry.otlp_endpoint),
                "must be an http:// or https:// URL",
            ));
        }
        if self.detect.max_groups == 0 {
            return Err(invalid("detect.max_groups", 0, "must be at least 1"));
        }
        if self.enrich.reload_interval.is_zero() {
            return Err(invalid("enrich.reload_interval", "\"0s\"", "must be longer than zero"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, feed) in self.enrich.ioc.feeds.iter().enumerate() {
            if feed.name.trim().is_empty() || !names.insert(feed.name.as_str()) {
                return Err(invalid(
                    format!("enrich.ioc.feeds[{i}].name"),
                    format!("{:?}", feed.name),
                    "must be non-empty and unique",
                ));
            }
            if feed.path.trim().is_empty() {
                return Err(invalid(format!("enrich.ioc.feeds[{i}].path"), "\"\"", "must name a file"));
            }
        }
        if self.pipeline.shutdown_timeout.is_zero() {
            return Err(invalid("pipeline.shutdown_timeout", "\"0s\"", "must be longer than zero"));
        }
        self.validate_kafka_security()?;
        for (key, path) in [
            ("kafka.sasl_password_file", &k.sasl_password_file),
            ("kafka.ssl_ca_file", &k.ssl_ca_file),
            ("kafka.ssl_certificate_file", &k.ssl_certificate_file),
            ("kafka.ssl_key_file", &k.ssl_key_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return Err(invalid(key, format!("{path:?}"), "file not found"));
            }
        }
        if self.admin.max_connections == 0 {
            return Err(invalid("admin.max_connections", 0, "must be at least 1"));
        }
        for (key, value) in
            [("admin.header_timeout", self.admin.header_timeout), ("admin.request_timeout", self.admin.request_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        if self.pipeline.max_in_flight_per_partition == 0 {
            return Err(invalid("pipeline.max_in_flight_per_partition", 0, "must be at least 1"));
        }
        if self.parse.max_line.as_u64() == 0 {
            return Err(invalid("parse.max_line", "\"0B\"", "must be larger than zero"));
        }
        // A dead letter carries up to dlq_max_original bytes, base64-encoded when they are not text,
        // in an envelope: it must itself fit.
        let max_message = self.output.max_message_bytes.as_u64();
        let letter = self.output.dlq_max_original.as_u64() * 4 / 3 + 4096;
        if max_message < letter {
            return Err(invalid(
                "output.max_message_bytes",
                format!("{:?}", self.output.max_message_bytes.to_string()),
                format!("must hold a dead letter of output.dlq_max_original: at least {letter} bytes"),
            ));
        }
        let zone = |key: String, name: &str| {
            name.parse::<chrono_tz::Tz>()
                .map_err(|_| invalid(key, format!("{name:?}"), "is not an IANA time zone name"))
        };
        zone("parse.timezone".into(), &self.parse.timezone)?;
        for (host, device) in &self.devices {
            if let Some(tz) = &device.timezone {
                zone(format!("devices.{host}.timezone"), tz)?;
            }
        }
        for (topic, dataset) in &self.parse.topic_datasets {
            if Dataset::from_name(dataset).is_none() {
                return Err(invalid(
                    format!("parse.topic_datasets.\"{topic}\""),
                    format!("{dataset:?}"),
                    "is not a dataset (httpaccess, httperror, shell, cron, syslog, log, honeypot)",
                ));
            }
        }
        self.validate_baseline()?;
        let o = &self.output;
        let outputs = [
            ("output.enriched_topic", &o.enriched_topic),
            ("output.alerts_topic", &o.alerts_topic),
            ("output.dlq_topic", &o.dlq_topic),
        ];
        for (key, topic) in outputs {
            if topic.trim().is_empty() {
                return Err(invalid(key, "\"\"", "must not be empty"));
            }
            if k.input_topics.contains(topic) || *topic == self.baseline.metrics_topic {
                return Err(invalid(
                    key,
                    format!("{topic:?}"),
                    "is also an input topic: gatewatch would consume its own output",
                ));
            }
        }
        for (section, options) in
            [("kafka.consumer_options", &k.consumer_options), ("kafka.producer_options", &k.producer_options)]
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

impl Settings {
    /// Security settings that only make sense together.
    fn validate_kafka_security(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
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
            if k.sasl_password_file.is_empty() && !from_env {
                return Err(invalid(
                    "kafka.sasl_password_file",
                    "\"\"",
                    format!(
                        "must name the file holding the password (mount it from a secret), or set {SASL_PASSWORD_ENV}"
                    ),
                ));
            }
            if !k.sasl_password_file.is_empty() && from_env {
                return Err(invalid(
                    "kafka.sasl_password_file",
                    format!("{:?}", k.sasl_password_file),
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
                if !path.is_empty() {
                    return Err(invalid(
                        key,
                        format!("{path:?}"),
                        format!("has no effect with kafka.security_protocol = {protocol}: use ssl or sasl_ssl"),
                    ));
                }
            }
        }
        if k.ssl_certificate_file.is_empty() != k.ssl_key_file.is_empty() {
            let (key, path) = if k.ssl_key_file.is_empty() {
                ("kafka.ssl_key_file", &k.ssl_key_file)
            } else {
                ("kafka.ssl_certificate_file", &k.ssl_certificate_file)
            };
            return Err(invalid(key, format!("{path:?}"), "mutual TLS needs both the certificate and its key"));
        }
        Ok(())
    }
}

impl Settings {
    fn validate_baseline(&self) -> Result<(), ConfigError> {
        let b = &self.baseline;
        if !(b.alert_threshold > 0.0 && b.alert_threshold <= 1.0) {
            return Err(invalid("baseline.alert_threshold", b.alert_threshold, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&b.min_deviation) {
            return Err(invalid("baseline.min_deviation", b.min_deviation, "must be in [0, 1]"));
        }
        if b.snapshot_every == 0 {
            return Err(invalid("baseline.snapshot_every", 0, "must be at least 1"));
        }
        if b.max_series_per_partition == 0 {
            return Err(invalid("baseline.max_series_per_partition", 0, "must be at least 1"));
        }
        for (key, value) in [
            ("baseline.snapshot_interval", b.snapshot_interval),
            ("baseline.restore_timeout", b.restore_timeout),
            ("baseline.nitro.interval", b.nitro.interval),
            ("baseline.nitro.timeout", b.nitro.timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        let k = &self.kafka;
        if k.delivery == DeliveryMode::ExactlyOnce {
            if !b.metrics_topic.is_empty() {
                return Err(invalid(
                    "kafka.delivery",
                    "\"exactly-once\"",
                    "covers the log topics only: set baseline.metrics_topic = \"\" (run baselines in an at-least-once \
                     deployment of their own)",
                ));
            }
            if k.transaction_records == 0 {
                return Err(invalid("kafka.transaction_records", 0, "must be at least 1"));
            }
            if k.transaction_interval.is_zero() {
                return Err(invalid("kafka.transaction_interval", "\"0s\"", "must be longer than zero"));
            }
        }
        let d = &self.detect;
        for (key, value) in [
            ("detect.snapshot_every", d.snapshot_every),
            ("detect.max_groups", d.max_groups),
            ("detect.max_values", d.max_values),
            ("detect.max_evidence", d.max_evidence),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be at least 1"));
            }
        }
        for (key, value) in
            [("detect.snapshot_interval", d.snapshot_interval), ("detect.restore_timeout", d.restore_timeout)]
        {
            if value.is_zero() {
                return Err(invalid(key, "\"0s\"", "must be longer than zero"));
            }
        }
        let others = [&b.metrics_topic, &b.state_topic, &self.output.enriched_topic, &self.output.alerts_topic];
        if !d.state_topic.is_empty()
            && (self.kafka.input_topics.contains(&d.state_topic)
                || others.contains(&&d.state_topic)
                || d.state_topic == self.output.dlq_topic)
        {
            return Err(invalid(
                "detect.state_topic",
                format!("{:?}", d.state_topic),
                "must be a topic of its own (not an input, output or baseline topic)",
            ));
        }
        if !b.metrics_topic.is_empty() {
            if b.state_topic.trim().is_empty() {
                return Err(invalid(
                    "baseline.state_topic",
                    "\"\"",
                    "must name a topic when baseline.metrics_topic is set",
                ));
            }
            if b.state_topic == b.metrics_topic || self.kafka.input_topics.contains(&b.state_topic) {
                return Err(invalid(
                    "baseline.state_topic",
                    format!("{:?}", b.state_topic),
                    "must differ from the metrics and input topics",
                ));
            }
        }
        let n = &b.nitro;
        for (name, url) in &n.appliances {
            let reason = if url.starts_with("https://") {
                continue;
            } else if url.starts_with("http://") {
                if n.allow_http {
                    continue;
                }
                "must be an https:// URL: the NITRO credentials travel in request headers \
                 (set baseline.nitro.allow_http = true to accept http:// on a trusted network)"
            } else {
                "must be an https:// URL"
            };
            return Err(invalid(format!("baseline.nitro.appliances.{name}"), format!("{url:?}"), reason));
        }
        if !n.appliances.is_empty() {
            if b.metrics_topic.is_empty() {
                return Err(invalid("baseline.metrics_topic", "\"\"", "the NITRO poller publishes to it"));
            }
            if n.username.is_empty() {
                return Err(invalid("baseline.nitro.username", "\"\"", "must be set when appliances are polled"));
            }
        }
        for (key, path) in [("baseline.nitro.password_file", &n.password_file), ("baseline.nitro.ca_file", &n.ca_file)]
        {
            if !path.is_empty() && !Path::new(path).is_file() {
                return Err(invalid(key, format!("{path:?}"), "file not found"));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The parser's view of the settings. Call after [`Settings::validate`].
    pub fn parse_context(&self) -> ParseContext {
        let zone = |name: &str| name.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
        let default_device = Device { date_order: self.parse.date_order, timezone: zone(&self.parse.timezone) };
        let devices = self
            .devices
            .iter()
            .map(|(host, d)| {
                let device = Device {
                    date_order: d.date_order.unwrap_or(default_device.date_order),
                    timezone: d.timezone.as_deref().map(zone).unwrap_or(default_device.timezone),
                };
                (host.to_ascii_lowercase(), device)
            })
            .collect();
        ParseContext { max_line: self.parse.max_line.as_u64() as usize, default_device, devices }
    }

    /// The dataset hint of each input topic named in `parse.topic_datasets`.
    pub fn topic_datasets(&self) -> std::collections::HashMap<String, Dataset> {
        self.parse.topic_datasets.iter().filter_map(|(t, d)| Some((t.clone(), Dataset::from_name(d)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
