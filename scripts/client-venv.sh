#!/usr/bin/env bash
# The Python environment of the example clients and the schema tests: a venv under the build
# tree with examples/python/requirements.txt (pinned), made once; prints its python.
source "$(dirname "$0")/lib.sh"
VENV=$BS_BUILD_DIR/client-venv
REQ=$BS_SOURCE_DIR/examples/python/requirements.txt
if ! { [ -f "$VENV/.complete" ] && cmp -s "$REQ" "$VENV/.complete"; }; then
  log "installing $(tr '\n' ' ' <"$REQ")into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >"$BS_BUILD_DIR/client-pip.log" 2>&1 \
    || { tail -15 "$BS_BUILD_DIR/client-pip.log" >&2; die "pip could not install $REQ"; }
  cp "$REQ" "$VENV/.complete"
fi
echo "$VENV/bin/python"
