//! Fuzz target: the input as the members of a batch
//! (`{"schema":"fulcrum.metrics/v1","samples":[` input `]}`), so the fuzzer spends its time
//! on samples inside a batch, where a bad member must be rejected alone.

use fulcrum_engine::sample::decode;
use fulcrum_fuzz::{check_sample, options};

const HEAD: &[u8] = br#"{"schema":"fulcrum.metrics/v1","samples":["#;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut message = Vec::with_capacity(HEAD.len() + data.len() + 2);
        message.extend_from_slice(HEAD);
        message.extend_from_slice(data);
        message.extend_from_slice(b"]}");
        if let Ok(decoded) = decode(&message, &options()) {
            for sample in &decoded.samples {
                check_sample(sample);
            }
            for rejected in &decoded.rejected {
                let text = rejected.to_string();
                assert!(!text.is_empty(), "a rejection without a reason");
            }
        }
    });
}
