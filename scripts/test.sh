#!/usr/bin/env bash
# Runs every check and test of Fulcrum on a fresh machine: installs what the tests need
# (idempotently), then formatting, lints, all Rust tests, and manifest validation.
# CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test tools (Python venv in .venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "manifests in deploy/"
.venv/bin/python scripts/validate-manifests.py
