#!/usr/bin/env bash
# End to end on the real broker and the real database: Prefect's own bulk_set_state tests,
# replayed through Kafka (commands in, one result per run and a completion out), plus the rows
# written, the reply keys, redelivery and graceful shutdown.
source "$(dirname "$0")/lib.sh"

P=0193b000-0000-7000-8000
run() { echo "$P-$(printf '%012d' "$1")"; }
sql "SELECT bulkstate_dev.new_deployment('$P-00000000d001', 'e2e')" >/dev/null
for i in 1 2 3; do sql "SELECT bulkstate_dev.new_run('$(run $i)', 'pending-$i', 'PENDING', '{e2e-a}')" >/dev/null; done
sql "SELECT bulkstate_dev.new_run('$(run 10)', 'completed', 'COMPLETED', '{e2e-b}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 20)', 'pending-run', 'PENDING', '{e2e-c}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 21)', 'running-run', 'RUNNING', '{e2e-c}')" >/dev/null
for i in 30 31 32 33 34; do sql "SELECT bulkstate_dev.new_run('$(run $i)', 'limit-$i', 'PENDING', '{e2e-d}')" >/dev/null; done
sql "SELECT bulkstate_dev.new_run('$(run 40)', 'st-1', 'PENDING', '{e2e-e}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 41)', 'st-2', 'PENDING', '{e2e-e}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 42)', 'st-3', 'RUNNING', '{e2e-e}')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 50)', 'retry', 'RUNNING', '{e2e-f}', p_policy => '{\"retries\": 2, \"retry_delay\": 30}', p_run_count => 1)" >/dev/null
sql "SELECT bulkstate_dev.new_run('$(run 51)', 'later', 'SCHEDULED', '{e2e-f}', '$P-00000000d001', p_scheduled => now() + interval '1 hour')" >/dev/null

start_worker || { finish; exit 1; }

# 1. two of three PENDING runs, by id, forced CANCELLED (Prefect's test_bulk_set_state)
cat >"$TMP/c1.json" <<J
{"command_id": "e2e-1", "flow_runs": {"id": {"any_": ["$(run 1)", "$(run 2)"]}},
 "state": {"type": "CANCELLED", "name": "Cancelled"}, "force": true}
J
send "$TMP/c1.json"
check_eq "c1 exit" "$RC" 0
check_eq "c1 results" "$(json_field 'len(r)')" 2
check_eq "c1 statuses" "$(json_field '[x["status"] for x in r]')" "['ACCEPT', 'ACCEPT']"
check_eq "c1 order (id DESC) and seq" "$(json_field '[(x["seq"], x["flow_run_id"][-2:]) for x in r]')" "[(0, '02'), (1, '01')]"
check_eq "c1 completion" "$(json_field '(c["matched"], c["accepted"], c["error"])')" "(2, 2, None)"
check_eq "c1 state written" "$(json_field 'r[0]["state"]["type"], r[0]["state"]["name"], r[0]["state"]["state_details"]["flow_run_id"][-2:]')" "('CANCELLED', 'Cancelled', '02')"
check_eq "c1 rows: flow_run mirror" "$(sql "SELECT string_agg(state_type::text || '/' || state_name, ',' ORDER BY id) FROM flow_run WHERE id IN ('$(run 1)','$(run 2)','$(run 3)')")" "CANCELLED/Cancelled,CANCELLED/Cancelled,PENDING/Pending"
check_eq "c1 rows: one new state each" "$(sql "SELECT string_agg(n::text, ',' ORDER BY id) FROM (SELECT fr.id, count(s.*) n FROM flow_run fr JOIN flow_run_state s ON s.flow_run_id = fr.id WHERE fr.id IN ('$(run 1)','$(run 2)','$(run 3)') GROUP BY fr.id) x")" "2,2,1"
check_eq "c1 rows: state_id points at the new state" "$(sql "SELECT count(*) FROM flow_run fr JOIN flow_run_state s ON s.id = fr.state_id WHERE fr.id IN ('$(run 1)','$(run 2)') AND s.type = 'CANCELLED' AND s.timestamp = fr.state_timestamp")" 2
check_eq "c1 rows: start and end time set" "$(sql "SELECT count(*) FROM flow_run WHERE id IN ('$(run 1)','$(run 2)') AND end_time = state_timestamp AND start_time IS NOT NULL")" 2
check_eq "c1 rows: state id of the reply" "$(sql "SELECT state_id FROM flow_run WHERE id = '$(run 2)'")" "$(json_field 'r[0]["state"]["id"]')"

# every reply of a command is keyed by the command id (one partition, produce order)
keys=$(kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.replies -o beginning -e -q -f '%k|%h\n' 2>/dev/null | grep 'command-id=e2e-1' | cut -d'|' -f1 | sort -u | tr '\n' ' ')
check_eq "c1 reply keys" "$keys" "e2e-1 "
hdrs=$(kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.replies -o beginning -e -q -f '%h\n' 2>/dev/null | grep 'command-id=e2e-1' | head -3)
order=$(printf '%s\n' "$hdrs" | sed -n 's/.*command-id=e2e-1,\{0,1\}//p' | sed 's/,bulkstate.phases=[^,]*//' | tr '\n' ' ')
check_eq "c1 replies in order: results by seq, then the completion, each saying which it is" "$order" "bulkstate.kind=result,seq=0 bulkstate.kind=result,seq=1 bulkstate.kind=completion "
# the completion says where the command's time went: every phase, in ms
check_match "c1 completion's phases" "$(printf '%s\n' "$hdrs" | tail -1)" \
  'bulkstate.phases=wait=[0-9.]+;count=[0-9.]+;decode=[0-9.]+;claim=[0-9.]+;select=[0-9.]+;lock=[0-9.]+;decide=[0-9.]+;write=[0-9.]+;record=[0-9.]+;commit=[0-9.]+;publish=[0-9.]+(,|$)'

# what the database recorded, as `bulkstate status` shows it
check_match "status of c1" "$("$BIN" status e2e-1)" "^command e2e-1: done, matched=2 accepted=2 rejected=0 waited=0 aborted=0"
check_eq "status --json: the record and the two results as published" "$("$BIN" status --json e2e-1 | python3 -c 'import json,sys; l=[json.loads(x) for x in sys.stdin]; print(l[0]["status"], [r["status"] for r in l[1:]])')" "done ['ACCEPT', 'ACCEPT']"
"$BIN" status no-such-command 2>/dev/null; check_eq "status of an unknown command" "$?" 1

check_match "tail from the beginning: results and the completion, readable" "$("$BIN" tail --from-beginning --max 3 --timeout 20)" "ACCEPT +state=CANCELLED \"Cancelled\""
check_eq "tail --json gives decoded records" "$("$BIN" tail --from-beginning --max 3 --timeout 20 --json | python3 -c 'import json,sys; print(sorted(json.loads(l)["command_id"] for l in sys.stdin))')" "['e2e-1', 'e2e-1', 'e2e-1']"

# 2. COMPLETED -> RUNNING with force is accepted (test_bulk_set_state_with_force)
cat >"$TMP/c2.json" <<J
{"command_id": "e2e-2", "flow_runs": {"tags": {"all_": ["e2e-b"]}}, "state": {"type": "RUNNING"}, "force": true}
J
send "$TMP/c2.json"
check_eq "c2" "$(json_field '(len(r), r[0]["status"], r[0]["state"]["type"])')" "(1, 'ACCEPT', 'RUNNING')"
check_eq "c2 rows: run_count +1, end_time cleared" "$(sql "SELECT run_count, end_time IS NULL FROM flow_run WHERE id = '$(run 10)'")" "1|t"

# 3. PENDING and RUNNING -> CANCELLED without force (different states, core policy)
cat >"$TMP/c3.json" <<J
{"command_id": "e2e-3", "flow_runs": {"tags": {"any_": ["e2e-c"]}}, "state": {"type": "CANCELLED"}}
J
send "$TMP/c3.json"
check_eq "c3" "$(json_field '[(x["status"], x["state"]["type"]) for x in r]')" "[('ACCEPT', 'CANCELLED'), ('ACCEPT', 'CANCELLED')]"
check_eq "c3 rows: total_run_time of the RUNNING run grew" "$(sql "SELECT total_run_time > interval '59 seconds' FROM flow_run WHERE id = '$(run 21)'")" t

# 4. limit: the two newest of five (test_bulk_set_state_respects_limit)
cat >"$TMP/c4.json" <<J
{"command_id": "e2e-4", "flow_runs": {"tags": {"all_": ["e2e-d"]}}, "state": {"type": "CANCELLED"}, "force": true, "limit": 2}
J
send "$TMP/c4.json"
check_eq "c4 limit" "$(json_field '[x["flow_run_id"][-2:] for x in r]')" "['34', '33']"
check_eq "c4 rows" "$(sql "SELECT count(*) FROM flow_run WHERE tags ? 'e2e-d' AND state_type = 'CANCELLED'")" 2

# 5. state filter (test_bulk_set_state_by_state_filter), sent as the seed's JSON body
cat >"$TMP/c5.json" <<J
{"command_id": "e2e-5", "flow_runs": {"tags": {"any_": ["e2e-e"]}, "state": {"type": {"any_": ["PENDING"]}}},
 "state": {"type": "CANCELLED"}}
J
send "$TMP/c5.json" --format json
check_eq "c5 matched" "$(json_field 'c["matched"]')" 2
check_eq "c5 RUNNING run untouched" "$(sql "SELECT state_type FROM flow_run WHERE id = '$(run 42)'")" RUNNING

# 6. the core rules: a retry and a wait
cat >"$TMP/c6.json" <<J
{"command_id": "e2e-6", "flow_runs": {"id": {"any_": ["$(run 50)"]}}, "state": {"type": "FAILED", "message": "boom"}}
J
send "$TMP/c6.json"
check_eq "c6 retry" "$(json_field '(r[0]["status"], r[0]["state"]["name"], r[0]["details"]["reason"])')" "('REJECT', 'AwaitingRetry', 'Retrying')"
check_eq "c6 rows" "$(sql "SELECT state_type, state_name, empirical_policy->>'retry_type', next_scheduled_start_time > now() + interval '25 seconds' FROM flow_run WHERE id = '$(run 50)'")" "SCHEDULED|AwaitingRetry|in_process|t"
cat >"$TMP/c7.json" <<J
{"command_id": "e2e-7", "flow_runs": {"id": {"any_": ["$(run 51)"]}}, "state": {"type": "RUNNING"}}
J
send "$TMP/c7.json"
check_eq "c7 wait" "$(json_field '(r[0]["status"], r[0]["state"]["type"], r[0]["details"]["type"], r[0]["details"]["delay_seconds"] > 3500)')" "('WAIT', 'SCHEDULED', 'wait_details', True)"
check_eq "c7 nothing written" "$(sql "SELECT count(*) FROM flow_run_state WHERE flow_run_id = '$(run 51)'")" 1

# 7. a filter matching nothing (test_bulk_set_state_empty_filter)
cat >"$TMP/c8.json" <<J
{"command_id": "e2e-8", "flow_runs": {"id": {"any_": ["$(run 999)"]}}, "state": {"type": "CANCELLED"}}
J
send "$TMP/c8.json"
check_eq "c8" "$(json_field '(len(r), c["matched"], c["error"])')" "(0, 0, None)"

# 8. redelivery: the same command again is not applied twice; its results are republished
before=$(sql "SELECT count(*) FROM flow_run_state")
send "$TMP/c1.json"
check_eq "c1 again: replayed" "$(json_field '(c["replayed"], len(r), [x["status"] for x in r])')" "(True, 2, ['ACCEPT', 'ACCEPT'])"
check_eq "c1 again: no new state rows" "$(sql "SELECT count(*) FROM flow_run_state")" "$before"

# 9. a command log replayed with --batch: applied in order the first time, replayed after
printf '%s\n%s\n' \
  "{\"command_id\": \"e2e-log-1\", \"flow_runs\": {\"id\": {\"any_\": [\"$(run 30)\"]}}, \"state\": {\"type\": \"RUNNING\"}, \"force\": true}" \
  "{\"command_id\": \"e2e-log-2\", \"flow_runs\": {\"id\": {\"any_\": [\"$(run 30)\"]}}, \"state\": {\"type\": \"COMPLETED\"}}" >"$TMP/log.jsonl"
OUT=$("$BIN" send --json -t 60 --batch "$TMP/log.jsonl"); RC=$?
check_eq "log: exit" "$RC" 0
check_eq "log: in order" "$(json_field '[(x["command_id"], x["status"], x["state"]["type"]) for x in r]')" "[('e2e-log-1', 'ACCEPT', 'RUNNING'), ('e2e-log-2', 'ACCEPT', 'COMPLETED')]"
OUT=$("$BIN" send --json -t 60 --batch "$TMP/log.jsonl")
check_eq "log replayed: same outcome, nothing applied" "$(printf '%s\n' "$OUT" | grep -c '"replayed":true')" 2
check_eq "log: states written once" "$(sql "SELECT count(*) FROM flow_run_state WHERE flow_run_id = '$(run 30)'")" 3

# 9b. a batch whose set-based write fails on one run's data: written again run by run, that
# run an ABORT saying why, the others applied; the replies (encoded while the batch's update
# ran) are encoded again and say so
for i in 60 61 62; do sql "SELECT bulkstate_dev.new_run('$(run $i)', 'write-$i', 'PENDING', '{e2e-w}')" >/dev/null; done
sql "CREATE FUNCTION e2e_refuse_fn() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RAISE EXCEPTION 'refused by the test'; END \$\$;
     CREATE TRIGGER e2e_refuse BEFORE UPDATE ON flow_run FOR EACH ROW WHEN (OLD.name = 'write-61') EXECUTE FUNCTION e2e_refuse_fn()" >/dev/null
cat >"$TMP/cw.json" <<J
{"command_id": "e2e-w", "flow_runs": {"tags": {"all_": ["e2e-w"]}}, "state": {"type": "CANCELLED"}}
J
send "$TMP/cw.json"
sql "DROP TRIGGER e2e_refuse ON flow_run; DROP FUNCTION e2e_refuse_fn()" >/dev/null
check_eq "a run's write refused: its reply an ABORT, the others accepted" "$(json_field '[(x["flow_run_id"][-2:], x["status"]) for x in r]')" "[('62', 'ACCEPT'), ('61', 'ABORT'), ('60', 'ACCEPT')]"
check_match "a run's write refused: the reason" "$(json_field 'r[1]["details"]["reason"]')" "refused by the test"
check_eq "a run's write refused: the completion" "$(json_field '(c["accepted"], c["aborted"])')" "(2, 1)"
check_eq "a run's write refused: the rows" "$(sql "SELECT string_agg(state_type::text, ',' ORDER BY id) FROM flow_run WHERE id IN ('$(run 60)','$(run 61)','$(run 62)')")" "CANCELLED,PENDING,CANCELLED"

# 10. migrate is idempotent and leaves Prefect's tables alone once they exist
check_match "migrate again" "$("$BIN" migrate 2>&1)" "Prefect's tables already present, left alone"
check_eq "migrate again keeps the data" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id = 'e2e-1'")" 1

# 11. graceful shutdown: offsets committed, so a new worker does not redo anything
stop_worker
check_eq "offsets committed for the group" "$(grep -c 'final commit failed' "$WORKER_LOG")" 0
start_worker
cat >"$TMP/c9.json" <<J
{"command_id": "e2e-9", "flow_runs": {"id": {"any_": ["$(run 3)"]}}, "state": {"type": "CANCELLED"}}
J
send "$TMP/c9.json"
check_eq "after restart" "$(json_field '(c["matched"], c["accepted"])')" "(1, 1)"
check_eq "no command re-run after restart" "$(grep -c 'command done' "$WORKER_LOG")" 1

finish
