#!/usr/bin/env bash
# Operating the worker: /healthz, /readyz and /metrics on the HTTP endpoint (counters checked
# against what was sent), systemd's notify protocol on a NOTIFY_SOCKET (READY, STATUS,
# WATCHDOG, STOPPING), SIGHUP reload (applied, restart-only and broken configs), and the CLI's
# exit codes.
source "$(dirname "$0")/lib.sh"
P=0193f000-0000-7000-8f00
for i in 1 2 3; do
  sql "SELECT bulkstate_dev.new_run('$P-00000000000$i', 'ops-$i', 'SCHEDULED', '{ops}', NULL, now() + interval '1 hour')" >/dev/null
done
cp "$BULKSTATE_CONFIG" "$TMP/w.ini"
export BULKSTATE_CONFIG=$TMP/w.ini
export BULKSTATE_WORKER_METRICS_LISTEN=127.0.0.1:0 BULKSTATE_KAFKA_STATISTICS_INTERVAL_MS=500
export NOTIFY_SOCKET=$TMP/notify.sock WATCHDOG_USEC=1000000
# secrets in the configuration never reach the log (trust authentication ignores the password;
# the SASL password is unused on a PLAINTEXT listener)
export BULKSTATE_POSTGRES_CONNINFO="$BULKSTATE_POSTGRES_CONNINFO password=ops-secret-pg"
export BULKSTATE_KAFKA_SASL_PASSWORD=ops-secret-sasl
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", "|") + "\n")
        f.flush()' "$NOTIFY_SOCKET" "$TMP/notify.log" &
LISTENER=$!
trap 'kill $LISTENER 2>/dev/null; if [ -n "$WORKER_PID" ]; then kill -9 "$WORKER_PID" 2>/dev/null; fi' EXIT
for i in $(seq 1 50); do [ -S "$NOTIFY_SOCKET" ] && break; sleep 0.1; done

start_worker || { finish; exit 1; }
PORT=$(sed -n 's/.*http listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORKER_LOG" | head -1)
check_match "the endpoint's port is logged" "$PORT" '^[0-9]+$'
URL=http://127.0.0.1:$PORT
wait_for_text() { # wait_for_text SECONDS COMMAND REGEX: until COMMAND's output matches
  local deadline=$(( $(date +%s) + $1 ))
  until "$2" | grep -Eq -- "$3"; do [ "$(date +%s)" -ge "$deadline" ] && return 1; sleep 0.1; done
}
get() { curl -s -o - -w '\n%{http_code}' "$URL$1"; }
check_eq "/healthz" "$(get /healthz | tr '\n' ' ')" "ok  200"
ready() { get /readyz; }
wait_for_text 30 ready '^200$' && ok || not_ok "/readyz never answered 200: $(get /readyz)"
check_eq "/readyz body" "$(get /readyz | head -1)" "ready"
check_eq "unknown path" "$(get /nope | tail -1)" 404
notified() { cat "$TMP/notify.log" 2>/dev/null; }
wait_for_text 10 notified '^READY=1\|STATUS=ready: [0-9]+ partitions assigned' && ok || not_ok "no READY=1: $(notified)"

metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
before_consumed=$(metric bulkstate_commands_consumed_total)
before_applied=$(metric 'bulkstate_commands_completed_total{outcome="applied"}')
printf '{"command_id": "ops-cancel", "flow_runs": {"tags": {"all_": ["ops"]}}, "state": {"type": "CANCELLED"}}' >"$TMP/c1.json"
send "$TMP/c1.json"
check_eq "the command applied" "$(json_field '(c["matched"], c["accepted"])')" "(3, 3)"
printf '{"command_id": "ops-bad", "flow_runs": {"id": {"any_": ["not-a-uuid"]}}, "state": {"type": "CANCELLED"}}' >"$TMP/c2.json"
send "$TMP/c2.json"
check_eq "the bad command answered" "$(json_field 'c["error"]["code"]')" invalid_command
send "$TMP/c1.json" # redelivered command id: replayed
# send --follow: the replies of a command already sent, streamed from the reply topic
OUT=$("$BIN" send --follow ops-cancel --json -t 60 2>"$TMP/follow.err"); rc=$?
check_eq "follow exit status" "$rc" 0
check_eq "follow prints the results and the completion" "$(json_field '(len(r) >= 3, c["matched"], c["accepted"])')" "(True, 3, 3)"
"$BIN" send --follow ops-bad --json -t 60 >/dev/null 2>&1; check_eq "follow an error completion" "$?" 1
"$BIN" send --follow no-such-command -t 2 >/dev/null 2>&1; check_eq "follow times out" "$?" 2
check_eq "consumed" "$(( $(metric bulkstate_commands_consumed_total) - before_consumed ))" 3
check_eq "applied" "$(( $(metric 'bulkstate_commands_completed_total{outcome="applied"}') - before_applied ))" 1
check_eq "replayed" "$(metric 'bulkstate_commands_completed_total{outcome="replayed"}')" 1
check_eq "failed by code" "$(metric 'bulkstate_commands_failed_total{code="invalid_command"}')" 1
check_eq "dead letters" "$(metric bulkstate_dead_letters_total)" 1
check_eq "transitions" "$(metric 'bulkstate_transitions_total{status="ACCEPT"}')" 3
check_eq "state changes by type" "$(metric 'bulkstate_state_changes_total{from="SCHEDULED",to="CANCELLED"}')" 3
check_eq "runs per command" "$(metric 'bulkstate_command_runs_bucket{le="5"}') $(metric bulkstate_command_runs_sum)" "1 3.000000"
check_match "latency observed for every settled command" "$(metric bulkstate_command_latency_seconds_count)" '^[3-9]$'
check_eq "db transactions" "$(metric bulkstate_db_transaction_seconds_count)" 1
check_eq "in flight" "$(metric bulkstate_inflight_commands)" 0
lag_lines() { curl -s "$URL/metrics" | grep -c '^bulkstate_consumer_lag{topic="bulkstate.commands"'; }
wait_for_text 20 lag_lines '^[1-9]' && ok || not_ok "no consumer lag from librdkafka statistics"
wait_for_text 10 notified '^STATUS=[0-9]+ commands' && ok || not_ok "no STATUS= summary: $(notified)"
wait_for_text 10 notified '^WATCHDOG=1' && ok || not_ok "no WATCHDOG=1: $(notified)"

# SIGHUP: a reloadable key is applied, a restart-only key is named, a broken file is refused
sed -i 's/^retry_backoff_max_ms = .*/retry_backoff_max_ms = 20000/; s/^partition.assignment.strategy = .*/partition.assignment.strategy = roundrobin,range/' "$TMP/w.ini"
kill -HUP "$WORKER_PID"
logged() { cat "$WORKER_LOG"; }
wait_for_text 10 logged 'reload: worker.retry_backoff_max_ms: 30000 -> 20000' && ok || not_ok "reload not applied"
check_match "restart-only change named" "$(logged)" 'reload: \[kafka\] changed: takes effect after a restart'
check_match "reload summary" "$(logged)" 'reloaded .*w.ini: 1 key applied'
printf '[worker]\nmax_attempts = many\n' >>"$TMP/w.ini"
kill -HUP "$WORKER_PID"
wait_for_text 10 logged 'reload failed, keeping the running configuration: .*w.ini:[0-9]+: worker.max_attempts: "many" is not an integer' && ok || not_ok "broken reload not refused: $(grep reload "$WORKER_LOG" | tail -2)"
check_eq "still serving after a refused reload" "$(get /healthz | tail -1)" 200

# check-config validates every key with file:line and exit 78
"$BIN" check-config >"$TMP/cc.out" 2>&1; rc=$?
check_eq "check-config exit status on a broken file" "$rc" 78
check_match "check-config names file:line" "$(cat "$TMP/cc.out")" 'w.ini:[0-9]+: worker.max_attempts: "many" is not an integer'
stop_worker
check_eq "no secret in the log" "$(grep -c 'ops-secret' "$WORKER_LOG")" 0
wait_for_text 10 notified '^STOPPING=1' && ok || not_ok "no STOPPING=1: $(notified)"

# the CLI's exit codes
"$BIN" --version >/dev/null; check_eq "--version" "$?" 0
"$BIN" frobnicate >/dev/null 2>&1; check_eq "an unknown command is a usage error" "$?" 64
for c in worker migrate topics send select status tail check-config; do
  # the configuration in $BULKSTATE_CONFIG is broken by now: --help works regardless
  "$BIN" $c --help >/dev/null 2>&1; check_eq "$c --help" "$?" 0
done
"$BIN" -c "$BS_SOURCE_DIR/config/bulkstate.ini" status no-such-command >/dev/null 2>&1; check_eq "status of an unknown command" "$?" 1
kill $LISTENER 2>/dev/null
finish
