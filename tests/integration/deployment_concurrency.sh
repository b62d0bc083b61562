#!/usr/bin/env bash
# Deployment concurrency slots against the real database: a limit of 2 grants two slots (with
# leases in bulkstate.deployment_lease) and reschedules the third run as
# AwaitingConcurrencySlot; CANCEL_NEW cancels instead; moving a run on revokes its lease or
# frees its slot in the same transaction; the reaper frees the slot of a lease that expired
# while its run stayed PENDING and only forgets one whose run moved on.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_LEASE_REAP_INTERVAL_MS=200
P=0193f000-0000-7000-8c00
D1=$P-0000000000d1
D2=$P-0000000000d2
L1=$P-0000000000c1
L2=$P-0000000000c2
sql "INSERT INTO concurrency_limit_v2 (id, active, name, \"limit\", active_slots, denied_slots,
       slot_decay_per_second, avg_slot_occupancy_seconds)
     VALUES ('$L1', true, 'deployment:$D1', 2, 0, 0, 0, 2),
            ('$L2', true, 'deployment:$D2', 1, 1, 0, 0, 2)" >/dev/null
sql "SELECT bulkstate_dev.new_deployment('$D1', 'dc-enqueue'), bulkstate_dev.new_deployment('$D2', 'dc-cancel-new')" >/dev/null
sql "UPDATE deployment SET concurrency_limit_id = '$L1', concurrency_limit = 2 WHERE id = '$D1';
     UPDATE deployment SET concurrency_limit_id = '$L2', concurrency_limit = 1,
       concurrency_options = '{\"collision_strategy\": \"CANCEL_NEW\"}' WHERE id = '$D2'" >/dev/null
for i in 1 2 3; do
  sql "SELECT bulkstate_dev.new_run('$P-00000000000$i', 'dc-$i', 'SCHEDULED', '{dc-enqueue}', '$D1', now() - interval '1 minute')" >/dev/null
done
sql "SELECT bulkstate_dev.new_run('$P-000000000004', 'dc-4', 'SCHEDULED', '{dc-cancel}', '$D2', now() - interval '1 minute')" >/dev/null
start_worker || { finish; exit 1; }
limit_slots() { sql "SELECT active_slots FROM concurrency_limit_v2 WHERE id = '$1'"; }
leases() { sql "SELECT count(*) FROM bulkstate.deployment_lease $1"; }

# 1. three runs -> PENDING on a limit of 2 (Prefect's order: id DESC, so run 1 waits)
printf '{"command_id": "dc-pending", "flow_runs": {"tags": {"all_": ["dc-enqueue"]}}, "state": {"type": "PENDING"}}' >"$TMP/c1.json"
send "$TMP/c1.json"
check_eq "two accepted, one rejected" "$(json_field '(c["accepted"], c["rejected"])')" "(2, 1)"
check_eq "the third run waits for a slot" \
  "$(json_field '[(x["status"], x["state"]["name"], x["details"]["reason"]) for x in r if x["status"] != "ACCEPT"]')" \
  "[('REJECT', 'AwaitingConcurrencySlot', 'Deployment concurrency limit reached.')]"
check_eq "slots taken" "$(limit_slots $L1)" 2
check_eq "one lease per granted run" "$(leases "WHERE limit_id = '$L1'")" 2
check_eq "each PENDING state carries its lease" \
  "$(sql "SELECT count(*) FROM flow_run fr JOIN flow_run_state s ON s.id = fr.state_id
          JOIN bulkstate.deployment_lease l ON l.id = (s.state_details->>'deployment_concurrency_lease_id')::uuid
          WHERE fr.deployment_id = '$D1' AND s.type = 'PENDING' AND l.flow_run_id = fr.id")" 2
check_match "the waiting run is rescheduled about 30 s out" \
  "$(sql "SELECT round(extract(epoch FROM next_scheduled_start_time - state_timestamp)) FROM flow_run WHERE id = '$P-000000000001'")" '^(29|30)$'

# 2. CANCEL_NEW: the limit is full, the run is cancelled
printf '{"command_id": "dc-cancel-new", "flow_runs": {"tags": {"all_": ["dc-cancel"]}}, "state": {"type": "PENDING"}}' >"$TMP/c2.json"
send "$TMP/c2.json"
check_eq "CANCEL_NEW cancels" "$(json_field '(r[0]["status"], r[0]["state"]["type"], r[0]["state"]["message"])')" \
  "('REJECT', 'CANCELLED', 'Deployment concurrency limit reached.')"
check_eq "its limit is untouched" "$(limit_slots $L2)" 1

# 3. PENDING -> RUNNING revokes the lease (commands carry no client version), the slot stays
printf '{"command_id": "dc-running", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "RUNNING"}}' "$P-000000000003" >"$TMP/c3.json"
send "$TMP/c3.json"
check_eq "PENDING -> RUNNING accepted" "$(json_field 'r[0]["status"]')" ACCEPT
check_eq "its lease is revoked" "$(leases "WHERE flow_run_id = '$P-000000000003'")" 0
check_eq "its slot is still held" "$(limit_slots $L1)" 2
# 4. RUNNING -> COMPLETED frees the slot (one-slot fallback: the lease is gone)
printf '{"command_id": "dc-complete", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "COMPLETED"}}' "$P-000000000003" >"$TMP/c4.json"
send "$TMP/c4.json"
check_eq "RUNNING -> COMPLETED accepted" "$(json_field 'r[0]["status"]')" ACCEPT
check_eq "the slot is freed" "$(limit_slots $L1)" 1
# 5. PENDING -> CANCELLED with its lease: freed through the lease, lease revoked
printf '{"command_id": "dc-cancel-pending", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "CANCELLED"}}' "$P-000000000002" >"$TMP/c5.json"
send "$TMP/c5.json"
check_eq "PENDING -> CANCELLED accepted" "$(json_field 'r[0]["status"]')" ACCEPT
check_eq "slot freed through the lease" "$(limit_slots $L1)" 0
check_eq "no lease left on the limit" "$(leases "WHERE limit_id = '$L1'")" 0

# 6. the reaper: a lease that expired while its run is PENDING gives its slot back ...
printf '{"command_id": "dc-pending-again", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "PENDING"}}' "$P-000000000001" >"$TMP/c6.json"
send "$TMP/c6.json"
check_eq "the waiting run gets its slot" "$(json_field 'r[0]["status"]')" ACCEPT
check_eq "slot taken" "$(limit_slots $L1)" 1
sql "UPDATE bulkstate.deployment_lease SET expiration = now() - interval '1 second' WHERE flow_run_id = '$P-000000000001'" >/dev/null
deadline=$(( $(date +%s) + 30 ))
until [ "$(leases "WHERE flow_run_id = '$P-000000000001'")" = 0 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "the expired lease is reaped" "$(leases "WHERE flow_run_id = '$P-000000000001'")" 0
check_eq "and its slot freed" "$(limit_slots $L1)" 0
# ... and one whose run moved on (its slot released by whoever moved it) is only forgotten
sql "UPDATE concurrency_limit_v2 SET active_slots = 1 WHERE id = '$L1';
     INSERT INTO bulkstate.deployment_lease (id, limit_id, flow_run_id, expiration)
     VALUES ('$P-0000000000e1', '$L1', '$P-000000000003', now() - interval '1 second')" >/dev/null
deadline=$(( $(date +%s) + 30 ))
until [ "$(leases "WHERE id = '$P-0000000000e1'")" = 0 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "a stale lease is forgotten" "$(leases "WHERE id = '$P-0000000000e1'")" 0
check_eq "without touching the slots" "$(limit_slots $L1)" 1
check_match "the reaper logs what it did" "$(grep 'lease reaper' "$WORKER_LOG" | tail -1)" "expired_leases=1 slots_freed=0"
# ... and one whose PENDING state Prefect's server followed with a RUNNING state under its own
# lease (a client >= 3.4.11 re-acquired a slot) gives its slot back
printf '{"command_id": "dc-pending-3", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "2020-01-01T00:00:00Z"}}}' "$P-000000000001" >"$TMP/c7.json"
send "$TMP/c7.json"
printf '{"command_id": "dc-pending-4", "flow_runs": {"id": {"any_": ["%s"]}}, "state": {"type": "PENDING"}}' "$P-000000000001" >"$TMP/c8.json"
send "$TMP/c8.json"
check_eq "a slot taken again" "$(limit_slots $L1)" 1
LEASE=$(sql "SELECT id FROM bulkstate.deployment_lease WHERE flow_run_id = '$P-000000000001'")
sql "INSERT INTO flow_run_state (id, flow_run_id, type, \"timestamp\", name, state_details)
     VALUES ('$P-0000000000f1', '$P-000000000001', 'RUNNING', now() + interval '1 second', 'Running',
             '{\"deployment_concurrency_lease_id\": \"$P-0000000000e9\"}');
     UPDATE flow_run SET state_id = '$P-0000000000f1', state_type = 'RUNNING' WHERE id = '$P-000000000001';
     UPDATE concurrency_limit_v2 SET active_slots = active_slots + 1 WHERE id = '$L1';
     UPDATE bulkstate.deployment_lease SET expiration = now() - interval '1 second' WHERE id = '$LEASE'" >/dev/null
deadline=$(( $(date +%s) + 30 ))
until [ "$(leases "WHERE id = '$LEASE'")" = 0 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
check_eq "the superseded lease is reaped" "$(leases "WHERE id = '$LEASE'")" 0
check_eq "and bulkstate's slot freed (Prefect's stays)" "$(limit_slots $L1)" 1
stop_worker
finish
