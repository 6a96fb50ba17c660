//! Integration tests for Fulcrum. One binary, one module per area.

mod accounting;
mod alloc;
mod attribution;
mod audit;
mod bench;
mod check_policy;
mod demo;
mod faults;
mod hostile;
mod inputs;
mod inputs_collector;
mod inputs_histograms;
mod inputs_window;
mod kafka;
mod memory;
mod operator;
mod operator_api;
mod operator_cluster;
mod operator_manifests;
mod scenario;
mod support;
mod trace;
