#!/usr/bin/env bash
# The hostile-producer fault test (hostile_producer.py) with the test run's services.
source "$(dirname "$0")/lib.sh"
TMPDIR=$TMP python3 "$BS_SOURCE_DIR/tests/integration/hostile_producer.py" "$@"
rc=$?
rm -rf "$TMP"
exit $rc
