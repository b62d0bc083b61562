#!/usr/bin/env bash
# CTest wrapper of prefect_live.py: a Prefect server with its services on (fixture
# prefect_live), bulkstate's worker on the same database delivering its events there, a
# flow.serve() runner and an automation. Exit 77 (skipped) when Prefect could not be installed
# because the package registry was unreachable.
source "$(dirname "$0")/../conformance/lib.sh"
source "$RUN/pg.env"; source "$RUN/kafka.env"; source "$RUN/prefect-live.env"
export BULKSTATE_CONFIG=$BS_SOURCE_DIR/config/bulkstate.ini
export BULKSTATE_POSTGRES_CONNINFO=$BS_PREFECT_DB_CONNINFO
export BULKSTATE_PREFECT_API_URL=$PREFECT_API_URL
export BULKSTATE_WORKER_COMMAND_TOPIC=live.commands BULKSTATE_WORKER_REPLY_TOPIC=live.replies
export BULKSTATE_WORKER_DLQ_TOPIC=live.dlq BULKSTATE_KAFKA_GROUP_ID=live
# the test kills a worker: its successor gets the partition after the session timeout
export BULKSTATE_KAFKA_SESSION_TIMEOUT_MS=6000 BULKSTATE_KAFKA_HEARTBEAT_INTERVAL_MS=1000
"$BS_BUILD_DIR/bulkstate" migrate >/dev/null || exit 1
"$BS_BUILD_DIR/bulkstate" topics 1 >/dev/null || exit 1
PIDS=$RUN/prefect-live/pids
rm -rf "$PIDS" && mkdir -p "$PIDS"
exec "$BS_PREFECT_VENV/bin/python" "$BS_SOURCE_DIR/tests/live/prefect_live.py" \
  --api "$PREFECT_API_URL" --bulkstate "$BS_BUILD_DIR/bulkstate" \
  --worker-log "$RUN/prefect-live-worker.log" --prefect-script "$BS_SOURCE_DIR/scripts/prefect.sh" \
  --pid-dir "$PIDS"
