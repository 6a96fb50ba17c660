//! The wall clock, read only at the edges (the engine never reads a clock).

/// Wall clock in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
