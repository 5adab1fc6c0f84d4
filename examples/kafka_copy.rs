//! The end-to-end benchmark's yardstick (`scripts/e2e-bench.sh`): Kafka in, Kafka out, no processing.
//!
//!   kafka_copy create BROKERS PARTITIONS TOPIC...       creates the topics
//!   kafka_copy produce BROKERS TOPIC FILE PARTITIONS   every line of FILE, round robin over the partitions
//!   kafka_copy copy BROKERS FROM TO GROUP N            consume FROM (group GROUP, from the start) and produce
//!                                                      each value to TO until N are delivered; prints the
//!                                                      seconds from start to the last delivery and to
//!                                                      the first record consumed
//!
//! The copy uses the producer settings of gatewatch's sink (idempotent, `acks=all`, lz4, `linger.ms=5`)
//! and the same client library, so the difference to `gatewatch run` is the processing.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

struct Counted(Arc<AtomicUsize>);

impl ClientContext for Counted {}

impl ProducerContext for Counted {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            panic!("delivery failed: {e}");
        }
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn producer(brokers: &str, delivered: Arc<AtomicUsize>) -> ThreadedProducer<Counted> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Counted(delivered))
        .unwrap()
}

/// Enqueues, waiting while the local queue is full.
fn send(producer: &ThreadedProducer<Counted>, mut record: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

fn wait_delivered(delivered: &AtomicUsize, n: usize) {
    while delivered.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn create(brokers: &str, partitions: i32, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for result in rt.block_on(admin.create_topics(&new, &AdminOptions::new())).unwrap() {
        if let Err((topic, code)) = result {
            assert_eq!(code, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "creating {topic}");
        }
    }
}

fn produce(brokers: &str, topic: &str, file: &str, partitions: i32) {
    let delivered = Arc::new(AtomicUsize::new(0));
    let producer = producer(brokers, delivered.clone());
    let mut n = 0usize;
    for line in std::io::BufReader::new(std::fs::File::open(file).unwrap()).split(b'\n') {
        let line = line.unwrap();
        let partition = (n % partitions as usize) as i32;
        send(&producer, BaseRecord::<[u8], [u8]>::to(topic).payload(&line[..]).partition(partition));
        n += 1;
    }
    wait_delivered(&delivered, n);
    println!("{n}");
}

fn copy(brokers: &str, from: &str, to: &str, group: &str, n: usize) {
    let started = Instant::now();
    let delivered = Arc::new(AtomicUsize::new(0));
    let producer = producer(brokers, delivered.clone());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[from]).unwrap();
    let mut sent = 0usize;
    let mut first = None;
    while sent < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(|| started.elapsed());
                send(&producer, BaseRecord::<[u8], [u8]>::to(to).payload(m.payload().unwrap_or_default()));
                sent += 1;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    wait_delivered(&delivered, n);
    let first = first.unwrap_or_default().as_secs_f64();
    println!("{:.3} {first:.3}", started.elapsed().as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create", brokers, partitions, topics @ ..] => create(brokers, partitions.parse().unwrap(), topics),
        ["produce", brokers, topic, file, partitions] => produce(brokers, topic, file, partitions.parse().unwrap()),
        ["copy", brokers, from, to, group, n] => copy(brokers, from, to, group, n.parse().unwrap()),
        _ => {
            eprintln!("usage: kafka_copy create BROKERS PARTITIONS TOPIC... | produce BROKERS TOPIC FILE PARTITIONS | copy BROKERS FROM TO GROUP N");
            std::process::exit(2);
        }
    }
}
