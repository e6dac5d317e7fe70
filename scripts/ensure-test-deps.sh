#!/usr/bin/env bash
# Makes sure the programs the tests start for real are installed. As root it installs the missing
# Debian packages; otherwise it names them and fails, so no test can pass by silently skipping.
set -euo pipefail
declare -A PACKAGE_OF=(
  [redis-server]=redis-server [redis-sentinel]=redis-sentinel [redis-cli]=redis-tools
  [haproxy]=haproxy [prometheus]=prometheus [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager [amtool]=prometheus-alertmanager
  [wrk]=wrk [hey]=hey [ab]=apache2-utils [httperf]=httperf [ip]=iproute2 [chromium]=chromium [systemd-analyze]=systemd
)
missing=()
for binary in "${!PACKAGE_OF[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "The test suite needs these Debian packages: $packages" >&2
  echo "Install them as root: apt-get install -y $packages" >&2
  exit 1
fi
echo "Installing test dependencies: $packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $packages >&2
