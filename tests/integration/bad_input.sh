#!/usr/bin/env bash
# Bad input never stalls the partition: each bad message gets an error completion (when a
# command id can be read) and a dead-letter copy with the reason, and the next good command
# is still processed by the same worker process.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_MAX_MESSAGE_BYTES=4096
export BULKSTATE_WORKER_CONFLUENT_COMMAND_ID=7

P=0193c000-0000-7000-8000
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'bad-input-ok', 'PENDING', '{bad-input}')" >/dev/null
start_worker || { finish; exit 1; }

dlq_has() { # dlq_has REGEX: the DLQ holds a record whose headers match
  kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.dlq -o beginning -e -q -f '%h\n' 2>/dev/null | grep -Eq -- "$1"
}

# 1. garbage bytes, no command id: DLQ only
printf 'hello, not a command' >"$TMP/garbage"
"$BIN" send -F raw -f "$TMP/garbage" --no-wait >/dev/null
# 2. garbage with a command-id header: error completion too
send "$TMP/garbage" -F raw -i bad-1
check_eq "garbage with id: exit 1" "$RC" 1
check_eq "garbage with id: error" "$(json_field '(c["command_id"], c["error"]["code"], c["error"]["type"])')" "('bad-1', 'bad_message', 'bad_framing')"
# 3. a crafted Avro body claiming a 1 GiB string (avro-c would allocate it)
printf '\x00\x00\x00\x00\x07\xfe\xff\xff\xff\x07' >"$TMP/crafted"
send "$TMP/crafted" -F raw -i bad-2
check_eq "crafted avro: error" "$(json_field '(c["error"]["code"], c["error"]["type"])')" "('bad_message', 'avro_decode')"
# 4. Confluent framing with an unmapped schema id
printf '\x00\x00\x00\x00\x63\x02' >"$TMP/unmapped"
send "$TMP/unmapped" -F raw -i bad-3
check_eq "unmapped schema id" "$(json_field 'c["error"]["type"]')" unknown_schema
# 5. invalid values, as Prefect validates them
printf '{"command_id": "bad-4", "state": {"type": "CANCELLED"}, "limit": 51}' >"$TMP/limit.json"
send "$TMP/limit.json" --format json
check_eq "limit 51" "$(json_field '(c["error"]["code"], c["error"]["type"], c["error"]["field"])')" "('invalid_command', 'less_than_equal', 'limit')"
printf '{"command_id": "bad-5", "state": {"type": "CANCELLED", "id": "x"}}' >"$TMP/extra.json"
send "$TMP/extra.json" --format json
check_eq "extra key in state" "$(json_field '(c["error"]["type"], c["error"]["field"])')" "('extra_forbidden', 'state.id')"
printf '{"command_id": "bad-6", "state": {"type": "CANCELLED"}, "flow_runs": {"labels": {}}}' >"$TMP/labels.json"
send "$TMP/labels.json"
check_eq "unknown filter field cannot be encoded as Avro: send refuses (usage)" "$RC" 64
send "$TMP/labels.json" --format json -i bad-6b
check_eq "unknown filter field" "$(json_field '(c["error"]["type"], c["error"]["field"])')" "('extra_forbidden', 'flow_runs.labels')"
printf '{"command_id": "bad-7", "state": {"type": "CANCELLED"}' >"$TMP/broken.json"
send "$TMP/broken.json" -F raw -i bad-7
check_eq "broken JSON without the content-type header is bad framing" "$(json_field 'c["error"]["type"]')" bad_framing
printf '{"command_id": "bad-9", "state": {"type": "CANCELLED"}, "reply_topic": "bulkstate.replies.nope"}' >"$TMP/topic.json"
send "$TMP/topic.json" --format json
check_eq "reply topic that does not exist: answered on the default topic" "$(json_field '(c["error"]["type"], c["error"]["field"])')" "('topic_not_found', 'reply_topic')"
printf '{"command_id": "bad-10", "state": {"type": "CANCELLED"}, "reply_topic": "no.such.topic"}' >"$TMP/topic.json"
send "$TMP/topic.json" --format json
check_eq "reply topic outside the allow-list: answered on the default topic" "$(json_field '(c["error"]["type"], c["error"]["field"])')" "('topic_forbidden', 'reply_topic')"
# 5b. sizes past [limits]: a like_ pattern of 300 bytes
python3 -c 'import json; print(json.dumps({"command_id": "bad-11", "state": {"type": "CANCELLED"}, "flow_runs": {"name": {"like_": "%_" * 150}}}))' >"$TMP/pattern.json"
send "$TMP/pattern.json" --format json
check_eq "like_ pattern past limits.max_pattern_bytes" "$(json_field '(c["error"]["code"], c["error"]["type"], c["error"]["field"])')" "('invalid_command', 'string_too_long', 'flow_runs.name.like_')"
# 6. too large: rejected before decoding
python3 -c 'import json; print(json.dumps({"command_id": "bad-8", "state": {"type": "CANCELLED"}, "flow_runs": {"name": {"any_": ["x" * 5000]}}}))' >"$TMP/big.json"
send "$TMP/big.json" --format json
check_eq "too large" "$(json_field 'c["error"]["type"]')" message_too_large

# the DLQ has a copy of each, with the reason in its headers
check_eq "dlq: garbage without id" "$(dlq_has 'bulkstate.error.type=bad_framing' && echo yes)" yes
check_eq "dlq: crafted avro" "$(dlq_has 'bulkstate.error.type=avro_decode' && echo yes)" yes
check_eq "dlq: limit" "$(dlq_has 'bulkstate.error.field=limit' && echo yes)" yes
check_eq "dlq: original offset recorded" "$(dlq_has 'bulkstate.original.topic=bulkstate.commands,bulkstate.original.partition=[0-9]+,bulkstate.original.offset=[0-9]+' && echo yes)" yes

# the partition is not stalled: a good command after all that is applied
printf '{"command_id": "bad-ok", "flow_runs": {"tags": {"all_": ["bad-input"]}}, "state": {"type": "CANCELLED"}}' >"$TMP/good.json"
send "$TMP/good.json"
check_eq "good command after bad ones" "$(json_field '(c["matched"], c["accepted"])')" "(1, 1)"
check_eq "worker still the same process" "$(kill -0 "$WORKER_PID" && echo alive)" alive
check_eq "nothing recorded for rejected commands" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id ~ '^bad-[0-9]+b?$'")" 0

finish
