//! The demo scenario: a co-located cluster with online services, big-data executors, AI
//! training, busy but harmless decoys and a protected pod; memory-bandwidth antagonists
//! and a PCIe antagonist switch on at staggered times. Deterministic for a seed.

use super::model::Capacity;
use super::world::{Behaviour, Class, World};

/// Size and timing of the demo.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// Noise seed.
    pub seed: u64,
    /// Busy CPU nodes (4 online services, 3 executors, 1 decoy each).
    pub busy_nodes: usize,
    /// Lightly loaded CPU nodes (where migrated executors can land).
    pub spare_nodes: usize,
    /// GPU nodes with inference services and training (one more GPU node is spare).
    pub gpu_nodes: usize,
    /// Ticks of event time.
    pub ticks: u64,
    /// Tick length (ms).
    pub period_ms: i64,
}

impl DemoConfig {
    /// The full demo: 33 nodes, 206 pods at start, 30 minutes of event time.
    pub fn full(seed: u64) -> Self {
        Self {
            seed,
            busy_nodes: 22,
            spare_nodes: 6,
            gpu_nodes: 4,
            ticks: 180,
            period_ms: 10_000,
        }
    }

    /// A small demo for tests: 7 nodes, 15 minutes.
    pub fn small(seed: u64) -> Self {
        Self {
            seed,
            busy_nodes: 3,
            spare_nodes: 2,
            gpu_nodes: 1,
            ticks: 90,
            period_ms: 10_000,
        }
    }
}

/// An injected interference: who, where, from when.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    /// The antagonist, `namespace/name`.
    pub antagonist: String,
    /// Its node.
    pub node: String,
    /// First tick of the interference.
    pub onset: u64,
    /// What it saturates.
    pub resource: &'static str,
}

/// The pod that is annotated `fulcrum.dev/protect: "true"`.
pub const PROTECTED_POD: &str = "spark/checkpointer-0";

/// The namespaces of the demo and their labels.
const NAMESPACES: [(&str, &[(&str, &str)]); 5] = [
    ("shop", &[("tier", "frontend")]),
    ("inference", &[("tier", "api")]),
    ("spark", &[]),
    ("etl", &[]),
    ("ml", &[]),
];

/// A busy or spare CPU node.
const CPU: Capacity = Capacity {
    cores: 32.0,
    mem_bw: 38.0e9,
    pcie: 0.0,
};

/// A spare CPU node: a newer generation with more memory channels.
const SPARE_CPU: Capacity = Capacity {
    mem_bw: 60.0e9,
    ..CPU
};

/// A GPU node.
const GPU: Capacity = Capacity {
    cores: 48.0,
    mem_bw: 50.0e9,
    pcie: 1.0,
};

/// An online web service on a CPU node.
const WEB: Behaviour = Behaviour::Service {
    base_ms: 60.0,
    slo_ms: 250.0,
};

/// An online inference service on a GPU node.
const INFERENCE: Behaviour = Behaviour::Service {
    base_ms: 50.0,
    slo_ms: 200.0,
};

/// A well-behaved big-data executor.
const EXECUTOR: Behaviour = Behaviour::Steady {
    cpu: 5.0,
    mem_bw: 3.25e9,
    pcie: 0.0,
    jitter: 0.6,
};

/// A busy but harmless batch pod.
const DECOY: Behaviour = Behaviour::Steady {
    cpu: 10.0,
    mem_bw: 2.0e9,
    pcie: 0.0,
    jitter: 0.05,
};

/// A well-behaved AI training job.
const TRAINER: Behaviour = Behaviour::Steady {
    cpu: 4.0,
    mem_bw: 2.0e9,
    pcie: 0.15,
    jitter: 0.4,
};

/// Builds the world and the incidents it will play out.
pub fn build(config: &DemoConfig, t0_ms: i64) -> (World, Vec<Incident>) {
    let mut w = World::new(config.seed, t0_ms, config.period_ms);
    add_namespaces(&mut w);
    let stride = (config.ticks / 6).max(5);
    let hogs = hog_slots(config, stride);
    let mut incidents = Vec::new();
    for n in 0..config.busy_nodes {
        let hog = hogs.iter().find(|(h, _)| *h == n).map(|(_, onset)| *onset);
        add_busy_node(&mut w, n, hog, &mut incidents);
    }
    for n in 0..config.spare_nodes {
        add_spare_node(&mut w, n);
    }
    for n in 0..config.gpu_nodes {
        add_gpu_node(&mut w, n, stride, &mut incidents);
    }
    add_spare_gpu_node(&mut w);
    incidents.sort_by_key(|i| i.onset);
    (w, incidents)
}

/// Registers the demo namespaces with their labels.
fn add_namespaces(w: &mut World) {
    for (ns, labels) in NAMESPACES {
        w.namespaces.insert(
            ns.to_owned(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
}

/// Memory-bandwidth antagonists on busy nodes 1-3 (those that exist), staggered:
/// `(busy node, onset tick)`.
fn hog_slots(config: &DemoConfig, stride: u64) -> Vec<(usize, u64)> {
    [(1usize, 2u64), (2, 4), (3, 5)]
        .into_iter()
        .filter(|(n, _)| *n < config.busy_nodes)
        .map(|(n, half)| (n, stride * half / 2))
        .collect()
}

/// Adds busy CPU node `n`: 4 web services, 3 executors (the first a memory hog from
/// `hog` on, when set), a decoy, and on node 0 the protected checkpointer.
fn add_busy_node(w: &mut World, n: usize, hog: Option<u64>, incidents: &mut Vec<Incident>) {
    let node = w.add_node(&format!("cpu-{n:02}"), &[("pool", "colocated")], CPU);
    for k in 0..4 {
        add_web(w, node, &format!("web-{n:02}-{k}"));
    }
    for k in 0..3 {
        let job = format!("etl-{n:02}-{k}");
        let behaviour = match (k, hog) {
            (0, Some(onset)) => {
                incidents.push(Incident {
                    antagonist: format!("spark/{job}-exec"),
                    node: w.nodes[node].name.clone(),
                    onset,
                    resource: "memory bandwidth",
                });
                Behaviour::MemoryHog { onset }
            }
            _ => EXECUTOR,
        };
        add_executor(w, node, &job, behaviour);
    }
    w.add_pod(
        "etl",
        &format!("compact-{n:02}"),
        node,
        Class::Batch,
        ("Deployment", &format!("compact-{n:02}")),
        8.0,
        DECOY,
    );
    if n == 0 {
        let i = w.add_pod(
            "spark",
            "checkpointer-0",
            node,
            Class::Batch,
            ("StatefulSet", "checkpointer"),
            2.0,
            EXECUTOR,
        );
        w.pods[i].protected = true;
    }
}

/// Adds spare CPU node `n` with one web service and one executor.
fn add_spare_node(w: &mut World, n: usize) {
    let node = w.add_node(
        &format!("cpu-spare-{n}"),
        &[("pool", "colocated")],
        SPARE_CPU,
    );
    add_web(w, node, &format!("web-spare-{n}"));
    add_executor(w, node, &format!("etl-spare-{n}"), EXECUTOR);
}

/// Adds the web service Deployment `name` (one pod) on `node`.
fn add_web(w: &mut World, node: usize, name: &str) {
    w.add_pod(
        "shop",
        &format!("{name}-7d9f8"),
        node,
        Class::Online,
        ("Deployment", name),
        2.0,
        WEB,
    );
}

/// Adds the executor of StatefulSet `job` on `node`.
fn add_executor(w: &mut World, node: usize, job: &str, behaviour: Behaviour) {
    w.add_pod(
        "spark",
        &format!("{job}-exec"),
        node,
        Class::Batch,
        ("StatefulSet", job),
        4.0,
        behaviour,
    );
}

/// Adds GPU node `n`: 2 inference services and 2 training jobs (on node 0 the first is
/// a PCIe hog).
fn add_gpu_node(w: &mut World, n: usize, stride: u64, incidents: &mut Vec<Incident>) {
    let name = format!("gpu-{n}");
    let node = w.add_node(&name, &[("accelerator", "nvidia")], GPU);
    for k in 0..2 {
        let svc = format!("infer-{n}-{k}");
        w.add_pod(
            "inference",
            &format!("{svc}-5c6d7"),
            node,
            Class::Online,
            ("Deployment", &svc),
            2.0,
            INFERENCE,
        );
    }
    for k in 0..2 {
        let job = format!("train-{n}-{k}");
        let behaviour = if n == 0 && k == 0 {
            let onset = stride * 3 / 2;
            incidents.push(Incident {
                antagonist: format!("ml/{job}"),
                node: name.clone(),
                onset,
                resource: "PCIe",
            });
            Behaviour::PcieHog { onset }
        } else {
            TRAINER
        };
        w.add_pod("ml", &job, node, Class::Ai, ("Job", &job), 8.0, behaviour);
    }
}

/// Adds the spare GPU node with one training job.
fn add_spare_gpu_node(w: &mut World) {
    let node = w.add_node("gpu-spare", &[("accelerator", "nvidia")], GPU);
    w.add_pod(
        "ml",
        "train-spare-0",
        node,
        Class::Ai,
        ("Job", "train-spare"),
        8.0,
        TRAINER,
    );
}
