//! The event document: a record's ECS fields by dotted path, kept flat while the record is processed
//! and written as nested JSON once, at the end.
//!
//! Fields are appended to an arena and found through an index kept in path order, where a path sorts
//! by its steps (`a.x` before `a-b`, as nested objects sort their keys), so a look-up is a binary
//! search and writing the document is one pass that opens and closes objects as the steps change.
//! Values borrow from the record where they can, and shared GeoIP answers are written from their
//! pre-serialised JSON ([`Fragment`]) — no `serde_json::Map` of the whole event is ever built.
//!
//! The document keeps the shape rules of a JSON object tree: the first value set at a path wins, and a
//! path cannot be both a value and an object (`a.b` set to a string refuses `a.b.c`, and the other way
//! round), exactly as inserting into nested maps would.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serializer as _;
use serde_json::{Map, Value as Json};
use smallvec::SmallVec;

use crate::spare;

/// A value of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'r> {
    Str(Cow<'r, str>),
    Int(i64),
    UInt(u64),
    /// Finite: a non-finite number is stored as [`Val::Null`], as JSON has none.
    Float(f64),
    Bool(bool),
    Null,
    /// A time, written as RFC 3339 with milliseconds.
    Time(DateTime<Utc>),
    /// A list of strings.
    List(Vec<&'r str>),
    /// A list of keywords (`event.category`).
    Keywords(&'static [&'static str]),
    /// Key/value texts, an object: written with its keys in order, the first of a repeated key kept
    /// (what a JSON object built from them holds).
    Pairs(Vec<(&'r str, &'r str)>),
    /// Anything structured the document has no flat form for (indicator matches, key/value pairs).
    Json(Json),
    /// A shared object written from its pre-serialised JSON (a cached GeoIP answer).
    Fragment(Arc<dyn Fragment>),
}

impl PartialEq for dyn Fragment {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl From<&'static str> for Val<'_> {
    fn from(s: &'static str) -> Self {
        Val::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::Str(Cow::Owned(s))
    }
}

impl From<f64> for Val<'_> {
    fn from(f: f64) -> Self {
        if f.is_finite() {
            Val::Float(f)
        } else {
            Val::Null
        }
    }
}

impl<'r> Val<'r> {
    /// A string borrowed from the record.
    pub fn text(s: &'r str) -> Self {
        Val::Str(Cow::Borrowed(s))
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut ser = serde_json::Serializer::new(&mut *out);
        let written = match self {
            Val::Str(s) => ser.serialize_str(s),
            Val::Int(n) => ser.serialize_i64(*n),
            Val::UInt(n) => ser.serialize_u64(*n),
            Val::Float(f) => ser.serialize_f64(*f),
            Val::Bool(b) => ser.serialize_bool(*b),
            Val::Null => ser.serialize_unit(),
            Val::Time(t) => {
                crate::timefmt::write_millis_json(out, *t);
                Ok(())
            }
            Val::List(items) => serde::Serialize::serialize(items, &mut ser),
            Val::Keywords(items) => serde::Serialize::serialize(items, &mut ser),
            Val::Pairs(pairs) => {
                out.push(b'{');
                for (n, (key, value)) in object_order(pairs).enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    let mut ser = serde_json::Serializer::new(&mut *out);
                    ser.serialize_str(key).expect("writing JSON into memory cannot fail");
                    out.push(b':');
                    let mut ser = serde_json::Serializer::new(&mut *out);
                    ser.serialize_str(value).expect("writing JSON into memory cannot fail");
                }
                out.push(b'}');
                Ok(())
            }
            Val::Json(json) => serde::Serialize::serialize(json, &mut ser),
            Val::Fragment(fragment) => {
                out.extend_from_slice(fragment.json().as_bytes());
                Ok(())
            }
        };
        written.expect("writing JSON into memory cannot fail");
    }

    /// The value as JSON.
    pub fn to_json(&self) -> Json {
        match self {
            Val::Str(s) => Json::from(&**s),
            Val::Int(n) => Json::from(*n),
            Val::UInt(n) => Json::from(*n),
            Val::Float(f) => Json::from(*f),
            Val::Bool(b) => Json::from(*b),
            Val::Null => Json::Null,
            Val::Time(t) => Json::from(crate::timefmt::millis(*t)),
            Val::List(items) => Json::from(items.clone()),
            Val::Keywords(items) => Json::from(items.to_vec()),
            Val::Pairs(pairs) => {
                Json::Object(object_order(pairs).map(|(k, v)| ((*k).to_owned(), Json::from(*v))).collect())
            }
            Val::Json(json) => json.clone(),
            Val::Fragment(fragment) => fragment.to_json(),
        }
    }

    /// The leaves at `rest` (a path below this value; `None`: the value itself), lists flattened.
    fn leaves<'d>(&'d self, rest: Option<&str>, out: &mut Found<'d>) {
        match (self, rest) {
            (Val::Json(json), rest) => descend(json, rest, out),
            (Val::Fragment(fragment), Some(rest)) => fragment.lookup(rest, out),
            (Val::Fragment(_), None) => out.push(Leaf::Object),
            (Val::Pairs(_), None) => out.push(Leaf::Object),
            // A path's steps are keys (`a.b` is `b` in `a`), and a key holds text: nothing is below it.
            (Val::Pairs(_), Some(key)) if key.contains('.') => {}
            (Val::Pairs(pairs), Some(key)) => {
                out.extend(pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| Leaf::Str(v)))
            }
            (_, Some(_)) => {}
            (Val::Str(s), None) => out.push(Leaf::Str(s)),
            (Val::Int(n), None) => out.push(Leaf::Int(*n)),
            (Val::UInt(n), None) => out.push(Leaf::UInt(*n)),
            (Val::Float(f), None) => out.push(Leaf::Float(*f)),
            (Val::Bool(b), None) => out.push(Leaf::Bool(*b)),
            (Val::Null, None) => out.push(Leaf::Null),
            (Val::Time(t), None) => out.push(Leaf::Time(*t)),
            (Val::List(items), None) => out.extend(items.iter().map(|s| Leaf::Str(s))),
            (Val::Keywords(items), None) => out.extend(items.iter().map(|s| Leaf::Str(s))),
        }
    }
}

/// `pairs` as an object holds them: by key, the first of a repeated key.
fn object_order<'p, 'r>(pairs: &'p [(&'r str, &'r str)]) -> impl Iterator<Item = &'p (&'r str, &'r str)> {
    let mut order: SmallVec<[(&str, usize); 32]> = pairs.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
    order.sort_unstable();
    order.dedup_by_key(|(k, _)| *k);
    order.into_iter().map(move |(_, i)| &pairs[i])
}

/// A shared object of the document, kept serialised (GeoIP answers, cached per address).
pub trait Fragment: Send + Sync + Debug {
    /// The object as JSON text, keys sorted.
    fn json(&self) -> &str;
    /// The leaves at `path` below the object.
    fn lookup<'d>(&'d self, path: &str, out: &mut Found<'d>);
    fn to_json(&self) -> Json {
        serde_json::from_str(self.json()).expect("a fragment is JSON")
    }
}

/// One value found at a path, as rules and reports read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leaf<'d> {
    Str(&'d str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Time(DateTime<Utc>),
    /// An object (or a list of lists): it exists, it has no text.
    Object,
}

impl<'d> Leaf<'d> {
    pub fn of(json: &'d Json) -> Leaf<'d> {
        match json {
            Json::String(s) => Leaf::Str(s),
            Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Leaf::Int(i),
                (None, Some(u)) => Leaf::UInt(u),
                _ => n.as_f64().map_or(Leaf::Null, Leaf::Float),
            },
            Json::Bool(b) => Leaf::Bool(*b),
            Json::Null => Leaf::Null,
            Json::Array(_) | Json::Object(_) => Leaf::Object,
        }
    }

    pub fn as_str(&self) -> Option<&'d str> {
        match self {
            Leaf::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Leaf::Null)
    }

    /// The value as a number: numbers as they are, strings that hold one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Leaf::Int(n) => Some(*n as f64),
            Leaf::UInt(n) => Some(*n as f64),
            Leaf::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as text for matching: strings as they are (borrowed), numbers, booleans and times
    /// written out as JSON writes them.
    pub fn text(&self) -> Option<Cow<'d, str>> {
        match self {
            Leaf::Str(s) => Some(Cow::Borrowed(s)),
            Leaf::Int(n) => Some(Cow::Owned(n.to_string())),
            Leaf::UInt(n) => Some(Cow::Owned(n.to_string())),
            Leaf::Float(f) => Some(Cow::Owned(Json::from(*f).to_string())),
            Leaf::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Leaf::Time(t) => Some(Cow::Owned(crate::timefmt::millis(*t))),
            Leaf::Null | Leaf::Object => None,
        }
    }

    /// Strings and numbers as text (what a group or suppression key is made of).
    pub fn key_text(&self) -> Option<String> {
        match self {
            Leaf::Bool(_) => None,
            _ => self.text().map(Cow::into_owned),
        }
    }
}

/// The values at a path: a few at most in practice, kept inline (no allocation per look-up).
pub type Found<'d> = SmallVec<[Leaf<'d>; 4]>;

/// The leaves of `json` at `rest` (a dotted path below it): objects walked by key, lists by each of
/// their elements, a list at the end flattened.
fn descend<'d>(json: &'d Json, rest: Option<&str>, out: &mut Found<'d>) {
    match rest {
        None => match json {
            Json::Array(items) => out.extend(items.iter().map(Leaf::of)),
            other => out.push(Leaf::of(other)),
        },
        Some(path) => {
            let (part, tail) = match path.split_once('.') {
                Some((part, tail)) => (part, Some(tail)),
                None => (path, None),
            };
            match json {
                Json::Object(o) => {
                    if let Some(next) = o.get(part) {
                        descend(next, tail, out);
                    }
                }
                Json::Array(items) => {
                    for next in items.iter().filter_map(|i| i.get(part)) {
                        descend(next, tail, out);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Paths in the order of nested objects' keys: step by step, a step's bytes compared as strings.
/// (`.` ranks below every other byte, so `a.x` sorts before `a-b` as the key `a` does before `a-b`.)
pub fn cmp_path(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let rank = |c: u8| if c == b'.' { 0 } else { u16::from(c) + 1 };
    match mismatch(a, b) {
        Some(i) => rank(a[i]).cmp(&rank(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

/// A path's first sixteen bytes as a number that orders as [`cmp_path`] does where two numbers differ:
/// `.` → 0, the bytes below it one up, the rest as they are (so the mapping keeps bytes apart), a
/// short path padded with zeros. Equal numbers say nothing; the paths are then compared in full.
/// (Sixteen: `citrix_adc.log.` and `observer.` start many paths.)
fn word(path: &str) -> u128 {
    let mut bytes = [0u8; 16];
    for (slot, &b) in bytes.iter_mut().zip(path.as_bytes()) {
        *slot = match b {
            b'.' => 0,
            b if b < b'.' => b + 1,
            b => b,
        };
    }
    u128::from_be_bytes(bytes)
}

/// The first position where `a` and `b` differ, eight bytes at a time (paths share long prefixes:
/// `citrix_adc.log.`).
fn mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let word = |s: &[u8]| u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
        let diff = word(a) ^ word(b);
        if diff != 0 {
            return Some(i + (diff.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..n).find(|&j| a[j] != b[j])
}

/// Is `prefix` whole steps of `path` (`a.b` of `a.b.c`, not of `a.bc`)?
fn is_parent(prefix: &str, path: &str) -> bool {
    path.len() > prefix.len() && path.starts_with(prefix) && path.as_bytes()[prefix.len()] == b'.'
}

/// Where a path stands in the document.
enum Place {
    /// Set, at this index position.
    Set(usize),
    /// An object: fields below it start at this position.
    Object(usize),
    /// Below a value that is not an object, at this position.
    Below(usize),
    /// Free: it would go at this position.
    Free(usize),
}

/// A record's ECS document (see the module's documentation).
///
/// A dropped document's buffers are kept by its thread for the next [`Doc::new`] ([`Spare`]), so a
/// record path that builds one document per record allocates none once warm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc<'r> {
    fields: Vec<(Cow<'static, str>, Val<'r>)>,
    /// `fields` positions in path order, each with its path's first bytes as a number ([`word`]) so
    /// most comparisons of a search are one integer comparison.
    order: Vec<(u128, u16)>,
}

/// Buffers past this many fields are not kept (a rare huge record does not pin its memory).
const SPARE_FIELDS: usize = 1024;

type Buffers = (Vec<(Cow<'static, str>, Val<'static>)>, Vec<(u128, u16)>);

thread_local! {
    /// The emptied buffers of the thread's dropped documents.
    static SPARE: spare::Pool<Buffers> = const { spare::Pool::new(Vec::new()) };
}

impl Drop for Doc<'_> {
    fn drop(&mut self) {
        for (_, value) in &mut self.fields {
            match value {
                Val::List(items) => spare::keep_list(std::mem::take(items)),
                Val::Pairs(pairs) => spare::keep_pairs(std::mem::take(pairs)),
                _ => {}
            }
        }
        if self.fields.capacity() == 0 || self.fields.capacity() > SPARE_FIELDS {
            return;
        }
        let fields = spare::recast(std::mem::take(&mut self.fields));
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        spare::keep(&SPARE, (fields, order));
    }
}

impl<'r> Doc<'r> {
    /// An empty document, in a dropped document's buffers when its thread has one.
    pub fn new() -> Self {
        match spare::take(&SPARE) {
            Some((fields, order)) => Doc { fields: spare::recast(fields), order },
            None => Doc { fields: Vec::with_capacity(48), order: Vec::with_capacity(48) },
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn key(&self, position: usize) -> &str {
        &self.fields[usize::from(self.order[position].1)].0
    }

    fn value(&self, position: usize) -> &Val<'r> {
        &self.fields[usize::from(self.order[position].1)].1
    }

    fn place(&self, path: &str) -> Place {
        let w = word(path);
        let found = self
            .order
            .binary_search_by(|&(k, i)| k.cmp(&w).then_with(|| cmp_path(&self.fields[usize::from(i)].0, path)));
        let at = match found {
            Ok(at) => return Place::Set(at),
            Err(at) => at,
        };
        // The fields below `path` follow it directly; a value above it directly precedes it.
        if at < self.order.len() && is_parent(path, self.key(at)) {
            Place::Object(at)
        } else if at > 0 && is_parent(self.key(at - 1), path) {
            Place::Below(at - 1)
        } else {
            Place::Free(at)
        }
    }

    fn put(&mut self, at: usize, path: Cow<'static, str>, value: Val<'r>) {
        let index = u16::try_from(self.fields.len()).expect("a document has fewer than 65 536 fields");
        self.order.insert(at, (word(&path), index));
        self.fields.push((path, value));
    }

    /// Sets `path` unless it is set already or cannot be (the first value wins). Returns whether it
    /// was set.
    pub fn insert(&mut self, path: impl Into<Cow<'static, str>>, value: Val<'r>) -> bool {
        let path = path.into();
        match self.place(&path) {
            Place::Free(at) => {
                self.put(at, path, value);
                true
            }
            _ => false,
        }
    }

    /// Sets `path`, replacing what it held (an object there included). A path below a value that is
    /// not an object is left alone.
    pub fn set(&mut self, path: impl Into<Cow<'static, str>>, value: Val<'r>) {
        let path = path.into();
        match self.place(&path) {
            Place::Set(at) => {
                let index = usize::from(self.order[at].1);
                self.fields[index].1 = value;
            }
            Place::Object(at) => {
                let end = (at..self.order.len()).find(|&p| !is_parent(&path, self.key(p))).unwrap_or(self.order.len());
                // The arena keeps the replaced fields' slots; only the index forgets them.
                self.order.drain(at..end);
                self.put(at, path, value);
            }
            Place::Below(_) => {}
            Place::Free(at) => self.put(at, path, value),
        }
    }

    /// Is anything at `path` (a value, or an object with fields below it)?
    pub fn contains(&self, path: &str) -> bool {
        !matches!(self.place(path), Place::Free(_))
    }

    /// Every value at `path`: lists flattened, and paths below a structured value followed into it
    /// (`threat.enrichments.indicator.ip` reaches into each indicator match).
    pub fn lookup(&self, path: &str) -> Found<'_> {
        let mut out = Found::new();
        match self.place(path) {
            Place::Set(at) => self.value(at).leaves(None, &mut out),
            Place::Object(_) => out.push(Leaf::Object),
            Place::Below(at) => {
                let key = self.key(at);
                let rest = &path[key.len() + 1..];
                self.value(at).leaves(Some(rest), &mut out);
            }
            Place::Free(_) => {}
        }
        out
    }

    /// The first value at `path`.
    pub fn get(&self, path: &str) -> Option<Leaf<'_>> {
        self.lookup(path).first().copied()
    }

    /// The first value at `path` as text if it is a string, a number or a time (a key's part, a report's
    /// field).
    pub fn text(&self, path: &str) -> Option<String> {
        self.get(path).and_then(|leaf| leaf.key_text())
    }

    /// The first value at `path` if it is a string.
    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(|l| l.as_str())
    }

    /// What [`Doc::get_str`] finds, as a value for another path: a string set at `path` as it is held
    /// (borrowed from the record, not copied), anything else copied.
    pub fn get_string(&self, path: &str) -> Option<Val<'r>> {
        if let Place::Set(at) = self.place(path) {
            if let Val::Str(text) = self.value(at) {
                return Some(Val::Str(text.clone()));
            }
        }
        self.get_str(path).map(|text| Val::from(text.to_owned()))
    }

    /// The fields in path order.
    fn iter(&self) -> impl Iterator<Item = &(Cow<'static, str>, Val<'r>)> {
        self.order.iter().map(|&(_, i)| &self.fields[usize::from(i)])
    }

    /// Appends the document as JSON (nested objects, keys in order) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        // The path of the object being written ("" for the root), and whether it has a member yet.
        let mut open = "";
        let mut first = true;
        for (path, value) in self.iter() {
            let (parent, leaf) = match path.rsplit_once('.') {
                Some((parent, leaf)) => (parent, leaf),
                None => ("", &**path),
            };
            let common = common_steps(open, parent);
            // Close the objects the new field is not in.
            for _ in open[common..].split('.').filter(|s| !s.is_empty()) {
                out.push(b'}');
                first = false;
            }
            // Open the ones it is in that are not open yet.
            let new = parent[common..].strip_prefix('.').unwrap_or(&parent[common..]);
            for step in new.split('.').filter(|s| !s.is_empty()) {
                if !first {
                    out.push(b',');
                }
                write_key(out, step);
                out.push(b'{');
                first = true;
            }
            open = parent;
            if !first {
                out.push(b',');
            }
            write_key(out, leaf);
            value.write(out);
            first = false;
        }
        for _ in open.split('.').filter(|s| !s.is_empty()) {
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// The document as JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out);
        out
    }

    /// The document as a JSON object.
    pub fn to_json(&self) -> Map<String, Json> {
        let mut root = Map::new();
        for (path, value) in self.iter() {
            crate::ecs::insert(&mut root, path, value.to_json());
        }
        root
    }

    /// The object or value at the top-level key `name`, as JSON (what an alert copies of its trigger).
    pub fn top(&self, name: &str) -> Option<Json> {
        let mut root = Map::new();
        let start = match self.place(name) {
            Place::Set(at) => return Some(self.value(at).to_json()),
            Place::Object(at) => at,
            Place::Below(_) | Place::Free(_) => return None,
        };
        for &(_, i) in &self.order[start..] {
            let (path, value) = &self.fields[usize::from(i)];
            if !is_parent(name, path) {
                break;
            }
            crate::ecs::insert(&mut root, &path[name.len() + 1..], value.to_json());
        }
        Some(Json::Object(root))
    }

    /// A JSON object as a document (`rules test` examples written as ECS JSON): objects become paths,
    /// anything else a value.
    pub fn from_json(object: Map<String, Json>) -> Doc<'static> {
        fn flatten(doc: &mut Doc<'static>, prefix: &str, object: Map<String, Json>) {
            for (key, value) in object {
                let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                match value {
                    Json::Object(inner) if !inner.is_empty() => flatten(doc, &path, inner),
                    Json::String(s) => {
                        doc.insert(path, Val::from(s));
                    }
                    other => {
                        doc.insert(path, Val::Json(other));
                    }
                }
            }
        }
        let mut doc = Doc::new();
        flatten(&mut doc, "", object);
        doc
    }
}

/// The byte length of the steps `a` and `b` start with in common (`a.b` of `a.b.c` and `a.b.d`).
fn common_steps(a: &str, b: &str) -> usize {
    let n = mismatch(a.as_bytes(), b.as_bytes()).unwrap_or(a.len().min(b.len()));
    // Whole steps only: the common part ends where a step of both ends.
    let ends = |s: &str, at: usize| at == s.len() || s.as_bytes()[at] == b'.';
    if ends(a, n) && ends(b, n) {
        return n;
    }
    a[..n].rfind('.').unwrap_or(0)
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    // Keys are names: written as they are unless JSON needs an escape in them.
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    } else {
        serde_json::Serializer::new(&mut *out).serialize_str(key).expect("writing JSON into memory cannot fail");
        out.push(b':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(doc: &Doc<'_>) -> Json {
        serde_json::from_slice(&doc.to_vec()).unwrap()
    }

    #[test]
    fn it_writes_what_nested_maps_write_keys_in_the_same_order() {
        let mut doc = Doc::new();
        let mut map = Map::new();
        let fields: [(&'static str, Json); 10] = [
            ("event.kind", json!("event")),
            ("a-b.c", json!(1)),
            ("a.x", json!("ä \"quoted\"")),
            ("@timestamp", json!("2020-01-11T10:00:00.000Z")),
            ("log.syslog.priority", json!(134)),
            ("log.syslog.facility.code", json!(16)),
            ("log.syslogx", json!(true)),
            ("event.category", json!(["web"])),
            ("gatewatch.source", json!({"topic": "t", "partition": 0, "offset": 7})),
            ("ab", json!(-1.5)),
        ];
        for (path, value) in fields {
            crate::ecs::insert(&mut map, path, value.clone());
            doc.insert(path, Val::Json(value));
        }
        assert_eq!(String::from_utf8(doc.to_vec()).unwrap(), serde_json::to_string(&map).unwrap());
        assert_eq!(doc.to_json(), map);
    }

    #[test]
    fn pairs_are_written_and_found_as_the_object_built_from_them() {
        let pairs = vec![("zeta", "1"), ("Alpha", "\"q\""), ("beta", "2"), ("Alpha", "second"), ("a.b", "dotted")];
        let mut object = Map::new();
        for (k, v) in &pairs {
            object.entry(*k).or_insert_with(|| json!(v));
        }
        let mut doc = Doc::new();
        doc.insert("x.pairs", Val::Pairs(pairs));
        let mut reference = Doc::new();
        reference.insert("x.pairs", Val::Json(Json::Object(object)));
        assert_eq!(doc.to_vec(), reference.to_vec());
        assert_eq!(doc.to_json(), reference.to_json());
        for path in ["x.pairs", "x.pairs.Alpha", "x.pairs.beta", "x.pairs.a.b", "x.pairs.a", "x.pairs.none"] {
            assert_eq!(doc.lookup(path), reference.lookup(path), "{path}");
        }
    }

    #[test]
    fn the_first_value_wins_and_a_path_is_a_value_or_an_object_never_both() {
        let mut doc = Doc::new();
        assert!(doc.insert("a.b", Val::from("first")));
        assert!(!doc.insert("a.b", Val::from("second")), "set already");
        assert!(!doc.insert("a.b.c", Val::from("below a value")));
        assert!(!doc.insert("a", Val::from("an object already")));
        assert!(doc.insert("a.bc", Val::from("a sibling")));
        assert_eq!(nested(&doc), json!({"a": {"b": "first", "bc": "a sibling"}}));
        // set replaces a value, and an object with everything below it.
        doc.insert("s.geo.x", Val::Int(1));
        doc.insert("s.geo.y", Val::Int(2));
        doc.insert("s.ip", Val::from("192.0.2.1"));
        doc.set("s.geo", Val::Json(json!({"name": "private"})));
        doc.set("a.b", Val::from("replaced"));
        doc.set("a.b.c", Val::from("still below a value"));
        assert_eq!(
            nested(&doc),
            json!({"a": {"b": "replaced", "bc": "a sibling"}, "s": {"geo": {"name": "private"}, "ip": "192.0.2.1"}})
        );
    }

    #[test]
    fn look_ups_find_values_objects_and_what_lies_inside_structured_values() {
        let mut doc = Doc::new();
        doc.insert("url.original", Val::text("/vpn/../vpns/cfg/smb.conf"));
        doc.insert("event.category", Val::Keywords(&["web"]));
        doc.insert("event.code", Val::Int(403));
        doc.insert(
            "threat.enrichments",
            Val::Json(json!([{"matched": {"field": "source.ip"}}, {"matched": {"field": "url.path"}}])),
        );
        assert_eq!(doc.lookup("url.original").as_slice(), [Leaf::Str("/vpn/../vpns/cfg/smb.conf")]);
        assert_eq!(doc.lookup("event.category").as_slice(), [Leaf::Str("web")]);
        assert_eq!(doc.lookup("event").as_slice(), [Leaf::Object]);
        assert_eq!(
            doc.lookup("threat.enrichments.matched.field").as_slice(),
            [Leaf::Str("source.ip"), Leaf::Str("url.path")]
        );
        assert!(doc.lookup("event.code.deeper").is_empty());
        assert!(doc.lookup("event.missing").is_empty());
        assert!(doc.lookup("").is_empty());
        assert_eq!(doc.get("event.code").and_then(|l| l.text()).as_deref(), Some("403"));
        assert_eq!(Leaf::Float(0.5).text().as_deref(), Some("0.5"));
        assert_eq!(doc.top("event"), Some(json!({"category": ["web"], "code": 403})));
        let back = Doc::from_json(doc.to_json());
        assert_eq!(nested(&back), nested(&doc));
    }

    #[test]
    fn the_word_at_a_time_mismatch_finds_the_first_difference() {
        let words = [
            "",
            "a",
            "citrix_adc.log.",
            "citrix_adc.log.client_ip",
            "citrix_adc.log.client-ip",
            "citrix_adc.logs",
            "é.x",
        ];
        for a in words {
            for b in words {
                let expected = a.bytes().zip(b.bytes()).position(|(x, y)| x != y);
                assert_eq!(mismatch(a.as_bytes(), b.as_bytes()), expected, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn path_words_order_as_paths_do_where_they_differ() {
        let paths = [
            "",
            "a",
            "a.b",
            "a-b",
            "a\u{1}b",
            "a\0b",
            "ab",
            "citrix_adc.log.x",
            "citrix_adc-log",
            "citrix_a",
            "é.x",
            "~",
        ];
        for a in paths {
            for b in paths {
                if word(a) != word(b) {
                    assert_eq!(word(a).cmp(&word(b)), cmp_path(a, b), "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn keys_that_need_escapes_are_escaped() {
        let mut doc = Doc::new();
        doc.insert("a.\"quoted\"", Val::Int(1));
        doc.insert("a.back\\slash", Val::Int(2));
        doc.insert("a.tab\tkey", Val::Int(3));
        let back: Json = serde_json::from_slice(&doc.to_vec()).unwrap();
        assert_eq!(back, json!({"a": {"\"quoted\"": 1, "back\\slash": 2, "tab\tkey": 3}}));
    }

    #[test]
    fn paths_sort_step_by_step() {
        let mut paths = ["a-b.c", "a.x", "ab", "a", "a.x.y", "@timestamp", "a.w"];
        paths.sort_by(|a, b| cmp_path(a, b));
        assert_eq!(paths, ["@timestamp", "a", "a.w", "a.x", "a.x.y", "a-b.c", "ab"]);
    }
}
