//! Event-time order for file replays in bounded memory: an external merge sort.
//!
//! Records are collected up to a memory budget, sorted by (event time, appliance, file, line) and, when
//! the input does not fit, written to an unnamed temporary file as a sorted run; the runs are then merged
//! (k-way, one record of each in memory). The order is total — file and line break ties — so a replay
//! gives the same output whatever the budget, and memory does not grow with the input: the budget plus
//! a read buffer per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// One record of a file replay, with its place in the order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Item {
    pub at: DateTime<Utc>,
    /// The appliance (`-` when unknown).
    pub host: String,
    /// Index of the input file.
    pub file: u32,
    pub line: u64,
    pub text: String,
}

impl Item {
    /// What the item costs in memory, roughly.
    fn cost(&self) -> usize {
        self.host.len() + self.text.len() + std::mem::size_of::<Item>()
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&(self.host.len() as u32).to_le_bytes())?;
        out.write_all(self.host.as_bytes())?;
        out.write_all(&self.at.timestamp().to_le_bytes())?;
        out.write_all(&self.at.timestamp_subsec_nanos().to_le_bytes())?;
        out.write_all(&self.file.to_le_bytes())?;
        out.write_all(&self.line.to_le_bytes())?;
        out.write_all(&(self.text.len() as u64).to_le_bytes())?;
        out.write_all(self.text.as_bytes())
    }

    /// The next item of a run, `None` at its end.
    fn read(input: &mut impl Read) -> std::io::Result<Option<Item>> {
        let mut u32b = [0u8; 4];
        let mut u64b = [0u8; 8];
        match input.read_exact(&mut u32b) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let mut host = String::new();
        read_text(input, u32::from_le_bytes(u32b) as usize, &mut host)?;
        input.read_exact(&mut u64b)?;
        let secs = i64::from_le_bytes(u64b);
        input.read_exact(&mut u32b)?;
        let at = DateTime::from_timestamp(secs, u32::from_le_bytes(u32b)).ok_or_else(|| corrupt("a time"))?;
        input.read_exact(&mut u32b)?;
        let file = u32::from_le_bytes(u32b);
        input.read_exact(&mut u64b)?;
        let line = u64::from_le_bytes(u64b);
        input.read_exact(&mut u64b)?;
        let mut text = String::new();
        read_text(input, u64::from_le_bytes(u64b) as usize, &mut text)?;
        Ok(Some(Item { host, at, file, line, text }))
    }
}

fn corrupt(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("replay sort run: {what} does not read back"))
}

/// Reads `len` bytes of UTF-8 text into `out`.
fn read_text(input: &mut impl Read, len: usize, out: &mut String) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(len);
    input.take(len as u64).read_to_end(&mut bytes)?;
    if bytes.len() != len {
        return Err(corrupt("a record"));
    }
    *out = String::from_utf8(bytes).map_err(|_| corrupt("a text"))?;
    Ok(())
}

/// Collects items, spilling sorted runs beyond the budget.
pub struct Sorter {
    budget: usize,
    dir: PathBuf,
    held: Vec<Item>,
    held_bytes: usize,
    runs: Vec<std::fs::File>,
    spilled: u64,
}

/// How much a sort held and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SortStats {
    /// Sorted runs written to disk (0: the input fitted the budget).
    pub runs: usize,
    /// Items written to them.
    pub spilled: u64,
}

impl Sorter {
    /// `budget`: bytes of records held before a run is written to a temporary file in `dir`.
    pub fn new(budget: usize, dir: PathBuf) -> Sorter {
        Sorter { budget: budget.max(1), dir, held: Vec::new(), held_bytes: 0, runs: Vec::new(), spilled: 0 }
    }

    pub fn push(&mut self, item: Item) -> std::io::Result<()> {
        self.held_bytes += item.cost();
        self.held.push(item);
        if self.held_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.held.sort_unstable();
        let file = tempfile::tempfile_in(&self.dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("a sort run in {}: {e}", self.dir.display())))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        for item in self.held.drain(..) {
            item.write(&mut out)?;
            self.spilled += 1;
        }
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.runs.push(file);
        self.held_bytes = 0;
        self.held.shrink_to(0);
        Ok(())
    }

    /// The items in order.
    pub fn finish(mut self) -> std::io::Result<(Merge, SortStats)> {
        self.held.sort_unstable();
        let stats = SortStats { runs: self.runs.len(), spilled: self.spilled };
        let mut merge = Merge {
            held: std::mem::take(&mut self.held).into_iter(),
            runs: self.runs.into_iter().map(|f| BufReader::with_capacity(1 << 16, f)).collect(),
            heap: BinaryHeap::new(),
            next_held: None,
        };
        merge.next_held = merge.held.next();
        for i in 0..merge.runs.len() {
            if let Some(item) = Item::read(&mut merge.runs[i])? {
                merge.heap.push(Reverse((item, i)));
            }
        }
        Ok((merge, stats))
    }
}

/// The merged, ordered items: the runs' heads in a heap, the records still held merged in.
pub struct Merge {
    held: std::vec::IntoIter<Item>,
    next_held: Option<Item>,
    runs: Vec<BufReader<std::fs::File>>,
    heap: BinaryHeap<Reverse<(Item, usize)>>,
}

impl Iterator for Merge {
    type Item = std::io::Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let from_held = match (&self.next_held, self.heap.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(held), Some(Reverse((head, _)))) => held < head,
        };
        if from_held {
            let item = self.next_held.take();
            self.next_held = self.held.next();
            return item.map(Ok);
        }
        let Reverse((item, run)) = self.heap.pop()?;
        match Item::read(&mut self.runs[run]) {
            Ok(Some(next)) => self.heap.push(Reverse((next, run))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(host: &str, secs: i64, file: u32, line: u64, text: &str) -> Item {
        Item { host: host.into(), at: DateTime::from_timestamp(secs, 7).unwrap(), file, line, text: text.into() }
    }

    #[test]
    fn spilled_runs_merge_into_the_order_of_an_in_memory_sort() {
        let mut items = Vec::new();
        // Deterministic disorder: hosts interleaved, times running backwards in places, ties on time.
        for i in 0..2_000u64 {
            let host = ["gw-b", "gw-a", "-"][(i % 3) as usize];
            let secs = 1_578_000_000 + ((i * 7_919) % 1_000) as i64;
            items.push(item(host, secs, (i % 4) as u32, i, &format!("record {i} \u{e9}")));
        }
        let mut expected = items.clone();
        expected.sort();
        let dir = tempfile::tempdir().unwrap();
        for budget in [1, 10_000, 100_000, usize::MAX] {
            let mut sorter = Sorter::new(budget, dir.path().to_owned());
            for i in &items {
                sorter.push(i.clone()).unwrap();
            }
            let (merge, stats) = sorter.finish().unwrap();
            let got: Vec<Item> = merge.collect::<std::io::Result<_>>().unwrap();
            assert_eq!(got, expected, "budget {budget}");
            if budget == usize::MAX {
                assert_eq!(stats, SortStats::default(), "nothing spilled when it fits");
            } else {
                assert!(stats.runs > 0 && stats.spilled > 0, "budget {budget}: {stats:?}");
            }
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "runs are unnamed files, gone when closed");
    }

    #[test]
    fn a_truncated_run_is_an_error_not_a_short_replay() {
        let mut bytes = Vec::new();
        item("gw", 1, 0, 1, "some text").write(&mut bytes).unwrap();
        bytes.truncate(bytes.len() - 3);
        let err = Item::read(&mut &bytes[..]).unwrap_err();
        assert!(err.to_string().contains("does not read back"), "{err}");
    }
}
