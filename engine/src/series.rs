//! Bounded streaming state on event time: bucketed series for correlation and usage, and
//! sliding moments for learned baselines. Fixed-size rings; no allocation per sample.
//!
//! A [`Series`] is the bulk of the engine's memory (one per tracked metric of every pod),
//! so its ring is compact: one epoch for the whole ring (the newest bucket's) instead of
//! one per slot, a slot's epoch following from its position; bucket means as `f32` (NaN
//! marks an empty slot); and sample counts only once some bucket holds two samples (a feed
//! sampling at the bucket width never needs them). Each slot costs 4 bytes, 6 with counts.

mod moments;
#[cfg(test)]
mod tests;

pub use moments::{Baseline, Moments};

/// Largest ring, in slots.
const MAX_SLOTS: u64 = 4096;
/// Marks an empty slot.
const EMPTY: u32 = f32::NAN.to_bits();
/// `last_off` of a series that has seen no sample.
const NO_SAMPLE: u32 = u32::MAX;

/// A metric's recent history as fixed-width time buckets in a ring.
///
/// Capacity is `ceil(span / width) + 1` buckets, so the last `span` ms are always held.
/// A sample older than the ring is ignored (the reorder buffer makes that rare), as is a
/// NaN value. Bucket means are kept as `f32`: a value is rounded to about 7 significant
/// digits, and a finite value beyond `f32`'s range is clamped to `±f32::MAX` (no metric
/// the engine reads comes near 3.4e38; values below about 1.2e-38 lose relative precision
/// as `f32` subnormals). A bucket counts at most 65,535 samples; later ones are ignored.
#[derive(Clone, Debug)]
pub struct Series {
    /// Epoch (`ts / width`) of the newest bucket. Slot `e mod len` holds epoch `e` for
    /// `e` in `(head - len, head]`, or is empty.
    head: i64,
    width_ms: u32,
    /// `last_ts - head * width`, in `[0, width)`; [`NO_SAMPLE`] while empty.
    last_off: u32,
    /// Slots in the ring.
    len: u16,
    /// `len` words of bucket means (`f32` bits), then, once some bucket has held two
    /// samples, `ceil(len / 2)` words of `u16` sample counts.
    words: Box<[u32]>,
}

impl Series {
    /// A series holding at least `span_ms` of history in `width_ms` buckets (a width
    /// beyond `u32::MAX` ms, 49 days, is clamped to it).
    pub fn new(span_ms: u64, width_ms: u64) -> Self {
        let width = width_ms.clamp(1, u64::from(u32::MAX));
        let slots = (span_ms.div_ceil(width) + 1).clamp(2, MAX_SLOTS) as u16;
        Self {
            head: i64::MIN,
            width_ms: width as u32,
            last_off: NO_SAMPLE,
            len: slots,
            words: vec![EMPTY; usize::from(slots)].into_boxed_slice(),
        }
    }

    #[inline]
    fn slot(&self, epoch: i64) -> usize {
        epoch.rem_euclid(i64::from(self.len)) as usize
    }

    /// True when `epoch` is in the ring's span: `(head - len, head]`.
    #[inline]
    fn held(&self, epoch: i64) -> bool {
        epoch <= self.head && self.head.abs_diff(epoch) < u64::from(self.len)
    }

    #[inline]
    fn value(&self, slot: usize) -> Option<f64> {
        let v = f32::from_bits(self.words[slot]);
        (!v.is_nan()).then_some(f64::from(v))
    }

    fn count(&self, slot: usize) -> u16 {
        let word = self.words[usize::from(self.len) + slot / 2];
        (word >> (16 * (slot % 2))) as u16
    }

    fn set_count(&mut self, slot: usize, count: u16) {
        let shift = 16 * (slot % 2);
        let word = &mut self.words[usize::from(self.len) + slot / 2];
        *word = (*word & !(0xFFFF << shift)) | (u32::from(count) << shift);
    }

    fn has_counts(&self) -> bool {
        self.words.len() > usize::from(self.len)
    }

    /// Adds the count words: every held bucket has one sample so far.
    fn add_counts(&mut self) {
        let len = usize::from(self.len);
        let mut words = Vec::with_capacity(len + len.div_ceil(2));
        words.extend_from_slice(&self.words);
        words.resize(len + len.div_ceil(2), 0);
        self.words = words.into_boxed_slice();
        for slot in 0..len {
            if self.value(slot).is_some() {
                self.set_count(slot, 1);
            }
        }
    }

    /// Stores `value` as a bucket mean.
    #[inline]
    fn narrow(value: f64) -> u32 {
        let v = value as f32;
        let v = if value.is_finite() {
            v.clamp(-f32::MAX, f32::MAX)
        } else {
            v
        };
        v.to_bits()
    }

    /// Moves the head to `epoch` (newer), emptying the slots it passes.
    fn advance_to(&mut self, epoch: i64) {
        let len = u64::from(self.len);
        if self.head.abs_diff(epoch) >= len || self.last_off == NO_SAMPLE {
            self.words[..usize::from(self.len)].fill(EMPTY);
        } else {
            let mut slot = self.slot(self.head);
            for _ in 0..self.head.abs_diff(epoch) {
                slot = if slot + 1 == usize::from(self.len) {
                    0
                } else {
                    slot + 1
                };
                self.words[slot] = EMPTY;
            }
        }
        self.head = epoch;
    }

    /// Adds a sample.
    #[inline]
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        if value.is_nan() {
            return;
        }
        let width = i64::from(self.width_ms);
        let epoch = ts_ms.div_euclid(width);
        // In [0, width): the offset of the sample in its bucket.
        let off = (ts_ms - epoch * width) as u32;
        if self.last_off == NO_SAMPLE || epoch > self.head {
            self.advance_to(epoch);
            self.last_off = off;
        } else if !self.held(epoch) {
            return;
        } else if epoch == self.head {
            self.last_off = self.last_off.max(off);
        }
        let slot = self.slot(epoch);
        match self.value(slot) {
            None => {
                self.words[slot] = Self::narrow(value);
                if self.has_counts() {
                    self.set_count(slot, 1);
                }
            }
            Some(mean) => {
                if !self.has_counts() {
                    self.add_counts();
                }
                let n = self.count(slot);
                if n < u16::MAX {
                    let n = f64::from(n);
                    self.words[slot] = Self::narrow((mean * n + value) / (n + 1.0));
                    self.set_count(slot, self.count(slot) + 1);
                }
            }
        }
    }

    /// Timestamp of the newest sample, if any.
    pub fn last_ts(&self) -> Option<i64> {
        (self.last_off != NO_SAMPLE)
            .then(|| self.head * i64::from(self.width_ms) + i64::from(self.last_off))
    }

    /// Bucket width in ms.
    pub fn width_ms(&self) -> i64 {
        i64::from(self.width_ms)
    }

    /// The bucket mean for `epoch`, if that bucket holds data.
    #[inline]
    pub fn at(&self, epoch: i64) -> Option<f64> {
        if !self.held(epoch) {
            return None;
        }
        self.value(self.slot(epoch))
    }

    /// The bucket epochs covering `(end_ms - window_ms, end_ms]`, oldest first.
    pub fn epochs(&self, end_ms: i64, window_ms: u64) -> std::ops::RangeInclusive<i64> {
        let width = i64::from(self.width_ms);
        let last = end_ms.div_euclid(width);
        let count = (window_ms as i64 / width)
            .max(1)
            .min(i64::from(self.len) - 1);
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
        let len = usize::from(self.len);
        let mut slot = self.slot(*epochs.start());
        epochs.map(move |epoch| {
            let here = slot;
            slot += 1;
            if slot == len {
                slot = 0;
            }
            let value = if self.held(epoch) {
                self.value(here)
            } else {
                None
            };
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

    /// Heap bytes this series owns (its ring).
    pub fn heap_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u32>()
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
