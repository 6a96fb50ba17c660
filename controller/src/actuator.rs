//! The actuator interface: how a decision becomes a change in the world. The operator's
//! implementation calls the Eviction API (and steers replacements away from the source
//! node); the demo's applies the decision to the simulated cluster. Both receive exactly
//! the decisions the engine emitted with outcome `Executed`.

use crate::engine::{ClusterUpdate, Decision};

/// What carrying out a decision did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actuation {
    /// Where the replacement pod landed, when known.
    pub landed_on: Option<String>,
    /// Changes to the cluster view the action caused (pod gone, replacement, taint).
    pub updates: Vec<ClusterUpdate>,
}

/// Why a decision could not be carried out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActuationError {
    /// The API refused for now (a PodDisruptionBudget: HTTP 429); retry later.
    #[error("refused for now: {0}")]
    Refused(String),
    /// The target no longer exists (HTTP 404): nothing to do.
    #[error("target gone: {0}")]
    Gone(String),
    /// Any other failure.
    #[error("failed: {0}")]
    Failed(String),
}

/// Carries out executed decisions.
pub trait Actuator {
    /// Carries out `decision` at event time `now_ms`.
    fn execute(&mut self, decision: &Decision, now_ms: i64) -> Result<Actuation, ActuationError>;
}
