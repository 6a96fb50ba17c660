//! Per-series state: counters become per-second rates (with resets and gaps), histograms
//! become the observations of each interval, and every series drops points that are not
//! newer than its last one (duplicates and out-of-order points).

use std::collections::HashMap;

use super::InputStats;

/// How many updates between sweeps of series not seen for `max_gap_ms`.
const SWEEP_EVERY: u32 = 4096;

/// The outcome of offering one point of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// A value to emit.
    Value(f64),
    /// Nothing to emit (first point, gap, duplicate, out of order or empty interval),
    /// already counted in the stats.
    Nothing,
}

#[derive(Debug, Default)]
struct Series {
    last_ts: i64,
    last: f64,
    start_ms: i64,
    bounds: Vec<f64>,
    counts: Vec<u64>,
}

/// One histogram point, as explicit buckets.
#[derive(Clone, Copy, Debug)]
pub struct Buckets<'a> {
    /// Upper bounds of the buckets but the last.
    pub bounds: &'a [f64],
    /// Observations per bucket (`bounds.len() + 1`).
    pub counts: &'a [u64],
    /// Delta (not cumulative) temporality.
    pub delta: bool,
    /// Start of the cumulative series (ms), when the source says: a later one than before
    /// is a reset.
    pub start_ms: Option<i64>,
}

/// The state of every series seen recently, by series key.
#[derive(Debug, Default)]
pub struct SeriesStates {
    series: HashMap<u64, Series>,
    max_gap_ms: i64,
    max_ts: i64,
    updates: u32,
    scratch: Vec<u64>,
}

impl SeriesStates {
    /// Empty state; counter and histogram gaps longer than `max_gap_ms` restart a series.
    pub fn new(max_gap_ms: u64) -> Self {
        Self {
            max_gap_ms: i64::try_from(max_gap_ms).unwrap_or(i64::MAX),
            ..Self::default()
        }
    }

    /// The series' state if `ts` is newer than its last point (counting the point as out
    /// of order otherwise), with whether it is new and the time since its last point.
    fn advance(
        &mut self,
        key: u64,
        ts: i64,
        stats: &mut InputStats,
    ) -> Option<(&mut Series, Option<i64>)> {
        self.updates += 1;
        self.max_ts = self.max_ts.max(ts);
        if self.updates >= SWEEP_EVERY {
            self.updates = 0;
            let horizon = self.max_ts.saturating_sub(self.max_gap_ms);
            self.series.retain(|_, s| s.last_ts >= horizon);
        }
        let series = self.series.entry(key).or_insert_with(|| Series {
            last_ts: i64::MIN,
            ..Series::default()
        });
        if ts <= series.last_ts {
            stats.out_of_order += 1;
            return None;
        }
        let since = (series.last_ts != i64::MIN).then(|| ts - series.last_ts);
        series.last_ts = ts;
        Some((series, since))
    }

    /// Like `advance`, for counters and histograms: the time since the last point, or
    /// `None` for a first point or after a gap longer than `max_gap_ms` (both counted).
    fn advance_interval(
        &mut self,
        key: u64,
        ts: i64,
        stats: &mut InputStats,
    ) -> Option<(&mut Series, Option<i64>)> {
        let max_gap = self.max_gap_ms;
        let (series, since) = self.advance(key, ts, stats)?;
        match since {
            None => stats.first_points += 1,
            Some(d) if d > max_gap => stats.gaps += 1,
            Some(_) => {}
        }
        Some((series, since.filter(|d| *d <= max_gap)))
    }

    /// A gauge point: its value, unless it is not newer than the series' last point.
    pub fn gauge(&mut self, key: u64, ts: i64, value: f64, stats: &mut InputStats) -> Step {
        match self.advance(key, ts, stats) {
            Some(_) => Step::Value(value),
            None => Step::Nothing,
        }
    }

    /// A cumulative counter point: the per-second rate since the series' last point.
    /// A value below the last one, or a later start time, is a reset: the counter
    /// restarted from zero, so the increase is the value itself.
    pub fn counter(
        &mut self,
        key: u64,
        ts: i64,
        value: f64,
        start_ms: Option<i64>,
        stats: &mut InputStats,
    ) -> Step {
        let Some((series, since)) = self.advance_interval(key, ts, stats) else {
            return Step::Nothing;
        };
        let (last, last_start) = (series.last, series.start_ms);
        series.last = value;
        series.start_ms = start_ms.unwrap_or(0);
        let Some(dt) = since else {
            return Step::Nothing;
        };
        let restarted = start_ms.is_some_and(|s| s > last_start && last_start != 0);
        let increase = if value < last || restarted {
            stats.counter_resets += 1;
            value
        } else {
            value - last
        };
        Step::Value(increase * 1000.0 / dt as f64)
    }

    /// A delta counter point (OTLP delta temporality): its value per second over its own
    /// interval (`start_ms` to `ts`, or since the series' last point without a start).
    pub fn delta(
        &mut self,
        key: u64,
        ts: i64,
        value: f64,
        start_ms: Option<i64>,
        stats: &mut InputStats,
    ) -> Step {
        let Some((_, since)) = self.advance_interval(key, ts, stats) else {
            return Step::Nothing;
        };
        let dt = match start_ms.filter(|s| *s > 0 && *s < ts) {
            Some(start) => ts - start,
            None => match since {
                Some(d) => d,
                None => return Step::Nothing,
            },
        };
        Step::Value(value * 1000.0 / dt as f64)
    }

    /// A histogram point: the `q` quantile of the observations since the series' last
    /// point (cumulative) or of the point itself (`delta`). An interval without
    /// observations emits nothing; fewer observations than before, or a later start time,
    /// is a reset. Buckets
    /// are matched by their upper bound, so a cumulative series may gain buckets (an
    /// exponential histogram widening its range); buckets that cannot be matched (other
    /// bounds, a new scale) restart the series.
    pub fn histogram(
        &mut self,
        key: u64,
        ts: i64,
        point: Buckets<'_>,
        q: f64,
        stats: &mut InputStats,
    ) -> Step {
        let mut scratch = std::mem::take(&mut self.scratch);
        let step = self.histogram_step(key, ts, point, stats, &mut scratch);
        let step = step.map_or(Step::Nothing, |interval| {
            finish(
                quantile(point.bounds, interval.unwrap_or(&scratch), q),
                stats,
            )
        });
        self.scratch = scratch;
        step
    }

    /// The observations of the interval ending at `ts`: `Some(None)` when they are in
    /// `scratch`, `Some(Some(counts))` for a delta point, `None` when there is no interval.
    fn histogram_step<'c>(
        &mut self,
        key: u64,
        ts: i64,
        point: Buckets<'c>,
        stats: &mut InputStats,
        scratch: &mut Vec<u64>,
    ) -> Option<Option<&'c [u64]>> {
        let Buckets {
            bounds,
            counts,
            delta,
            start_ms,
        } = point;
        let (series, since) = self.advance_interval(key, ts, stats)?;
        if delta {
            return Some(Some(counts));
        }
        let last_start = series.start_ms;
        series.start_ms = start_ms.unwrap_or(0);
        let restarted = start_ms.is_some_and(|s| s > last_start && last_start != 0);
        let aligned = since.is_some()
            && (restarted || align(&series.bounds, &series.counts, bounds, counts, scratch));
        series.bounds.clear();
        series.bounds.extend_from_slice(bounds);
        series.counts.clear();
        series.counts.extend_from_slice(counts);
        if !aligned {
            return None;
        }
        if restarted || counts.iter().zip(scratch.iter()).any(|(n, b)| n < b) {
            stats.counter_resets += 1;
            scratch.clear();
            scratch.extend_from_slice(counts);
        } else {
            for (before, now) in scratch.iter_mut().zip(counts) {
                *before = now - *before;
            }
        }
        Some(None)
    }
}

/// Puts into `before`, for each bucket of the new point (`bounds`, `counts`), the counts of
/// the previous point's buckets within it (0 if none). False when the previous point had
/// observations in a bucket the new one splits or lacks (the buckets changed: no interval
/// can be taken).
fn align(
    prev_bounds: &[f64],
    prev_counts: &[u64],
    bounds: &[f64],
    counts: &[u64],
    before: &mut Vec<u64>,
) -> bool {
    let upper = |b: &[f64], i: usize| b.get(i).copied().unwrap_or(f64::INFINITY);
    let lower = |b: &[f64], i: usize| i.checked_sub(1).map_or(f64::NEG_INFINITY, |k| b[k]);
    before.clear();
    let mut j = 0;
    for i in 0..counts.len() {
        let hi = upper(bounds, i);
        let mut count = 0;
        while j < prev_counts.len() && upper(prev_bounds, j) <= hi {
            // A previous bucket inside this one counts towards it; one reaching below it
            // (this bucket splits it) cannot be divided.
            if lower(prev_bounds, j) >= lower(bounds, i) {
                count += prev_counts[j];
            } else if prev_counts[j] > 0 {
                return false;
            }
            j += 1;
        }
        before.push(count);
    }
    prev_counts[j..].iter().all(|&c| c == 0)
}

fn finish(value: Option<f64>, stats: &mut InputStats) -> Step {
    match value {
        Some(v) => Step::Value(v),
        None => {
            stats.empty_intervals += 1;
            Step::Nothing
        }
    }
}

/// The `q` quantile of bucketed observations, interpolated linearly within the bucket as
/// Prometheus' `histogram_quantile` does: `counts[i]` observations are at most
/// `bounds[i]` and above `bounds[i-1]` (the last bucket is unbounded). `None` without
/// observations. A quantile in the unbounded bucket is the highest finite bound; the first
/// bucket starts at 0 (or is its bound when that is not positive).
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let mut cumulative = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        cumulative += count;
        if (cumulative as f64) < rank || count == 0 {
            continue;
        }
        let Some(&upper) = bounds.get(i) else {
            return bounds.last().copied();
        };
        let lower = match i {
            0 if upper <= 0.0 => return Some(upper),
            0 => 0.0,
            _ => bounds[i - 1],
        };
        let below = (cumulative - count) as f64;
        return Some(lower + (upper - lower) * (rank - below) / count as f64);
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(bounds: &'a [f64], counts: &'a [u64], delta: bool) -> Buckets<'a> {
        Buckets {
            bounds,
            counts,
            delta,
            start_ms: None,
        }
    }

    #[test]
    fn counter_rates_handle_resets_gaps_and_out_of_order_points() {
        let mut s = SeriesStates::new(60_000);
        let mut st = InputStats::default();
        assert_eq!(s.counter(1, 10_000, 100.0, None, &mut st), Step::Nothing);
        assert_eq!(s.counter(1, 20_000, 150.0, None, &mut st), Step::Value(5.0));
        // Out of order and duplicate: dropped, state unchanged.
        assert_eq!(s.counter(1, 15_000, 120.0, None, &mut st), Step::Nothing);
        assert_eq!(s.counter(1, 20_000, 150.0, None, &mut st), Step::Nothing);
        assert_eq!(st.out_of_order, 2);
        // Reset: 150 -> 30 means the counter restarted and grew by 30 in 10 s.
        assert_eq!(s.counter(1, 30_000, 30.0, None, &mut st), Step::Value(3.0));
        assert_eq!(st.counter_resets, 1);
        // A gap longer than max_gap restarts the series instead of averaging over it.
        assert_eq!(s.counter(1, 200_000, 1000.0, None, &mut st), Step::Nothing);
        assert_eq!(st.gaps, 1);
        assert_eq!(
            s.counter(1, 210_000, 1010.0, None, &mut st),
            Step::Value(1.0)
        );
        // Another series is independent.
        assert_eq!(s.counter(2, 210_000, 5.0, None, &mut st), Step::Nothing);
    }

    #[test]
    fn a_later_start_time_is_a_reset_even_when_the_value_grew() {
        let mut s = SeriesStates::new(60_000);
        let mut st = InputStats::default();
        s.counter(1, 10_000, 100.0, Some(1_000), &mut st);
        assert_eq!(
            s.counter(1, 20_000, 120.0, Some(15_000), &mut st),
            Step::Value(12.0)
        );
        assert_eq!(st.counter_resets, 1);
    }

    #[test]
    fn delta_sums_are_rates_over_their_own_interval() {
        let mut s = SeriesStates::new(60_000);
        let mut st = InputStats::default();
        // With a start time: 30 over the 10 s from start to time.
        assert_eq!(
            s.delta(1, 20_000, 30.0, Some(10_000), &mut st),
            Step::Value(3.0)
        );
        // Without: over the time since the series' last point; a first point has none.
        assert_eq!(s.delta(2, 10_000, 5.0, None, &mut st), Step::Nothing);
        assert_eq!(s.delta(2, 15_000, 5.0, None, &mut st), Step::Value(1.0));
        // Out of order: dropped.
        assert_eq!(
            s.delta(1, 15_000, 30.0, Some(5_000), &mut st),
            Step::Nothing
        );
        assert_eq!(st.out_of_order, 1);
    }

    #[test]
    fn cumulative_histograms_may_gain_buckets_matched_by_bound() {
        let mut s = SeriesStates::new(60_000);
        let mut st = InputStats::default();
        // An exponential histogram's buckets as explicit ones: [zero, (0,4], (4,8]] ...
        s.histogram(
            1,
            10_000,
            h(&[0.0, 4.0, 8.0], &[0, 0, 5, 0], false),
            0.5,
            &mut st,
        );
        // ... that gained a lower bucket (2,4] and an upper one (8,16]: 4 new observations
        // in (8,16], none elsewhere.
        let Step::Value(v) = s.histogram(
            1,
            20_000,
            h(&[0.0, 2.0, 4.0, 8.0, 16.0], &[0, 0, 0, 5, 4, 0], false),
            0.5,
            &mut st,
        ) else {
            panic!("expected a value");
        };
        assert!((v - 12.0).abs() < 1e-12, "{v}");
        assert_eq!(st.counter_resets, 0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let bounds = [0.1, 0.2, 0.5];
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.99), None);
        // 100 observations, all in (0.1, 0.2]: p50 is the middle of that bucket.
        let p50 = quantile(&bounds, &[0, 100, 0, 0], 0.5).unwrap();
        assert!((p50 - 0.15).abs() < 1e-12, "{p50}");
        // In the unbounded bucket: the highest finite bound.
        assert_eq!(quantile(&bounds, &[0, 0, 0, 10], 0.99), Some(0.5));
        // First bucket starts at 0.
        let q = quantile(&bounds, &[10, 0, 0, 0], 0.5).unwrap();
        assert!((q - 0.05).abs() < 1e-12, "{q}");
    }

    #[test]
    fn cumulative_histograms_use_the_interval_and_skip_empty_ones() {
        let mut s = SeriesStates::new(60_000);
        let mut st = InputStats::default();
        let b = [0.1, 1.0];
        assert_eq!(
            s.histogram(1, 10_000, h(&b, &[100, 0, 0], false), 0.5, &mut st),
            Step::Nothing
        );
        // Only the new observations count: 10 in (0.1, 1.0].
        let Step::Value(v) = s.histogram(1, 20_000, h(&b, &[100, 10, 0], false), 0.5, &mut st)
        else {
            panic!("expected a value");
        };
        assert!((v - 0.55).abs() < 1e-12, "{v}");
        // No new observations: nothing, counted.
        assert_eq!(
            s.histogram(1, 30_000, h(&b, &[100, 10, 0], false), 0.5, &mut st),
            Step::Nothing
        );
        assert_eq!(st.empty_intervals, 1);
        // Reset: the counts are the interval.
        let Step::Value(v) = s.histogram(1, 40_000, h(&b, &[4, 0, 0], false), 0.5, &mut st) else {
            panic!("expected a value");
        };
        assert!((v - 0.05).abs() < 1e-12, "{v}");
        // Bounds that split a previous bucket holding observations: the series restarts
        // rather than subtracting unrelated buckets (8 new observations, no value).
        let empty = st.empty_intervals;
        assert_eq!(
            s.histogram(1, 50_000, h(&[0.05, 1.0], &[12, 0, 0], false), 0.5, &mut st),
            Step::Nothing
        );
        assert_eq!(st.empty_intervals, empty);
        // A later start time is a reset even when the counts grew: the counts are the
        // interval (all 14 in the first bucket).
        let start = Buckets {
            start_ms: Some(1_000),
            ..h(&b, &[12, 0, 0], false)
        };
        assert_eq!(s.histogram(4, 40_000, start, 0.5, &mut st), Step::Nothing);
        let later = Buckets {
            start_ms: Some(45_000),
            ..h(&b, &[14, 0, 0], false)
        };
        let resets = st.counter_resets;
        let Step::Value(v) = s.histogram(4, 50_000, later, 0.5, &mut st) else {
            panic!("expected a value");
        };
        assert!((v - 0.05).abs() < 1e-12, "{v}");
        assert_eq!(st.counter_resets, resets + 1);
        // Delta histograms are their own interval.
        let Step::Value(v) = s.histogram(2, 40_000, h(&b, &[0, 2, 0], true), 0.5, &mut st) else {
            panic!("expected a value");
        };
        assert!((v - 0.55).abs() < 1e-12, "{v}");
    }
}
