#!/usr/bin/env bash
# State-change events: with worker.events_topic set, every written state produces one
# Prefect-shaped event (prefect.flow-run.<state name>, the run as resource, related flow,
# deployment and tags, intended from/to), keyed by the run and published after the commit;
# a refused transition produces none; a redelivered command republishes the stored events.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_EVENTS_TOPIC=bulkstate.events
"$BIN" topics 1 >/dev/null || { not_ok "create the events topic"; finish; exit 1; }
P=0193f000-0000-7000-8e00
D=$P-0000000000d1
sql "SELECT bulkstate_dev.new_deployment('$D', 'ev-deployment')" >/dev/null
sql "UPDATE deployment SET tags = '[\"dep-tag\"]' WHERE id = '$D'" >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000001', 'ev-1', 'RUNNING', '{ev,zeta}', '$D')" >/dev/null
sql "SELECT bulkstate_dev.new_run('$P-000000000002', 'ev-2', 'COMPLETED', '{ev}')" >/dev/null
start_worker || { finish; exit 1; }
events() { # events N: the first N records of the events topic as JSON lines (bounded wait)
  kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.events -o beginning -c "$1" -e -q \
    -f '%k\t%s\n' 2>/dev/null
}
printf '{"command_id": "ev-1", "flow_runs": {"tags": {"all_": ["ev"]}}, "state": {"type": "CRASHED", "message": "boom"}}' >"$TMP/ev.json"
send "$TMP/ev.json"
# RUNNING -> CRASHED is accepted; a COMPLETED run cannot crash (the terminal rule aborts)
check_eq "statuses" "$(json_field 'sorted(x["status"] for x in r)')" "['ABORT', 'ACCEPT']"
EV=$(events 1)
check_eq "keyed by the run" "$(printf '%s' "$EV" | cut -f1)" "$P-000000000001"
printf '%s' "$EV" | cut -f2- >"$TMP/event.json"
field() { python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/event.json" "$1"; }
check_eq "event name" "$(field 'e["event"]')" "prefect.flow-run.Crashed"
check_eq "resource" "$(field '(e["resource"]["prefect.resource.id"], e["resource"]["prefect.resource.name"], e["resource"]["prefect.state-type"], e["resource"]["prefect.state-message"])')" \
  "('prefect.flow-run.$P-000000000001', 'ev-1', 'CRASHED', 'boom')"
check_eq "related" "$(field '[(r["prefect.resource.role"], r.get("prefect.resource.name")) for r in e["related"]]')" \
  "[('flow', 'demo-flow'), ('deployment', 'ev-deployment'), ('tag', None), ('tag', None), ('tag', None)]"
check_eq "tags" "$(field '[r["prefect.resource.id"] for r in e["related"] if r["prefect.resource.role"] == "tag"]')" \
  "['prefect.tag.dep-tag', 'prefect.tag.ev', 'prefect.tag.zeta']"
check_eq "payload" "$(field 'e["payload"]["intended"]')" "{'from': 'RUNNING', 'to': 'CRASHED'}"
check_eq "event id is the written state's id" "$(field 'e["id"]')" \
  "$(sql "SELECT state_id FROM flow_run WHERE id = '$P-000000000001'")"
check_eq "only the written state has an event" "$(sql "SELECT count(event) FROM bulkstate.command_result WHERE command_id = 'ev-1'")" 1
# a redelivery (same command again) republishes the stored event
send "$TMP/ev.json"
check_eq "replayed" "$(json_field 'c["replayed"]')" True
check_eq "the event is published again, unchanged" "$(events 2 | tail -1 | cut -f2-)" "$(cat "$TMP/event.json")"
finish
