#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian package `prometheus`, 2.42 on bookworm) for the tests:
#   - test/integration/alerts-promtool.test.ts: `promtool check rules` and `promtool test rules`
#     on helm/mqtt-kafka-spool/files/alerts.yaml (test/prometheus/alerts.test.yaml);
#   - test/integration/prometheus-live.test.ts: a real Prometheus scraping a real bridge.
# Only if missing from PATH. Idempotent and quiet on success; on failure prints apt's output to
# stderr. The package's own service is never started (policy-rc.d, see scripts/lib/apt.sh): the
# harness (test/harness/prometheus.ts) runs private instances on free ports.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "install-prometheus: $*" >&2
  exit 1
}

# shellcheck source=lib/apt.sh
. "$REPO_DIR/scripts/lib/apt.sh"

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
apt_install prometheus
command -v prometheus >/dev/null 2>&1 || die "prometheus still not on PATH after apt-get install"
command -v promtool >/dev/null 2>&1 || die "promtool still not on PATH after apt-get install"
