//! Integration tests for Fulcrum. One binary, one module per area.

mod check_policy;
mod demo;
mod kafka;
mod memory;
mod operator;
mod scenario;
mod support;
