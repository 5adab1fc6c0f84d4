//! Feeds: indicator files → [`Indicator`]s. CSV (`type,value[,source,confidence,first_seen,last_seen,
//! expires,tags]`), STIX 2.1 bundles (indicator objects with simple comparison patterns) and MISP JSON
//! event exports (attributes, also inside objects); any of them gzip-compressed (`.gz`).
//!
//! Every feed is bounded before it can hurt the service: its (decompressed) size by
//! `enrich.ioc.max_feed_bytes`, so a gzip bomb is refused after that many bytes, and its URL and
//! user-agent patterns by the regex size limits of [`super::ioc`]. A feed over either is refused as a
//! whole with an error naming it, and the service keeps the feed's previous version.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ioc::{Indicator, Kind, Meta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Stix,
    Misp,
}

/// What loading a feed produced: the indicators, and what was skipped (with reasons, counted).
#[derive(Debug, Default)]
pub struct Loaded {
    pub indicators: Vec<Indicator>,
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed {feed:?} ({path}): {reason}")]
    Broken { feed: String, path: String, reason: FeedProblem },
}

/// Why a feed as a whole is refused (a row that is not an indicator is skipped instead).
#[derive(Debug, thiserror::Error)]
pub enum FeedProblem {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{what} than enrich.ioc.max_feed_bytes ({max} bytes); refused")]
    TooLarge { what: &'static str, max: u64 },
    #[error("its {count} {kind} indicators exceed the regex size limit: {source}")]
    Patterns { count: usize, kind: &'static str, source: regex::Error },
    #[error("{0}")]
    Csv(#[from] csv::Error),
    #[error("row {row}: {source}")]
    CsvRow { row: usize, source: csv::Error },
    #[error("header must name at least `type` and `value` columns, found {0:?}")]
    CsvHeader(Vec<String>),
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a STIX bundle (type \"bundle\" with \"objects\")")]
    NotStix,
    #[error("not a MISP event export (no \"Event\")")]
    NotMisp,
}

/// Why a STIX indicator's pattern is not a simple indicator (it is skipped).
#[derive(Debug, thiserror::Error)]
enum PatternProblem {
    #[error("not an equality: {0:?}")]
    NotEquality(String),
    #[error("operator other than '=' in {0:?}")]
    Operator(String),
    #[error("value is not a quoted string: {0:?}")]
    Unquoted(String),
    #[error("unsupported object path {0:?}")]
    UnsupportedPath(String),
    #[error("not a single [observation]")]
    NotSingle,
    #[error("compound pattern")]
    Compound,
}

fn broken(feed: &str, path: &Path, reason: FeedProblem) -> FeedError {
    FeedError::Broken { feed: feed.to_owned(), path: path.display().to_string(), reason }
}

/// Reads and parses one feed file of at most `max_bytes` (decompressed).
pub fn load(name: &str, path: &Path, format: Format, max_bytes: u64) -> Result<Loaded, FeedError> {
    let bytes = read_bounded(path, max_bytes).map_err(|e| broken(name, path, e))?;
    parse(format, &bytes).map_err(|e| broken(name, path, e))
}

/// Parses a feed's (decompressed) bytes; `Err` says why the feed as a whole is refused.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Loaded, FeedProblem> {
    let mut sink = Sink::default();
    match format {
        Format::Csv => csv(&mut sink, bytes),
        Format::Stix => stix(&mut sink, bytes),
        Format::Misp => misp(&mut sink, bytes),
    }?;
    check_patterns(&sink.loaded.indicators)?;
    Ok(sink.loaded)
}

/// The file's bytes, gunzipped when it ends in `.gz`; more than `max` bytes is an error, found after
/// reading at most `max + 1` of them.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, FeedProblem> {
    let file = std::fs::File::open(path)?;
    let gzip = path.extension().is_some_and(|e| e == "gz");
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut bytes = Vec::new();
    reader.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        let what = if gzip { "decompresses to more" } else { "is larger" };
        return Err(FeedProblem::TooLarge { what, max });
    }
    Ok(bytes)
}

/// The feed's URL and user-agent patterns must fit the regex size limits as a set (patterns that do
/// not compile on their own are reported by the index and never match).
fn check_patterns(indicators: &[Indicator]) -> Result<(), FeedProblem> {
    for kind in [Kind::UrlPattern, Kind::UserAgentPattern] {
        let patterns: Vec<&str> = indicators
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| &*i.value)
            .filter(|p| super::ioc::pattern(p).is_ok())
            .collect();
        if !patterns.is_empty() {
            super::ioc::pattern_set(&patterns).map_err(|source| FeedProblem::Patterns {
                count: patterns.len(),
                kind: kind.name(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Collects indicators, sharing one `Meta` among all rows that describe themselves alike.
#[derive(Default)]
struct Sink {
    loaded: Loaded,
    metas: std::collections::HashMap<Arc<Meta>, ()>,
}

impl Sink {
    fn push(&mut self, kind: Kind, value: &str, meta: Meta) {
        let meta = Arc::new(meta);
        let meta = match self.metas.get_key_value(&meta) {
            Some((shared, _)) => shared.clone(),
            None => {
                self.metas.insert(meta.clone(), ());
                meta
            }
        };
        self.loaded.indicators.push(Indicator::new(kind, value, meta));
    }

    fn skip(&mut self, why: String) {
        self.loaded.skipped.push(why);
    }
}

fn boxed(value: Option<&str>) -> Option<Box<str>> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty()).map(Box::from)
}

/// RFC 3339, or a bare date (midnight UTC).
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
    })
}

/// `ip` (either family), and a CIDR written as a plain IP type.
fn kind_for(kind: Kind, value: &str) -> Kind {
    match kind {
        Kind::Ipv4 | Kind::Ipv6 if value.contains('/') => Kind::Cidr,
        other => other,
    }
}

fn csv(sink: &mut Sink, bytes: &[u8]) -> Result<(), FeedProblem> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).comment(Some(b'#')).from_reader(bytes);
    let headers: Vec<String> = reader.headers()?.iter().map(|h| h.to_ascii_lowercase()).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(type_col), Some(value_col)) = (col("type"), col("value")) else {
        return Err(FeedProblem::CsvHeader(headers));
    };
    let (source, confidence, first_seen, last_seen, expires, tags) =
        (col("source"), col("confidence"), col("first_seen"), col("last_seen"), col("expires"), col("tags"));
    let mut record = csv::StringRecord::new();
    let mut row = 1;
    while reader.read_record(&mut record).map_err(|source| FeedProblem::CsvRow { row: row + 1, source })? {
        row += 1;
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let (Some(kind), Some(value)) = (get(Some(type_col)), get(Some(value_col))) else {
            sink.skip(format!("row {row}: empty type or value"));
            continue;
        };
        let Some(kind) = Kind::from_name(kind).or_else(|| (kind == "ip").then_some(Kind::Ipv4)) else {
            sink.skip(format!("row {row}: unknown type {kind:?}"));
            continue;
        };
        let kind = if kind == Kind::Ipv4 && value.contains(':') { Kind::Ipv6 } else { kind };
        let mut meta = Meta {
            provider: boxed(get(source)),
            confidence: boxed(get(confidence)),
            first_seen: boxed(get(first_seen)),
            last_seen: boxed(get(last_seen)),
            ..Meta::default()
        };
        if let Some(e) = get(expires) {
            match parse_time(e) {
                Some(t) => meta.expires = Some(t),
                None => {
                    sink.skip(format!("row {row}: expires {e:?} is not a date"));
                    continue;
                }
            }
        }
        meta.tags = get(tags)
            .map(|t| t.split(['|', ';']).map(str::trim).filter(|s| !s.is_empty()).map(Box::from).collect())
            .unwrap_or_default();
        sink.push(kind_for(kind, value), value, meta);
    }
    Ok(())
}

/// One `object:path = 'value'` comparison of a STIX pattern.
fn stix_comparison(comparison: &str) -> Result<(Kind, String), PatternProblem> {
    let (lhs, rhs) = comparison.split_once('=').ok_or_else(|| PatternProblem::NotEquality(comparison.into()))?;
    let (lhs, rhs) = (lhs.trim(), rhs.trim());
    if lhs.ends_with(['!', '<', '>']) {
        return Err(PatternProblem::Operator(comparison.into()));
    }
    let value = rhs
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(|| PatternProblem::Unquoted(rhs.into()))?
        .replace("\\'", "'")
        .replace("\\\\", "\\");
    let kind = match lhs {
        "ipv4-addr:value" => Kind::Ipv4,
        "ipv6-addr:value" => Kind::Ipv6,
        "domain-name:value" => Kind::Domain,
        "url:value" => Kind::Url,
        "file:name" => Kind::FileName,
        "file:parent_directory_ref.path" | "directory:path" => Kind::FilePath,
        "file:hashes.'SHA-256'" | "file:hashes.SHA256" | "file:hashes.'SHA256'" => Kind::Sha256,
        "file:hashes.'SHA-1'" | "file:hashes.SHA1" | "file:hashes.'SHA1'" => Kind::Sha1,
        "file:hashes.MD5" | "file:hashes.'MD5'" => Kind::Md5,
        "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'" => Kind::UserAgent,
        other => return Err(PatternProblem::UnsupportedPath(other.into())),
    };
    Ok((kind_for(kind, &value), value))
}

/// `[a = 'x']` or `[a = 'x' OR b = 'y']`; anything else (AND, several observations, qualifiers) is
/// not a simple indicator.
fn stix_pattern(pattern: &str) -> Result<Vec<(Kind, String)>, PatternProblem> {
    let inner = pattern.trim().strip_prefix('[').and_then(|p| p.strip_suffix(']')).ok_or(PatternProblem::NotSingle)?;
    if inner.contains(" AND ") || inner.contains("] ") || inner.contains(" FOLLOWEDBY ") {
        return Err(PatternProblem::Compound);
    }
    inner.split(" OR ").map(stix_comparison).collect()
}

fn stix(sink: &mut Sink, bytes: &[u8]) -> Result<(), FeedProblem> {
    let doc: Value = serde_json::from_slice(bytes)?;
    let objects = match (&doc["type"], &doc["objects"]) {
        (Value::String(t), Value::Array(objects)) if t == "bundle" => objects,
        _ => return Err(FeedProblem::NotStix),
    };
    for object in objects.iter().filter(|o| o["type"] == "indicator") {
        let id = object["id"].as_str().unwrap_or("?");
        if object["pattern_type"].as_str().is_some_and(|t| t != "stix") {
            sink.skip(format!("{id}: pattern_type {} is not stix", object["pattern_type"]));
            continue;
        }
        let Some(pattern) = object["pattern"].as_str() else {
            sink.skip(format!("{id}: no pattern"));
            continue;
        };
        match stix_pattern(pattern) {
            Ok(comparisons) => {
                for (kind, value) in comparisons {
                    let meta = Meta {
                        provider: boxed(object["created_by_ref"].as_str()),
                        confidence: object["confidence"].as_i64().map(|c| c.to_string().into()),
                        first_seen: boxed(object["valid_from"].as_str()),
                        last_seen: None,
                        expires: object["valid_until"].as_str().and_then(parse_time),
                        description: boxed(object["name"].as_str().or(object["description"].as_str())),
                        tags: object["labels"]
                            .as_array()
                            .map(|l| l.iter().filter_map(|t| t.as_str().map(Box::from)).collect())
                            .unwrap_or_default(),
                    };
                    sink.push(kind, &value, meta);
                }
            }
            Err(reason) => sink.skip(format!("{id}: {reason}: {pattern}")),
        }
    }
    Ok(())
}

/// A MISP attribute type → indicator kinds of its `|`-separated parts (`None` part: ignored).
fn misp_kinds(kind: &str) -> Option<Vec<Option<Kind>>> {
    let one = |k: Kind| Some(vec![Some(k)]);
    match kind {
        "ip-src" | "ip-dst" => one(Kind::Ipv4),
        "ip-src|port" | "ip-dst|port" => Some(vec![Some(Kind::Ipv4), None]),
        "domain" | "hostname" => one(Kind::Domain),
        "domain|ip" => Some(vec![Some(Kind::Domain), Some(Kind::Ipv4)]),
        "hostname|port" => Some(vec![Some(Kind::Domain), None]),
        "url" | "uri" | "link" => one(Kind::Url),
        "user-agent" => one(Kind::UserAgent),
        "md5" => one(Kind::Md5),
        "sha1" => one(Kind::Sha1),
        "sha256" => one(Kind::Sha256),
        "filename" => one(Kind::FileName),
        "filename|md5" => Some(vec![Some(Kind::FileName), Some(Kind::Md5)]),
        "filename|sha1" => Some(vec![Some(Kind::FileName), Some(Kind::Sha1)]),
        "filename|sha256" => Some(vec![Some(Kind::FileName), Some(Kind::Sha256)]),
        _ => None,
    }
}

fn misp(sink: &mut Sink, bytes: &[u8]) -> Result<(), FeedProblem> {
    let doc: Value = serde_json::from_slice(bytes)?;
    // `{"Event": ...}`, `{"response": [{"Event": ...}]}` or `[{"Event": ...}]`.
    let events: Vec<&Value> = match &doc {
        Value::Object(o) if o.contains_key("Event") => vec![&doc["Event"]],
        Value::Object(o) if o.contains_key("response") => {
            doc["response"].as_array().map(|a| a.iter().map(|e| &e["Event"]).collect()).unwrap_or_default()
        }
        Value::Array(a) => a.iter().map(|e| &e["Event"]).collect(),
        _ => return Err(FeedProblem::NotMisp),
    };
    for event in events {
        let info = event["info"].as_str();
        let provider = event["Orgc"]["name"].as_str().or(event["Org"]["name"].as_str());
        let mut attributes: Vec<&Value> = event["Attribute"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        for object in event["Object"].as_array().into_iter().flatten() {
            attributes.extend(object["Attribute"].as_array().into_iter().flatten());
        }
        for attribute in attributes {
            let (Some(kind), Some(value)) = (attribute["type"].as_str(), attribute["value"].as_str()) else { continue };
            let Some(kinds) = misp_kinds(kind) else {
                sink.skip(format!("attribute type {kind:?} is not an indicator type"));
                continue;
            };
            let parts: Vec<&str> = if kinds.len() > 1 { value.split('|').collect() } else { vec![value] };
            for (kind, part) in kinds.iter().zip(parts) {
                let Some(kind) = kind else { continue };
                let kind = if *kind == Kind::Ipv4 && part.contains(':') { Kind::Ipv6 } else { *kind };
                let meta = Meta {
                    provider: boxed(provider),
                    description: boxed(info),
                    first_seen: boxed(attribute["first_seen"].as_str()),
                    last_seen: boxed(attribute["last_seen"].as_str()),
                    tags: attribute["Tag"]
                        .as_array()
                        .map(|t| t.iter().filter_map(|t| t["name"].as_str().map(Box::from)).collect())
                        .unwrap_or_default(),
                    ..Meta::default()
                };
                sink.push(kind_for(kind, part), part, meta);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&mut Sink, &[u8]) -> Result<(), FeedProblem>, bytes: &[u8]) -> Result<Loaded, FeedProblem> {
        let mut sink = Sink::default();
        f(&mut sink, bytes)?;
        Ok(sink.loaded)
    }

    #[test]
    fn csv_columns_and_expiry() {
        let text = "type,value,source,confidence,first_seen,last_seen,expires,tags\n\
                    ipv4,185.178.45.221,CERT-X,high,2020-01-10,,2020-06-01,cve-2019-19781|miner\n\
                    ip,10.0.0.0/8,,,,,,\n\
                    sha256,ABCD,,,,,,\n\
                    weird,x,,,,,,\n\
                    url,http://x/ci.sh,,,,,not-a-date,\n";
        let loaded = run(csv, text.as_bytes()).unwrap();
        assert_eq!(loaded.indicators.len(), 3);
        let first = &loaded.indicators[0];
        assert_eq!(
            (first.kind, first.meta.provider.as_deref(), first.meta.confidence.as_deref()),
            (Kind::Ipv4, Some("CERT-X"), Some("high"))
        );
        assert_eq!(first.meta.expires, Some("2020-06-01T00:00:00Z".parse().unwrap()));
        assert_eq!(&*first.meta.tags, [Box::from("cve-2019-19781"), Box::from("miner")]);
        assert_eq!(loaded.indicators[1].kind, Kind::Cidr);
        assert_eq!(loaded.skipped.len(), 2, "{:?}", loaded.skipped);
        assert!(matches!(run(csv, b"indicator,kind\nx,y\n").unwrap_err(), FeedProblem::CsvHeader(_)));
    }

    #[test]
    fn stix_patterns() {
        let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[
            {"type":"indicator","id":"indicator--1","pattern_type":"stix","pattern":"[ipv4-addr:value = '62.113.112.33']","valid_from":"2020-01-10T00:00:00Z","valid_until":"2021-01-01T00:00:00Z","confidence":80,"labels":["malicious-activity"]},
            {"type":"indicator","id":"indicator--2","pattern":"[url:value = 'http://185.178.45.221/ci.sh' OR domain-name:value = 'evil.example']"},
            {"type":"indicator","id":"indicator--3","pattern":"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']"},
            {"type":"indicator","id":"indicator--4","pattern":"[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x']"},
            {"type":"indicator","id":"indicator--5","pattern":"[process:name = 'x']"},
            {"type":"malware","id":"malware--1","name":"NOTROBIN"}]}"#;
        let loaded = run(stix, bundle.as_bytes()).unwrap();
        let kinds: Vec<Kind> = loaded.indicators.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, [Kind::Ipv4, Kind::Url, Kind::Domain, Kind::Sha256]);
        assert_eq!(loaded.indicators[0].meta.confidence.as_deref(), Some("80"));
        assert_eq!(loaded.indicators[0].meta.expires, Some("2021-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(loaded.skipped.len(), 2, "{:?}", loaded.skipped);
        assert!(run(stix, b"{\"type\":\"x\"}").is_err());
    }

    #[test]
    fn misp_attributes_and_objects() {
        let export = r#"{"Event":{"info":"CVE-2019-19781 exploitation","Orgc":{"name":"CIRCL"},
            "Attribute":[{"type":"ip-dst","value":"95.179.163.186"},{"type":"ip-dst|port","value":"45.76.99.1|443"},
                         {"type":"comment","value":"x"},{"type":"hostname","value":"evil.example"}],
            "Object":[{"name":"file","Attribute":[{"type":"filename|md5","value":"httpd|64d4c2d3ee56af4f4ca8171556d50faa"}]}]}}"#;
        let loaded = run(misp, export.as_bytes()).unwrap();
        let got: Vec<(Kind, &str)> = loaded.indicators.iter().map(|i| (i.kind, &*i.value)).collect();
        assert_eq!(
            got,
            [
                (Kind::Ipv4, "95.179.163.186"),
                (Kind::Ipv4, "45.76.99.1"),
                (Kind::Domain, "evil.example"),
                (Kind::FileName, "httpd"),
                (Kind::Md5, "64d4c2d3ee56af4f4ca8171556d50faa")
            ]
        );
        assert_eq!(loaded.indicators[0].meta.provider.as_deref(), Some("CIRCL"));
        // Attributes described alike share one description.
        assert!(Arc::ptr_eq(&loaded.indicators[0].meta, &loaded.indicators[1].meta));
        assert_eq!(loaded.skipped.len(), 1);
    }
}
