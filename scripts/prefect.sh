#!/usr/bin/env bash
# Prefect itself, the conformance oracle: the version pinned in tests/conformance/requirements.txt
# installed with pip in a virtual environment under the build tree, its server started on
# loopback on a database "prefect" of the test PostgreSQL (its own migrations create the
# schema). Needs scripts/pg.sh to be running.
#   scripts/prefect.sh start | stop            the oracle: --no-services, database "prefect"
#   scripts/prefect.sh start-live | stop-live  the neighbour: a second server with its services
#                                              on (event bus, triggers, persister, cancellation
#                                              cleanup), database "prefect_live"
#   scripts/prefect.sh down-live | up-live     stops it, and starts it again on the same port
#                                              and database
# `start` writes $BS_RUN_DIR/prefect.env (PREFECT_API_URL, BS_PREFECT_DB_CONNINFO), `start-live`
# $BS_RUN_DIR/prefect-live.env. When the package registry cannot be reached it writes
# $BS_RUN_DIR/prefect.unavailable instead and exits 0: the conformance tests then report
# themselves as skipped.
source "$(dirname "$0")/lib.sh"
VENV=$BS_BUILD_DIR/prefect-venv
MARK=$BS_RUN_DIR/prefect.unavailable
case "${1:-}" in
  *-live) NAME=prefect-live DB=prefect_live SERVICES= PORT0=4399 ;;
  *) NAME=prefect DB=prefect SERVICES=--no-services PORT0=${BS_PREFECT_PORT:-4299} ;;
esac
DIR=$BS_RUN_DIR/$NAME
ENVF=$BS_RUN_DIR/$NAME.env
REQ=$BS_SOURCE_DIR/tests/conformance/requirements.txt

install() {
  if [ -f "$VENV/.complete" ] && cmp -s "$REQ" "$VENV/.complete"; then return 0; fi
  log "installing $(cat "$REQ") into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >"$BS_RUN_DIR/pip.log" 2>&1; then
    tail -15 "$BS_RUN_DIR/pip.log" >&2
    if grep -Eqi 'NewConnectionError|Name or service not known|Temporary failure in name resolution|Network is unreachable|Connection refused|timed out|Could not fetch URL' "$BS_RUN_DIR/pip.log"; then
      echo "the package registry could not be reached: see $BS_RUN_DIR/pip.log" >"$MARK"
      log "PREFECT UNAVAILABLE: the package registry could not be reached; conformance tests will be SKIPPED"
      exit 0
    fi
    die "pip could not install $(cat "$REQ")"
  fi
  cp "$REQ" "$VENV/.complete"
}

start() { # fresh: a new database
  mkdir -p "$BS_RUN_DIR" "$DIR"
  rm -f "$MARK"
  install
  source "$BS_RUN_DIR/pg.env"
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  serve "$(free_port "$PORT0")"
}

serve() { # the server on port $1, on the existing database
  PORT=$1
  source "$BS_RUN_DIR/pg.env"
  export PREFECT_HOME=$DIR/home PREFECT_SERVER_UI_ENABLED=false PREFECT_SERVER_ANALYTICS_ENABLED=false
  export PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/$DB"
  export PREFECT_SERVER_LOGGING_LEVEL=WARNING
  nohup "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PORT" $SERVICES \
      >>"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/pid"
  if ! wait_for 180 "prefect server" curl -sf "http://127.0.0.1:$PORT/api/health"; then
    tail -40 "$DIR/server.log" >&2
    stop
    die "the Prefect server did not start"
  fi
  cat >"$ENVF" <<EOV
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export BS_PREFECT_VENV=$VENV
export BS_PREFECT_DB_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=$DB"
export BS_PREFECT_PORT=$PORT
EOV
  log "prefect $("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)') server ready on 127.0.0.1:$PORT (database $DB${SERVICES:+, $SERVICES})"
}

stop() {
  stop_pidfile "$DIR/pid" "$NAME server" 20
  rm -f "$ENVF"
}

case "${1:-}" in
  start | start-live) start ;;
  stop | stop-live) stop ;;
  down-live) stop_pidfile "$DIR/pid" "$NAME server" 20 ;;
  up-live) source "$ENVF" && serve "$BS_PREFECT_PORT" ;;
  *) echo "usage: $0 start|stop|start-live|stop-live|down-live|up-live" >&2; exit 64 ;;
esac
