//! A file is not a stream: recorded samples are often written per node or per machine
//! (the whole history of one node, then the next), which a streaming replay would drop as
//! late. Before a file replay, one streaming pass checks the order. A file out of order by
//! more than the lateness is sorted by time in memory when it is at most the sort limit
//! (`--max-sort-bytes`, default [`MAX_SORT_BYTES`]); a larger one stops the replay with an
//! error that names the file, the first line out of order and how to sort it. Memory stays
//! bounded by the limit either way: lines are kept only while the file fits in it.

use std::io::{BufRead, BufReader};
use std::path::Path;

use fulcrum_engine::sample::{DecodeOptions, decode};

use super::trim_line;

/// Default largest events file sorted in memory (bytes): 512 MiB.
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

/// Checks `path` and sorts it when needed, with the default limit. `lateness_ms` is the
/// disorder the engine absorbs by itself.
pub fn order_events(path: &Path, lateness_ms: u64, now_ms: i64) -> Result<Ordered, OrderError> {
    order_events_within(path, lateness_ms, now_ms, MAX_SORT_BYTES)
}

/// [`order_events`] with a sort limit of `max_sort_bytes`: a file out of order that is
/// larger is not read into memory, and the replay stops with [`OrderError::TooLargeToSort`].
pub fn order_events_within(
    path: &Path,
    lateness_ms: u64,
    now_ms: i64,
    max_sort_bytes: u64,
) -> Result<Ordered, OrderError> {
    let file = std::fs::File::open(path).map_err(OrderError::Read)?;
    let size = file.metadata().map_err(OrderError::Read)?.len();
    let mut keep = size <= max_sort_bytes;
    let mut reader = BufReader::new(file);
    let options = DecodeOptions { now_ms };
    let mut lines: Vec<(i64, usize, Vec<u8>)> = Vec::new();
    let (mut newest, mut disorder, mut kept) = (i64::MIN, None::<Disorder>, 0u64);
    let (mut buf, mut number) = (Vec::new(), 0);
    while reader
        .read_until(b'\n', &mut buf)
        .map_err(OrderError::Read)?
        > 0
    {
        number += 1;
        // Lines that do not decode keep their place (and are reported by the replay).
        let oldest = decode(trim_line(&buf), &options)
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
        kept += buf.len() as u64;
        // A file that grew past the limit while being read is not sorted either.
        keep &= kept <= max_sort_bytes;
        if !keep {
            lines = Vec::new();
            if let Some(disorder) = disorder {
                return Err(OrderError::TooLargeToSort {
                    path: path.display().to_string(),
                    disorder,
                    size: size.max(kept),
                    limit: max_sort_bytes,
                });
            }
            buf.clear();
            continue;
        }
        lines.push((key, number, std::mem::take(&mut buf)));
    }
    let Some(disorder) = disorder else {
        return Ok(Ordered::AsIs);
    };
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
        "{path}:{}: goes back in time by {} ms (to {} ms): the file is not in time order (sorted by node?) and at {size} bytes it is over the {limit} bytes `fulcrum replay` sorts in memory. Sort it by sample time first (docs/events.md, \"Replaying a file\", shows a command), or raise the limit with --max-sort-bytes",
        .disorder.line, .disorder.newest_ms - .disorder.ts_ms, .disorder.ts_ms
    )]
    TooLargeToSort {
        /// The file.
        path: String,
        /// Where it first goes back in time.
        disorder: Disorder,
        /// Its size (bytes).
        size: u64,
        /// The sort limit (bytes).
        limit: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_151_200_000;

    /// One sample line of `node` at minute `i` after [`T0`].
    fn line(node: &str, i: i64) -> String {
        format!(
            r#"{{"schema":"fulcrum.metrics/v1","ts":{},"node":"{node}","metrics":{{"cpu_util":0.5}}}}"#,
            T0 + i * 60_000
        )
    }

    /// Writes ten minutes of nodes `a` and `b`, sorted by node (not by time), in `dir`.
    fn write_by_node(dir: &std::path::Path) -> std::path::PathBuf {
        let by_node: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|n| (0..10).map(move |i| line(n, i)))
            .collect();
        let path = dir.join("by-node.jsonl");
        std::fs::write(&path, by_node.join("\n")).unwrap();
        path
    }

    #[test]
    fn a_file_sorted_by_node_is_sorted_by_time_and_an_ordered_one_streams() {
        let dir = std::env::temp_dir().join(format!("fulcrum-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (t0, path) = (T0, write_by_node(&dir));
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

    #[test]
    fn over_the_sort_limit_a_file_out_of_order_is_an_error_and_one_in_order_streams() {
        let dir = std::env::temp_dir().join(format!("fulcrum-order-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (t0, path) = (T0, write_by_node(&dir));
        let size = std::fs::metadata(&path).unwrap().len();
        match order_events_within(&path, 15_000, t0, size - 1) {
            Err(OrderError::TooLargeToSort {
                path: named,
                disorder,
                limit,
                ..
            }) => {
                assert_eq!(named, path.display().to_string());
                assert_eq!(disorder.line, 11);
                assert_eq!(limit, size - 1);
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a file over the limit was sorted"),
        }
        let message = order_events_within(&path, 15_000, t0, 100)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.starts_with(&format!("{}:11:", path.display())),
            "{message}"
        );
        assert!(message.contains("--max-sort-bytes"), "{message}");
        // Control: at the limit it is sorted; a file in order streams whatever its size.
        assert!(matches!(
            order_events_within(&path, 15_000, t0, size),
            Ok(Ordered::Sorted(..))
        ));
        let by_time: Vec<String> = (0..10).flat_map(|i| [line("a", i), line("b", i)]).collect();
        std::fs::write(&path, by_time.join("\n")).unwrap();
        assert!(matches!(
            order_events_within(&path, 15_000, t0, 10),
            Ok(Ordered::AsIs)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
