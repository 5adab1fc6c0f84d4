//! Reader: a log file's text → records, joining what one record spans over several lines (bash's
//! multi-line `shell_command="..."`, honeypot request dumps). Records borrow from the text.

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
        let line = raw.trim_end_matches(['\n', '\r']);
        if line.trim_ascii().is_empty() {
            i += 1;
            continue;
        }
        let first = i;
        let mut last = i;
        if opens_shell_command(line) {
            while last + 1 < lines.len() {
                last += 1;
                if lines[last].1.trim_end_matches(['\n', '\r']).ends_with('"') {
                    break;
                }
            }
        } else if opens_honeypot_dump(line) {
            while last + 1 < lines.len() && appliance::honeypot_start(lines[last + 1].1).is_none() {
                last += 1;
            }
        }
        let end = lines[last].0 + lines[last].1.len();
        // Line ends go; trailing blanks stay (they are part of `event.original` and of the body).
        let record = text[start..end].trim_end_matches(['\n', '\r']);
        out.push(RecordText { line: first + 1, text: record });
        i = last + 1;
    }
    out
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
}
