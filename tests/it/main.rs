//! Integration tests for Fulcrum. One binary, one module per area.

mod alloc;
mod attribution;
mod check_policy;
mod demo;
mod hostile;
mod inputs;
mod inputs_collector;
mod inputs_histograms;
mod inputs_window;
mod kafka;
mod memory;
mod operator;
mod scenario;
mod support;
mod trace;
