#!/usr/bin/env bash
# worker.threads: one worker process of 3 threads on a topic of 6 partitions. Each thread is a
# consumer of the group with its own PostgreSQL connection: the group gives each thread 2
# partitions (the process's metrics show 6, and 2 per thread); the commands of a partition are
# applied in the order they were written while the other partitions' go on alongside; a SIGHUP
# reaches every thread; SIGTERM stops them all with their offsets committed, so a second worker
# applies nothing again. (Crashes, outages and overlapping commands with threads: the fault
# tests it_faults_*_threads.)
source "$(dirname "$0")/lib.sh"
P=0199f100-0000-7000-8000
export BULKSTATE_WORKER_COMMAND_TOPIC=thr.commands BULKSTATE_WORKER_REPLY_TOPIC=thr.replies \
  BULKSTATE_WORKER_DLQ_TOPIC=thr.dlq BULKSTATE_KAFKA_GROUP_ID=thr-group \
  BULKSTATE_WORKER_OUTPUT_FRAMING=json BULKSTATE_WORKER_THREADS=3
"$BIN" topics 6 >/dev/null
check_eq "topics of 6 partitions" "$?" 0
for p in 0 1 2 3 4 5; do
  sql "SELECT bulkstate_dev.new_run('$P-00000000000$p', 'thr-$p', 'PENDING', '{thr}')" >/dev/null
done
cp "$BS_SOURCE_DIR/config/bulkstate.ini" "$TMP/w.ini"
export BULKSTATE_CONFIG=$TMP/w.ini

start_worker || { finish; exit 1; }
check_match "the worker says how many threads" "$(cat "$WORKER_LOG")" 'worker started .*threads=3'
PORT=$(sed -n 's/.*http listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORKER_LOG" | head -1)
URL=http://127.0.0.1:$PORT
per_thread() { curl -s "$URL/metrics" | sed -n 's/^bulkstate_thread_assigned_partitions{thread="\([0-9]*\)"} \([0-9]*\)$/\1=\2/p' | tr '\n' ' '; }
deadline=$(( $(date +%s) + 60 ))
until [ "$(per_thread)" == "0=2 1=2 2=2 " ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "2 partitions for each thread" "$(per_thread)" "0=2 1=2 2=2 "
check_eq "6 partitions in the process" "$(curl -s "$URL/metrics" | awk '$1 == "bulkstate_assigned_partitions" {print $2}')" 6

# 15 commands per partition, each forcing its partition's run to the next state of a cycle:
# the run's history must be its partition's commands in the order they were written
python3 - "$P" "$TMP" <<'PY'
import json, sys
prefix, tmp = sys.argv[1], sys.argv[2]
cycle = ["RUNNING", "COMPLETED", "FAILED", "SCHEDULED", "CANCELLED"]
for p in range(6):
    with open(f"{tmp}/p{p}.tsv", "w") as f:
        for k in range(15):
            cid = f"thr-{p}-{k}"
            body = {"command_id": cid, "flow_runs": {"id": {"any_": [f"{prefix}-00000000000{p}"]}},
                    "state": {"type": cycle[k % 5]}, "force": True}
            f.write(cid + "\t" + json.dumps(body) + "\n")
PY
WANT=$(python3 -c 'c=["RUNNING","COMPLETED","FAILED","SCHEDULED","CANCELLED"]; print(",".join(["PENDING"]+[c[k%5] for k in range(15)]))')
for p in 0 1 2 3 4 5; do
  kcat -P -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.commands -p "$p" -K $'\t' \
    -H content-type=application/json -l "$TMP/p$p.tsv" || not_ok "produce to partition $p"
done
done_count() { sql "SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'thr-%' AND status = 'done'"; }
deadline=$(( $(date +%s) + 120 ))
until [ "$(done_count)" -eq 90 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "all 90 commands done" "$(done_count)" 90
for p in 0 1 2 3 4 5; do
  check_eq "partition $p: its run's states in the order its commands were written" \
    "$(sql "SELECT string_agg(type::text, ',' ORDER BY timestamp) FROM flow_run_state WHERE flow_run_id = '$P-00000000000$p'")" "$WANT"
done
check_eq "every result accepted, once" "$(sql "SELECT sum(matched) || '/' || sum(accepted) FROM bulkstate.command WHERE command_id LIKE 'thr-%'")" "90/90"

# SIGHUP: every thread takes the new limit (a list of 3 ids is now too long on all 6 partitions)
sed -i 's/^max_list_items = .*/max_list_items = 2/' "$TMP/w.ini"
kill -HUP "$WORKER_PID"
deadline=$(( $(date +%s) + 10 ))
until grep -q 'reloaded .*w.ini: 1 key applied' "$WORKER_LOG" || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
check_eq "reload logged once, by the main thread" "$(grep -c 'reload: limits.max_list_items: 10000 -> 2' "$WORKER_LOG")" 1
ids3="[\"$P-000000000000\", \"$P-000000000001\", \"$P-000000000002\"]"
for p in 0 1 2 3 4 5; do
  printf 'thr-hup-%s\t{"command_id": "thr-hup-%s", "flow_runs": {"id": {"any_": %s}}, "state": {"type": "CANCELLED"}}\n' \
    "$p" "$p" "$ids3" | kcat -P -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.commands -p "$p" \
    -K $'\t' -H content-type=application/json
done
refused() {
  kcat -C -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.replies -o beginning -e -q 2>/dev/null |
    python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try:
        c = json.loads(line)
    except ValueError:
        continue
    e = c.get("error") or {}
    n += c.get("command_id", "").startswith("thr-hup-") and e.get("field") == "flow_runs.id.any_"
print(n)'
}
deadline=$(( $(date +%s) + 60 ))
until [ "$(refused)" -ge 6 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.3; done
check_eq "the reloaded limit refused the command on all 6 partitions" "$(refused)" 6

# SIGTERM: every thread stops and commits; a second worker finds nothing left to apply
stop_worker
check_match "stopped cleanly" "$(tail -3 "$WORKER_LOG")" 'stopped'
replies_before=$(kcat -C -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.replies -o beginning -e -q 2>/dev/null | wc -l)
export BULKSTATE_WORKER_THREADS=1
start_worker || { finish; exit 1; }
SECOND_LOG=$WORKER_LOG
sentinel="{\"command_id\": \"thr-last\", \"flow_runs\": {\"id\": {\"any_\": [\"$P-000000000000\"]}}, \"state\": {\"type\": \"RUNNING\"}, \"force\": true}"
for p in 0 1 2 3 4 5; do # one more command per partition: once they are done, all is read
  printf 'thr-last-%s\t%s\n' "$p" "${sentinel/thr-last/thr-last-$p}" |
    kcat -P -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.commands -p "$p" -K $'\t' -H content-type=application/json
done
deadline=$(( $(date +%s) + 60 ))
until [ "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'thr-last-%' AND status = 'done'")" -eq 6 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "the second worker applied the 6 new commands" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'thr-last-%' AND status = 'done'")" 6
check_eq "and handled nothing the threads had settled" "$(grep -c 'command done command_id=thr-[0-9h]' "$SECOND_LOG")" 0
replies_after=$(kcat -C -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t thr.replies -o beginning -e -q 2>/dev/null | wc -l)
check_eq "replies: 6 results and 6 completions more" "$((replies_after - replies_before))" 12
finish
