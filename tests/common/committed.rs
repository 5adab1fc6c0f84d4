//! A `read_committed` reader that does not trust the broker to hide aborted records.
//!
//! The brokers at hand (tansu, librdkafka's mock cluster) serve an aborted transaction's records to
//! `isolation.level=read_committed` consumers: they send no aborted-transaction index with a fetch.
//! They do write the transaction markers into the log, as Kafka does — a control batch from the
//! producer with `COMMIT` or `ABORT` in its key, also when a restarted producer with the same
//! `transactional.id` fences the crashed one and the broker aborts its open transaction. This reader
//! fetches the raw record batches over the Kafka protocol (`kafka-protocol` for the wire format) and
//! applies the markers itself, which is what a Kafka consumer does with the broker's aborted index:
//! a transactional record is delivered when its producer's `COMMIT` marker follows it, dropped on
//! `ABORT`, and withheld while its transaction is still open.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

use super::Record;

const FETCH_VERSION: i16 = 4;
/// `isolation_level` on the wire: 1 = read_committed (the broker may still return aborted records).
const READ_COMMITTED: i8 = 1;
/// Control record key: version (i16) then type (i16): 0 = ABORT, 1 = COMMIT.
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// What the markers made of the log.
#[derive(Debug, Default)]
pub struct Committed {
    /// Records of committed transactions and non-transactional records, in log order per partition.
    pub records: Vec<Record>,
    /// Transactional records followed by their producer's `ABORT` marker.
    pub aborted: usize,
    /// Transactional records with no marker yet (their transaction is open).
    pub open: usize,
    /// `ABORT` markers seen.
    pub abort_markers: usize,
}

/// One partition's state: the next offset to fetch and the records held per producer until its marker.
#[derive(Default)]
struct Partition {
    next: i64,
    pending: HashMap<i64, Vec<Record>>,
}

/// Reads `partitions` partitions of each of `topics` from the start, applying transaction markers,
/// until at least `expected` committed records were read and nothing new arrived for a moment, or
/// until `timeout`.
pub fn read_committed(bootstrap: &str, topics: &[(&str, i32)], expected: usize, timeout: Duration) -> Committed {
    let mut connection = Connection::open(bootstrap);
    let mut state: HashMap<(String, i32), Partition> =
        topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| (((*t).to_owned(), p), Partition::default()))).collect();
    let mut out = Committed::default();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let mut progressed = false;
        for ((topic, partition), p) in state.iter_mut() {
            let records = connection.fetch(topic, *partition, p.next);
            progressed |= !records.is_empty();
            for r in records {
                p.next = r.offset + 1;
                apply(&mut out, p, topic, *partition, r);
            }
        }
        if progressed {
            quiet_since = Instant::now();
        } else if out.records.len() >= expected && quiet_since.elapsed() > Duration::from_secs(2) {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    out.open = state.values().flat_map(|p| p.pending.values()).map(Vec::len).sum();
    out
}

/// One fetched record through the marker logic.
fn apply(out: &mut Committed, p: &mut Partition, topic: &str, partition: i32, r: kafka_protocol::records::Record) {
    if r.control {
        let key = r.key.as_deref().unwrap_or_default();
        assert!(key.len() >= 4, "{topic}/{partition}@{}: control record key {key:?}", r.offset);
        let held = p.pending.remove(&r.producer_id).unwrap_or_default();
        match i16::from_be_bytes([key[2], key[3]]) {
            COMMIT => out.records.extend(held),
            ABORT => {
                out.aborted += held.len();
                out.abort_markers += 1;
            }
            other => panic!("{topic}/{partition}@{}: unknown control type {other}", r.offset),
        }
        return;
    }
    let record = Record {
        partition,
        offset: r.offset,
        key: r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        value: r.value.as_deref().map(<[u8]>::to_vec).unwrap_or_default(),
    };
    if r.transactional {
        p.pending.entry(r.producer_id).or_default().push(record);
    } else {
        out.records.push(record);
    }
}

/// A plain Kafka-protocol connection to the (single) broker.
struct Connection {
    stream: TcpStream,
    correlation: i32,
}

impl Connection {
    fn open(bootstrap: &str) -> Connection {
        let stream = TcpStream::connect(bootstrap).unwrap_or_else(|e| panic!("connect {bootstrap}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Connection { stream, correlation: 0 }
    }

    /// The records of one fetch from `offset` (control records included), in offset order.
    fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> Vec<kafka_protocol::records::Record> {
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(200)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(64 << 20)])]);
        let response: FetchResponse = self.call(ApiKey::Fetch, FETCH_VERSION, &request);
        let mut records = Vec::new();
        for t in response.responses {
            for p in t.partitions {
                assert_eq!(p.error_code, 0, "fetch {topic}/{partition}@{offset}: error {}", p.error_code);
                let Some(mut bytes) = p.records else { continue };
                for set in RecordBatchDecoder::decode_all(&mut bytes).expect("record batches decode") {
                    records.extend(set.records.into_iter().filter(|r| r.offset >= offset));
                }
            }
        }
        records.sort_by_key(|r| r.offset);
        records
    }

    fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> R
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("gatewatch-committed-reader")));
        let mut body = Vec::new();
        header.encode(&mut body, Q::header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend(body);
        self.stream.write_all(&frame).unwrap();

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut reply = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut reply).unwrap();
        let mut buf = reply.as_slice();
        let header = ResponseHeader::decode(&mut buf, R::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation, "response out of order");
        R::decode(&mut buf, version).unwrap()
    }
}
