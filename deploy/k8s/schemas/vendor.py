"""Writes the JSON schemas `make k8s-check` validates against, so the check needs no network.

Run by `scripts/k8s-schemas.sh` (which fetches the sources from the package registries); the
output is checked in under deploy/k8s/schemas/. Two kinds of schema, in kubeconform's layouts:

- kubernetes/<kind>-<group>-<version>.json + kubernetes/_definitions.json: the Kubernetes kinds the
  manifests use, taken from the `kubernetes-validate` wheel (PyPI), which carries the JSON schemas
  generated from Kubernetes' OpenAPI document (strict: unknown fields are refused). Only the kinds
  in KINDS are kept, and `_definitions.json` is pruned to what they reach.
- crds/<group>/<kind>_<version>.json: custom resources (KEDA, Strimzi), converted from their
  CustomResourceDefinitions' openAPIV3Schema the way kubeconform's openapi2jsonschema does
  (nullable, int-or-string, and strict: an object that lists its properties refuses others unless
  it preserves unknown fields).

Descriptions are dropped: they validate nothing and are most of the bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

# The Kubernetes kinds the manifests may use: <kind>-<group>-<version> as kubeconform names them.
KINDS = (
    "configmap-v1",
    "namespace-v1",
    "persistentvolumeclaim-v1",
    "secret-v1",
    "service-v1",
    "serviceaccount-v1",
    "deployment-apps-v1",
    "statefulset-apps-v1",
    "job-batch-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "networkpolicy-networking-v1",
    "poddisruptionbudget-policy-v1",
)
_REF = re.compile(r"^/api/_definitions\.json#/\$defs/(.+)$")


def _strip(node: Any, names: bool = False) -> Any:
    """Drops descriptions and ids; `names`: node maps property names (a property may be called
    `description`)."""
    if isinstance(node, dict):
        return {
            k: _strip(v, names=k == "properties" and not names)
            for k, v in node.items()
            if names or k not in ("description", "$id")
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.split("#/$defs/", 1)[-1]
            found.add(name)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _relative(node: Any) -> Any:
    """`/api/_definitions.json#/$defs/X` -> `_definitions.json#/$defs/X` (beside the kind's file)."""
    if isinstance(node, dict):
        out = {k: _relative(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and (m := _REF.match(ref)):
            out["$ref"] = f"_definitions.json#/$defs/{m.group(1)}"
        return out
    if isinstance(node, list):
        return [_relative(v) for v in node]
    return node


def kubernetes(wheel: Path, version: str, out: Path) -> list[str]:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        definitions = json.loads(zf.read(prefix + "_definitions.json"))["$defs"]
        wanted: set[str] = set()
        for kind in KINDS:
            schema = _relative(_strip(json.loads(zf.read(f"{prefix}{kind}.json"))))
            _refs(schema, wanted)
            _write(out / f"{kind}.json", schema)
            written.append(f"{kind}.json")
    # Close over the definitions' own references.
    todo = list(wanted)
    while todo:
        found: set[str] = set()
        _refs(definitions[todo.pop()], found)
        for name in found - wanted:
            wanted.add(name)
            todo.append(name)
    pruned = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {name: _strip(definitions[name]) for name in sorted(wanted)},
    }
    _write(out / "_definitions.json", pruned)
    return written


def _crd_schema(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [_crd_schema(v, strict) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: _crd_schema(prop, strict) for name, prop in v.items()}
        elif k in ("enum", "default", "example", "required"):
            out[k] = v
        elif k != "description":
            out[k] = _crd_schema(v, strict)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        strict
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crds(files: list[Path], out: Path) -> list[str]:
    written = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = _crd_schema(version["schema"]["openAPIV3Schema"], strict=True)
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                # The apiVersion and kind this file stands for (kubeconform picks the file by them).
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                name = f"{group}/{kind.lower()}_{version['name']}.json"
                _write(out / name, schema)
                written.append(name)
    return written


def _write(path: Path, schema: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-wheel", type=Path, required=True)
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--crd", type=Path, action="append", default=[], help="a CRD YAML file")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    names = kubernetes(args.kubernetes_wheel, args.kubernetes_version, args.out / "kubernetes")
    names += crds(args.crd, args.out / "crds")
    print(f"wrote {len(names)} schemas under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
