//! Telemetry: structured logs via `tracing`, and OpenTelemetry metrics and traces exported over OTLP
//! (HTTP or gRPC) when `telemetry.otlp_endpoint` is set.
//!
//! The Prometheus registry in `metrics` stays the one source of truth: the OTLP metrics are observable
//! instruments that read it at each export, so `/metrics` and the collector always agree. Traces are
//! `tracing` spans (one per polling batch and per acknowledgement batch, never per record) bridged by
//! `tracing-opentelemetry`.

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, OtlpProtocol, Settings};
use crate::metrics::{Metrics, Sample};

/// The providers to flush on shutdown.
#[derive(Default)]
pub struct Telemetry {
    meters: Option<SdkMeterProvider>,
    tracer: Option<SdkTracerProvider>,
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint = {endpoint:?}: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

fn resource(settings: &Settings) -> Resource {
    let t = &settings.telemetry;
    let mut attributes: Vec<KeyValue> = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    if let Ok(host) = std::env::var("HOSTNAME") {
        attributes.push(KeyValue::new("service.instance.id", host));
    }
    attributes.extend(t.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())));
    Resource::builder().with_service_name(t.service_name.clone()).with_attributes(attributes).build()
}

fn otlp_path(endpoint: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.trim_end_matches('/'))
}

/// Sets up logging (always) and the OTLP exporters (when configured). Call inside the tokio runtime
/// (the gRPC exporter needs it).
pub fn init(settings: &Settings, metrics: &Metrics) -> Result<Telemetry, TelemetryError> {
    let t = &settings.telemetry;
    let mut telemetry = Telemetry::default();
    let mut tracer = None;
    if let Some(endpoint) = t.otlp_endpoint.as_deref() {
        let error = |reason: String| TelemetryError { endpoint: endpoint.to_owned(), reason };
        let (span_exporter, metric_exporter) = match t.otlp_protocol {
            OtlpProtocol::Http => (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(otlp_path(endpoint, "traces"))
                    .with_timeout(t.export_timeout)
                    .build(),
                opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_endpoint(otlp_path(endpoint, "metrics"))
                    .with_timeout(t.export_timeout)
                    .build(),
            ),
            OtlpProtocol::Grpc => (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(t.export_timeout)
                    .build(),
                opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(t.export_timeout)
                    .build(),
            ),
        };
        let span_exporter = span_exporter.map_err(|e| error(e.to_string()))?;
        let metric_exporter = metric_exporter.map_err(|e| error(e.to_string()))?;
        let provider =
            SdkTracerProvider::builder().with_resource(resource(settings)).with_batch_exporter(span_exporter).build();
        tracer = Some(provider.tracer("gatewatch"));
        telemetry.tracer = Some(provider);
        let reader = PeriodicReader::builder(metric_exporter).with_interval(t.export_interval).build();
        let meters = SdkMeterProvider::builder().with_resource(resource(settings)).with_reader(reader).build();
        observe(&meters, metrics);
        telemetry.meters = Some(meters);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| settings.log.level.filter());
    let otel = tracer.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // Every line goes through the secret scrubber (see `secrets`).
    let writer = crate::secrets::RedactingWriter;
    match settings.log.format {
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer)).init()
        }
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_writer(writer)).init(),
    }
    Ok(telemetry)
}

/// One observable instrument per metric family of the Prometheus registry.
fn observe(meters: &SdkMeterProvider, metrics: &Metrics) {
    let meter = meters.meter("gatewatch");
    for (name, counter) in metrics.families() {
        let source = metrics.clone();
        let family = name.clone();
        let points = move || -> Vec<Sample> { source.samples().into_iter().filter(|s| s.name == family).collect() };
        if counter {
            meter
                .f64_observable_counter(name)
                .with_callback(move |observer| {
                    for s in points() {
                        observer.observe(s.value, &attributes(&s));
                    }
                })
                .build();
        } else {
            meter
                .f64_observable_gauge(name)
                .with_callback(move |observer| {
                    for s in points() {
                        observer.observe(s.value, &attributes(&s));
                    }
                })
                .build();
        }
    }
}

fn attributes(sample: &Sample) -> Vec<KeyValue> {
    sample.labels.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()
}

impl Telemetry {
    /// Exports what is buffered and stops the exporters (bounded by their timeouts).
    pub fn shutdown(self) {
        if let Some(meters) = self.meters {
            let _ = meters.force_flush();
            let _ = meters.shutdown();
        }
        if let Some(tracer) = self.tracer {
            let _ = tracer.force_flush();
            let _ = tracer.shutdown();
        }
    }
}
