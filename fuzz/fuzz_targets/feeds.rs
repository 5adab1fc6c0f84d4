//! Any bytes as an indicator feed in each format (first byte: CSV, STIX 2.1 or MISP): no panic; what
//! loads is indexed and matched without panicking, an address or hash that indexes matches its own
//! value, or the feed is refused with a reason.
#![no_main]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gatewatch::enrich::feeds::{parse, Format};
use gatewatch::enrich::ioc::{FeedIndicators, IocIndex, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else { return };
    let format = [Format::Csv, Format::Stix, Format::Misp][selector as usize % 3];
    let loaded = match parse(format, data) {
        Ok(loaded) => loaded,
        Err(reason) => {
            assert!(!reason.to_string().is_empty());
            return;
        }
    };
    let feed = Arc::new(FeedIndicators { name: "fuzz".into(), indicators: loaded.indicators });
    let (index, errors) = IocIndex::build(vec![feed.clone()]);
    // Far in the past: expiry never hides a hit.
    let now = Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).unwrap();
    let mut hits = Vec::new();
    for indicator in &feed.indicators {
        let invalid = errors.iter().any(|e| e.to_string().contains(&format!("{:?}", &*indicator.value)));
        let value = &*indicator.value;
        hits.clear();
        match indicator.kind {
            Kind::Domain => index.match_domain(value, "d", now, &mut hits),
            Kind::Url => index.match_url(value, "u", now, &mut hits),
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => index.match_hash(value, "h", now, &mut hits),
            Kind::Ipv4 | Kind::Ipv6 => {
                if let Ok(ip) = value.parse() {
                    index.match_ip(ip, "ip", now, &mut hits);
                }
            }
            _ => {
                index.match_url_path(value, "p", now, &mut hits);
                index.match_user_agent(value, "a", now, &mut hits);
                index.match_file(value, "f", now, &mut hits);
                continue;
            }
        }
        let plain_ip = matches!(indicator.kind, Kind::Ipv4 | Kind::Ipv6) && value.parse::<std::net::IpAddr>().is_ok();
        // Addresses and hashes have one spelling; domains and URLs are normalised, only exercised here.
        let checked = plain_ip || matches!(indicator.kind, Kind::Md5 | Kind::Sha1 | Kind::Sha256);
        if checked && !invalid && indicator.meta.expires.is_none_or(|e| e > now) {
            assert!(!hits.is_empty(), "indexed {:?} {value:?} does not match itself", indicator.kind);
        }
    }
});
