#!/usr/bin/env bash
# Regenerates the JSON schemas `make k8s-check` validates against (deploy/k8s/schemas/, checked in,
# so the check itself needs no network). Run it by hand when moving to another Kubernetes, KEDA or
# Strimzi version, then commit the result. Sources, each from its package registry:
#   Kubernetes: the kubernetes-validate wheel (PyPI), which carries the JSON schemas generated from
#               Kubernetes' OpenAPI document; KEDA: the CRDs in the github.com/kedacore/keda/v2 Go
#               module; Strimzi: its CRD generator run over its API model (Maven Central).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
K8S_VERSION="${COMET_K8S_SCHEMA_VERSION:-1.33.0}"
K8S_VALIDATE_VERSION="${COMET_K8S_VALIDATE_VERSION:-1.37.0}"
KEDA_VERSION="${COMET_KEDA_VERSION:-v2.20.2}"
STRIMZI_VERSION="${COMET_STRIMZI_VERSION:-0.45.0}"
"$ROOT/scripts/python.sh" -c ""
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say "kubernetes-validate $K8S_VALIDATE_VERSION (Kubernetes $K8S_VERSION schemas) from PyPI"
python3 -m pip download --quiet --no-deps -d "$work" "kubernetes-validate==$K8S_VALIDATE_VERSION" >&2 \
  || die "could not download kubernetes-validate==$K8S_VALIDATE_VERSION (python3 -m pip)"
wheel="$(ls "$work"/kubernetes_validate-*.whl)"

say "KEDA $KEDA_VERSION CRDs from the Go module proxy"
keda_dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
  | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
  || die "could not download github.com/kedacore/keda/v2@$KEDA_VERSION"

say "Strimzi $STRIMZI_VERSION CRDs from its CRD generator (Maven Central)"
command -v mvn >/dev/null || die "Maven (mvn) is needed; install it (apt-get install maven)"
mvn -B -q -f "$ROOT/deploy/k8s/schemas/strimzi/pom.xml" dependency:build-classpath \
  -Dstrimzi.version="$STRIMZI_VERSION" -Dmdep.outputFile="$work/cp.txt" >&2 \
  || die "could not resolve io.strimzi:crd-generator:$STRIMZI_VERSION"
java -cp "$(cat "$work/cp.txt")" io.strimzi.crdgenerator.CrdGenerator --yaml \
  --api-versions v1beta2 --storage-version v1beta2 \
  "io.strimzi.api.kafka.model.kafka.Kafka=$work/kafka.yaml" \
  "io.strimzi.api.kafka.model.nodepool.KafkaNodePool=$work/kafkanodepool.yaml" \
  "io.strimzi.api.kafka.model.topic.KafkaTopic=$work/kafkatopic.yaml" 2> >(grep -v '^SLF4J' >&2) \
  || die "Strimzi's CRD generator failed"

out="$ROOT/deploy/k8s/schemas"
rm -rf "$out/kubernetes" "$out/crds"
"$ROOT/.venv/bin/python" "$out/vendor.py" --out "$out" \
  --kubernetes-wheel "$wheel" --kubernetes-version "$K8S_VERSION" \
  --crd "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml" \
  --crd "$keda_dir/config/crd/bases/keda.sh_triggerauthentications.yaml" \
  --crd "$work/kafka.yaml" --crd "$work/kafkanodepool.yaml" --crd "$work/kafkatopic.yaml"
printf 'kubernetes %s (kubernetes-validate %s)\nkeda %s\nstrimzi %s\n' \
  "$K8S_VERSION" "$K8S_VALIDATE_VERSION" "$KEDA_VERSION" "$STRIMZI_VERSION" > "$out/VERSIONS"
say "schemas written under deploy/k8s/schemas (commit them)"
