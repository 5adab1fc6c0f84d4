//! Exactly-once mode (`kafka.delivery = "exactly-once"`) through the real broker and the real binary.
//!
//! The outputs are read as a `read_committed` consumer sees them. The brokers at hand (tansu 0.6.0,
//! librdkafka's mock cluster) return an aborted transaction's records even to `read_committed`
//! consumers, so the tests read the raw log and apply the transaction markers the broker wrote
//! (`common::committed`), which is what a Kafka consumer does with the broker's aborted index.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::committed::{read_committed, Committed};
use common::*;

/// Records per transaction (at most) in these tests.
const TRANSACTION_RECORDS: usize = 200;

fn records(lines: &[Vec<u8>], partitions: i32) -> Vec<(Option<i32>, Option<String>, Vec<u8>)> {
    lines.iter().enumerate().map(|(i, l)| (Some(i as i32 % partitions), None, l.clone())).collect()
}

fn env(transactional_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWATCH__KAFKA__DELIVERY", "exactly-once".into()),
        ("GATEWATCH__KAFKA__TRANSACTIONAL_ID", transactional_id.into()),
        ("GATEWATCH__KAFKA__TRANSACTION_RECORDS", TRANSACTION_RECORDS.to_string()),
        ("GATEWATCH__KAFKA__TRANSACTION_INTERVAL", "300ms".into()),
        ("GATEWATCH__BASELINE__METRICS_TOPIC", String::new()),
    ]
}

fn spawn(broker: &Broker, topics: &Topics, env: &[(&'static str, String)]) -> Gatewatch {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gatewatch::spawn(broker, topics, &env)
}

/// Outputs per input offset, read the way a `read_committed` consumer sees them (transaction markers
/// applied by [`read_committed`]): (partition, offset) → count, and what the markers did.
fn outputs_per_input(
    broker: &Broker,
    topics: &Topics,
    landed: &[(i32, i64)],
) -> (HashMap<(i32, i64), usize>, Committed) {
    let outputs = read_committed(
        &broker.bootstrap,
        &[(&topics.enriched, 3), (&topics.dlq, 1)],
        landed.len(),
        Duration::from_secs(180),
    );
    let seen = coverage(&outputs.records, &topics.input);
    let counts =
        landed.iter().map(|(p, o)| ((*p, *o), seen.get(p).and_then(|m| m.get(o)).copied().unwrap_or(0))).collect();
    (counts, outputs)
}

/// Each input exactly once.
fn assert_exactly_once(counts: &HashMap<(i32, i64), usize>, gw: &Gatewatch) {
    let wrong: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} inputs not exactly once: {:?}; log:\n{}",
        wrong.len(),
        counts.len(),
        &wrong[..wrong.len().min(10)],
        gw.log_text()
    );
}

/// Each alert id once (updates aside), as a `read_committed` consumer reads the alerts topic.
fn assert_alerts_once(broker: &Broker, topics: &Topics) {
    let alerts = read_committed(&broker.bootstrap, &[(&topics.alerts, 1)], 1, Duration::from_secs(10)).records;
    assert!(!alerts.is_empty(), "the sample lines raise alerts");
    let mut ids: HashMap<String, usize> = HashMap::new();
    for alert in alerts.iter().map(Record::json).filter(|a| a["event"]["action"] != "alert-updated") {
        *ids.entry(alert["event"]["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "alerts published more than once: {twice:?}");
}

#[test]
fn a_stop_and_restart_in_exactly_once_mode_emit_each_inputs_outputs_once() {
    let broker = Broker::start();
    let topics = Topics::new("eos-stop");
    topics.create(&broker, 2);
    let env = env(&format!("{}-instance", topics.group));
    let lines: Vec<Vec<u8>> = sample_lines().into_iter().cycle().take(2000).collect();
    let mut landed = broker.produce(&topics.input, &records(&lines, 2));
    let mut gw = spawn(&broker, &topics, &env);
    gw.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(90);
    let records_in = format!("gatewatch_records_in_total{{topic=\"{}\"}}", topics.input);
    while gw.metric(&records_in) < landed.len() as f64 {
        assert!(Instant::now() < deadline, "not consumed; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gw.metric("gatewatch_transactions_total{outcome=\"committed\"}") >= 1.0, "log:\n{}", gw.log_text());
    assert_eq!(gw.metric("gatewatch_transactions_total{outcome=\"aborted\"}"), 0.0);
    gw.signal("TERM");
    assert!(gw.wait_timeout(Duration::from_secs(30)).expect("stops").success(), "log:\n{}", gw.log_text());
    let committed = broker.committed(&topics.group, &topics.input, 2);
    assert_eq!(committed.values().sum::<i64>(), landed.len() as i64, "offsets committed with the outputs");

    landed.extend(broker.produce(&topics.input, &records(&lines[..500], 2)));
    let gw = spawn(&broker, &topics, &env);
    let (counts, _) = outputs_per_input(&broker, &topics, &landed);
    assert_exactly_once(&counts, &gw);
    assert_alerts_once(&broker, &topics);
}

#[test]
fn kill_9_ten_times_in_exactly_once_mode_gives_read_committed_readers_each_inputs_outputs_once() {
    let broker = Broker::start();
    let topics = Topics::new("eos-kill9");
    topics.create(&broker, 2);
    let env = env(&format!("{}-instance", topics.group));
    let lines: Vec<Vec<u8>> = sample_lines().into_iter().cycle().take(1500).collect();
    let records_in = format!("gatewatch_records_in_total{{topic=\"{}\"}}", topics.input);
    let mut landed = Vec::new();
    let kills = 10;
    for round in 0..kills {
        landed.extend(broker.produce(&topics.input, &records(&lines, 2)));
        let mut gw = spawn(&broker, &topics, &env);
        // Killed once it is well into this round's records: transactions committed, one open.
        let deadline = Instant::now() + Duration::from_secs(60);
        while gw.metric(&records_in) < 700.0 {
            assert!(Instant::now() < deadline, "round {round}: not consuming; log:\n{}", gw.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        gw.signal("KILL");
        assert!(!gw.wait_timeout(Duration::from_secs(10)).expect("killed").success());
    }
    let gw = spawn(&broker, &topics, &env);
    let (counts, outputs) = outputs_per_input(&broker, &topics, &landed);
    // What a reader that ignores the markers gets: the aborted transactions' records as well.
    let everything = topics.outputs(&broker, outputs.records.len(), Duration::from_secs(30)).len();
    eprintln!(
        "{} inputs, {kills} kills: {} committed outputs, {} aborted in {} aborted transactions, {} open; \
         {everything} records for a reader that ignores the markers",
        landed.len(),
        outputs.records.len(),
        outputs.aborted,
        outputs.abort_markers,
        outputs.open
    );
    assert_exactly_once(&counts, &gw);
    assert_alerts_once(&broker, &topics);
    // The kills did leave open transactions, and the restarts aborted them: the check above had
    // duplicates to remove.
    assert!(outputs.abort_markers >= 1 && outputs.aborted >= 1, "no transaction was aborted: {outputs:?}");
    assert_eq!(everything, outputs.records.len() + outputs.aborted + outputs.open, "the two readers disagree");
}
