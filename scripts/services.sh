#!/usr/bin/env bash
# Starts or stops both services (CTest fixture and demo): PostgreSQL with the bulkstate
# database migrated, Kafka with the topics created. `env` prints the environment to source.
source "$(dirname "$0")/lib.sh"
BIN=$BS_BUILD_DIR/bulkstate

case "${1:-}" in
  start)
    "$BS_SOURCE_DIR/scripts/pg.sh" start
    "$BS_SOURCE_DIR/scripts/kafka.sh" start
    source "$BS_RUN_DIR/pg.env"; source "$BS_RUN_DIR/kafka.env"
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS bulkstate" -c "CREATE DATABASE bulkstate" >/dev/null
    "$BIN" -c "$BS_SOURCE_DIR/config/bulkstate.ini" migrate
    psql -X -q -v ON_ERROR_STOP=1 -d bulkstate -f "$BS_SOURCE_DIR/scripts/dev_helpers.sql" >/dev/null
    "$BIN" -c "$BS_SOURCE_DIR/config/bulkstate.ini" topics 3
    ;;
  stop)
    "$BS_SOURCE_DIR/scripts/kafka.sh" stop || true
    "$BS_SOURCE_DIR/scripts/pg.sh" stop || true
    ;;
  env)
    cat "$BS_RUN_DIR/pg.env" "$BS_RUN_DIR/kafka.env"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 64 ;;
esac
