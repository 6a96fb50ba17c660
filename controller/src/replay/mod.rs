//! `fulcrum replay`: backtests policies on a recorded cluster and recorded samples, and
//! prints the decisions the engine would take.
//!
//! The cluster file is a Kubernetes `List` (as `kubectl get nodes,pods,pdb,namespaces -A
//! -o yaml` prints; JSON too), the policies are `InterferencePolicy` documents, and the
//! events are JSON Lines of `fulcrum.metrics/v1` messages. The recorded world is kept as
//! it is: an evicted or migrated pod stays in place, but is never targeted twice.

mod order;
pub mod output;

pub use order::{Disorder, OrderError, Ordered, order_events};

use std::io::BufRead;
use std::path::{Path, PathBuf};

use fulcrum_engine::sample::{DecodeError, DecodeOptions, decode};
use fulcrum_engine::{Decision, Engine, EngineConfig, Event};

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

/// Builds an engine from the cluster and policy files.
pub fn prepare(input: &ReplayInput) -> Result<(Engine, InvalidPolicies), LoadError> {
    build_engine(&input.cluster, &input.policies, input.config.clone())
}

/// Replays JSON Lines from `events` through `engine`. `now_ms` is the clock used to reject
/// timestamps far in the future.
pub fn replay_lines(
    engine: &mut Engine,
    events: impl BufRead,
    now_ms: i64,
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
    let (out, errors) = replay_numbered(engine, &mut numbered, now_ms)?;
    Ok((out, errors, lines))
}

/// Replays numbered lines (original 1-based numbers) through `engine`, then flushes.
fn replay_numbered(
    engine: &mut Engine,
    lines: &mut dyn Iterator<Item = std::io::Result<(usize, Vec<u8>)>>,
    now_ms: i64,
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
        match decode(line, &options) {
            Ok(decoded) => {
                for sample in &decoded.samples {
                    engine.offer(sample);
                }
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

/// Runs a whole replay from files.
pub fn replay_files(
    input: &ReplayInput,
    events: &Path,
    now_ms: i64,
) -> Result<ReplayReport, LoadError> {
    let (mut engine, invalid_policies) = prepare(input)?;
    let path = events.display().to_string();
    let read_error = |source| LoadError::Read {
        path: path.clone(),
        source,
    };
    let ordered = order_events(events, input.config.lateness_ms, now_ms).map_err(|e| match e {
        OrderError::Read(source) => read_error(source),
        other => LoadError::Parse {
            path: path.clone(),
            message: other.to_string(),
        },
    })?;
    let (events_out, line_errors, lines, sorted) = match ordered {
        Ordered::AsIs => {
            let file = std::fs::File::open(events).map_err(read_error)?;
            let (out, errors, lines) =
                replay_lines(&mut engine, std::io::BufReader::new(file), now_ms)
                    .map_err(read_error)?;
            (out, errors, lines, None)
        }
        Ordered::Sorted(lines, disorder) => {
            let count = lines.len();
            let mut numbered = lines.into_iter().map(Ok);
            let (out, errors) =
                replay_numbered(&mut engine, &mut numbered, now_ms).map_err(read_error)?;
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
        cluster_problems: crate::snapshot_check::cluster_problems(&input.cluster)?,
    })
}
