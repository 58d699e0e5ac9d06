#!/usr/bin/env bash
# Installs what test/integration/chart-schemas.test.ts needs to validate the rendered Helm chart
# against Kubernetes' own API schemas, offline:
#   1. kubeconform, built through the Go module proxy into <repo>/.cache/bin/kubeconform:
#        GOBIN=<repo>/.cache/bin go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION
#   2. strict JSON schemas of every built-in kind of Kubernetes $KUBERNETES_VERSION, generated from
#      the OpenAPI spec that the k8s.io/kubernetes module ships (api/openapi-spec/swagger.json), with
#      openapi2jsonschema2 (PyPI, the maintained fork of the converter behind the kubeconform
#      project's schema registry; in a venv) --kubernetes --expanded --stand-alone --strict, into
#        <repo>/.cache/kube-schemas/v$KUBERNETES_VERSION-standalone-strict/   (kubeconform's layout)
#   3. strict JSON schemas of the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule, ...)
#      from the CRD manifests in the github.com/prometheus-operator/prometheus-operator module,
#      converted with kubeconform's own scripts/openapi2jsonschema.py (from the kubeconform module), into
#        <repo>/.cache/kube-schemas/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION/
# Each step is skipped when its stamp matches the versions below, so a second run takes well under
# a second. Cold, on 2 cores: see docs/operations.md ("Validating the chart").
# Prints, on stdout, lines for the test to read:
#   kubeconform=<path>  kubernetes_version=<x.y.z>  schema_location=<arg for -schema-location> (twice)
# Quiet otherwise; on failure prints the failing tool's output to stderr.
# Environment: KUBECONFORM_VERSION, KUBERNETES_VERSION, PROMETHEUS_OPERATOR_VERSION,
# OPENAPI2JSONSCHEMA2_VERSION (defaults below), GO (default: go on PATH, else /usr/local/go/bin/go),
# PYTHON (default python3).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.2}"
# v0.85.0 is the newest root-module version the Go module proxy serves here (later ones answer 403).
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
OPENAPI2JSONSCHEMA2_VERSION="${OPENAPI2JSONSCHEMA2_VERSION:-1.1.37}"
CACHE="$REPO_DIR/.cache"
BIN_DIR="$CACHE/bin"
KUBECONFORM="$BIN_DIR/kubeconform"
SCHEMAS="$CACHE/kube-schemas"
K8S_DIR="$SCHEMAS/v$KUBERNETES_VERSION-standalone-strict"
CRD_DIR="$SCHEMAS/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
VENV="$CACHE/openapi2jsonschema2-$OPENAPI2JSONSCHEMA2_VERSION"

die() {
  echo "install-kubeconform: $*" >&2
  exit 1
}

log="$(mktemp)"
tmp=""
trap 'rm -f "$log"; [ -z "$tmp" ] || rm -rf "$tmp"' EXIT

# run CMD... : quiet; on failure shows its output and stops.
run() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "failed: $*"
  fi
}

go_bin() {
  GO="${GO:-$(command -v go || true)}"
  [ -n "$GO" ] || GO=/usr/local/go/bin/go
  [ -x "$GO" ] || die "Go not found (set GO=/path/to/go)"
  export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
}

# module_dir MODULE@VERSION : downloads the module (Go module cache) and prints its directory.
module_dir() {
  go_bin
  run "$GO" mod download -json "$1"
  local dir
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$log")"
  [ -d "$dir" ] || die "go mod download $1 gave no directory"
  echo "$dir"
}

stamp_ok() { [ "$(cat "$1/.stamp" 2>/dev/null)" = "$2" ]; }

# 1. kubeconform
KC_STAMP="kubeconform $KUBECONFORM_VERSION"
if ! { [ -x "$KUBECONFORM" ] && [ "$(cat "$BIN_DIR/.kubeconform-build" 2>/dev/null)" = "$KC_STAMP" ]; }; then
  go_bin
  mkdir -p "$BIN_DIR"
  rm -f "$BIN_DIR/.kubeconform-build"
  run env GOBIN="$BIN_DIR" CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  [ "$("$KUBECONFORM" -v)" = "$KUBECONFORM_VERSION" ] || die "built $KUBECONFORM but it does not report $KUBECONFORM_VERSION"
  echo "$KC_STAMP" >"$BIN_DIR/.kubeconform-build"
fi

# The converters' Python environment, made only when a schema set has to be generated.
venv() {
  local stamp="openapi2jsonschema2==$OPENAPI2JSONSCHEMA2_VERSION"
  if ! stamp_ok "$VENV" "$stamp"; then
    rm -rf "$VENV"
    run "${PYTHON:-python3}" -m venv "$VENV"
    run "$VENV/bin/pip" install --quiet --disable-pip-version-check "$stamp"
    echo "$stamp" >"$VENV/.stamp"
  fi
}

# 2. Kubernetes built-in kinds
K8S_STAMP="k8s.io/kubernetes v$KUBERNETES_VERSION, openapi2jsonschema2 $OPENAPI2JSONSCHEMA2_VERSION --kubernetes --expanded --stand-alone --strict"
if ! stamp_ok "$K8S_DIR" "$K8S_STAMP"; then
  venv
  spec="$(module_dir "k8s.io/kubernetes@v$KUBERNETES_VERSION")/api/openapi-spec/swagger.json"
  [ -f "$spec" ] || die "no $spec in the k8s.io/kubernetes module"
  mkdir -p "$SCHEMAS"
  tmp="$(mktemp -d "$SCHEMAS/.tmp.XXXXXX")"
  # With --stand-alone it resolves its own _definitions.json as <cwd>/<output dir> (an absolute -o
  # breaks that). It skips, with a line in its log and still exiting 0, the definitions it cannot
  # convert: the CustomResourceDefinition types (recursive JSONSchemaProps, "not currently
  # supported") and a few other recursive alpha types. Those are kept in conversion-errors.txt;
  # every kind the chart renders must be there.
  (cd "$SCHEMAS" && run "$VENV/bin/openapi2jsonschema2" --kubernetes --expanded --stand-alone --strict \
    -o "$(basename "$tmp")" "file://$spec")
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'An error occurred' >"$tmp/conversion-errors.txt" || true
  for kind in statefulset-apps-v1 service-v1 serviceaccount-v1 configmap-v1 poddisruptionbudget-policy-v1 deployment-apps-v1; do
    if [ ! -f "$tmp/$kind.json" ]; then
      head -n 20 "$tmp/conversion-errors.txt" >&2
      die "openapi2jsonschema2 wrote no $kind.json"
    fi
  done
  echo "$K8S_STAMP" >"$tmp/.stamp"
  rm -rf "$K8S_DIR"
  mv "$tmp" "$K8S_DIR"
  tmp=""
fi

# 3. Prometheus Operator CRDs
CRD_STAMP="prometheus-operator $PROMETHEUS_OPERATOR_VERSION, kubeconform $KUBECONFORM_VERSION scripts/openapi2jsonschema.py, strict"
if ! stamp_ok "$CRD_DIR" "$CRD_STAMP"; then
  venv
  crds="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")/example/prometheus-operator-crd"
  converter="$(module_dir "github.com/yannh/kubeconform@$KUBECONFORM_VERSION")/scripts/openapi2jsonschema.py"
  [ -d "$crds" ] || die "no $crds in the prometheus-operator module"
  mkdir -p "$SCHEMAS"
  tmp="$(mktemp -d "$SCHEMAS/.tmp.XXXXXX")"
  # Strict like the built-in kinds: no unknown field anywhere, the top level included. The script
  # writes into the current directory; file names as kubeconform looks them up.
  (cd "$tmp" && run env FILENAME_FORMAT='{kind}-{group}-{version}' DENY_ROOT_ADDITIONAL_PROPERTIES=1 \
    "$VENV/bin/python" "$converter" "$crds"/*.yaml)
  for kind in servicemonitor prometheusrule; do
    [ -f "$tmp/$kind-monitoring-v1.json" ] || die "the CRD conversion wrote no $kind-monitoring-v1.json"
  done
  echo "$CRD_STAMP" >"$tmp/.stamp"
  rm -rf "$CRD_DIR"
  mv "$tmp" "$CRD_DIR"
  tmp=""
fi

echo "kubeconform=$KUBECONFORM"
echo "kubernetes_version=$KUBERNETES_VERSION"
# A directory: kubeconform looks up <dir>/v<version>-standalone-strict/<kind>-<group>-<version>.json.
echo "schema_location=$SCHEMAS"
echo "schema_location=$CRD_DIR/{{.ResourceKind}}{{.KindSuffix}}.json"
