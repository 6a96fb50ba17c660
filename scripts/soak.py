"""Soak driver for scripts/soak.sh (not part of CI).

Writes a cluster snapshot (NODES nodes, PODS_PER_NODE pods each) and a policy, creates the
topics, then produces samples at RATE samples/s for DURATION seconds: one batch message per
node per tick, event time = wall clock, so `fulcrum run` sees a live feed. Every INTERVAL
seconds it prints one line: samples produced per second, samples consumed per second
(committed offsets of the consumer group), consumer lag (messages and seconds of input) and
the fulcrum process's resident memory (VmRSS). At the end it prints a summary with the
first-minute and last-minute averages, so "flat" can be read off.

Usage: soak.py prepare DIR BROKERS TOPIC PARTITIONS
       soak.py drive DIR BROKERS TOPIC GROUP FULCRUM_PID RATE DURATION INTERVAL
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

NODES = int(os.environ.get("SOAK_NODES", "200"))
PODS_PER_NODE = 8
CLASSES = ["online", "online", "batch", "batch", "batch", "ai", "other", "other"]


def pods_of(n):
    return [(f"ns{k % 4}", f"pod-{n}-{k}", CLASSES[k]) for k in range(PODS_PER_NODE)]


def prepare(directory, brokers, topic, partitions):
    items = []
    for n in range(NODES):
        items.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{n}", "labels": {"pool": "colocated"}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        })
        for ns, name, cls in pods_of(n):
            items.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                             "creationTimestamp": "2025-01-01T00:00:00Z",
                             "labels": {"fulcrum.dev/class": cls},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                  "name": f"rs-{name}", "uid": "rs",
                                                  "controller": True}]},
                "spec": {"nodeName": f"node-{n}",
                         "containers": [{"name": "main",
                                         "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
                "status": {"phase": "Running"},
            })
    with open(os.path.join(directory, "cluster.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
    with open(os.path.join(directory, "policy.yaml"), "w") as f:
        f.write("""apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: soak}
spec:
  mode: Enforce
  nodeSelector: {matchLabels: {pool: colocated}}
  victims: {podSelector: {matchLabels: {fulcrum.dev/class: online}}}
  candidates:
    - {name: big-data, podSelector: {matchLabels: {fulcrum.dev/class: batch}}, action: Migrate}
    - {name: ai, podSelector: {matchLabels: {fulcrum.dev/class: ai}}, action: Evict}
  triggers:
    - {name: p99-slo, metric: latency_p99_ms, above: 250, sustainedFor: 30s}
    - {name: membw, scope: Node, metric: mem_bw_util, above: 0.9, sustainedFor: 1m}
  attribution:
    method: Correlation
    metrics: [mem_bw_bytes_per_sec, cpu_usage_cores, llc_miss_rate]
    window: 5m
  limits:
    maxActionsPerNode: {count: 1, window: 10m}
    maxActionsTotal: {count: 50, window: 1h}
""")
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([
        NewTopic(topic, num_partitions=partitions, replication_factor=1),
        NewTopic(topic + ".dlq", num_partitions=1, replication_factor=1),
        NewTopic("fulcrum.decisions", num_partitions=1, replication_factor=1),
    ], operation_timeout=10)
    for name, future in futures.items():
        future.result()


def batch(n, ts, tick):
    """One node's batch: every pod plus a node-level sample. Node 0 has interference in
    every fifth minute, so detections and (limited) decisions happen throughout."""
    hot = n == 0 and (ts // 60_000) % 5 == 4
    parts = []
    for k, (ns, name, cls) in enumerate(pods_of(n)):
        r = ((tick * 7 + k * 13 + n * 3) % 17) / 17.0
        if cls == "online":
            m = f'"latency_p99_ms":{(400 if hot else 120) + 30 * r:.2f},"cpi":{1 + r / 5:.3f}'
        else:
            bw = (9e9 if hot and k == 2 else 2e9) * (1 + r)
            m = f'"mem_bw_bytes_per_sec":{bw:.0f},"cpu_usage_cores":{2 + r:.2f},"llc_miss_rate":{0.2 + r / 10:.3f}'
        parts.append(f'{{"ts":{ts},"node":"node-{n}","pod":{{"namespace":"{ns}","name":"{name}",'
                     f'"uid":"uid-{name}"}},"container":"main","metrics":{{{m}}}}}')
    parts.append(f'{{"ts":{ts},"node":"node-{n}","metrics":{{"mem_bw_util":{0.95 if hot else 0.4}}}}}')
    return '{"schema":"fulcrum.metrics/v1","samples":[' + ",".join(parts) + "]}"


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return -1
    return -1


def drive(directory, brokers, topic, group, pid, rate, duration, interval):
    per_message = PODS_PER_NODE + 1
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000})
    probe = Consumer({"bootstrap.servers": brokers, "group.id": group,
                      "enable.auto.commit": False})
    meta = probe.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
    messages_per_s = rate / per_message
    start = time.time()
    sent = 0
    rows = []
    next_report = start + interval
    last = (start, 0, 0)
    tick = 0
    print(f"soak: {NODES} nodes x {PODS_PER_NODE} pods, target {rate} samples/s "
          f"({messages_per_s:.0f} messages/s of {per_message} samples), {duration} s", flush=True)
    print(f"{'t_s':>5} {'produced/s':>11} {'consumed/s':>11} {'lag_msgs':>9} {'lag_s':>6} {'rss_mib':>8}",
          flush=True)
    while True:
        now = time.time()
        if now - start >= duration:
            break
        due = int((now - start) * messages_per_s)
        while sent < due:
            n = sent % NODES
            if n == 0:
                tick += 1
            ts = int(time.time() * 1000)
            value = batch(n, ts, tick)
            while True:
                try:
                    producer.produce(topic, key=f"node-{n}", value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        producer.poll(0)
        if now >= next_report:
            committed = sum(max(tp.offset, 0) for tp in probe.committed(partitions, timeout=10))
            end = sum(probe.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions)
            t, s0, c0 = last
            produced_rate = (sent - s0) * per_message / (now - t)
            consumed_rate = (committed - c0) * per_message / (now - t)
            lag = end - committed
            lag_s = lag / messages_per_s if messages_per_s else 0
            rss = rss_kib(pid) / 1024
            rows.append((now - start, produced_rate, consumed_rate, lag, lag_s, rss))
            print(f"{now - start:5.0f} {produced_rate:11.0f} {consumed_rate:11.0f} {lag:9d} {lag_s:6.1f} {rss:8.1f}",
                  flush=True)
            last = (now, sent, committed)
            next_report += interval
        time.sleep(0.005)
    producer.flush(30)
    k = max(1, int(60 / interval))
    if len(rows) >= 3 * k:
        # The first minute is warm-up (offsets are committed only once the watermark,
        # lateness behind the newest sample, passes them): compare the second with the last.
        first, final = rows[k:2 * k], rows[-k:]

        def avg(rs, i):
            return sum(r[i] for r in rs) / len(rs)

        print(f"summary: produced {sent * per_message} samples in {duration} s "
              f"({sent * per_message / duration:.0f}/s)")
        print(f"summary: second minute consumed {avg(first, 2):.0f}/s lag {avg(first, 3):.0f} msgs "
              f"({avg(first, 4):.1f} s) rss {avg(first, 5):.1f} MiB")
        print(f"summary: last minute   consumed {avg(final, 2):.0f}/s lag {avg(final, 3):.0f} msgs "
              f"({avg(final, 4):.1f} s) rss {avg(final, 5):.1f} MiB")
        print(f"summary: after warm-up rss min {min(r[5] for r in rows[k:]):.1f} "
              f"max {max(r[5] for r in rows[k:]):.1f} MiB; lag max {max(r[3] for r in rows[k:])} msgs")
    probe.close()


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        d, b, t, g, pid, rate, dur, iv = sys.argv[2:10]
        drive(d, b, t, g, int(pid), float(rate), float(dur), float(iv))
