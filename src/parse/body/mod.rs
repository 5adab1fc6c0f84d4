//! NetScaler message bodies → ECS fields.
//!
//! Most bodies are `Key value - Key value - ...` with optional quotes; a few families have shapes of
//! their own (HTTPREQUEST, CMD_EXECUTED, native APPFW, SNMP traps). [`parse`] dispatches on the event
//! name and falls back to the generic key/value reader, so an unknown event still yields its pairs.
//! Keys are matched case-insensitively against [`key_field`]; pairs with no ECS home are kept under
//! `citrix_adc.log.fields` so nothing in the body is lost.

mod http;
mod keys;
mod names;
mod patterns;

use smallvec::SmallVec;

use super::cef;
use super::fields::{self, Fields, Value};
use super::Device;
use crate::spare;

pub(super) use http::url_fields;

use http::http_request;
use keys::{key_values, unquote};
use patterns::{Kind, PATTERNS};

/// What the body parser made of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The event type is known and its body was taken apart.
    Known,
    /// The event type is not one gatewatch knows; header fields and the raw body are kept.
    Unknown,
}

/// The free-text fields of `name`'s body, by [`PATTERNS`].
fn free_text<'a>(name: &str, body: &'a str, out: &mut Fields<'a>) {
    static COMPILED: std::sync::LazyLock<Vec<regex::Regex>> = std::sync::LazyLock::new(|| {
        PATTERNS.iter().map(|p| regex::Regex::new(p.re).expect("the patterns are fixed and tested")).collect()
    });
    // Each pattern's capture slots, kept per thread so that matching does not allocate.
    thread_local! {
        static SLOTS: std::cell::RefCell<Vec<regex::CaptureLocations>> =
            std::cell::RefCell::new(COMPILED.iter().map(regex::Regex::capture_locations).collect());
    }
    for (at, (pattern, re)) in PATTERNS.iter().zip(COMPILED.iter()).enumerate() {
        if !pattern.names.contains(&name) {
            continue;
        }
        let groups = SLOTS.with_borrow_mut(|slots| {
            let slots = &mut slots[at];
            re.captures_read(slots, body)?;
            Some((1..slots.len()).filter_map(|i| slots.get(i)).map(|(s, e)| &body[s..e]).collect::<SmallVec<[_; 8]>>())
        });
        let Some(groups) = groups else { continue };
        for (i, (field, kind)) in pattern.fields.iter().enumerate() {
            // A field past the groups repeats the first capture (`user.domain` after `domain_name`).
            let value = groups.get(i).or(groups.first()).copied().unwrap_or_default();
            match kind {
                Kind::Str => out.str(field, value),
                Kind::Int => out.int(field, value),
                Kind::Url => {
                    out.str(field, value);
                    url_fields(value, out);
                }
                Kind::Outcome => {
                    let is = |words: [&str; 4]| words.iter().any(|w| w.eq_ignore_ascii_case(value));
                    if is(["allow", "allowed", "accepted", "success"]) {
                        out.keyword(field, "success");
                    } else if is(["deny", "denied", "rejected", "failure"]) {
                        out.keyword(field, "failure");
                    }
                }
            }
        }
    }
}

/// Parses the body of `feature`/`name` into `out`.
/// `device` is the appliance's clock: body times (`Start_time`, `Delink Time`, ...) are written the way
/// its header dates are (date order, and local time unless marked `GMT`).
pub fn parse<'a>(feature: Option<&str>, name: &str, body: &'a str, device: Device, out: &mut Fields<'a>) -> Coverage {
    let before = out.0.len();
    let coverage = by_name(feature, name, body, device, out);
    free_text(name, body.trim(), out);
    if matches!(name, "NAT_CONN_DELINK" | "NAT_OTHERCONN_DELINK") {
        nat_destinations(out, before);
    }
    coverage
}

/// A NAT connection's first `Destination` is the one the client asked for, the second the one it
/// was translated to (`destination.*`).
fn nat_destinations(out: &mut Fields<'_>, from: usize) {
    let count = |out: &Fields<'_>, name: &str| out.0[from..].iter().filter(|f| f.name == name).count();
    if count(out, "destination.ip") < 2 {
        return;
    }
    let mut seen_ip = false;
    let mut seen_port = false;
    let mut i = from;
    while i < out.0.len() {
        let name = out.0[i].name;
        match name {
            "citrix_adc.log.destination.ip" | "citrix_adc.log.destination.port" => {
                out.0.remove(i);
                continue;
            }
            "destination.ip" | "destination.port" => {
                let first = if name == "destination.ip" {
                    !std::mem::replace(&mut seen_ip, true)
                } else {
                    !std::mem::replace(&mut seen_port, true)
                };
                let port = name == "destination.port";
                let copy = match (first, port) {
                    (true, false) => "citrix_adc.log.original_destination.ip",
                    (true, true) => "citrix_adc.log.original_destination.port",
                    (false, false) => "citrix_adc.log.translated_destination.ip",
                    (false, true) => "citrix_adc.log.translated_destination.port",
                };
                let value = out.0[i].value.clone();
                if first {
                    out.0[i].name = copy;
                } else {
                    out.0.push(fields::Field { name: copy, value });
                }
            }
            _ => {}
        }
        i += 1;
    }
}

fn by_name<'a>(feature: Option<&str>, name: &str, body: &'a str, device: Device, out: &mut Fields<'a>) -> Coverage {
    let body = body.trim();
    match name {
        "CMD_EXECUTED" | "ZEBOS_CMD_EXECUTED" => command(body, device, out),
        "HTTPREQUEST" => http_request(body, device, out),
        "TRAP_SENT" => snmp_trap(body, out),
        "LOGIN"
        | "LOGOUT"
        | "LOGIN_FAILED"
        | "TCPCONNSTAT"
        | "UDPFLOWSTAT"
        | "TCPCONN_TIMEDOUT"
        | "ICASTART"
        | "ICAEND_CONNSTAT"
        | "REMOVE_SESSION_DEBUG"
        | "REMOVE_SESSION_INFO"
        | "REMOVE_SESSION_ERR"
        | "CLISEC_CHECK"
        | "CLISEC_EXP_EVAL"
        | "EXTRACTED_GROUPS"
        | "AAAEXTRACTED_GROUPS"
        | "HTTP_RESOURCEACCESS_DENIED"
        | "NONHTTP_RESOURCEACCESS_DENIED"
        | "CONN_DELINK"
        | "CONN_TERMINATE"
        | "OTHERCONN_DELINK"
        | "NAT_CONN_DELINK"
        | "NAT_OTHERCONN_DELINK"
        | "ACL_PKT_LOG"
        | "SSL_HANDSHAKE_SUCCESS"
        | "SSL_HANDSHAKE_FAILURE"
        | "SSL_HANDSHAKE_ISSUERNAME"
        | "SSL_HANDSHAKE_SUBJECTNAME"
        | "MONITORUP"
        | "MONITORDOWN"
        | "DEVICEUP"
        | "DEVICEDOWN"
        | "STATECHANGE"
        | "ROUTEUP"
        | "ROUTEDOWN"
        | "DEVICEOFS"
        | "STA_VALIDATE_RESP"
        | "LICLMT_REACHED" => {
            key_values(body, device, out);
            Coverage::Known
        }
        "STARTSAVECONFIG" | "STOPSAVECONFIG" | "SAVECONFIG" | "STARTSYS" | "STOPSYS" | "STARTCPU" | "CONFIGEND"
        | "ALERTSTARTED" | "ALERTENDED" | "NICRESET" => Coverage::Known,
        "Message" | "HA_Message" => {
            message(body, out);
            Coverage::Known
        }
        _ if feature == Some("APPFW") || name.starts_with("APPFW_") => appfw(body, out),
        _ if name.starts_with("PB_") || name == "PITBOSS" => Coverage::Known,
        _ => {
            key_values(body, device, out);
            match feature {
                Some(
                    "ICA" | "SSLLOG" | "TCP" | "ACL" | "DNS" | "ALG" | "CVPN" | "CI" | "RDP" | "SUBSCRIBER" | "URLFILT"
                    | "TRANSFORM" | "BOT" | "REWRITE" | "RESPONDER" | "ROUTING" | "EVENT" | "SSLVPN" | "AAA" | "AAATM",
                ) => Coverage::Known,
                _ => Coverage::Unknown,
            }
        }
    }
}

/// `User u - Remote_ip ip - Command "..." - Status "..."`: the command may contain quotes and ` - `.
fn command<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) -> Coverage {
    let (head, command, status) = match (body.find("Command \""), body.rfind("\" - Status \"")) {
        (Some(c), Some(s)) if s >= c + 8 => (&body[..c], &body[c + 9..s], Some(&body[s + 12..])),
        (Some(c), _) => {
            let value = &body[c + 9..];
            (&body[..c], value.rfind('"').map(|q| &value[..q]).unwrap_or(value), None)
        }
        _ => (body, "", None),
    };
    key_values(head.trim().trim_end_matches('-').trim(), device, out);
    out.str("citrix_adc.log.command", command);
    if let Some(status) = status {
        let status = status.trim_end().trim_end_matches('"');
        out.str("citrix_adc.log.status", status);
        let ok = matches!(status, "Success" | "Done" | "SUCCESS");
        out.keyword("event.outcome", if ok { "success" } else { "failure" });
    }
    Coverage::Known
}

/// Native APPFW: `client-ip txid session profile [url] message <action>`.
fn appfw<'a>(body: &'a str, out: &mut Fields<'a>) -> Coverage {
    let body = body.trim();
    let (body, action) = match body.rfind(" <") {
        Some(i) if body.ends_with('>') => (&body[..i], Some(&body[i + 2..body.len() - 1])),
        _ => (body, None),
    };
    if let Some(action) = action {
        out.str("citrix_adc.log.appfw_action", action);
    }
    let mut words = body.splitn(5, ' ');
    let first = words.next().unwrap_or("");
    if !fields::is_ip(first) {
        out.str("citrix_adc.log.message", body);
        return Coverage::Known;
    }
    out.str("source.ip", first);
    out.str("citrix_adc.log.transaction_id", words.next().unwrap_or(""));
    out.str("citrix_adc.log.session_id", words.next().unwrap_or(""));
    let profile = words.next().unwrap_or("");
    out.str("citrix_adc.log.profile_name", profile);
    out.str("citrix_adc.log.profile", profile);
    let rest = words.next().unwrap_or("").trim();
    let (url, message) = if rest.starts_with("http://") || rest.starts_with("https://") {
        rest.split_once(' ').unwrap_or((rest, ""))
    } else {
        match rest.find("http://").or_else(|| rest.find("https://")) {
            Some(i) => {
                let url_end = rest[i..].find(' ').map(|e| i + e).unwrap_or(rest.len());
                (&rest[i..url_end], rest)
            }
            None => ("", rest),
        }
    };
    url_fields(url, out);
    super::appliance::normalized_path(out);
    out.str("citrix_adc.log.message", message);
    Coverage::Known
}

/// `trapName (varbind = value, varbind = "value", ...)`; a CEF varbind is taken apart too, and CPU /
/// memory utilisation alarms become `system.*.pct` fractions.
fn snmp_trap<'a>(body: &'a str, out: &mut Fields<'a>) -> Coverage {
    let body = body.trim();
    let (trap, varbinds) = match body.find('(') {
        Some(i) => (body[..i].trim(), body[i + 1..].trim_end().trim_end_matches(')')),
        None => (body, ""),
    };
    out.str("citrix_adc.log.snmp.trap", trap);
    let mut pairs = spare::pairs();
    for item in split_varbinds(varbinds) {
        let Some((k, v)) = item.split_once(" = ").or_else(|| item.split_once('=')) else { continue };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if v.starts_with("CEF:") {
            cef::embedded(v, out);
        }
        pairs.push((k, v));
        let value = v.trim_end_matches('%').parse::<f64>().ok();
        fields::with_ascii_lower(k, |lower| match (lower, value) {
            (_, Some(pct)) if lower.contains("cpuusage") || (trap == "cpuUtilization" && lower.starts_with("res")) => {
                out.float("system.cpu.total.pct", pct / 100.0)
            }
            (_, Some(pct))
                if lower.contains("memusage") || (trap == "memoryUtilization" && lower.starts_with("res")) =>
            {
                out.float("system.memory.used.pct", pct / 100.0)
            }
            ("sysipaddress", _) => out.str("host.ip", v),
            _ => {}
        });
    }
    if pairs.is_empty() {
        spare::keep_pairs(pairs);
    } else {
        out.0.push(fields::Field { name: "citrix_adc.log.snmp.varbinds", value: Value::Pairs(pairs) });
    }
    Coverage::Known
}

/// Splits `a = 1, b = "x, y", c = 2` at commas outside quotes.
fn split_varbinds(s: &str) -> SmallVec<[&str; 16]> {
    let mut out = SmallVec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|p: &mut &str| !p.is_empty());
    out
}

/// Free-text `Message` bodies: kept whole; `Remote ip = a:b` / `user x` hints are lifted.
fn message<'a>(body: &'a str, out: &mut Fields<'a>) {
    let text = unquote(body);
    out.str("citrix_adc.log.message", text);
    if let Some(i) = text.find("Remote ip = ") {
        let rest = &text[i + 12..];
        let end = rest.find([']', ' ', ',']).unwrap_or(rest.len());
        out.address("source.ip", "source.port", &rest[..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::keys::parse_body_time;
    use super::*;
    use crate::parse::time;

    fn parsed(feature: &str, name: &str, body: &str) -> (Coverage, Fields<'static>) {
        let body: &'static str = Box::leak(body.to_owned().into_boxed_str());
        let mut out = Fields::default();
        let coverage = parse(Some(feature), name, body, Device::default(), &mut out);
        (coverage, out)
    }

    #[test]
    fn a_body_time_is_read_in_the_zone_written_after_it_else_in_the_appliance_zone() {
        let device = Device { date_order: time::DateOrder::Dmy, timezone: chrono_tz::America::New_York };
        let at = |v: &str| parse_body_time(v, device).map(|t| t.to_rfc3339());
        let utc = Some("2023-05-09T01:44:32+00:00".to_string());
        for written in
            ["09/05/2023:01:44:32 GMT", "09/05/2023:01:44:32GMT", "09/05/2023:01:44:32 UTC", "09/05/2023:01:44:32 Z"]
        {
            assert_eq!(at(written), utc, "{written}");
        }
        // PST on 9 May is Los Angeles daylight time, as Java's parser reads it.
        assert_eq!(at("09/05/2023:01:44:32 PST"), Some("2023-05-09T08:44:32+00:00".into()));
        assert_eq!(at("09/05/2023:01:44:32 EDT"), Some("2023-05-09T05:44:32+00:00".into()));
        assert_eq!(at("09/05/2023:01:44:32 +02:00"), Some("2023-05-08T23:44:32+00:00".into()));
        assert_eq!(at("09/05/2023:01:44:32 +0200"), Some("2023-05-08T23:44:32+00:00".into()));
        assert_eq!(at("09/05/2023:01:44:32 -0130"), Some("2023-05-09T03:14:32+00:00".into()));
        assert_eq!(at("09/05/2023:01:44:32 Europe/Berlin"), Some("2023-05-08T23:44:32+00:00".into()));
        // No zone: the appliance's (New York) local time.
        assert_eq!(at("09/05/2023:01:44:32"), Some("2023-05-09T05:44:32+00:00".into()));
        assert_eq!(at("2023-05-09T01:44:32Z GMT"), utc);
        assert_eq!(at("09/05/2023:01:44:32 Mars/Olympus"), None);
        assert_eq!(at("09/05/2023:01:44:32 +99"), None);
    }

    #[test]
    fn gateway_messages_name_the_user_the_addresses_and_the_outcome() {
        let (_, f) = parsed(
            "SSLVPN",
            "Message",
            r#""SSLVPN Mux Authorize result is Deny, User <vpn17590>, Srcip: 1.2.3.4, Dstip: 5.6.7.8, denied_by_policy: SESSPOL_VPN_Remoteadmin""#,
        );
        assert_eq!(f.get_str("event.outcome"), Some("failure"));
        assert_eq!(f.get_str("user.name"), Some("vpn17590"));
        assert_eq!(f.get_str("source.ip"), Some("1.2.3.4"));
        assert_eq!(f.get_str("destination.ip"), Some("5.6.7.8"));
        assert_eq!(f.get_str("rule.name"), Some("SESSPOL_VPN_Remoteadmin"));
        let (_, f) =
            parsed("SSLVPN", "Message", r#""SSLVPN Mux Authorize result is Allow, Srcip: 1.2.3.4, Dstip: 5.6.7.8""#);
        assert_eq!(f.get_str("event.outcome"), Some("success"));
        assert_eq!(f.get_str("user.name"), None);
        assert_eq!(f.get_str("destination.ip"), Some("5.6.7.8"));
        let (_, f) = parsed(
            "AAA",
            "Message",
            r#""Authentication is rejected for johndoe (client ip : 1.2.3.4  , vserver ip: 5.6.7.8   ), extended error, if any : ""#,
        );
        assert_eq!(f.get_str("event.outcome"), Some("failure"));
        assert_eq!(f.get_str("user.name"), Some("johndoe"));
        assert_eq!(f.get_str("source.ip"), Some("1.2.3.4"));
        assert_eq!(f.get_str("destination.ip"), Some("5.6.7.8"));
        let (_, f) = parsed(
            "SSLVPN",
            "Message",
            r#""SSO ns_sslvpn_process_sso_conn: user john.doe@example.com clientip 1.2.3.7 request: /Citrix/x.png sso_flags-0""#,
        );
        assert_eq!(f.get_str("user.name"), Some("john.doe@example.com"));
        assert_eq!(f.get_str("client.ip"), Some("1.2.3.7"));
        assert_eq!(f.get_str("url.original"), Some("/Citrix/x.png"));
    }

    #[test]
    fn sslvpn_login() {
        let (c, f) = parsed(
            "SSLVPN",
            "LOGIN",
            r#"Context user@example.com@10.1.2.3 - SessionId: 34921 - User user@example.com - Client_ip 10.1.2.3 - Nat_ip "Mapped Ip" - Vserver 10.9.9.9:443 - Browser_type "Mozilla/5.0 (Windows NT 10.0; Win64; x64)" - SSLVPN_client_type ICA - Group(s) "PORTAL""#,
        );
        assert_eq!(c, Coverage::Known);
        assert_eq!(f.get_str("citrix_adc.log.session_id"), Some("34921"));
        assert_eq!(f.get_str("user.name"), Some("user@example.com"));
        assert_eq!(f.get_str("client.ip"), Some("10.1.2.3"));
        assert_eq!(f.get_str("source.ip"), Some("10.1.2.3"));
        assert_eq!(f.get_str("citrix_adc.log.vserver.ip"), Some("10.9.9.9"));
        assert_eq!(f.get_int("citrix_adc.log.vserver.port"), Some(443));
        assert_eq!(f.get_str("user_agent.original"), Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"));
        assert_eq!(f.get("user.group.name"), Some(&Value::List(vec!["PORTAL"])));
    }

    #[test]
    fn glued_session_id() {
        let (_, f) = parsed("SSLVPN", "TCPCONNSTAT", "Context u@1.2.3.4 - SessionId: 651173- User u - Client_ip 1.2.3.4 - Duration 00:01:02  - Total_bytes_send 5");
        assert_eq!(f.get_str("citrix_adc.log.session_id"), Some("651173"));
        assert_eq!(f.get_str("user.name"), Some("u"));
        assert_eq!(f.get_int("event.duration"), Some(62_000_000_000));
        assert_eq!(f.get_int("citrix_adc.log.total_bytes_send"), Some(5));
    }

    #[test]
    fn command_with_quotes_and_status() {
        let (_, f) = parsed(
            "CLI",
            "CMD_EXECUTED",
            r#"User nsroot - Remote_ip 10.0.0.1 - Command "set x -comment "a - b"" - Status "ERROR: bad""#,
        );
        assert_eq!(f.get_str("citrix_adc.log.command"), Some(r#"set x -comment "a - b""#));
        assert_eq!(f.get_str("source.ip"), Some("10.0.0.1"));
        assert_eq!(f.get_str("citrix_adc.log.status"), Some("ERROR: bad"));
        assert_eq!(f.get_str("event.outcome"), Some("failure"));
    }

    #[test]
    fn http_request_fields() {
        let (_, f) = parsed("SSLVPN", "HTTPREQUEST", "Context TestUser@10.0.0.1 - SessionId: 220403 - 10.0.0.1 User TestUser : Group(s) EA-ALL : Vserver 10.0.0.2:443 - 06/04/2023:10:47:40 GMT : SSO is ON : POST /api2/swis/query?x=1 - -");
        assert_eq!(f.get_str("http.request.method"), Some("POST"));
        assert_eq!(f.get_str("url.path"), Some("/api2/swis/query"));
        assert_eq!(f.get_str("url.query"), Some("x=1"));
        assert_eq!(f.get_str("user.name"), Some("TestUser"));
        assert_eq!(f.get_str("citrix_adc.log.session_id"), Some("220403"));
        assert_eq!(f.get_str("citrix_adc.log.sso_status"), Some("ON"));
    }

    #[test]
    fn http_request_with_connection_statistics_ends_the_user_at_the_next_pair() {
        let (_, f) = parsed(
            "SSLVPN",
            "HTTPREQUEST",
            r#"Context a@1.2.3.4 - SessionId: 5 - host.example User username - Client_ip 175.16.199.1 - Total_bytes_send 656 - Total_bytes_recv 2456 - Group(s) "N/A""#,
        );
        assert_eq!(f.get_str("citrix_adc.log.user"), Some("username"));
        assert_eq!(f.get("citrix_adc.log.total_bytes_send"), Some(&Value::Int(656)));
        // `User name: Group(s)` (no space before the colon) still ends at the colon.
        let (_, f) = parsed("SSLVPN", "HTTPREQUEST", "Context u@81.2.69.145 - SessionId: 1756710 - citrix.example.com User user.name: Group(s) N/A : Vserver 81.2.69.143:443 - 07/12/2024:06:54:39 GMT : SSO is ON : POST /Citrix/x - -");
        assert_eq!(f.get_str("citrix_adc.log.user"), Some("user.name"));
        assert_eq!(f.get_str("http.request.method"), Some("POST"));
    }

    #[test]
    fn snmp_cpu_alarm() {
        let (_, f) = parsed(
            "SNMP",
            "TRAP_SENT",
            "cpuUtilization (resCpuUsage = 96, sysHighThresholdValue = 95, sysIpAddress = 10.0.0.1)",
        );
        assert_eq!(f.get_str("citrix_adc.log.snmp.trap"), Some("cpuUtilization"));
        assert_eq!(f.get("system.cpu.total.pct"), Some(&Value::Float(0.96)));
        assert_eq!(f.get_str("host.ip"), Some("10.0.0.1"));
    }

    #[test]
    fn appfw_native() {
        let (_, f) = parsed(
            "APPFW",
            "APPFW_STARTURL",
            "10.160.44.137 392811-PPE0 - test_profile Disallow Illegal URL: http://10.160.0.10/0bef <not blocked>",
        );
        assert_eq!(f.get_str("source.ip"), Some("10.160.44.137"));
        assert_eq!(f.get_str("citrix_adc.log.profile_name"), Some("test_profile"));
        assert_eq!(f.get_str("url.original"), Some("http://10.160.0.10/0bef"));
        assert_eq!(f.get_str("citrix_adc.log.appfw_action"), Some("not blocked"));
    }

    #[test]
    fn unknown_event_keeps_pairs() {
        let (c, f) = parsed("FOO", "BAR", "Alpha 1 - Beta two");
        assert_eq!(c, Coverage::Unknown);
        assert_eq!(f.get("citrix_adc.log.fields"), Some(&Value::Pairs(vec![("Alpha", "1"), ("Beta", "two")])));
    }
}
