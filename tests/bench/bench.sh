#!/usr/bin/env bash
# The performance benchmark (not part of the test suite): installs and builds what is missing,
# starts PostgreSQL, Kafka and Prefect's server, loads 1,000,000 runs and runs every scenario of
# tests/bench/bench.py. Arguments go to bench.py (e.g. --commands 5000 --skip prefect).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export BS_SOURCE_DIR=$SRC BS_BUILD_DIR=${BS_BUILD_DIR:-$SRC/build}
"$SRC/scripts/deps.sh"
# PostgreSQL's shared_buffers as a production server of this memory would have them: a quarter
# of it (PostgreSQL's documented starting point for a dedicated server); the test command's
# cluster keeps 256 MB. A cluster already running with another size is refused by bench.py.
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
export BS_PG_SHARED_BUFFERS=${BS_PG_SHARED_BUFFERS:-$(( mem_mb / 4 ))MB}
cmake -S "$SRC" -B "$BS_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BS_BUILD_DIR" >/dev/null
"$SRC/scripts/services.sh" start
prefect_up=0
if "$SRC/scripts/prefect.sh" start; then prefect_up=1; fi
# the neighbour with its services on, for the delivery scenario (events go to its bus)
if [ $prefect_up -eq 1 ] && "$SRC/scripts/prefect.sh" start-live; then prefect_up=2; fi
cleanup() {
  [ $prefect_up -lt 2 ] || "$SRC/scripts/prefect.sh" stop-live >/dev/null 2>&1 || true
  [ $prefect_up -eq 0 ] || "$SRC/scripts/prefect.sh" stop >/dev/null 2>&1 || true
  "$SRC/scripts/services.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
RUN=$BS_BUILD_DIR/services
source "$RUN/pg.env"; source "$RUN/kafka.env"
[ -f "$RUN/prefect.env" ] && source "$RUN/prefect.env"
if [ -f "$RUN/prefect-live.env" ]; then
  BS_LIVE_API_URL=$(source "$RUN/prefect-live.env" && echo "$PREFECT_API_URL")
  export BS_LIVE_API_URL BS_LIVE_DB=prefect_live BS_LIVE_PID_FILE=$RUN/prefect-live/pid
fi
python3 "$SRC/tests/bench/bench.py" "$@"
