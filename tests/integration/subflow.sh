#!/usr/bin/env bash
# Subflows (UpdateSubflowParentTask): a subflow's written state is copied onto its parent task
# run in the same transaction: a task_run_state row (child_flow_run_id = the subflow), the task
# run's bookkeeping columns, a result artifact for the task, and the task run leaves the
# active_slots of its tags' concurrency limits (first API). A parent task whose tags have
# limits of the second API with slots in use (leases in Prefect's server memory) is refused
# with a clear reason and nothing of it is written; such a limit with no slot in use holds no
# lease and does not stand in the way.
source "$(dirname "$0")/lib.sh"
P=0193f000-0000-7000-8a00
PARENT=$P-0000000000f0
T1=$P-0000000001a1 T2=$P-0000000001a2 T3=$P-0000000001a3
S1=$P-000000000001 S2=$P-000000000002 S3=$P-000000000003
sql "SELECT bulkstate_dev.new_run('$PARENT', 'sub-parent', 'RUNNING')" >/dev/null
sql "SELECT bulkstate_dev.new_task_run('$T1', '$PARENT', 'RUNNING', '{sub-db,sub-other}')" >/dev/null
sql "SELECT bulkstate_dev.new_task_run('$T2', '$PARENT', 'RUNNING', '{sub-gpu}')" >/dev/null
sql "SELECT bulkstate_dev.new_task_run('$T3', '$PARENT', NULL)" >/dev/null
for i in 1 2 3; do
  sql "SELECT bulkstate_dev.new_run('$P-00000000000$i', 'sub-$i', 'RUNNING', '{sub}')" >/dev/null
  sql "UPDATE flow_run SET parent_task_run_id = '$P-0000000001a$i' WHERE id = '$P-00000000000$i'" >/dev/null
done
sql "INSERT INTO concurrency_limit (tag, concurrency_limit, active_slots)
     VALUES ('sub-db', 2, '[\"$T1\", \"$T2\"]'), ('sub-other', 1, '[\"$T1\"]')" >/dev/null
sql "INSERT INTO concurrency_limit_v2 (active, name, \"limit\", active_slots, denied_slots,
       slot_decay_per_second, avg_slot_occupancy_seconds) VALUES (true, 'tag:sub-gpu', 1, 1, 0, 0, 2),
       (true, 'tag:sub-db', 5, 0, 0, 0, 2)" >/dev/null
T2_BEFORE=$(sql "SELECT state_id, state_type FROM task_run WHERE id = '$T2'")
start_worker || { finish; exit 1; }

printf '{"command_id": "sub-1", "flow_runs": {"tags": {"all_": ["sub"]}}, "state": {"type": "COMPLETED", "data": {"value": 7, "artifact_key": "sub-result"}}}' >"$TMP/sub.json"
send "$TMP/sub.json"
check_eq "results" "$(json_field '[(x["flow_run_id"][-3:], x["status"]) for x in r]')" \
  "[('003', 'ACCEPT'), ('002', 'ABORT'), ('001', 'ACCEPT')]"
check_eq "the refusal names the task run and its limits" "$(json_field '[x["details"]["reason"] for x in r if x["status"] == "ABORT"][0]')" \
  "bulkstate cannot release tag concurrency leases held in Prefect's server memory: parent task run $T2 of flow run $S2 has tag limits with slots in use: tag:sub-gpu"

# the parent task run of an accepted subflow holds a copy of the subflow's state
check_eq "task run columns" "$(sql "SELECT state_type, state_name, run_count, end_time IS NOT NULL, total_run_time > interval '0' FROM task_run WHERE id = '$T1'")" \
  "COMPLETED|Completed|1|t|t"
check_eq "task state row" "$(sql "SELECT s.type, s.state_details->>'child_flow_run_id', s.state_details->>'task_run_id', s.state_details->>'flow_run_id', s.id <> f.state_id, s.timestamp >= fs.timestamp
  FROM task_run t JOIN task_run_state s ON s.id = t.state_id, flow_run f JOIN flow_run_state fs ON fs.id = f.state_id
  WHERE t.id = '$T1' AND f.id = '$S1'")" "COMPLETED|$S1|$T1|$PARENT|t|t"
check_eq "the subflow's own state names its parent task" "$(sql "SELECT s.state_details->>'task_run_id', s.state_details->>'child_flow_run_id' FROM flow_run f JOIN flow_run_state s ON s.id = f.state_id WHERE f.id = '$S1'")" \
  "$T1|"
check_eq "artifacts: the subflow's keeps its key, the task's is keyless, same data" \
  "$(sql "SELECT a.key, a.task_run_id, a.flow_run_id, a.data::text FROM flow_run f JOIN flow_run_state s ON s.id = f.state_id JOIN artifact a ON a.id = s.result_artifact_id WHERE f.id = '$S1'
          UNION ALL SELECT coalesce(a.key, '-'), a.task_run_id, a.flow_run_id, a.data::text FROM task_run t JOIN task_run_state s ON s.id = t.state_id JOIN artifact a ON a.id = s.result_artifact_id WHERE t.id = '$T1'")" \
  "sub-result||$S1|{\"value\":7}
-|$T1|$PARENT|{\"value\":7}"
check_eq "a task run with no state gets one" "$(sql "SELECT state_type, run_count, start_time IS NOT NULL, end_time IS NOT NULL FROM task_run WHERE id = '$T3'")" \
  "COMPLETED|0|t|t"
check_eq "tag slots of the first API released" "$(sql "SELECT tag || '=' || active_slots::text FROM concurrency_limit ORDER BY tag")" \
  "sub-db=[\"$T2\"]
sub-other=[]"
check_eq "the refused subflow and its task are untouched" "$(sql "SELECT state_type FROM flow_run WHERE id = '$S2'") $(sql "SELECT state_id, state_type FROM task_run WHERE id = '$T2'")" \
  "RUNNING $T2_BEFORE"
check_eq "one task state per accepted subflow" "$(sql "SELECT count(*) FROM task_run_state WHERE task_run_id IN ('$T1', '$T2', '$T3')")" 4

# RUNNING again with force: the task run counts a run and keeps its (now released) slots
printf '{"command_id": "sub-2", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "RUNNING"}, "force": true}' "$S1" >"$TMP/sub2.json"
send "$TMP/sub2.json"
check_eq "forced RUNNING" "$(json_field '[x["status"] for x in r]')" "['ACCEPT']"
check_eq "task run running again" "$(sql "SELECT state_type, run_count, end_time IS NULL FROM task_run WHERE id = '$T1'")" "RUNNING|2|t"
finish
