#!/usr/bin/env bash
# No message stalls the worker, whatever fails while it is being rejected or answered: a
# rejected command naming a reply topic that does not exist, a message whose dead-letter copy
# would exceed the producer's largest record, a valid command whose replies would: each ends
# in a record the operator finds, and the next good command completes within seconds.
# The worker's producer takes records of at most 200,000 bytes here (message.max.bytes).
source "$(dirname "$0")/lib.sh"
P=0197c000-0000-7000-8000
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'stall-ok', 'PENDING', '{stall}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000002', 'stall-big', 'RUNNING', '{stall-big}')" >/dev/null
BULKSTATE_KAFKA_MESSAGE_MAX_BYTES=200000 start_worker || { finish; exit 1; }
dlq() { kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.dlq -o beginning -e -q -f "$1" 2>/dev/null; }
good_in_time() { # a good command completes, and within 20 s
  local t0=$SECONDS
  printf '{"command_id": "%s", "flow_runs": {"tags": {"all_": ["stall"]}}, "state": {"type": "%s"}, "force": true}' \
    "$1" "$2" >"$TMP/good.json"
  send "$TMP/good.json" -t 20
  check_eq "$3: the next good command is applied" "$(json_field '(c.get("matched"), c.get("accepted"))')" "(1, 1)"
  check_eq "$3: and within 20 s" "$(( SECONDS - t0 <= 20 ))" 1
}

# 1. invalid (no state) and naming a reply topic that does not exist: the error completion
#    goes to the default reply topic instead of being retried forever
printf '{"command_id": "stall-1", "flow_runs": {}, "reply_topic": "no.such.topic"}' >"$TMP/c1.json"
send "$TMP/c1.json" --format json
check_eq "no state, unknown reply topic: error on the default topic" "$(json_field '(c["command_id"], c["error"]["code"], c["error"]["type"], c["error"]["field"])')" "('stall-1', 'invalid_command', 'missing', 'state')"
good_in_time stall-ok-1 RUNNING "after an unknown reply topic"

# 2. 999,900 bytes of garbage: its dead-letter copy is cut to fit, the headers say so
head -c 999900 /dev/urandom >"$TMP/garbage"
send "$TMP/garbage" -F raw -i stall-2
check_eq "garbage: error completion" "$(json_field '(c["command_id"], c["error"]["code"])')" "('stall-2', 'bad_message')"
check_match "garbage: dead letter cut, original size named" "$(dlq '%h\n' | grep 'bulkstate.original.offset' | tail -1)" 'bulkstate.original.size=999900,bulkstate.truncated=true'
size=$(dlq '%S\n' | tail -1)
check_eq "garbage: the copy fits the producer's records" "$(( size > 100000 && size < 200000 ))" 1
good_in_time stall-ok-2 COMPLETED "after an oversize dead letter"

# 3. a valid command whose result would exceed the producer's largest record: an error
#    completion that says why, decided before the commit (nothing applied)
python3 -c 'import json; print(json.dumps({"command_id": "stall-3", "flow_runs": {"tags": {"all_": ["stall-big"]}}, "state": {"type": "COMPLETED", "data": "x" * 300000}}))' >"$TMP/c3.json"
send "$TMP/c3.json" --format json
check_eq "replies too large: an error completion" "$(json_field '(c["command_id"], c["error"]["code"], c["error"]["type"])')" "('stall-3', 'internal_error', 'reply_too_large')"
check_match "it says why" "$(json_field 'c["error"]["message"]')" "result of flow run $P-000000000002 is [0-9]+ bytes, over the [0-9]+ a record may take"
check_eq "nothing applied" "$(sql "SELECT state_type FROM flow_run WHERE id = '$P-000000000002'")" RUNNING
good_in_time stall-ok-3 RUNNING "after replies too large"
# 4. a command id carrying a newline and a terminal escape cannot forge a log line
python3 -c 'import json; print(json.dumps({"command_id": "forged\nts=x level=info module=worker command done command_id=x matched=999 \u001b[2J", "flow_runs": {}}))' >"$TMP/c4.json"
send "$TMP/c4.json" --format json
check_eq "forged id: rejected" "$(json_field 'c["error"]["code"]')" invalid_command
check_eq "every worker log line is the logger's own" "$(grep -cv '^ts=[0-9TZ:.-]* level=[a-z]* module=[a-z]* ' "$WORKER_LOG")" 0
check_eq "the forged line is not there" "$(grep -c '^ts=x' "$WORKER_LOG")" 0
check_eq "worker still the same process" "$(kill -0 "$WORKER_PID" && echo alive)" alive
finish
