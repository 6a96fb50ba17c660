//! Unit checks on metric values: metrics whose name documents a range (`*_util`,
//! `*_ratio`, `psi_*`: fractions in 0..1) are rejected outside it with a reason that says
//! what is likely wrong, and no metric may carry an absurd magnitude.
//!
//! A sample with one such value is rejected whole (and dead-lettered by the feed): a
//! percentage read as a fraction would make every node fire.

use super::error::Problem;

/// Largest magnitude a metric value may have. Far above any real rate, size or count,
/// far below where sums of squares over a window would overflow an `f64`.
pub const MAX_MAGNITUDE: f64 = 1e18;

/// How far above 1 a fraction may read (counters sampled at slightly different instants
/// overshoot a little).
pub const FRACTION_SLACK: f64 = 0.05;

/// True for metric names that document a fraction in 0..1.
pub fn is_fraction(name: &str) -> bool {
    name.ends_with("_util") || name.ends_with("_ratio") || name.starts_with("psi_")
}

/// The problem with `value` for metric `name`, if it has one.
pub fn check(name: &str, value: f64) -> Option<Problem> {
    if value.abs() > MAX_MAGNITUDE {
        return Some(Problem::AbsurdMagnitude(value));
    }
    if !is_fraction(name) {
        return None;
    }
    let range = "0..1";
    if value < 0.0 {
        return Some(Problem::OutOfRange {
            value,
            range,
            hint: "a fraction cannot be negative (a counter that wrapped or was reset?)",
        });
    }
    if value > 1.0 + FRACTION_SLACK {
        let hint = if value <= 100.0 + FRACTION_SLACK * 100.0 {
            "it looks like a percentage: send value / 100"
        } else {
            "a fraction cannot exceed 1 (a raw counter or the wrong unit?)"
        };
        return Some(Problem::OutOfRange { value, range, hint });
    }
    None
}
