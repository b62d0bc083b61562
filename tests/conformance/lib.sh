# Shared by the conformance wrappers. Sourced.
set -uo pipefail
: "${BS_BUILD_DIR:?}" "${BS_SOURCE_DIR:?}"
RUN=$BS_BUILD_DIR/services
# Exit 77 (reported by CTest as skipped, never as passed) when Prefect could not be installed
# because the package registry was unreachable.
if [ -f "$RUN/prefect.unavailable" ]; then
  echo "##################################################################"
  echo "SKIPPED: Prefect is not installed: $(cat "$RUN/prefect.unavailable")"
  echo "##################################################################"
  exit 77
fi
