//! Fault injection with librdkafka's mock cluster (in addition to the real-broker tests): the broker
//! rejects gatewatch's first produce requests. An error that is not the record's fault stops the worker
//! and the committed offset must not pass the records whose outputs were never acknowledged; a refusal
//! of the record itself (too large) dead-letters its output and the stream goes on.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use common::*;

/// The group's committed offset on input partition 0, and the input offsets named by the enriched
/// records that reached the mock cluster.
fn committed_and_delivered(bootstrap: &str, topics: &Topics) -> (i64, std::collections::BTreeSet<i64>) {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &topics.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topics.input, 0);
    let committed = match reader.committed_offsets(tpl, Duration::from_secs(10)).unwrap().elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => 0,
    };
    let mut outputs = TopicPartitionList::new();
    outputs.add_partition_offset(&topics.enriched, 0, Offset::Beginning).unwrap();
    reader.assign(&outputs).unwrap();
    let mut delivered = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            delivered.insert(v["gatewatch"]["source"]["offset"].as_i64().unwrap());
        }
    }
    (committed, delivered)
}

/// A one-broker mock cluster with the test's topics, and `payloads` produced to the input in order.
fn mock_with_inputs(
    name: &str,
    payloads: &[&str],
) -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String, Topics) {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let topics = Topics::new(name);
    let named =
        [(&topics.input, 1), (&topics.enriched, 1), (&topics.alerts, 1), (&topics.dlq, 1), (&topics.detect_state, 1)];
    for (topic, partitions) in named {
        mock.create_topic(topic, partitions, 1).unwrap();
    }
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for payload in payloads {
            producer
                .send(FutureRecord::<(), str>::to(&topics.input).payload(*payload), Duration::from_secs(5))
                .await
                .expect("input produced");
        }
    });
    (mock, bootstrap, topics)
}

#[test]
fn committed_offset_never_passes_a_record_whose_output_was_not_acknowledged() {
    let line = "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b";
    let (mock, bootstrap, topics) = mock_with_inputs("mock", &[line; 500]);
    // From now on the broker answers gatewatch's first produce requests with a non-retriable error that
    // is not about the records (a misconfigured cluster): no dead letter can help.
    mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS; 1]);

    let broker = Broker::external(&bootstrap);
    // Small batches, so the rejected requests carry only the first outputs and later ones succeed.
    let small_batches = "[kafka.producer_options]\n\"batch.num.messages\" = \"20\"\n\"linger.ms\" = \"0\"\n";
    let mut gw = Gatewatch::spawn_with_config(
        &broker,
        &topics,
        // One worker: a second one joining late rebalances the partition while the injected error is
        // pending, and the test is about the ledger, not the workers.
        &[("GATEWATCH__KAFKA__DELIVERY_TIMEOUT", "5s"), ("GATEWATCH__PIPELINE__WORKERS", "1")],
        Some(small_batches),
    );
    let status =
        gw.wait_timeout(Duration::from_secs(60)).unwrap_or_else(|| panic!("still running:\n{}", gw.log_text()));
    let log = gw.log_text();
    assert!(!status.success(), "a failed delivery must stop the worker; log:\n{log}");
    assert!(log.contains("delivery to"), "the failure is reported; log:\n{log}");

    // What reached the broker, and what the group committed.
    let (committed, delivered) = committed_and_delivered(&bootstrap, &topics);
    let first_lost = (0..500).find(|o| !delivered.contains(o)).expect("the injected errors lost some outputs");
    assert!(
        committed <= first_lost,
        "committed {committed} passes offset {first_lost}, whose output was never acknowledged; log:\n{log}"
    );
    assert!((0..committed).all(|o| delivered.contains(&o)));
}

#[test]
fn outputs_a_broker_refuses_as_too_large_are_dead_lettered_and_the_stream_goes_on() {
    let line = "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b";
    let (mock, bootstrap, topics) = mock_with_inputs("mock-too-large", &[line; 300]);
    // The broker refuses gatewatch's first produce request as too large: the outputs in it can never be
    // delivered, however often the service restarts.
    mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 1]);

    let broker = Broker::external(&bootstrap);
    let small_batches = "[kafka.producer_options]\n\"batch.num.messages\" = \"20\"\n\"linger.ms\" = \"0\"\n";
    // One worker: a second one joining the group would revoke the partition from the first, whose
    // detection-state write could then be the produce request the broker refuses, not the outputs.
    let mut gw =
        Gatewatch::spawn_with_config(&broker, &topics, &[("GATEWATCH__PIPELINE__WORKERS", "1")], Some(small_batches));
    // Every input ends as an enriched record or as the dead letter of its refused output.
    let outputs = broker.read_all(&[&topics.enriched, &topics.dlq], 300, Duration::from_secs(60));
    assert!(gw.wait_timeout(Duration::from_millis(1)).is_none(), "the service stays up; log:\n{}", gw.log_text());
    let mut sources = std::collections::BTreeSet::new();
    let mut rejected = 0;
    for record in &outputs {
        let v = record.json();
        sources.insert(v["gatewatch"]["source"]["offset"].as_i64().unwrap());
        if v["error"]["type"] == "output_rejected" {
            rejected += 1;
            assert!(v["error"]["message"].as_str().unwrap().contains("Message size too large"), "{v}");
        }
    }
    assert!(rejected > 0, "the refused request's outputs were dead-lettered; log:\n{}", gw.log_text());
    assert_eq!(sources, (0..300).collect(), "every input has an output; log:\n{}", gw.log_text());
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops within the drain bound");
    assert!(status.success(), "log:\n{}", gw.log_text());
    let (committed, _) = committed_and_delivered(&bootstrap, &topics);
    assert_eq!(committed, 300, "offsets move past the refused records");
}

#[test]
fn an_outage_of_one_output_holds_the_commit_back_pauses_readiness_and_resumes_without_exiting() {
    let good = "<134> 09/09/2024:20:46:07 GMT VPX01 0-PPE-1 : default SSLVPN LOGIN 1 0 : Context a@b";
    // Offset 0 is junk: its output goes to the dead-letter topic, which will have no leader.
    let mut inputs = vec!["junk"];
    inputs.extend([good; 200]);
    let (mock, bootstrap, topics) = mock_with_inputs("mock-order", &inputs);
    // A retriable error: the dead letter waits for a leader past the delivery timeout, while later
    // outputs to the enriched topic go through.
    mock.topic_error(&topics.dlq, RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE).unwrap();

    let broker = Broker::external(&bootstrap);
    let mut gw = Gatewatch::spawn(&broker, &topics, &[("GATEWATCH__KAFKA__DELIVERY_TIMEOUT", "3s")]);
    // Past several delivery timeouts: still running, not ready, and nothing committed past offset 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = gw.get("/readyz").unwrap_or_default();
        if status == 503 && body.contains("stalled_partitions=1") {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never reported the stall: {body}; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        gw.wait_timeout(Duration::from_millis(1)).is_none(),
        "an outage must not end the process; log:\n{}",
        gw.log_text()
    );
    let (committed, delivered) = committed_and_delivered(&bootstrap, &topics);
    assert!(!delivered.is_empty(), "later outputs were delivered; log:\n{}", gw.log_text());
    assert_eq!(committed, 0, "committed {committed} past offset 0, whose output is not delivered");

    // The leader is back: the held output is delivered, the commit catches up, readiness returns.
    mock.topic_error(&topics.dlq, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gw.get("/readyz").is_some_and(|(s, b)| s == 200 && b.contains("stalled_partitions=0")) {
        assert!(Instant::now() < deadline, "did not recover; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops within the drain bound");
    assert!(status.success(), "log:\n{}", gw.log_text());
    let (committed, delivered) = committed_and_delivered(&bootstrap, &topics);
    assert_eq!(committed, 201, "every input delivered and committed; log:\n{}", gw.log_text());
    assert_eq!(delivered.len(), 200);
}
