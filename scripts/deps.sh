#!/usr/bin/env bash
# Installs, from Debian's packages, whatever the build, the services and the tests need and is
# missing. Idempotent: a second run installs nothing.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git
      librdkafka-dev libavro-dev libjansson-dev libpq-dev libmicrohttpd-dev libsystemd-dev
      libcurl4-openssl-dev
      postgresql-15 postgresql-client-15
      openjdk-17-jre-headless maven kcat python3 python3-venv curl clang-format
      clang-14 libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
