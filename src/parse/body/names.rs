//! Body keys → ECS fields: which field each key fills (`key_field`), the two-word keys, and the
//! fields Elastic's integration also fills from a key (`elastic_copies`).

/// The ECS (or `citrix_adc.log.*`) field a body key fills, and how its value is read.
pub(super) enum Target {
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

pub(super) fn key_field(key: &str) -> Option<Target> {
    crate::parse::fields::with_ascii_lower(key, lower_key_field)
}

/// [`key_field`] of a lower-case key.
fn lower_key_field(key: &str) -> Option<Target> {
    use Target::*;
    Some(match key {
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
pub(super) const TWO_WORD_KEYS: &[&str] = &[
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

/// The copies Elastic's `citrix_adc` integration keeps of a body key's value (its dashboards and rules
/// query both): `(field set by the key, copy)`.
pub(super) fn elastic_copies(key: &str) -> &'static [(&'static str, &'static str)] {
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
