//! A broker outage mid-stream: the broker is frozen (SIGSTOP) for a minute while gatewatch has outputs
//! in flight, then resumed (SIGCONT). Requests time out, deliveries fail past `kafka.delivery_timeout`
//! and are sent again. The service never exits, `/readyz` is not ready during the outage and ready
//! after, every input record ends with its output, and memory stays bounded.
//!
//! A stop and restart of a durable broker was tried first, with tansu's SQLite engine
//! (`.tools/bin/tansu-sql`): under this load it panicked in its offset-commit path
//! (`tansu_storage::lite::Engine::update_group`) and answered produce requests with "unknown broker
//! error", so a frozen memory-engine broker stands in: the same outage for the clients, with nothing
//! for the broker to lose.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The outage; GATEWATCH_TEST_OUTAGE_SECS shortens it for local runs.
fn outage() -> Duration {
    let secs = std::env::var("GATEWATCH_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

fn tansu() -> PathBuf {
    let path = std::env::var_os("GATEWATCH_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/tansu"));
    assert!(path.exists(), "{} missing: run scripts/setup.sh", path.display());
    path
}

fn start_broker(dir: &Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tansu.log")).unwrap();
    let child = Command::new(tansu())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tansu-sql");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu-sql did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(process: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &process.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal}");
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[test]
fn a_broker_outage_of_a_minute_pauses_the_stream_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut tansu = start_broker(dir.path(), port);
    let bootstrap = format!("127.0.0.1:{port}");
    let broker = Broker::external(&bootstrap);
    let topics = Topics::new("outage");
    topics.create(&broker, 1);
    let lines = sample_lines();
    let mut records: Vec<_> = Vec::new();
    for _ in 0..40 {
        records.extend(lines.iter().map(|l| (Some(0), None, l.clone())));
    }
    let landed = broker.produce(&topics.input, &records);
    let mut gw = Gatewatch::spawn(&broker, &topics, &[("GATEWATCH__KAFKA__DELIVERY_TIMEOUT", "5s")]);
    gw.wait_ready(Duration::from_secs(60));
    // Stop the broker while the first outputs arrive: the rest are in flight or not yet consumed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.metric(&format!("gatewatch_records_out_total{{topic=\"{}\"}}", topics.enriched)) < 1.0 {
        assert!(Instant::now() < deadline, "no output; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&tansu, "-STOP");
    let outage_started = Instant::now();
    let mut peak_rss: f64 = 0.0;
    let mut saw_unready = false;
    while outage_started.elapsed() < outage() {
        assert!(
            gw.wait_timeout(Duration::from_millis(1)).is_none(),
            "the outage ended the process; log:\n{}",
            gw.log_text()
        );
        if let Some((status, body)) = gw.get("/readyz") {
            saw_unready |= status == 503;
            if std::env::var_os("GATEWATCH_TEST_DEBUG").is_some() {
                eprintln!("{:?} {status} {body}", outage_started.elapsed());
            }
        }
        peak_rss = peak_rss.max(rss_mib(gw.child.id()));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(saw_unready, "/readyz stayed ready through the outage; log:\n{}", gw.log_text());

    signal(&tansu, "-CONT");
    let outputs = topics.outputs_covering(&broker, &landed, Duration::from_secs(180));
    let seen = coverage(&outputs, &topics.input);
    if seen.values().map(|m| m.len()).sum::<usize>() < landed.len() {
        let log = gw.log_text();
        let tail: Vec<&str> = log.lines().filter(|l| !l.contains("librdkafka")).collect();
        eprintln!("gatewatch log (without librdkafka lines):\n{}", tail[tail.len().saturating_sub(40)..].join("\n"));
        eprintln!(
            "tansu log:\n{}",
            std::fs::read_to_string(dir.path().join("tansu.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_all_covered(&seen, &landed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.get("/readyz").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "not ready after the outage; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    peak_rss = peak_rss.max(rss_mib(gw.child.id()));
    println!("outage {:?}: {} inputs, {} outputs, peak RSS {peak_rss:.1} MiB", outage(), landed.len(), outputs.len());
    assert!(peak_rss < 256.0, "RSS {peak_rss:.1} MiB");
    gw.signal("TERM");
    let status = gw.wait_timeout(Duration::from_secs(30)).expect("stops within the drain bound");
    assert!(status.success(), "log:\n{}", gw.log_text());
    let _ = tansu.kill();
    let _ = tansu.wait();
}
