#!/usr/bin/env bash
# Hostile values in every string field of a filter: each gives exactly the right rows or a
# clear validation error, never an SQL error or a crash. Runs whose names and tags are
# themselves hostile are found by exact match.
source "$(dirname "$0")/lib.sh"
P=0193e000-0000-7000-8000
python3 - "$TMP/corpus.json" <<'PY'
import json, sys
values = ["'", "''", "\\", "\\'", "$1", "$$", ";-- DROP TABLE flow_run;", "' OR 1=1 --", "%", "_",
          "{", "}", "\"", ",", "{\"a\",\"b\"}", "NULL", "null", "a,b", " lead", "trail ", "ünï©ødé 🚀",
          "x" * (1 << 20)]
json.dump(values, open(sys.argv[1], "w"))
PY
# runs named and tagged with some of them
i=0
for v in "o'brien;--" 'back\slash' '{"a","b"}' 'NULL' 'a,b' '$1'; do
  i=$((i + 1))
  esc=${v//\'/\'\'}
  sql "SELECT bulkstate_dev.new_run('$P-00000000000$i', E'${esc//\\/\\\\}', 'PENDING', ARRAY[E'${esc//\\/\\\\}', 'hostile'])" >/dev/null
done
before=$(sql "SELECT count(*) FROM flow_run")

python3 - "$TMP/corpus.json" >"$TMP/requests" <<'PY'
import json, sys
values = json.load(open(sys.argv[1]))
fields = [("name", "any_", True), ("name", "like_", False), ("tags", "all_", True),
          ("tags", "any_", True), ("work_queue_name", "any_", True), ("flow_version", "any_", True),
          ("idempotency_key", "any_", True), ("idempotency_key", "not_any_", True),
          ("created_by", "type_", True)]
for v in values:
    for f, k, is_list in fields:
        print(json.dumps({"flow_runs": {f: {k: [v] if is_list else v}}, "limit": 50}))
    print(json.dumps({"flow_runs": {"state": {"name": {"any_": [v]}}}, "limit": 50}))
# NUL and non-UTF-8 cannot reach PostgreSQL: they are refused while parsing
print('{"flow_runs": {"name": {"any_": ["a\\u0000b"]}}, "limit": 50}')
sys.stdout.flush()
sys.stdout.buffer.write(b'{"flow_runs": {"name": {"like_": "\xff\xfe"}}, "limit": 50}\n')
PY
"$BIN" select <"$TMP/requests" >"$TMP/answers" 2>"$TMP/select.err"
check_eq "bulkstate select exit status" "$?" 0
check_eq "one answer per request" "$(wc -l <"$TMP/answers")" "$(wc -l <"$TMP/requests")"
summary=$(python3 - "$TMP/answers" <<'PY'
import json, sys
kinds = {}
for line in open(sys.argv[1]):
    a = json.loads(line)
    k = "ids" if "ids" in a else "error:" + a["error"]["type"]
    kinds[k] = kinds.get(k, 0) + 1
print(" ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
PY
)
# the 1 MiB value is past limits.max_string_bytes in each of the 10 places it goes
check_match "answers are rows, parse errors or the size limit (never sql)" "$summary" "^error:json_parse=2 error:string_too_long=10 ids=[0-9]+$"
check_eq "no SQL error logged" "$(grep -c 'could not' "$TMP/select.err")" 0

# exact matches find exactly the hostile run
i=0
for v in "o'brien;--" 'back\slash' '{"a","b"}' 'NULL' 'a,b' '$1'; do
  i=$((i + 1))
  q=$(python3 -c 'import json,sys; v=sys.argv[1]; print(json.dumps({"flow_runs": {"name": {"any_": [v]}, "tags": {"all_": [v, "hostile"]}}, "limit": 50}))' "$v")
  got=$(printf '%s\n' "$q" | "$BIN" select | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)["ids"]))')
  check_eq "exact match on name and tag $v" "$got" "$P-00000000000$i"
done
check_eq "like_ '%' is a wildcard, as in Prefect" "$(printf '{"flow_runs": {"name": {"like_": "%%"}, "tags": {"all_": ["hostile"]}}, "limit": 50}\n' | "$BIN" select | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["ids"]))')" 6
check_eq "flow_run untouched" "$(sql "SELECT count(*) FROM flow_run")" "$before"
finish
