//! Integration tests for Fulcrum. One binary, one module per area.

mod alloc;
mod check_policy;
mod demo;
mod hostile;
mod kafka;
mod scenario;
mod support;
