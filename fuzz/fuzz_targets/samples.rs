//! Any bytes as a metric sample and as a restored baseline state record: no panic; a sample that
//! parses is scored (a series state written and read back scores the same), a broken one is an error
//! with a bounded code.
#![no_main]

use chrono::{TimeZone, Utc};
use gatewatch::baseline::{Partition, Sample};
use gatewatch::config::BaselineSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let settings = BaselineSettings::default();
    let now = Utc.with_ymd_and_hms(2020, 1, 10, 12, 0, 0).unwrap();
    // As a state record: whatever the payload, restoring it never panics, and the partition scores on.
    let mut restored = Partition::new(&settings);
    let key = gatewatch::baseline::series_key("adc-1", "system.cpu.total.pct");
    restored.restore([(key.as_bytes(), Some(input))]);
    let good = br#"{"@timestamp":"2020-01-10T11:55:00Z","observer":{"hostname":"adc-1"},"system":{"cpu":{"total":{"pct":0.4}}}}"#;
    let sample = Sample::parse(good).expect("the reference sample parses");
    let _ = restored.observe(&sample, 1, serde_json::json!({"offset": 1}), "", now);
    let _ = restored.snapshot();

    // As a sample.
    match Sample::parse(input) {
        Ok(sample) => {
            let mut partition = Partition::new(&settings);
            let original = String::from_utf8_lossy(input);
            if partition.observe(&sample, 7, serde_json::json!({"offset": 7}), &original, now).is_ok() {
                let snapshot = partition.snapshot();
                let mut again = Partition::new(&settings);
                let n = again.restore(snapshot.iter().map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))));
                assert_eq!(n, partition.counts().0, "every written series reads back");
            }
        }
        Err(error) => assert!(!error.code().is_empty()),
    }
});
