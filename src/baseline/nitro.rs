//! The NITRO poller: `GET /nitro/v1/stat/system` on each configured appliance, every
//! `baseline.nitro.interval`, published as a metric sample to `baseline.metrics_topic` (keyed by the
//! appliance, so its series land in one partition).
//!
//! NITRO reports percentages; samples carry fractions. 4294967295 (`0xFFFFFFFF`) means "not available"
//! and leaves the metric out of the sample. A failed poll (authentication, HTTP error, unreachable,
//! unreadable body) publishes nothing: it is logged and counted in `gatewatch_nitro_polls_total`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::{json, Map, Value as Json};

use super::METRICS;
use crate::config::{NitroSettings, Settings};
use crate::metrics::{Metrics, PollLabels};
use crate::offsets::Stop;

/// NITRO's "not available" value.
pub const NOT_AVAILABLE: f64 = 4_294_967_295.0;

/// NITRO counter → the sample field it becomes (in [`METRICS`] order).
pub const COUNTERS: [(&str, &str); 4] = [
    ("cpuusagepcnt", METRICS[0].0),
    ("memusagepcnt", METRICS[1].0),
    ("pktcpuusagepcnt", METRICS[2].0),
    ("mgmtcpuusagepcnt", METRICS[3].0),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PollError {
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("unreadable response: {0}")]
    BadResponse(String),
}

impl PollError {
    pub fn code(&self) -> &'static str {
        match self {
            PollError::Auth(_) => "auth_failed",
            PollError::Http { .. } => "http_error",
            PollError::Unreachable(_) => "unreachable",
            PollError::BadResponse(_) => "bad_response",
        }
    }
}

/// NITRO error codes that mean the credentials were refused (bad user/password, session expired, not
/// authorised).
const AUTH_ERRORCODES: [i64; 4] = [354, 444, 1049, 2138];

/// Why the poller cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("baseline.nitro.ca_file = {path:?}: {source}")]
    CaFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("baseline.nitro.ca_file = {path:?}: no PEM certificate in it")]
    NoCertificate { path: std::path::PathBuf },
    #[error("the metrics producer: {0}")]
    Producer(String),
    #[error("baseline.metrics_topic = \"\": the NITRO poller publishes to it")]
    NoMetricsTopic,
    #[error("starting the poller thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Builds the HTTP agent: TLS verification on or off, optionally against a CA file.
pub fn agent(settings: &NitroSettings) -> Result<ureq::Agent, StartError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder().disable_verification(!settings.tls_verify);
    if let Some(ca_file) = &settings.ca_file {
        let pem = std::fs::read(ca_file).map_err(|source| StartError::CaFile { path: ca_file.clone(), source })?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(StartError::NoCertificate { path: ca_file.clone() });
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .http_status_as_error(false)
        // Never follow a redirect: the credentials are request headers and would go with it.
        .max_redirects(0)
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

/// The password: the secret file's content (trimmed) when configured, else `password`. Read on every
/// poll, so a rotated secret is picked up; every value read is registered as a secret.
fn password(settings: &NitroSettings) -> Result<crate::secrets::Secret, PollError> {
    let Some(path) = &settings.password_file else {
        return Ok(settings.password.clone());
    };
    crate::secrets::read_file(path).map_err(|e| PollError::Auth(format!("reading baseline.nitro.password_file: {e}")))
}

/// One poll: the appliance's counters as sample fields (fractions), "not available" left out.
pub fn poll(
    agent: &ureq::Agent,
    base_url: &str,
    settings: &NitroSettings,
) -> Result<Vec<(&'static str, f64)>, PollError> {
    let url = format!("{}/nitro/v1/stat/system", base_url.trim_end_matches('/'));
    let pass = password(settings)?;
    let mut response = agent
        .get(&url)
        .header("X-NITRO-USER", &settings.username)
        .header("X-NITRO-PASS", pass.expose())
        .header("Accept", "application/json")
        .call()
        .map_err(|e| PollError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| PollError::BadResponse(e.to_string()))?;
    let location = response.headers().get("location").and_then(|l| l.to_str().ok());
    read_stats(status, location, &body)
}

/// The counters of a `/nitro/v1/stat/system` answer (HTTP status, `Location` header, body) as sample
/// fields (fractions), "not available" left out; anything else is a [`PollError`] saying what was wrong.
pub fn read_stats(status: u16, location: Option<&str>, body: &str) -> Result<Vec<(&'static str, f64)>, PollError> {
    let doc: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    let errorcode = doc.get("errorcode").and_then(Json::as_i64).unwrap_or(0);
    let message = quoted(doc.get("message").and_then(Json::as_str).unwrap_or(""));
    if status == 401 || status == 403 || AUTH_ERRORCODES.contains(&errorcode) {
        return Err(PollError::Auth(if message.is_empty() { format!("HTTP {status}") } else { message }));
    }
    if (300..400).contains(&status) {
        let target = location.unwrap_or("?");
        return Err(PollError::Http {
            status,
            body: format!("redirect to {target:?} not followed (the credentials are never sent to a redirect target)"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(PollError::Http { status, body: quoted(body) });
    }
    if errorcode != 0 {
        return Err(PollError::BadResponse(format!("errorcode {errorcode}: {message}")));
    }
    let system = match doc.get("system") {
        Some(Json::Object(system)) => system,
        // Some releases wrap the single stat object in an array.
        Some(Json::Array(items)) => match items.first() {
            Some(Json::Object(system)) => system,
            _ => return Err(PollError::BadResponse("`system` is an empty array".into())),
        },
        _ => return Err(PollError::BadResponse("no `system` object".into())),
    };
    let mut out = Vec::new();
    for (counter, field) in COUNTERS {
        let value = match system.get(counter) {
            Some(Json::Number(n)) => n.as_f64(),
            Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match value {
            Some(v) if v == NOT_AVAILABLE => {}
            Some(v) if (0.0..=100.0).contains(&v) => out.push((field, v / 100.0)),
            Some(v) => return Err(PollError::BadResponse(format!("{counter} = {v} is not a percentage"))),
            None => {}
        }
    }
    if out.is_empty() {
        return Err(PollError::BadResponse("no CPU or memory counter available".into()));
    }
    Ok(out)
}

/// The appliance's own words as they go into errors and logs: their first 200 characters.
fn quoted(text: &str) -> String {
    text.chars().take(200).collect()
}

/// `now` rounded down to a multiple of `interval` (since the Unix epoch).
pub fn aligned(now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = interval.as_millis().max(1) as i64;
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(step)).unwrap_or(now)
}

/// The sample document for one successful poll.
pub fn sample_json(appliance: &str, at: DateTime<Utc>, values: &[(&str, f64)]) -> Vec<u8> {
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(crate::timefmt::millis(at)));
    crate::ecs::insert(&mut doc, "observer.hostname", json!(appliance));
    crate::ecs::insert(&mut doc, "observer.vendor", json!("Citrix"));
    crate::ecs::insert(&mut doc, "event.module", json!("citrix_adc"));
    crate::ecs::insert(&mut doc, "agent.type", json!("gatewatch-nitro"));
    for (field, value) in values {
        crate::ecs::insert(&mut doc, field, json!(value));
    }
    serde_json::to_vec(&doc).expect("a JSON map serializes")
}

/// Counts a poll's outcome when the broker has acknowledged (or refused) its sample.
struct Delivered {
    metrics: Metrics,
}

impl rdkafka::ClientContext for Delivered {}

impl rdkafka::producer::ProducerContext for Delivered {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, appliance: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => "ok",
            Err((error, _)) => {
                tracing::warn!(appliance = %appliance, %error, "NITRO sample not delivered");
                "not_published"
            }
        };
        self.metrics.nitro_polls.get_or_create(&PollLabels { appliance: *appliance, outcome }).inc();
    }
}

/// Starts the poller thread when appliances are configured.
pub fn spawn(
    settings: &Settings,
    metrics: Metrics,
    stop: Stop,
) -> Result<Option<std::thread::JoinHandle<()>>, StartError> {
    let nitro = settings.baseline.nitro.clone();
    if nitro.appliances.is_empty() {
        return Ok(None);
    }
    if !nitro.tls_verify {
        tracing::warn!(
            "baseline.nitro.tls_verify = false: the appliances' certificates are not checked, so anyone on the \
             path can read the NITRO credentials"
        );
    }
    let agent = agent(&nitro)?;
    let producer: ThreadedProducer<Delivered> = crate::sink::producer_config(settings)
        .create_with_context(Delivered { metrics: metrics.clone() })
        .map_err(|e| StartError::Producer(crate::kafka::describe_error(&e)))?;
    let Some(topic) = settings.baseline.metrics_topic.clone() else {
        return Err(StartError::NoMetricsTopic);
    };
    let handle = std::thread::Builder::new().name("gatewatch-nitro".into()).spawn(move || {
        let mut next = Instant::now();
        while !stop.is_stopping() {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            next += nitro.interval;
            // Aligned to the interval: instances polling the same appliance publish the same time, and
            // the baseline stage learns the first copy and skips the others as stale.
            let at = aligned(Utc::now(), nitro.interval);
            for (name, url) in &nitro.appliances {
                let outcome = match poll(&agent, url, &nitro) {
                    Ok(values) => {
                        let payload = sample_json(name, at, &values);
                        let record = BaseRecord::with_opaque_to(&topic, Box::new(name.clone()))
                            .key(name.as_str())
                            .payload(&payload);
                        match producer.send(record) {
                            // Counted by the delivery report.
                            Ok(()) => continue,
                            Err((error, _)) => {
                                tracing::warn!(appliance = %name, %error, "NITRO sample not queued");
                                "not_published"
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(appliance = %name, %url, %error, "NITRO poll failed");
                        error.code()
                    }
                };
                metrics.nitro_polls.get_or_create(&PollLabels { appliance: name.clone(), outcome }).inc();
            }
        }
        let _ = producer.flush(Duration::from_secs(5));
    })?;
    Ok(Some(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_times_align_to_the_interval() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let five = Duration::from_secs(300);
        assert_eq!(aligned(at("2020-01-10T10:07:42.5Z"), five), at("2020-01-10T10:05:00Z"));
        assert_eq!(aligned(at("2020-01-10T10:05:00Z"), five), at("2020-01-10T10:05:00Z"));
    }

    #[test]
    fn samples_carry_the_ecs_fields_the_stage_reads() {
        let at = DateTime::parse_from_rfc3339("2020-01-10T10:05:00Z").unwrap().with_timezone(&Utc);
        let json = sample_json("adc1", at, &[("system.cpu.total.pct", 0.25)]);
        let sample = crate::baseline::Sample::parse(&json).unwrap();
        assert_eq!((sample.host.as_str(), sample.at, sample.values.as_slice()), ("adc1", at, &[(0, 0.25)][..]));
    }

    #[test]
    fn an_answer_is_read_as_fractions_and_errors_quote_a_bounded_part_of_it() {
        let ok = r#"{"errorcode":0,"system":{"cpuusagepcnt":12.5,"memusagepcnt":"40","pktcpuusagepcnt":4294967295}}"#;
        assert_eq!(
            read_stats(200, None, ok),
            Ok(vec![("system.cpu.total.pct", 0.125), ("system.memory.used.pct", 0.4)])
        );
        assert_eq!(read_stats(302, Some("https://x.test/"), ok).unwrap_err().code(), "http_error");
        // A body cut inside a multi-byte character (`String::truncate` at byte 200 panicked here).
        let body = format!("x{}", "é".repeat(300));
        let Err(PollError::Http { status: 500, body: quoted }) = read_stats(500, None, &body) else { panic!() };
        assert_eq!(quoted.chars().count(), 200);
        // The appliance's message, however long, is quoted in part.
        let long = format!(r#"{{"errorcode":354,"message":"{}"}}"#, "a".repeat(100_000));
        let Err(PollError::Auth(message)) = read_stats(200, None, &long) else { panic!() };
        assert_eq!(message.len(), 200);
    }
}
