//! Fuzz target: one message value through `fulcrum_engine::sample::decode` (a single sample
//! or a batch, whatever the bytes are). Today the feed accepts only the native JSON schema.
//! The OTLP and Prometheus decoders being added in `controller/src/inputs/` get targets of
//! their own here (`decode_otlp`, `decode_prometheus`) once they land.

use fulcrum_engine::sample::decode;
use fulcrum_fuzz::{check_sample, options};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(decoded) = decode(data, &options()) {
            for sample in &decoded.samples {
                check_sample(sample);
            }
        }
    });
}
