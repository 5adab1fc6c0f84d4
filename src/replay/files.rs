//! File replays: inputs read as streams (plain, `.gz`, `.zst`, stdin), records put in event-time order
//! by the external merge sort (`order`), then processed by `pipeline.workers` threads — each appliance
//! by one — and applied in the merge's order.

use super::error::{io, refused, ReplayError, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{order, progress_bar, Analysed, Analyser, Engine, Options};
use crate::detect::{Alert, Publish, Worker};
use crate::ecs::Origin;
use crate::parse::{self, reader, Dataset, TimestampSource};

/// Expands globs; a pattern that matches nothing is an error naming it.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            let mut matched: Vec<PathBuf> = glob::glob(pattern)
                .map_err(|source| ReplayError::Glob { pattern: pattern.clone(), source })?
                .filter_map(std::result::Result::ok)
                .collect();
            if matched.is_empty() {
                return Err(refused(format!("--input {pattern}: matches no file")));
            }
            matched.sort();
            out.extend(matched);
        } else {
            out.push(PathBuf::from(pattern));
        }
    }
    Ok(out)
}

/// A file's bytes, decompressed by extension (`.gz`, `.zst`); `-` is standard input, as it comes.
/// More than `limit` bytes (decompressed) is refused, naming the file: what is read whole is bounded,
/// whatever a compressed file inflates to.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io(format!("reading {}", path.display())))?;
    if out.len() as u64 > limit {
        return Err(refused(format!(
            "{}: more than {} once decompressed; this input is read whole, so split it (by appliance or time)",
            path.display(),
            bytesize::ByteSize::b(limit)
        )));
    }
    Ok(out)
}

/// A file as a stream, decompressed by extension (`.gz`, `.zst`); `-` is standard input.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    const BUFFER: usize = 1 << 16;
    if path == Path::new("-") {
        return Ok(Box::new(std::io::BufReader::with_capacity(BUFFER, std::io::stdin())));
    }
    let file = std::fs::File::open(path).map_err(io(format!("{}", path.display())))?;
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(std::io::BufReader::with_capacity(BUFFER, flate2::read::MultiGzDecoder::new(file))),
        Some("zst") => Box::new(std::io::BufReader::with_capacity(
            BUFFER,
            zstd::stream::read::Decoder::new(file).map_err(io(format!("{}", path.display())))?,
        )),
        _ => Box::new(std::io::BufReader::with_capacity(BUFFER, file)),
    })
}

/// The dataset a file name implies, looking through a compression extension.
pub(super) fn hint_for(path: &Path) -> Option<Dataset> {
    let name = path.to_string_lossy();
    let name = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).unwrap_or(&name);
    Dataset::from_path(name)
}

/// The appliance of a file's records that do not name one (the appliance's own httpaccess, bash and
/// cron files): the directory the file sits in, as a collection laid out `<appliance>/<file>` has it.
pub(super) fn directory_appliance(path: &Path) -> Option<String> {
    let dir = path.parent()?.file_name()?.to_str()?;
    (!dir.is_empty() && dir != "." && dir != "..").then(|| dir.to_owned())
}

/// Files: every record parsed once to learn its appliance and time, then replayed in event-time order
/// (ties in appliance, file and line order), each appliance's records by one worker thread with the
/// appliance's detection state. Files are read as streams and ordered by an external merge sort
/// ([`order`]), so memory stays within `sort_memory` plus the engine's whatever the input.
pub(super) fn replay_files(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    options: &Options,
    inputs: &[(String, u64)],
    workers: usize,
) -> Result<()> {
    // A record is read against the end of the replay window, else its file's modification time: never
    // the wall clock, so a replay's output does not depend on the day it runs.
    let mut clocks = Vec::new();
    let mut hints = Vec::new();
    let mut sorter = order::Sorter::new(options.sort_memory, std::env::temp_dir());
    // Records per appliance, to spread the appliances over the threads.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for (i, (name, _)) in inputs.iter().enumerate() {
        let path = Path::new(name);
        let hint = hint_for(path);
        let received = options.to.or_else(|| reader::file_clock(path)).unwrap_or_else(Utc::now);
        clocks.push(received);
        hints.push(hint);
        let dir = directory_appliance(path);
        let mut stream = reader::Stream::new(open(path)?);
        let mut record = reader::Record::default();
        while stream.next_into(&mut record).map_err(io(format!("reading {name}")))? {
            // Only the time and the appliance are needed here: the body is parsed by the worker.
            // The record's appliance and time, when it is in the range (`Ok(None)`: it is not).
            let located = match parse::locate(record.text.as_bytes(), received, &analyser.ctx, hint) {
                // A record without a time of its own (an httperror line) is dated by the replay, and
                // belongs to it whatever the range.
                Ok(event)
                    if event.timestamp_source == TimestampSource::Record
                        || (event.timestamp >= options.from && options.to.is_none_or(|to| event.timestamp < to)) =>
                {
                    let host =
                        event.appliance().map(str::to_owned).or_else(|| dir.clone()).unwrap_or_else(|| "-".into());
                    Ok(Some((host, event.timestamp)))
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            match located {
                Ok(Some((host, at))) => {
                    match sizes.get_mut(&host) {
                        Some(n) => *n += 1,
                        None => {
                            sizes.insert(host.clone(), 1);
                        }
                    }
                    let text = std::mem::take(&mut record.text);
                    sorter
                        .push(order::Item { host, at, file: i as u32, line: record.line as u64, text })
                        .map_err(io("ordering the records"))?;
                }
                Ok(None) => {}
                Err(_) => {
                    engine.summary.records += 1;
                    engine.summary.unparsed += 1;
                }
            }
        }
    }
    let (ordered, stats) = sorter.finish().map_err(io("ordering the records"))?;
    engine.summary.sort_runs = stats.runs;
    let files = Files { names: inputs, clocks: &clocks, hints: &hints };
    let flushed = process_in_order(engine, analyser, options, &files, ordered, &sizes, workers)?;
    engine.finish_workers(flushed)
}

/// What the records of a file replay need from their file.
pub(super) struct Files<'a> {
    names: &'a [(String, u64)],
    clocks: &'a [DateTime<Utc>],
    hints: &'a [Option<Dataset>],
}

/// Appliance → thread: the largest appliances first, each to the thread with the fewest records so far
/// (ties to the lower thread), so the threads finish together as far as the appliances allow. The output
/// does not depend on it: each appliance's records stay in order on one thread, and what they give is
/// written in the merge's order.
pub(super) fn spread(sizes: &HashMap<String, u64>, workers: usize) -> HashMap<String, usize> {
    let mut by_size: Vec<(&String, u64)> = sizes.iter().map(|(h, n)| (h, *n)).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut load = vec![0u64; workers.max(1)];
    let mut out = HashMap::new();
    for (host, n) in by_size {
        let thread = (0..load.len()).min_by_key(|t| load[*t]).expect("at least one thread");
        load[thread] += n;
        out.insert(host.clone(), thread);
    }
    out
}

/// Records handed to the worker threads at once: consecutive in the merge's order, split by thread.
pub(super) const CHUNK: usize = 512;

/// Most chunks dispatched and not yet written out: bounds the memory of a replay's reordering whatever
/// the speed of each thread.
pub(super) const OUTSTANDING_CHUNKS: usize = 16;

/// The ordered records through `workers` threads: each appliance's records go to one thread (its
/// detection state lives there), in order; what they give is written out in the merge's order, so the
/// output is the same for any number of threads. Returns what each appliance's detection state still
/// held at the end.
/// What a worker thread hands the writer.
enum Out {
    /// Analysed records with their sequence numbers in the merge's order.
    Records(Vec<(u64, Option<Analysed>)>),
    /// At the end: the alerts of the suppression windows still open, per appliance.
    Flushed(Vec<(String, Vec<Alert>)>),
}

type Part = Vec<(u64, order::Item)>;

pub(super) fn process_in_order(
    engine: &mut Engine,
    analyser: &Analyser<'_>,
    options: &Options,
    files: &Files<'_>,
    ordered: order::Merge,
    sizes: &HashMap<String, u64>,
    workers: usize,
) -> Result<Vec<(String, Vec<Alert>)>> {
    let workers = workers.max(1);
    let bar = progress_bar(options, sizes.values().sum());
    let mut flushed = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Out>(OUTSTANDING_CHUNKS * workers);
        // A token per chunk between dispatch and write-out.
        let (token_tx, token_rx) = std::sync::mpsc::sync_channel::<()>(OUTSTANDING_CHUNKS);
        let mut inputs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Part>(OUTSTANDING_CHUNKS);
            let out_tx = out_tx.clone();
            inputs.push(tx);
            threads.push(scope.spawn(move || analyse_parts(rx, out_tx, analyser, files)));
        }
        drop(out_tx);
        let reader = scope.spawn(move || dispatch(ordered, sizes, &inputs, token_tx));
        let mut next = 0u64;
        let mut waiting = BTreeMap::new();
        let mut written = Ok(());
        'out: for out in out_rx {
            match out {
                Out::Records(results) => {
                    waiting.extend(results);
                    while let Some(analysed) = waiting.remove(&next) {
                        if next.is_multiple_of(CHUNK as u64) {
                            let _ = token_rx.recv();
                            bar.set_position(next);
                            if let Some(a) = &analysed {
                                bar.set_message(format!("{} at {}", a.host, crate::timefmt::seconds(a.at)));
                            }
                        }
                        next += 1;
                        written = engine.apply(analysed);
                        if written.is_err() {
                            break 'out;
                        }
                    }
                }
                Out::Flushed(states) => flushed.extend(states),
            }
        }
        drop(token_rx);
        let read = reader.join().map_err(|_| ReplayError::Panicked("the replay reader"))?;
        for thread in threads {
            thread.join().map_err(|_| ReplayError::Panicked("a replay worker"))?;
        }
        written?;
        read
    })?;
    bar.finish_and_clear();
    Ok(flushed)
}

/// A worker thread: analyses the parts it is sent, each appliance with its own detection state, and
/// at the end hands over what the open suppression windows hold.
fn analyse_parts(
    parts: std::sync::mpsc::Receiver<Part>,
    out: std::sync::mpsc::SyncSender<Out>,
    analyser: &Analyser<'_>,
    files: &Files<'_>,
) {
    let mut states: HashMap<String, Worker> = HashMap::new();
    for part in parts {
        let mut results = Vec::with_capacity(part.len());
        for (seq, item) in part {
            if !states.contains_key(&item.host) {
                states.insert(item.host.clone(), Worker::new(Publish::Final));
            }
            let state = states.get_mut(&item.host).expect("inserted above");
            let file = item.file as usize;
            let origin = Origin::File { file: &files.names[file].0, line: item.line as usize };
            let appliance = (item.host != "-").then_some(item.host.as_str());
            let (received, hint) = (files.clocks[file], files.hints[file]);
            results.push((seq, analyser.analyse(state, item.text.as_bytes(), received, hint, origin, appliance)));
        }
        if out.send(Out::Records(results)).is_err() {
            return; // the writer stopped on an error
        }
    }
    let _ = out.send(Out::Flushed(states.into_iter().map(|(h, mut w)| (h, w.flush_all())).collect()));
}

/// The reader thread: numbers the merged records and sends them in chunks, each record to the thread
/// of its appliance; a token per chunk bounds how many are outstanding.
fn dispatch(
    ordered: order::Merge,
    sizes: &HashMap<String, u64>,
    inputs: &[std::sync::mpsc::SyncSender<Part>],
    token: std::sync::mpsc::SyncSender<()>,
) -> Result<()> {
    let workers = inputs.len();
    let thread_of = spread(sizes, workers);
    let mut ordered = ordered.enumerate().peekable();
    while ordered.peek().is_some() {
        let mut parts: Vec<Part> = (0..workers).map(|_| Vec::new()).collect();
        for (seq, item) in ordered.by_ref().take(CHUNK) {
            let item = item.map_err(io("ordering the records"))?;
            parts[thread_of.get(&item.host).copied().unwrap_or(0)].push((seq as u64, item));
        }
        if token.send(()).is_err() {
            return Ok(()); // the writer stopped on an error
        }
        for (thread, part) in parts.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            if inputs[thread].send(part).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
