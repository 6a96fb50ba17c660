//! Integration tests for Fulcrum. One binary, one module per area.

mod alloc;
mod attribution;
mod check_policy;
mod demo;
mod hostile;
mod inputs;
mod kafka;
mod memory;
mod operator;
mod operator_api;
mod operator_cluster;
mod operator_manifests;
mod scenario;
mod support;
mod trace;
