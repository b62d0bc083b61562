#!/usr/bin/env bash
# No message stalls the worker, whatever fails while it is being rejected or answered: a
# rejected command naming a reply topic that does not exist, a message whose dead-letter copy
# would exceed the producer's largest record, a valid command whose replies would: each ends
# in a record the operator finds, and the next good command completes within seconds.
# The worker's producer takes records of at most 200,000 bytes here (message.max.bytes), and
# commands of at most 180,000 (max_message_bytes, which must leave 16,384 bytes for a dead
# letter's key and headers: the worker refuses to start otherwise).
source "$(dirname "$0")/lib.sh"
P=0197c000-0000-7000-8000
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'stall-ok', 'PENDING', '{stall}')" >/dev/null
# a RUNNING run whose current state carries a 250,000-byte message: a result that rejects a
# proposal (RUNNING -> PENDING) carries that state
sql "SELECT bulkstate_dev.new_run('$P-000000000002', 'stall-big', 'RUNNING', '{stall-big}')" >/dev/null
sql "UPDATE flow_run_state SET message = repeat('x', 250000) WHERE id = (SELECT state_id FROM flow_run WHERE id = '$P-000000000002')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000003', 'stall-mid', 'RUNNING', '{stall-mid}')" >/dev/null
check_eq "max_message_bytes above what a dead letter can carry: refused at start" \
  "$(BULKSTATE_KAFKA_MESSAGE_MAX_BYTES=200000 BULKSTATE_WORKER_MAX_MESSAGE_BYTES=190000 "$BIN" worker 2>&1 >/dev/null | grep -c 'worker.max_message_bytes (190000) needs \[kafka\] message.max.bytes of at least 206384 (it is 200000)')" 1
# a reply topic whose broker limit (100,000) is below the producer's: refused after the commit
BULKSTATE_WORKER_REPLY_TOPIC=bulkstate.replies.small "$BIN" topics 1 max.message.bytes=100000 >/dev/null
BULKSTATE_KAFKA_MESSAGE_MAX_BYTES=200000 BULKSTATE_WORKER_MAX_MESSAGE_BYTES=180000 start_worker || { finish; exit 1; }
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
printf '{"command_id": "stall-1", "flow_runs": {}, "reply_topic": "bulkstate.replies.none"}' >"$TMP/c1.json"
send "$TMP/c1.json" --format json
check_eq "no state, unknown reply topic: error on the default topic" "$(json_field '(c["command_id"], c["error"]["code"], c["error"]["type"], c["error"]["field"])')" "('stall-1', 'invalid_command', 'missing', 'state')"
good_in_time stall-ok-1 RUNNING "after an unknown reply topic"

# 2. 179,900 bytes of garbage under a 30,000-byte key: its dead-letter copy would exceed the
#    producer's records, so it is cut to fit, and the headers say so
head -c 179900 /dev/urandom >"$TMP/garbage"
kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -P -t bulkstate.commands -k "$(head -c 30000 /dev/zero | tr '\0' k)" \
  -H command-id=stall-2 "$TMP/garbage"
OUT=$("$BIN" send --json -t 60 -r stall-2 2>"$TMP/send.err")
check_eq "garbage: error completion" "$(json_field '(c["command_id"], c["error"]["code"])')" "('stall-2', 'bad_message')"
rec=$(dlq '%S %h\n' | grep 'bulkstate.original.size=179900' | head -1)
check_match "garbage: dead letter cut, original size named" "$rec" 'bulkstate.original.size=179900,bulkstate.truncated=true'
size=${rec%% *}
check_eq "garbage: the copy fits the producer's records (with its key)" "$(( size > 100000 && size < 170000 ))" 1
good_in_time stall-ok-2 COMPLETED "after an oversize dead letter"
# 2b. a small message under 600,000 bytes of headers: no copy with them fits, so the dead letter
#     carries bulkstate's headers alone
big=$(head -c 100000 /dev/zero | tr '\0' h)
hargs=(); for i in 1 2 3 4 5 6; do hargs+=(-H "x-big-$i=$big"); done
printf 'not a command' | kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -P -t bulkstate.commands -k stall-2b \
  -X message.max.bytes=1000000 "${hargs[@]}" -H command-id=stall-2b
OUT=$("$BIN" send --json -t 60 -r stall-2b 2>"$TMP/send.err")
check_eq "huge headers: error completion" "$(json_field '(c["command_id"], c["error"]["code"])')" "('stall-2b', 'bad_message')"
check_match "huge headers: the dead letter holds bulkstate's headers only" \
  "$(dlq '%S %h\n' | grep -a 'bulkstate.original.size=13,' | grep -v x-big | head -1)" '^0 bulkstate.original.topic=bulkstate.commands,.*bulkstate.truncated=true'
good_in_time stall-ok-2b COMPLETED "after a message whose headers no dead letter can carry"

# 3. a valid command whose result would exceed the producer's largest record (a rejection
#    carrying the run's 250 kB state): an error completion that says why, decided before the
#    commit (nothing recorded)
printf '{"command_id": "stall-3", "flow_runs": {"tags": {"all_": ["stall-big"]}}, "state": {"type": "PENDING"}}' >"$TMP/c3.json"
send "$TMP/c3.json" --format json
check_eq "replies too large: an error completion" "$(json_field '(c["command_id"], c["error"]["code"], c["error"]["type"])')" "('stall-3', 'internal_error', 'reply_too_large')"
check_match "it says why" "$(json_field 'c["error"]["message"]')" "result of flow run $P-000000000002 is [0-9]+ bytes, over the [0-9]+ a record may take"
check_eq "nothing recorded" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id = 'stall-3'")" 0
good_in_time stall-ok-3 RUNNING "after replies too large"
# 3b. results the producer takes but the reply topic's broker limit refuses, after the commit:
#     an error completion on that topic, a dead letter, no retry loop
python3 -c 'import json; print(json.dumps({"command_id": "stall-3b", "flow_runs": {"tags": {"all_": ["stall-mid"]}}, "state": {"type": "COMPLETED", "data": "y" * 150000}, "reply_topic": "bulkstate.replies.small"}))' >"$TMP/c3b.json"
send "$TMP/c3b.json" --format json
check_eq "refused by the broker: an error completion" "$(json_field '(c["command_id"], c["error"]["code"])')" "('stall-3b', 'internal_error')"
check_match "it names the broker's refusal" "$(json_field 'c["error"]["message"]')" "Message size too large"
check_match "and a dead letter of the command" "$(dlq '%h\n' | grep 'Message size too large' | head -1)" 'bulkstate.error.code=internal_error'
good_in_time stall-ok-3b COMPLETED "after replies refused by the broker"
# 4. a command id carrying a newline and a terminal escape cannot forge a log line
python3 -c 'import json; print(json.dumps({"command_id": "forged\nts=x level=info module=worker command done command_id=x matched=999 \u001b[2J", "flow_runs": {}}))' >"$TMP/c4.json"
send "$TMP/c4.json" --format json
check_eq "forged id: rejected" "$(json_field 'c["error"]["code"]')" invalid_command
check_eq "every worker log line is the logger's own" "$(grep -cv '^ts=[0-9TZ:.-]* level=[a-z]* module=[a-z]* ' "$WORKER_LOG")" 0
check_eq "the forged line is not there" "$(grep -c '^ts=x' "$WORKER_LOG")" 0
# 5. reply topics outside worker.reply_topic_pattern (the sample's: bulkstate.replies and its
#    sub-topics), or bulkstate's own inputs: an error completion on the default topic
for t in other.replies bulkstate.commands bulkstate.dlq __consumer_offsets; do
  printf '{"command_id": "stall-5-%s", "flow_runs": {"tags": {"all_": ["stall"]}}, "state": {"type": "RUNNING"}, "reply_topic": "%s"}' "$t" "$t" >"$TMP/c5.json"
  "$BIN" send -f "$TMP/c5.json" --format json --no-wait >/dev/null
  OUT=$("$BIN" send --json -t 60 -r "stall-5-$t" 2>"$TMP/send.err")
  check_eq "reply topic $t: forbidden" "$(json_field '(c["error"]["code"], c["error"]["type"], c["error"]["field"])')" "('invalid_command', 'topic_forbidden', 'reply_topic')"
done
check_eq "no reply went to the command topic (the command alone is there)" "$(kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.commands -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c '^stall-5-bulkstate.commands$')" 1
good_in_time stall-ok-5 COMPLETED "after forbidden reply topics"
check_eq "worker still the same process" "$(kill -0 "$WORKER_PID" && echo alive)" alive
finish
