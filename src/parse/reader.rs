//! Reader: a log file's text → records, joining what one record spans over several lines (bash's
//! multi-line `shell_command="..."`, honeypot request dumps): [`records`] borrows them from a text in
//! memory, [`Stream`] reads them from a stream one at a time.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::appliance;

/// The clock a file's records are read against (`received`: it dates records without a date and
/// completes year-less timestamps): the file's modification time, when the last of its lines was
/// written — not the wall clock, so the same file parses the same on any day.
pub fn file_clock(path: &Path) -> Option<DateTime<Utc>> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
}

/// One record of a file: its first line number (1-based) and its text, newlines included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordText<'a> {
    pub line: usize,
    pub text: &'a str,
}

/// A `shell_command="` whose closing quote is not on this line.
fn opens_shell_command(line: &str) -> bool {
    match line.find("shell_command=\"") {
        Some(i) => {
            let value = &line[i + 15..];
            value.is_empty() || !value.ends_with('"')
        }
        None => false,
    }
}

/// A honeypot hit banner: the date line alone, the request dump follows.
fn opens_honeypot_dump(line: &str) -> bool {
    matches!(appliance::honeypot_start(line), Some((_, rest)) if rest.trim().is_empty())
}

/// How a record that starts with a given line goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuation {
    /// The line is the record.
    Single,
    /// Up to and including the line that ends with the closing quote (or the end of the input).
    ClosingQuote,
    /// Up to the next honeypot banner (or the end of the input).
    NextBanner,
}

impl Continuation {
    fn of(line: &str) -> Continuation {
        if opens_shell_command(line) {
            Continuation::ClosingQuote
        } else if opens_honeypot_dump(line) {
            Continuation::NextBanner
        } else {
            Continuation::Single
        }
    }

    /// Whether `next` (without its line end) belongs to the record.
    fn takes(self, next: &str) -> bool {
        match self {
            Continuation::Single => false,
            Continuation::ClosingQuote => true,
            Continuation::NextBanner => appliance::honeypot_start(next).is_none(),
        }
    }

    /// Whether the record is complete once `line` (without its line end), a line after its first, is
    /// in it.
    fn closed_by(self, line: &str) -> bool {
        match self {
            Continuation::Single => true,
            Continuation::ClosingQuote => line.ends_with('"'),
            Continuation::NextBanner => false,
        }
    }
}

fn without_line_end(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// Splits `text` into records. Blank lines between records are skipped.
pub fn records(text: &str) -> Vec<RecordText<'_>> {
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0usize, |offset, line| {
            let start = *offset;
            *offset += line.len();
            Some((start, line))
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, raw) = lines[i];
        let line = without_line_end(raw);
        if line.trim_ascii().is_empty() {
            i += 1;
            continue;
        }
        let first = i;
        let mut last = i;
        let continuation = Continuation::of(line);
        let mut closed = continuation == Continuation::Single;
        while !closed && last + 1 < lines.len() && continuation.takes(without_line_end(lines[last + 1].1)) {
            last += 1;
            closed = continuation.closed_by(without_line_end(lines[last].1));
        }
        let end = lines[last].0 + lines[last].1.len();
        // Line ends go; trailing blanks stay (they are part of `event.original` and of the body).
        let record = text[start..end].trim_end_matches(['\n', '\r']);
        out.push(RecordText { line: first + 1, text: record });
        i = last + 1;
    }
    out
}

/// One record read from a stream: its first line number (1-based) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub line: usize,
    pub text: String,
}

/// The records of a stream, as [`records`] splits a text, read a line at a time: memory holds one
/// record, whatever the size of the input. A record joined over lines (an unclosed `shell_command`, a
/// honeypot dump) ends after `max_bytes`, so a malformed file cannot make one record of everything.
/// Bytes that are not UTF-8 are replaced, line by line, as [`String::from_utf8_lossy`] replaces them.
pub struct Stream<R> {
    input: R,
    /// Lines read so far.
    lines: usize,
    /// A line read ahead (it did not belong to the record before it), with its number.
    ahead: Option<(usize, String)>,
    max_bytes: usize,
    buf: Vec<u8>,
}

/// The default bound of one record joined over lines.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

impl<R: std::io::BufRead> Stream<R> {
    pub fn new(input: R) -> Stream<R> {
        Stream::with_max_bytes(input, MAX_RECORD_BYTES)
    }

    pub fn with_max_bytes(input: R, max_bytes: usize) -> Stream<R> {
        Stream { input, lines: 0, ahead: None, max_bytes, buf: Vec::new() }
    }

    /// The next line with its line end, and its number.
    fn line(&mut self) -> std::io::Result<Option<(usize, String)>> {
        if let Some(line) = self.ahead.take() {
            return Ok(Some(line));
        }
        self.buf.clear();
        if self.input.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        self.lines += 1;
        let text = match std::str::from_utf8(&self.buf) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&self.buf).into_owned(),
        };
        Ok(Some((self.lines, text)))
    }

    /// The next record into `record` (its text replaced); `false` at the end of the input.
    pub fn next_into(&mut self, record: &mut Record) -> std::io::Result<bool> {
        let (number, first) = loop {
            match self.line()? {
                None => return Ok(false),
                Some((_, line)) if without_line_end(&line).trim_ascii().is_empty() => {}
                Some(line) => break line,
            }
        };
        let continuation = Continuation::of(without_line_end(&first));
        record.line = number;
        record.text.clear();
        record.text.push_str(&first);
        let mut closed = continuation == Continuation::Single;
        while !closed && record.text.len() < self.max_bytes {
            let Some((n, next)) = self.line()? else { break };
            if !continuation.takes(without_line_end(&next)) {
                self.ahead = Some((n, next));
                break;
            }
            closed = continuation.closed_by(without_line_end(&next));
            record.text.push_str(&next);
        }
        let kept = record.text.trim_end_matches(['\n', '\r']).len();
        record.text.truncate(kept);
        Ok(true)
    }
}

impl<R: std::io::BufRead> Iterator for Stream<R> {
    type Item = std::io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = Record::default();
        match self.next_into(&mut record) {
            Ok(true) => Some(Ok(record)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_multi_line_shell_commands_and_honeypot_dumps() {
        let text = "a\n\nJan 19 24:26:52 <local7.notice> ns bash[1297]: root on /dev/pts/0 shell_command=\"\npkill x;\ncurl y\"\nb shell_command=\"\"\n2020/01/23 08:27:55 \n---\nsrc: 1.2.3.4\n\nbody\n2020/01/23 09:00:00 Failed login from 1.2.3.4 user:a pass:b\n";
        let r = records(text);
        let texts: Vec<&str> = r.iter().map(|r| r.text).collect();
        assert_eq!(
            texts,
            vec![
                "a",
                "Jan 19 24:26:52 <local7.notice> ns bash[1297]: root on /dev/pts/0 shell_command=\"\npkill x;\ncurl y\"",
                "b shell_command=\"\"",
                "2020/01/23 08:27:55 \n---\nsrc: 1.2.3.4\n\nbody",
                "2020/01/23 09:00:00 Failed login from 1.2.3.4 user:a pass:b",
            ]
        );
        assert_eq!(r[1].line, 3);
    }

    #[test]
    fn an_unclosed_command_ends_at_the_end_of_the_text() {
        let r = records("x shell_command=\"abc\ndef");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].text, "x shell_command=\"abc\ndef");
    }

    fn streamed(text: &str, max_bytes: usize) -> Vec<Record> {
        Stream::with_max_bytes(text.as_bytes(), max_bytes).collect::<std::io::Result<_>>().unwrap()
    }

    #[test]
    fn a_stream_gives_the_records_of_the_text() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public-samples");
        let mut texts = vec![
            "a\n\nJan 19 24:26:52 <local7.notice> ns bash[1297]: root on /dev/pts/0 shell_command=\"\npkill x;\ncurl y\"\nb shell_command=\"\"\n2020/01/23 08:27:55 \n---\nsrc: 1.2.3.4\n\nbody\r\n\n".to_owned(),
            "x shell_command=\"\n\nabc\r\ndef".to_owned(),
        ];
        for entry in std::fs::read_dir(dir).unwrap() {
            texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
        for text in &texts {
            let expected: Vec<Record> =
                records(text).iter().map(|r| Record { line: r.line, text: r.text.to_owned() }).collect();
            assert_eq!(streamed(text, MAX_RECORD_BYTES), expected);
        }
    }

    #[test]
    fn a_stream_ends_a_joined_record_at_its_bound_and_replaces_bytes_that_are_not_utf8() {
        let text = "x shell_command=\"\nline two\nline three\nline four\"\nnext";
        let r = streamed(text, 20);
        assert_eq!(r[0], Record { line: 1, text: "x shell_command=\"\nline two".into() });
        assert_eq!(r[1].line, 3, "what follows the bound is read on as records");
        assert_eq!(r.last().unwrap().text, "next");
        let r: Vec<Record> = Stream::new(&b"ok\n\xff\xfe bad\n"[..]).collect::<std::io::Result<_>>().unwrap();
        assert_eq!(r[1].text, "\u{fffd}\u{fffd} bad");
    }
}
