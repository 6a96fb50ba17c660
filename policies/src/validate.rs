//! Field errors, and `validate()`: every problem in a policy spec, each with its field path.
//!
//! The API server rejects what the CRD schema and its CEL rules can express; this module
//! checks everything (including those rules again, for `fulcrum check-policy` and for
//! objects created before a schema change) and is the single source of truth for
//! whether a policy may act.

use std::fmt;

use crate::compile::compile_spec;
use crate::metric::MetricRegistry;
use crate::spec::InterferencePolicySpec;

/// One problem in a policy, located by its field path, e.g.
/// `spec.triggers[1].outlier.sigma: must be > 0, got -1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Path of the offending field, starting at `spec` (or the document root).
    pub path: String,
    /// What is wrong and, where useful, what was found.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects field errors in the order they are found.
#[derive(Clone, Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded errors.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// Returns every problem in `spec` (empty when the policy is valid).
pub fn validate(spec: &InterferencePolicySpec) -> Vec<FieldError> {
    match compile_spec(spec, &mut MetricRegistry::new()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}
