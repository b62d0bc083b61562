#!/usr/bin/env bash
# The performance benchmark (not part of the test suite): installs and builds what is missing,
# starts PostgreSQL, Kafka and Prefect's server, loads 1,000,000 runs and runs every scenario of
# tests/bench/bench.py. Arguments go to bench.py (e.g. --commands 5000 --skip prefect).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export BS_SOURCE_DIR=$SRC BS_BUILD_DIR=${BS_BUILD_DIR:-$SRC/build}
"$SRC/scripts/deps.sh"
cmake -S "$SRC" -B "$BS_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BS_BUILD_DIR" >/dev/null
"$SRC/scripts/services.sh" start
prefect_up=0
if "$SRC/scripts/prefect.sh" start; then prefect_up=1; fi
cleanup() {
  [ $prefect_up -eq 0 ] || "$SRC/scripts/prefect.sh" stop >/dev/null 2>&1 || true
  "$SRC/scripts/services.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
RUN=$BS_BUILD_DIR/services
source "$RUN/pg.env"; source "$RUN/kafka.env"
[ -f "$RUN/prefect.env" ] && source "$RUN/prefect.env"
python3 "$SRC/tests/bench/bench.py" "$@"
