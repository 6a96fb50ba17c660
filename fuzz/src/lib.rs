//! Shared helpers of the fuzz targets: a fixed decoder clock and the small cluster and
//! policy the ingest target feeds samples into. The targets are in `src/bin/`; each one
//! panics (an AFL "crash") when a property it checks does not hold.

use cluster::convert::load_cluster;
use fulcrum_engine::sample::{DecodeOptions, MIN_TS_MS, Sample};
use fulcrum_engine::{ClusterIndex, Engine, EngineConfig};
use fulcrum_policies::document::check_document;
use fulcrum_policies::{InterferencePolicy, is_valid_metric_name};
use manifest::read_documents;

/// `fulcrum::manifest`, compiled from its source (see Cargo.toml).
#[path = "../../controller/src/manifest.rs"]
#[allow(dead_code)]
pub mod manifest;

/// `fulcrum::cluster::convert`, compiled from its source (see Cargo.toml).
#[path = "../../controller/src/cluster/convert.rs"]
pub mod convert;

/// `fulcrum::cluster`, as far as the targets use it.
pub mod cluster {
    pub use crate::convert;
}

/// The decoder's "now" in every target (2026-11-26T10:00:00Z), so runs are reproducible.
pub const NOW_MS: i64 = 1_795_687_200_000;

/// Decoder options with the fixed clock.
pub fn options() -> DecodeOptions {
    DecodeOptions { now_ms: NOW_MS }
}

/// Checks what the decoder promises about every sample it accepts.
pub fn check_sample(sample: &Sample<'_>) {
    assert!(sample.ts_ms >= MIN_TS_MS, "accepted ts {}", sample.ts_ms);
    assert!(!sample.node.is_empty(), "accepted an empty node");
    for m in &sample.metrics {
        assert!(m.value.is_finite(), "accepted a non-finite {}", m.name);
        assert!(
            is_valid_metric_name(&m.name),
            "accepted metric name {:?}",
            m.name
        );
    }
    let owned = sample.clone().into_owned();
    assert_eq!(
        format!("{owned:?}"),
        format!("{sample:?}"),
        "into_owned changed the sample"
    );
}

/// The cluster seed (`seeds/cluster/list.yaml`) and the policy seed, parsed once.
pub struct Inputs {
    cluster: ClusterIndex,
    policy: InterferencePolicy,
}

impl Inputs {
    /// A fresh engine holding the seed cluster and policy.
    pub fn engine(&self) -> Engine {
        let mut engine = Engine::new(EngineConfig::default());
        engine.load_cluster(self.cluster.clone());
        let rejected = engine.set_policies(std::slice::from_ref(&self.policy));
        assert!(rejected.is_empty(), "policy seed rejected: {rejected:?}");
        engine
    }
}

/// Parses the seed cluster and policy.
pub fn inputs() -> Inputs {
    let text = include_str!("../seeds/cluster/list.yaml");
    let objects: Vec<_> = read_documents(text)
        .expect("cluster seed parses")
        .into_iter()
        .map(|d| d.value)
        .collect();
    let cluster = load_cluster(&objects).expect("cluster seed loads");
    let policy_text = include_str!("../seeds/policy/protect-online.yaml");
    let policy = read_documents(policy_text).expect("policy seed parses");
    let policy = check_document(&policy[0].value).expect("policy seed is valid");
    Inputs {
        cluster: cluster.index,
        policy,
    }
}
