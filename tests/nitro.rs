//! The NITRO poller against a local HTTPS server that answers like an ADC's `/nitro/v1/stat/system`.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gatewatch::baseline::nitro::{self, PollError};
use gatewatch::config::NitroSettings;

/// What the fake appliance answers: status and body, given the request's user and password.
type Answer = dyn Fn(&str, &str) -> (u16, String) + Send + Sync;

/// The throw-away CA of this test run.
fn ca() -> &'static rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    static CA: std::sync::OnceLock<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test NITRO CA");
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    })
}

/// A TLS server on 127.0.0.1 with a certificate from the test CA; returns its URL and the CA's PEM.
fn appliance(answer: Arc<Answer>) -> (String, String) {
    let ca = ca();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, ca)
        .unwrap();
    let chain = vec![leaf.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, answer) = (config.clone(), answer.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(&mut tls);
                let (mut user, mut pass, mut line) = (String::new(), String::new(), String::new());
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = l.split_once(':') {
                        match name.to_ascii_lowercase().as_str() {
                            "x-nitro-user" => user = value.trim().to_owned(),
                            "x-nitro-pass" => pass = value.trim().to_owned(),
                            _ => {}
                        }
                    }
                }
                let (status, body) = answer(&user, &pass);
                // A redirect's "body" is where it points.
                let location =
                    if (300..400).contains(&status) { format!("Location: {body}\r\n") } else { String::new() };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status} X\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = tls.read(&mut [0u8; 1]);
            });
        }
    });
    (url, ca.pem())
}

fn stat(cpu: &str, pkt: &str, mgmt: &str, mem: &str) -> String {
    format!(
        r#"{{"errorcode":0,"message":"Done","severity":"NONE","system":{{"cpuusagepcnt":{cpu},"pktcpuusagepcnt":{pkt},"mgmtcpuusagepcnt":{mgmt},"memusagepcnt":{mem},"rescpuusagepcnt":1,"numcpus":"2"}}}}"#
    )
}

/// Answers like an ADC: 401 with NITRO error 354 unless the credentials are nsroot / s3cret.
fn with_credentials(body: String) -> Arc<Answer> {
    Arc::new(move |user: &str, pass: &str| {
        if user == "nsroot" && pass == "s3cret" {
            (200, body.clone())
        } else {
            (401, r#"{"errorcode":354,"message":"Invalid username or password","severity":"ERROR"}"#.into())
        }
    })
}

fn settings(ca_file: &str, password: &str) -> NitroSettings {
    NitroSettings {
        username: "nsroot".into(),
        password: password.into(),
        // An empty path: no CA file, the system's roots.
        ca_file: (!ca_file.is_empty()).then(|| ca_file.into()),
        timeout: Duration::from_secs(5),
        ..NitroSettings::default()
    }
}

#[test]
fn counters_become_fractions_and_not_available_is_left_out() {
    let (url, ca) = appliance(with_credentials(stat("37.5", "4294967295", "\"2.5\"", "61.25")));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let s = settings(ca_file.to_str().unwrap(), "s3cret");
    let values = nitro::poll(&nitro::agent(&s).unwrap(), &url, &s).unwrap();
    assert_eq!(
        values,
        vec![
            ("system.cpu.total.pct", 0.375),
            ("system.memory.used.pct", 0.6125),
            ("citrix_adc.cpu.management.pct", 0.025)
        ]
    );
    // Every counter unavailable: no sample at all rather than an empty one.
    let na = "4294967295";
    let (url, _) = appliance(with_credentials(stat(na, na, na, na)));
    let s = NitroSettings { tls_verify: false, ca_file: None, ..s };
    let error = nitro::poll(&nitro::agent(&s).unwrap(), &url, &s).unwrap_err();
    assert_eq!(error.code(), "bad_response", "{error}");
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let (url, ca) = appliance(with_credentials(stat("1", "1", "1", "1")));
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, secret) = (dir.path().join("ca.pem"), dir.path().join("password"));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&secret, "wrong\n").unwrap();
    let s = NitroSettings { password_file: Some(secret.clone()), ..settings(ca_file.to_str().unwrap(), "") };
    let error = nitro::poll(&nitro::agent(&s).unwrap(), &url, &s).unwrap_err();
    assert_eq!(error, PollError::Auth("Invalid username or password".into()));
    // The secret file is read on every poll: a rotated password is picked up without a restart.
    std::fs::write(&secret, "s3cret\n").unwrap();
    assert!(nitro::poll(&nitro::agent(&s).unwrap(), &url, &s).is_ok());
}

#[test]
fn a_redirect_is_not_followed_and_its_target_never_sees_the_password() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let (target, ca) = appliance(Arc::new(move |_user: &str, pass: &str| {
        record.lock().unwrap().push(pass.to_owned());
        (200, stat("1", "1", "1", "1"))
    }));
    let elsewhere = format!("{target}/nitro/v1/stat/system");
    let (url, _) = appliance(Arc::new(move |_: &str, _: &str| (302, elsewhere.clone())));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let s = settings(ca_file.to_str().unwrap(), "s3cret");
    let error = nitro::poll(&nitro::agent(&s).unwrap(), &url, &s).unwrap_err();
    assert_eq!(error.code(), "http_error", "{error}");
    assert!(error.to_string().contains("redirect") && error.to_string().contains(&target), "{error}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(seen.lock().unwrap().iter().all(|p| p != "s3cret"), "the redirect target received the password");
    assert!(seen.lock().unwrap().is_empty(), "the redirect was followed");
}

#[test]
fn tls_verification_is_on_by_default_and_can_be_turned_off() {
    let (url, _) = appliance(with_credentials(stat("10", "10", "10", "10")));
    // No CA file: the public roots, which do not know the test CA.
    let verified = settings("", "s3cret");
    let error = nitro::poll(&nitro::agent(&verified).unwrap(), &url, &verified).unwrap_err();
    assert_eq!(error.code(), "unreachable", "a certificate from an unknown CA is refused: {error}");
    let unverified = NitroSettings { tls_verify: false, ..verified };
    assert!(nitro::poll(&nitro::agent(&unverified).unwrap(), &url, &unverified).is_ok());
}

#[test]
fn the_service_polls_appliances_into_the_metrics_topic_and_scores_them() {
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let answer: Arc<Answer> = Arc::new(move |user: &str, pass: &str| {
        *counted.lock().unwrap() += 1;
        if user == "nsroot" && pass == "s3cret" {
            (200, stat("12.5", "4294967295", "3", "40"))
        } else {
            (401, r#"{"errorcode":354,"message":"Invalid username or password","severity":"ERROR"}"#.into())
        }
    });
    let (good, ca) = appliance(answer);
    // An appliance whose NITRO user was locked: it refuses every login.
    let (locked_out, _) = appliance(Arc::new(|_: &str, _: &str| {
        (401, r#"{"errorcode":354,"message":"Invalid username or password","severity":"ERROR"}"#.to_string())
    }));
    let broker = Broker::start();
    let topics = Topics::new("nitro");
    topics.create(&broker, 1);
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, secret) = (dir.path().join("ca.pem"), dir.path().join("password"));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&secret, "s3cret").unwrap();
    let gw = Gatewatch::spawn(
        &broker,
        &topics,
        &[
            ("GATEWATCH__BASELINE__NITRO__APPLIANCES__ADC1", &good),
            ("GATEWATCH__BASELINE__NITRO__APPLIANCES__ADC2", &locked_out),
            ("GATEWATCH__BASELINE__NITRO__USERNAME", "nsroot"),
            ("GATEWATCH__BASELINE__NITRO__PASSWORD_FILE", secret.to_str().unwrap()),
            ("GATEWATCH__BASELINE__NITRO__CA_FILE", ca_file.to_str().unwrap()),
            ("GATEWATCH__BASELINE__NITRO__INTERVAL", "1s"),
            ("GATEWATCH__BASELINE__SNAPSHOT_INTERVAL", "1s"),
        ],
    );
    // Polled every second, the topics never fall quiet: read for a bounded time.
    let samples = broker.read(&topics.metrics, 3, Duration::from_secs(15));
    assert!(samples.len() >= 3, "log:\n{}", gw.log_text());
    for s in &samples {
        let v = s.json();
        assert_eq!(s.key.as_deref(), Some("adc1"), "only the appliance that accepted the credentials: {v}");
        assert_eq!(v["observer"]["hostname"], "adc1");
        assert_eq!(v["system"]["cpu"]["total"]["pct"], 0.125);
        assert_eq!(v["system"]["memory"]["used"]["pct"], 0.4);
        assert_eq!(v["citrix_adc"]["cpu"]["management"]["pct"], 0.03);
        assert!(v["citrix_adc"]["cpu"].get("packet_engine").is_none(), "not available is left out: {v}");
    }
    // The samples go through the baseline stage: enriched, with a (warming) score per metric.
    let enriched = broker.read(&topics.enriched, 3, Duration::from_secs(15));
    let scored = enriched.iter().map(Record::json).filter(|v| v["event"]["dataset"] == "citrix_adc.metrics").count();
    assert!(scored >= 3, "log:\n{}", gw.log_text());
    let doc = enriched[0].json();
    assert_eq!(doc["gatewatch"]["baseline"]["cpu"]["warming"], true, "{doc}");
    // Polls are counted per appliance and outcome.
    gw.wait_ready(Duration::from_secs(30));
    assert!(gw.metric("gatewatch_nitro_polls_total{appliance=\"adc1\",outcome=\"ok\"}") >= 3.0);
    assert!(gw.metric("gatewatch_nitro_polls_total{appliance=\"adc2\",outcome=\"auth_failed\"}") >= 1.0);
    assert!(*calls.lock().unwrap() >= 3);
}
