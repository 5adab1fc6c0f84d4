//! GeoIP: MaxMind City and ASN databases (memory-mapped), swapped atomically when the file changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use maxminddb::{geoip2, Mmap, Reader};
use serde_json::{json, Map, Value as Json};

use super::FileStamp;
use crate::doc::{Found, Fragment, Leaf};

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

    /// City-level fields for `ip` (an ECS `geo` object), or `None` without data.
    pub fn city(&self, ip: IpAddr) -> Option<CityAnswer> {
        let reader = self.reader.load();
        let city: record::City = reader.lookup(ip).ok()?.decode().ok()??;
        let mut fields: Vec<(&'static str, Box<str>)> = Vec::with_capacity(9);
        let mut put = |k: &'static str, v: Option<&str>| {
            if let Some(v) = v {
                fields.push((k, v.into()));
            }
        };
        put("continent_code", city.continent.iso_code);
        put("continent_name", city.continent.names.english);
        put("country_iso_code", city.country.iso_code);
        put("country_name", city.country.names.english);
        if let Some(region) = &city.subdivisions {
            let code = region.iso_code.map(|r| format!("{}-{r}", city.country.iso_code.unwrap_or("")));
            put("region_iso_code", code.as_deref());
            put("region_name", region.names.english);
        }
        put("city_name", city.city.names.english);
        put("postal_code", city.postal.code);
        put("timezone", city.location.time_zone);
        let location = city.location.latitude.zip(city.location.longitude);
        (!fields.is_empty() || location.is_some()).then(|| CityAnswer::new(fields, location))
    }

    /// ECS `as` fields for `ip`.
    pub fn asn(&self, ip: IpAddr) -> Option<AsnAnswer> {
        let reader = self.reader.load();
        let asn: geoip2::Asn = reader.lookup(ip).ok()?.decode().ok()??;
        let number = asn.autonomous_system_number?;
        Some(AsnAnswer::new(number, asn.autonomous_system_organization.map(Into::into)))
    }
}

/// The parts of a City record the ECS `geo` object takes, decoded straight from the database: English
/// names only, the first subdivision only; the rest of the record (other languages, registered and
/// represented countries, traits) is skipped unread. (`geoip2::City` decodes all of it; on a corpus of
/// many distinct addresses the City look-up was a sixth of a replay's time.)
mod record {
    use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    pub struct Names<'a> {
        #[serde(borrow, rename = "en", default)]
        pub english: Option<&'a str>,
    }

    #[derive(Deserialize, Default)]
    pub struct Named<'a> {
        #[serde(borrow, default)]
        pub names: Names<'a>,
    }

    /// A continent (`code`), country or subdivision (`iso_code`).
    #[derive(Deserialize, Default)]
    pub struct Area<'a> {
        #[serde(borrow, default, alias = "code")]
        pub iso_code: Option<&'a str>,
        #[serde(borrow, default)]
        pub names: Names<'a>,
    }

    #[derive(Deserialize, Default)]
    pub struct Location<'a> {
        #[serde(default)]
        pub latitude: Option<f64>,
        #[serde(default)]
        pub longitude: Option<f64>,
        #[serde(borrow, default)]
        pub time_zone: Option<&'a str>,
    }

    #[derive(Deserialize, Default)]
    pub struct Postal<'a> {
        #[serde(borrow, default)]
        pub code: Option<&'a str>,
    }

    #[derive(Deserialize, Default)]
    pub struct City<'a> {
        #[serde(borrow, default)]
        pub city: Named<'a>,
        #[serde(borrow, default)]
        pub continent: Area<'a>,
        #[serde(borrow, default)]
        pub country: Area<'a>,
        #[serde(borrow, default)]
        pub location: Location<'a>,
        #[serde(borrow, default)]
        pub postal: Postal<'a>,
        #[serde(borrow, default, deserialize_with = "first")]
        pub subdivisions: Option<Area<'a>>,
    }

    /// The first subdivision of the list (the largest: a state, a province).
    fn first<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Area<'de>>, D::Error> {
        struct First;
        impl<'de> Visitor<'de> for First {
            type Value = Option<Area<'de>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of subdivisions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Area<'de>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(first)
            }
        }
        d.deserialize_seq(First)
    }
}

/// The string fields of an ECS `geo` object, as [`GeoDb::city`] names them.
const CITY_KEYS: [&str; 9] = [
    "continent_code",
    "continent_name",
    "country_iso_code",
    "country_name",
    "region_iso_code",
    "region_name",
    "city_name",
    "postal_code",
    "timezone",
];

/// A City answer as the GeoIP cache keeps it: the ECS `geo` object serialised for documents, where each
/// string field lies in it for look-ups, and the coordinates — about 300 bytes. (Kept as the JSON
/// object it becomes, an address's answer took ~1.5 KB of map nodes and key strings.)
#[derive(Debug, Clone, PartialEq)]
pub struct CityAnswer {
    json: Box<str>,
    /// A field ([`CITY_KEYS`] index) whose value is written in `json` as it is: its start and length.
    spans: Box<[(u8, u16, u16)]>,
    /// A field whose value JSON escapes (a quote, a backslash, a control character in a name).
    escaped: Box<[(u8, Box<str>)]>,
    /// Latitude and longitude.
    location: Option<(f64, f64)>,
}

impl CityAnswer {
    fn new(fields: Vec<(&'static str, Box<str>)>, location: Option<(f64, f64)>) -> CityAnswer {
        let mut geo = Map::new();
        for (key, value) in &fields {
            geo.insert((*key).to_owned(), Json::from(&**value));
        }
        if let Some((lat, lon)) = location {
            geo.insert("location".to_owned(), json!({"lat": lat, "lon": lon}));
        }
        let json = Json::Object(geo).to_string();
        let (mut spans, mut escaped) = (Vec::new(), Vec::new());
        for (key, value) in fields {
            let Some(index) = CITY_KEYS.iter().position(|k| *k == key) else { continue };
            let index = index as u8;
            // `"key":"` occurs once: inside a string value a quote is escaped.
            let start = json.find(&format!("\"{key}\":\"")).map(|at| at + key.len() + 4);
            let verbatim = start
                .filter(|&at| json[at..].starts_with(&*value) && json.as_bytes().get(at + value.len()) == Some(&b'"'));
            match verbatim.and_then(|at| Some((u16::try_from(at).ok()?, u16::try_from(value.len()).ok()?))) {
                Some((at, len)) => spans.push((index, at, len)),
                None => escaped.push((index, value)),
            }
        }
        CityAnswer {
            json: json.into_boxed_str(),
            spans: spans.into_boxed_slice(),
            escaped: escaped.into_boxed_slice(),
            location,
        }
    }
}

impl Fragment for CityAnswer {
    fn json(&self) -> &str {
        &self.json
    }

    fn lookup<'d>(&'d self, path: &str, out: &mut Found<'d>) {
        match (path, self.location) {
            ("location", Some(_)) => out.push(Leaf::Object),
            ("location.lat", Some((lat, _))) => out.push(Leaf::Float(lat)),
            ("location.lon", Some((_, lon))) => out.push(Leaf::Float(lon)),
            _ => {
                let Some(index) = CITY_KEYS.iter().position(|k| *k == path) else { return };
                let index = index as u8;
                if let Some(&(_, at, len)) = self.spans.iter().find(|(i, ..)| *i == index) {
                    out.push(Leaf::Str(&self.json[usize::from(at)..usize::from(at) + usize::from(len)]));
                } else if let Some((_, value)) = self.escaped.iter().find(|(i, _)| *i == index) {
                    out.push(Leaf::Str(value));
                }
            }
        }
    }
}

/// An ASN answer as the GeoIP cache keeps it: the number, the organization, the ECS `as` object
/// serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct AsnAnswer {
    number: u32,
    organization: Option<Box<str>>,
    json: Box<str>,
}

impl AsnAnswer {
    fn new(number: u32, organization: Option<Box<str>>) -> AsnAnswer {
        let mut out = json!({"number": number});
        if let Some(org) = &organization {
            out["organization"] = json!({"name": &**org});
        }
        AsnAnswer { number, organization, json: out.to_string().into_boxed_str() }
    }
}

impl Fragment for AsnAnswer {
    fn json(&self) -> &str {
        &self.json
    }

    fn lookup<'d>(&'d self, path: &str, out: &mut Found<'d>) {
        match (path, &self.organization) {
            ("number", _) => out.push(Leaf::UInt(self.number.into())),
            ("organization", Some(_)) => out.push(Leaf::Object),
            ("organization.name", Some(org)) => out.push(Leaf::Str(org)),
            _ => {}
        }
    }
}

/// The `geo` object of an address with no geography (`{"name":"private"}`), shared by every record.
#[derive(Debug)]
pub struct SpecialRange {
    name: &'static str,
    json: String,
}

impl Fragment for SpecialRange {
    fn json(&self) -> &str {
        &self.json
    }

    fn lookup<'d>(&'d self, path: &str, out: &mut Found<'d>) {
        if path == "name" {
            out.push(Leaf::Str(self.name));
        }
    }
}

/// The shared `geo` object of a [`special_range`] answer.
pub fn special_geo(name: &'static str) -> Arc<SpecialRange> {
    static NAMED: std::sync::OnceLock<Vec<Arc<SpecialRange>>> = std::sync::OnceLock::new();
    let named = |name: &'static str| Arc::new(SpecialRange { name, json: json!({ "name": name }).to_string() });
    let all = NAMED.get_or_init(|| ["link-local", "loopback", "private", "reserved"].into_iter().map(named).collect());
    all.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| named(name))
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

    /// The City answer as it was made from `geoip2::City` (every field of the record decoded).
    fn city_from_the_full_record(db: &GeoDb, ip: IpAddr) -> Option<CityAnswer> {
        let reader = db.reader.load();
        let city: geoip2::City = reader.lookup(ip).ok()?.decode().ok()??;
        let mut fields: Vec<(&'static str, Box<str>)> = Vec::new();
        let mut put = |k: &'static str, v: Option<&str>| fields.extend(v.map(|v| (k, v.into())));
        put("continent_code", city.continent.code);
        put("continent_name", city.continent.names.english);
        put("country_iso_code", city.country.iso_code);
        put("country_name", city.country.names.english);
        if let Some(region) = city.subdivisions.first() {
            let code = region.iso_code.map(|r| format!("{}-{r}", city.country.iso_code.unwrap_or("")));
            put("region_iso_code", code.as_deref());
            put("region_name", region.names.english);
        }
        put("city_name", city.city.names.english);
        put("postal_code", city.postal.code);
        put("timezone", city.location.time_zone);
        let location = city.location.latitude.zip(city.location.longitude);
        (!fields.is_empty() || location.is_some()).then(|| CityAnswer::new(fields, location))
    }

    #[test]
    fn the_partial_city_record_gives_what_the_full_one_gave() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/geoip/GeoLite2-City.mmdb");
        assert!(path.exists(), "{} missing: run scripts/setup.sh", path.display());
        let db = GeoDb::open(DbKind::City, &path).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let (mut answered, mut regions) = (0, 0);
        for i in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let ip = if i % 10 == 0 {
                IpAddr::V6(Ipv6Addr::from(u128::from(state) << 64 | 0x2a00_0000_0000_0000_0000_0000_0000_0000))
            } else {
                IpAddr::V4(Ipv4Addr::from(state as u32))
            };
            let answer = db.city(ip);
            assert_eq!(answer, city_from_the_full_record(&db, ip), "{ip}");
            answered += usize::from(answer.is_some());
            if let Some(answer) = &answer {
                // What rules read back is what the document says.
                let object = answer.to_json();
                for key in CITY_KEYS {
                    let mut found = Found::new();
                    answer.lookup(key, &mut found);
                    assert_eq!(found.first().and_then(|l| l.as_str()), object[key].as_str(), "{ip} {key}");
                }
                regions += usize::from(object.get("region_name").is_some());
            }
        }
        assert!(answered > 10_000 && regions > 5_000, "{answered} answers, {regions} with a region");
    }

    #[test]
    fn a_name_json_escapes_is_read_back_as_it_was() {
        let fields = vec![("city_name", "Quote \"q\" back\\slash".into()), ("country_iso_code", "GB".into())];
        let answer = CityAnswer::new(fields, Some((51.5, -0.1)));
        for (key, want) in [("city_name", "Quote \"q\" back\\slash"), ("country_iso_code", "GB")] {
            let mut found = Found::new();
            answer.lookup(key, &mut found);
            assert_eq!(found.as_slice(), [Leaf::Str(want)], "{key}");
        }
        assert_eq!(answer.escaped.len(), 1);
        assert_eq!(answer.to_json()["city_name"], "Quote \"q\" back\\slash");
    }

    #[test]
    fn every_special_range_has_its_shared_geo_object() {
        for ip in ["10.0.0.1", "127.0.0.1", "169.254.1.1", "240.0.0.1", "::1", "fe80::1", "fc00::1"] {
            let name = special_range(ip.parse().unwrap()).unwrap();
            let geo = special_geo(name);
            assert_eq!(geo.json(), format!("{{\"name\":\"{name}\"}}"));
            assert!(Arc::ptr_eq(&geo, &special_geo(name)), "{name} is shared, not built per record");
        }
    }

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
