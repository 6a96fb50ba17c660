//! Integration tests for Fulcrum. One binary, one module per area.

mod attribution;
mod check_policy;
mod demo;
mod inputs;
mod kafka;
mod memory;
mod operator;
mod scenario;
mod support;
mod trace;
