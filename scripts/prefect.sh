#!/usr/bin/env bash
# Prefect itself, the conformance oracle: the version pinned in tests/conformance/requirements.txt
# installed with pip in a virtual environment under the build tree, its server started on
# loopback on a database "prefect" of the test PostgreSQL (its own migrations create the
# schema). Needs scripts/pg.sh to be running.
#   scripts/prefect.sh start | stop
# `start` writes $BS_RUN_DIR/prefect.env (PREFECT_API_URL, BS_PREFECT_DB_CONNINFO). When the
# package registry cannot be reached it writes $BS_RUN_DIR/prefect.unavailable instead and
# exits 0: the conformance tests then report themselves as skipped.
source "$(dirname "$0")/lib.sh"
VENV=$BS_BUILD_DIR/prefect-venv
DIR=$BS_RUN_DIR/prefect
ENVF=$BS_RUN_DIR/prefect.env
MARK=$BS_RUN_DIR/prefect.unavailable
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

start() {
  mkdir -p "$BS_RUN_DIR" "$DIR"
  rm -f "$MARK"
  install
  source "$BS_RUN_DIR/pg.env"
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS prefect" -c "CREATE DATABASE prefect"
  PORT=$(free_port "${BS_PREFECT_PORT:-4299}")
  export PREFECT_HOME=$DIR/home PREFECT_SERVER_UI_ENABLED=false PREFECT_SERVER_ANALYTICS_ENABLED=false
  export PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/prefect"
  export PREFECT_SERVER_LOGGING_LEVEL=WARNING
  nohup "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PORT" --no-services \
      >"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/pid"
  if ! wait_for 180 "prefect server" curl -sf "http://127.0.0.1:$PORT/api/health"; then
    tail -40 "$DIR/server.log" >&2
    stop
    die "the Prefect server did not start"
  fi
  cat >"$ENVF" <<EOV
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export BS_PREFECT_VENV=$VENV
export BS_PREFECT_DB_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=prefect"
EOV
  log "prefect $("$VENV/bin/python" -c 'import prefect; print(prefect.__version__)') server ready on 127.0.0.1:$PORT (database prefect)"
}

stop() {
  stop_pidfile "$DIR/pid" "prefect server" 20
  rm -f "$ENVF"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
