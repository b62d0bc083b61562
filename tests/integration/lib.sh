# Helpers of the integration tests. Sourced. The services were started once for the whole run
# by the services_start fixture; each test starts its own worker.
set -uo pipefail
BS_SOURCE_DIR=${BS_SOURCE_DIR:?}
BS_BUILD_DIR=${BS_BUILD_DIR:?}
BIN=$BS_BUILD_DIR/bulkstate
source "$BS_BUILD_DIR/services/pg.env"
source "$BS_BUILD_DIR/services/kafka.env"
export PGDATABASE=bulkstate
export BULKSTATE_CONFIG=$BS_SOURCE_DIR/config/bulkstate.ini
# several workers run at once in some tests: each takes a free port for /metrics
export BULKSTATE_WORKER_METRICS_LISTEN=127.0.0.1:0
export BULKSTATE_POSTGRES_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=bulkstate"
TMP=$(mktemp -d)
PASSED=0
FAILED=0
WORKER_PID=

ok() { PASSED=$((PASSED + 1)); }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }

# check_eq DESCRIPTION GOT WANT
check_eq() {
  if [ "$2" == "$3" ]; then ok; else not_ok "$1: got '$2', want '$3'"; fi
}

# check_match DESCRIPTION TEXT REGEX
check_match() {
  if printf '%s' "$2" | grep -Eq -- "$3"; then ok; else not_ok "$1: '$2' does not match /$3/"; fi
}

sql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }

# start_worker: starts a worker and waits (bounded) until it has its partitions.
start_worker() {
  WORKER_LOG=$TMP/worker.$RANDOM.log
  "$BIN" worker >"$WORKER_LOG" 2>&1 &
  WORKER_PID=$!
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q "partitions assigned" "$WORKER_LOG"; do
    if ! kill -0 "$WORKER_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
      cat "$WORKER_LOG" >&2
      not_ok "worker did not get its partitions"
      return 1
    fi
    sleep 0.1
  done
}

# stop_worker: SIGTERM, and the worker must exit 0 within 30 s.
stop_worker() {
  [ -n "$WORKER_PID" ] || return 0
  kill -TERM "$WORKER_PID" 2>/dev/null
  local i
  for i in $(seq 1 300); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -9 "$WORKER_PID"; not_ok "worker did not stop on SIGTERM"
  fi
  wait "$WORKER_PID"; check_eq "worker exit status after SIGTERM" "$?" 0
  WORKER_PID=
}

# send FILE [args...]: runs `bulkstate send --json`, output in $OUT, status in $RC.
send() {
  local f=$1; shift
  OUT=$("$BIN" send --json -t 60 -f "$f" "$@" 2>"$TMP/send.err"); RC=$?
  [ $RC -le 1 ] || cat "$TMP/send.err" >&2
}

# json_field EXPR: evaluates a Python expression over the JSON lines of $OUT
# (r = results in seq order, c = completion).
json_field() {
  printf '%s\n' "$OUT" | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin if l.strip()]
r = [l for l in lines if "seq" in l]
c = [l for l in lines if "matched" in l]
c = c[0] if c else {}
print(eval(sys.argv[1]))' "$1"
}

finish() {
  [ -n "${KEEP_LOG:-}" ] && cp "$WORKER_LOG" "$KEEP_LOG"
  stop_worker
  rm -rf "$TMP"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
trap 'if [ -n "$WORKER_PID" ]; then kill -9 "$WORKER_PID" 2>/dev/null; fi' EXIT
