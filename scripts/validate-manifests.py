#!/usr/bin/env python3
"""Validates the manifests in deploy/.

1. Built-in kinds (the CRD, RBAC, the operator's Namespace, ConfigMap, Deployment, Service,
   NetworkPolicy, the example Secret) with kubernetes-validate --strict against the
   Kubernetes 1.37 schemas, file by file and as `kubectl kustomize deploy/` renders them
   (the rendered documents are passed in with --rendered FILE).
2. RBAC: no wildcard in any rule's apiGroups, resources or verbs.
3. The Prometheus Operator objects in deploy/monitoring (no schema ships for them): the
   ServiceMonitor selects the metrics Service and names one of its ports, and every alert
   has an expression over fulcrum_* metrics, a severity and a runbook link.
4. Every InterferencePolicy under deploy/examples against the openAPIV3Schema of the CRD in
   deploy/crds (what the API server checks before CEL rules), and the deliberately broken
   fixture tests/fixtures/invalid-policy.yaml must fail it.

Exits non-zero on the first failure. Prints "N passed, 0 failed" at the end.
"""
import argparse
import glob
import re
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


def load_all(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            docs.extend((path, d) for d in yaml.safe_load_all(f) if d)
    return docs


def check_rbac(docs):
    """Every rule of every Role/ClusterRole names its groups, resources and verbs."""
    problems = []
    for path, doc in docs:
        if doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        for i, rule in enumerate(doc.get("rules", [])):
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in rule.get(field, []) or any("*" in v for v in rule.get(field, [])):
                    problems.append(f"{path}: {doc['metadata']['name']} rules[{i}].{field} has a wildcard")
            if rule.get("nonResourceURLs"):
                problems.append(f"{path}: {doc['metadata']['name']} rules[{i}] grants nonResourceURLs")
    return problems


def check_monitoring(docs, services):
    """The ServiceMonitor scrapes a real port of the metrics Service; alerts are complete."""
    problems = []
    for path, doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        spec = doc.get("spec", {})
        if kind == "ServiceMonitor":
            wanted = spec.get("selector", {}).get("matchLabels", {})
            matching = [s for s in services
                        if all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
            if not matching:
                problems.append(f"{path}: ServiceMonitor {name} selects no Service in deploy/")
            ports = {p.get("name") for s in matching for p in s["spec"].get("ports", [])}
            for e in spec.get("endpoints", []):
                if e.get("port") not in ports:
                    problems.append(f"{path}: ServiceMonitor {name} scrapes port {e.get('port')!r}, not one of {sorted(ports)}")
                if e.get("path") != "/metrics":
                    problems.append(f"{path}: ServiceMonitor {name} scrapes {e.get('path')!r}, not /metrics")
        elif kind == "PrometheusRule":
            for group in spec.get("groups", []):
                for rule in group.get("rules", []):
                    alert = rule.get("alert")
                    if not alert or not rule.get("expr"):
                        problems.append(f"{path}: a rule of {name} lacks alert or expr")
                        continue
                    if not re.search(r"\bfulcrum_[a-z_]+|\bup\{", rule["expr"]):
                        problems.append(f"{path}: {alert} does not use a fulcrum_* metric")
                    if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                        problems.append(f"{path}: {alert} has no severity")
                    if "runbook" not in rule.get("annotations", {}):
                        problems.append(f"{path}: {alert} has no runbook annotation")
        elif kind:
            problems.append(f"{path}: unexpected kind {kind} in deploy/monitoring")
    return problems


def fail(passed, message):
    print(f"FAIL: {message}")
    print(f"{passed} passed, 1 failed")
    return 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rendered", action="append", default=[],
                        help="a file holding `kubectl kustomize` output to validate too")
    args = parser.parse_args()
    passed = 0
    builtin = sorted(glob.glob("deploy/crds/*.yaml")) + sorted(
        f for f in glob.glob("deploy/**/*.yaml", recursive=True)
        if not f.startswith(("deploy/crds/", "deploy/examples/", "deploy/monitoring/"))
        and not f.endswith("kustomization.yaml")
    ) + args.rendered
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *builtin]
    )
    if result.returncode != 0:
        return fail(passed, f"kubernetes-validate --strict rejected one of {builtin}")
    passed += len(builtin)

    docs = load_all(f for f in builtin if f not in args.rendered)
    problems = check_rbac(docs)
    if problems:
        return fail(passed, "; ".join(problems))
    passed += 1

    services = [d for _, d in docs if d.get("kind") == "Service"]
    monitoring = load_all(sorted(f for f in glob.glob("deploy/monitoring/*.yaml")
                                 if not f.endswith("kustomization.yaml")))
    problems = check_monitoring(monitoring, services)
    if problems or not monitoring:
        return fail(passed, "; ".join(problems) or "no monitoring objects in deploy/monitoring")
    passed += 1

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
