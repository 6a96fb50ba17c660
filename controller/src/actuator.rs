//! The actuator interface: how a decision becomes a change in the world. The runner hands
//! every decision with outcome `Executed` to an [`Actuator`]: the operator's calls the
//! Eviction API, the demo's changes the simulated cluster, and shadow mode's
//! ([`Shadow`]) changes nothing.

use std::future::Future;

use fulcrum_engine::{ClusterUpdate, Decision};

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
    /// The target no longer exists (HTTP 404): nothing to do.
    #[error("target gone: {0}")]
    Gone(String),
    /// The API refused for now (HTTP 429: a PodDisruptionBudget allows no disruption). The
    /// action is not counted against limits; the episode may decide again.
    #[error("blocked: {0}")]
    Blocked(String),
    /// The API kept failing (5xx, timeouts, connection errors) after bounded retries.
    #[error("failed: {0}")]
    Failed(String),
}

impl ActuationError {
    /// A short label for metrics and Events: `Gone`, `Blocked` or `Failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Gone(_) => "Gone",
            Self::Blocked(_) => "Blocked",
            Self::Failed(_) => "Failed",
        }
    }
}

/// Carries out executed decisions.
pub trait Actuator: Send {
    /// Carries out `decision`.
    fn execute(
        &mut self,
        decision: &Decision,
    ) -> impl Future<Output = Result<Actuation, ActuationError>> + Send;
}

/// Shadow mode: decisions are published and printed, and nothing is changed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shadow;

impl Actuator for Shadow {
    async fn execute(&mut self, _decision: &Decision) -> Result<Actuation, ActuationError> {
        Ok(Actuation::default())
    }
}
