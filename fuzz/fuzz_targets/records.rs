//! Any text: the file reader never panics, returns records that lie inside the text in order without
//! overlapping, loses no non-blank byte, and a stream of the same bytes splits the same.
#![no_main]

use gatewatch::parse::reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let base = text.as_ptr() as usize;
    let mut covered = vec![false; text.len()];
    let mut last_end = 0;
    for record in reader::records(text) {
        let start = record.text.as_ptr() as usize - base;
        let end = start + record.text.len();
        assert!(end <= text.len() && start >= last_end, "records out of order or overlapping");
        assert!(!record.text.trim_ascii().is_empty(), "blank record");
        covered[start..end].iter_mut().for_each(|c| *c = true);
        last_end = end;
    }
    // A stream read line by line gives the same records.
    let streamed: Vec<reader::Record> = reader::Stream::new(data).collect::<std::io::Result<_>>().unwrap();
    let split: Vec<(usize, &str)> = reader::records(text).iter().map(|r| (r.line, r.text)).collect();
    let streamed: Vec<(usize, &str)> = streamed.iter().map(|r| (r.line, r.text.as_str())).collect();
    assert_eq!(streamed, split, "a stream splits differently");
    for (i, b) in text.bytes().enumerate() {
        assert!(covered[i] || b.is_ascii_whitespace(), "byte {i} ({b:#x}) belongs to no record");
    }
});
