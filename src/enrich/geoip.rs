//! GeoIP: MaxMind City and ASN databases (memory-mapped), swapped atomically when the file changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use maxminddb::{geoip2, Mmap, Reader};
use serde_json::{json, Map, Value as Json};

use super::FileStamp;

/// Which database a file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    City,
    Asn,
}

impl DbKind {
    pub fn name(self) -> &'static str {
        match self {
            DbKind::City => "geoip-city",
            DbKind::Asn => "geoip-asn",
        }
    }

    fn accepts(self, database_type: &str) -> bool {
        match self {
            DbKind::City => database_type.contains("City"),
            DbKind::Asn => database_type.contains("ASN"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("{kind} database {path}: {reason}")]
    Open { kind: &'static str, path: String, reason: String },
}

/// One database file and the reader currently in use.
pub struct GeoDb {
    pub kind: DbKind,
    pub path: PathBuf,
    reader: ArcSwap<Reader<Mmap>>,
    stamp: std::sync::Mutex<FileStamp>,
}

fn open(kind: DbKind, path: &Path) -> Result<Reader<Mmap>, GeoError> {
    let error = |reason: String| GeoError::Open { kind: kind.name(), path: path.display().to_string(), reason };
    // SAFETY: the map is read-only and the file is replaced by rename (geoipupdate, the Helm init
    // container, `cp` to a temporary name + `mv`), which leaves the mapped inode untouched; writing into
    // the live file in place is documented as unsupported.
    let reader = unsafe { Reader::open_mmap(path) }.map_err(|e| error(e.to_string()))?;
    let database_type = reader.metadata().database_type.clone();
    if !kind.accepts(&database_type) {
        return Err(error(format!("is a {database_type:?} database, not the expected kind")));
    }
    Ok(reader)
}

impl GeoDb {
    pub fn open(kind: DbKind, path: &Path) -> Result<GeoDb, GeoError> {
        let stamp = FileStamp::of(path);
        let reader = open(kind, path)?;
        Ok(GeoDb {
            kind,
            path: path.to_owned(),
            reader: ArcSwap::from_pointee(reader),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// Re-opens the file if it changed; a broken replacement leaves the current reader in place.
    /// `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), GeoError>> {
        let now = FileStamp::of(&self.path);
        let mut stamp = self.stamp.lock().expect("only the reloader locks the stamp");
        if *stamp == now {
            return None;
        }
        *stamp = now;
        Some(open(self.kind, &self.path).map(|reader| self.reader.store(Arc::new(reader))))
    }

    pub fn database_type(&self) -> String {
        self.reader.load().metadata().database_type.clone()
    }

    /// City-level fields for `ip`, as an ECS `geo` object, or `None` without data.
    pub fn city(&self, ip: IpAddr) -> Option<Map<String, Json>> {
        let reader = self.reader.load();
        let city: geoip2::City = reader.lookup(ip).ok()?.decode().ok()??;
        let mut geo = Map::new();
        let mut put = |k: &str, v: Option<Json>| {
            if let Some(v) = v {
                geo.insert(k.to_owned(), v);
            }
        };
        put("continent_code", city.continent.code.map(Json::from));
        put("continent_name", city.continent.names.english.map(Json::from));
        put("country_iso_code", city.country.iso_code.map(Json::from));
        put("country_name", city.country.names.english.map(Json::from));
        if let Some(region) = city.subdivisions.first() {
            put(
                "region_iso_code",
                region.iso_code.map(|r| Json::from(format!("{}-{r}", city.country.iso_code.unwrap_or("")))),
            );
            put("region_name", region.names.english.map(Json::from));
        }
        put("city_name", city.city.names.english.map(Json::from));
        put("postal_code", city.postal.code.map(Json::from));
        put("timezone", city.location.time_zone.map(Json::from));
        if let (Some(lat), Some(lon)) = (city.location.latitude, city.location.longitude) {
            put("location", Some(json!({"lat": lat, "lon": lon})));
        }
        (!geo.is_empty()).then_some(geo)
    }

    /// ECS `as` object for `ip`.
    pub fn asn(&self, ip: IpAddr) -> Option<Json> {
        let reader = self.reader.load();
        let asn: geoip2::Asn = reader.lookup(ip).ok()?.decode().ok()??;
        let number = asn.autonomous_system_number?;
        let mut out = json!({"number": number});
        if let Some(org) = asn.autonomous_system_organization {
            out["organization"] = json!({"name": org});
        }
        Some(out)
    }
}

/// Addresses that have no geography: tagged as such instead of looked up.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => special_v4(v4),
            None => special_v6(v6),
        },
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        Some("reserved")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("private")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_unspecified() || ip.is_multicast() || (s[0] == 0x2001 && s[1] == 0x0db8) {
        Some("reserved")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges() {
        for (ip, want) in [
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("private")),
            ("127.0.0.1", Some("loopback")),
            ("169.254.1.1", Some("link-local")),
            ("192.0.2.1", Some("reserved")),
            ("0.0.0.0", Some("reserved")),
            ("255.255.255.255", Some("reserved")),
            ("::1", Some("loopback")),
            ("fd00::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("2001:db8::1", Some("reserved")),
            ("::ffff:10.0.0.1", Some("private")),
            ("8.8.8.8", None),
            ("2a00:1450::1", None),
        ] {
            assert_eq!(special_range(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
