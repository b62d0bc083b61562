#!/usr/bin/env bash
# Schema versions and the Python example client (clients.py), with the test run's services and
# one worker that maps Confluent ids 41 and 42 to command versions 1 and 2.
source "$(dirname "$0")/lib.sh"
PY=$("$BS_SOURCE_DIR/scripts/client-venv.sh") || { not_ok "no Python client environment"; finish; exit 1; }
P=0199b000-0000-7000-8000
sql "SELECT count(bulkstate_dev.new_run(('$P-' || lpad(to_hex(i), 12, '0'))::uuid, 'clients', 'RUNNING', '{clients}')) FROM generate_series(1, 20) i" >/dev/null
export BULKSTATE_WORKER_CONFLUENT_COMMAND_ID=42 BULKSTATE_WORKER_CONFLUENT_COMMAND_VERSIONS=41:1
start_worker || { finish; exit 1; }
"$PY" "$BS_SOURCE_DIR/tests/integration/clients.py"
check_eq "clients.py" "$?" 0
finish
