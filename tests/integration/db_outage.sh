#!/usr/bin/env bash
# PostgreSQL goes away while a command waits: the worker retries with backoff (nothing
# committed, nothing dead-lettered), and once the database is back the command is applied
# exactly once and answered.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_RETRY_BACKOFF_MAX_MS=1000
P=0193d000-0000-7000-8000
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'outage', 'RUNNING', '{outage}')" >/dev/null
start_worker || { finish; exit 1; }

"$BS_SOURCE_DIR/scripts/pg.sh" down
printf '{"command_id": "outage-1", "flow_runs": {"tags": {"all_": ["outage"]}}, "state": {"type": "COMPLETED"}}' >"$TMP/c.json"
"$BIN" send --json -t 90 -f "$TMP/c.json" >"$TMP/out" 2>"$TMP/err" &
SEND=$!
deadline=$(( $(date +%s) + 60 ))
until grep -q "transient failure" "$WORKER_LOG" || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
check_match "worker retries while the database is down" "$(grep -m1 'transient failure' "$WORKER_LOG")" "transient failure partition=[0-9]+ offset=[0-9]+ retry_in_ms=[0-9]+ error=\"could not "
"$BS_SOURCE_DIR/scripts/pg.sh" up
wait "$SEND"; RC=$?
OUT=$(cat "$TMP/out")
check_eq "send succeeded after the outage" "$RC" 0
check_eq "applied once" "$(json_field '(c["matched"], c["accepted"], [x["state"]["type"] for x in r])')" "(1, 1, ['COMPLETED'])"
check_eq "one new state row" "$(sql "SELECT count(*) FROM flow_run_state WHERE flow_run_id = '$P-000000000001'")" 2
check_eq "worker still the same process" "$(kill -0 "$WORKER_PID" && echo alive)" alive
finish
