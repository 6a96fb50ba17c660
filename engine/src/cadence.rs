//! Sampling cadence and staleness. Feeds sample every 10 s, 15 s, 60 s or irregularly;
//! a fixed staleness bound either breaks every sustained trigger on a slow feed or waits
//! too long on a fast one. Each trigger track, pod and node therefore learns its own
//! cadence (the median of its last [`WINDOW`] intervals between distinct instants, so one
//! long hole does not change it) and is stale after `max(floor, cadences × cadence)`.
//! `--stale-after` sets the floor; given explicitly, it is the bound (cadences = 0).

/// Intervals the cadence is the median of.
pub const WINDOW: usize = 5;

/// How staleness is derived: a floor, and a multiple of the observed cadence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Staleness {
    /// Never stale before this long without a sample (ms).
    pub floor_ms: u64,
    /// Stale after this many observed intervals (0: the floor alone).
    pub cadences: f64,
}

impl From<u64> for Staleness {
    /// A fixed bound.
    fn from(floor_ms: u64) -> Self {
        Self {
            floor_ms,
            cadences: 0.0,
        }
    }
}

/// The recent intervals between distinct sample instants of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cadence {
    recent: [u32; WINDOW],
    len: u8,
    next: u8,
}

impl Cadence {
    /// Records the interval from `previous` to `ts` (ignored unless `ts` is later).
    pub fn observe(&mut self, previous: Option<i64>, ts: i64) {
        let Some(previous) = previous.filter(|p| ts > *p) else {
            return;
        };
        let interval = u32::try_from(ts - previous).unwrap_or(u32::MAX);
        self.recent[self.next as usize] = interval;
        self.next = (self.next + 1) % WINDOW as u8;
        self.len = (self.len + 1).min(WINDOW as u8);
    }

    /// The median of the recent intervals (ms), once one is known.
    pub fn interval_ms(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let mut v = self.recent;
        let known = &mut v[..self.len as usize];
        known.sort_unstable();
        Some(u64::from(known[known.len() / 2]))
    }

    /// How long without a sample makes this series stale (ms).
    pub fn stale_after(&self, s: impl Into<Staleness>) -> i64 {
        let s = s.into();
        let derived = self
            .interval_ms()
            .map_or(0.0, |i| i as f64 * s.cadences)
            .min(i64::MAX as f64 / 2.0) as i64;
        (s.floor_ms as i64).max(derived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cadence_is_the_median_interval_and_a_hole_does_not_move_it() {
        let mut c = Cadence::default();
        assert_eq!(c.interval_ms(), None);
        let mut last = None;
        for ts in [
            0,
            61_000,
            119_000,
            180_500,
            5 * 3_600_000,
            5 * 3_600_000 + 60_000,
        ] {
            c.observe(last, ts);
            last = Some(ts);
        }
        // Intervals 61, 58, 61.5, 5 h and 60 s: the median ignores the hole.
        assert_eq!(c.interval_ms(), Some(61_000));
        let s = Staleness {
            floor_ms: 60_000,
            cadences: 2.5,
        };
        assert_eq!(c.stale_after(s), 152_500);
        assert_eq!(c.stale_after(60_000u64), 60_000, "a fixed bound overrides");
        // A fast feed keeps the floor.
        let mut fast = Cadence::default();
        for i in 0..5 {
            fast.observe(Some(i * 10_000), (i + 1) * 10_000);
        }
        assert_eq!(fast.stale_after(s), 60_000);
    }
}
