#!/usr/bin/env python3
"""Validates the manifests in deploy/.

1. Built-in kinds (the CRD itself, and later RBAC, Deployment, ...) with kubernetes-validate
   --strict against the Kubernetes 1.37 schemas.
2. Every InterferencePolicy under deploy/examples against the openAPIV3Schema of the CRD in
   deploy/crds (what the API server checks before CEL rules), and the deliberately broken
   fixture tests/fixtures/invalid-policy.yaml must fail it.

Exits non-zero on the first failure. Prints "N passed, 0 failed" at the end.
"""
import glob
import subprocess
import sys

import jsonschema
import yaml


def to_json_schema(node):
    """OpenAPI v3 (structural) -> JSON Schema: `nullable: true` admits null."""
    if isinstance(node, dict):
        out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def main():
    passed = 0
    builtin = sorted(glob.glob("deploy/crds/*.yaml")) + sorted(
        f for f in glob.glob("deploy/**/*.yaml", recursive=True)
        if not f.startswith(("deploy/crds/", "deploy/examples/"))
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *builtin]
    )
    if result.returncode != 0:
        print(f"FAIL: kubernetes-validate --strict rejected one of {builtin}")
        print(f"{passed} passed, 1 failed")
        return 1
    passed += len(builtin)

    with open("deploy/crds/interferencepolicies.yaml") as f:
        crd = yaml.safe_load(f)
    schema = to_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    validator = jsonschema.Draft4Validator(schema)

    for path in sorted(glob.glob("deploy/examples/*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                errors = sorted(validator.iter_errors(doc), key=str)
                if errors:
                    print(f"FAIL: {path}: {errors[0].message} at {list(errors[0].path)}")
                    print(f"{passed} passed, 1 failed")
                    return 1
                passed += 1

    with open("tests/fixtures/invalid-policy.yaml") as f:
        broken = yaml.safe_load(f)
    problems = {"/".join(map(str, e.path)) for e in validator.iter_errors(broken)}
    expected = {"spec/mode", "spec/triggers/1/metric", "spec/attribution/minCorrelation",
                "spec/attribution/window", "spec/limits/maxActionsPerNode/count",
                "spec/limits/cooldown", "spec/eviction/gracePeriodSeconds",
                "spec/triggers/1/outlier/minSamples"}
    missing = expected - problems
    if missing:
        print(f"FAIL: the CRD schema accepts fields it must reject: {sorted(missing)}")
        print(f"{passed} passed, 1 failed")
        return 1
    passed += 1
    print(f"manifests: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
