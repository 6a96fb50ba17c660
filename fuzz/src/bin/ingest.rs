//! Fuzz target: decoded samples into an engine. The input is JSON Lines of messages, each
//! decoded and offered to an engine holding the seed cluster and policy, advancing the
//! watermark after each line and flushing at the end (the path from the feed's decoder to
//! decisions). Checks that nothing panics (overflow checks are on) and that every sample
//! offered is accounted for.

use fulcrum_engine::sample::decode;
use fulcrum_fuzz::{inputs, options};

fn main() {
    let inputs = inputs();
    afl::fuzz!(|data: &[u8]| {
        let mut engine = inputs.engine();
        let mut out = Vec::new();
        let mut offered = 0u64;
        for line in data.split(|&b| b == b'\n') {
            if let Ok(decoded) = decode(line, &options()) {
                for sample in &decoded.samples {
                    engine.offer(sample);
                    offered += 1;
                }
                engine.advance_auto(&mut out);
            }
        }
        engine.flush(&mut out);
        assert_eq!(engine.stats().offered, offered);
    });
}
