#!/usr/bin/env bash
# CTest wrapper of filters.py: the differential filter test against Prefect's own server.
# Exit 77 (reported by CTest as skipped, never as passed) when Prefect could not be installed
# because the package registry was unreachable.
source "$(dirname "$0")/lib.sh"
source "$RUN/prefect.env"
exec python3 "$BS_SOURCE_DIR/tests/conformance/filters.py" --api "$PREFECT_API_URL" \
  --bulkstate "$BS_BUILD_DIR/bulkstate" --conninfo "$BS_PREFECT_DB_CONNINFO" \
  --filters "${BS_CONFORMANCE_FILTERS:-2000}" --runs 300 --seed 20261128
