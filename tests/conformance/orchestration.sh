#!/usr/bin/env bash
# CTest wrapper of orchestration.py: bulk commands through Prefect's own server and through
# bulkstate (Kafka, worker) on a copy of the same database. Exit 77 (skipped) when Prefect
# could not be installed because the package registry was unreachable.
source "$(dirname "$0")/lib.sh"
source "$RUN/pg.env"; source "$RUN/kafka.env"; source "$RUN/prefect.env"
export BULKSTATE_CONFIG=$BS_SOURCE_DIR/config/bulkstate.ini
export BULKSTATE_WORKER_METRICS_LISTEN=127.0.0.1:0
export BS_WORKER_LOG=$RUN/orchestration-worker.log
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS prefect_b" -c "CREATE DATABASE prefect_b"
exec python3 "$BS_SOURCE_DIR/tests/conformance/orchestration.py" --api "$PREFECT_API_URL" \
  --bulkstate "$BS_BUILD_DIR/bulkstate" --conninfo-a "$BS_PREFECT_DB_CONNINFO" \
  --conninfo-b "host=$PGHOST port=$PGPORT user=postgres dbname=prefect_b" \
  --proposals "${BS_CONFORMANCE_PROPOSALS:-5000}" --runs 200 --seed 20261128
