//! The random worlds: a cluster (nodes, pods of four classes, some untouchable), a policy
//! with random limits, interference episodes, gaps, pod churn, clock jumps and the rates of
//! dropped, duplicated and swapped samples.

use fulcrum_policies::InterferencePolicy;
use proptest::prelude::*;

use crate::SYSTEM_CRITICAL_PRIORITY;
use crate::cluster::{NodeInfo, Owner, PodInfo, Resources};

pub(super) const T0: i64 = 1_764_151_200_000;
pub(super) const TICK: i64 = 10_000;
pub(super) const TICKS: i64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Online,
    Batch,
    Ai,
    Other,
}

/// What makes a pod untouchable, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flag {
    None,
    Protected,
    DaemonSet,
    KubeSystem,
    Critical,
    Mirror,
    Bare,
}

#[derive(Clone, Debug)]
pub(super) struct PodDef {
    pub(super) node: usize,
    pub(super) class: Class,
    pub(super) flag: Flag,
}

impl PodDef {
    pub(super) fn namespace(&self, i: usize) -> &'static str {
        match (self.flag, i % 2) {
            (Flag::KubeSystem, _) => "kube-system",
            (_, 0) => "a",
            _ => "b",
        }
    }
    pub(super) fn workload(&self, i: usize) -> String {
        format!("{}/StatefulSet/w{}", self.namespace(i), i % 3)
    }
}

/// A change to the cluster between ticks: pod `pod` leaves at `at` and comes back (a new
/// incarnation, new UID) on node `to` at `back`, if `back` is set.
#[derive(Clone, Debug)]
pub(super) struct Churn {
    pub(super) pod: usize,
    pub(super) at: i64,
    pub(super) back: Option<i64>,
    pub(super) to: usize,
}

#[derive(Clone, Debug)]
pub(super) struct World {
    pub(super) nodes: usize,
    pub(super) pods: Vec<PodDef>,
    /// (node count, workload count, namespace count, total count, cooldown s).
    pub(super) limits: (u32, u32, u32, u32, u32),
    /// Per node: ticks `[start, end)` with interference, and the culprit (a pod index).
    pub(super) episodes: Vec<(i64, i64)>,
    /// Per node: ticks `[start, end)` without samples.
    pub(super) gaps: Vec<(i64, i64)>,
    pub(super) churn: Vec<Churn>,
    /// Per sample: kept? duplicated? (indices into the generated sample list, by hash).
    pub(super) drop_rate: u8,
    pub(super) dup_rate: u8,
    pub(super) swap_rate: u8,
    /// Clock jumps: (tick, node, forward ms).
    pub(super) jumps: Vec<(i64, usize, i64)>,
    pub(super) seed: u64,
    /// The culprit on each node is its last non-victim pod (otherwise one picked by seed).
    pub(super) last_is_culprit: bool,
    /// The batch candidate's action: `Migrate` or `Evict`.
    pub(super) batch_action: &'static str,
}

pub(super) fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        3 => Just(Class::Online),
        3 => Just(Class::Batch),
        2 => Just(Class::Ai),
        1 => Just(Class::Other),
    ]
}

pub(super) fn flag() -> impl Strategy<Value = Flag> {
    prop_oneof![
        12 => Just(Flag::None),
        1 => Just(Flag::Protected),
        1 => Just(Flag::DaemonSet),
        1 => Just(Flag::KubeSystem),
        1 => Just(Flag::Critical),
        1 => Just(Flag::Mirror),
        1 => Just(Flag::Bare),
    ]
}

/// A cluster of 2 to 6 nodes with 1 to 5 pods per node on average, random limits, one
/// interference episode and at most one gap per node, then the faults.
pub(super) fn world() -> impl Strategy<Value = World> {
    (2..7usize).prop_flat_map(|nodes| {
        let pods = prop::collection::vec(
            (0..nodes, class(), flag()).prop_map(|(node, class, flag)| PodDef {
                node,
                class,
                flag,
            }),
            nodes..nodes * 5,
        );
        let limits = (
            1..4u32,
            1..4u32,
            1..5u32,
            1..7u32,
            prop_oneof![Just(0u32), Just(60), Just(300)],
        );
        let episodes =
            prop::collection::vec((0..TICKS, 10..60i64).prop_map(|(s, l)| (s, s + l)), nodes);
        let gaps = prop::collection::vec(
            prop_oneof![
                Just((0, 0)),
                (0..TICKS, 1..12i64).prop_map(|(s, l)| (s, s + l))
            ],
            nodes,
        );
        let base =
            (pods, limits, episodes, gaps).prop_map(move |(pods, limits, episodes, gaps)| World {
                nodes,
                pods,
                limits,
                episodes,
                gaps,
                churn: Vec::new(),
                drop_rate: 0,
                dup_rate: 0,
                swap_rate: 0,
                jumps: Vec::new(),
                seed: 0,
                last_is_culprit: false,
                batch_action: "Migrate",
            });
        base.prop_flat_map(with_faults)
    })
}

/// Adds pod churn, clock jumps, drop/duplicate/swap rates and a seed to `world`.
fn with_faults(world: World) -> impl Strategy<Value = World> {
    let (nodes, n) = (world.nodes, world.pods.len());
    let churn = prop::collection::vec(
        (0..n, 0..TICKS, prop::option::of(1..20i64), 0..nodes).prop_map(|(pod, at, back, to)| {
            Churn {
                pod,
                at,
                back: back.map(|b| at + b),
                to,
            }
        }),
        0..4,
    );
    let jumps = prop::collection::vec(
        (
            0..TICKS,
            0..nodes,
            prop_oneof![Just(30_000i64), Just(300_000), Just(3_600_000)],
        ),
        0..3,
    );
    let rates = (0..20u8, 0..30u8, 0..40u8);
    (Just(world), churn, rates, jumps, any::<u64>()).prop_map(
        |(world, churn, (drop, dup, swap), jumps, seed)| World {
            churn,
            drop_rate: drop,
            dup_rate: dup,
            swap_rate: swap,
            jumps,
            seed,
            batch_action: if seed % 2 == 0 { "Migrate" } else { "Evict" },
            ..world
        },
    )
}

/// Deterministic noise in [0, 1).
pub(super) fn noise(seed: u64, i: u64) -> f64 {
    let mut x = (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn policy(world: &World) -> InterferencePolicy {
    let (node, workload, namespace, total, cooldown) = world.limits;
    let batch_action = world.batch_action;
    let text = format!(
        r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {{name: invariants}}
spec:
  mode: Enforce
  victims: {{podSelector: {{matchLabels: {{class: online}}}}}}
  candidates:
    - {{name: batch, podSelector: {{matchLabels: {{class: batch}}}}, action: {batch_action}}}
    - {{name: ai, podSelector: {{matchLabels: {{class: ai}}}}, action: Evict}}
    - {{name: all, podSelector: {{}}, action: Evict}}
  triggers:
    - {{name: p99, metric: latency_p99_ms, above: 200, sustainedFor: 20s}}
  attribution: {{method: Correlation, metrics: [mem_bw, cpu], window: 2m, minCorrelation: 0.0}}
  recovery: {{clearFor: 30s}}
  limits:
    maxActionsPerNode: {{count: {node}, window: 10m}}
    maxActionsPerWorkload: {{count: {workload}, window: 1h}}
    maxActionsPerNamespace: {{count: {namespace}, window: 1h}}
    maxActionsTotal: {{count: {total}, window: 30m}}
    cooldown: {cooldown}s
    minPodAge: 1m
"#
    );
    let value: serde_json::Value = serde_yaml_ng::from_str(&text).expect("policy YAML");
    fulcrum_policies::document::check_document(&value).unwrap_or_else(|e| panic!("{e:?}"))
}

pub(super) fn node_info(n: usize) -> NodeInfo {
    NodeInfo {
        name: format!("n{n}"),
        allocatable: Resources {
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
            ..Resources::default()
        },
        ready: true,
        ..NodeInfo::default()
    }
}

pub(super) fn pod_info(
    world: &World,
    i: usize,
    node: usize,
    incarnation: u32,
    created: i64,
) -> PodInfo {
    let def = &world.pods[i];
    let class = match def.class {
        Class::Online => "online",
        Class::Batch => "batch",
        Class::Ai => "ai",
        Class::Other => "other",
    };
    let owner = match def.flag {
        Flag::Bare => None,
        Flag::DaemonSet => Some(Owner {
            kind: "DaemonSet".into(),
            name: "agent".into(),
        }),
        _ => Some(Owner {
            kind: "StatefulSet".into(),
            name: format!("w{}", i % 3).into(),
        }),
    };
    PodInfo {
        namespace: def.namespace(i).into(),
        name: format!("p{i}").into(),
        uid: format!("uid-{i}-{incarnation}").into(),
        node_name: Some(format!("n{node}").into()),
        labels: std::sync::Arc::new([("class".to_string(), class.to_string())].into()),
        owner,
        workload: def.workload(i).into(),
        priority: if def.flag == Flag::Critical {
            SYSTEM_CRITICAL_PRIORITY
        } else {
            0
        },
        protected: def.flag == Flag::Protected,
        mirror: def.flag == Flag::Mirror,
        running: true,
        created_ms: Some(created),
        requests: Resources {
            cpu_millis: 500,
            memory_bytes: 1 << 30,
            ..Resources::default()
        },
        ..PodInfo::default()
    }
}
