//! Fulcrum: a run-time interference controller for Kubernetes.
//!
//! The library holds everything the `fulcrum` binary wires together:
//!
//! - [`sample`]: the `fulcrum.metrics/v1` event schema and its decoder.
//! - [`check`]: `fulcrum check-policy`.
//! - [`engine`]: pure detection, attribution and planning.
//! - [`feed`]: the production Kafka feed (consume, dead-letter, audit, commit).
//! - [`replay`]: `fulcrum replay` (backtests on recorded inputs).
//! - [`sim`]: `fulcrum demo` (simulated cluster through an embedded Kafka).
//! - [`actuator`]: how decisions become changes (Eviction API, or the simulator).
//! - [`manifest`]: reading multi-document YAML/JSON files and rendering the CRD.
//!
//! Layout and contracts are described in the repository's `ARCHITECTURE.md` and `docs/`.

pub mod actuator;
pub mod check;
pub mod engine;
pub mod feed;
pub mod manifest;
pub mod replay;
pub mod sample;
pub mod sim;
pub mod telemetry;
