#!/usr/bin/env bash
# Prefect's outbox against a stand-in for its events API that fails in the ways the real one
# can (tests/integration/prefect_stub.py): 503s at first (retried, nothing lost), a batch of 7
# events at most (an outbox row of 30 events is delivered in parts), and 422 for the events of
# one run (the batch is posted again event by event: only that run's events are set aside in
# bulkstate.prefect_outbox_refused, the others arrive); then Prefect down while PostgreSQL
# restarts, with events waiting. Every written state is delivered exactly once, in commit
# order per run, and the outbox is empty.
source "$(dirname "$0")/lib.sh"
db() { echo "host=$PGHOST port=$PGPORT user=postgres dbname=$1"; }
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS ob_test" -c "CREATE DATABASE ob_test" >/dev/null
export PGDATABASE=ob_test BULKSTATE_POSTGRES_CONNINFO=$(db ob_test)
"$BIN" migrate >/dev/null || { not_ok "migrate"; finish; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -f "$BS_SOURCE_DIR/scripts/dev_helpers.sql" >/dev/null
P=0199c000-0000-7000-8000
X=$P-000000000007 # the run whose events the stand-in refuses
sql "SELECT bulkstate_dev.new_run(('$P-' || lpad(to_hex(i), 12, '0'))::uuid, 'ob-' || i,
       'RUNNING', '{ob}') FROM generate_series(1, 30) i" >/dev/null
python3 "$BS_SOURCE_DIR/tests/integration/prefect_stub.py" --port-file "$TMP/port" \
  --log "$TMP/got.jsonl" --unavailable 3 --refuse-run "$X" --down-file "$TMP/down" &
STUB=$!
trap 'kill $STUB 2>/dev/null; if [ -n "$WORKER_PID" ]; then kill -9 "$WORKER_PID" 2>/dev/null; fi' EXIT
for i in $(seq 1 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
export BULKSTATE_PREFECT_API_URL="http://127.0.0.1:$(cat "$TMP/port")/api"
export BULKSTATE_PREFECT_BATCH_EVENTS=7 BULKSTATE_PREFECT_MAX_EVENTS_PER_S=1000
export BULKSTATE_WORKER_COMMAND_TOPIC=ob.commands BULKSTATE_WORKER_REPLY_TOPIC=ob.replies
"$BIN" topics 1 >/dev/null || { not_ok "create the topics"; finish; exit 1; }
start_worker || { finish; exit 1; }

# two commands on the same 30 runs: RUNNING -> CANCELLING, then (forced) CANCELLING -> CANCELLED
printf '{"command_id": "ob-1", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "CANCELLING"}}' >"$TMP/c1.json"
printf '{"command_id": "ob-2", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "CANCELLED"}, "force": true}' >"$TMP/c2.json"
send "$TMP/c1.json"
check_eq "first command: 30 accepted" "$(json_field 'sum(x["status"] == "ACCEPT" for x in r)')" 30
send "$TMP/c2.json"
check_eq "second command: 30 accepted" "$(json_field 'sum(x["status"] == "ACCEPT" for x in r)')" 30
# without an events topic a transition keeps what its event is built from, not the event
check_eq "one outbox row per recorded batch, naming the states its events are built from" \
  "$(sql "SELECT count(*) FILTER (WHERE state_id IS NOT NULL AND event IS NULL AND run_count IS NOT NULL), count(*) FILTER (WHERE prior_state_id IS NOT NULL) FROM bulkstate.command_result WHERE command_id LIKE 'ob-%'")/$(sql "SELECT count(*) <= 2 FROM bulkstate.prefect_outbox")" "60|60/t"

drained() { # bounded: the outbox drains (30 s), or the check fails with what is left
  for i in $(seq 1 300); do
    [ "$(sql "SELECT count(*) FROM bulkstate.prefect_outbox")" = 0 ] && break
    sleep 0.1
  done
  check_eq "the outbox drained$1" "$(sql "SELECT count(*) FROM bulkstate.prefect_outbox")" 0
}
drained ""

# Prefect down; a third command's events wait in the outbox while PostgreSQL restarts
touch "$TMP/down"
printf '{"command_id": "ob-3", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "SCHEDULED"}, "force": true}' >"$TMP/c3.json"
send "$TMP/c3.json"
check_eq "third command: 30 accepted while Prefect is down" "$(json_field 'sum(x["status"] == "ACCEPT" for x in r)')" 30
check_eq "its events wait" "$(sql "SELECT sum(events) FROM bulkstate.prefect_outbox")" 30
"$BS_SOURCE_DIR/scripts/pg.sh" down >/dev/null && "$BS_SOURCE_DIR/scripts/pg.sh" up >/dev/null
rm -f "$TMP/down"
drained " after PostgreSQL's restart"
check_eq "the refused run's events set aside, with Prefect's answer" \
  "$(sql "SELECT count(*), bool_and(flow_run_id = '$X'), bool_and(answer LIKE '%422%') FROM bulkstate.prefect_outbox_refused")" "3|t|t"
sql "SELECT s.id, s.flow_run_id FROM flow_run_state s JOIN flow_run r ON r.id = s.flow_run_id
     WHERE r.name LIKE 'ob-%' AND s.type IN ('CANCELLING', 'CANCELLED', 'SCHEDULED')
       AND s.flow_run_id <> '$X' AND s.id <> (SELECT id FROM flow_run_state
         WHERE flow_run_id = s.flow_run_id ORDER BY timestamp LIMIT 1)
     ORDER BY s.id" >"$TMP/want"
python3 - "$TMP/got.jsonl" "$TMP/want" <<'PY' >"$TMP/verdict"
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = dict(l.strip().split("|") for l in open(sys.argv[2]) if l.strip())
ids = [g["id"] for g in got]
order = {}
for g in got:
    order.setdefault(g["resource"], []).append(g["event"])
in_order = all(v == ["prefect.flow-run.Cancelling", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Scheduled"] for v in order.values())
print(len(want), set(ids) == set(want), len(ids) == len(set(ids)), in_order,
      max(g["batch"] for g in got) >= 9,
      max(sum(g["batch"] == b for g in got) for b in {g["batch"] for g in got}) <= 7, sep="|")
PY
# 87 events (90 less the refused 3), each once, in commit order for every run, in batches of
# at most 7 (at least 9 of them)
check_eq "delivered: every state but the refused run's, once, in order, in parts" \
  "$(cat "$TMP/verdict")" "87|True|True|True|True|True"
check_match "the refusal is logged as an error" "$(cat "$WORKER_LOG")" \
  "Prefect refused event .*flow_run_id=$X"

# The event the deliverer builds from the rows is the one the command's transaction builds.
# With an events topic too, each result keeps both: the event built in the transaction, and
# what the deliverer builds one from. Prefect down meanwhile; then the stored copies are set
# aside and cleared, so that the deliverer builds every event, and the two are compared whole.
stop_worker
export BULKSTATE_WORKER_EVENTS_TOPIC=ob.events
"$BIN" topics 1 >/dev/null || not_ok "create the events topic"
start_worker || { finish; exit 1; }
touch "$TMP/down"
: >"$TMP/got.jsonl"
printf '{"command_id": "ob-4", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "PENDING"}}' >"$TMP/c4.json"
printf '{"command_id": "ob-5", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "RUNNING", "message": "started by ob-5"}}' >"$TMP/c5.json"
printf '{"command_id": "ob-6", "flow_runs": {"tags": {"all_": ["ob"]}}, "state": {"type": "PAUSED", "name": "Suspended", "state_details": {"pause_reschedule": true}}, "force": true}' >"$TMP/c6.json"
for c in c4 c5 c6; do
  send "$TMP/$c.json"
  check_eq "$c: 30 accepted, Prefect down" "$(json_field 'sum(x["status"] == "ACCEPT" for x in r)')" 30
done
sql "CREATE TABLE built_in_txn AS SELECT state_id, event FROM bulkstate.command_result
     WHERE command_id IN ('ob-4', 'ob-5', 'ob-6') AND event IS NOT NULL AND state_id IS NOT NULL;
     UPDATE bulkstate.command_result SET event = NULL WHERE command_id IN ('ob-4', 'ob-5', 'ob-6')" >/dev/null
rm -f "$TMP/down"
drained " of the events built at delivery"
sql "SELECT state_id, event FROM built_in_txn WHERE event NOT LIKE '%$X%'" >"$TMP/txn"
python3 - "$TMP/got.jsonl" "$TMP/txn" <<'PY' >"$TMP/verdict"
import json, sys
got = {g["id"]: g["whole"] for g in map(json.loads, open(sys.argv[1]))}
txn = {l.split("|", 1)[0]: json.loads(l.split("|", 1)[1]) for l in open(sys.argv[2]) if l.strip()}
same = sum(got.get(i) == e for i, e in txn.items())
print(len(txn), same, sorted({e["event"] for e in txn.values()}), sep="|")
PY
check_eq "built at delivery = built in the transaction, whole, for every run but the refused one" \
  "$(cat "$TMP/verdict")" "87|87|['prefect.flow-run.Pending', 'prefect.flow-run.Running', 'prefect.flow-run.Suspended']"
kill $STUB 2>/dev/null
finish
