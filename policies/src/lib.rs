//! The `InterferencePolicy` custom resource for Fulcrum: types, defaults, validation, and
//! compilation into the form the engine evaluates.
//!
//! This crate does no I/O. The flow is:
//!
//! 1. [`InterferencePolicy`] is what users write (and what `fulcrum crd` turns into the
//!    CRD schema). Decoding is lenient so a malformed policy can still be reported.
//! 2. [`validate`] returns every problem with its field path.
//! 3. [`CompiledPolicy::compile`] produces label matchers, millisecond durations and
//!    interned [`MetricId`]s for the engine, or the same errors `validate` gives.
//! 4. [`document`] checks whole YAML/JSON documents (kind, types, unknown fields, rules),
//!    for `fulcrum check-policy`.

#![warn(missing_docs)]

pub mod compile;
pub mod document;
pub mod duration;
pub mod metric;
pub mod selector;
pub mod spec;
pub mod status;
pub mod validate;

pub use compile::{CompiledPolicy, CompiledSpec, compile_spec};
pub use duration::Duration;
pub use metric::{MetricId, MetricRegistry, is_valid_metric_name};
pub use selector::{LabelMatcher, Labels};
pub use spec::{InterferencePolicy, InterferencePolicySpec};
pub use status::InterferencePolicyStatus;
pub use validate::{FieldError, validate};

/// The API group of Fulcrum's custom resources.
pub const GROUP: &str = "fulcrum.dev";
/// The API version of [`InterferencePolicy`].
pub const API_VERSION: &str = "fulcrum.dev/v1alpha1";

#[cfg(test)]
mod tests;
