#!/usr/bin/env bash
# A message that kills the worker every time it is delivered does not stall its partition:
# after worker.max_attempts deliveries that ended without a result it is dead-lettered with
# the reason, and the next command is applied. The "crash" here is a SIGKILL while the
# command waits on a row lock held by another session.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_MAX_ATTEMPTS=2 BULKSTATE_POSTGRES_LOCK_TIMEOUT_MS=0
export BULKSTATE_KAFKA_SESSION_TIMEOUT_MS=6000 BULKSTATE_KAFKA_HEARTBEAT_INTERVAL_MS=1000
P=0193f000-0000-7000-8000
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'poison-locked', 'PENDING', '{poison}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000002', 'poison-next', 'PENDING', '{poison-next}')" >/dev/null

# another session holds the run's row lock for the whole test
psql -X -q -c "BEGIN; SELECT 1 FROM flow_run WHERE id = '$P-000000000001' FOR UPDATE; SELECT pg_sleep(600);" >/dev/null 2>&1 &
LOCKER=$!
trap 'kill $LOCKER 2>/dev/null; if [ -n "$WORKER_PID" ]; then kill -9 "$WORKER_PID" 2>/dev/null; fi' EXIT

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then not_ok "timed out waiting for $what"; return 1; fi
    sleep 0.2
  done
}
blocked_sessions() {
  sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bulkstate' AND wait_event_type = 'Lock'"
}
worker_blocked() { [ "$(blocked_sessions)" -ge 1 ]; }
worker_gone() { [ "$(blocked_sessions)" -eq 0 ]; }
kill_worker() {
  kill -9 "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null; WORKER_PID=
}

printf '{"command_id": "poison-1", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "CANCELLED"}}' "$P-000000000001" >"$TMP/poison.json"
for attempt in 1 2; do
  start_worker || { finish; exit 1; }
  [ "$attempt" -eq 1 ] && "$BIN" send -f "$TMP/poison.json" --no-wait >/dev/null
  wait_until 60 "the worker to block on the lock (delivery $attempt)" worker_blocked && ok
  kill_worker
  # the killed session's lock wait ends with its connection
  wait_until 30 "the killed worker's session to go" worker_gone && ok
done
check_eq "deliveries counted" "$(sql "SELECT attempts FROM bulkstate.delivery_attempt WHERE \"offset\" >= 0 ORDER BY last_seen DESC LIMIT 1")" 2

start_worker || { finish; exit 1; }
wait_until 60 "the poison message to be dead-lettered" grep -q "code=poison_message" "$WORKER_LOG" && ok
# the log line comes before the dead-letter record is acknowledged: wait for the record
dlq_poison() {
  kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.dlq -o beginning -e -q -f '%h\n' 2>/dev/null |
    grep poison_message | tail -1 | grep -q "bulkstate.error.type=poison_message.*delivery 3 of this message"
}
wait_until 30 "the dead-letter record with the reason" dlq_poison && ok
printf '{"command_id": "poison-next", "flow_runs": {"tags": {"all_": ["poison-next"]}}, "state": {"type": "CANCELLED"}}' >"$TMP/next.json"
send "$TMP/next.json"
check_eq "the next command is applied" "$(json_field '(c["matched"], c["accepted"])')" "(1, 1)"
check_eq "the locked run was not transitioned" "$(sql "SELECT state_type FROM flow_run WHERE id = '$P-000000000001'")" PENDING
check_eq "no record of the poison command" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id = 'poison-1'")" 0
check_eq "settled deliveries are forgotten" "$(sql "SELECT count(*) FROM bulkstate.delivery_attempt")" 0
# a command that always runs into statement_timeout is a failed delivery each time too
stop_worker
export BULKSTATE_POSTGRES_STATEMENT_TIMEOUT_MS=1000
start_worker || { finish; exit 1; }
printf '{"command_id": "poison-2", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "CANCELLED"}}' "$P-000000000001" >"$TMP/poison2.json"
send "$TMP/poison2.json"
check_eq "statement timeouts end in a poison_message completion" "$(json_field '(c["command_id"], c["error"]["code"])')" "('poison-2', 'poison_message')"
check_eq "after max_attempts timeouts" "$(grep -c 'retry_in_ms=.*statement timeout' "$WORKER_LOG")" 2
kill $LOCKER 2>/dev/null
finish
