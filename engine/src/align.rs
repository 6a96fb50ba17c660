//! Aligning series sampled at different instants and cadences onto one grid, so that a
//! 60 s series and a 10 s series (or two 15 s series offset by 7 s) share points.
//!
//! The rule: each series' cadence is the median gap between its non-empty buckets in the
//! window; the grid step is the largest cadence of the series compared, in whole buckets,
//! with cells ending at the window's last bucket. A cell's value is the mean of the
//! series' buckets inside it. An empty cell takes the previous cell's *observed* value
//! (carry-forward by at most one cell, never across a longer gap). A grid point counts
//! when every series has a value there and at least one of them was observed in the cell.

use smallvec::SmallVec;

use crate::series::Series;

/// The median gap, in buckets, between the non-empty buckets of `s` in the window (1 when
/// it cannot be told).
pub fn cadence(s: &Series, end_ms: i64, window_ms: u64) -> i64 {
    let mut gaps: SmallVec<[i64; 64]> = SmallVec::new();
    let mut previous: Option<i64> = None;
    for (e, v) in s.window(end_ms, window_ms) {
        if v.is_some() {
            if let Some(p) = previous {
                gaps.push(e - p);
            }
            previous = Some(e);
        }
    }
    if gaps.is_empty() {
        return 1;
    }
    gaps.sort_unstable();
    gaps[gaps.len() / 2].max(1)
}

/// Bucket values of `s` in `(end_ms - window_ms, end_ms]`, oldest first.
pub fn values(s: &Series, end_ms: i64, window_ms: u64) -> Vec<f64> {
    s.window(end_ms, window_ms).filter_map(|(_, v)| v).collect()
}

/// One series on a grid: per cell, its value and whether it was observed there.
type Grid = SmallVec<[Option<(f64, bool)>; 64]>;

/// One series on the grid: per cell, its value and whether it was observed there.
fn on_grid(s: &Series, end_ms: i64, window_ms: u64, step: i64) -> Grid {
    let epochs = s.epochs(end_ms, window_ms);
    let last = *epochs.end();
    let cells = ((epochs.end() - epochs.start()) / step + 1) as usize;
    let mut sums: SmallVec<[(f64, u32); 64]> = smallvec::smallvec![(0.0, 0u32); cells];
    for (e, v) in s.window(end_ms, window_ms) {
        if let Some(v) = v {
            // Cell 0 is the oldest; the newest cell ends at the window's last bucket.
            let from_end = ((last - e) / step) as usize;
            if let Some(cell) = sums.get_mut(cells - 1 - from_end) {
                cell.0 += v;
                cell.1 += 1;
            }
        }
    }
    let mut out = Grid::with_capacity(cells);
    let mut previous: Option<f64> = None;
    for (sum, count) in sums {
        if count > 0 {
            let v = sum / f64::from(count);
            out.push(Some((v, true)));
            previous = Some(v);
        } else {
            out.push(previous.take().map(|v| (v, false)));
        }
    }
    out
}

/// A victim's signal prepared once for aligning many series against it over one window:
/// its cadence, and its grid per grid step (computed on first use). Pairing a series with
/// it gives exactly the columns of [`aligned`]`(&[signal, series], ..)`.
pub struct SignalGrid<'a> {
    signal: &'a Series,
    end_ms: i64,
    window_ms: u64,
    cadence: i64,
    grids: SmallVec<[(i64, Grid); 2]>,
}

impl<'a> SignalGrid<'a> {
    /// Prepares `signal` over `(end_ms - window_ms, end_ms]`.
    pub fn new(signal: &'a Series, end_ms: i64, window_ms: u64) -> Self {
        Self {
            signal,
            end_ms,
            window_ms,
            cadence: cadence(signal, end_ms, window_ms),
            grids: SmallVec::new(),
        }
    }

    /// The signal and `s` on their common grid, written into `a` (the signal) and `b`
    /// (cleared first): the two columns of [`aligned`]`(&[signal, s], ..)`.
    pub fn pair(&mut self, s: &Series, a: &mut Vec<f64>, b: &mut Vec<f64>) {
        let (end_ms, window_ms) = (self.end_ms, self.window_ms);
        let step = self.cadence.max(cadence(s, end_ms, window_ms));
        let grid = on_grid(s, end_ms, window_ms, step);
        let at = match self.grids.iter().position(|(k, _)| *k == step) {
            Some(i) => i,
            None => {
                let g = on_grid(self.signal, end_ms, window_ms, step);
                self.grids.push((step, g));
                self.grids.len() - 1
            }
        };
        let sig = &self.grids[at].1;
        a.clear();
        b.clear();
        for (x, y) in sig.iter().zip(grid.iter()) {
            // Both have a value here and at least one was observed in the cell.
            if let (Some((x, seen_x)), Some((y, seen_y))) = (x, y)
                && (*seen_x || *seen_y)
            {
                a.push(*x);
                b.push(*y);
            }
        }
    }
}

/// The series on a common grid over `(end_ms - window_ms, end_ms]`: one row per grid
/// point, one column per series (in the order given), oldest first. See the module rule.
pub fn aligned(series: &[&Series], end_ms: i64, window_ms: u64) -> Vec<Vec<f64>> {
    let step = series
        .iter()
        .map(|s| cadence(s, end_ms, window_ms))
        .max()
        .unwrap_or(1);
    let grids: SmallVec<[Grid; 3]> = series
        .iter()
        .map(|s| on_grid(s, end_ms, window_ms, step))
        .collect();
    let cells = grids.iter().map(|g| g.len()).min().unwrap_or(0);
    let mut columns = vec![Vec::with_capacity(cells); series.len()];
    for cell in 0..cells {
        // Every series has a value here and at least one was observed in the cell.
        let complete = grids.iter().all(|g| g[cell].is_some());
        if !complete || !grids.iter().any(|g| g[cell].is_some_and(|(_, seen)| seen)) {
            continue;
        }
        for (column, g) in columns.iter_mut().zip(&grids) {
            if let Some((v, _)) = g[cell] {
                column.push(v);
            }
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_cadences_and_instants_share_points() {
        // 10 s buckets; a 60 s series and a 15 s series offset by 7 s, over 10 minutes.
        let (mut slow, mut fast) = (Series::new(600_000, 10_000), Series::new(600_000, 10_000));
        for i in 0..10 {
            slow.push(45_000 + i * 60_000, i as f64);
        }
        for i in 0..40 {
            fast.push(7_000 + i * 15_000, (i / 4) as f64 * 2.0);
        }
        let end = 599_999;
        assert_eq!(cadence(&slow, end, 600_000), 6);
        let cols = aligned(&[&slow, &fast], end, 600_000);
        assert!(cols[0].len() >= 9, "{cols:?}");
        assert_eq!(cols[0].len(), cols[1].len());
        // Bucket by bucket the two would share only a handful of points.
        let shared = slow
            .epochs(end, 600_000)
            .filter(|&e| slow.at(e).is_some() && fast.at(e).is_some())
            .count();
        assert_eq!(shared, 0);
    }

    #[test]
    fn carry_forward_is_bounded_to_one_cell() {
        let (mut a, mut b) = (Series::new(200_000, 10_000), Series::new(200_000, 10_000));
        for i in 0..20 {
            a.push(i * 10_000, i as f64);
            // b stops after 5 buckets: at most one carried point joins a.
            if i < 5 {
                b.push(i * 10_000, 1.0 + i as f64);
            }
        }
        let cols = aligned(&[&a, &b], 199_999, 200_000);
        assert_eq!(cols[0].len(), 6, "{cols:?}");
    }

    #[test]
    fn a_prepared_signal_pairs_exactly_as_aligned() {
        // Series of three cadences (10 s, 30 s, 60 s) and offsets, paired with a 15 s
        // signal: the same columns as `aligned`, whichever order the steps come in.
        let mut signal = Series::new(600_000, 10_000);
        for i in 0..40 {
            signal.push(3_000 + i * 15_000, (i % 5) as f64 + 0.5 * i as f64);
        }
        let mut others = Vec::new();
        for (every, offset) in [(60_000, 45_000), (10_000, 0), (30_000, 7_000), (60_000, 1)] {
            let mut s = Series::new(600_000, 10_000);
            for i in 0..600_000 / every {
                s.push(offset + i * every, ((i * 7) % 11) as f64);
            }
            others.push(s);
        }
        let end = 599_999;
        let mut grid = SignalGrid::new(&signal, end, 300_000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for s in &others {
            grid.pair(s, &mut a, &mut b);
            let cols = aligned(&[&signal, s], end, 300_000);
            assert!(a.len() >= 4, "{a:?}");
            assert_eq!((&a, &b), (&cols[0], &cols[1]));
        }
    }
}
