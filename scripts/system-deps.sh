#!/usr/bin/env bash
# Installs the real services the tests run against, from Debian's packages,
# when they are missing: redis-server (Redis bus), nginx (deployment tests),
# chromium (room page tests; Playwright drives /usr/bin/chromium), openssl,
# node and npm (axe-core, the accessibility check), prometheus (its server and
# promtool: the deploy/ rules and dashboard tests).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # a test certificate for the https page test
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)  # axe-core for the accessibility test (npm ci)
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing from Debian: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# The package starts system services we do not use; the tests start their own.
systemctl disable --now redis-server nginx prometheus prometheus-node-exporter >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
service nginx stop >/dev/null 2>&1 || true
service prometheus stop >/dev/null 2>&1 || true
service prometheus-node-exporter stop >/dev/null 2>&1 || true  # recommended by the package; unused
