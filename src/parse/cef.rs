//! CEF: `CEF:Version|Vendor|Product|Version|Class|Name|Severity|key=value ...` as NetScaler's AppFirewall
//! writes it (values with spaces, `\=` and `\\` escapes), standalone or embedded in an SNMP trap.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::body::url_fields;
use super::fields::{self, Fields, Value};
use crate::spare;

/// The seven header fields after `CEF:`, and the extension. `\|` escapes a pipe in the header.
pub fn split_header(s: &str) -> Option<([&str; 7], &str)> {
    let mut fields: [&str; 7] = [""; 7];
    let mut rest = s;
    for field in fields.iter_mut() {
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'|' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return None;
        }
        *field = &rest[..i];
        rest = &rest[i + 1..];
    }
    Some((fields, rest))
}

/// `key=value` pairs; a value runs to the space before the next unescaped `key=`.
pub fn pairs(ext: &str) -> SmallVec<[(&str, Cow<'_, str>); 16]> {
    let bytes = ext.as_bytes();
    // Starts of keys: after start or a space, a run of key characters ending in an unescaped '='.
    let mut keys: SmallVec<[(usize, usize); 16]> = SmallVec::new();
    let mut i = 0;
    while i < bytes.len() {
        if i == 0 || bytes[i - 1] == b' ' {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.') {
                j += 1;
            }
            if j > i && j < bytes.len() && bytes[j] == b'=' {
                keys.push((i, j));
                i = j + 1;
                continue;
            }
        }
        if bytes[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    let mut out = SmallVec::new();
    for (n, &(start, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map(|(next, _)| next - 1).unwrap_or(ext.len());
        let raw = ext[eq + 1..end.max(eq + 1)].trim_end();
        out.push((&ext[start..eq], unescape(raw)));
    }
    out
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut s = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => s.push('\n'),
                Some('r') => s.push('\r'),
                Some(other) => s.push(other),
                None => s.push('\\'),
            }
        } else {
            s.push(c);
        }
    }
    Cow::Owned(s)
}

/// [`url_fields`] for a URL that had escapes: the same fields, owned.
fn owned_url_fields(url: String, out: &mut Fields<'_>) {
    let mut borrowed = Fields::default();
    url_fields(&url, &mut borrowed);
    for field in std::mem::take(&mut borrowed.0) {
        if let Value::Str(v) = field.value {
            out.owned(field.name, v.to_owned());
        }
    }
}

/// The year NetScaler writes into `cs5` of its CEF records: their syslog header (`Jun 12 23:37:17`)
/// has none.
pub fn year(ext: &str) -> Option<i32> {
    let at = if ext.starts_with("cs5=") { 0 } else { ext.find(" cs5=")? + 1 };
    let value = &ext[at + 4..];
    let year = value.split(' ').next().unwrap_or_default();
    if year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()) {
        year.parse().ok()
    } else {
        None
    }
}

/// Maps a CEF extension onto ECS fields (the `citrix_adc` integration's names).
pub fn extension<'a>(ext: &'a str, out: &mut Fields<'a>) {
    let mut extra = spare::pairs();
    for (key, value) in pairs(ext) {
        let name = match key {
            "src" => "source.ip",
            "spt" => "source.port",
            "dst" => "destination.ip",
            "dpt" => "destination.port",
            "method" => "http.request.method",
            "msg" => "citrix_adc.log.msg",
            "act" => "citrix_adc.log.action",
            "cn1" => "citrix_adc.log.event_id",
            "cn2" => "citrix_adc.log.transaction_id",
            "cs1" => "citrix_adc.log.profile_name",
            "cs2" => "citrix_adc.log.ppe_id",
            "cs3" => "citrix_adc.log.session_id",
            "cs4" => "citrix_adc.log.severity",
            "cs5" => "citrix_adc.log.signature_year",
            "cs6" => "citrix_adc.log.signature_category",
            "suser" => "user.name",
            "geolocation" => "citrix_adc.log.geolocation",
            "request" => {
                match value {
                    Cow::Borrowed(url) => url_fields(url, out),
                    Cow::Owned(url) => owned_url_fields(url, out),
                }
                super::appliance::normalized_path(out);
                continue;
            }
            _ => {
                if let Cow::Borrowed(v) = value {
                    extra.push((key, v));
                }
                continue;
            }
        };
        match (name, value) {
            ("source.port" | "destination.port" | "citrix_adc.log.event_id", v) => out.int(name, &v),
            (_, Cow::Borrowed(v)) => out.str(name, v),
            (_, Cow::Owned(v)) => out.owned(name, v),
        }
    }
    if extra.is_empty() {
        spare::keep_pairs(extra);
    } else {
        out.0.push(fields::Field { name: "citrix_adc.log.fields", value: Value::Pairs(extra) });
    }
}

/// CEF inside another message (an SNMP `appfwLogMsg` varbind): header fields and extension.
pub fn embedded<'a>(text: &'a str, out: &mut Fields<'a>) {
    let Some(after) = text.strip_prefix("CEF:") else { return };
    match split_header(after) {
        Some(([_, _, _, _, class, name, severity], ext)) => {
            out.str("citrix_adc.log.cef.class", class);
            out.str("citrix_adc.log.cef.name", name);
            out.str("citrix_adc.log.cef.severity", severity);
            extension(ext, out);
        }
        // Traps cut long varbinds (`APPFW_POLI...`): keep what is there.
        None => out.str("citrix_adc.log.cef.truncated", after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_spaces_and_escapes() {
        let p = pairs(r"src=1.2.3.4 msg=Disallow Illegal URL. act=blocked x=a\=b c");
        assert_eq!(p[0], ("src", Cow::Borrowed("1.2.3.4")));
        assert_eq!(p[1], ("msg", Cow::Borrowed("Disallow Illegal URL.")));
        assert_eq!(p[2], ("act", Cow::Borrowed("blocked")));
        assert_eq!(p[3], ("x", Cow::Owned::<str>("a=b c".into())));
    }

    #[test]
    fn extension_to_ecs() {
        let mut f = Fields::default();
        extension(
            "src=175.16.199.1 spt=47606 method=GET request=http://h/FFC/login.html?a=1 msg=Bad cs1=pr_ffc act=blocked",
            &mut f,
        );
        assert_eq!(f.get_str("source.ip"), Some("175.16.199.1"));
        assert_eq!(f.get_int("source.port"), Some(47606));
        assert_eq!(f.get_str("url.path"), Some("/FFC/login.html"));
        assert_eq!(f.get_str("url.query"), Some("a=1"));
        assert_eq!(f.get_str("citrix_adc.log.profile_name"), Some("pr_ffc"));
        assert_eq!(f.get_str("citrix_adc.log.action"), Some("blocked"));
    }
}
