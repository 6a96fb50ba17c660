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
