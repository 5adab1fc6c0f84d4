//! A secured broker for one test: tansu (SASL/SCRAM: `--authentication`) behind stunnel (TLS,
//! optionally requiring client certificates), with a throw-away CA made by rcgen.
//!
//! The tansu build used here cannot serve TLS itself (its `--cert`/`--key` flags conflict and its
//! accept loop never wraps the stream; see README "Secured Kafka"), so stunnel terminates TLS in front
//! of it: tansu advertises the stunnel port, so every client connection — bootstrap and broker — goes
//! through TLS.
//!
//! SCRAM logins need a tansu whose storage keeps SCRAM credentials: the memory engine of the prebuilt
//! tansu accepts `AlterUserScramCredentials` and forgets it, so secured-login brokers run the crates.io
//! build with its SQLite engine (`.tools/bin/tansu-sql`, built by scripts/setup.sh). Users are created
//! through the broker before `--authentication` is switched on (tansu refuses that API to clients that
//! have not logged in, and has no other way in), then the broker restarts on the same database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Broker};

/// A CA and what it signed, as PEM files in a directory of the test's.
pub struct Pki {
    pub dir: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), issuer.pem()).unwrap();
        Pki { dir, issuer }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A certificate for `names` signed by this CA: (certificate file, key file).
    pub fn issue(&self, file_name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) =
            (self.dir.join(format!("{file_name}.crt")), self.dir.join(format!("{file_name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// A SCRAM user of the broker: name, password, SHA-512 (else SHA-256).
pub type ScramUser<'a> = (&'a str, &'a str, bool);

/// How the broker is secured.
#[derive(Clone, Copy, Default)]
pub struct Security<'a> {
    /// TLS in front of the broker.
    pub tls: bool,
    /// TLS clients must present a certificate signed by the broker's CA.
    pub mutual_tls: bool,
    /// SCRAM logins required (tansu `--authentication`), for these users and the harness's own.
    pub scram_users: &'a [ScramUser<'a>],
}

impl Security<'_> {
    fn sasl(&self) -> bool {
        !self.scram_users.is_empty()
    }
}

/// The harness's own login on a SCRAM broker.
const HARNESS_USER: ScramUser<'static> = ("harness", "harness-login-password", true);

pub struct SecureBroker {
    pub broker: Broker,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tansu_binary(sql: bool) -> PathBuf {
    let (var, file) = if sql { ("GATEWATCH_TANSU_SQL", "tansu-sql") } else { ("GATEWATCH_TANSU", "tansu") };
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin").join(file));
    assert!(path.exists(), "{} missing: run scripts/setup.sh (or set {var})", path.display());
    path
}

fn spawn_tansu(
    tansu: &Path,
    inner: u16,
    outer: u16,
    storage: &str,
    authentication: bool,
    log: &Path,
) -> std::process::Child {
    let mut cmd = Command::new(tansu);
    cmd.args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{inner}")])
        .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{outer}")])
        .args(["--storage-engine", storage]);
    if authentication {
        cmd.arg("--authentication");
    }
    // The SQLite engine takes its database path relative to the working directory.
    cmd.current_dir(log.parent().unwrap());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("start tansu");
    wait_listening(&format!("127.0.0.1:{inner}"));
    child
}

impl SecureBroker {
    pub fn start(security: Security) -> SecureBroker {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "broker-ca");
        let inner = free_port();
        let outer = if security.tls { free_port() } else { inner };
        let tansu_log = dir.path().join("tansu.log");
        let tansu = if security.sasl() {
            // Users first, over the inner port without authentication; then the same database with it.
            let tansu = tansu_binary(true);
            let storage = "sqlite://tansu.db";
            let mut open = spawn_tansu(&tansu, inner, inner, storage, false, &tansu_log);
            for (user, password, sha512) in security.scram_users.iter().chain([&HARNESS_USER]) {
                let mechanism = if *sha512 { "scram512" } else { "scram256" };
                let out = Command::new(&tansu)
                    .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{inner}")])
                    .args(["--mechanism", mechanism, user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "tansu user create {user}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let _ = open.kill();
            let _ = open.wait();
            spawn_tansu(&tansu, inner, outer, storage, true, &tansu_log)
        } else {
            spawn_tansu(&tansu_binary(false), inner, outer, "memory://tansu/", false, &tansu_log)
        };
        let mut processes = vec![tansu];

        let mut options: Vec<(String, String)> = Vec::new();
        let protocol = match (security.tls, security.sasl()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        options.push(("security.protocol".into(), protocol.into()));
        if security.tls {
            let (cert, key) = pki.issue("broker", &["localhost", "127.0.0.1"]);
            let mut conf = format!(
                "foreground = yes\npid =\noutput = {}\n[kafka]\naccept = 127.0.0.1:{outer}\nconnect = 127.0.0.1:{inner}\n\
                 cert = {}\nkey = {}\n",
                dir.path().join("stunnel.log").display(),
                cert.display(),
                key.display()
            );
            if security.mutual_tls {
                conf.push_str(&format!("verify = 2\nCAfile = {}\n", pki.ca_file().display()));
                let (client_cert, client_key) = pki.issue("harness", &["harness"]);
                options.push(("ssl.certificate.location".into(), client_cert.display().to_string()));
                options.push(("ssl.key.location".into(), client_key.display().to_string()));
            }
            let conf_file = dir.path().join("stunnel.conf");
            std::fs::write(&conf_file, conf).unwrap();
            let stunnel = Command::new("stunnel4")
                .arg(&conf_file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start stunnel4 (Debian package stunnel4, installed by scripts/setup.sh)");
            processes.push(stunnel);
            wait_listening(&format!("127.0.0.1:{outer}"));
            options.push(("ssl.ca.location".into(), pki.ca_file().display().to_string()));
        }
        if security.sasl() {
            let (user, password, _) = HARNESS_USER;
            options.push(("sasl.mechanism".into(), "SCRAM-SHA-512".into()));
            options.push(("sasl.username".into(), user.into()));
            options.push(("sasl.password".into(), password.into()));
        }
        let broker = Broker::with_processes(format!("127.0.0.1:{outer}"), processes, options);
        SecureBroker { broker, pki, dir }
    }
}
