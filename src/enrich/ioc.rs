//! Indicators of compromise: the index built from every feed, and the look-ups an event makes.
//!
//! Look-up cost does not grow with the number of indicators: addresses and CIDRs sit in one hash map
//! per prefix length (at most 33 / 129 probes, longest prefix first), domains, URLs, hashes and file
//! names in hash maps, user-agent substrings in one Aho-Corasick automaton, and every regex of a kind
//! in one `RegexSet`. The index is immutable; `enrich` swaps a new one in when a feed changes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Compiled size one URL or user-agent pattern may take.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Compiled size one feed's URL (or user-agent) patterns may take together.
pub const PATTERN_SET_SIZE_LIMIT: usize = 32 << 20;

/// One indicator pattern, within [`PATTERN_SIZE_LIMIT`].
pub fn pattern(value: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(value).size_limit(PATTERN_SIZE_LIMIT).dfa_size_limit(PATTERN_SIZE_LIMIT).build()
}

/// A feed's patterns as one set, within [`PATTERN_SET_SIZE_LIMIT`].
pub fn pattern_set<S: AsRef<str>>(values: &[S]) -> Result<RegexSet, regex::Error> {
    RegexSetBuilder::new(values).size_limit(PATTERN_SET_SIZE_LIMIT).dfa_size_limit(PATTERN_SET_SIZE_LIMIT).build()
}

/// What an indicator matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ipv4,
    Ipv6,
    Cidr,
    Domain,
    Url,
    UrlPattern,
    UserAgent,
    UserAgentPattern,
    Md5,
    Sha1,
    Sha256,
    FilePath,
    FileName,
}

impl Kind {
    /// The name used in CSV feeds and in output (`threat.enrichments.indicator.type` carries the ECS one).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Cidr => "cidr",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::UrlPattern => "url_pattern",
            Kind::UserAgent => "user_agent",
            Kind::UserAgentPattern => "user_agent_pattern",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::FilePath => "file_path",
            Kind::FileName => "file_name",
        }
    }

    /// ECS `threat.indicator.type`.
    pub fn ecs_type(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4-addr",
            Kind::Ipv6 => "ipv6-addr",
            Kind::Cidr => "ipv4-addr",
            Kind::Domain => "domain-name",
            Kind::Url | Kind::UrlPattern => "url",
            Kind::UserAgent | Kind::UserAgentPattern => "software",
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 | Kind::FilePath | Kind::FileName => "file",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "ipv4" | "ipv4-addr" => Kind::Ipv4,
            "ipv6" | "ipv6-addr" => Kind::Ipv6,
            "cidr" | "ip-range" | "network" => Kind::Cidr,
            "domain" | "domain-name" | "hostname" | "fqdn" => Kind::Domain,
            "url" | "uri" => Kind::Url,
            "url_pattern" | "url-pattern" | "url_regex" | "path_regex" => Kind::UrlPattern,
            "user_agent" | "user-agent" | "useragent" => Kind::UserAgent,
            "user_agent_pattern" | "user_agent_regex" | "user-agent-regex" => Kind::UserAgentPattern,
            "md5" => Kind::Md5,
            "sha1" => Kind::Sha1,
            "sha256" => Kind::Sha256,
            "file_path" | "filepath" | "file-path" => Kind::FilePath,
            "file_name" | "filename" | "file-name" => Kind::FileName,
            _ => return None,
        })
    }
}

/// What a feed says about an indicator besides its value. Rows of a feed usually share it (same
/// source, confidence, tags), so loaders intern it: one allocation per distinct description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    pub provider: Option<Box<str>>,
    pub confidence: Option<Box<str>>,
    pub first_seen: Option<Box<str>>,
    pub last_seen: Option<Box<str>>,
    pub expires: Option<DateTime<Utc>>,
    pub tags: Box<[Box<str>]>,
    pub description: Option<Box<str>>,
}

/// One indicator as a feed states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    pub kind: Kind,
    /// As written in the feed.
    pub value: Box<str>,
    pub meta: Arc<Meta>,
}

impl Indicator {
    pub fn new(kind: Kind, value: &str, meta: Arc<Meta>) -> Indicator {
        Indicator { kind, value: value.trim().into(), meta }
    }
}

/// The indicators of one feed, as last loaded.
#[derive(Debug, Default)]
pub struct FeedIndicators {
    pub name: Arc<str>,
    pub indicators: Vec<Indicator>,
}

/// Why an indicator could not be indexed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndicatorError {
    #[error("{kind} indicator {value:?} is not valid: {reason}")]
    Invalid { kind: &'static str, value: String, reason: String },
    #[error("feed {feed:?}: its {count} patterns do not fit in one regex set and never match: {reason}")]
    PatternSet { feed: String, count: usize, reason: String },
}

fn invalid(kind: Kind, value: &str, reason: impl ToString) -> IndicatorError {
    IndicatorError::Invalid { kind: kind.name(), value: value.to_owned(), reason: reason.to_string() }
}

/// A URL in the form indicators and events are compared in: scheme and host lower-cased, default
/// ports and a trailing `/` on an empty path dropped, fragment dropped. Borrowed when already so.
pub fn normalize_url(url: &str) -> Cow<'_, str> {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else { return Cow::Borrowed(url) };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut host = authority.rsplit('@').next().unwrap_or(authority);
    for (s, port) in [("http", ":80"), ("https", ":443"), ("ftp", ":21")] {
        if scheme.eq_ignore_ascii_case(s) {
            host = host.strip_suffix(port).unwrap_or(host);
        }
    }
    let lower = |s: &str| !s.bytes().any(|b| b.is_ascii_uppercase());
    if path != "/" && host.len() == authority.len() && lower(scheme) && lower(host) {
        return Cow::Borrowed(url);
    }
    let path = if path == "/" { "" } else { path };
    Cow::Owned(format!("{}://{}{path}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// A domain without surrounding space and trailing dots, lower-cased. Borrowed when already so.
fn normalize_domain(domain: &str) -> Cow<'_, str> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(domain.to_ascii_lowercase())
    } else {
        Cow::Borrowed(domain)
    }
}

/// A CIDR, or an address as its own /32 or /128 network.
fn parse_net(value: &str) -> Option<IpNet> {
    value.parse::<IpNet>().ok().or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The network of `ip` with a prefix of `len` bits, as the index keys it.
fn network_v4(ip: Ipv4Addr, len: u8) -> u32 {
    Ipv4Net::new(ip, len).map_or(0, |net| u32::from(net.network()))
}

fn network_v6(ip: Ipv6Addr, len: u8) -> u128 {
    Ipv6Net::new(ip, len).map_or(0, |net| u128::from(net.network()))
}

/// No further indicator under the same key.
const END: u32 = u32::MAX;

fn key_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The immutable look-up structure over every loaded indicator.
///
/// Indicators are numbered densely across feeds; each map holds the first id under a key and
/// `next[id]` chains the others (the same value in several feeds), so a key costs no allocation.
/// String keys are 64-bit hashes of the normalised value; a hit is confirmed against the value.
#[derive(Default)]
pub struct IocIndex {
    feeds: Vec<Arc<FeedIndicators>>,
    /// First global id of each feed.
    offsets: Vec<u32>,
    next: Vec<u32>,
    /// (prefix length, masked address → first id), longest prefix first.
    v4: Vec<(u8, HashMap<u32, u32>)>,
    v6: Vec<(u8, HashMap<u128, u32>)>,
    domains: HashMap<u64, u32>,
    urls: HashMap<u64, u32>,
    hashes: HashMap<u64, u32>,
    file_paths: HashMap<u64, u32>,
    file_names: HashMap<u64, u32>,
    /// One set per feed: a feed's patterns are checked against the size limits on their own
    /// (`feeds::load`), so feeds together can never exceed them.
    url_patterns: Vec<(RegexSet, Vec<u32>)>,
    agent_patterns: Vec<(RegexSet, Vec<u32>)>,
    agent_substrings: Option<(AhoCorasick, Vec<u32>)>,
}

fn chain<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, next: &mut [u32], key: K, id: u32) {
    let first = map.entry(key).or_insert(END);
    next[id as usize] = *first;
    *first = id;
}

/// One indicator hit on one event field.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'i> {
    pub indicator: &'i Indicator,
    pub feed: &'i str,
    pub field: &'static str,
    /// The event's value that matched.
    pub atomic: String,
}

/// An index being built: the per-kind tables, and the current feed's patterns (a set per feed).
#[derive(Default)]
struct Builder {
    index: IocIndex,
    errors: Vec<IndicatorError>,
    v4: HashMap<u8, HashMap<u32, u32>>,
    v6: HashMap<u8, HashMap<u128, u32>>,
    url_patterns: (Vec<String>, Vec<u32>),
    agent_patterns: (Vec<String>, Vec<u32>),
    agent_substrings: (Vec<String>, Vec<u32>),
}

impl Builder {
    /// Indexes indicator `id`.
    fn add(&mut self, indicator: &Indicator, id: u32) -> Result<(), IndicatorError> {
        let value = &*indicator.value;
        let kind = indicator.kind;
        let index = &mut self.index;
        let next = &mut index.next;
        match kind {
            Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => match parse_net(value) {
                Some(IpNet::V4(net)) => {
                    chain(self.v4.entry(net.prefix_len()).or_default(), next, u32::from(net.network()), id)
                }
                Some(IpNet::V6(net)) => {
                    chain(self.v6.entry(net.prefix_len()).or_default(), next, u128::from(net.network()), id)
                }
                None => return Err(invalid(kind, value, "not an address or CIDR")),
            },
            Kind::Domain => {
                let domain = normalize_domain(value);
                if domain.is_empty() || domain.contains(['/', ' ']) {
                    return Err(invalid(kind, value, "not a domain name"));
                }
                chain(&mut index.domains, next, key_hash(&domain), id);
            }
            Kind::Url => chain(&mut index.urls, next, key_hash(&normalize_url(value)), id),
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
                let want = match kind {
                    Kind::Md5 => 32,
                    Kind::Sha1 => 40,
                    _ => 64,
                };
                if value.len() != want || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(kind, value, format!("expected {want} hex digits")));
                }
                chain(&mut index.hashes, next, key_hash(&value.to_ascii_lowercase()), id);
            }
            Kind::FilePath => chain(&mut index.file_paths, next, key_hash(value), id),
            Kind::FileName => chain(&mut index.file_names, next, key_hash(value), id),
            Kind::UrlPattern | Kind::UserAgentPattern => {
                pattern(value).map_err(|e| invalid(kind, value, e))?;
                let target = if kind == Kind::UrlPattern { &mut self.url_patterns } else { &mut self.agent_patterns };
                target.0.push(value.to_owned());
                target.1.push(id);
            }
            Kind::UserAgent => {
                if value.is_empty() {
                    return Err(invalid(kind, value, "empty"));
                }
                self.agent_substrings.0.push(value.to_owned());
                self.agent_substrings.1.push(id);
            }
        }
        Ok(())
    }

    /// Compiles the feed's URL and user-agent patterns into one set each.
    fn close_feed(&mut self, feed: &str) {
        let index = &mut self.index;
        for (patterns, sets) in
            [(&mut self.url_patterns, &mut index.url_patterns), (&mut self.agent_patterns, &mut index.agent_patterns)]
        {
            let (values, ids) = (std::mem::take(&mut patterns.0), std::mem::take(&mut patterns.1));
            if values.is_empty() {
                continue;
            }
            match pattern_set(&values) {
                Ok(set) => sets.push((set, ids)),
                // `feeds::load` refuses such a feed; a feed built by other means loses only its patterns.
                Err(e) => self.errors.push(IndicatorError::PatternSet {
                    feed: feed.to_string(),
                    count: values.len(),
                    reason: e.to_string(),
                }),
            }
        }
    }

    fn finish(self, feeds: Vec<Arc<FeedIndicators>>) -> (IocIndex, Vec<IndicatorError>) {
        let Builder { mut index, errors, v4, v6, agent_substrings, .. } = self;
        index.feeds = feeds;
        index.v4 = v4.into_iter().collect();
        index.v4.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        index.v6 = v6.into_iter().collect();
        index.v6.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        if !agent_substrings.0.is_empty() {
            let automaton = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&agent_substrings.0)
                .expect("non-empty literal patterns always build");
            index.agent_substrings = Some((automaton, agent_substrings.1));
        }
        (index, errors)
    }
}

impl IocIndex {
    /// Builds the index over the feeds. Invalid indicators are returned and never match; the rest do.
    pub fn build(feeds: Vec<Arc<FeedIndicators>>) -> (IocIndex, Vec<IndicatorError>) {
        let total: usize = feeds.iter().map(|f| f.indicators.len()).sum();
        let mut builder =
            Builder { index: IocIndex { next: vec![END; total], ..IocIndex::default() }, ..Builder::default() };
        let mut id = 0u32;
        for feed in &feeds {
            builder.index.offsets.push(id);
            for indicator in &feed.indicators {
                if let Err(e) = builder.add(indicator, id) {
                    builder.errors.push(e);
                }
                id += 1;
            }
            builder.close_feed(&feed.name);
        }
        builder.finish(feeds)
    }

    /// The feed and indicator behind a global id.
    fn get(&self, id: u32) -> (&str, &Indicator) {
        let feed = self.offsets.partition_point(|o| *o <= id) - 1;
        let f = &self.feeds[feed];
        (&f.name, &f.indicators[(id - self.offsets[feed]) as usize])
    }

    pub fn len(&self) -> usize {
        self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Reports `id` and every id chained after it, if `confirm` accepts the indicator's value.
    fn push_chain<'i>(
        &'i self,
        first: u32,
        field: &'static str,
        atomic: &str,
        now: DateTime<Utc>,
        confirm: impl Fn(&Indicator) -> bool,
        out: &mut Vec<Hit<'i>>,
    ) {
        // Chains are built newest-first; report in feed order.
        let mut ids = Vec::with_capacity(2);
        let mut id = first;
        while id != END {
            ids.push(id);
            id = self.next[id as usize];
        }
        for id in ids.into_iter().rev() {
            let (feed, indicator) = self.get(id);
            if !confirm(indicator) || indicator.meta.expires.is_some_and(|e| e <= now) {
                continue;
            }
            if out.iter().any(|h| std::ptr::eq(h.indicator, indicator) && h.field == field) {
                continue;
            }
            out.push(Hit { indicator, feed, field, atomic: atomic.to_owned() });
        }
    }

    fn push<'i>(&'i self, ids: &[u32], field: &'static str, atomic: &str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        for id in ids {
            let (feed, indicator) = self.get(*id);
            if indicator.meta.expires.is_some_and(|e| e <= now) {
                continue;
            }
            if out.iter().any(|h| std::ptr::eq(h.indicator, indicator) && h.field == field) {
                continue;
            }
            out.push(Hit { indicator, feed, field, atomic: atomic.to_owned() });
        }
    }

    /// The most specific address or network indicators containing `ip`.
    pub fn match_ip<'i>(&'i self, ip: IpAddr, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        // The address as written in a hit, only when there is one.
        let original = ip;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (len, map) in &self.v4 {
                    if let Some(first) = map.get(&network_v4(v4, *len)) {
                        self.push_chain(*first, field, &original.to_string(), now, |_| true, out);
                        return;
                    }
                }
            }
            IpAddr::V6(v6) => {
                for (len, map) in &self.v6 {
                    if let Some(first) = map.get(&network_v6(v6, *len)) {
                        self.push_chain(*first, field, &original.to_string(), now, |_| true, out);
                        return;
                    }
                }
            }
        }
    }

    /// `evil.example` matches `evil.example` and every sub-domain of it.
    pub fn match_domain<'i>(&'i self, domain: &str, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        if self.domains.is_empty() {
            return;
        }
        let domain = normalize_domain(domain);
        let mut rest = &*domain;
        loop {
            if let Some(first) = self.domains.get(&key_hash(rest)) {
                self.push_chain(*first, field, &domain, now, |i| normalize_domain(&i.value) == rest, out);
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => break,
            }
        }
    }

    pub fn match_url<'i>(&'i self, url: &str, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        let normalized = normalize_url(url);
        if let Some(first) = self.urls.get(&key_hash(&normalized)) {
            self.push_chain(*first, field, url, now, |i| normalize_url(&i.value) == normalized, out);
        }
    }

    /// URL path regexes, on a raw or normalised path.
    pub fn match_url_path<'i>(&'i self, path: &str, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        for (set, ids) in &self.url_patterns {
            for i in set.matches(path).iter() {
                self.push(&ids[i..=i], field, path, now, out);
            }
        }
    }

    pub fn match_user_agent<'i>(
        &'i self,
        agent: &str,
        field: &'static str,
        now: DateTime<Utc>,
        out: &mut Vec<Hit<'i>>,
    ) {
        if let Some((automaton, ids)) = &self.agent_substrings {
            for m in automaton.find_overlapping_iter(agent) {
                let i = m.pattern().as_usize();
                self.push(&ids[i..=i], field, agent, now, out);
            }
        }
        for (set, ids) in &self.agent_patterns {
            for i in set.matches(agent).iter() {
                self.push(&ids[i..=i], field, agent, now, out);
            }
        }
    }

    pub fn match_hash<'i>(&'i self, hash: &str, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        if let Some(first) = self.hashes.get(&key_hash(&hash.to_ascii_lowercase())) {
            self.push_chain(*first, field, hash, now, |i| i.value.eq_ignore_ascii_case(hash), out);
        }
    }

    /// A full path matches path indicators; its last component matches file-name indicators.
    pub fn match_file<'i>(&'i self, path: &str, field: &'static str, now: DateTime<Utc>, out: &mut Vec<Hit<'i>>) {
        if let Some(first) = self.file_paths.get(&key_hash(path)) {
            self.push_chain(*first, field, path, now, |i| &*i.value == path, out);
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if let Some(first) = self.file_names.get(&key_hash(name)) {
            self.push_chain(*first, field, name, now, |i| &*i.value == name, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feeds(items: &[(Kind, &str, &str)]) -> Vec<Arc<FeedIndicators>> {
        let mut out: Vec<FeedIndicators> = Vec::new();
        for (kind, value, feed) in items {
            if out.last().is_none_or(|f| &*f.name != *feed) {
                out.push(FeedIndicators { name: (*feed).into(), indicators: vec![] });
            }
            out.last_mut().unwrap().indicators.push(Indicator::new(*kind, value, Arc::default()));
        }
        out.into_iter().map(Arc::new).collect()
    }

    fn now() -> DateTime<Utc> {
        "2020-01-15T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_duplicates_report_both_feeds() {
        let (index, errors) = IocIndex::build(feeds(&[
            (Kind::Cidr, "185.178.0.0/16", "a"),
            (Kind::Cidr, "185.178.45.0/24", "a"),
            (Kind::Ipv4, "185.178.45.221", "a"),
            (Kind::Ipv4, "185.178.45.221", "b"),
            (Kind::Cidr, "2001:db8::/32", "c"),
        ]));
        assert!(errors.is_empty());
        let mut hits = Vec::new();
        index.match_ip("185.178.45.221".parse().unwrap(), "source.ip", now(), &mut hits);
        let mut names: Vec<&str> = hits.iter().map(|h| h.feed).collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert!(hits.iter().all(|h| &*h.indicator.value == "185.178.45.221"));
        hits.clear();
        index.match_ip("185.178.45.1".parse().unwrap(), "source.ip", now(), &mut hits);
        assert_eq!(&*hits[0].indicator.value, "185.178.45.0/24");
        hits.clear();
        index.match_ip("2001:db8::5".parse().unwrap(), "source.ip", now(), &mut hits);
        assert_eq!(hits.len(), 1);
        hits.clear();
        index.match_ip("8.8.8.8".parse().unwrap(), "source.ip", now(), &mut hits);
        assert!(hits.is_empty());
    }

    #[test]
    fn domains_urls_agents_hashes_files() {
        let (index, errors) = IocIndex::build(feeds(&[
            (Kind::Domain, "Evil.example", "f"),
            (Kind::Url, "HTTP://Evil.example:80/ci.sh", "f"),
            (Kind::UrlPattern, r"/vpns?/\.\./vpns/", "f"),
            (Kind::UserAgent, "python-requests", "f"),
            (Kind::UserAgentPattern, r"^curl/7\.6\d", "f"),
            (Kind::Md5, "64D4C2D3EE56AF4F4CA8171556D50FAA", "f"),
            (Kind::FilePath, "/tmp/.init/httpd", "f"),
            (Kind::FileName, "netscalerd", "f"),
            (Kind::Sha256, "abc", "f"),
            (Kind::UrlPattern, "(", "f"),
        ]));
        assert_eq!(errors.len(), 2, "{errors:?}");
        let mut hits = Vec::new();
        index.match_domain("a.b.EVIL.example.", "url.domain", now(), &mut hits);
        index.match_domain("notevil.example", "url.domain", now(), &mut hits);
        assert_eq!(hits.len(), 1);
        index.match_url("http://evil.example/ci.sh", "url.original", now(), &mut hits);
        index.match_url_path("/vpn/../vpns/portal/scripts/newbm.pl", "url.path", now(), &mut hits);
        index.match_user_agent("Python-Requests/2.18.4", "user_agent.original", now(), &mut hits);
        index.match_user_agent("curl/7.67.0", "user_agent.original", now(), &mut hits);
        index.match_hash("64d4c2d3ee56af4f4ca8171556d50faa", "file.hash.md5", now(), &mut hits);
        index.match_file("/tmp/.init/httpd", "process.executable", now(), &mut hits);
        index.match_file("/var/tmp/netscalerd", "process.executable", now(), &mut hits);
        let kinds: Vec<Kind> = hits.iter().map(|h| h.indicator.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Domain,
                Kind::Url,
                Kind::UrlPattern,
                Kind::UserAgent,
                Kind::UserAgentPattern,
                Kind::Md5,
                Kind::FilePath,
                Kind::FileName
            ]
        );
    }

    #[test]
    fn expired_indicators_do_not_match() {
        let meta = Meta { expires: Some("2020-01-01T00:00:00Z".parse().unwrap()), ..Meta::default() };
        let expired = Indicator::new(Kind::Ipv4, "1.2.3.4", Arc::new(meta));
        let (index, _) =
            IocIndex::build(vec![Arc::new(FeedIndicators { name: "f".into(), indicators: vec![expired] })]);
        let mut hits = Vec::new();
        index.match_ip("1.2.3.4".parse().unwrap(), "source.ip", now(), &mut hits);
        assert!(hits.is_empty());
        index.match_ip("1.2.3.4".parse().unwrap(), "source.ip", "2019-12-31T00:00:00Z".parse().unwrap(), &mut hits);
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn url_normalisation() {
        assert_eq!(normalize_url("HTTPS://Host.Example:443/A?b=1#frag"), "https://host.example/A?b=1");
        assert_eq!(normalize_url("http://user@h:8080/"), "http://h:8080");
    }

    /// Normalising by rebuilding every URL, as it was before a normal URL was borrowed.
    fn rebuilt(url: &str) -> String {
        let url = url.trim();
        let url = url.split('#').next().unwrap_or(url);
        let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
        let scheme = scheme.to_ascii_lowercase();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut host = authority.rsplit('@').next().unwrap_or(authority).to_ascii_lowercase();
        for (s, port) in [("http", ":80"), ("https", ":443"), ("ftp", ":21")] {
            if scheme == s && host.ends_with(port) {
                host.truncate(host.len() - port.len());
            }
        }
        let path = if path == "/" { "" } else { path };
        format!("{scheme}://{host}{path}")
    }

    #[test]
    fn a_normal_url_or_domain_is_borrowed_and_every_url_normalises_as_when_rebuilt() {
        let urls = [
            "https://host.example/a?b=1",
            "https://host.example/",
            "https://host.example",
            "HTTPS://host.example/a",
            "https://Host.example/a",
            "https://host.example:443/a",
            "http://host.example:80",
            "ftp://h:21/x",
            "http://h:8080/x#frag",
            "http://u:p@h/x",
            "  http://h/x  ",
            "no-scheme/path",
            "http://h?q=/",
            "http://h:443/",
            "https://h:80/",
        ];
        for url in urls {
            assert_eq!(normalize_url(url), rebuilt(url), "{url:?}");
        }
        assert!(matches!(normalize_url("https://host.example/a?b=1"), Cow::Borrowed(_)));
        assert!(matches!(normalize_domain("evil.example."), Cow::Borrowed("evil.example")));
        assert_eq!(normalize_domain(" Evil.Example "), "evil.example");
    }
}
