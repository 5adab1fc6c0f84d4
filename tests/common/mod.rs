//! Test harness: a real Kafka-protocol broker (tansu on a free loopback port, or the broker named by
//! `GATEWATCH_TEST_BROKERS`), the real `gatewatch` binary as a subprocess, and plain rdkafka clients to
//! feed inputs and read outputs back.
#![allow(dead_code)]

pub mod committed;
pub mod secure;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A broker for one test: a private tansu process, or the shared external broker.
pub struct Broker {
    pub bootstrap: String,
    processes: Vec<Child>,
    /// Connection options of the harness's own clients (security, for a secured broker).
    options: Vec<(String, String)>,
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(bootstrap) = std::env::var("GATEWATCH_TEST_BROKERS") {
            return Broker::external(&bootstrap);
        }
        let tansu = std::env::var_os("GATEWATCH_TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir().join(".tools/bin/tansu"));
        assert!(tansu.exists(), "{} missing: run scripts/setup.sh (or set GATEWATCH_TEST_BROKERS)", tansu.display());
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let process = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&bootstrap).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {bootstrap}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker::with_processes(bootstrap, vec![process], Vec::new())
    }

    /// A broker made of these processes (stopped with it), reached with these client options.
    pub fn with_processes(bootstrap: String, processes: Vec<Child>, options: Vec<(String, String)>) -> Broker {
        Broker { bootstrap, processes, options }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the broker's processes; false for a broker this harness
    /// did not start.
    pub fn signal(&self, signal: &str) -> bool {
        for process in &self.processes {
            let status = Command::new("kill").args([&format!("-{signal}"), &process.id().to_string()]).status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{signal} broker");
        }
        !self.processes.is_empty()
    }

    /// A broker this harness did not start (a mock cluster, an external Kafka).
    pub fn external(bootstrap: &str) -> Broker {
        Broker { bootstrap: bootstrap.to_owned(), processes: Vec::new(), options: Vec::new() }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = rt.block_on(admin.create_topics(&new, &AdminOptions::new())).expect("create topics");
        for result in results {
            if let Err((topic, code)) = result {
                assert_eq!(code, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "creating {topic}");
            }
        }
    }

    /// Produces records to `topic`, each to the given partition (or by key), waits for every ack and
    /// returns where each record landed, in input order.
    pub fn produce(&self, topic: &str, records: &[(Option<i32>, Option<String>, Vec<u8>)]) -> Vec<(i32, i64)> {
        let producer: FutureProducer = self
            .client_config()
            .set("message.max.bytes", "4000000")
            .set("linger.ms", "2")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let mut futures = Vec::with_capacity(records.len());
        for (partition, key, payload) in records {
            let mut record = FutureRecord::<String, Vec<u8>>::to(topic).payload(payload);
            if let Some(p) = partition {
                record = record.partition(*p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            loop {
                match producer.send_result(record) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((_, back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut out = Vec::with_capacity(futures.len());
            for f in futures {
                let delivery = f.await.expect("delivery report").expect("input acknowledged");
                out.push((delivery.partition, delivery.offset));
            }
            out
        })
    }

    /// Produces `(partition, timestamp, payload)` records one at a time (each its own batch, so offsets
    /// and watermarks are exact), with the given CreateTime; returns where each landed.
    pub fn produce_at(&self, topic: &str, records: &[(i32, DateTime<Utc>, Vec<u8>)]) -> Vec<(i32, i64)> {
        let producer: FutureProducer =
            self.client_config().set("linger.ms", "0").set("enable.idempotence", "true").create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        records
            .iter()
            .map(|(partition, at, payload)| {
                let record = FutureRecord::<(), Vec<u8>>::to(topic)
                    .partition(*partition)
                    .timestamp(at.timestamp_millis())
                    .payload(payload);
                let delivery = rt.block_on(producer.send(record, Duration::from_secs(30))).expect("acknowledged");
                (delivery.partition, delivery.offset)
            })
            .collect()
    }

    /// Reads `topic` from the beginning of every partition until `expected` records arrived and the
    /// topic stayed quiet for a moment, or until `timeout`.
    pub fn read(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
        self.read_all(&[topic], expected, timeout)
    }

    /// [`Broker::read`] over several topics at once; `expected` counts records across all of them.
    pub fn read_all(&self, topics: &[&str], expected: usize, timeout: Duration) -> Vec<Record> {
        let mut count = 0;
        self.read_until(topics, timeout, |_| {
            count += 1;
            count >= expected
        })
    }

    /// Reads `topics` from the beginning until `enough` (told of every record as it arrives) has said
    /// yes and nothing more arrived for 1.5 s, or until `timeout`.
    pub fn read_until(
        &self,
        topics: &[&str],
        timeout: Duration,
        mut enough: impl FnMut(&Record) -> bool,
    ) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", format!("reader-{}", free_port()))
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", "4000000")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
            for p in metadata.topics()[0].partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut quiet_since = Instant::now();
        let mut done = false;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let record = Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    };
                    done |= enough(&record);
                    out.push(record);
                    quiet_since = Instant::now();
                }
                Some(Err(e)) => panic!("reading {topics:?}: {e}"),
                None => {
                    if done && quiet_since.elapsed() > Duration::from_millis(1500) {
                        break;
                    }
                }
            }
        }
        out
    }

    /// The group's committed offset per partition of `topic` (absent partitions have none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = self.client_config().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

impl Record {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| panic!("output is not JSON ({e}): {:?}", self.value))
    }

    /// `gatewatch.source.{topic,partition,offset}` of an output record.
    pub fn source(&self) -> (String, i32, i64) {
        let v = self.json();
        let s = &v["gatewatch"]["source"];
        (
            s["topic"].as_str().unwrap().to_owned(),
            s["partition"].as_i64().unwrap() as i32,
            s["offset"].as_i64().unwrap(),
        )
    }
}

/// Partitions of the metrics topic (and of the state topic, which must match it).
pub const METRICS_PARTITIONS: i32 = 2;

/// Names unique to one test run, so tests can share an external broker.
pub struct Topics {
    pub input: String,
    pub enriched: String,
    pub alerts: String,
    pub dlq: String,
    pub metrics: String,
    pub state: String,
    pub detect_state: String,
    pub group: String,
}

impl Topics {
    pub fn new(test: &str) -> Topics {
        let tag = format!("{test}-{}-{}", std::process::id(), free_port());
        Topics {
            input: format!("raw-{tag}"),
            enriched: format!("enriched-{tag}"),
            alerts: format!("alerts-{tag}"),
            dlq: format!("dlq-{tag}"),
            metrics: format!("metrics-{tag}"),
            state: format!("baselines-{tag}"),
            detect_state: format!("detect-state-{tag}"),
            group: format!("gw-{tag}"),
        }
    }

    /// Every enriched and dead-letter record, read until `expected` arrived (or `timeout`).
    pub fn outputs(&self, broker: &Broker, expected: usize, timeout: Duration) -> Vec<Record> {
        broker.read_all(&[&self.enriched, &self.dlq], expected, timeout)
    }

    /// The enriched and dead-letter records, read until every input record in `landed` is named by one
    /// (replays after a rebalance or a restart repeat records, so a count would stop short).
    pub fn outputs_covering(&self, broker: &Broker, landed: &[(i32, i64)], timeout: Duration) -> Vec<Record> {
        let mut missing: HashSet<(i32, i64)> = landed.iter().copied().collect();
        broker.read_until(&[&self.enriched, &self.dlq], timeout, |r| {
            let (_, partition, offset) = r.source();
            missing.remove(&(partition, offset));
            missing.is_empty()
        })
    }

    pub fn create(&self, broker: &Broker, input_partitions: i32) {
        broker.create_topics(&[
            (&self.input, input_partitions),
            (&self.enriched, 3),
            (&self.alerts, 1),
            (&self.dlq, 1),
            (&self.metrics, METRICS_PARTITIONS),
            (&self.state, METRICS_PARTITIONS),
            (&self.detect_state, input_partitions),
        ]);
    }
}

/// A running `gatewatch run` subprocess.
pub struct Gatewatch {
    pub child: Child,
    pub admin: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gatewatch {
    pub fn command(
        broker: &Broker,
        topics: &Topics,
        extra_env: &[(&str, &str)],
    ) -> (Command, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let admin = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        cmd.current_dir(dir.path())
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GATEWATCH__KAFKA__BROKERS", &broker.bootstrap)
            .env("GATEWATCH__KAFKA__GROUP_ID", &topics.group)
            .env("GATEWATCH__KAFKA__INPUT_TOPICS", &topics.input)
            .env("GATEWATCH__KAFKA__SESSION_TIMEOUT", "6s")
            .env("GATEWATCH__KAFKA__STATS_INTERVAL", "1s")
            .env("GATEWATCH__OUTPUT__ENRICHED_TOPIC", &topics.enriched)
            .env("GATEWATCH__OUTPUT__ALERTS_TOPIC", &topics.alerts)
            .env("GATEWATCH__OUTPUT__DLQ_TOPIC", &topics.dlq)
            .env("GATEWATCH__BASELINE__METRICS_TOPIC", &topics.metrics)
            .env("GATEWATCH__BASELINE__STATE_TOPIC", &topics.state)
            .env("GATEWATCH__DETECT__STATE_TOPIC", &topics.detect_state)
            .env("GATEWATCH__ADMIN__LISTEN", &admin)
            .env("GATEWATCH__LOG__FORMAT", "text")
            .env("GATEWATCH__DETECT__RULES_DIRS", manifest_dir().join("rules"))
            .env("RUST_LOG", "info");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        (cmd, admin, dir)
    }

    pub fn spawn(broker: &Broker, topics: &Topics, extra_env: &[(&str, &str)]) -> Gatewatch {
        Self::spawn_with_config(broker, topics, extra_env, None)
    }

    /// [`Gatewatch::spawn`] in a private mount namespace where every file system is read-only, as in a
    /// pod with `readOnlyRootFilesystem` (needs root and `unshare`).
    pub fn spawn_read_only(broker: &Broker, topics: &Topics) -> Gatewatch {
        let (cmd, admin, dir) = Self::command(broker, topics, &[]);
        let log = dir.path().join("gatewatch.log");
        let file = std::fs::File::create(&log).unwrap();
        let script = r#"for m in $(awk '{print $2}' /proc/mounts | sort -u); do
  case "$m" in /proc*|/sys*|/dev*) ;; *) mount -o remount,bind,ro "$m" 2>/dev/null ;; esac
done
touch /tmp/.gatewatch-ro-probe 2>/dev/null && { echo "file systems are still writable" >&2; exit 99; }
exec "$0" "$@""#;
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--mount", "--propagation", "private", "bash", "-c", script])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        wrapped.current_dir(dir.path()).env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        let child = wrapped.stdout(file.try_clone().unwrap()).stderr(file).spawn().expect("spawn unshare");
        Gatewatch { child, admin, log, _dir: dir }
    }

    /// [`Gatewatch::spawn`] with a `--config` file holding `config_text` (env still overrides it).
    pub fn spawn_with_config(
        broker: &Broker,
        topics: &Topics,
        extra_env: &[(&str, &str)],
        config_text: Option<&str>,
    ) -> Gatewatch {
        let (mut cmd, admin, dir) = Self::command(broker, topics, extra_env);
        if let Some(text) = config_text {
            let path = dir.path().join("gatewatch.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let log = dir.path().join("gatewatch.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd.stdout(file.try_clone().unwrap()).stderr(file).spawn().expect("spawn gatewatch");
        Gatewatch { child, admin, log, _dir: dir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener: (status code, body), or None while it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.admin, path)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gatewatch not ready within {timeout:?}; log:\n{}", self.log_text());
    }

    /// The value of one sample line of `/metrics` (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.get("/metrics").map(|(_, body)| metric_value(&body, series)).unwrap_or(0.0)
    }

    /// Waits until at least `n` outputs were acknowledged, as `/metrics` reports.
    pub fn wait_for_outputs(&self, topics: &Topics, n: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.outputs(topics) < n {
            assert!(Instant::now() < deadline, "fewer than {n} outputs within {timeout:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Output records acknowledged so far (enriched + dead letters), from `/metrics`.
    pub fn outputs(&self, topics: &Topics) -> f64 {
        self.metric(&format!("gatewatch_records_out_total{{topic=\"{}\"}}", topics.enriched))
            + self.metric(&format!("gatewatch_records_out_total{{topic=\"{}\"}}", topics.dlq))
    }
}

impl Drop for Gatewatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// `n` CPU samples of `host`, five minutes apart: fewer than a warm-up, so one series stays warming.
pub fn warming_cpu_samples(host: &str, n: u32) -> Vec<(Option<i32>, Option<String>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let at = format!("2020-01-10T10:{:02}:00Z", i * 5);
            let doc =
                serde_json::json!({"@timestamp": at, "observer": {"hostname": host}, "system.cpu.total.pct": 0.2});
            (None, Some(host.to_owned()), doc.to_string().into_bytes())
        })
        .collect()
}

/// Real ADC lines from the public-sample fixtures (comment lines skipped).
pub fn sample_lines() -> Vec<Vec<u8>> {
    let dir = manifest_dir().join("tests/fixtures/public-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut lines = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "log")) {
        let text = std::fs::read(file).unwrap();
        lines.extend(text.split(|b| *b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"#")).map(<[u8]>::to_vec));
    }
    lines
}

/// Per input partition, the input offsets named by output records, with how often each was named.
pub fn coverage(outputs: &[Record], input_topic: &str) -> HashMap<i32, BTreeMap<i64, usize>> {
    let mut seen: HashMap<i32, BTreeMap<i64, usize>> = HashMap::new();
    for r in outputs {
        let (topic, partition, offset) = r.source();
        assert_eq!(topic, input_topic);
        *seen.entry(partition).or_default().entry(offset).or_default() += 1;
    }
    seen
}

/// Asserts every input record in `landed` has at least one output.
pub fn assert_all_covered(seen: &HashMap<i32, BTreeMap<i64, usize>>, landed: &[(i32, i64)]) {
    let missing: Vec<&(i32, i64)> =
        landed.iter().filter(|(p, o)| !seen.get(p).is_some_and(|m| m.contains_key(o))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} input records have no output, first {:?}",
        missing.len(),
        landed.len(),
        &missing[..missing.len().min(10)]
    );
}

// Log line builders for scenarios.

/// A NetScaler audit line: `FEATURE EVENT seq 0 : body`.
/// Every builder returns (event time, appliance, line), what the scenario sorts and produces.
pub type Line = (DateTime<Utc>, String, String);

pub fn audit(at: DateTime<Utc>, host: &str, seq: u32, feature_event: &str, body: &str) -> Line {
    let line = format!(
        "<134> {} GMT {host} 0-PPE-0 : default {feature_event} {seq} 0 : {body}",
        at.format("%m/%d/%Y:%H:%M:%S")
    );
    (at, host.to_owned(), line)
}

/// An httpaccess line relayed by syslog with the appliance's name.
pub fn access(at: DateTime<Utc>, host: &str, ip: &str, method: &str, path: &str, status: u16) -> Line {
    let line = format!(
        r#"{} {host} httpd: {ip} - - [{}] "{method} {path} HTTP/1.1" {status} 512 "-" "Mozilla/5.0""#,
        at.format("%Y-%m-%dT%H:%M:%SZ"),
        at.format("%d/%b/%Y:%H:%M:%S +0000")
    );
    (at, host.to_owned(), line)
}

pub fn cron(at: DateTime<Utc>, host: &str, user: &str, command: &str) -> Line {
    let line = format!("{} {host} /usr/sbin/cron[4242]: ({user}) CMD ({command})", at.format("%Y-%m-%dT%H:%M:%SZ"));
    (at, host.to_owned(), line)
}
