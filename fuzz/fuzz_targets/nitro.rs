//! Any bytes as a NITRO `/nitro/v1/stat/system` answer (first byte: the HTTP status): no panic; an
//! answer read as counters gives fractions in [0, 1] under known fields, and the sample written from
//! them parses back with the same values; anything else is an error with a bounded code and message.
#![no_main]

use chrono::{TimeZone, Utc};
use gatewatch::baseline::nitro::{read_stats, sample_json, COUNTERS};
use gatewatch::baseline::{Sample, METRICS};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 201, 302, 401, 403, 404, 500, 503];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else { return };
    let status = STATUSES[selector as usize % STATUSES.len()];
    let body = String::from_utf8_lossy(body);
    match read_stats(status, Some("https://elsewhere.test/"), &body) {
        Ok(values) => {
            assert!((200..300).contains(&status), "HTTP {status} read as counters");
            assert!(!values.is_empty() && values.len() <= COUNTERS.len());
            for (field, value) in &values {
                assert!(COUNTERS.iter().any(|(_, f)| f == field), "unknown field {field}");
                assert!((0.0..=1.0).contains(value), "{field} = {value} is not a fraction");
            }
            let at = Utc.with_ymd_and_hms(2020, 1, 10, 12, 0, 0).unwrap();
            let sample = Sample::parse(&sample_json("adc-1", at, &values)).expect("a poll's sample parses");
            assert_eq!(sample.host, "adc-1");
            assert_eq!(sample.at, at);
            for (field, value) in &values {
                let index = METRICS.iter().position(|(f, _)| f == field).expect("a counter field is a metric");
                assert!(
                    sample.values.contains(&(index, *value)),
                    "{field} = {value} not read back: {:?}",
                    sample.values
                );
            }
        }
        Err(error) => {
            assert!(!error.code().is_empty());
            assert!(error.to_string().len() < 1024, "an error message quotes at most a bounded part of the body");
            if status == 401 || status == 403 {
                assert_eq!(error.code(), "auth_failed");
            }
        }
    }
});
