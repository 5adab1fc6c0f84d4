//! Secrets: the values that must never appear in a log line, an error message, a metric or a panic.
//!
//! Passwords reach gatewatch from files or the environment (`kafka.sasl_password_file`,
//! `baseline.nitro.password_file` / `.password`). Every such value is [`register`]ed when it is read,
//! and the last line of defence — the log writer ([`RedactingWriter`]) and the panic hook
//! ([`install_panic_hook`]) — replaces any registered value with `[redacted]`, whatever code path
//! formatted it. The first line of defence stays ordinary care: [`Secret`] has a redacting `Debug`,
//! and errors about protected options name the key, never the value.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not scrubbed from text (a one-letter "password" would blank every
/// occurrence of that letter); they are still kept out of `Debug` and error messages.
pub const MIN_SCRUBBED_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` as a secret, so [`redact`] removes it from any text from now on.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SCRUBBED_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_owned());
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// A secret value: usable where it is needed, `[redacted]` wherever it is printed.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself; the name is loud on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// Reads a secret file (the content without its trailing newline) and registers the value.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Secret> {
    let text = std::fs::read_to_string(path)?;
    let value = text.trim_end_matches(['\n', '\r']);
    register(value);
    Ok(Secret::new(value))
}

/// Standard error, scrubbed of every registered secret: the writer of every log line.
#[derive(Clone, Copy, Default)]
pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over whole lines; a secret split across two writes would not be seen,
        // so the line is written in one call either way.
        match std::str::from_utf8(buf) {
            Ok(text) => std::io::stderr().write_all(redact(text).as_bytes())?,
            Err(_) => std::io::stderr().write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}

/// Replaces the panic message printer with one that scrubs registered secrets.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let thread = std::thread::current();
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("thread '{}' panicked{location}: {}", thread.name().unwrap_or("<unnamed>"), redact(&payload));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_scrubbed_and_short_ones_ignored() {
        register("hunter2-correct-horse");
        register("abc");
        assert_eq!(redact("login hunter2-correct-horse failed"), "login [redacted] failed");
        assert_eq!(redact("abc stays"), "abc stays");
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = Secret::new("p4ssw0rd-debug");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(s.expose(), "p4ssw0rd-debug");
    }
}
