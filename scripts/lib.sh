# Shared helpers of the service scripts. Sourced, not run.
set -euo pipefail

BS_SOURCE_DIR=${BS_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BS_BUILD_DIR=${BS_BUILD_DIR:-$BS_SOURCE_DIR/build}
BS_RUN_DIR=${BS_RUN_DIR:-$BS_BUILD_DIR/services}
BS_CACHE_DIR=${BS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkstate}

log() { printf '%s %s\n' "[$(date -u +%H:%M:%S)]" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A free TCP port on 127.0.0.1, starting the search at $1.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
p = int(sys.argv[1])
while p < 65000:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        p += 1
PY
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what did not become ready within ${secs}s"
      return 1
    fi
    sleep 0.2
  done
}

# stop_pidfile PIDFILE NAME SECONDS: stops the process (and its children) whose pid is in
# PIDFILE: SIGTERM, up to SECONDS for it to exit, then SIGKILL.
stop_pidfile() {
  local pidfile=$1 name=$2 secs=$3 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "$name stopped"
}
