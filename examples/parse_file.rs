//! Parses a file of ADC lines (one per line, `#` lines skipped) and prints what each became.
//! `cargo run --example parse_file -- FILE...`

use chrono::Utc;
use gatewatch::parse::{parse, Limits};

fn main() {
    let limits = Limits { max_line: 1 << 16 };
    let (mut ok, mut bad) = (0, 0);
    for path in std::env::args().skip(1) {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"#")) {
            match parse(line, Utc::now(), limits) {
                Ok(e) => {
                    ok += 1;
                    println!("ok   {:?} {:?} {:?} {}", e.appliance(), e.header.feature, e.header.name, e.timestamp);
                }
                Err(err) => {
                    bad += 1;
                    println!("{:<4} {}", err.code(), String::from_utf8_lossy(&line[..line.len().min(140)]));
                }
            }
        }
    }
    eprintln!("{ok} parsed, {bad} rejected");
}
