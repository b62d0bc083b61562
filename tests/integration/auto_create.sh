#!/usr/bin/env bash
# No bulkstate handle creates a topic, on a broker that would: a second broker of the test run,
# started here with auto.create.topics.enable=true. A plain producer creates a topic there by
# writing to it (so the broker does allow it); a command naming a reply topic that does not
# exist gets topic_not_found on the default reply topic, and that topic is still absent.
# (librdkafka 2.0.2's mock cluster creates topics whatever the client asks, so it cannot
# stand in for this broker.)
source "$(dirname "$0")/lib.sh"
export BS_KAFKA_INSTANCE=kafka-autocreate BS_KAFKA_AUTO_CREATE=true
stop_broker() { "$BS_SOURCE_DIR/scripts/kafka.sh" stop >/dev/null 2>&1; }
trap 'stop_broker; if [ -n "$WORKER_PID" ]; then kill -9 "$WORKER_PID" 2>/dev/null; fi' EXIT
"$BS_SOURCE_DIR/scripts/kafka.sh" start >"$TMP/broker.out" 2>&1 || { cat "$TMP/broker.out" >&2; not_ok "second broker did not start"; finish; exit 1; }
source "${BS_RUN_DIR:-$BS_BUILD_DIR/services}/$BS_KAFKA_INSTANCE.env"
B=$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS
listed() { kcat -b "$B" -L -J 2>/dev/null | python3 -c 'import json, sys; print(sum(t["topic"] == sys.argv[1] for t in json.load(sys.stdin)["topics"]))' "$1"; }

echo x | kcat -b "$B" -P -t autocreate.control 2>/dev/null
check_eq "the broker creates a topic a plain producer writes to" "$(listed autocreate.control)" 1

export BULKSTATE_KAFKA_GROUP_ID=autocreate
"$BIN" topics 1 >/dev/null || not_ok "topics on the second broker"
start_worker || { finish; exit 1; }
printf '{"command_id": "autocreate-1", "flow_runs": {"name": {"any_": ["autocreate-none"]}}, "state": {"type": "CANCELLED"}, "reply_topic": "bulkstate.replies.created"}' >"$TMP/c1.json"
"$BIN" send -f "$TMP/c1.json" --format json --no-wait >/dev/null
OUT=$("$BIN" send --json -t 60 -r autocreate-1 2>"$TMP/send.err")
check_eq "a reply topic that does not exist: topic_not_found" "$(json_field '(c.get("command_id"), c.get("error", {}).get("type"))')" "('autocreate-1', 'topic_not_found')"
check_eq "and the worker did not create it" "$(listed bulkstate.replies.created)" 0
# the CLI's handles too: send waiting on a reply topic that does not exist, tail of one
"$BIN" send -f "$TMP/c1.json" --format json -t 5 >/dev/null 2>&1
BULKSTATE_WORKER_REPLY_TOPIC=bulkstate.replies.tailed "$BIN" tail --max 1 --timeout 3 >/dev/null 2>&1
check_eq "send did not create it" "$(listed bulkstate.replies.created)" 0
check_eq "tail did not create its topic" "$(listed bulkstate.replies.tailed)" 0
stop_worker
finish
