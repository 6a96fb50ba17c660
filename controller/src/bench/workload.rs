//! The benchmark's generated world: a co-located cluster (online, batch and AI pods on every
//! node, a GPU node in five), the three shipped example policies, and a deterministic stream
//! of 8-metric samples every 10 s with interference episodes on a chosen share of nodes.

use std::borrow::Cow;

use fulcrum_engine::cluster::{LabelMap, NodeInfo, Owner, PodInfo, Resources};
use fulcrum_engine::sample::{Metric, PodRef, Sample};
use fulcrum_engine::{ClusterIndex, Engine, EngineConfig};
use fulcrum_policies::InterferencePolicy;
use smallvec::SmallVec;

/// The policies every benchmark runs: the shipped examples (mixed victim and node triggers,
/// static thresholds and learned baselines, Correlation attribution).
pub const POLICIES: [&str; 3] = [
    include_str!("../../../deploy/examples/online-vs-bigdata-migrate.yaml"),
    include_str!("../../../deploy/examples/online-vs-ai-evict.yaml"),
    include_str!("../../../deploy/examples/node-membw-saturation.yaml"),
];

/// Pods on every node.
pub const PODS_PER_NODE: usize = 30;
/// Sample period.
pub const PERIOD_MS: i64 = 10_000;
/// Event time of the first tick (2026-11-27T00:00:00Z).
pub const T0_MS: i64 = 1_764_201_600_000;

/// One pod's part in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Online,
    Batch,
    Ai,
}

impl Class {
    fn of(slot: usize) -> Self {
        match slot % PODS_PER_NODE {
            0..=9 => Class::Online,
            10..=24 => Class::Batch,
            _ => Class::Ai,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Online => "online",
            Class::Batch => "batch",
            Class::Ai => "ai",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Class::Online => "shop",
            Class::Batch => "spark",
            Class::Ai => "ml",
        }
    }
}

/// The generated cluster, and names the sample stream borrows.
pub struct Workload {
    /// Nodes.
    pub nodes: usize,
    node_names: Vec<String>,
    pod_names: Vec<String>,
    /// Share of nodes with an interference episode (0..1).
    pub interfering: f64,
}

impl Workload {
    /// A cluster of `nodes` nodes, `interfering` of them with an antagonist from minute 2.
    pub fn new(nodes: usize, interfering: f64) -> Self {
        let node_names = (0..nodes).map(|n| format!("node-{n:05}")).collect();
        let pod_names = (0..nodes * PODS_PER_NODE)
            .map(|p| {
                let class = Class::of(p);
                format!(
                    "{}-{:05}-{:02}",
                    class.label(),
                    p / PODS_PER_NODE,
                    p % PODS_PER_NODE
                )
            })
            .collect();
        Self {
            nodes,
            node_names,
            pod_names,
            interfering,
        }
    }

    /// Pods in the cluster.
    pub fn pods(&self) -> usize {
        self.nodes * PODS_PER_NODE
    }

    /// The policies, decoded.
    pub fn policies() -> Vec<InterferencePolicy> {
        POLICIES
            .iter()
            .filter_map(|text| {
                let value: serde_json::Value = serde_yaml_ng::from_str(text).ok()?;
                fulcrum_policies::document::check_document(&value).ok()
            })
            .collect()
    }

    /// The cluster index (the engine's view).
    pub fn cluster(&self) -> ClusterIndex {
        let mut index = ClusterIndex::new();
        for (ns, labels) in Self::namespaces() {
            index.upsert_namespace(ns, labels);
        }
        for node in self.node_infos() {
            index.upsert_node(node);
        }
        for pod in self.pod_infos() {
            index.upsert_pod(pod);
        }
        index
    }

    /// The namespaces and their labels.
    pub fn namespaces() -> [(&'static str, LabelMap); 3] {
        ["shop", "spark", "ml"].map(|ns| {
            let tier = if ns == "shop" { "frontend" } else { "batch" };
            (ns, labels(&[("tier", tier)]))
        })
    }

    /// The nodes, one at a time.
    pub fn node_infos(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.node_names.iter().enumerate().map(|(n, name)| {
            let mut node_labels = labels(&[("pool", "colocated")]);
            if n % 5 == 0 {
                node_labels.insert("accelerator".into(), "nvidia".into());
            }
            NodeInfo {
                name: name.clone(),
                labels: node_labels,
                allocatable: Resources {
                    cpu_millis: 64_000,
                    memory_bytes: 256 << 30,
                    ..Resources::default()
                },
                ready: true,
                ..NodeInfo::default()
            }
        })
    }

    /// The pods, one at a time.
    pub fn pod_infos(&self) -> impl Iterator<Item = PodInfo> + '_ {
        self.pod_names
            .iter()
            .enumerate()
            .map(|(p, name)| self.pod_info(p, name))
    }

    fn pod_info(&self, p: usize, name: &str) -> PodInfo {
        let class = Class::of(p);
        let owner = format!("{}-{:05}-7d9f8", class.label(), p / PODS_PER_NODE);
        PodInfo {
            namespace: class.namespace().into(),
            name: name.into(),
            uid: format!("00000000-0000-4000-8000-{p:012}").into(),
            node_name: Some(self.node_names[p / PODS_PER_NODE].as_str().into()),
            labels: labels(&[("fulcrum.dev/class", class.label())]).into(),
            workload: format!("{}/ReplicaSet/{owner}", class.namespace()).into(),
            owner: Some(Owner {
                kind: "ReplicaSet".into(),
                name: owner.into(),
            }),
            created_ms: Some(T0_MS - 86_400_000),
            running: true,
            requests: Resources {
                cpu_millis: 1_000,
                memory_bytes: 2 << 30,
                ..Resources::default()
            },
            ..PodInfo::default()
        }
    }

    /// An engine with the cluster and the policies loaded.
    pub fn engine(&self, config: EngineConfig) -> Engine {
        let mut engine = Engine::new(config);
        engine.load_cluster(self.cluster());
        engine.set_policies(&Self::policies());
        engine
    }

    /// True when `node` has an antagonist at `tick` (from minute 2 on).
    fn interferes(&self, node: usize, tick: u64) -> bool {
        tick >= 12 && (node as f64) < self.interfering * self.nodes as f64
    }

    /// The offset of `node`'s samples in each period: agents are not synchronised, so
    /// the nodes' sampling instants are spread evenly over the period.
    fn phase(&self, node: usize) -> i64 {
        (node as i64 * PERIOD_MS) / self.nodes.max(1) as i64
    }

    /// Appends the samples of `tick` (one per pod, one per node), node by node in time
    /// order, to `out`: the samples of one node are `out[i * (PODS_PER_NODE + 1)..]`.
    pub fn tick<'a>(&'a self, tick: u64, out: &mut Vec<Sample<'a>>) {
        for node in 0..self.nodes {
            let ts = T0_MS + tick as i64 * PERIOD_MS + self.phase(node);
            let hot = self.interferes(node, tick);
            let node_name = Cow::Borrowed(self.node_names[node].as_str());
            for slot in 0..PODS_PER_NODE {
                let p = node * PODS_PER_NODE + slot;
                out.push(Sample {
                    ts_ms: ts + (p % 7) as i64 * 13,
                    node: node_name.clone(),
                    pod: Some(PodRef {
                        namespace: Cow::Borrowed(Class::of(p).namespace()),
                        name: Cow::Borrowed(self.pod_names[p].as_str()),
                        uid: None,
                    }),
                    container: None,
                    metrics: pod_metrics(p, tick, hot),
                });
            }
            out.push(Sample {
                ts_ms: ts,
                node: node_name,
                pod: None,
                container: None,
                metrics: node_metrics(node, tick, hot),
            });
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelMap {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Deterministic noise in [0, 1).
fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn metric<'a>(name: &'static str, value: f64) -> Metric<'a> {
    Metric {
        name: Cow::Borrowed(name),
        value,
    }
}

fn pod_metrics<'a>(p: usize, tick: u64, hot: bool) -> SmallVec<[Metric<'a>; 8]> {
    let class = Class::of(p);
    let n = noise(p as u64, tick);
    // The antagonist (first batch pod of a hot node) ramps its memory bandwidth; online
    // pods on that node degrade with it.
    let antagonist = hot && p % PODS_PER_NODE == 10;
    let ramp = if antagonist {
        1.0 + (tick % 30) as f64 / 3.0
    } else {
        1.0
    };
    let degraded = hot && class == Class::Online;
    let latency = if degraded {
        300.0 + 40.0 * n
    } else {
        40.0 + 10.0 * n
    };
    let mut m = SmallVec::new();
    m.push(metric("cpu_usage_cores", 0.5 + n));
    m.push(metric(
        "cpi",
        if degraded {
            1.6 + 0.2 * n
        } else {
            0.9 + 0.05 * n
        },
    ));
    m.push(metric("mem_bw_bytes_per_sec", 1e9 * ramp * (1.0 + n)));
    m.push(metric("llc_miss_rate", 0.1 + 0.1 * n));
    m.push(metric("latency_p99_ms", latency));
    m.push(metric("qps", 100.0 + 50.0 * n));
    m.push(metric(
        "pcie_bw_util",
        if class == Class::Ai {
            0.3 + 0.2 * n
        } else {
            0.01
        },
    ));
    m.push(metric(
        "gpu_mem_bw_util",
        if class == Class::Ai {
            0.4 + 0.2 * n
        } else {
            0.0
        },
    ));
    m
}

fn node_metrics<'a>(node: usize, tick: u64, hot: bool) -> SmallVec<[Metric<'a>; 8]> {
    let n = noise(node as u64 + 1_000_000, tick);
    let mut m = SmallVec::new();
    m.push(metric("cpu_util", 0.5 + 0.2 * n));
    m.push(metric(
        "mem_bw_util",
        if hot { 0.93 + 0.05 * n } else { 0.4 + 0.2 * n },
    ));
    m.push(metric("mem_usage_bytes", 1e11 * (1.0 + n)));
    m.push(metric("psi_cpu_some", 0.05 * n));
    m.push(metric("psi_mem_some", 0.02 * n));
    m.push(metric("psi_io_some", 0.01 * n));
    m.push(metric("disk_io_util", 0.2 * n));
    m.push(metric("net_rx_bytes_per_sec", 1e8 * n));
    m
}
