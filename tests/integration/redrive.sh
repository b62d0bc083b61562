#!/usr/bin/env bash
# Dead letters that can be re-driven, and the headers that travel with a command:
# - a JSON command dead-lettered for a cause since mended (its reply topic did not exist), then
#   re-driven with `bulkstate redrive`, is applied once (and a second re-drive only republishes);
# - a permanently bad one, re-driven, is dead-lettered again with the same reason;
# - the dead letter keeps the original's key, value, headers and timestamp, and names the reason
#   in bulkstate.* and Kafka Connect's __connect.errors.* headers;
# - the command's traceparent/tracestate go onto its results, completion, events and dead
#   letter, and the worker logs the trace id; replies say what they are (bulkstate.kind);
#   events carry the CloudEvents binary-mode headers.
source "$(dirname "$0")/lib.sh"
P=0199a000-0000-7000-8000
B=$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS
TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
export BULKSTATE_WORKER_EVENTS_TOPIC=redrive.events
"$BIN" topics 1 >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'redrive-run', 'RUNNING', '{redrive}')" >/dev/null
start_worker || { finish; exit 1; }
produce() { # produce ID BODY: a JSON command with trace context, as an outside producer would
  printf '%s' "$2" | kcat -b "$B" -P -t bulkstate.commands -k "$1" -H content-type=application/json \
    -H "command-id=$1" -H "traceparent=$TP" -H "tracestate=vendor=x" -H "origin=redrive-test"
}
follow() { OUT=$("$BIN" send --json -t 60 -r "$1" 2>"$TMP/send.err"); }
dlq_of() { # dlq_of ID FORMAT: the dead letters of command ID
  kcat -b "$B" -C -t bulkstate.dlq -o beginning -e -q -f "%k\t$2\n" 2>/dev/null | grep -a "^$1	" | cut -f2-
}
states() { sql "SELECT count(*) FROM flow_run_state WHERE flow_run_id = '$P-000000000001'"; }

# 1. the reply topic does not exist yet: answered topic_not_found, dead-lettered
produce redrive-1 '{"command_id": "redrive-1", "flow_runs": {"tags": {"all_": ["redrive"]}}, "state": {"type": "CANCELLED"}, "force": true, "reply_topic": "bulkstate.replies.later"}'
follow redrive-1
check_eq "a reply topic missing: topic_not_found" "$(json_field 'c["error"]["type"]')" topic_not_found
hdr=$(dlq_of redrive-1 '%h' | head -1)
check_match "the dead letter keeps the original's headers" "$hdr" "content-type=application/json,command-id=redrive-1,traceparent=$TP,tracestate=vendor=x,origin=redrive-test"
check_match "and adds bulkstate's reason" "$hdr" 'bulkstate.error.code=invalid_command,bulkstate.error.type=topic_not_found,bulkstate.error.field=reply_topic'
check_match "and Kafka Connect's" "$hdr" '__connect.errors.topic=bulkstate.commands,__connect.errors.partition=[0-9]+,__connect.errors.offset=[0-9]+,__connect.errors.exception.class.name=bulkstate.invalid_command.topic_not_found,__connect.errors.exception.message=reply topic "bulkstate.replies.later" does not exist,__connect.errors.stage=TASK_PUT'
orig_ts=$(kcat -b "$B" -C -t bulkstate.commands -o beginning -e -q -f '%k\t%T\n' 2>/dev/null | grep -a '^redrive-1	' | head -1 | cut -f2)
check_eq "and the original's timestamp" "$(dlq_of redrive-1 '%T' | head -1)" "$orig_ts"
check_match "the error completion carries the trace context and says what it is" \
  "$(kcat -b "$B" -C -t bulkstate.replies -o beginning -e -q -f '%k\t%h\n' 2>/dev/null | grep -a '^redrive-1	' | tail -1)" \
  "bulkstate.kind=completion,traceparent=$TP,tracestate=vendor=x"
check_eq "nothing applied" "$(states)" 1

# 2. mended (the topic now exists), re-driven: applied once
BULKSTATE_WORKER_REPLY_TOPIC=bulkstate.replies.later "$BIN" topics 1 >/dev/null
check_match "dry run lists it" "$("$BIN" redrive --command-id redrive-1 --dry-run)" 'would re-drive partition=[0-9]+ offset=[0-9]+ code=invalid_command type=topic_not_found command_id=redrive-1 -> bulkstate.commands'
check_eq "and re-drives nothing" "$(states)" 1
check_match "re-driven" "$("$BIN" redrive --command-id redrive-1)" 're-driven 1, not re-driven \(cut\) 0'
OUT=$(BULKSTATE_WORKER_REPLY_TOPIC=bulkstate.replies.later "$BIN" send --json -t 60 -r redrive-1 2>"$TMP/send.err")
check_eq "the re-driven command is applied" "$(json_field '(c.get("matched"), c.get("accepted"), c.get("replayed"))')" "(1, 1, False)"
check_eq "once" "$(states)" 2
check_eq "the run is CANCELLED" "$(sql "SELECT state_type FROM flow_run WHERE id = '$P-000000000001'")" CANCELLED
res=$(kcat -b "$B" -C -t bulkstate.replies.later -o beginning -e -q -f '%h\n' 2>/dev/null)
check_match "its result carries the trace context" "$(printf '%s\n' "$res" | grep -a 'kind=result' | head -1)" "bulkstate.kind=result,seq=0,traceparent=$TP"
ev=$(kcat -b "$B" -C -t redrive.events -o beginning -e -q -f '%k\t%h\n' 2>/dev/null | grep -a "^$P-000000000001	" | tail -1)
check_match "its event has the CloudEvents headers and the trace context" "$ev" "ce_specversion=1.0,ce_id=[0-9a-f-]{36},ce_type=prefect.flow-run.Cancelled,ce_source=prefect.flow-run.$P-000000000001,ce_time=[0-9T:.-]+Z,traceparent=$TP"
check_match "the worker logs the trace id" "$(grep -a 'command done command_id=redrive-1 ' "$WORKER_LOG" | tail -1)" 'trace_id=4bf92f3577b34da6a3ce929d0e0e4736'
# re-driven again: its replies are republished, nothing applied twice
"$BIN" redrive --command-id redrive-1 --type topic_not_found >/dev/null
deadline=$((SECONDS + 60))
until [ "$(grep -ac 'command done command_id=redrive-1 .*replayed=1' "$WORKER_LOG")" -ge 1 ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
check_eq "a second re-drive republishes" "$(grep -ac 'command done command_id=redrive-1 .*replayed=1' "$WORKER_LOG")" 1
check_eq "and applies nothing" "$(states)" 2

# 3. permanently bad: re-driven, dead-lettered again with the same reason
produce redrive-2 '{"command_id": "redrive-2", "flow_runs": {"tags": {"all_": ["redrive"]}}, "state": {"type": "CANCELLED"}, "limit": 51}'
follow redrive-2
check_eq "limit 51: rejected" "$(json_field '(c["error"]["type"], c["error"]["field"])')" "('less_than_equal', 'limit')"
"$BIN" redrive --command-id redrive-2 >/dev/null
deadline=$((SECONDS + 60))
until [ "$(dlq_of redrive-2 '%h' | wc -l)" -ge 2 ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
check_eq "dead-lettered again" "$(dlq_of redrive-2 '%h' | wc -l)" 2
check_eq "with the same reason" "$(dlq_of redrive-2 '%h' | grep -ao 'bulkstate.error.type=[a-z_]*,bulkstate.error.field=[a-z_]*' | sort -u)" "bulkstate.error.type=less_than_equal,bulkstate.error.field=limit"
check_eq "one set of reasons on the second copy" "$(dlq_of redrive-2 '%h' | tail -1 | grep -o 'bulkstate.error.code=' | wc -l)" 1
finish
