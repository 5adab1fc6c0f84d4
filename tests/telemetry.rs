//! OpenTelemetry export over OTLP/HTTP, with gatewatch running against the broker, decoded by an
//! in-test receiver with the official OTLP protobuf definitions (`opentelemetry-proto`): the exact
//! requests, data point by data point. tests/collector.rs sends the same to a real collector (rotel)
//! over HTTP and gRPC.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;

#[derive(Default)]
struct Received {
    metrics: Vec<ExportMetricsServiceRequest>,
    traces: Vec<ExportTraceServiceRequest>,
}

/// A minimal OTLP/HTTP receiver: `POST /v1/metrics` and `/v1/traces` with protobuf bodies.
fn receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let mut r = store.lock().unwrap();
                    match path.as_str() {
                        "/v1/metrics" => {
                            r.metrics.push(ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP metrics"))
                        }
                        "/v1/traces" => {
                            r.traces.push(ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP traces"))
                        }
                        other => panic!("unexpected OTLP path {other}"),
                    }
                    drop(r);
                    writer
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                        )
                        .unwrap();
                }
            });
        }
    });
    (endpoint, received)
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    })
}

/// The latest value of metric `name` whose data point has attribute `key=value`.
fn metric_value(r: &Received, name: &str, key: &str, value: &str) -> Option<f64> {
    metric_where(r, name, &[(key, value)])
}

/// The latest value of metric `name` whose data point has all these attributes.
fn metric_where(r: &Received, name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
    let mut latest = None;
    for request in &r.metrics {
        for rm in &request.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    let points = match &m.data {
                        Some(metric::Data::Sum(s)) => &s.data_points,
                        Some(metric::Data::Gauge(g)) => &g.data_points,
                        _ => continue,
                    };
                    let wanted = |p: &&opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
                        attrs.iter().all(|(k, v)| string_attr(&p.attributes, k).as_deref() == Some(*v))
                    };
                    for p in points.iter().filter(wanted) {
                        latest = match p.value {
                            Some(number_data_point::Value::AsDouble(v)) => Some(v),
                            Some(number_data_point::Value::AsInt(v)) => Some(v as f64),
                            None => latest,
                        };
                    }
                }
            }
        }
    }
    latest
}

#[test]
fn metrics_and_spans_reach_an_otlp_http_receiver() {
    let (endpoint, received) = receiver();
    let broker = Broker::start();
    let topics = Topics::new("otel");
    topics.create(&broker, 2);
    let good = b"<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b".to_vec();
    let mut records: Vec<_> = (0..25).map(|i| (Some(i % 2), None, good.clone())).collect();
    records.push((Some(0), None, b"not an adc line".to_vec()));
    broker.produce(&topics.input, &records);
    // Three CPU samples of one appliance: one series, still warming up.
    broker.produce(&topics.metrics, &warming_cpu_samples("VPX01", 3));
    let mut gw = Gatewatch::spawn(
        &broker,
        &topics,
        &[
            ("GATEWATCH__TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("GATEWATCH__TELEMETRY__OTLP_PROTOCOL", "http"),
            ("GATEWATCH__TELEMETRY__EXPORT_INTERVAL", "1s"),
            ("GATEWATCH__TELEMETRY__RESOURCE_ATTRIBUTES__DEPLOYMENT", "test"),
            ("GATEWATCH__BASELINE__SNAPSHOT_INTERVAL", "1s"),
        ],
    );
    assert_eq!(topics.outputs(&broker, 29, Duration::from_secs(60)).len(), 29, "log:\n{}", gw.log_text());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = received.lock().unwrap();
        let seen = metric_value(&r, "gatewatch_records_in", "topic", &topics.input);
        // Consumer lag comes from librdkafka statistics (1 s in tests): wait for it too.
        // The baselines' warm-up gauge is set when their state is written (1 s in tests): wait for it too.
        if seen == Some(26.0)
            && metric_value(&r, "gatewatch_consumer_lag", "topic", &topics.input).is_some()
            && metric_value(&r, "gatewatch_baseline_series", "state", "warming") == Some(1.0)
        {
            break;
        }
        drop(r);
        assert!(Instant::now() < deadline, "records_in never reached 26 (last {seen:?}); log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    gw.signal("TERM");
    assert!(gw.wait_timeout(Duration::from_secs(30)).expect("stops").success(), "log:\n{}", gw.log_text());
    let r = received.lock().unwrap();
    assert_eq!(metric_value(&r, "gatewatch_records_out", "topic", &topics.enriched), Some(28.0));
    assert_eq!(metric_value(&r, "gatewatch_baseline_series", "state", "ready"), Some(0.0));
    assert_eq!(metric_value(&r, "gatewatch_records_out", "topic", &topics.dlq), Some(1.0));
    assert_eq!(metric_value(&r, "gatewatch_parse_errors", "reason", "unrecognised"), Some(1.0));
    assert_eq!(
        metric_where(&r, "gatewatch_parse_results", &[("dataset", "citrix_adc.log"), ("result", "parsed")]),
        Some(25.0)
    );
    let lag = metric_value(&r, "gatewatch_consumer_lag", "topic", &topics.input);
    assert!(lag.is_some_and(|l| (0.0..=26.0).contains(&l)), "consumer lag {lag:?}");
    // The resource names the service and carries the configured attributes.
    let resource = r.metrics[0].resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(string_attr(&resource.attributes, "service.name").as_deref(), Some("gatewatch"));
    assert_eq!(string_attr(&resource.attributes, "deployment").as_deref(), Some("test"));
    // Spans: per batch, not per record.
    let spans: Vec<_> = r
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let batches: Vec<_> = spans.iter().filter(|s| s.name == "pipeline.batch").collect();
    let records_in_batches: i64 = batches.iter().filter_map(|s| int_attr(&s.attributes, "records")).sum();
    assert!(records_in_batches > 0 && records_in_batches <= 29, "records in batch spans: {records_in_batches}");
    assert!(spans.iter().any(|s| s.name == "offsets.ack"));
    assert!(spans.len() < 29, "spans are per batch, not per record: {}", spans.len());
}
