//! `fulcrum replay`: backtests policies on a recorded cluster and recorded samples, and
//! prints the decisions the engine would take.
//!
//! The cluster file is a Kubernetes `List` (as `kubectl get nodes,pods,pdb,namespaces -A
//! -o yaml` prints; JSON too), the policies are `InterferencePolicy` documents, and the
//! events are JSON Lines of `fulcrum.metrics/v1` messages. The recorded world is kept as
//! it is: an evicted or migrated pod stays in place, but is never targeted twice.

mod order;
pub mod output;

pub use order::{Disorder, MAX_SORT_BYTES, OrderError, Ordered, order_events, order_events_within};

use std::io::BufRead;
use std::path::{Path, PathBuf};

use fulcrum_engine::sample::{DecodeError, DecodeOptions};
use fulcrum_engine::{Decision, Engine, EngineConfig, Event};

use crate::inputs::{Input, InputFormat, InputSpec, InputStats};
use crate::load::build_engine;
pub use crate::load::{InvalidPolicies, LoadError};

pub use output::{render_json, render_text, summary_json};

/// Inputs of a replay.
#[derive(Clone, Debug)]
pub struct ReplayInput {
    /// Cluster snapshot files.
    pub cluster: Vec<PathBuf>,
    /// Policy files.
    pub policies: Vec<PathBuf>,
    /// Engine settings.
    pub config: EngineConfig,
}

/// A rejected line of the events file (or message of a topic).
#[derive(Clone, Debug, PartialEq)]
pub struct LineError {
    /// Where: the 1-based line number for a file, `topic[partition]@offset` for Kafka.
    pub location: String,
    /// Why it was rejected (for batches: one per rejected member).
    pub error: DecodeError,
}

/// Everything a replay produced.
#[derive(Debug)]
pub struct ReplayReport {
    /// Detections, decisions and recoveries, in order.
    pub events: Vec<Event>,
    /// Lines (or batch members) that were rejected.
    pub line_errors: Vec<LineError>,
    /// Lines read.
    pub lines: usize,
    /// Problems with policies that were skipped (name, error lines).
    pub invalid_policies: InvalidPolicies,
    /// Where the events file went back in time, when it had to be sorted first.
    pub sorted: Option<Disorder>,
    /// Problems in the cluster files (invalid names, pods on unknown nodes), with the file.
    pub cluster_problems: Vec<String>,
    /// The engine at the end, for its counters.
    pub engine: Engine,
    /// Counters of the OTLP or Prometheus input (zero for the native schema).
    pub input: InputStats,
}

impl ReplayReport {
    /// The decisions, in order.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.events.iter().filter_map(|e| match e {
            Event::Decision(d) => Some(d.as_ref()),
            _ => None,
        })
    }
}

/// Builds an engine from the cluster and policy files; also answers the cluster files'
/// problems.
pub fn prepare(input: &ReplayInput) -> Result<(Engine, InvalidPolicies, Vec<String>), LoadError> {
    build_engine(&input.cluster, &input.policies, input.config.clone())
}

/// Replays JSON Lines of `fulcrum.metrics/v1` from `events` through `engine`. `now_ms` is
/// the clock used to reject timestamps far in the future.
pub fn replay_lines(
    engine: &mut Engine,
    events: impl BufRead,
    now_ms: i64,
) -> Result<(Vec<Event>, Vec<LineError>, usize), std::io::Error> {
    replay_lines_as(engine, events, now_ms, &mut Input::new(InputSpec::native()))
}

/// Replays lines from `events` through `engine`, decoded by `input` (one message per
/// line: native or Prometheus-adapter JSON, or OTLP JSON as the Collector's file exporter
/// writes it).
pub fn replay_lines_as(
    engine: &mut Engine,
    events: impl BufRead,
    now_ms: i64,
    input: &mut Input,
) -> Result<(Vec<Event>, Vec<LineError>, usize), std::io::Error> {
    let mut lines = 0;
    let mut buf = Vec::new();
    let mut reader = events;
    let mut numbered = std::iter::from_fn(|| {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                lines += 1;
                Some(Ok((lines, buf.clone())))
            }
            Err(e) => Some(Err(e)),
        }
    });
    let (out, errors) = replay_numbered(engine, &mut numbered, now_ms, input)?;
    Ok((out, errors, lines))
}

/// Replays numbered lines (original 1-based numbers) through `engine`, decoded by
/// `input`, then flushes (with the samples `input` still held).
fn replay_numbered(
    engine: &mut Engine,
    lines: &mut dyn Iterator<Item = std::io::Result<(usize, Vec<u8>)>>,
    now_ms: i64,
    input: &mut Input,
) -> Result<(Vec<Event>, Vec<LineError>), std::io::Error> {
    let options = DecodeOptions { now_ms };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for item in lines {
        let (number, raw) = item?;
        let line = trim_line(&raw);
        if line.is_empty() {
            continue;
        }
        match input.decode(line, &options) {
            Ok(decoded) => {
                engine.offer_each(&decoded.samples, |_, _, _, _| {});
                errors.extend(decoded.rejected.into_iter().map(|error| LineError {
                    location: number.to_string(),
                    error,
                }));
            }
            Err(error) => errors.push(LineError {
                location: number.to_string(),
                error,
            }),
        }
        engine.advance_auto(&mut out);
    }
    let rest = input.finish();
    engine.offer_each(&rest.samples, |_, _, _, _| {});
    errors.extend(rest.rejected.into_iter().map(|error| LineError {
        location: "(end of input)".into(),
        error,
    }));
    engine.flush(&mut out);
    Ok((out, errors))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &line[start..end]
}

/// Runs a whole replay from files of `fulcrum.metrics/v1` samples.
pub fn replay_files(
    input: &ReplayInput,
    events: &Path,
    now_ms: i64,
) -> Result<ReplayReport, LoadError> {
    replay_files_as(input, events, now_ms, InputSpec::native())
}

/// Runs a whole replay from files, the events decoded as `format` says. The order check
/// (and sort) of the events file applies to the native schema only.
pub fn replay_files_as(
    input: &ReplayInput,
    events: &Path,
    now_ms: i64,
    format: InputSpec,
) -> Result<ReplayReport, LoadError> {
    replay_files_within(input, events, now_ms, format, MAX_SORT_BYTES)
}

/// [`replay_files_as`] sorting an events file out of time order only when it is at most
/// `max_sort_bytes`; a larger one is an error naming it (see [`order_events_within`]).
pub fn replay_files_within(
    input: &ReplayInput,
    events: &Path,
    now_ms: i64,
    format: InputSpec,
    max_sort_bytes: u64,
) -> Result<ReplayReport, LoadError> {
    let mut decoder = Input::new(format);
    let (mut engine, invalid_policies, cluster_problems) = prepare(input)?;
    let path = events.display().to_string();
    let read_error = |source| LoadError::Read {
        path: path.clone(),
        source,
    };
    let ordered = match format.format {
        InputFormat::Native => {
            order_events_within(events, input.config.lateness_ms, now_ms, max_sort_bytes)
        }
        _ => Ok(Ordered::AsIs),
    }
    .map_err(|e| match e {
        OrderError::Read(source) => read_error(source),
        // The message starts with the file and the line.
        other => LoadError::Unordered(other.to_string()),
    })?;
    let (events_out, line_errors, lines, sorted) = match ordered {
        Ordered::AsIs => {
            let file = std::fs::File::open(events).map_err(read_error)?;
            let reader = std::io::BufReader::new(file);
            let (out, errors, lines) =
                replay_lines_as(&mut engine, reader, now_ms, &mut decoder).map_err(read_error)?;
            (out, errors, lines, None)
        }
        Ordered::Sorted(lines, disorder) => {
            let count = lines.len();
            let mut numbered = lines.into_iter().map(Ok);
            let (out, errors) = replay_numbered(&mut engine, &mut numbered, now_ms, &mut decoder)
                .map_err(read_error)?;
            (out, errors, count, Some(disorder))
        }
    };
    Ok(ReplayReport {
        events: events_out,
        line_errors,
        lines,
        invalid_policies,
        engine,
        sorted,
        cluster_problems,
        input: decoder.stats().clone(),
    })
}
