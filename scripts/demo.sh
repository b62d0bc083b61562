#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is missing, build, start
# PostgreSQL 15 and Kafka (KRaft), migrate, seed sample flow runs, start the worker, send the
# sample commands through Kafka, print each per-run result and the runs' final states, stop.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
export BS_SOURCE_DIR=$SRC BS_BUILD_DIR=${BS_BUILD_DIR:-$SRC/build}
BIN=$BS_BUILD_DIR/bulkstate
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing missing packages (Debian)"
"$SRC/scripts/deps.sh"
say "building"
cmake -S "$SRC" -B "$BS_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BS_BUILD_DIR" >/dev/null
say "starting PostgreSQL and Kafka, migrating, creating topics"
WORKER=
cleanup() {
  if [ -n "$WORKER" ]; then kill -TERM "$WORKER" 2>/dev/null || true; wait "$WORKER" 2>/dev/null || true; fi
  "$SRC/scripts/services.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$SRC/scripts/services.sh" start
source "$BS_BUILD_DIR/services/pg.env"; source "$BS_BUILD_DIR/services/kafka.env"
export PGDATABASE=bulkstate BULKSTATE_CONFIG=$SRC/config/bulkstate.ini
export BULKSTATE_WORKER_METRICS_LISTEN=127.0.0.1:0 # a free port: another worker may hold 9464
export BULKSTATE_POSTGRES_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=bulkstate"

say "seeding sample flow runs"
psql -X -q -v ON_ERROR_STOP=1 -f "$SRC/scripts/demo/seed.sql" >/dev/null
psql -X -P footer=off -c "SELECT id, name, state_type, state_name, tags FROM flow_run ORDER BY id DESC"

say "starting the worker (log: $BS_BUILD_DIR/demo-worker.log)"
"$BIN" worker >"$BS_BUILD_DIR/demo-worker.log" 2>&1 &
WORKER=$!
for _ in $(seq 1 300); do grep -q "partitions assigned" "$BS_BUILD_DIR/demo-worker.log" && break; sleep 0.1; done
grep -q "partitions assigned" "$BS_BUILD_DIR/demo-worker.log" || { cat "$BS_BUILD_DIR/demo-worker.log"; exit 1; }

run() { # run TITLE EXPECTED_EXIT FILE [send options]
  local title=$1 want=$2 file=$3; shift 3
  say "$title"
  echo "\$ bulkstate send -f ${file#$SRC/} $*"
  set +e; "$BIN" send -t 60 -f "$file" "$@"; local rc=$?; set -e
  [ "$rc" -eq "$want" ] || { echo "unexpected exit status $rc (want $want)"; exit 1; }
}
run "1. cancel three runs by id (core rules, force=false)" 0 "$SRC/scripts/demo/1-cancel-by-id.json"
run "2. reschedule every 'nightly' run (force=true)" 0 "$SRC/scripts/demo/2-reschedule-by-tag.json"
run "3. a filter that matches nothing" 0 "$SRC/scripts/demo/3-matches-nothing.json"
run "4. an invalid command (seed JSON body, bad UUID): error reply, dead-lettered" 1 "$SRC/scripts/demo/4-invalid.json" --format json
run "5. command 1 redelivered: applied once, results republished from the record" 0 "$SRC/scripts/demo/1-cancel-by-id.json"

say "final state of the runs"
psql -X -P footer=off -c "SELECT fr.name, fr.state_type, fr.state_name, fr.run_count,
    to_char(fr.next_scheduled_start_time, 'YYYY-MM-DD HH24:MI') AS next_scheduled,
    (SELECT count(*) FROM flow_run_state s WHERE s.flow_run_id = fr.id) AS states
  FROM flow_run fr ORDER BY fr.id DESC"
say "dead-letter topic"
kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.dlq -o beginning -e -q \
  -f 'offset %o  %h\n' 2>/dev/null | tr ',' '\n  ' | sed 's/^/  /'
PORT=$(sed -n 's/.*http listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$BS_BUILD_DIR/demo-worker.log" | head -1)
say "the worker's /metrics (a few lines; curl http://127.0.0.1:$PORT/metrics)"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^bulkstate_(commands_completed_total|transitions_total|state_changes_total|dead_letters_total|command_latency_seconds_count)' | sed 's/^/  /'
say "worker log"
tail -n 8 "$BS_BUILD_DIR/demo-worker.log"
