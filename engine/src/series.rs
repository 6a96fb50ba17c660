//! Bounded streaming state on event time: bucketed series for correlation and usage, and
//! sliding moments for learned baselines. Fixed-size rings; no allocation per sample.

/// One time bucket: the mean of the samples that fell into it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bucket {
    /// Bucket number (`ts / width`); `i64::MIN` marks an empty slot.
    epoch: i64,
    sum: f64,
    count: u32,
}

const EMPTY: Bucket = Bucket {
    epoch: i64::MIN,
    sum: 0.0,
    count: 0,
};

/// A metric's recent history as fixed-width time buckets in a ring.
///
/// Capacity is `ceil(span / width) + 1` buckets, so the last `span` ms are always held.
/// A sample older than the ring is ignored (the reorder buffer makes that rare).
#[derive(Clone, Debug)]
pub struct Series {
    width_ms: i64,
    ring: Box<[Bucket]>,
    last_ts: i64,
}

impl Series {
    /// A series holding at least `span_ms` of history in `width_ms` buckets.
    pub fn new(span_ms: u64, width_ms: u64) -> Self {
        let width = width_ms.max(1);
        let slots = (span_ms.div_ceil(width) + 1).clamp(2, 4096) as usize;
        Self {
            width_ms: width as i64,
            ring: vec![EMPTY; slots].into_boxed_slice(),
            last_ts: i64::MIN,
        }
    }

    /// Adds a sample.
    #[inline]
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        let epoch = ts_ms.div_euclid(self.width_ms);
        let slot = &mut self.ring[epoch.rem_euclid(self.ring.len() as i64) as usize];
        if slot.epoch == epoch {
            slot.sum += value;
            slot.count += 1;
        } else if slot.epoch < epoch {
            *slot = Bucket {
                epoch,
                sum: value,
                count: 1,
            };
        }
        self.last_ts = self.last_ts.max(ts_ms);
    }

    /// Timestamp of the newest sample, if any.
    pub fn last_ts(&self) -> Option<i64> {
        (self.last_ts != i64::MIN).then_some(self.last_ts)
    }

    /// Bucket width in ms.
    pub fn width_ms(&self) -> i64 {
        self.width_ms
    }

    /// The bucket mean for `epoch`, if that bucket holds data.
    #[inline]
    pub fn at(&self, epoch: i64) -> Option<f64> {
        let slot = &self.ring[epoch.rem_euclid(self.ring.len() as i64) as usize];
        (slot.epoch == epoch && slot.count > 0).then(|| slot.sum / f64::from(slot.count))
    }

    /// The bucket epochs covering `(end_ms - window_ms, end_ms]`, oldest first.
    pub fn epochs(&self, end_ms: i64, window_ms: u64) -> std::ops::RangeInclusive<i64> {
        let last = end_ms.div_euclid(self.width_ms);
        let count = (window_ms as i64 / self.width_ms)
            .max(1)
            .min(self.ring.len() as i64 - 1);
        (last - count + 1)..=last
    }

    /// The buckets of [`Series::epochs`]`(end_ms, window_ms)`, oldest first: each epoch
    /// with [`Series::at`] of it (the ring is walked, not indexed by division per bucket).
    #[inline]
    pub fn window(
        &self,
        end_ms: i64,
        window_ms: u64,
    ) -> impl Iterator<Item = (i64, Option<f64>)> + '_ {
        let epochs = self.epochs(end_ms, window_ms);
        let len = self.ring.len();
        let mut slot = epochs.start().rem_euclid(len as i64) as usize;
        epochs.map(move |epoch| {
            let b = &self.ring[slot];
            slot += 1;
            if slot == len {
                slot = 0;
            }
            let value = (b.epoch == epoch && b.count > 0).then(|| b.sum / f64::from(b.count));
            (epoch, value)
        })
    }

    /// Mean of the bucket means in `(end_ms - window_ms, end_ms]`, with the bucket count.
    pub fn mean(&self, end_ms: i64, window_ms: u64) -> Option<(f64, usize)> {
        let (sum, n) = self
            .window(end_ms, window_ms)
            .filter_map(|(_, v)| v)
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| (sum / n as f64, n))
    }
}

/// Pearson correlation of two series over a window, on the buckets both hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correlation {
    /// The coefficient, in [-1, 1].
    pub r: f64,
    /// Buckets used.
    pub points: usize,
    /// Coefficient of variation (std / |mean|) of the second series.
    pub cv_b: f64,
}

/// Correlates `a` and `b` over `(end_ms - window_ms, end_ms]`. `None` with fewer than two
/// paired buckets or when either series is constant.
pub fn correlate(a: &Series, b: &Series, end_ms: i64, window_ms: u64) -> Option<Correlation> {
    let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) = (0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
    for epoch in a.epochs(end_ms, window_ms) {
        let (Some(x), Some(y)) = (a.at(epoch), b.at(epoch)) else {
            continue;
        };
        n += 1;
        sa += x;
        sb += y;
        saa += x * x;
        sbb += y * y;
        sab += x * y;
    }
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let (ma, mb) = (sa / nf, sb / nf);
    let var_a = (saa / nf - ma * ma).max(0.0);
    let var_b = (sbb / nf - mb * mb).max(0.0);
    let cov = sab / nf - ma * mb;
    let cv = |var: f64, mean: f64| {
        if mean.abs() > f64::EPSILON {
            var.sqrt() / mean.abs()
        } else if var > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    // One-pass variances carry rounding noise of about 1e-16 of the squared mean: a
    // constant series must not correlate through that noise.
    let flat = |var: f64, mean: f64| var <= 1e-12 * mean * mean + f64::MIN_POSITIVE;
    if flat(var_a, ma) || flat(var_b, mb) {
        return None;
    }
    Some(Correlation {
        r: (cov / (var_a.sqrt() * var_b.sqrt())).clamp(-1.0, 1.0),
        points: n,
        cv_b: cv(var_b, mb),
    })
}

/// Count, mean and standard deviation of a baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    /// Samples in the window.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct MomentBucket {
    epoch: i64,
    n: u64,
    sum: f64,
    sum_sq: f64,
}

/// Sliding count/mean/deviation over a time window, in [`Moments::SLOTS`] sub-buckets
/// (the window slides in steps of `window / SLOTS`).
#[derive(Clone, Debug)]
pub struct Moments {
    width_ms: i64,
    ring: [MomentBucket; Moments::SLOTS],
}

impl Moments {
    /// Sub-buckets per window.
    pub const SLOTS: usize = 32;

    /// Moments over the last `window_ms`.
    pub fn new(window_ms: u64) -> Self {
        Self {
            width_ms: (window_ms / Self::SLOTS as u64).max(1) as i64,
            ring: [MomentBucket {
                epoch: i64::MIN,
                ..MomentBucket::default()
            }; Self::SLOTS],
        }
    }

    /// Adds a sample.
    #[inline]
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        let epoch = ts_ms.div_euclid(self.width_ms);
        let slot = &mut self.ring[epoch.rem_euclid(Self::SLOTS as i64) as usize];
        if slot.epoch != epoch {
            if slot.epoch > epoch {
                return;
            }
            *slot = MomentBucket {
                epoch,
                ..MomentBucket::default()
            };
        }
        slot.n += 1;
        slot.sum += value;
        slot.sum_sq += value * value;
    }

    /// The baseline over the window ending at `ts_ms`.
    pub fn baseline(&self, ts_ms: i64) -> Baseline {
        let newest = ts_ms.div_euclid(self.width_ms);
        let oldest = newest - Self::SLOTS as i64 + 1;
        let (mut n, mut sum, mut sum_sq) = (0u64, 0.0, 0.0);
        for b in &self.ring {
            if b.epoch >= oldest && b.epoch <= newest {
                n += b.n;
                sum += b.sum;
                sum_sq += b.sum_sq;
            }
        }
        if n == 0 {
            return Baseline {
                count: 0,
                mean: 0.0,
                std: 0.0,
            };
        }
        let mean = sum / n as f64;
        Baseline {
            count: n,
            mean,
            std: (sum_sq / n as f64 - mean * mean).max(0.0).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_buckets_average_and_expire() {
        let mut s = Series::new(50_000, 10_000);
        s.push(1_000, 1.0);
        s.push(9_000, 3.0);
        s.push(15_000, 10.0);
        assert_eq!(s.at(0), Some(2.0));
        assert_eq!(s.at(1), Some(10.0));
        assert_eq!(s.mean(19_999, 20_000), Some((6.0, 2)));
        // 6 slots: epoch 6 overwrites epoch 0.
        s.push(60_000, 5.0);
        assert_eq!(s.at(0), None);
        assert_eq!(s.at(6), Some(5.0));
        // A sample older than the slot's content is ignored.
        s.push(1_000, 100.0);
        assert_eq!(s.at(6), Some(5.0));
        assert_eq!(s.last_ts(), Some(60_000));
    }

    #[test]
    fn correlation_of_linear_and_anti_linear_series() {
        let (mut a, mut b, mut c, mut flat) = (
            Series::new(100_000, 1_000),
            Series::new(100_000, 1_000),
            Series::new(100_000, 1_000),
            Series::new(100_000, 1_000),
        );
        for i in 0..20 {
            let ts = i * 1_000;
            let x = (i % 7) as f64;
            a.push(ts, x);
            b.push(ts, 2.0 * x + 1.0);
            c.push(ts, -x);
            flat.push(ts, 4.0);
        }
        let r = correlate(&a, &b, 19_000, 20_000).unwrap();
        assert!((r.r - 1.0).abs() < 1e-9 && r.points == 20);
        assert!((correlate(&a, &c, 19_000, 20_000).unwrap().r + 1.0).abs() < 1e-9);
        assert_eq!(correlate(&a, &flat, 19_000, 20_000), None);
        let mut nearly = Series::new(100_000, 1_000);
        for i in 0..20 {
            nearly.push(i * 1_000, 0.95);
        }
        assert_eq!(
            correlate(&nearly, &a, 19_000, 20_000),
            None,
            "rounding noise is not variation"
        );
        // Only the window counts.
        assert_eq!(correlate(&a, &b, 19_000, 5_000).unwrap().points, 5);
    }

    #[test]
    fn moments_slide_with_the_window() {
        let mut m = Moments::new(32_000); // 1 s sub-buckets
        for i in 0..32 {
            m.push(i * 1_000, if i % 2 == 0 { 1.0 } else { 3.0 });
        }
        let b = m.baseline(31_000);
        assert_eq!(b.count, 32);
        assert!((b.mean - 2.0).abs() < 1e-12 && (b.std - 1.0).abs() < 1e-12);
        // 16 s later, half the window has slid out.
        let b = m.baseline(47_000);
        assert_eq!(b.count, 16);
        assert_eq!(m.baseline(100_000).count, 0);
    }
}
