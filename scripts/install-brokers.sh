#!/usr/bin/env bash
# Installs the real brokers used by the integration tests, the benchmark and `npm run demo`:
#   - mosquitto + kcat from Debian's packages (only if missing from PATH),
#   - Apache Kafka 4.4.0 (KRaft) jars from Maven Central, via scripts/kafka/pom.xml, into
#     ${KAFKA_LIBS_DIR:-<repo>/.cache/kafka-4.4.0/libs}.
# Idempotent and quiet on success; on failure prints what failed (and the tool's output) to stderr.
# It never starts a broker: the test harness (test/harness/) starts private instances on free ports.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="4.4.0"
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-$REPO_DIR/.cache/kafka-$KAFKA_VERSION/libs}"
POM="$REPO_DIR/scripts/kafka/pom.xml"

die() {
  echo "install-brokers: $*" >&2
  exit 1
}

# shellcheck source=lib/apt.sh
. "$REPO_DIR/scripts/lib/apt.sh"

# 1. mosquitto + kcat (mosquitto lives in /usr/sbin, which a non-root PATH may lack).
PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
  command -v mosquitto >/dev/null 2>&1 || die "mosquitto still not on PATH after apt-get install"
  command -v kcat >/dev/null 2>&1 || die "kcat still not on PATH after apt-get install"
fi

# 2. Kafka jars. Java and Maven are preinstalled on this project's machines; fall back to apt.
if [ -f "$KAFKA_LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  exit 0
fi
java_missing=()
command -v java >/dev/null 2>&1 || java_missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || java_missing+=(maven)
if [ "${#java_missing[@]}" -gt 0 ]; then
  apt_install "${java_missing[@]}"
fi
[ -f "$POM" ] || die "missing $POM"

# Copy into a sibling temp dir and rename at the end, so an interrupted download never leaves
# a dir that has the kafka jar (the "done" marker above) but lacks some dependency.
mkdir -p "$(dirname "$KAFKA_LIBS_DIR")"
tmp_dir="$(mktemp -d "$(dirname "$KAFKA_LIBS_DIR")/.libs-tmp.XXXXXX")"
mvn_log="$tmp_dir.mvn.log"
trap 'rm -rf "$tmp_dir" "$mvn_log"' EXIT
if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp_dir" >"$mvn_log" 2>&1; then
  cat "$mvn_log" >&2
  die "mvn dependency:copy-dependencies failed (see output above)"
fi
[ -f "$tmp_dir/kafka_2.13-$KAFKA_VERSION.jar" ] || die "maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
rm -rf "$KAFKA_LIBS_DIR"
mv "$tmp_dir" "$KAFKA_LIBS_DIR"
