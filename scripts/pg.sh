#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback and a unix socket under the build tree.
#   scripts/pg.sh start | stop | env
# `start` writes $BS_RUN_DIR/pg.env (PGHOST, PGPORT, PGUSER, BULKSTATE_POSTGRES_CONNINFO).
# Runs the server as the postgres user when called as root (initdb refuses root).
source "$(dirname "$0")/lib.sh"

PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$PGBIN" ] || PGBIN=$(pg_config --bindir)
DIR=$BS_RUN_DIR/pg
DATA=$DIR/data
SOCK=$DIR/sock
LOGF=$DIR/server.log
ENVF=$BS_RUN_DIR/pg.env

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$DIR"
  if [ "$(id -u)" -eq 0 ]; then
    # the postgres user must traverse every parent directory
    d=$DIR; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    install -d -o postgres -g postgres -m 700 "$DATA"
    install -d -o postgres -g postgres -m 755 "$SOCK"
  else
    mkdir -p "$DATA" "$SOCK"; chmod 700 "$DATA"
  fi
  if [ -f "$ENVF" ] && (source "$ENVF"; as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1); then
    log "postgres already running ($(grep PGPORT "$ENVF"))"
    return 0
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
      || { tail -20 "$DIR/initdb.log"; die "initdb failed"; }
  fi
  PORT=$(free_port "${BS_PG_PORT:-54329}")
  : >"$LOGF"; [ "$(id -u)" -eq 0 ] && chown postgres "$LOGF"
  # Non-durable for the tests' speed, in a file of its own so that ALTER SYSTEM (the
  # benchmark's durable runs: tests/bench/bench.py) can override it without a restart; a
  # start drops what an earlier ALTER SYSTEM left. shared_buffers: 256 MB for the tests,
  # BS_PG_SHARED_BUFFERS for the benchmark's production-sized cluster (tests/bench/bench.sh).
  # pg_stat_statements: the benchmark's statements per transition.
  printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' | as_owner tee "$DATA/bulkstate.conf" >/dev/null
  grep -q "^include_if_exists 'bulkstate.conf'" "$DATA/postgresql.conf" \
    || echo "include_if_exists 'bulkstate.conf'" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
  echo "# reset by scripts/pg.sh start" | as_owner tee "$DATA/postgresql.auto.conf" >/dev/null
  echo "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCK -c max_connections=50 -c shared_buffers=${BS_PG_SHARED_BUFFERS:-256MB} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=10000" >"$DIR/opts"
  up
  PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$DIR/opts")
  cat >"$ENVF" <<EOV
export PGHOST=$SOCK
export PGPORT=$PORT
export PGUSER=postgres
export BULKSTATE_POSTGRES_CONNINFO="host=$SOCK port=$PORT user=postgres dbname=bulkstate"
EOV
  log "postgres ready on 127.0.0.1:$PORT (socket $SOCK)"
}

# up / down: start or stop the server of an existing cluster on the same port (outage tests)
up() {
  PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$DIR/opts")
  if ! as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGF" -w -t 60 -o "$(cat "$DIR/opts")" start >/dev/null; then
    tail -30 "$LOGF" >&2
    die "postgres did not start"
  fi
  wait_for 30 "postgres" "$PGBIN/pg_isready" -h "$SOCK" -p "$PORT" -U postgres || { tail -30 "$LOGF" >&2; die "postgres not ready"; }
}

down() {
  as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
}

stop() {
  if [ -f "$DATA/postmaster.pid" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || true
    log "postgres stopped"
  fi
  rm -f "$ENVF"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) cat "$ENVF" ;;
  up) up; log "postgres up" ;;
  down) down; log "postgres down" ;;
  *) echo "usage: $0 start|stop|env|up|down" >&2; exit 64 ;;
esac
