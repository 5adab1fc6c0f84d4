//! `gatewatch parse`: files (or stdin) → one ECS JSON object per record on stdout, or a per-dataset
//! count with `--stats`. Uses the same parser and settings as the service, so it answers "what will
//! gatewatch make of this line?" offline.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};

use crate::ecs::{self, Origin};
use crate::parse::{self, reader, Coverage, Dataset, ParseContext};

/// Per-dataset counts: (parsed and known, parsed but unknown event type, errors).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub parsed: u64,
    pub unknown: u64,
    pub errors: u64,
}

/// Parses the records of `input` (from `file`), one at a time, and writes one JSON line per record to
/// `out` unless `stats_only`. `hint` overrides the dataset guessed from the file name; `received` dates
/// records without a date and completes year-less timestamps.
pub fn parse_stream(
    file: &str,
    input: impl std::io::BufRead,
    received: DateTime<Utc>,
    ctx: &ParseContext,
    hint: Option<Dataset>,
    stats: &mut BTreeMap<&'static str, Counts>,
    mut out: Option<&mut dyn Write>,
) -> std::io::Result<()> {
    let hint = hint.or_else(|| Dataset::from_path(file));
    let mut stream = reader::Stream::new(input);
    let mut record = reader::Record::default();
    while stream.next_into(&mut record).map_err(|e| std::io::Error::new(e.kind(), format!("{file}: {e}")))? {
        let origin = Origin::File { file, line: record.line };
        let json = match parse::parse(record.text.as_bytes(), received, ctx, hint) {
            Ok(event) => {
                let counts = stats.entry(event.dataset.as_str()).or_default();
                match event.coverage {
                    Coverage::Known => counts.parsed += 1,
                    Coverage::Unknown => counts.unknown += 1,
                }
                out.is_some().then(|| ecs::event_json(&event, origin))
            }
            Err(error) => {
                stats.entry(hint.map(Dataset::as_str).unwrap_or("-")).or_default().errors += 1;
                out.is_some()
                    .then(|| ecs::dead_letter_json(record.text.as_bytes(), &error, origin, received, usize::MAX))
            }
        };
        if let (Some(out), Some(json)) = (out.as_deref_mut(), json) {
            out.write_all(&json)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// The command: every path (`-` or none = stdin). Returns the counts. A file's records are read
/// against its modification time ([`reader::file_clock`]), standard input's against the wall clock.
pub fn run(
    paths: &[String],
    ctx: &ParseContext,
    hint: Option<Dataset>,
    stats_only: bool,
) -> std::io::Result<BTreeMap<&'static str, Counts>> {
    let mut stats = BTreeMap::new();
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    let stdin_only = ["-".to_owned()];
    let paths = if paths.is_empty() { &stdin_only[..] } else { paths };
    for path in paths {
        let out: Option<&mut dyn Write> = if stats_only { None } else { Some(&mut lock) };
        if path == "-" {
            parse_stream(path, std::io::stdin().lock(), Utc::now(), ctx, hint, &mut stats, out)?;
        } else {
            let file = std::fs::File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))?;
            let received = reader::file_clock(std::path::Path::new(path)).unwrap_or_else(Utc::now);
            let input = std::io::BufReader::with_capacity(1 << 16, file);
            parse_stream(path, input, received, ctx, hint, &mut stats, out)?;
        }
    }
    if stats_only {
        writeln!(lock, "{:<24} {:>8} {:>8} {:>8}", "dataset", "parsed", "unknown", "errors")?;
        for (dataset, c) in &stats {
            writeln!(lock, "{dataset:<24} {:>8} {:>8} {:>8}", c.parsed, c.unknown, c.errors)?;
        }
    }
    lock.flush()?;
    Ok(stats)
}
