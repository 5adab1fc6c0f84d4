//! HTTP request lines and URLs in bodies (AppFW, responder, access records).

use super::keys::{apply, fill_defaults, key_values, parse_body_time, split_tags};
use super::Coverage;
use crate::parse::fields::{self, Fields, Value};
use crate::parse::Device;

/// `Context c - SessionId: n - host User u : Group(s) g : Vserver ip:port - date GMT [: SSO is ON] : METHOD url - -`
pub(super) fn http_request<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) -> Coverage {
    let (tags, body) = split_tags(body);
    out.list("tags", &tags);
    let rest = preamble(body, device, out);
    request_line(rest, out);
    fill_defaults(out);
    Coverage::Known
}

/// `Context u@ip - SessionId: n - host User u : Group(s) g : Vserver ip:port - date GMT`, each part
/// optional: their fields; returns what follows.
fn preamble<'a>(body: &'a str, device: Device, out: &mut Fields<'a>) -> &'a str {
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
    rest
}

/// `[: Message = SSO is ON] [: SSO is ON] : METHOD url - -`: the SSO state, the method and the URL.
fn request_line<'a>(rest: &'a str, out: &mut Fields<'a>) {
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
