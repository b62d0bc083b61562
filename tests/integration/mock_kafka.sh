#!/usr/bin/env bash
# CTest wrapper of mock_kafka.c: librdkafka's mock cluster for Kafka, the real PostgreSQL.
source "$(dirname "$0")/lib.sh"
unset BULKSTATE_CONFIG BULKSTATE_WORKER_METRICS_LISTEN
if "$BS_BUILD_DIR/test_mock_kafka" >"$TMP/out" 2>"$TMP/err"; then ok; else not_ok "mock-cluster faults"; tail -30 "$TMP/err" >&2; fi
cat "$TMP/out"
# the outage failed the acknowledgements of a command awaited while the next one ran
if grep -q "replies not acknowledged.*delivered again" "$TMP/err"; then ok
else not_ok "no acknowledgement awaited after the next command failed"; fi
finish
