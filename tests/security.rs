//! Secured Kafka end to end: gatewatch against tansu behind TLS (stunnel, a throw-away rcgen CA),
//! with SASL/SCRAM logins and mutual TLS; a wrong CA or password stops `run` with one line naming
//! the setting; `check --connect` against a live and a stopped broker; no secret in any log line or
//! in `/metrics`.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::secure::{Pki, SecureBroker, Security};
use common::*;

/// The gatewatch settings that connect to `broker` (TLS trust, and a SCRAM login when given).
fn security_env(secure: &SecureBroker, protocol: &str, scram: Option<(&str, &Path)>) -> Vec<(String, String)> {
    let mut env = vec![("GATEWATCH__KAFKA__SECURITY_PROTOCOL".to_owned(), protocol.to_owned())];
    if protocol.ends_with("ssl") {
        env.push(("GATEWATCH__KAFKA__SSL_CA_FILE".into(), secure.pki.ca_file().display().to_string()));
    }
    if let Some((user, password_file)) = scram {
        env.push(("GATEWATCH__KAFKA__SASL_MECHANISM".into(), "SCRAM-SHA-512".into()));
        env.push(("GATEWATCH__KAFKA__SASL_USERNAME".into(), user.into()));
        env.push(("GATEWATCH__KAFKA__SASL_PASSWORD_FILE".into(), password_file.display().to_string()));
    }
    env
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Records in, one output each, offsets committed to the end of the input: the whole path works.
fn assert_processes_and_commits(broker: &Broker, topics: &Topics, env: &[(String, String)]) {
    let lines = sample_lines();
    let records: Vec<_> = lines.iter().take(60).map(|l| (Some(0), None, l.clone())).collect();
    let landed = broker.produce(&topics.input, &records);
    let gw = Gatewatch::spawn(broker, topics, &as_refs(env));
    let outputs = topics.outputs(broker, records.len(), Duration::from_secs(90));
    assert_eq!(outputs.len(), records.len(), "log:\n{}", gw.log_text());
    assert_all_covered(&coverage(&outputs, &topics.input), &landed);
    let end = landed.iter().map(|(_, o)| o + 1).max().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = broker.committed(&topics.group, &topics.input, 1);
        if committed.get(&0) == Some(&end) {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed:?}, expected {end}; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `gatewatch run` that must stop by itself: (exit status, log) within `bound`.
fn run_until_exit(broker: &Broker, topics: &Topics, env: &[(String, String)], bound: Duration) -> (i32, String) {
    let mut gw = Gatewatch::spawn(broker, topics, &as_refs(env));
    let status = gw.wait_timeout(bound).unwrap_or_else(|| panic!("still running after {bound:?}:\n{}", gw.log_text()));
    (status.code().unwrap_or(-1), gw.log_text())
}

fn check_connect(broker: &Broker, topics: &Topics, env: &[(String, String)]) -> Output {
    let (cmd, _, _dir) = Gatewatch::command(broker, topics, &as_refs(env));
    // `command` prepared `run`; the same environment runs `check --connect`.
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    assert_eq!(args, ["run"]);
    let mut check = Command::new(cmd.get_program());
    check.args(["check", "--connect"]).current_dir(cmd.get_current_dir().unwrap()).env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            check.env(k, v);
        }
    }
    check.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn over_tls_records_flow_and_offsets_commit() {
    let secure = SecureBroker::start(Security { tls: true, ..Default::default() });
    let topics = Topics::new("tls");
    topics.create(&secure.broker, 1);
    let env = security_env(&secure, "ssl", None);
    let out = check_connect(&secure.broker, &topics, &env);
    assert!(
        out.status.success() && text(&out).contains("kafka ok") && text(&out).contains("over ssl"),
        "{}",
        text(&out)
    );
    assert_processes_and_commits(&secure.broker, &topics, &env);
}

#[test]
fn over_tls_with_a_scram_login_records_flow_and_offsets_commit() {
    let users = [("gatewatch", "correct horse battery staple", true), ("gw256", "another secret here", false)];
    let secure = SecureBroker::start(Security { tls: true, scram_users: &users, ..Default::default() });
    let topics = Topics::new("scram");
    topics.create(&secure.broker, 1);
    let password = secure.dir.path().join("sasl-password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();
    let env = security_env(&secure, "sasl_ssl", Some(("gatewatch", &password)));
    let out = check_connect(&secure.broker, &topics, &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_processes_and_commits(&secure.broker, &topics, &env);

    // SCRAM-SHA-256 too, checked by connecting.
    let password256 = secure.dir.path().join("sasl-password-256");
    std::fs::write(&password256, "another secret here").unwrap();
    let mut env256 = security_env(&secure, "sasl_ssl", Some(("gw256", &password256)));
    env256.push(("GATEWATCH__KAFKA__SASL_MECHANISM".into(), "SCRAM-SHA-256".into()));
    let out = check_connect(&secure.broker, &topics, &env256);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn with_mutual_tls_a_client_certificate_is_required_and_accepted() {
    let secure = SecureBroker::start(Security { tls: true, mutual_tls: true, ..Default::default() });
    let topics = Topics::new("mtls");
    topics.create(&secure.broker, 1);
    let without = security_env(&secure, "ssl", None);
    let out = check_connect(&secure.broker, &topics, &without);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kafka.ssl_certificate_file"), "{}", text(&out));

    let (cert, key) = secure.pki.issue("gatewatch", &["gatewatch"]);
    let mut with = without.clone();
    with.push(("GATEWATCH__KAFKA__SSL_CERTIFICATE_FILE".into(), cert.display().to_string()));
    with.push(("GATEWATCH__KAFKA__SSL_KEY_FILE".into(), key.display().to_string()));
    assert_processes_and_commits(&secure.broker, &topics, &with);
}

/// The one line a refused start logs, and that it is the only error.
fn assert_one_clear_error(log: &str, setting: &str) {
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{log}");
    assert!(errors[0].contains(setting), "the error does not name {setting}:\n{log}");
    assert!(log.lines().count() <= 6, "a refused start should say little:\n{log}");
}

#[test]
fn a_wrong_ca_stops_run_within_seconds_with_one_line_naming_the_setting() {
    let secure = SecureBroker::start(Security { tls: true, ..Default::default() });
    let topics = Topics::new("wrong-ca");
    topics.create(&secure.broker, 1);
    let other = Pki::new(secure.dir.path(), "some-other-ca");
    let mut env = security_env(&secure, "ssl", None);
    env.retain(|(k, _)| k != "GATEWATCH__KAFKA__SSL_CA_FILE");
    env.push(("GATEWATCH__KAFKA__SSL_CA_FILE".into(), other.ca_file().display().to_string()));
    let started = Instant::now();
    let (code, log) = run_until_exit(&secure.broker, &topics, &env, Duration::from_secs(20));
    assert_eq!(code, 2, "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_one_clear_error(&log, "kafka.ssl_ca_file");
    assert!(log.contains("certificate verify failed"), "{log}");
}

#[test]
fn a_wrong_password_stops_run_within_seconds_with_one_line_naming_the_setting() {
    let users = [("gatewatch", "the right one", true)];
    let secure = SecureBroker::start(Security { tls: true, scram_users: &users, ..Default::default() });
    let topics = Topics::new("wrong-password");
    topics.create(&secure.broker, 1);
    let password = secure.dir.path().join("sasl-password");
    std::fs::write(&password, "not-the-right-one\n").unwrap();
    let env = security_env(&secure, "sasl_ssl", Some(("gatewatch", &password)));
    let started = Instant::now();
    let (code, log) = run_until_exit(&secure.broker, &topics, &env, Duration::from_secs(20));
    assert_eq!(code, 2, "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_one_clear_error(&log, "kafka.sasl_password_file");
    assert!(!log.contains("not-the-right-one"), "{log}");
}

#[test]
fn check_connect_passes_against_the_broker_and_names_what_is_missing_or_stopped() {
    let broker = Broker::start();
    let topics = Topics::new("check-connect");
    let out = check_connect(&broker, &topics, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("kafka.input_topics = \"{}\": topic does not exist", topics.input)), "{t}");
    assert!(t.contains(&format!("output.alerts_topic = \"{}\": topic does not exist", topics.alerts)), "{t}");

    topics.create(&broker, 2);
    let out = check_connect(&broker, &topics, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{} (2)", topics.input)), "{}", text(&out));

    let stopped = Broker::external(&format!("127.0.0.1:{}", free_port()));
    let out = check_connect(&stopped, &topics, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("kafka.brokers") && t.contains(&stopped.bootstrap), "{t}");
    assert_eq!(t.lines().filter(|l| l.starts_with("gatewatch:")).count(), 1, "{t}");
}

/// A plain-HTTP "appliance" that answers every poll with a 500 whose body echoes the password it was
/// sent — a buggy appliance or proxy that puts a secret where gatewatch logs it.
fn echoing_appliance() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut line, mut pass) = (String::new(), String::new());
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("x-nitro-pass") {
                        pass = value.trim().to_owned();
                    }
                }
            }
            let body = format!("internal error while checking password {pass}");
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 500 Oops\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn known_secrets_never_appear_in_logs_or_metrics() {
    const SASL_SECRET: &str = "Sasl-S3cret-0f-the-test";
    const NITRO_SECRET: &str = "N1tro-S3cret-0f-the-test";
    let users = [("gatewatch", SASL_SECRET, true)];
    let secure = SecureBroker::start(Security { tls: true, scram_users: &users, ..Default::default() });
    let topics = Topics::new("secrets");
    topics.create(&secure.broker, 1);
    let password = secure.dir.path().join("sasl-password");
    std::fs::write(&password, format!("{SASL_SECRET}\n")).unwrap();
    let mut env = security_env(&secure, "sasl_ssl", Some(("gatewatch", &password)));
    let appliance = echoing_appliance();
    env.extend([
        ("RUST_LOG".to_owned(), "debug".to_owned()),
        ("GATEWATCH__BASELINE__NITRO__USERNAME".into(), "nsroot".into()),
        ("GATEWATCH__BASELINE__NITRO__PASSWORD".into(), NITRO_SECRET.into()),
        ("GATEWATCH__BASELINE__NITRO__ALLOW_HTTP".into(), "true".into()),
        ("GATEWATCH__BASELINE__NITRO__INTERVAL".into(), "1s".into()),
        ("GATEWATCH__BASELINE__NITRO__APPLIANCES__ADC1".into(), appliance),
        // librdkafka's own security debug output, as an operator chasing a login problem would set it.
        ("GATEWATCH__KAFKA__CONSUMER_OPTIONS__DEBUG".into(), "security,broker".into()),
    ]);
    let lines = sample_lines();
    let records: Vec<_> = lines.iter().take(20).map(|l| (Some(0), None, l.clone())).collect();
    secure.broker.produce(&topics.input, &records);
    let gw = Gatewatch::spawn(&secure.broker, &topics, &as_refs(&env));
    let outputs = topics.outputs(&secure.broker, records.len(), Duration::from_secs(90));
    assert_eq!(outputs.len(), records.len(), "log:\n{}", gw.log_text());
    let polled = "gatewatch_nitro_polls_total{appliance=\"adc1\",outcome=\"http_error\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.metric(polled) < 2.0 {
        assert!(Instant::now() < deadline, "no failed NITRO poll counted; log:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = gw.get("/metrics").unwrap();
    let log = gw.log_text();
    // The appliance did echo the password, and librdkafka did talk about the login: the secrets had
    // their chance to leak.
    assert!(log.contains("internal error while checking password [redacted]"), "{log}");
    assert!(log.contains("SASL"), "{log}");
    for secret in [SASL_SECRET, NITRO_SECRET] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
}
