//! Logging for the binary: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as
//! text or JSON lines, and a rate limiter for log lines about bad input.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Logs at most once per interval, counting what it suppressed.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_ms: i64,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Returns `Some(suppressed count)` when a line may be logged now.
    pub fn allow(&mut self, now_ms: i64, interval_ms: i64) -> Option<u64> {
        if now_ms - self.last_ms >= interval_ms {
            self.last_ms = now_ms;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
