#!/usr/bin/env bash
# Installs what the tests need beyond Go: redis-server and redis-cli (the
# integration tests start real Redis processes), docker-compose (only to
# validate docker-compose.yml; no engine is used) and promtool (Debian's
# prometheus package: checks and unit-tests deploy/prometheus/alerts.yaml)
# and, with WITH_NODE=1, node and npm (Spectral lints the OpenAPI document;
# its packages come from npm through tools/spectral/package-lock.json), and
# with WITH_CHROMIUM=1 Debian's chromium (the status page's headless
# browser test).
# Debian/Ubuntu, as root or with sudo; does nothing when everything is
# there.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${WITH_COMPOSE:-0}" = 1 ]; then
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi
if [ "${WITH_PROMTOOL:-0}" = 1 ]; then
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
fi
if [ "${WITH_NODE:-0}" = 1 ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ "${WITH_CHROMIUM:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${need[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start a system redis on 6379 and a Prometheus on 9090 (the
# broker's default gRPC port); the tests start their own, and need neither.
if command -v systemctl >/dev/null 2>&1; then
  for unit in redis-server prometheus prometheus-node-exporter; do
    $sudo systemctl stop "$unit" >/dev/null 2>&1 || true
  done
fi
