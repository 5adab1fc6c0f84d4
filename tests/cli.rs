//! The command line: `check` names what is wrong, environment overrides files, `--version`/`--help`.

use std::path::Path;
use std::process::{Command, Output};

fn gatewatch(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    cmd.current_dir(dir).args(args).env_clear();
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
