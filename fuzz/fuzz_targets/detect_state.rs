//! Any bytes as entries of a partition's detection state (`detect.state_topic`): restoring them never
//! panics, and the restored worker evaluates records, expires windows and writes its changes on.
#![no_main]

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use gatewatch::detect::{DetectOptions, Publish, RuleSet, Worker};
use gatewatch::ecs::{Origin, SourceRef};
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static (RuleSet, DetectOptions) {
    static RULES: OnceLock<(RuleSet, DetectOptions)> = OnceLock::new();
    RULES.get_or_init(|| {
        let options = gatewatch::config::Settings::default().detect.options();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let (set, errors) = RuleSet::load(&[dir], &options);
        assert!(errors.is_empty(), "{errors:?}");
        (set, options)
    })
}

fuzz_target!(|input: &[u8]| {
    let (set, options) = rules();
    let mut worker = Worker::new(Publish::Immediately);
    // Entries separated by 0xff: `key 0x00 value` (no 0x00: a deletion). Keys of the real kinds are
    // likelier with a kind prefix the fuzzer can find in the dictionary of the seeds.
    for entry in input.split(|b| *b == 0xff) {
        let (key, value) = match entry.iter().position(|b| *b == 0) {
            Some(i) => (&entry[..i], Some(&entry[i + 1..])),
            None => (entry, None),
        };
        let Ok(key) = std::str::from_utf8(key) else { continue };
        let _ = worker.restore_entry(key, value);
    }
    for i in 0..12i64 {
        let at = Utc.with_ymd_and_hms(2020, 1, 11, 10, 0, 0).unwrap() + chrono::Duration::seconds(i * 10);
        let doc = serde_json::json!({
            "@timestamp": at.to_rfc3339(),
            "event": {"dataset": "citrix_adc.log", "original": "x"},
            "citrix_adc": {"log": {"name": "LOGIN_FAILED"}},
            "observer": {"hostname": "vpx01"},
            "user": {"name": "bob"},
            "source": {"ip": "198.51.100.50"},
        });
        let doc = &gatewatch::doc::Doc::from_json(doc.as_object().unwrap().clone());
        let _ = worker.evaluate(
            set,
            options,
            doc,
            Origin::Kafka(SourceRef { topic: "adc.raw", partition: 0, offset: i }),
            at,
            at,
        );
    }
    let _ = worker.open_summaries();
    let changes = worker.take_changes(1 << 16);
    let mut again = Worker::new(Publish::Immediately);
    for (key, value) in &changes {
        again.restore_entry(key, value.as_deref()).expect("what a worker writes, a worker reads");
    }
    let _ = worker.flush_all();
});
