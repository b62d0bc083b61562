#!/usr/bin/env bash
# Two workers in one consumer group apply 60 commands at once, on three partitions, whose
# selections overlap: the runs are locked in one global order (id DESC), so no deadlock and no
# retry, every command is applied once, and every run's state pointer ends on its newest state.
source "$(dirname "$0")/lib.sh"
P=0193f100-0000-7000-8000
N=40
for i in $(seq 1 $N); do
  sql "SELECT bulkstate_dev.new_run('$P-$(printf '%012d' "$i")', 'conc-$i', 'PENDING', '{conc}')" >/dev/null
done
start_worker || { finish; exit 1; }
LOG_A=$WORKER_LOG; PID_A=$WORKER_PID
start_worker || { finish; exit 1; }
LOG_B=$WORKER_LOG; PID_B=$WORKER_PID
# wait (bounded) until the group has settled with both members
deadline=$(( $(date +%s) + 60 ))
until [ "$(grep -c 'partitions assigned' "$LOG_A")" -ge 2 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
check_eq "first worker rebalanced to share the partitions" "$([ "$(grep -c 'partitions assigned' "$LOG_A")" -ge 2 ] && echo yes)" yes

python3 - "$P" "$N" >"$TMP/commands.jsonl" <<'PY'
import json, random, sys
prefix, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
ids = [f"{prefix}-{i:012d}" for i in range(1, n + 1)]
for k in range(60):
    sel = rng.sample(ids, 20)
    rng.shuffle(sel)  # the order a client writes ids in must not matter
    print(json.dumps({"command_id": f"conc-{k}", "flow_runs": {"id": {"any_": sel}},
                      "state": {"type": rng.choice(["RUNNING", "COMPLETED", "FAILED", "SCHEDULED"])},
                      "force": True}))
PY
"$BIN" send --batch "$TMP/commands.jsonl" --no-wait >/dev/null
check_eq "all produced" "$?" 0
deadline=$(( $(date +%s) + 120 ))
until [ "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'conc-%' AND status = 'done'")" -eq 60 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "all 60 commands done" "$(sql "SELECT count(*) FROM bulkstate.command WHERE command_id LIKE 'conc-%' AND status = 'done'")" 60
check_eq "both workers applied commands" "$( (grep -q 'command done command_id=conc-' "$LOG_A" && grep -q 'command done command_id=conc-' "$LOG_B") && echo yes)" yes
check_eq "no deadlock, no retry" "$(cat "$LOG_A" "$LOG_B" | grep -cE 'deadlock|transient failure')" 0
check_eq "every result accepted" "$(sql "SELECT sum(matched) = sum(accepted) AND sum(matched) = 1200 FROM bulkstate.command WHERE command_id LIKE 'conc-%'")" t
check_eq "one state row per accepted result" "$(sql "SELECT count(*) - $N FROM flow_run_state s JOIN flow_run fr ON fr.id = s.flow_run_id WHERE fr.tags ? 'conc'")" 1200
check_eq "each run points at its newest state" "$(sql "SELECT count(*) FROM flow_run fr WHERE fr.tags ? 'conc' AND fr.state_id <> (SELECT s.id FROM flow_run_state s WHERE s.flow_run_id = fr.id ORDER BY s.timestamp DESC LIMIT 1)")" 0
kill -TERM "$PID_A"; wait "$PID_A"; check_eq "first worker stops cleanly" "$?" 0
finish
