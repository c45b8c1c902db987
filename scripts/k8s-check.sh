#!/usr/bin/env bash
# `make k8s-check`: renders the kustomize base and every overlay under deploy/k8s and validates
# every manifest offline with kubeconform (-strict: unknown fields are errors) against the
# Kubernetes, KEDA and Strimzi schemas vendored in deploy/k8s/schemas (scripts/k8s-schemas.sh
# regenerates them). kustomize and kubeconform are built from the Go module proxy once and cached
# under $COMET_CACHE/k8s-tools. Usage: scripts/k8s-check.sh [KUSTOMIZATION_DIR...]
#   scripts/k8s-check.sh --render DIR   prints DIR rendered by the same kustomize (for tests).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KUSTOMIZE_VERSION="${COMET_KUSTOMIZE_VERSION:-v5.8.2}"      # v5.8.3 needs Go 1.27
KUBECONFORM_VERSION="${COMET_KUBECONFORM_VERSION:-v0.8.0}"
SCHEMAS="$ROOT/deploy/k8s/schemas"
K8S_VERSION="$(awk '$1 == "kubernetes" {print $2}' "$SCHEMAS/VERSIONS")"
TOOLS="$COMET_CACHE/k8s-tools"

# go_tool NAME MODULE VERSION: the cached binary's path, built from the Go module proxy if missing.
go_tool() {
  local name="$1" module="$2" version="$3" dir="$TOOLS/$1-$3"
  if [ ! -x "$dir/$name" ]; then
    command -v go >/dev/null || die "the Go toolchain is needed to build $name (this machine kind ships it at /usr/local/go)"
    say "building $name $version from the Go module proxy into $dir"
    mkdir -p "$dir"
    GOBIN="$dir" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
      go install "$module@$version" >&2 || { rm -rf "$dir"; die "could not build $module@$version"; }
  fi
  echo "$dir/$name"
}

kustomize="$(go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION")"
kubeconform="$(go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")"

if [ "${1:-}" = "--render" ]; then
  [ $# -eq 2 ] || die "usage: scripts/k8s-check.sh --render KUSTOMIZATION_DIR"
  exec "$kustomize" build "$2"
fi

dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  dirs=("$ROOT/deploy/k8s/base")
  for d in "$ROOT"/deploy/k8s/overlays/*/; do dirs+=("${d%/}"); done
fi

failed=0
for dir in "${dirs[@]}"; do
  name="${dir#"$ROOT/"}"
  rendered="$("$kustomize" build "$dir" 2>&1)" || { say "FAIL $name: kustomize build: $rendered"; failed=1; continue; }
  # Only the vendored schemas, never the network: a kind without one is an error.
  if report="$(printf '%s\n' "$rendered" | "$kubeconform" -strict -summary -output text \
      -kubernetes-version "$K8S_VERSION" \
      -schema-location "$SCHEMAS/kubernetes/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$SCHEMAS/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
      2>&1)"; then
    say "ok   $name: ${report##*$'\n'}"
  else
    say "FAIL $name:"
    printf '%s\n' "$report" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || die "k8s-check: some manifests are invalid (see above)"
say "k8s-check: every manifest is valid (schemas: $(paste -sd ',' "$SCHEMAS/VERSIONS" | sed 's/,/, /g'))"
