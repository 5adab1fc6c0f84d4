//! `gatewatch baseline backtest`: the service's detector over a CSV series, offline.
//!
//! Input rows are `timestamp,value` (a header naming both columns is required; other columns are
//! ignored); output rows are `timestamp,value,anomaly_score` in input order, the timestamp and value
//! written as they were read. Timestamps may be RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or Unix
//! seconds.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime};

use super::detector::{Detector, Params};

/// What a backtest read and found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    /// Rows scored at or above the threshold.
    pub anomalies: u64,
}

/// Why a backtest stopped: the file and line, and what is wrong there.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{what}: {source}")]
    Csv { what: String, source: csv::Error },
    #[error("writing the scores: {0}")]
    Write(#[from] std::io::Error),
    #[error("{file}: the header has no `{column}` column")]
    NoColumn { file: String, column: &'static str },
    #[error("{file}:{line}: timestamp {text:?} is not RFC 3339, `YYYY-MM-DD HH:MM:SS` or Unix seconds")]
    Timestamp { file: String, line: usize, text: String },
    #[error("{file}:{line}: value {text:?} is not a finite number")]
    Value { file: String, line: usize, text: String },
}

fn csv_error(what: String) -> impl FnOnce(csv::Error) -> BacktestError {
    move |source| BacktestError::Csv { what, source }
}

/// Unix seconds of a timestamp in one of the accepted forms.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    text.parse::<i64>().ok()
}

/// Scores every row of `input` into `output`.
pub fn run(input: &Path, output: &Path, params: Params) -> Result<Summary, BacktestError> {
    let file = input.display().to_string();
    let mut reader = csv::Reader::from_path(input).map_err(csv_error(format!("reading {file}")))?;
    let headers = reader.headers().map_err(csv_error(format!("reading the header of {file}")))?;
    let column = |column: &'static str| {
        headers
            .iter()
            .position(|h| h.trim() == column)
            .ok_or_else(|| BacktestError::NoColumn { file: file.clone(), column })
    };
    let (ti, vi) = (column("timestamp")?, column("value")?);
    let writing = format!("writing {}", output.display());
    let mut writer = csv::Writer::from_path(output).map_err(csv_error(writing.clone()))?;
    writer.write_record(["timestamp", "value", "anomaly_score"]).map_err(csv_error(writing.clone()))?;
    let mut detector = Detector::new(params);
    let mut summary = Summary { rows: 0, anomalies: 0 };
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(csv_error(format!("{file}:{line}")))?;
        let (ts, value) = (row.get(ti).unwrap_or(""), row.get(vi).unwrap_or(""));
        let Some(at) = parse_timestamp(ts) else {
            return Err(BacktestError::Timestamp { file, line, text: ts.to_owned() });
        };
        let x: f64 = match value.trim().parse() {
            Ok(x) if f64::is_finite(x) => x,
            _ => return Err(BacktestError::Value { file, line, text: value.to_owned() }),
        };
        let verdict = detector.update(at, x);
        summary.rows += 1;
        if verdict.score >= params.threshold {
            summary.anomalies += 1;
        }
        writer.write_record([ts, value, &format!("{:.6}", verdict.score)]).map_err(csv_error(writing.clone()))?;
    }
    writer.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        assert_eq!(parse_timestamp("2014-02-14 14:30:00"), Some(1_392_388_200));
        assert_eq!(parse_timestamp("2014-02-14T14:30:00Z"), Some(1_392_388_200));
        assert_eq!(parse_timestamp("2014-02-14T15:30:00+01:00"), Some(1_392_388_200));
        assert_eq!(parse_timestamp("1392388200"), Some(1_392_388_200));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,abc\n").unwrap();
        let error = run(&input, &dir.path().join("out.csv"), Params::default()).unwrap_err().to_string();
        assert!(error.contains("in.csv:3") && error.contains("abc"), "{error}");
    }
}
