#!/usr/bin/env bash
# Selection on 1,000,000 runs: loads tests/bench/population_1m.sql into its own database, then
# for each filter kind checks that PostgreSQL's plan reads flow_run through an index (no
# sequential scan) and prints the resolution time (median of 5, `bulkstate select`).
# Prints "N passed, N failed"; run by the test suite (label integration).
source "$(dirname "$0")/../integration/lib.sh"
DB=bulkstate_1m
export BULKSTATE_POSTGRES_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=$DB"
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"$BIN" migrate --recommended-indexes >/dev/null || { not_ok "migrate"; finish; exit 1; }
t0=$(date +%s)
psql -X -q -v ON_ERROR_STOP=1 -d $DB -f "$BS_SOURCE_DIR/tests/bench/population_1m.sql" || { not_ok "load"; finish; exit 1; }
echo "loaded 1,000,000 runs in $(( $(date +%s) - t0 )) s"

ID1=$(psql -X -At -d $DB -c "SELECT string_agg('\"' || id || '\"', ',') FROM (SELECT id FROM flow_run ORDER BY md5(id::text) LIMIT 50) x")
DEP=$(psql -X -At -d $DB -c "SELECT md5('dep7')::uuid")
CREATOR=$(psql -X -At -d $DB -c "SELECT md5('creator4')::uuid")
declare -A F=(
  [id]="{\"id\": {\"any_\": [$ID1]}}"
  [state_type_rare]="{\"state\": {\"type\": {\"any_\": [\"RUNNING\"]}}}"
  [state_type_common]="{\"state\": {\"type\": {\"any_\": [\"SCHEDULED\"]}}}"
  [deployment_id]="{\"deployment_id\": {\"any_\": [\"$DEP\"]}}"
  [tags_all]="{\"tags\": {\"all_\": [\"t7\", \"u3\"]}}"
  [tags_any]="{\"tags\": {\"any_\": [\"t7\", \"t8\"]}}"
  [work_queue_name]="{\"work_queue_name\": {\"any_\": [\"q3\"]}}"
  [expected_start_range]="{\"expected_start_time\": {\"after_\": \"2026-03-01T00:00:00Z\", \"before_\": \"2026-03-01T06:00:00Z\"}}"
  [start_time_range]="{\"start_time\": {\"after_\": \"2026-06-01T00:00:00Z\", \"before_\": \"2026-06-01T01:00:00Z\"}}"
  [end_time_range]="{\"end_time\": {\"after_\": \"2026-06-01T00:00:00Z\", \"before_\": \"2026-06-01T01:00:00Z\"}}"
  [name_like]="{\"name\": {\"like_\": \"run-12345-\"}}"
  [state_and_tags]="{\"state\": {\"type\": {\"any_\": [\"FAILED\"]}}, \"tags\": {\"all_\": [\"nightly\"]}}"
  [created_by]="{\"created_by\": {\"id_\": [\"$CREATOR\"]}}"
  [no_filter]="null"
)
printf '%-22s %10s %8s  %s\n' "filter kind" "median ms" "matched" "plan (first lines)"
for k in $(printf '%s\n' "${!F[@]}" | sort); do
  req="{\"flow_runs\": ${F[$k]}, \"limit\": 50}"
  plan=$(printf '%s\n' "$req" | "$BIN" select --explain | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["plan"]))')
  if printf '%s' "$plan" | grep -q "Seq Scan on flow_run"; then
    not_ok "$k: sequential scan on flow_run"; printf '%s\n' "$plan" >&2
  else
    ok
  fi
  times=$(for _ in 1 2 3 4 5; do printf '%s\n' "$req"; done | "$BIN" select | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
ms = sorted(r["ms"] for r in rows)
print(ms[len(ms) // 2], len(rows[0]["ids"]))')
  printf '%-22s %10s %8s  %s\n' "$k" ${times} "$(printf '%s' "$plan" | grep -Eo '(Index Only Scan|Index Scan)( Backward)? using [a-z_0-9]+|Bitmap Index Scan on [a-z_0-9]+' | sort -u | tr '\n' ';')"
done
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB"
finish
