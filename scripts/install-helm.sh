#!/usr/bin/env bash
# Installs helm (used by test/integration/helm.test.ts) into <repo>/.cache/bin/helm, built from
# source through the Go module proxy (the only route to a helm binary on machines whose sole
# network access is the package registries):
#   GOBIN=<repo>/.cache/bin go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION
# Idempotent: when .cache/bin/helm already reports $HELM_VERSION it does nothing (well under a
# second). A cold build takes a few minutes on 2 cores (see docs/operations.md); the Go module and
# build caches (~/go/pkg/mod, ~/.cache/go-build) make a rebuild much faster.
# Prints the helm path on stdout; quiet otherwise; on failure prints go's output to stderr.
# Environment: HELM_VERSION (default below), GO (default: go on PATH, else /usr/local/go/bin/go),
# HELM_BIN_DIR (default <repo>/.cache/bin).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
BIN_DIR="${HELM_BIN_DIR:-$REPO_DIR/.cache/bin}"
HELM="$BIN_DIR/helm"

die() {
  echo "install-helm: $*" >&2
  exit 1
}

STAMP="$BIN_DIR/.helm-build"

installed_version() {
  "$HELM" version --template '{{.Version}}' 2>/dev/null || true
}

# The stamp records that the binary was built by this script (with the ldflags below).
if [ -x "$HELM" ] && [ "$(installed_version)" = "$HELM_VERSION" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$HELM_VERSION" ]; then
  echo "$HELM"
  exit 0
fi

GO="${GO:-$(command -v go || true)}"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "Go not found (set GO=/path/to/go, or install Go >= the version helm $HELM_VERSION needs)"

mkdir -p "$BIN_DIR"
rm -f "$STAMP"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

# helm's Makefile stamps, besides its version, the Kubernetes version that `helm template` and
# `helm lint` assume (.Capabilities.KubeVersion, checked against Chart.yaml's kubeVersion) from the
# k8s.io/client-go version in its go.mod (v0.N.x -> 1.N). Without it that is v1.20.0.
if ! "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" >"$log" 2>&1; then
  cat "$log" >&2
  die "go mod download helm.sh/helm/v3@$HELM_VERSION failed"
fi
gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$log")"
k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9][0-9]*\)\..*#\1#p' "$gomod" 2>/dev/null | head -n 1)"
[ -n "$k8s_minor" ] || die "cannot find the k8s.io/client-go version in helm's go.mod ($gomod)"

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

if ! GOBIN="$BIN_DIR" CGO_ENABLED=0 "$GO" install -trimpath -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$log" 2>&1; then
  cat "$log" >&2
  die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
fi

got="$(installed_version)"
[ "$got" = "$HELM_VERSION" ] || die "built $HELM but it reports version '$got', expected $HELM_VERSION"
echo "$HELM_VERSION" >"$STAMP"
echo "$HELM"
