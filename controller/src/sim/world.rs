//! The simulated co-located cluster: nodes, pods of the three classes with owners and
//! requests, per-tick demands, the samples an agent would send, and what evictions and
//! migrations do to it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::model::{
    Capacity, Demand, Pressure, llc_miss_rate, online_cpi, online_p99_ms, pressure,
};
use super::scheduler::{STEER_TAINT, place};
use fulcrum_engine::cluster::{LabelMap, NodeInfo, Owner, PodInfo, Resources, Taint, Toleration};
use fulcrum_engine::sample::SCHEMA;

/// The taint on GPU nodes; only GPU pods tolerate it.
pub const GPU_TAINT: &str = "nvidia.com/gpu";

/// Deterministic noise in [0, 1) for (seed, stream, tick).
pub fn noise(seed: u64, stream: u64, tick: u64) -> f64 {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(tick.wrapping_mul(0x1656_67B1_9E37_79F9));
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The workload class of a simulated pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Latency-critical service (victim).
    Online,
    /// Big-data executor (candidate, migrated).
    Batch,
    /// AI training (candidate, evicted).
    Ai,
}

impl Class {
    /// The `fulcrum.dev/class` label value.
    pub fn label(self) -> &'static str {
        match self {
            Class::Online => "online",
            Class::Batch => "batch",
            Class::Ai => "ai",
        }
    }
}

/// How a pod uses shared resources over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// An online service with this base p99 (ms) and SLO (ms).
    Service {
        /// Base latency.
        base_ms: f64,
        /// SLO threshold.
        slo_ms: f64,
    },
    /// Steady usage around these means.
    Steady {
        /// Mean cores.
        cpu: f64,
        /// Mean memory bandwidth.
        mem_bw: f64,
        /// Mean PCIe share.
        pcie: f64,
        /// Relative noise amplitude.
        jitter: f64,
    },
    /// A Spark-like executor that bursts memory bandwidth from `onset` on.
    MemoryHog {
        /// First tick of the burst phase.
        onset: u64,
    },
    /// An AI job that saturates PCIe from `onset` on.
    PcieHog {
        /// First tick of the saturating phase.
        onset: u64,
    },
}

/// A simulated pod.
#[derive(Clone, Debug)]
pub struct SimPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Index of its node.
    pub node: usize,
    /// Class (label).
    pub class: Class,
    /// Owning workload name (a Deployment, StatefulSet or Job), `None` for a bare pod.
    pub owner: Option<(String, String)>,
    /// Annotated `fulcrum.dev/protect: "true"`.
    pub protected: bool,
    /// Requests.
    pub requests: Resources,
    /// Needs a GPU node.
    pub needs_gpu: bool,
    /// Usage over time.
    pub behaviour: Behaviour,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Noise stream.
    pub stream: u64,
}

/// A simulated node.
#[derive(Clone, Debug)]
pub struct SimNode {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: LabelMap,
    /// Shared-resource capacity.
    pub capacity: Capacity,
    /// Allocatable for scheduling.
    pub allocatable: Resources,
    /// The steering taint is in place until this tick (exclusive).
    pub steer_until: Option<u64>,
}

/// One online pod's latency in one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineReading {
    /// Node index.
    pub node: usize,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// The pod's SLO, ms.
    pub slo_ms: f64,
}

/// The simulated cluster.
#[derive(Clone, Debug)]
pub struct World {
    /// Nodes.
    pub nodes: Vec<SimNode>,
    /// Live pods.
    pub pods: Vec<SimPod>,
    /// Namespace labels.
    pub namespaces: BTreeMap<String, LabelMap>,
    /// Event time of tick 0 (ms).
    pub t0_ms: i64,
    /// Tick length (ms).
    pub period_ms: i64,
    /// Noise seed.
    pub seed: u64,
    next_stream: u64,
}

impl World {
    /// An empty world.
    pub fn new(seed: u64, t0_ms: i64, period_ms: i64) -> Self {
        Self {
            nodes: Vec::new(),
            pods: Vec::new(),
            namespaces: BTreeMap::new(),
            t0_ms,
            period_ms,
            seed,
            next_stream: 1,
        }
    }

    /// Event time of `tick`.
    pub fn ts(&self, tick: u64) -> i64 {
        self.t0_ms + tick as i64 * self.period_ms
    }

    /// Adds a node.
    pub fn add_node(&mut self, name: &str, labels: &[(&str, &str)], capacity: Capacity) -> usize {
        self.nodes.push(SimNode {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capacity,
            allocatable: Resources {
                cpu_millis: (capacity.cores * 1000.0) as i64,
                memory_bytes: 256 << 30,
                gpus: 0,
            },
            steer_until: None,
        });
        self.nodes.len() - 1
    }

    /// Adds a pod owned by `owner` (kind, name).
    #[allow(clippy::too_many_arguments)]
    pub fn add_pod(
        &mut self,
        namespace: &str,
        name: &str,
        node: usize,
        class: Class,
        owner: (&str, &str),
        cpu_request: f64,
        behaviour: Behaviour,
    ) -> usize {
        let stream = self.next_stream;
        self.next_stream += 1;
        self.pods.push(SimPod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: format!("sim-{stream:06}"),
            node,
            class,
            owner: Some((owner.0.to_owned(), owner.1.to_owned())),
            protected: false,
            requests: Resources {
                cpu_millis: (cpu_request * 1000.0) as i64,
                memory_bytes: 4 << 30,
                gpus: 0,
            },
            needs_gpu: class == Class::Ai || self.nodes[node].labels.contains_key("accelerator"),
            behaviour,
            created_ms: self.t0_ms - 3_600_000,
            stream,
        });
        self.pods.len() - 1
    }

    fn demand(&self, pod: &SimPod, tick: u64) -> Demand {
        let r = noise(self.seed, pod.stream, tick);
        // Smoothed noise for bursts: irregular, but not white.
        let wave = |tick: u64| {
            (noise(self.seed, pod.stream ^ 0xABCD, tick)
                + noise(self.seed, pod.stream ^ 0xABCD, tick + 1)
                + noise(self.seed, pod.stream ^ 0xABCD, tick.saturating_sub(1)))
                / 3.0
        };
        match pod.behaviour {
            Behaviour::Service { .. } => Demand {
                cpu: 1.2 + 0.4 * r,
                mem_bw: 1.0e9 + 0.5e9 * r,
                pcie: if pod.needs_gpu { 0.05 } else { 0.0 },
                gpu: if pod.needs_gpu { 0.3 } else { 0.0 },
            },
            Behaviour::Steady {
                cpu,
                mem_bw,
                pcie,
                jitter,
            } => Demand {
                cpu: cpu * (1.0 + jitter * (r - 0.5)),
                mem_bw: mem_bw * (1.0 + jitter * (noise(self.seed, pod.stream + 7, tick) - 0.5)),
                pcie: pcie * (1.0 + jitter * (r - 0.5)),
                gpu: if pcie > 0.0 { 0.85 + 0.1 * r } else { 0.0 },
            },
            Behaviour::MemoryHog { onset } => {
                if tick >= onset {
                    let w = wave(tick);
                    Demand {
                        cpu: 3.0 + 3.0 * w,
                        mem_bw: 12.0e9 + 14.0e9 * w,
                        pcie: 0.0,
                        gpu: 0.0,
                    }
                } else {
                    Demand {
                        cpu: 3.0 + r,
                        mem_bw: 2.5e9 + 1.0e9 * r,
                        pcie: 0.0,
                        gpu: 0.0,
                    }
                }
            }
            Behaviour::PcieHog { onset } => {
                if tick >= onset {
                    let w = wave(tick);
                    Demand {
                        cpu: 4.0 + w,
                        mem_bw: 2.0e9,
                        pcie: 0.7 + 0.3 * w,
                        gpu: 0.95,
                    }
                } else {
                    Demand {
                        cpu: 4.0 + r,
                        mem_bw: 2.0e9,
                        pcie: 0.15 + 0.05 * r,
                        gpu: 0.85,
                    }
                }
            }
        }
    }

    /// Advances to `tick`: returns one message per node (key, JSON batch) and the online
    /// pods' latencies.
    pub fn step(&self, tick: u64) -> (Vec<(String, String)>, Vec<OnlineReading>) {
        let ts = self.ts(tick);
        let demands: Vec<Demand> = self.pods.iter().map(|p| self.demand(p, tick)).collect();
        let mut messages = Vec::with_capacity(self.nodes.len());
        let mut readings = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let on_node: Vec<usize> = (0..self.pods.len())
                .filter(|&i| self.pods[i].node == n)
                .collect();
            let p: Pressure = pressure(node.capacity, on_node.iter().map(|&i| demands[i]));
            let mut samples = Vec::with_capacity(on_node.len() + 1);
            for &i in &on_node {
                let pod = &self.pods[i];
                let d = demands[i];
                let r = noise(self.seed, pod.stream + 13, tick);
                let mut metrics = json!({
                    "cpu_usage_cores": round(d.cpu, 3),
                    "mem_bw_bytes_per_sec": round(d.mem_bw, 0),
                    "llc_miss_rate": round(llc_miss_rate(d.mem_bw, p), 4),
                });
                if let Behaviour::Service { base_ms, slo_ms } = pod.behaviour {
                    let p99 = online_p99_ms(base_ms, p, pod.needs_gpu, r);
                    readings.push(OnlineReading {
                        node: n,
                        p99_ms: p99,
                        slo_ms,
                    });
                    metrics["latency_p99_ms"] = json!(round(p99, 2));
                    metrics["cpi"] = json!(round(online_cpi(p, r), 4));
                    metrics["qps"] = json!(round(800.0 + 100.0 * r, 1));
                }
                if d.gpu > 0.0 {
                    metrics["gpu_util"] = json!(round(d.gpu, 3));
                    metrics["gpu_mem_bw_util"] = json!(round(0.6 * d.gpu, 3));
                    metrics["pcie_bw_util"] = json!(round(d.pcie, 3));
                }
                samples.push(json!({
                    "ts": ts, "node": node.name,
                    "pod": {"namespace": pod.namespace, "name": pod.name, "uid": pod.uid},
                    "container": "main", "metrics": metrics,
                }));
            }
            let mut node_metrics = json!({
                "cpu_util": round(p.cpu.min(1.0), 3),
                "mem_bw_util": round(p.mem_bw.min(1.0), 3),
            });
            if node.capacity.pcie > 0.0 {
                node_metrics["pcie_bw_util"] = json!(round(p.pcie.min(1.0), 3));
            }
            samples.push(json!({"ts": ts, "node": node.name, "metrics": node_metrics}));
            let value: Value = json!({"schema": SCHEMA, "samples": samples});
            messages.push((node.name.clone(), value.to_string()));
        }
        (messages, readings)
    }

    /// The pod called `namespace/name`.
    pub fn pod_index(&self, key: &str) -> Option<usize> {
        self.pods
            .iter()
            .position(|p| format!("{}/{}", p.namespace, p.name) == key)
    }

    /// Removes a pod (an eviction) and, when a controller owns it, creates its replacement
    /// where the scheduler puts it. With `steer`, the source node is tainted
    /// `fulcrum.dev/steer-away:PreferNoSchedule` for `steer_ticks`. Returns the replacement.
    pub fn evict(
        &mut self,
        key: &str,
        tick: u64,
        steer: bool,
        steer_ticks: u64,
    ) -> Option<(SimPod, Option<SimPod>)> {
        let i = self.pod_index(key)?;
        let gone = self.pods.remove(i);
        if steer {
            self.nodes[gone.node].steer_until = Some(tick + steer_ticks);
        }
        for n in &mut self.nodes {
            if n.steer_until.is_some_and(|until| tick >= until) {
                n.steer_until = None;
            }
        }
        let replacement = gone.owner.clone().and_then(|owner| {
            let node = place(self, &gone, tick)?;
            let stream = self.next_stream;
            self.next_stream += 1;
            let pod = SimPod {
                name: format!("{}-r{stream}", owner.1),
                uid: format!("sim-{stream:06}"),
                node,
                created_ms: self.ts(tick),
                stream,
                ..gone.clone()
            };
            self.pods.push(pod.clone());
            Some(pod)
        });
        Some((gone, replacement))
    }

    /// The cluster view of a node, as a watch would report it.
    pub fn node_info(&self, n: usize, tick: u64) -> NodeInfo {
        let node = &self.nodes[n];
        let mut taints: Vec<Taint> = node
            .steer_until
            .filter(|&until| tick < until)
            .map(|_| Taint {
                key: STEER_TAINT.to_owned(),
                value: "true".to_owned(),
                effect: "PreferNoSchedule".to_owned(),
            })
            .into_iter()
            .collect();
        // GPU nodes keep other pods away, as GPU pools usually do.
        if node.labels.contains_key("accelerator") {
            taints.push(Taint {
                key: GPU_TAINT.to_owned(),
                value: "present".to_owned(),
                effect: "NoSchedule".to_owned(),
            });
        }
        NodeInfo {
            name: node.name.clone(),
            labels: node.labels.clone(),
            allocatable: node.allocatable,
            taints,
            unschedulable: false,
            ready: true,
        }
    }

    /// The cluster view of a pod, as a watch would report it.
    pub fn pod_info(&self, pod: &SimPod) -> PodInfo {
        let mut labels: LabelMap =
            [("fulcrum.dev/class".to_owned(), pod.class.label().to_owned())].into();
        labels.insert(
            "app".to_owned(),
            pod.owner.as_ref().map_or(pod.name.clone(), |o| o.1.clone()),
        );
        let owner = pod.owner.as_ref().map(|(kind, name)| Owner {
            kind: kind.as_str().into(),
            name: name.as_str().into(),
        });
        PodInfo {
            namespace: pod.namespace.as_str().into(),
            name: pod.name.as_str().into(),
            uid: pod.uid.as_str().into(),
            node_name: Some(self.nodes[pod.node].name.as_str().into()),
            workload: crate::cluster::convert::workload_of(
                &pod.namespace,
                &pod.name,
                owner.as_ref(),
                &labels,
            )
            .into(),
            owner,
            labels: labels.into(),
            priority: 0,
            protected: pod.protected,
            mirror: false,
            local_storage: false,
            created_ms: Some(pod.created_ms),
            terminating: false,
            running: true,
            finished: false,
            requests: pod.requests,
            node_selector: if pod.needs_gpu {
                LabelMap::from([("accelerator".to_owned(), "nvidia".to_owned())]).into()
            } else {
                LabelMap::new().into()
            },
            required_affinity: Vec::new(),
            tolerations: if pod.needs_gpu {
                vec![Toleration {
                    key: GPU_TAINT.to_owned(),
                    operator: "Exists".to_owned(),
                    value: String::new(),
                    effect: String::new(),
                }]
                .into()
            } else {
                Vec::new().into()
            },
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
