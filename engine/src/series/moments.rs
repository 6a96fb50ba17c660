//! Sliding moments for learned baselines: one epoch for the whole ring, counts and sums
//! by slot.

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

const SLOTS: usize = 32;

/// Sliding count/mean/deviation over a time window, in [`Moments::SLOTS`] sub-buckets
/// (the window slides in steps of `window / SLOTS`). A sample older than the ring is
/// ignored. Sums stay `f64`: the deviation is computed from the sum of squares, which
/// `f32` would cancel away. A sub-bucket counts at most `u32::MAX` samples.
#[derive(Clone, Debug)]
pub struct Moments {
    width_ms: i64,
    /// Epoch of the newest sub-bucket: slot `e mod SLOTS` holds epoch `e` for `e` in
    /// `(head - SLOTS, head]` (an empty slot has a count of 0).
    head: i64,
    n: [u32; SLOTS],
    sum: [f64; SLOTS],
    sum_sq: [f64; SLOTS],
}

impl Moments {
    /// Sub-buckets per window.
    pub const SLOTS: usize = SLOTS;

    /// Moments over the last `window_ms`.
    pub fn new(window_ms: u64) -> Self {
        Self {
            width_ms: (window_ms / SLOTS as u64).clamp(1, i64::MAX as u64) as i64,
            head: i64::MIN,
            n: [0; SLOTS],
            sum: [0.0; SLOTS],
            sum_sq: [0.0; SLOTS],
        }
    }

    fn slot(epoch: i64) -> usize {
        epoch.rem_euclid(SLOTS as i64) as usize
    }

    /// Adds a sample.
    #[inline]
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        let epoch = ts_ms.div_euclid(self.width_ms);
        if epoch > self.head {
            let gap = self.head.abs_diff(epoch);
            if gap >= SLOTS as u64 {
                self.n = [0; SLOTS];
            } else {
                for e in 1..=gap as i64 {
                    self.n[Self::slot(self.head + e)] = 0;
                }
            }
            self.head = epoch;
        } else if self.head.abs_diff(epoch) >= SLOTS as u64 {
            return;
        }
        let slot = Self::slot(epoch);
        if self.n[slot] == 0 {
            self.sum[slot] = 0.0;
            self.sum_sq[slot] = 0.0;
        }
        let Some(n) = self.n[slot].checked_add(1) else {
            return;
        };
        self.n[slot] = n;
        self.sum[slot] += value;
        self.sum_sq[slot] += value * value;
    }

    /// The baseline over the window ending at `ts_ms`.
    pub fn baseline(&self, ts_ms: i64) -> Baseline {
        let newest = ts_ms.div_euclid(self.width_ms);
        let oldest = newest.saturating_sub(SLOTS as i64 - 1);
        let (mut n, mut sum, mut sum_sq) = (0u64, 0.0, 0.0);
        let head_slot = Self::slot(self.head);
        // Slot order, as the sums were always added (the same rounding).
        for slot in 0..SLOTS {
            if self.n[slot] == 0 {
                continue;
            }
            let epoch = self.head - ((head_slot + SLOTS - slot) % SLOTS) as i64;
            if epoch >= oldest && epoch <= newest {
                n += u64::from(self.n[slot]);
                sum += self.sum[slot];
                sum_sq += self.sum_sq[slot];
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
