//! `fulcrum demo`: a simulated co-located cluster fed through an in-process Kafka, decided
//! by the production feed and engine, acted on through the actuator interface.
//!
//! - [`model`]: the contention model (shared resources → online latency and CPI).
//! - [`world`]: nodes, pods, samples, evictions.
//! - [`scheduler`]: where replacement pods land.
//! - [`scenario`]: the demo cluster and its incidents.
//! - [`demo`]: the driver (embedded Kafka, feed, actuator, with/without comparison).
//! - [`report`]: timeline, JSON and chart.

pub mod demo;
pub mod model;
pub mod report;
pub mod scenario;
pub mod scheduler;
pub mod world;

pub use demo::{DemoError, DemoRun, run};
pub use scenario::DemoConfig;
