//! Fulcrum's engine: pure, event-time detection of interference, attribution to a culprit,
//! and safe planning of actions.
//!
//! Samples (with their own timestamps) and a cluster index go in; [`Event`]s (detections,
//! [`Decision`]s, recoveries) come out. No I/O, no clock, no async: replay, simulation,
//! property tests and the operator drive the same code. The crate cannot name tokio, a
//! Kafka or Kubernetes client, or an HTTP stack: the test command fails if one of them ever
//! appears in its dependency tree. `docs/engine.md` explains the state, the maths and the
//! guards.
//!
//! ```text
//! offer(sample) ─► reorder buffer ─► advance(watermark) ─► apply in (ts, node, pod) order
//!                                                           └► evaluate (node, ts):
//!                                                              triggers → episode → attribution → plan
//! ```
//!
//! - [`sample`]: the `fulcrum.metrics/v1` event schema and its decoder.
//! - [`cluster`]: the engine's index of nodes, pods, namespaces and PodDisruptionBudgets.
//! - [`Engine`]: state, triggers, episodes, attribution, guards, limits and placement.
//! - [`decision`]: what the engine emits, with its explanation.

#![warn(missing_docs)]

mod align;
mod attribution;
mod breaker_counts;
pub mod cadence;
pub mod cluster;
mod cluster_info;
mod cluster_updates;
pub mod config;
pub mod decision;
mod engine;
mod evaluate;
mod evidence;
mod explain;
mod guards;
mod headroom;
mod ingest;
pub mod intern;
pub mod jump;
pub mod limits;
mod onset;
mod placebo;
mod placement;
mod plan_guards;
mod planner;
mod policy_set;
mod reorder;
mod resolve;
mod resources;
mod restore;
pub mod sample;
pub mod series;
mod significance;
mod state;
mod stats;
mod tolerated;
pub mod window;

pub use cluster::{ClusterIndex, ClusterUpdate, NodeId, NodeInfo, PdbInfo, PodId, PodInfo};
pub use config::EngineConfig;
pub use decision::{Decision, Event, Explanation, Outcome};
pub use engine::Engine;
pub use guards::SYSTEM_CRITICAL_PRIORITY;
pub use ingest::Offered;
pub use restore::RESTORED_TARGET_TTL_MS;
pub use stats::{EngineStats, PolicyStats};

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attribution;
#[cfg(test)]
mod tests_breakers;
#[cfg(test)]
mod tests_guards;
#[cfg(test)]
mod tests_modes;
#[cfg(test)]
mod tests_onset;
#[cfg(test)]
mod tests_placement;
#[cfg(test)]
mod tests_placement_index;
#[cfg(test)]
mod tests_restore;
#[cfg(test)]
mod tests_sparse;
#[cfg(test)]
mod tests_storm;
#[cfg(test)]
mod tests_time;
#[cfg(test)]
mod tests_window;
