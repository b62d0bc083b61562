#!/usr/bin/env bash
# More large commands at once than a worker runs (16): on a command topic of 20 partitions,
# 20 large commands arrive together, one per partition. The ones past the cap wait (a
# transient "too many large commands" while the 16 in progress keep running batches), and
# every one completes with all its runs, each applied once.
source "$(dirname "$0")/lib.sh"
P=0198d000-0000-7000-8000
N=20 PER=15
export BULKSTATE_WORKER_COMMAND_TOPIC=largecap.commands BULKSTATE_KAFKA_GROUP_ID=largecap
export BULKSTATE_WORKER_BATCH_PAUSE_MS=300 BULKSTATE_WORKER_RETRY_BACKOFF_MAX_MS=1000
"$BIN" topics $N >/dev/null || { not_ok "could not create largecap.commands"; finish; exit 1; }
sql "SELECT count(bulkstate_dev.new_run(('$P-' || lpad(i::text, 12, '0'))::uuid, 'largecap-' || i, 'PENDING', ARRAY['largecap-' || (i % $N)])) FROM generate_series(1, $N * $PER) i" >/dev/null

# one command per partition, all waiting before the worker starts; limit 5: three batches and
# an empty one each, 300 ms apart
for p in $(seq 0 $((N - 1))); do
  printf '{"command_id": "largecap-%d", "flow_runs": {"tags": {"all_": ["largecap-%d"]}}, "state": {"type": "CANCELLED"}, "limit": 5, "max_runs": 1000}\n' "$p" "$p" |
    kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -P -t largecap.commands -p "$p" \
      -H content-type=application/json -H "command-id=largecap-$p"
done
t0=$SECONDS
start_worker || { finish; exit 1; }
done_ok=0
for p in $(seq 0 $((N - 1))); do
  OUT=$("$BIN" send --json -t 120 -r "largecap-$p" 2>"$TMP/send.err")
  [ "$(json_field '(c.get("matched"), c.get("accepted"), c.get("error"))')" == "($PER, $PER, None)" ] && done_ok=$((done_ok + 1))
done
check_eq "every large command completed with all its runs" "$done_ok" "$N"
check_eq "within 120 s" "$(( SECONDS - t0 <= 120 ))" 1
check_eq "the cap was reached (the later ones waited)" "$(grep -c 'too many large commands in progress' "$WORKER_LOG" | awk '{print ($1 > 0)}')" 1
check_eq "every run cancelled once" "$(sql "SELECT count(*) FROM flow_run WHERE id::text LIKE '${P%-*}%' AND state_type = 'CANCELLED'")" $((N * PER))
check_eq "one CANCELLED state per run" "$(sql "SELECT count(*) FROM flow_run_state s JOIN flow_run r ON r.id = s.flow_run_id WHERE r.id::text LIKE '${P%-*}%' AND s.type = 'CANCELLED'")" $((N * PER))
echo "large-cap: commands=$N partitions=$N cap=16 completed=$done_ok seconds=$((SECONDS - t0))"
finish
