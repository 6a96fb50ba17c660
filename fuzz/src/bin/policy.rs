//! Fuzz target: the `check-policy` path. The input is a policy file (YAML or JSON, several
//! documents); every document goes through `check_document`. A policy it accepts must also
//! compile (one rule set) and must still be accepted after a round trip through JSON (what
//! the API server stores and hands back).

use fulcrum_fuzz::manifest::read_documents;
use fulcrum_policies::document::check_document;
use fulcrum_policies::{CompiledPolicy, MetricRegistry};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(documents) = read_documents(text) else {
            return;
        };
        for doc in documents {
            let Ok(policy) = check_document(&doc.value) else {
                continue;
            };
            let mut registry = MetricRegistry::new();
            if let Err(errors) = CompiledPolicy::compile(&policy, &mut registry) {
                panic!("check_document accepted a policy compile rejects: {errors:?}");
            }
            let stored = serde_json::to_value(&policy).expect("a policy serializes");
            if let Err(errors) = check_document(&stored) {
                panic!("an accepted policy is rejected after a JSON round trip: {errors:?}");
            }
        }
    });
}
