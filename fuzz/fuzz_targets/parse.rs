//! Any bytes: `parse` never panics, borrowed fields point into the record, and both output documents
//! are valid JSON naming the source coordinates.
#![no_main]

use chrono::{TimeZone, Utc};
use gatewatch::ecs::{dead_letter_json, event_json, SourceRef};
use gatewatch::parse::{parse, Limits, ParseError};
use libfuzzer_sys::fuzz_target;

fn within(outer: &[u8], inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|data: &[u8]| {
    let received = Utc.with_ymd_and_hms(2020, 1, 10, 12, 0, 0).unwrap();
    let source = SourceRef { topic: "adc.raw", partition: 1, offset: 7 };
    match parse(data, received, Limits { max_line: 4096 }) {
        Ok(event) => {
            for field in [event.original, event.header.name, event.header.message] {
                assert!(within(data, field), "field does not borrow from the record");
            }
            assert!(!event.header.name.is_empty());
            let doc: serde_json::Value = serde_json::from_slice(&event_json(&event, source)).expect("valid JSON");
            assert_eq!(doc["gatewatch"]["source"]["offset"], 7);
            assert_eq!(doc["event"]["original"].as_str(), Some(event.original));
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
