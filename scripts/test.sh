#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, build with -Werror, run
# the unit tests and the integration tests (real PostgreSQL 15 and a real Kafka broker,
# started once for the run by the CTest fixture), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, a bounded fuzzing run, and the layout check.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${BS_BUILD_DIR:-$SRC/build}
JOBS=$(nproc)

"$SRC/scripts/deps.sh"

echo "== build (-Werror)"
cmake -S "$SRC" -B "$B" -G Ninja -DBS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$B" -j "$JOBS"

echo "== unit and integration tests"
(cd "$B" && ctest --output-on-failure --timeout 900)
# the figures the suite measured, from the full test log
grep -hE '^(filter-conformance:|orchestration-conformance:|expected|prefect-live:|# cancellation|# automation|fault-test |loaded 1,000,000|filter kind|[a-z_]+ +[0-9]+ +[0-9]+  )' \
  "$B/Testing/Temporary/LastTest.log" || true

echo "== unit tests under ASan + UBSan"
cmake -S "$SRC" -B "$B-asan" -G Ninja -DBS_WERROR=ON -DBS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$B-asan" -j "$JOBS"
(cd "$B-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest -L unit --output-on-failure)

echo "== fuzzing (libFuzzer, ASan + UBSan; ${BS_FUZZ_SECONDS:-60} s per harness)"
"$SRC/scripts/fuzz.sh" "${BS_FUZZ_SECONDS:-60}"

echo "== layout (.clang-format)"
cd "$SRC"
clang-format --dry-run --Werror src/*.c src/*/*.c src/*/*.h tests/*.h tests/unit/*.c tests/fuzz/*.c tests/integration/*.c
echo "layout ok"
