#!/usr/bin/env python3
"""Writes a synthetic cluster snapshot shaped like `kubectl get nodes,pods,pdb,namespaces
-A -o yaml` (block style, items at column 0, `kind: List` after the items) for measuring
the snapshot loader: NODES nodes with 30 pods each (ReplicaSet-owned, with annotations,
managed fields, two containers and a status, as the API server returns them).

    python3 scripts/gen-snapshot.py NODES > cluster.yaml
    python3 scripts/gen-snapshot.py NODES --json > cluster.json
"""
import json
import sys


def node(i):
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f"node-{i}", "labels": {"pool": "colocated", "kubernetes.io/hostname": f"node-{i}"},
                     "uid": f"00000000-0000-0000-0000-{i:012}", "resourceVersion": "1"},
        "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                   "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                   "conditions": [{"type": "MemoryPressure", "status": "False"},
                                  {"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
    }


def pod(i, n):
    team = f"team-{i % 20}"
    app = f"app-{i % 500}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{app}-7f9c8d6b5-{i:07d}", "namespace": team,
            "uid": f"5f0c3a2e-1b7d-4c9a-9e3f-{i:012}",
            "creationTimestamp": "2026-11-26T08:00:00Z", "resourceVersion": "123456789",
            "generateName": f"{app}-7f9c8d6b5-",
            "labels": {"app": app, "fulcrum.dev/class": ["online", "batch", "ai"][i % 3],
                       "pod-template-hash": "7f9c8d6b5"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7f9c8d6b5",
                                 "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-26T08:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
        },
        "spec": {
            "nodeName": f"node-{n}", "priority": 0, "schedulerName": "default-scheduler",
            "containers": [
                {"name": "main", "image": f"registry.example/{app}:1.0", "args": ["--port", "8080"],
                 "env": [{"name": "A", "value": "1"}],
                 "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}},
                {"name": "sidecar", "image": "registry.example/proxy:1.2",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
            ],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": [{"name": "conf", "configMap": {"name": "conf"}}],
        },
        "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "192.168.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if s == "" or s.lower() in ("true", "false", "null", "yes", "no", "on", "off", "~") or s[0] in "-0123456789{[&*!|>'\"%@`" or ": " in s:
        return json.dumps(s)
    return s


def emit(v, indent, out, first_prefix=None):
    """Block-style YAML as kubectl prints it (sequences not indented under their key)."""
    pad = " " * indent
    if isinstance(v, dict):
        if not v:
            out.append((first_prefix or pad) + "{}\n")
            return
        for j, (k, val) in enumerate(sorted(v.items())):
            prefix = first_prefix if (j == 0 and first_prefix is not None) else pad
            if isinstance(val, dict) and val:
                out.append(f"{prefix}{yaml_key(k)}:\n")
                emit(val, indent + 2, out)
            elif isinstance(val, list) and val:
                out.append(f"{prefix}{yaml_key(k)}:\n")
                emit(val, indent, out)
            elif isinstance(val, dict):
                out.append(f"{prefix}{yaml_key(k)}: {{}}\n")
            elif isinstance(val, list):
                out.append(f"{prefix}{yaml_key(k)}: []\n")
            else:
                out.append(f"{prefix}{yaml_key(k)}: {yaml_scalar(val)}\n")
    elif isinstance(v, list):
        for item in v:
            if isinstance(item, dict):
                emit(item, indent + 2, out, first_prefix=pad + "- ")
            else:
                out.append(f"{pad}- {yaml_scalar(item)}\n")


def yaml_key(k):
    return json.dumps(k) if k[0] in "." else k


def main():
    nodes = int(sys.argv[1])
    as_json = "--json" in sys.argv[2:]
    w = sys.stdout.write
    items = [node(i) for i in range(nodes)]
    if as_json:
        w('{\n    "apiVersion": "v1",\n    "items": [\n')
        first = True
        for i in range(nodes):
            w(("" if first else ",\n") + json.dumps(node(i), indent=4))
            first = False
        for p in range(nodes * 30):
            w(",\n" + json.dumps(pod(p, p % nodes), indent=4))
        w('\n    ],\n    "kind": "List",\n    "metadata": {"resourceVersion": ""}\n}\n')
        return
    w("apiVersion: v1\nitems:\n")
    for it in items:
        out = []
        emit(it, 2, out, first_prefix="- ")
        w("".join(out))
    for p in range(nodes * 30):
        out = []
        emit(pod(p, p % nodes), 2, out, first_prefix="- ")
        w("".join(out))
    w('kind: List\nmetadata:\n  resourceVersion: ""\n')


if __name__ == "__main__":
    main()
