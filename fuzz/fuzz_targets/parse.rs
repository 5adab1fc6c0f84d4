//! Any bytes, any dataset hint: `parse` never panics, every borrowed field lies inside the record,
//! parsing is deterministic, `locate` finds the same time, appliance and dataset, and both output
//! documents are valid JSON naming the source coordinates (the event's written by the flat document
//! exactly as nested maps write it).
#![no_main]

use chrono::{TimeZone, Utc};
use gatewatch::ecs::{dead_letter_json, event_doc, event_json, SourceRef};
use gatewatch::parse::{locate, parse, Dataset, ParseContext, ParseError, Value, INFERRED_NAMES};
use libfuzzer_sys::fuzz_target;

fn within(outer: &[u8], inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else { return };
    let hint = match selector as usize % (Dataset::ALL.len() + 1) {
        0 => None,
        n => Some(Dataset::ALL[n - 1]),
    };
    let received = Utc.with_ymd_and_hms(2020, 1, 10, 12, 0, 0).unwrap();
    let source = SourceRef { topic: "adc.raw", partition: 1, offset: 7 };
    let ctx = ParseContext { max_line: 4096, ..ParseContext::default() };
    let first = parse(data, received, &ctx, hint);
    assert_eq!(first, parse(data, received, &ctx, hint), "parsing is deterministic");
    // Locating a record (a replay's ordering pass) finds what parsing it finds, or the same error.
    match (&first, locate(data, received, &ctx, hint)) {
        (Ok(full), Ok(found)) => assert_eq!(
            (full.timestamp, full.timestamp_source, full.appliance(), full.dataset),
            (found.timestamp, found.timestamp_source, found.appliance(), found.dataset)
        ),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        (a, b) => panic!("parse ok {}, locate ok {}", a.is_ok(), b.is_ok()),
    }
    match first {
        Ok(event) => {
            assert!(within(data, event.original) && within(data, event.message));
            if let Some(h) = &event.header {
                assert!(within(data, h.name) || INFERRED_NAMES.contains(&h.name), "event name {:?} invented", h.name);
                for s in [h.message].into_iter().chain(h.hostname).chain(h.feature).chain(h.partition) {
                    assert!(within(data, s), "header field outside the record: {s:?}");
                }
            }
            for field in &event.fields.0 {
                match &field.value {
                    Value::Str(s) => assert!(within(data, s), "{} outside the record", field.name),
                    Value::List(items) => assert!(items.iter().all(|s| within(data, s))),
                    Value::Pairs(pairs) => assert!(pairs.iter().all(|(k, v)| within(data, k) && within(data, v))),
                    _ => {}
                }
            }
            let doc: serde_json::Value = serde_json::from_slice(&event_json(&event, source)).expect("valid JSON");
            // The flat document writes exactly what nested maps of its fields write.
            let flat = event_doc(&event, source.into());
            assert_eq!(flat.to_vec(), serde_json::to_vec(&flat.to_json()).unwrap(), "written as nested maps write it");
            assert_eq!(doc["gatewatch"]["source"]["offset"], 7);
            assert_eq!(doc["event"]["dataset"], event.dataset.as_str());
        }
        Err(error) => {
            assert!(ParseError::CODES.contains(&error.code()));
            let doc: serde_json::Value =
                serde_json::from_slice(&dead_letter_json(data, &error, source, received, 1024)).expect("valid JSON");
            assert_eq!(doc["gatewatch"]["dlq"]["original_bytes"], data.len());
            assert_eq!(doc["error"]["type"], error.code());
        }
    }
});
