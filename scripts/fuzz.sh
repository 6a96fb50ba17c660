#!/usr/bin/env bash
# Coverage-guided fuzzing of Fulcrum's input parsers with cargo-afl (stable Rust).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 600 s per target, every target
#
# Builds the targets in fuzz/ (a workspace of its own, never built by CI), then runs each
# target for SECONDS under `nice`, all in parallel, starting from the committed seed corpus
# in fuzz/seeds/TARGET (AFL's queue and findings go to fuzz/out/TARGET, not committed).
# Prints executions, corpus size and findings (crashes, hangs) per target; exits 1 if any
# target has a finding. A finding is reproduced with
#   fuzz/target/release/TARGET < fuzz/out/TARGET/default/crashes/id:...
# Needs: cargo install cargo-afl && cargo afl config --build  (once per machine).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode decode_batch policy cluster ingest)

command -v cargo-afl >/dev/null 2>&1 || {
  echo "cargo-afl missing: cargo install cargo-afl && cargo afl config --build" >&2
  exit 2
}

echo "==> building ${targets[*]} (cargo afl build --release)"
nice cargo afl build --release --bins

# No CPU binding (the machine is shared), no UI, and tolerate a non-default core pattern.
export AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
mkdir -p out
pids=()
for t in "${targets[@]}"; do
  rm -rf "out/$t"
  echo "==> fuzzing $t for ${seconds}s"
  nice cargo afl fuzz -V "$seconds" -i "seeds/$t" -o "out/$t" "target/release/$t" \
    >"out/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done

stat() { sed -n "s/^$2 *: //p" "out/$1/default/fuzzer_stats" 2>/dev/null | head -n 1; }
printf '\n%-14s %12s %10s %8s %8s %6s %s\n' target executions "exec/s" seconds corpus crashes hangs
findings=0
for t in "${targets[@]}"; do
  crashes=$(stat "$t" saved_crashes)
  hangs=$(stat "$t" saved_hangs)
  printf '%-14s %12s %10s %8s %8s %6s %s\n' "$t" "$(stat "$t" execs_done)" \
    "$(stat "$t" execs_per_sec)" "$(stat "$t" run_time)" "$(stat "$t" corpus_count)" \
    "${crashes:-?}" "${hangs:-?}"
  findings=$((findings + ${crashes:-1} + ${hangs:-1}))
done
if [ "$status" -ne 0 ]; then echo "a fuzzer exited with status $status (see fuzz/out/*.log)"; fi
if [ "$findings" -ne 0 ]; then
  echo "FINDINGS: $findings (inputs in fuzz/out/TARGET/default/{crashes,hangs}/)"
  exit 1
fi
echo "no findings"
