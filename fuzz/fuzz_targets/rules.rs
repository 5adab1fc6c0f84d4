//! Any text as a rule file: no panic; a rule that compiles evaluates a record without panicking, and a
//! broken one is an error naming the file.
#![no_main]

use gatewatch::detect::{Publish, RuleSet, Worker};
use gatewatch::ecs::{Origin, SourceRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let options = gatewatch::config::Settings::default().detect.options();
    let (set, errors) = RuleSet::from_yaml(text, "fuzz.yml", &options);
    for error in &errors {
        assert_eq!(error.file, "fuzz.yml");
    }
    let doc = serde_json::json!({
        "@timestamp": "2020-01-11T10:00:00Z",
        "event": {"dataset": "citrix_adc.httpaccess", "category": ["web"], "original": "GET /vpn/../vpns/cfg/smb.conf"},
        "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
        "url": {"original": "/vpn/../vpns/cfg/smb.conf", "path": "/vpns/cfg/smb.conf"},
        "gatewatch": {"url": {"normalized_path": "/vpns/cfg/smb.conf"}},
        "source": {"ip": "203.0.113.9", "port": 443},
        "observer": {"hostname": "vpx01"},
        "user": {"name": "bob"},
        "process": {"command_line": "sh -c id"},
    });
    let doc = &gatewatch::doc::Doc::from_json(doc.as_object().unwrap().clone());
    let mut worker = Worker::new(Publish::Immediately);
    let at = chrono::DateTime::parse_from_rfc3339("2020-01-11T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    for i in 0..3i64 {
        let at = at + chrono::Duration::seconds(i);
        let _ = worker.evaluate(
            &set,
            &options,
            doc,
            Origin::Kafka(SourceRef { topic: "adc.raw", partition: 0, offset: i }),
            at,
            at,
        );
    }
    let _ = worker.flush_all();
});
