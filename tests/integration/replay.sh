#!/usr/bin/env bash
# bulkstate replay: a command log re-read from Kafka into the database. --dry-run changes
# nothing; --clock issued_at replayed into two copies of the same starting database gives
# byte-identical results and rows; a second replay skips every command; --emit republishes the
# stored replies; --from-offset starts where asked.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_COMMAND_TOPIC=rp.log
"$BIN" topics 1 >/dev/null || { not_ok "create the log topic"; finish; exit 1; }
db() { echo "host=$PGHOST port=$PGPORT user=postgres dbname=$1"; }
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS rp_tpl" -c "CREATE DATABASE rp_tpl" >/dev/null
BULKSTATE_POSTGRES_CONNINFO=$(db rp_tpl) "$BIN" migrate >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d rp_tpl -f "$BS_SOURCE_DIR/scripts/dev_helpers.sql" >/dev/null
P=0195a000-0000-7000-8000
psql -X -q -v ON_ERROR_STOP=1 -d rp_tpl -c "
  SELECT bulkstate_dev.new_deployment('$P-0000000000d1', 'rp');
  SELECT bulkstate_dev.new_run(('$P-' || lpad(to_hex(i), 12, '0'))::uuid, 'rp-' || i,
    (ARRAY['SCHEDULED','PENDING','RUNNING','COMPLETED','FAILED','PAUSED'])[1 + i % 6]::state_type,
    '{rp}', CASE WHEN i % 2 = 0 THEN '$P-0000000000d1'::uuid END,
    '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 minute')
  FROM generate_series(1, 30) i" >/dev/null
for d in rp_a rp_b; do
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d" -c "CREATE DATABASE $d TEMPLATE rp_tpl" >/dev/null
done

# the log: 20 commands with issued_at and a large one (max_runs) (core rules and force, filters and ids, a SCHEDULED
# state whose time defaults to the clock), and one invalid message in the middle
python3 - "$P" >"$TMP/log.tsv" <<'PY'
import json, random, sys
p = sys.argv[1]
rng = random.Random(7)
types = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CANCELLING", "PAUSED"]
for k in range(20):
    body = {"command_id": f"rp-{k}", "issued_at": f"2026-02-01T00:{k:02d}:00.123456Z",
            "state": {"type": rng.choice(types)}, "force": rng.random() < 0.3}
    if k % 3 == 0:
        body["flow_runs"] = {"tags": {"all_": ["rp"]}, "state": {"type": {"any_": [rng.choice(types)]}}}
    else:
        body["flow_runs"] = {"id": {"any_": [f"{p}-{i:012x}" for i in rng.sample(range(1, 31), 4)]}}
    print(f"rp-{k}\t{json.dumps(body)}")
    if k == 9:
        print("rp-bad\t" + json.dumps({"command_id": "rp-bad", "state": {"type": "NOPE"}}))
# a large command (max_runs): every run tagged rp, in batches of 7
print("rp-large\t" + json.dumps({"command_id": "rp-large", "issued_at": "2026-02-01T01:00:00Z",
      "flow_runs": {"tags": {"all_": ["rp"]}}, "state": {"type": "CANCELLED"}, "force": True,
      "limit": 7, "max_runs": 1000}))
PY
kcat -P -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -t rp.log -K $'\t' -H content-type=application/json -l "$TMP/log.tsv"
states() { psql -X -A -t -d "$1" -c "SELECT count(*) FROM flow_run_state"; }
replay() { BULKSTATE_POSTGRES_CONNINFO=$(db "$1") "$BIN" replay "${@:2}" 2>>"$TMP/replay.err"; }
outcomes() { python3 -c 'import json,sys; from collections import Counter; print(dict(sorted(Counter(json.loads(l)["outcome"] for l in sys.stdin if "outcome" in l).items())))'; }

# 1. dry run: every command evaluated, nothing kept
before=$(states rp_a)
replay rp_a --dry-run --clock issued_at --results >"$TMP/dry"; check_eq "dry run exit status" "$?" 0
check_eq "dry run outcomes" "$(outcomes <"$TMP/dry")" "{'dry_run': 21, 'invalid': 1}"
check_match "the large command in batches" "$(grep '"rp-large"' "$TMP/dry" | grep outcome)" '"matched":30,"accepted":30'
check_eq "its results, in seq order" "$(grep -c '"command_id":"rp-large","seq"' "$TMP/dry")" 30
check_eq "dry run changes nothing" "$(states rp_a)" "$before"
check_eq "nothing recorded" "$(psql -X -A -t -d rp_a -c 'SELECT count(*) FROM bulkstate.command')" 0
check_match "the invalid command is named" "$(grep rp-bad "$TMP/dry")" '"outcome":"invalid".*"field":"state.type"'

# 2. deterministic: the same log into two copies of the same database, byte for byte
replay rp_a --clock issued_at --results >"$TMP/a"; check_eq "replay a" "$?" 0
replay rp_b --clock issued_at --results >"$TMP/b"; check_eq "replay b" "$?" 0
check_eq "applied" "$(outcomes <"$TMP/a")" "{'applied': 21, 'invalid': 1}"
check_eq "the large command took 5 batches of 7" "$(psql -X -A -t -d rp_a -c "SELECT batches, matched, status FROM bulkstate.command WHERE command_id = 'rp-large'")" "5|30|done"
check_eq "results identical, byte for byte" "$(cmp "$TMP/a" "$TMP/b" && echo same)" same
check_eq "the dry run predicted them" "$(grep -v '"outcome"' "$TMP/dry" | md5sum)" "$(grep -v '"outcome"' "$TMP/a" | md5sum)"
rows() { psql -X -A -t -d "$1" -c "SELECT id, flow_run_id, type, name, timestamp, state_details FROM flow_run_state ORDER BY id"; }
check_eq "rows identical" "$(rows rp_a | md5sum)" "$(rows rp_b | md5sum)"
check_match "results carry the issued_at clock" "$(grep -m1 '"seq"' "$TMP/a")" '"timestamp": ?17699040'
# 3. again: everything already applied, nothing changes
after=$(states rp_a)
replay rp_a --clock issued_at >"$TMP/again"
check_eq "second replay skips" "$(outcomes <"$TMP/again")" "{'already_applied': 21, 'invalid': 1}"
check_eq "and changes nothing" "$(states rp_a)" "$after"
# 4. --emit republishes the stored replies of skipped commands
replay rp_a --emit --from-offset 12 >"$TMP/emit"
check_eq "from offset 12" "$(outcomes <"$TMP/emit")" "{'already_applied': 10}"
got=$(kcat -b "$BULKSTATE_KAFKA_BOOTSTRAP_SERVERS" -C -t bulkstate.replies -o beginning -e -q -f '%h\n' 2>/dev/null | grep -c 'command-id=rp-19')
check_match "stored replies of rp-19 republished" "$got" '^[1-9][0-9]*$'
check_match "summary on stderr" "$(tail -1 "$TMP/replay.err")" "replay of rp.log: 0 applied, 10 already applied \(skipped\), 0 invalid, 0 failed"
finish
