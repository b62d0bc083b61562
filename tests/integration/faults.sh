#!/usr/bin/env bash
# CTest wrapper of faults.py: SCENARIO is kill (SIGKILL at the points of a command's life and at
# random moments, >= 50 times over 1,000 commands) or services (broker restart, PostgreSQL
# restart, pg_terminate_backend of the worker's session while commands flow).
source "$(dirname "$0")/lib.sh"
export TMPDIR=$TMP
python3 "$BS_SOURCE_DIR/tests/integration/faults.py" "$@" --log "$TMP/workers.log"
rc=$?
if [ $rc -ne 0 ]; then
  echo "--- last worker log lines" >&2
  tail -30 "$TMP/workers.log" >&2
  not_ok "fault test $1"
else
  ok
fi
finish
