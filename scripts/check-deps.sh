#!/usr/bin/env bash
# The architecture's arrows, checked: the pure crates (`fulcrum-policies`, `fulcrum-engine`)
# must never depend, directly or transitively, on an async runtime, a Kafka or Kubernetes
# client, an HTTP stack or a drawing library. Fails naming the crate and the path to it.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden=(tokio mio rdkafka rdkafka-sys kube-client kube-runtime hyper hyper-util h2 tonic
  reqwest tower plotters opentelemetry opentelemetry_sdk fulcrum)
status=0
for crate in fulcrum-policies fulcrum-engine; do
  deps=$(cargo tree -p "$crate" -e normal,build --prefix none --format '{p}' |
    awk '{print $1}' | sort -u)
  for bad in "${forbidden[@]}"; do
    if grep -qx "$bad" <<<"$deps"; then
      echo "error: $crate depends on $bad:" >&2
      cargo tree -p "$crate" -e normal,build -i "$bad" >&2 || true
      status=1
    fi
  done
  echo "$crate: $(wc -l <<<"$deps") crates, none of: ${forbidden[*]}"
done
exit $status
