//! The demo's Kafka side: `load` creates the topics and produces sample lines; `report` reads what
//! gatewatch published and prints it. Driven by `scripts/demo.sh`.
//!
//! ```text
//! cargo run --example demo -- load   BROKERS FILE...
//! cargo run --example demo -- report BROKERS EXPECTED [ADMIN_ADDR]
//! ```

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

/// Inputs first, then the outputs the report reads, then the state topics: the baselines' (as many
/// partitions as `adc.metrics`) and the detection state's (as many as the largest input topic).
const TOPICS: [(&str, i32); 8] = [
    ("adc.raw", 3),
    ("adc.files.httperror", 1),
    ("adc.metrics", 3),
    ("adc.enriched", 3),
    ("adc.alerts", 1),
    ("adc.dlq", 1),
    ("adc.baselines", 3),
    ("adc.detect-state", 3),
];
const OUTPUTS: std::ops::Range<usize> = 3..6;

/// Two days of five-minute CPU/memory samples for two appliances: office-hours load, a nightly backup,
/// noise; on the second appliance a coin miner starts in the last afternoon.
fn metric_samples() -> Vec<(String, Vec<u8>)> {
    let start = 1_578_441_600; // 2020-01-08 00:00 UTC, after the exploits were public
    let miner = start + 86_400 + 15 * 3_600;
    let mut seed: u64 = 2020;
    let mut noise = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.04
    };
    let mut out = Vec::new();
    for i in 0..2 * 288 {
        let t: i64 = start + i * 300;
        let hour = (t % 86_400) as f64 / 3_600.0;
        let office = (-(hour - 13.0).powi(2) / 18.0).exp();
        let backup = if (2.0..2.75).contains(&hour) { 0.3 } else { 0.0 };
        for (host, mined) in [("vpx-dc1-01", false), ("vpx-dc2-01", true)] {
            let miner = if mined && t >= miner { 0.5 } else { 0.0 };
            let cpu: f64 = 0.15 + 0.25 * office + backup + miner + noise();
            let memory: f64 = 0.5 + 0.05 * office + backup / 3.0 + noise() / 4.0;
            let at = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
            let doc = serde_json::json!({
                "@timestamp": at,
                "observer": {"hostname": host},
                "system": {"cpu": {"total": {"pct": cpu.clamp(0.0, 1.0)}}, "memory": {"used": {"pct": memory.clamp(0.0, 1.0)}}},
            });
            out.push((host.to_owned(), serde_json::to_vec(&doc).unwrap()));
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match args.first().map(String::as_str) {
        Some("load") if args.len() >= 3 => rt.block_on(load(&args[1], &args[2..])),
        Some("metrics") => {
            // The same samples as NDJSON, for `gatewatch replay --metrics`.
            for (_, payload) in metric_samples() {
                println!("{}", String::from_utf8(payload).unwrap());
            }
        }
        Some("report") if args.len() >= 3 => {
            report(&args[1], args[2].parse().expect("EXPECTED is a count"), args.get(3))
        }
        _ => {
            eprintln!("usage: demo load BROKERS FILE... | demo report BROKERS EXPECTED [ADMIN_ADDR] | demo metrics");
            std::process::exit(2);
        }
    }
}

async fn load(brokers: &str, files: &[String]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let new: Vec<NewTopic> = TOPICS
        .iter()
        .map(|(t, p)| {
            let topic = NewTopic::new(t, *p, TopicReplication::Fixed(1));
            if t.ends_with("baselines") || t.ends_with("detect-state") {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await.expect("create topics") {
        match result {
            Ok(topic) => println!("created topic {topic}"),
            Err((topic, code)) => println!("topic {topic}: {code}"),
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut sent = 0;
    let mut pending = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The appliance's httperror.log travels on a topic of its own, as a forwarder tailing that file
        // would send it; gatewatch knows its dataset from `parse.topic_datasets` in config/demo.toml.
        let topic = if file.contains("httperror") { "adc.files.httperror" } else { "adc.raw" };
        // Comment lines (`#`) of the fixture files separate blocks; records spanning lines stay whole.
        let mut block = String::new();
        for line in text.lines().chain(std::iter::once("#")) {
            if !line.starts_with('#') {
                block.push_str(line);
                block.push('\n');
                continue;
            }
            for record in gatewatch::parse::reader::records(&block) {
                let record = FutureRecord::<(), str>::to(topic).payload(record.text);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
                sent += 1;
            }
            block.clear();
        }
    }
    let metrics = metric_samples();
    for (host, payload) in &metrics {
        let record = FutureRecord::<str, [u8]>::to("adc.metrics").key(host).payload(payload);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    for delivery in pending {
        delivery.await.expect("delivery report").expect("line acknowledged");
    }
    println!("loaded {sent} sample records from {} files into adc.raw and adc.files.httperror", files.len());
    println!("loaded {} metric samples (2 appliances, 2 days) into adc.metrics", metrics.len());
    println!("loaded {} records in all", sent + metrics.len());
}

fn report(brokers: &str, expected: usize, admin: Option<&String>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "gatewatch-demo-report")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in &TOPICS[OUTPUTS] {
        for p in 0..*partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_dataset: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_feature: BTreeMap<String, usize> = BTreeMap::new();
    let mut dlq_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples: BTreeMap<String, Value> = BTreeMap::new();
    let mut threat_hits: Vec<Value> = Vec::new();
    let mut geo_countries: BTreeMap<String, usize> = BTreeMap::new();
    let mut alerts: BTreeMap<(String, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut anomalies: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet = Instant::now();
    while Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            if per_topic.values().sum::<usize>() >= expected && quiet.elapsed() > Duration::from_secs(2) {
                break;
            }
            continue;
        };
        quiet = Instant::now();
        *per_topic.entry(m.topic().to_owned()).or_default() += 1;
        let doc: Value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("gatewatch writes JSON");
        if m.topic() == "adc.alerts" {
            let key = (
                doc["gatewatch"]["stage"].as_str().unwrap_or("?").to_owned(),
                doc["rule"]["id"].as_str().unwrap_or("?").to_owned(),
            );
            // Suppression summaries repeat an alert's id: count distinct ids.
            alerts.entry(key).or_default().insert(doc["event"]["id"].as_str().unwrap_or_default().to_owned());
            if doc["gatewatch"]["anomaly"].is_object() {
                anomalies.push(doc.clone());
            }
        } else if m.topic() == "adc.dlq" {
            *dlq_reasons.entry(doc["error"]["type"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        } else if m.topic() == "adc.enriched" {
            if let Some(country) =
                doc["source"]["geo"]["country_iso_code"].as_str().or(doc["source"]["geo"]["name"].as_str())
            {
                *geo_countries.entry(country.to_owned()).or_default() += 1;
            }
            if doc.get("threat").is_some() && threat_hits.len() < 2 {
                threat_hits.push(doc.clone());
            }
            let dataset = doc["event"]["dataset"].as_str().unwrap_or("-").to_owned();
            *per_dataset.entry(dataset.clone()).or_default() += 1;
            let feature = doc["citrix_adc"]["log"]["feature"].as_str().unwrap_or(&dataset).to_owned();
            *per_feature.entry(feature.clone()).or_default() += 1;
            samples.entry(feature).or_insert(doc);
        }
    }
    let total: usize = per_topic.values().sum();
    println!("\n== gatewatch output: {total} records for {expected} input records");
    for (topic, count) in &per_topic {
        println!("  {topic:<14} {count}");
    }
    println!("\n== enriched events per dataset");
    for (dataset, count) in &per_dataset {
        println!("  {dataset:<24} {count}");
    }
    println!("\n== enriched events per NetScaler feature (or dataset)");
    for (feature, count) in &per_feature {
        println!("  {feature:<24} {count}");
    }
    println!("\n== alerts per stage and rule (distinct alert ids)");
    for ((stage, rule), ids) in &alerts {
        println!("  {stage:<18} {rule:<48} {}", ids.len());
    }
    println!("\n== CPU/memory baseline anomalies");
    for doc in &anomalies {
        println!("  {}  {}", doc["@timestamp"].as_str().unwrap_or("?"), doc["message"].as_str().unwrap_or("?"));
    }
    println!("\n== dead letters per reason");
    for (reason, count) in &dlq_reasons {
        println!("  {reason:<14} {count}");
    }
    println!("\n== source.geo of enriched events (GeoLite2 country, or private/reserved)");
    for (country, count) in &geo_countries {
        println!("  {country:<14} {count}");
    }
    println!("\n== events that matched an indicator of the demo feed");
    for doc in &threat_hits {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "event.original": doc["event"]["original"],
                "threat.enrichments": doc["threat"]["enrichments"],
            }))
            .unwrap()
        );
    }
    println!("\n== a few enriched events");
    for feature in ["SSLVPN", "AAA", "citrix_adc.httpaccess", "citrix_adc.shell"] {
        if let Some(doc) = samples.get(feature) {
            println!("{}", serde_json::to_string_pretty(doc).unwrap());
        }
    }
    if let Some(addr) = admin {
        if let Some(metrics) = http_get(addr, "/metrics") {
            println!("\n== /metrics (records and errors)");
            for line in metrics.lines().filter(|l| {
                l.starts_with("gatewatch_records")
                    || l.starts_with("gatewatch_parse_errors")
                    || l.starts_with("gatewatch_baseline_series")
            }) {
                println!("  {line}");
            }
        }
    }
    if total < expected {
        eprintln!("demo: only {total} of {expected} outputs arrived");
        std::process::exit(1);
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
