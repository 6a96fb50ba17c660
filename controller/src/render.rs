//! Text formatting shared by every human-readable output (replay, demo, `run --output
//! text`): timestamps, durations and terminal colours.

pub use fulcrum_engine::limits::fmt_ms;

/// Formats ms since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}

/// Whether output is coloured with ANSI escape codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Colour on.
    pub color: bool,
}

impl Style {
    /// `text` in the ANSI SGR colour `code` (`"1;31"`), or as it is without colour.
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
