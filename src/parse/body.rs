//! NetScaler message bodies → ECS fields.
//!
//! Most bodies are `Key value - Key value - ...` with optional quotes; a few families have shapes of
//! their own (HTTPREQUEST, CMD_EXECUTED, native APPFW, SNMP traps). [`parse`] dispatches on the event
//! name and falls back to the generic key/value reader, so an unknown event still yields its pairs.
//! Keys are matched case-insensitively against [`key_field`]; pairs with no ECS home are kept under
//! `citrix_adc.log.fields` so nothing in the body is lost.

use super::cef;
use super::fields::{self, Fields, Value};
use super::time;
use super::Device;

/// What the body parser made of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The event type is known and its body was taken apart.
    Known,
    /// The event type is not one gatewatch knows; header fields and the raw body are kept.
    Unknown,
}

/// How a captured piece of free text is stored.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Url,
    /// `Allow`/`accepted` (success) or `Deny`/`rejected` (failure), as `event.outcome`.
    Outcome,
}

/// Free-text bodies Elastic's integration takes apart with grok patterns: the event names, the
/// pattern, and the field of each capture group in order.
struct Pattern {
    names: &'static [&'static str],
    re: &'static str,
    fields: &'static [(&'static str, Kind)],
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        names: &["APPFW_XMLPAYLOAD_CONTENT_TYPE_MISMATCH"],
        re: r#"detected = "([^"]*)""#,
        fields: &[("citrix_adc.log.content_type_mismatch", Kind::Str)],
    },
    Pattern {
        names: &["APPFW_DENYURL"],
        re: r#"rule pattern = "([^"]*)""#,
        fields: &[("citrix_adc.log.url", Kind::Url)],
    },
    Pattern {
        names: &["APPFW_CONTENT_TYPE"],
        re: r#"content-type header value = "([^"]*)""#,
        fields: &[("citrix_adc.log.unknown_content_type", Kind::Str)],
    },
    Pattern {
        names: &["APPFW_REFERER_HEADER"],
        re: r"referer header '([^']*)'",
        fields: &[("citrix_adc.log.referer_header", Kind::Str), ("http.request.referrer", Kind::Str)],
    },
    Pattern {
        names: &["APPFW_BUFFEROVERFLOW_URL"],
        re: r"^URL length\((\d+)\) is greater than maximum allowed\((\d+)\)",
        fields: &[("citrix_adc.log.url_length", Kind::Int), ("citrix_adc.log.max_allowed.url_length", Kind::Int)],
    },
    Pattern {
        names: &["APPFW_BUFFEROVERFLOW_COOKIE"],
        re: r"^Cookie header length\((\d+)\) is greater than maximum allowed\((\d+)\)",
        fields: &[
            ("citrix_adc.log.cookie_header_length", Kind::Int),
            ("citrix_adc.log.max_allowed.cookie_header_length", Kind::Int),
        ],
    },
    Pattern {
        names: &["APPFW_BUFFEROVERFLOW_HDR"],
        re: r"^Header\([^)]*\) length\((\d+)\) is greater than maximum allowed\((\d+)\)",
        fields: &[("citrix_adc.log.header_length", Kind::Int), ("citrix_adc.log.max_allowed.header_length", Kind::Int)],
    },
    Pattern {
        names: &["APPFW_BUFFEROVERFLOW_QUERY"],
        re: r"^Query string length\((\d+)\) is greater than maximum allowed\((\d+)\)",
        fields: &[
            ("citrix_adc.log.query_string_length", Kind::Int),
            ("citrix_adc.log.max_allowed.query_string_length", Kind::Int),
        ],
    },
    Pattern {
        names: &["APPFW_BUFFEROVERFLOW_TOTAL_HDR"],
        re: r"^Total HTTP header length\((\d+)\) is greater than maximum allowed\((\d+)\)",
        fields: &[
            ("citrix_adc.log.total_http_header_length", Kind::Int),
            ("citrix_adc.log.max_allowed.total_http_header_length", Kind::Int),
        ],
    },
    Pattern {
        names: &["AF_BIND_TO_PROFILE", "AF_BIND_XML_TO_PROFILE", "AF_ADD_PROFILE", "AF_RM_PROFILE"],
        re: r"^Profile: (\S+)",
        fields: &[("citrix_adc.log.profile", Kind::Str)],
    },
    Pattern {
        names: &["AF_ADD_FIELDTYPE", "AF_RM_FIELDTYPE"],
        re: r"^Field Type: (\S+)",
        fields: &[("citrix_adc.log.field_type", Kind::Str)],
    },
    Pattern {
        names: &["AF_ADD_CFFIELD", "AF_RM_CFFIELD"],
        re: r"^Field Name: (\S+)",
        fields: &[("citrix_adc.log.field_name", Kind::Str)],
    },
    Pattern {
        names: &["AF_MEMORY_ERR"],
        re: r"too large\((\d+) Bytes\)",
        fields: &[("citrix_adc.log.content_length_bytes", Kind::Int)],
    },
    Pattern {
        names: &["AF_SIGNATURE_ERR"],
        re: r"^Signature id (\d+)",
        fields: &[("citrix_adc.log.signature_id", Kind::Str)],
    },
    Pattern { names: &["APPFW_SESSIONLIMIT"], re: r"PEID (\d+)", fields: &[("citrix_adc.log.peid", Kind::Str)] },
    Pattern {
        names: &["AF_ADD_RFCPROFILE", "AF_RM_RFCPROFILE"],
        re: r"RFC Profile: (\S+)",
        fields: &[("citrix_adc.log.appfw_rfc_profile", Kind::Str)],
    },
    Pattern {
        names: &["APPFW_NEW_SIGNATURE_ADDED"],
        re: r"RuleID = (\d+)",
        fields: &[("citrix_adc.log.rule_id", Kind::Str)],
    },
    Pattern {
        names: &["APPFW_DEPLOY_RELAXATION_DP"],
        re: r"after (\d+)mins\. ViolType: ([^.]+)\. Profile: (\S+)",
        fields: &[
            ("citrix_adc.log.auto_deploy_mins", Kind::Int),
            ("citrix_adc.log.violation_type", Kind::Str),
            ("citrix_adc.log.profile", Kind::Str),
        ],
    },
    Pattern {
        names: &["APPFW_REST_VALIDATION"],
        re: r"relaxation rule: (\S+) hit at url: (\S+)",
        fields: &[("citrix_adc.log.rule", Kind::Str), ("citrix_adc.log.url", Kind::Url)],
    },
    Pattern { names: &["PITBOSS"], re: r"watch on \((\d+)\)", fields: &[("citrix_adc.log.watch_id", Kind::Str)] },
    Pattern {
        names: &["PB_SYSTEM_RESTART"],
        re: r"^proc \((\d+)\) \(([^)]*)\) has had its maximum number of restarts \((\d+)\)",
        fields: &[
            ("citrix_adc.log.process.id", Kind::Int),
            ("citrix_adc.log.process.name", Kind::Str),
            ("citrix_adc.log.max_restarts", Kind::Int),
        ],
    },
    Pattern {
        names: &["PB_PROCESS_RESTART"],
        re: r"old pid \((\d+)\) action \(([^)]*)\)",
        fields: &[("citrix_adc.log.old_pid", Kind::Int), ("citrix_adc.log.action", Kind::Str)],
    },
    Pattern {
        names: &["BOT_SIG_AUTO_UPDATE"],
        re: r"Newly added Rules: (\d+) DeletedRules: (\d+)",
        fields: &[("citrix_adc.log.newly_added_rules", Kind::Int), ("citrix_adc.log.deleted_rules", Kind::Int)],
    },
    Pattern {
        names: &["SSL_OCSPURL_RESOLVE_SUCCESS", "SSL_OCSPURL_RESOLVE_FAILURE"],
        re: r"^Domainname (\S+) Ipaddress (\S+)",
        fields: &[
            ("citrix_adc.log.domain_name", Kind::Str),
            ("citrix_adc.log.ip_address", Kind::Str),
            ("user.domain", Kind::Str),
        ],
    },
    Pattern { names: &["SESSION_EVENT"], re: r"^Session (\S+)", fields: &[("citrix_adc.log.session", Kind::Str)] },
    Pattern {
        names: &["CLISEC_EXP_EVAL"],
        re: r"Client security check .* (\w+\(\d+\)) on the client machine",
        fields: &[("citrix_adc.log.client_security_check_status", Kind::Str)],
    },
    Pattern {
        names: &["CLISEC_EXP_EVAL"],
        re: r"Clientsecuritycheck\w*\((\d+)\)",
        fields: &[("citrix_adc.log.client_security_check_status", Kind::Str)],
    },
    // `SSLVPN Mux Authorize result is Deny, User <vpn17590>, Srcip: 1.2.3.4, Dstip: 5.6.7.8,
    // denied_by_policy: POLICY` (the parts are optional: one pattern each).
    Pattern {
        names: &["Message"],
        re: r"Mux Authorize result is (\w+)",
        fields: &[("citrix_adc.log.authorize_result", Kind::Str), ("event.outcome", Kind::Outcome)],
    },
    Pattern {
        names: &["Message"],
        re: r"Mux Authorize result is .*?User <([^>\s]+)>",
        fields: &[("user.name", Kind::Str)],
    },
    Pattern { names: &["Message"], re: r"Srcip: ([0-9A-Fa-f.:]+[0-9A-Fa-f])", fields: &[("source.ip", Kind::Str)] },
    Pattern {
        names: &["Message"],
        re: r"Dstip: ([0-9A-Fa-f.:]+[0-9A-Fa-f])",
        fields: &[("destination.ip", Kind::Str)],
    },
    Pattern {
        names: &["Message"],
        re: r#"denied_by_policy: ([^\s,"]+)"#,
        fields: &[("citrix_adc.log.denied_by_policy", Kind::Str), ("rule.name", Kind::Str)],
    },
    // AAA `Authentication is rejected for johndoe (client ip : 1.2.3.4  , vserver ip: 5.6.7.8   )`.
    Pattern {
        names: &["Message"],
        re: r"Authentication is (\w+) for (\S+) \(client ip : ([0-9A-Fa-f.:]+[0-9A-Fa-f])\s*, vserver ip: ([0-9A-Fa-f.:]+[0-9A-Fa-f])",
        fields: &[
            ("event.outcome", Kind::Outcome),
            ("user.name", Kind::Str),
            ("source.ip", Kind::Str),
            ("destination.ip", Kind::Str),
        ],
    },
    // `SSO ns_sslvpn_process_sso_conn: user john.doe@example.com clientip 1.2.3.7 request: /path ...`.
    Pattern {
        names: &["Message"],
        re: r"sso_conn: user (\S+) clientip ([0-9A-Fa-f.:]+[0-9A-Fa-f])",
        fields: &[("user.name", Kind::Str), ("client.ip", Kind::Str)],
    },
    Pattern { names: &["Message"], re: r"sso_conn: .*? request: (/\S*)", fields: &[("url.original", Kind::Str)] },
    Pattern {
        names: &["REQ_WRITE_ERROR", "RESP_WRITE_ERROR"],
        re: r"Failed to write (\S+) (?:request|response) header",
        fields: &[("citrix_adc.log.header", Kind::Str)],
    },
];

/// The free-text fields of `name`'s body, by [`PATTERNS`].
fn free_text<'a>(name: &str, body: &'a str, out: &mut Fields<'a>) {
    static COMPILED: std::sync::LazyLock<Vec<regex::Regex>> = std::sync::LazyLock::new(|| {
        PATTERNS.iter().map(|p| regex::Regex::new(p.re).expect("the patterns are fixed and tested")).collect()
    });
    for (pattern, re) in PATTERNS.iter().zip(COMPILED.iter()) {
        if !pattern.names.contains(&name) {
            continue;
        }
        let Some(captures) = re.captures(body) else { continue };
        let groups = captures.iter().skip(1).flatten().map(|m| m.as_str()).collect::<Vec<_>>();
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
                Kind::Outcome => match value.to_ascii_lowercase().as_str() {
                    "allow" | "allowed" | "accepted" | "success" => out.keyword(field, "success"),
                    "deny" | "denied" | "rejected" | "failure" => out.keyword(field, "failure"),
                    _ => {}
                },
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

/// The ECS (or `citrix_adc.log.*`) field a body key fills, and how its value is read.
enum Target {
    Str(&'static str),
    Int(&'static str),
    /// `ip[:port]` into an ip field and a port field.
    Address(&'static str, &'static str),
    Time(&'static str),
    Duration,
    Context,
    UserDomain,
    Groups,
    /// `TLSv1.2` kept as written, and split into `tls.version_protocol` / `tls.version`.
    TlsVersion(&'static str),
    /// `0.00%` as a number.
    Percent(&'static str),
    /// A URL, kept as written and taken apart into `url.*`.
    Url(&'static str),
    /// Milliseconds since the epoch, `1617123456789(ms)`.
    EpochMillis(&'static str),
    /// `Alert: High`: the key is the alert's type, the value its level.
    Alert,
    /// `X-Forwarded-For_ip 175.16.199.1, 81.2.69.194`: the original client, when it is an address.
    ForwardedFor,
}

fn key_field(key: &str) -> Option<Target> {
    use Target::*;
    let key = key.to_ascii_lowercase();
    Some(match key.as_str() {
        "context" => Context,
        "sessionid" | "session_id" | "sessid" => Str("citrix_adc.log.session_id"),
        "user" | "user name" | "username" | "user_name" => Str("user.name"),
        "username:domainname" | "username:domain_name" => UserDomain,
        "client_ip" | "clientip" | "client ip" => Address("client.ip", "client.port"),
        "clientport" | "client_port" => Int("client.port"),
        "remote_ip" | "remote ip" => Address("source.ip", "source.port"),
        "nat_ip" | "natip" => Address("citrix_adc.log.nat.ip", "citrix_adc.log.nat.port"),
        "vserver" => Address("citrix_adc.log.vserver.ip", "citrix_adc.log.vserver.port"),
        "vserverserviceip" | "vserver_ip" => Str("citrix_adc.log.vserver.ip"),
        "x-forwarded-for_ip" | "x-forwarded-for" => ForwardedFor,
        "vserverserviceport" => Int("citrix_adc.log.vserver.port"),
        "source" | "source_ip" | "srcip" => Address("source.ip", "source.port"),
        "source_port" | "srcport" => Int("source.port"),
        "destination" | "destination_ip" | "dstip" => Address("destination.ip", "destination.port"),
        "destination_port" | "dstport" => Int("destination.port"),
        "start_time" | "start time" | "starttime" => Time("citrix_adc.log.start_time"),
        "end_time" | "end time" | "endtime" => Time("citrix_adc.log.end_time"),
        "delink time" | "delink_time" => Time("citrix_adc.log.delink_time"),
        "timestamp" => Time("citrix_adc.log.timestamp"),
        "duration" => Duration,
        "total_bytes_send" => Int("citrix_adc.log.total_bytes_send"),
        "total_bytes_recv" => Int("citrix_adc.log.total_bytes_received"),
        "total_compressedbytes_send" => Int("citrix_adc.log.total_compressed_bytes_send"),
        // Elastic's spelling, which its dashboards query.
        "total_compressedbytes_recv" => Int("citrix_adc.log.total_compressed_bytes_recieved"),
        "compression_ratio_send" => Percent("citrix_adc.log.compression_ratio_send"),
        "compression_ratio_recv" => Percent("citrix_adc.log.compression_ratio_recieved"),
        "http_resources_accessed" => Str("citrix_adc.log.http_resources_accessed"),
        "nonhttp_services_accessed" => Str("citrix_adc.log.non_http_services_accessed"),
        "total_tcp_connections" => Int("citrix_adc.log.total_tcp_connections"),
        "total_udp_flows" => Int("citrix_adc.log.total_udp_flows"),
        "total_policies_allowed" => Int("citrix_adc.log.total_policies_allowed"),
        "total_policies_denied" => Int("citrix_adc.log.total_policies_denied"),
        "logoutmethod" | "logout_method" => Str("citrix_adc.log.logout_method"),
        "browser_type" | "browser" => Str("user_agent.original"),
        "sslvpn_client_type" => Str("citrix_adc.log.sslvpn_client_type"),
        "group(s)" | "groups" | "extracted_groups" => Groups,
        "failure_reason" => Str("event.reason"),
        "adm_user" => Str("citrix_adc.log.adm_user"),
        "status" => Str("citrix_adc.log.status"),
        "spcbid" => Str("citrix_adc.log.spcb_id"),
        "clientversion" => TlsVersion("citrix_adc.log.client_version"),
        "ciphersuite" => Str("tls.cipher"),
        "serialnumber" => Str("citrix_adc.log.serial_number"),
        "signaturealgorithm" => Str("citrix_adc.log.signature_algorithm"),
        "validfrom" => Time("citrix_adc.log.valid_from"),
        "validto" => Time("citrix_adc.log.valid_to"),
        "session" => Str("citrix_adc.log.session"),
        "issuername" | "issuer name" => Str("citrix_adc.log.issuer_name"),
        "subjectname" | "subject name" => Str("citrix_adc.log.subject_name"),
        "handshakeerrorcode" => Str("citrix_adc.log.handshake_error_code"),
        "reason" => Str("citrix_adc.log.reason"),
        "closure reason" => Str("citrix_adc.log.closure_reason"),
        "failure reason" => Str("citrix_adc.log.failure_reason"),
        "device" => Str("citrix_adc.log.device"),
        "monitor" => Str("citrix_adc.log.monitor"),
        "state" => Str("citrix_adc.log.state"),
        "protocol" => Str("citrix_adc.log.protocol"),
        "transport" => Str("citrix_adc.log.transport"),
        "method" => Str("citrix_adc.log.method"),
        "infomsg" => Str("citrix_adc.log.infomsg"),
        "domain" => Str("citrix_adc.log.domain"),
        "domain_name" => Str("citrix_adc.log.domain_name"),
        "icapserver" => Address("citrix_adc.log.icap_server.ip", "citrix_adc.log.icap_server.port"),
        "originserver" => Address("citrix_adc.log.origin_server.ip", "citrix_adc.log.origin_server.port"),
        "sslrelayaddress" => Address("citrix_adc.log.ssl_relay.address", "citrix_adc.log.ssl_relay.port"),
        "response" => Int("citrix_adc.log.response.code"),
        "bytessent" => Int("citrix_adc.log.bytes.sent"),
        "bytesreceived" => Int("citrix_adc.log.bytes.received"),
        "requestbytessent" => Int("citrix_adc.log.request.bytes_sent"),
        "responsebytessent" => Int("citrix_adc.log.response.bytes_sent"),
        "url" => Url("citrix_adc.log.url"),
        "html_url" => Url("citrix_adc.log.html_url"),
        "rewritten_url" => Url("citrix_adc.log.rewritten_url"),
        "matched_url" => Url("citrix_adc.log.matched_url"),
        "categorygroup" => Str("citrix_adc.log.category_group"),
        "policyaction" => Str("citrix_adc.log.policy_action"),
        "reputation" => Int("citrix_adc.log.reputation"),
        "natted_ip" => Address("citrix_adc.log.natted.ip", "citrix_adc.log.natted.port"),
        "natted_port" => Int("citrix_adc.log.natted.port"),
        "caller_user_name" => Str("citrix_adc.log.caller.user_name"),
        "callee_user_name" => Str("citrix_adc.log.callee.user_name"),
        "caller_domain_name" => Str("citrix_adc.log.caller.domain_name"),
        "callee_domain_name" => Str("citrix_adc.log.callee.domain_name"),
        "server_name" => Str("citrix_adc.log.server.name"),
        "total_bytes_wire_send" => Str("citrix_adc.log.total_bytes_wire_send"),
        "total_bytes_wire_recv" => Str("citrix_adc.log.total_bytes_wire_recieved"),
        "alert" => Alert,
        "client_security_check" => Str("citrix_adc.log.client_security_check_status"),
        "xdatalen" => Int("citrix_adc.log.data_length"),
        "xdata" => Str("citrix_adc.log.data"),
        "ldapscope" => Str("citrix_adc.log.ldap_scope"),
        "hitcount" => Int("citrix_adc.log.hit.count"),
        "time stamp" => EpochMillis("citrix_adc.log.timestamp"),
        "client" => Address("client.ip", "client.port"),
        "nsica_session_client_ip" => Str("citrix_adc.log.nsica_session.client.ip"),
        "nsica_session_client_port" => Int("citrix_adc.log.nsica_session.client.port"),
        "nsica_session_server_ip" => Str("citrix_adc.log.nsica_session.server.ip"),
        "nsica_session_server_port" => Int("citrix_adc.log.nsica_session.server.port"),
        "clientside_rxbytes" => Int("citrix_adc.log.clientside.rxbytes"),
        "clientside_txbytes" => Int("citrix_adc.log.clientside.txbytes"),
        "customername" => Str("citrix_adc.log.customer_name"),
        "connectionid" => Str("citrix_adc.log.connection_id"),
        "applicationname" => Str("citrix_adc.log.application_name"),
        "access" => Str("citrix_adc.log.access"),
        "handshaketime" => Str("citrix_adc.log.handshake_time"),
        "hit_rule" | "hit rule" => Str("citrix_adc.log.hit.rule"),
        "data_length" | "data length" => Int("citrix_adc.log.data_length"),
        "data_type" | "data type" => Str("citrix_adc.log.data_type"),
        "acl_action" | "action" => Str("citrix_adc.log.action"),
        "denied_by_policy" => Str("citrix_adc.log.policy_violation"),
        "backend spcbid" => Str("citrix_adc.log.spcb_id"),
        "serverip" | "server_ip" => Address("citrix_adc.log.server.ip", "citrix_adc.log.server.port"),
        "serverport" | "server_port" => Int("citrix_adc.log.server.port"),
        "protocolversion" => TlsVersion("citrix_adc.log.protocol_version"),
        _ => return None,
    })
}

/// Known keys of two words (or with an embedded space), checked before the one-word rule.
const TWO_WORD_KEYS: &[&str] = &[
    "Start Time",
    "End Time",
    "Delink Time",
    "User Name",
    "Client ip",
    "Remote ip",
    "Hit Rule",
    "Backend SPCBId",
    "Issuer Name",
    "Subject Name",
    "Closure Reason",
    "Failure Reason",
    "Time Stamp",
    "Certificate Key Pair",
    "Days To Expire",
    "PCRE error code",
];

fn apply<'a>(key: &'a str, value: &'a str, device: Device, out: &mut Fields<'a>, extra: &mut Vec<(&'a str, &'a str)>) {
    let value = unquote(value.trim());
    let before = out.0.len();
    let lower = key.to_ascii_lowercase();
    let value = if lower == "handshaketime" { value.trim_end_matches("ms").trim_end() } else { value };
    match key_field(key) {
        Some(Target::Str(name)) => out.str(name, value),
        Some(Target::Int(name)) => {
            if value.trim().parse::<i64>().is_ok() {
                out.int(name, value);
            } else {
                out.str(name, value);
            }
        }
        Some(Target::Address(ip, port)) => {
            let before = out.0.len();
            out.address(ip, port, value);
            if out.0.len() == before && !value.is_empty() {
                // Not an address (sanitised `a.b.c.d`, `"Mapped Ip"`): keep it, unmapped.
                extra.push((key, value));
            }
        }
        Some(Target::Time(name)) => match parse_body_time(value, device) {
            Some(t) => out.time(name, t),
            None => extra.push((key, value)),
        },
        Some(Target::Duration) => match fields::duration_nanos(value) {
            Some(n) => {
                out.number("event.duration", n);
                out.str("citrix_adc.log.duration", value);
            }
            None => extra.push((key, value)),
        },
        Some(Target::Context) => match value.rsplit_once('@') {
            Some((user, ip)) => {
                out.str("citrix_adc.log.context.user.name", user);
                // The session's user names the event (as in Elastic's pipeline); a record's own `User`
                // is kept as citrix_adc.log.user.
                out.str("user.name", user);
                out.address("citrix_adc.log.context.client.ip", "citrix_adc.log.context.client.port", ip);
            }
            None => out.str("citrix_adc.log.context.user.name", value),
        },
        Some(Target::UserDomain) => match value.split_once(':') {
            Some((user, domain)) => {
                // An ICA record's `username:domainname` names the event rather than the session's login
                // (the Context, kept as citrix_adc.log.user), as in Elastic's pipeline.
                if let Some(login) = out.get("citrix_adc.log.context.user.name").cloned() {
                    for f in out.0.iter_mut().filter(|f| f.name == "user.name" && f.value == login) {
                        f.value = Value::Str(user.trim());
                    }
                    out.0.push(fields::Field { name: "citrix_adc.log.user", value: login });
                }
                out.str("user.name", user);
                out.str("user.domain", domain);
            }
            None => out.str("user.name", value),
        },
        Some(Target::Groups) => {
            out.str("citrix_adc.log.groups", value);
            let groups: Vec<&str> = value.split(',').map(str::trim).filter(|g| !g.is_empty() && *g != "N/A").collect();
            out.list("user.group.name", groups);
        }
        Some(Target::TlsVersion(name)) => {
            out.str(name, value);
            if let Some(v) = value.strip_prefix("TLSv").or_else(|| value.strip_prefix("TLS")) {
                out.keyword("tls.version_protocol", "tls");
                out.str("tls.version", v);
            } else if let Some(v) = value.strip_prefix("SSLv") {
                out.keyword("tls.version_protocol", "ssl");
                out.str("tls.version", v);
            }
        }
        Some(Target::Url(name)) => {
            out.str(name, value);
            url_fields(value, out);
        }
        Some(Target::EpochMillis(name)) => {
            let millis = value.trim_end_matches("(ms)").trim().parse::<i64>().ok();
            match millis.and_then(chrono::DateTime::from_timestamp_millis) {
                Some(t) => out.time(name, t),
                None => extra.push((key, value)),
            }
        }
        Some(Target::ForwardedFor) => {
            let first = value.split(',').next().unwrap_or_default().trim();
            if fields::is_ip(first) {
                out.str("citrix_adc.log.x_forwarded_for_ip", first);
                out.str("network.forwarded_ip", first);
            } else if !value.is_empty() {
                extra.push((key, value));
            }
        }
        Some(Target::Alert) => {
            out.str("citrix_adc.log.alert_type", key);
            out.str("citrix_adc.log.alert_level", value);
        }
        Some(Target::Percent(name)) => match value.trim_end_matches('%').trim().parse::<f64>() {
            Ok(n) => out.float(name, n),
            Err(_) => extra.push((key, value)),
        },
        None if value.is_empty() => {}
        None => extra.push((key, value)),
    }
    for (from, to) in elastic_copies(&lower) {
        let copy = out.0[before..].iter().find(|f| f.name == *from).map(|f| f.value.clone());
        if let Some(value) = copy {
            out.0.push(fields::Field { name: to, value });
        }
    }
    // `Start_time "07/09/2024:20:44:03 GMT"`: Elastic keeps the zone name next to the time.
    if value.ends_with("GMT") {
        let zone = match key_field(key) {
            Some(Target::Time("citrix_adc.log.start_time")) => Some("citrix_adc.log.start_time_timezone"),
            Some(Target::Time("citrix_adc.log.end_time")) => Some("citrix_adc.log.end_time_timezone"),
            Some(Target::Time("citrix_adc.log.delink_time")) => Some("citrix_adc.log.delink_timezone"),
            _ => None,
        };
        if let (Some(zone), true) = (zone, out.0.len() > before) {
            out.keyword(zone, "GMT");
        }
    }
}

/// The copies Elastic's `citrix_adc` integration keeps of a body key's value (its dashboards and rules
/// query both): `(field set by the key, copy)`.
fn elastic_copies(key: &str) -> &'static [(&'static str, &'static str)] {
    match key {
        "source" | "source_ip" | "srcip" => {
            &[("source.ip", "citrix_adc.log.source.ip"), ("source.port", "citrix_adc.log.source.port")]
        }
        "destination" | "destination_ip" | "dstip" => &[
            ("destination.ip", "citrix_adc.log.destination.ip"),
            ("destination.port", "citrix_adc.log.destination.port"),
        ],
        "source_port" | "srcport" => &[("source.port", "citrix_adc.log.source.port")],
        "destination_port" | "dstport" => &[("destination.port", "citrix_adc.log.destination.port")],
        "client_ip" | "clientip" | "client ip" | "client" => &[("client.ip", "citrix_adc.log.client_ip")],
        "clientport" | "client_port" => &[("client.port", "citrix_adc.log.client_port")],
        "remote_ip" | "remote ip" => &[("source.ip", "citrix_adc.log.remote_ip")],
        "user" => &[("user.name", "citrix_adc.log.user")],
        "user name" | "username" | "user_name" => &[("user.name", "citrix_adc.log.username")],
        "username:domainname" | "username:domain_name" => &[
            ("user.name", "citrix_adc.log.user"),
            ("user.name", "citrix_adc.log.username"),
            ("user.domain", "citrix_adc.log.domain_name"),
        ],
        "domain" => &[("citrix_adc.log.domain", "user.domain")],
        "domain_name" => &[("citrix_adc.log.domain_name", "user.domain")],
        "serverip" | "server_ip" => {
            &[("citrix_adc.log.server.ip", "server.ip"), ("citrix_adc.log.server.port", "server.port")]
        }
        "serverport" | "server_port" => &[("citrix_adc.log.server.port", "server.port")],
        "icapserver" => {
            &[("citrix_adc.log.icap_server.ip", "server.ip"), ("citrix_adc.log.icap_server.port", "server.port")]
        }
        "originserver" => {
            &[("citrix_adc.log.origin_server.ip", "server.ip"), ("citrix_adc.log.origin_server.port", "server.port")]
        }
        "response" => &[("citrix_adc.log.response.code", "http.response.status_code")],
        "bytessent" => &[("citrix_adc.log.bytes.sent", "source.bytes")],
        "bytesreceived" => &[("citrix_adc.log.bytes.received", "destination.bytes")],
        "method" => &[("citrix_adc.log.method", "http.request.method")],
        "natted_ip" => &[
            ("citrix_adc.log.natted.ip", "destination.nat.ip"),
            ("citrix_adc.log.natted.port", "destination.nat.port"),
        ],
        "natted_port" => &[("citrix_adc.log.natted.port", "destination.nat.port")],
        "caller_user_name" => &[("citrix_adc.log.caller.user_name", "source.user.name")],
        "callee_user_name" => &[("citrix_adc.log.callee.user_name", "destination.user.name")],
        "caller_domain_name" => &[("citrix_adc.log.caller.domain_name", "source.user.domain")],
        "callee_domain_name" => &[("citrix_adc.log.callee.domain_name", "destination.user.domain")],
        "reason" => &[("citrix_adc.log.reason", "event.reason")],
        "closure reason" => &[("citrix_adc.log.closure_reason", "event.reason")],
        "failure reason" => &[("citrix_adc.log.failure_reason", "event.reason")],
        "hit_rule" | "hit rule" => &[("citrix_adc.log.hit.rule", "rule.name")],
        "denied_by_policy" => &[("citrix_adc.log.policy_violation", "rule.name")],
        "issuername" | "issuer name" => &[("citrix_adc.log.issuer_name", "tls.client.issuer")],
        "subjectname" | "subject name" => &[("citrix_adc.log.subject_name", "tls.client.subject")],
        "browser_type" => &[("user_agent.original", "citrix_adc.log.browser_type")],
        "nsica_session_client_ip" => &[("citrix_adc.log.nsica_session.client.ip", "source.ip")],
        "nsica_session_client_port" => &[("citrix_adc.log.nsica_session.client.port", "source.port")],
        "nsica_session_server_ip" => &[("citrix_adc.log.nsica_session.server.ip", "destination.ip")],
        "nsica_session_server_port" => &[("citrix_adc.log.nsica_session.server.port", "destination.port")],
        "clientside_rxbytes" => &[("citrix_adc.log.clientside.rxbytes", "destination.bytes")],
        "clientside_txbytes" => &[("citrix_adc.log.clientside.txbytes", "source.bytes")],
        "vserver" => &[("citrix_adc.log.vserver.ip", "server.ip"), ("citrix_adc.log.vserver.port", "server.port")],
        "vserverserviceip" | "vserver_ip" => &[("citrix_adc.log.vserver.ip", "server.ip")],
        "vserverserviceport" => &[("citrix_adc.log.vserver.port", "server.port")],
        "nat_ip" | "natip" => {
            &[("citrix_adc.log.nat.ip", "source.nat.ip"), ("citrix_adc.log.nat.port", "source.nat.port")]
        }
        "total_bytes_send" => &[("citrix_adc.log.total_bytes_send", "source.bytes")],
        "total_bytes_recv" => &[("citrix_adc.log.total_bytes_received", "destination.bytes")],
        "failure_reason" => &[("event.reason", "citrix_adc.log.failure_reason")],
        "browser" => &[("user_agent.original", "citrix_adc.log.browser")],
        "ciphersuite" => &[("tls.cipher", "citrix_adc.log.cipher_suite")],
        _ => &[],
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    // `\"TimedOut\"`: quotes a relay escaped once too often.
    if s.len() >= 4 && s.starts_with("\\\"") && s.ends_with("\\\"") {
        return &s[2..s.len() - 2];
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// A body time: `MM/DD/YYYY:HH:MM:SS[ ZONE]` (also `...:SSGMT`, and day-first when the appliance's date
/// order says so) or RFC 3339. Without a zone it is the appliance's local time, as its header's is.
fn parse_body_time(value: &str, device: Device) -> Option<chrono::DateTime<chrono::Utc>> {
    let value = value.trim();
    let (value, zone) = match value.rsplit_once(' ').and_then(|(t, z)| Some((t.trim_end(), time_zone(z)?))) {
        Some((t, zone)) => (t, Some(zone)),
        None => match value.strip_suffix("GMT") {
            Some(t) => (t.trim_end(), Some(BodyZone::Fixed(chrono::FixedOffset::east_opt(0)?))),
            None => (value, None),
        },
    };
    // RFC 3339 says its own offset (also `2023-04-01T12:00:00Z GMT`).
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let t = time::netscaler_datetime(value, device.date_order)
        .or_else(|| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .or_else(|| chrono::NaiveDateTime::parse_from_str(value, "%b %e %H:%M:%S %Y").ok())?;
    Some(match zone {
        Some(BodyZone::Fixed(offset)) => (t - offset).and_utc(),
        Some(BodyZone::Named(tz)) => super::appliance::local_to_utc(t, tz),
        None => super::appliance::local_to_utc(t, device.timezone),
    })
}

/// The zone written after a body time.
enum BodyZone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

/// `GMT`, `UTC`, `Z`, `+02:00`, `+0200`, an IANA name, or a North American abbreviation (`PST` reads
/// as Los Angeles time on that date, as Java's and Elastic's date parsers read it).
fn time_zone(zone: &str) -> Option<BodyZone> {
    let named = |name: &str| name.parse::<chrono_tz::Tz>().ok().map(BodyZone::Named);
    match zone {
        "GMT" | "UTC" | "UT" | "Z" => chrono::FixedOffset::east_opt(0).map(BodyZone::Fixed),
        "PST" | "PDT" => named("America/Los_Angeles"),
        "MST" | "MDT" => named("America/Denver"),
        "CST" | "CDT" => named("America/Chicago"),
        "EST" | "EDT" => named("America/New_York"),
        _ if zone.starts_with(['+', '-']) => {
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seconds = digits[..2].parse::<i32>().ok()? * 3600 + digits[2..].parse::<i32>().ok()? * 60;
            let seconds = if zone.starts_with('-') { -seconds } else { seconds };
            chrono::FixedOffset::east_opt(seconds).map(BodyZone::Fixed)
        }
        _ if zone.contains('/') => named(zone),
        _ => None,
    }
}

/// Splits a body at ` - ` (and ` --> `) outside double quotes.
fn segments(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b' ' if !quoted => {
                for sep in [&b" - "[..], &b" --> "[..], &b" :- "[..]] {
                    if bytes[i..].starts_with(sep) {
                        out.push(&body[start..i]);
                        start = i + sep.len();
                        i = start - 1;
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&body[start..]);
    out
}

/// `[TECHSUPPORT][ENUMERATION] rest` → the tags, and `rest`.
fn split_tags(s: &str) -> (Vec<&str>, &str) {
    let mut tags = Vec::new();
    let mut rest = s.trim_start();
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) if !inner[..end].contains(' ') || inner[..end].contains('=') => {
                tags.push(&inner[..end]);
                rest = inner[end + 1..].trim_start();
            }
            _ => break,
        }
    }
    (tags, rest)
}

/// The generic `Key value - Key value` reader.
pub fn key_values<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) {
    let (tags, body) = split_tags(body);
    if let Some(uuid) = tags.iter().find_map(|t| t.strip_prefix("ICAUUID=")) {
        out.str("citrix_adc.log.ica_uuid", uuid);
    }
    out.list("tags", tags);
    // `... - Session_ID: session123 -`: a dangling separator ends some bodies.
    let body = body.trim_end().strip_suffix(" -").unwrap_or(body).trim_end();
    let mut extra: Vec<(&'a str, &'a str)> = Vec::new();
    let mut queue: Vec<&'a str> = segments(body);
    queue.reverse();
    while let Some(segment) = queue.pop() {
        let segment = segment.trim();
        if segment.is_empty() || segment == "-" {
            continue;
        }
        let segment = segment.strip_prefix("- ").unwrap_or(segment);
        // `SessionId: 1234 - [TECHSUPPORT] User u`: a tag in front of a pair.
        let segment = if segment.starts_with('[') { split_tags(segment).1 } else { segment };
        let (key, value) = split_key(segment);
        // `SERVER_AUTHENTICATED -SerialNumber "..."`: a flag, then a pair whose ` - ` lost a space.
        if let Some(rest) = value.strip_prefix('-') {
            if key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                if key.contains("AUTHENTICATED") {
                    out.str("citrix_adc.log.server_authentication", key);
                }
                queue.push(rest);
                continue;
            }
        }
        let value = match glued(key, value) {
            Some((first, rest)) => {
                queue.push(rest);
                first
            }
            None => value,
        };
        // `Delink Time 07/07/2024:19:25:29  Total_bytes_send 963`: a time whose ` - ` went missing.
        let value = match (key_field(key), value.split_once("  ")) {
            (Some(Target::Time(_)), Some((time, rest)))
                if !rest.trim().is_empty() && !rest.trim().starts_with("GMT") && !value.starts_with('"') =>
            {
                queue.push(rest);
                time
            }
            _ => value,
        };
        // `SessionId: 651173- User x`: a value glued to the next pair by a missing space.
        let value = match value.split_once("- ") {
            Some((first, rest)) if !first.contains(' ') && !first.starts_with('"') && !rest.is_empty() => {
                queue.push(rest);
                first
            }
            _ => value,
        };
        apply(key, value, device, out, &mut extra);
    }
    if !extra.is_empty() {
        out.0.push(fields::Field { name: "citrix_adc.log.fields", value: Value::Pairs(extra) });
    }
    fill_defaults(out);
}

/// A value that runs into the next pair because its separator went missing: `1.128.0.0:80 User: x`
/// (after an address), `"NA"Session New` (after a quoted value), `15 Action: ALLOW` (a known key
/// followed by a colon), `2023-04-01T12:00:00Z GMT Total_bytes_send 1` (after a zone). Returns the
/// value and the rest.
fn glued<'a>(key: &str, value: &'a str) -> Option<(&'a str, &'a str)> {
    let target = key_field(key);
    if let Some(inner) = value.strip_prefix('"') {
        let close = inner.find('"')?;
        let rest = &inner[close + 1..];
        return (!rest.trim().is_empty()).then(|| (&value[..close + 2], rest.trim()));
    }
    if matches!(target, Some(Target::Address(..))) {
        if let Some((first, rest)) = value.split_once(' ') {
            if !rest.trim().is_empty() {
                return Some((first, rest.trim()));
            }
        }
    }
    if matches!(target, Some(Target::Time(_))) {
        if let Some(i) = value.find(" GMT ") {
            return Some((&value[..i + 4], value[i + 5..].trim()));
        }
    }
    let mut at = 0;
    for token in value.split(' ') {
        if at > 0 {
            if let Some(name) = token.strip_suffix(':') {
                if key_field(name).is_some() {
                    return Some((value[..at].trim_end(), &value[at..]));
                }
            }
        }
        at += token.len() + 1;
    }
    None
}

/// Fields implied by others when the body did not name them: the user of `Context user@ip`, and the
/// client address as `source.ip` (so rules on `source.ip` see SSLVPN logins too).
fn fill_defaults<'a>(out: &mut Fields<'a>) {
    if !out.has("user.name") {
        let user: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("citrix_adc.log.context.user.name", Value::Str(user)) => Some(*user),
            _ => None,
        });
        if let Some(user) = user {
            out.str("user.name", user);
        }
    }
    // The session's user and client, as Elastic copies them from the `Context`, when the body has no
    // `Client_ip` / `username` of its own.
    for (context, copy) in [
        ("citrix_adc.log.context.client.ip", "citrix_adc.log.client_ip"),
        ("citrix_adc.log.context.user.name", "citrix_adc.log.username"),
    ] {
        if !out.has(copy) {
            let value: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
                (name, Value::Str(v)) if name == context => Some(*v),
                _ => None,
            });
            if let Some(value) = value {
                out.str(copy, value);
            }
        }
    }
    // The session's client, when no `Client_ip` named it.
    if !out.has("client.ip") {
        let context: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("citrix_adc.log.context.client.ip", Value::Str(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = context {
            out.str("client.ip", ip);
        }
    }
    if !out.has("source.ip") {
        let client: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
            ("client.ip", Value::Str(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = client {
            out.str("source.ip", ip);
        }
    }
    // A login written as a mail address is also the user's address and domain.
    let user: Option<&'a str> = out.0.iter().find_map(|f| match (f.name, &f.value) {
        ("user.name", Value::Str(u)) => Some(*u),
        _ => None,
    });
    if let Some((local, domain)) = user.and_then(|u| u.split_once('@')) {
        if !local.is_empty() && domain.contains('.') && !domain.contains('@') {
            out.str("user.email", user.unwrap_or_default());
            if !out.has("user.domain") {
                out.str("user.domain", domain);
            }
        }
    }
}

fn split_key(segment: &str) -> (&str, &str) {
    for key in TWO_WORD_KEYS {
        if segment.len() > key.len() && segment.as_bytes()[..key.len()].eq_ignore_ascii_case(key.as_bytes()) {
            let rest = &segment[key.len()..];
            if rest.starts_with([' ', ':']) {
                return (&segment[..key.len()], rest.trim_start_matches(':').trim());
            }
        }
    }
    if let Some((key, value)) = segment.split_once(':') {
        if !key.is_empty() && !key.contains(' ') && !key.contains('/') && value.starts_with(' ') && key.len() <= 40 {
            return (key, value.trim());
        }
        // `username:domainname value`
        if let Some((k, v)) = segment.split_once(' ') {
            if k.contains(':') && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_') {
                return (k, v.trim());
            }
        }
    }
    match segment.split_once(' ') {
        Some((key, value)) => (key, value.trim()),
        None => (segment, ""),
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

/// `Context c - SessionId: n - host User u : Group(s) g : Vserver ip:port - date GMT [: SSO is ON] : METHOD url - -`
fn http_request<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) -> Coverage {
    let (tags, body) = split_tags(body);
    out.list("tags", tags);
    let mut rest = body;
    if let Some(after) = rest.strip_prefix("Context ") {
        // `Context u@1.2.3.4 - SessionId: ...`, also `Context u@1.2.3.4- SessionId: ...`.
        let end = [" - ", "- SessionId"].iter().filter_map(|sep| after.find(sep)).min();
        let (context, after) = match end {
            Some(i) => (&after[..i], after[i..].trim_start_matches([' ', '-'])),
            None => (after, ""),
        };
        apply("Context", context, device, out, &mut Vec::new());
        rest = after;
    }
    if let Some(after) = rest.strip_prefix("SessionId:") {
        let after = after.trim_start();
        let end = after.find(['-', ' ']).unwrap_or(after.len());
        out.str("citrix_adc.log.session_id", &after[..end]);
        rest = after[end..].trim_start_matches([' ', '-']);
    }
    if let Some(user_at) = rest.find("User ") {
        let host = rest[..user_at].trim();
        if !host.is_empty() {
            out.str("url.domain", host);
            out.str("citrix_adc.log.hostname", host);
        }
        let after = &rest[user_at + 5..];
        // The user ends at ` : ` (`User u : Group(s) ...`, also `User u: Group(s)`), or at ` - ` when the
        // rest is `Key value` pairs (a record carrying connection statistics).
        let colon = [" : ", ": Group(s)"].iter().filter_map(|sep| after.find(sep)).min();
        match (colon, after.find(" - ")) {
            (Some(c), dash) if dash.is_none_or(|d| c < d) => {
                apply("User", after[..c].trim(), device, out, &mut Vec::new());
                rest = after[c..].trim_start().trim_start_matches(':').trim_start();
            }
            (_, Some(dash)) => {
                apply("User", after[..dash].trim(), device, out, &mut Vec::new());
                key_values(&after[dash + 3..], device, out);
                rest = "";
            }
            (_, None) => {
                apply("User", after.trim(), device, out, &mut Vec::new());
                rest = "";
            }
        }
    }
    if let Some(after) = rest.strip_prefix("Group(s) ") {
        let (groups, after) = after.split_once(" : ").unwrap_or((after, ""));
        apply("Group(s)", groups, device, out, &mut Vec::new());
        rest = after;
    }
    if let Some(after) = rest.strip_prefix("Vserver ") {
        let (vserver, after) = after.split_once(" - ").unwrap_or((after, ""));
        apply("Vserver", vserver, device, out, &mut Vec::new());
        rest = after;
        // `07/07/2024:10:57:19 [GMT] : SSO is ON : ...`: when the request was made.
        let date = rest.split(" : ").next().unwrap_or_default();
        let (date, gmt) = match date.split_once(" GMT") {
            Some((d, _)) => (d, true),
            None => (date, false),
        };
        if let Some(at) = parse_body_time(date, device) {
            out.time("citrix_adc.log.timestamp", at);
            if gmt {
                out.keyword("citrix_adc.log.timezone", "GMT");
            }
        }
    }
    // What is left: `date GMT [: Message = SSO is ON] [: SSO is ON] : METHOD url - -` (colons optional).
    let request = rest.rsplit(" : ").next().unwrap_or(rest);
    for part in rest.split(" : ") {
        if let Some(sso) =
            part.trim().strip_prefix("Message = ").or(Some(part.trim())).filter(|p| p.starts_with("SSO is "))
        {
            out.str("citrix_adc.log.sso_status", sso.trim_start_matches("SSO is "));
        }
    }
    let request = request.trim().trim_end_matches("- -").trim();
    // Older firmware: `03/07/2013:02:00:06 GMT GET/hoho.js` in one part.
    let request = match request.find(" GMT ") {
        Some(i) => &request[i + 5..],
        None => request,
    };
    let method_len = request.bytes().take_while(|b| b.is_ascii_uppercase()).count();
    if (3..=7).contains(&method_len) {
        let method = &request[..method_len];
        out.str("http.request.method", method);
        out.str("citrix_adc.log.method", method);
        let url = request[method_len..].trim();
        if method == "CONNECT" {
            // `CONNECT host:port`: a tunnel target, not a path.
            out.str("url.original", url);
            out.str("citrix_adc.log.request.path", url);
            let (host, port) = fields::split_host_port(url);
            out.str("destination.domain", host);
            if let Some(port) = port {
                out.int("destination.port", port);
            }
        } else {
            let before = out.0.len();
            url_fields(url, out);
            if let Some(path) = out.0[before..].iter().find_map(|f| match (f.name, &f.value) {
                ("url.path", Value::Str(p)) => Some(*p),
                _ => None,
            }) {
                out.str("citrix_adc.log.request.path", path);
            }
        }
    }
    fill_defaults(out);
    Coverage::Known
}

/// `url.original`, and `url.path` / `url.query` split at `?`.
pub fn url_fields<'a>(url: &'a str, out: &mut Fields<'a>) {
    if url.is_empty() {
        return;
    }
    out.str("url.original", url);
    let path_and_query = match url.find("://") {
        Some(i) => {
            out.str("url.scheme", &url[..i]);
            let after = &url[i + 3..];
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let host = &after[..end];
            match host
                .rsplit_once(':')
                .filter(|(h, p)| !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                Some((domain, port)) => {
                    out.str("url.domain", domain);
                    out.int("url.port", port);
                }
                None => out.str("url.domain", host),
            }
            &after[end..]
        }
        None => url,
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    out.str("url.path", path);
    if let Some(extension) = path.rsplit('/').next().and_then(|name| name.rsplit_once('.')).map(|(_, e)| e) {
        if !extension.is_empty() && extension.len() <= 8 && extension.bytes().all(|b| b.is_ascii_alphanumeric()) {
            out.str("url.extension", extension);
        }
    }
    if let Some(q) = query {
        out.str("url.query", q);
    }
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
    let mut pairs = Vec::new();
    for item in split_varbinds(varbinds) {
        let Some((k, v)) = item.split_once(" = ").or_else(|| item.split_once('=')) else { continue };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if v.starts_with("CEF:") {
            cef::embedded(v, out);
        }
        pairs.push((k, v));
        let lower = k.to_ascii_lowercase();
        let value = v.trim_end_matches('%').parse::<f64>().ok();
        match (lower.as_str(), value) {
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
        }
    }
    if !pairs.is_empty() {
        out.0.push(fields::Field { name: "citrix_adc.log.snmp.varbinds", value: Value::Pairs(pairs) });
    }
    Coverage::Known
}

/// Splits `a = 1, b = "x, y", c = 2` at commas outside quotes.
fn split_varbinds(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
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
    out.retain(|p| !p.is_empty());
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
    use super::*;

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
