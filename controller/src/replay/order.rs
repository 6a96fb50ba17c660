//! A file is not a stream: recorded samples are often written per node or per machine
//! (the whole history of one node, then the next), which a streaming replay would drop as
//! late. Before a file replay, one pass checks the order; a file out of order by more than
//! the lateness is sorted by time in memory when it fits in [`MAX_SORT_BYTES`], and the
//! replay stops with an error saying how to sort it otherwise.

use std::io::{BufRead, Cursor};
use std::path::Path;

use fulcrum_engine::sample::{DecodeOptions, decode};

use super::trim_line;

/// Largest events file sorted in memory (bytes).
pub const MAX_SORT_BYTES: u64 = 512 << 20;

/// The first place a file goes back in time by more than the lateness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disorder {
    /// 1-based line number.
    pub line: usize,
    /// Its oldest sample time (ms).
    pub ts_ms: i64,
    /// The newest sample time before it (ms).
    pub newest_ms: i64,
}

/// The events, in an order a streaming replay can use: the file itself when it is in
/// order, or its lines sorted by their oldest sample time (original line numbers kept).
pub enum Ordered {
    /// Stream the file as it is.
    AsIs,
    /// Replay these lines, each with its original 1-based line number.
    Sorted(Vec<(usize, Vec<u8>)>, Disorder),
}

/// Checks `path` and sorts it when needed. `lateness_ms` is the disorder the engine
/// absorbs by itself.
pub fn order_events(path: &Path, lateness_ms: u64, now_ms: i64) -> Result<Ordered, OrderError> {
    let bytes = std::fs::read(path).map_err(OrderError::Read)?;
    let options = DecodeOptions { now_ms };
    let mut lines: Vec<(i64, usize, Vec<u8>)> = Vec::new();
    let mut newest = i64::MIN;
    let mut disorder: Option<Disorder> = None;
    let mut reader = Cursor::new(&bytes);
    let mut buf = Vec::new();
    let mut number = 0;
    while reader
        .read_until(b'\n', &mut buf)
        .map_err(OrderError::Read)?
        > 0
    {
        number += 1;
        let line = trim_line(&buf);
        // Lines that do not decode keep their place (and are reported by the replay).
        let oldest = decode(line, &options)
            .ok()
            .and_then(|d| d.samples.iter().map(|s| s.ts_ms).min());
        let key = oldest.unwrap_or(newest);
        if let Some(ts) = oldest {
            if disorder.is_none() && newest != i64::MIN && ts < newest - lateness_ms as i64 {
                disorder = Some(Disorder {
                    line: number,
                    ts_ms: ts,
                    newest_ms: newest,
                });
            }
            newest = newest.max(ts);
        }
        lines.push((key, number, std::mem::take(&mut buf)));
    }
    let Some(disorder) = disorder else {
        return Ok(Ordered::AsIs);
    };
    if bytes.len() as u64 > MAX_SORT_BYTES {
        return Err(OrderError::TooLargeToSort(disorder, bytes.len() as u64));
    }
    lines.sort_by_key(|(ts, number, _)| (*ts, *number));
    Ok(Ordered::Sorted(
        lines.into_iter().map(|(_, n, l)| (n, l)).collect(),
        disorder,
    ))
}

/// Why an events file cannot be replayed in time order.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The file could not be read.
    #[error("{0}")]
    Read(std::io::Error),
    /// Out of order and too large to sort in memory.
    #[error(
        "line {} goes back in time by {} ms (to {} ms) and the file ({} bytes) is over the {} bytes sorted in memory: sort it by time first, e.g. `jq -c '[.ts, .] ' FILE | sort -n -k1 ...` or per-node files merged with `sort -m`",
        .0.line, .0.newest_ms - .0.ts_ms, .0.ts_ms, .1, MAX_SORT_BYTES
    )]
    TooLargeToSort(Disorder, u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sorted_by_node_is_sorted_by_time_and_an_ordered_one_streams() {
        let dir = std::env::temp_dir().join(format!("fulcrum-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = 1_764_151_200_000i64;
        let line = |node: &str, i: i64| {
            format!(
                r#"{{"schema":"fulcrum.metrics/v1","ts":{},"node":"{node}","metrics":{{"cpu_util":0.5}}}}"#,
                t0 + i * 60_000
            )
        };
        let by_node: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|n| (0..10).map(move |i| line(n, i)))
            .collect();
        let path = dir.join("by-node.jsonl");
        std::fs::write(&path, by_node.join("\n")).unwrap();
        let Ordered::Sorted(lines, disorder) = order_events(&path, 15_000, t0).unwrap() else {
            panic!("a file sorted by node must be sorted");
        };
        assert_eq!(disorder.line, 11);
        let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).take(4).collect();
        assert_eq!(numbers, [1, 11, 2, 12]);
        let by_time: Vec<String> = (0..10).flat_map(|i| [line("a", i), line("b", i)]).collect();
        std::fs::write(&path, by_time.join("\n")).unwrap();
        assert!(matches!(
            order_events(&path, 15_000, t0).unwrap(),
            Ordered::AsIs
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
