//! The table of message patterns by (feature, event name): which parser reads each body, and how far
//! it is covered.

/// How a captured piece of free text is stored.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    Int,
    Url,
    /// `Allow`/`accepted` (success) or `Deny`/`rejected` (failure), as `event.outcome`.
    Outcome,
}

/// Free-text bodies Elastic's integration takes apart with grok patterns: the event names, the
/// pattern, and the field of each capture group in order.
pub(super) struct Pattern {
    pub(super) names: &'static [&'static str],
    pub(super) re: &'static str,
    pub(super) fields: &'static [(&'static str, Kind)],
}

pub(super) const PATTERNS: &[Pattern] = &[
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
