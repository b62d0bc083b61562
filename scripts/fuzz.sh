#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) in build-fuzz and runs each for
# SECONDS (default 60), starting from the committed corpus in tests/fuzz/corpus/<harness>
# (new inputs go to build-fuzz/corpus, the committed corpus is not touched). Prints, per
# harness, one line: `fuzz <name>: seconds=<S> runs=<N> crashes=<C>`; exits 1 on a finding
# (the reproducer is left in build-fuzz/).
#   scripts/fuzz.sh [SECONDS]    run
#   scripts/fuzz.sh --seeds      regenerate the committed seeds from the sample bodies
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$SRC/build-fuzz
CC=${CC_FUZZ:-clang-14}
"$SRC/scripts/deps.sh"
cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_C_COMPILER="$CC" -DBS_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$B" --target fuzz_avro fuzz_json fuzz_seeds >/dev/null
if [ "${1:-}" = "--seeds" ]; then
  mkdir -p "$SRC/tests/fuzz/corpus/json" "$SRC/tests/fuzz/corpus/avro"
  "$B/fuzz_seeds" "$SRC/tests/fuzz/corpus" "$SRC/tests/data/seed_body.json" "$SRC"/scripts/demo/*.json \
    "$SRC"/tests/fuzz/bodies/*.json
  echo "seeds written to tests/fuzz/corpus"
  exit 0
fi
SECONDS_EACH=${1:-60}
# BS_FUZZ_PARALLEL=1 runs the harnesses at the same time (one core each)
run_one() {
  local h=$1 log=$B/fuzz_$1.log rc=0
  mkdir -p "$B/corpus/$h" "$B/artifacts/$h"
  # inputs up to the real limit (max_message_bytes, 983,040): one valid body just under it
  if [ "$h" = json ]; then python3 -c 'import json; b = {"command_id": "near-limit", "state": {"type": "CANCELLED", "message": ""}, "flow_runs": {"tags": {"any_": ["t%d" % i for i in range(9000)]}}}; n = 983040 - 16 - len(json.dumps(b)); b["state"]["message"] = "\u00e9" * (n // 2); print(json.dumps(b, ensure_ascii=False))' >"$B/corpus/$h/near-limit.json"; fi
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:fast_unwind_on_malloc=0 \
    LSAN_OPTIONS=suppressions=$SRC/tests/fuzz/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 \
    "$B/fuzz_$h" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=983040 -timeout=10 \
    -artifact_prefix="$B/artifacts/$h/" -print_final_stats=1 \
    "$B/corpus/$h" "$SRC/tests/fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  echo $rc >"$B/fuzz_$h.rc" # a finding is reported below, with its log
}
report() {
  local h=$1 log=$B/fuzz_$1.log
  local runs crashes rc
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  crashes=$(ls "$B/artifacts/$h" | wc -l)
  rc=$(cat "$B/fuzz_$h.rc")
  echo "fuzz $h: seconds=$SECONDS_EACH runs=${runs:-0} crashes=$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    tail -40 "$log"
    return 1
  fi
}
if [ "${BS_FUZZ_PARALLEL:-0}" = 1 ]; then
  run_one avro & run_one json & wait
else
  run_one avro
  run_one json
fi
status=0
report avro || status=1
report json || status=1
exit $status
