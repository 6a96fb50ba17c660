//! Fulcrum's adapters and binary: everything around the pure engine
//! ([`fulcrum_engine`]) that reads, writes or waits.
//!
//! - [`runner`]: the run loop joining feed, engine, actuator and audit (`run`, `demo`).
//! - [`feed`]: Kafka (consume, dead-letter, audit topic, commit).
//! - [`inputs`]: OTLP and Prometheus samples mapped onto policy metrics.
//! - [`cluster`]: the Kubernetes adapter: reflectors, policies and status, the Eviction-API
//!   actuator, the steering taint, Events.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`actuator`]: how decisions become changes (Eviction API, simulator, shadow).
//! - [`replay`]: `fulcrum replay` (backtests on recorded inputs).
//! - [`sim`]: `fulcrum demo` (simulated cluster through an embedded Kafka).
//! - [`bench`]: `fulcrum bench` (generated cluster and stream; throughput and memory).
//! - [`load`]: reading cluster snapshots and policy files.
//! - [`check`]: `fulcrum check-policy`.
//! - [`manifest`]: multi-document YAML/JSON files and the CRD.
//! - [`render`]: shared text formatting (times, colours).
//! - [`telemetry`], [`clock`]: logging and the wall clock.
//!
//! Dependencies point one way: `fulcrum_policies` ← `fulcrum_engine` ← these adapters ←
//! the binary; an adapter never imports another (what two share sits in [`runner`],
//! [`actuator`], [`render`] or, for decoding the OTLP and Prometheus formats, [`inputs`],
//! which depends only on the engine and the policies). Layout and contracts are described in the repository's
//! `ARCHITECTURE.md` and `docs/`.

#![warn(missing_docs)]

pub mod actuator;
pub mod admin;
pub mod bench;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod feed;
pub mod inputs;
pub mod load;
pub mod manifest;
pub mod render;
pub mod replay;
pub mod runner;
pub mod sim;
pub mod snapshot_check;
pub mod telemetry;
