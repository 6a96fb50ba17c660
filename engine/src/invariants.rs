//! Randomized invariants at scale (issue 14, item 4): random clusters, policies and sample
//! streams with duplicates, reordering within the lateness bound, gaps, clock jumps and pod
//! churn. Whatever the input:
//!
//! - no executed action targets a victim, a protected, DaemonSet, mirror, `kube-system`,
//!   system-critical or bare pod;
//! - no `maxActions*` limit is exceeded in any window, and the per-node cooldown holds;
//! - no incarnation of a pod is acted on twice;
//! - the storm breaker holds: when interference hits most nodes at once, nothing acts
//!   (with a control run, breaker off, that does act);
//! - decisions are deterministic, and duplicates or reordering within the lateness bound
//!   change none of them;
//! - engine state is proportional to what the cluster view tracks.
//!
//! The default test run uses a few cases per property; the dedicated run is
//! `PROPTEST_CASES=10000 cargo test --release -p fulcrum-engine invariants`
//! (see `docs/reliability.md`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use fulcrum_policies::InterferencePolicy;
use proptest::prelude::*;
use smallvec::SmallVec;

use crate::cluster::{NodeInfo, Owner, PodInfo, Resources};
use crate::decision::{Decision, Event, Outcome};
use crate::sample::{Metric, PodRef, Sample};
use crate::{Engine, EngineConfig, SYSTEM_CRITICAL_PRIORITY};

const T0: i64 = 1_764_151_200_000;
const TICK: i64 = 10_000;
const TICKS: i64 = 100;

/// Cases per property in the default run; `PROPTEST_CASES` overrides it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Online,
    Batch,
    Ai,
    Other,
}

/// What makes a pod untouchable, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    None,
    Protected,
    DaemonSet,
    KubeSystem,
    Critical,
    Mirror,
    Bare,
}

#[derive(Clone, Debug)]
struct PodDef {
    node: usize,
    class: Class,
    flag: Flag,
}

impl PodDef {
    fn namespace(&self, i: usize) -> &'static str {
        match (self.flag, i % 2) {
            (Flag::KubeSystem, _) => "kube-system",
            (_, 0) => "a",
            _ => "b",
        }
    }
    fn workload(&self, i: usize) -> String {
        format!("{}/StatefulSet/w{}", self.namespace(i), i % 3)
    }
}

/// A change to the cluster between ticks: pod `pod` leaves at `at` and comes back (a new
/// incarnation, new UID) on node `to` at `back`, if `back` is set.
#[derive(Clone, Debug)]
struct Churn {
    pod: usize,
    at: i64,
    back: Option<i64>,
    to: usize,
}

#[derive(Clone, Debug)]
struct World {
    nodes: usize,
    pods: Vec<PodDef>,
    /// (node count, workload count, namespace count, total count, cooldown s).
    limits: (u32, u32, u32, u32, u32),
    /// Per node: ticks `[start, end)` with interference, and the culprit (a pod index).
    episodes: Vec<(i64, i64)>,
    /// Per node: ticks `[start, end)` without samples.
    gaps: Vec<(i64, i64)>,
    churn: Vec<Churn>,
    /// Per sample: kept? duplicated? (indices into the generated sample list, by hash).
    drop_rate: u8,
    dup_rate: u8,
    swap_rate: u8,
    /// Clock jumps: (tick, node, forward ms).
    jumps: Vec<(i64, usize, i64)>,
    seed: u64,
    /// The culprit on each node is its last non-victim pod (otherwise one picked by seed).
    last_is_culprit: bool,
    /// The batch candidate's action: `Migrate` or `Evict`.
    batch_action: &'static str,
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        3 => Just(Class::Online),
        3 => Just(Class::Batch),
        2 => Just(Class::Ai),
        1 => Just(Class::Other),
    ]
}

fn flag() -> impl Strategy<Value = Flag> {
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

fn world() -> impl Strategy<Value = World> {
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
        (Just(nodes), pods, limits, episodes, gaps).prop_flat_map(
            |(nodes, pods, limits, episodes, gaps)| {
                let n = pods.len();
                let churn = prop::collection::vec(
                    (0..n, 0..TICKS, prop::option::of(1..20i64), 0..nodes).prop_map(
                        |(pod, at, back, to)| Churn {
                            pod,
                            at,
                            back: back.map(|b| at + b),
                            to,
                        },
                    ),
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
                (
                    Just((nodes, pods, limits, episodes, gaps)),
                    churn,
                    0..20u8,
                    0..30u8,
                    0..40u8,
                    jumps,
                    any::<u64>(),
                )
                    .prop_map(
                        |(
                            (nodes, pods, limits, episodes, gaps),
                            churn,
                            drop,
                            dup,
                            swap,
                            jumps,
                            seed,
                        )| {
                            World {
                                nodes,
                                pods,
                                limits,
                                episodes,
                                gaps,
                                churn,
                                drop_rate: drop,
                                dup_rate: dup,
                                swap_rate: swap,
                                jumps,
                                seed,
                                last_is_culprit: false,
                                batch_action: if seed % 2 == 0 { "Migrate" } else { "Evict" },
                            }
                        },
                    )
            },
        )
    })
}

/// Deterministic noise in [0, 1).
fn noise(seed: u64, i: u64) -> f64 {
    let mut x = (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn policy(world: &World) -> InterferencePolicy {
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

fn node_info(n: usize) -> NodeInfo {
    NodeInfo {
        name: format!("n{n}"),
        allocatable: Resources {
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
        },
        ready: true,
        ..NodeInfo::default()
    }
}

fn pod_info(world: &World, i: usize, node: usize, incarnation: u32, created: i64) -> PodInfo {
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
            name: format!("w{}", i % 3),
        }),
    };
    PodInfo {
        namespace: def.namespace(i).into(),
        name: format!("p{i}"),
        uid: format!("uid-{i}-{incarnation}"),
        node_name: Some(format!("n{node}")),
        labels: [("class".to_string(), class.to_string())].into(),
        owner,
        workload: def.workload(i),
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
        },
        ..PodInfo::default()
    }
}

/// One input step: a sample, or a change to the cluster view.
#[derive(Clone, Debug)]
enum Step {
    Sample(OwnedSample),
    Remove(usize),
    Add {
        pod: usize,
        node: usize,
        incarnation: u32,
        at: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct OwnedSample {
    ts: i64,
    node: usize,
    pod: Option<usize>,
    latency: f64,
    mem_bw: f64,
}

/// The clean stream: one sample per live pod per tick (except in gaps), in time order, with
/// the churn steps at their ticks. Interference raises the victims' latency on a node and
/// the culprit's memory bandwidth together.
fn clean_steps(world: &World, with_churn: bool) -> Vec<Step> {
    let mut placement: Vec<Option<usize>> = world.pods.iter().map(|p| Some(p.node)).collect();
    let mut incarnations = vec![0u32; world.pods.len()];
    let culprit: Vec<Option<usize>> = (0..world.nodes)
        .map(|n| {
            let mut others = world
                .pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.node == n && p.class != Class::Online)
                .map(|(i, _)| i);
            if world.last_is_culprit {
                others.next_back()
            } else {
                others.nth((world.seed as usize + n) % 3)
            }
        })
        .collect();
    let mut steps = Vec::new();
    for tick in 0..TICKS {
        if with_churn {
            for c in &world.churn {
                if c.at == tick && placement[c.pod].is_some() {
                    placement[c.pod] = None;
                    steps.push(Step::Remove(c.pod));
                }
                if c.back == Some(tick) && placement[c.pod].is_none() {
                    placement[c.pod] = Some(c.to);
                    incarnations[c.pod] += 1;
                    steps.push(Step::Add {
                        pod: c.pod,
                        node: c.to,
                        incarnation: incarnations[c.pod],
                        at: T0 + tick * TICK - 3_600_000,
                    });
                }
            }
        }
        let ts = T0 + tick * TICK;
        for (i, def) in world.pods.iter().enumerate() {
            let Some(node) = placement[i] else { continue };
            let (gap_start, gap_end) = world.gaps[node];
            if (gap_start..gap_end).contains(&tick) {
                continue;
            }
            let (start, end) = world.episodes[node];
            let active = (start..end).contains(&tick);
            let r = noise(world.seed.wrapping_add(i as u64), tick as u64);
            let burst = if active { 4.0 + 6.0 * r } else { 0.5 + 0.3 * r };
            let (latency, mem_bw) = match def.class {
                Class::Online if active => (250.0 + 40.0 * burst, 1.0),
                Class::Online => (80.0 + 40.0 * r, 1.0),
                _ if culprit[node] == Some(i) => (0.0, burst),
                _ => (0.0, 1.0 + 2.0 * r),
            };
            steps.push(Step::Sample(OwnedSample {
                ts,
                node,
                pod: Some(i),
                latency,
                mem_bw,
            }));
        }
    }
    steps
}

/// The clean stream with the world's faults: dropped samples, exact duplicates, neighbours
/// swapped within the lateness bound, and clock jumps.
fn faulty_steps(world: &World, with_churn: bool, with_jumps: bool) -> Vec<Step> {
    let clean = clean_steps(world, with_churn);
    let mut out: Vec<Step> = Vec::with_capacity(clean.len() * 2);
    for (k, step) in clean.into_iter().enumerate() {
        let r = noise(world.seed ^ 0x5eed, k as u64);
        if let Step::Sample(s) = &step {
            if r * 100.0 < f64::from(world.drop_rate) {
                continue;
            }
            if with_jumps
                && let Some(&(_, _, forward)) = world
                    .jumps
                    .iter()
                    .find(|(tick, node, _)| T0 + tick * TICK == s.ts && *node == s.node)
            {
                let mut jumped = s.clone();
                jumped.ts += forward;
                out.push(Step::Sample(jumped));
            }
            if noise(world.seed ^ 0xd0b1e, k as u64) * 100.0 < f64::from(world.dup_rate) {
                out.push(step.clone());
            }
        }
        out.push(step);
    }
    // Swap neighbouring samples less than the lateness bound apart (churn steps stay put).
    for i in 1..out.len() {
        if noise(world.seed ^ 0x5a9, i as u64) * 100.0 >= f64::from(world.swap_rate) {
            continue;
        }
        if let (Step::Sample(a), Step::Sample(b)) = (&out[i - 1], &out[i])
            && (a.ts - b.ts).abs() <= TICK
        {
            out.swap(i - 1, i);
        }
    }
    out
}

struct Run {
    events: Vec<Event>,
    engine: Engine,
    /// Most pods in the cluster view at once.
    peak_pods: usize,
    /// Per pod index: times it was (re)added after the start.
    added: HashMap<usize, Vec<i64>>,
}

fn engine(world: &World, config: EngineConfig) -> Engine {
    let mut engine = Engine::new(config);
    for n in 0..world.nodes {
        engine.upsert_node(node_info(n));
    }
    for (i, def) in world.pods.iter().enumerate() {
        engine.upsert_pod(pod_info(world, i, def.node, 0, T0 - 3_600_000));
    }
    assert!(engine.set_policies(&[policy(world)]).is_empty());
    engine
}

fn config() -> EngineConfig {
    EngineConfig {
        min_correlation_points: 3,
        min_usage_share: 0.0,
        min_usage_variation: 0.0,
        min_relative_score: 0.0,
        storm_fraction: 1.0,
        ..EngineConfig::default()
    }
}

fn run(world: &World, steps: &[Step], config: EngineConfig) -> Run {
    let mut engine = engine(world, config);
    let mut events = Vec::new();
    let mut peak_pods = engine.cluster().pod_count();
    let mut added: HashMap<usize, Vec<i64>> = HashMap::new();
    let names: Vec<(String, String)> = (0..world.pods.len())
        .map(|i| (world.pods[i].namespace(i).to_owned(), format!("p{i}")))
        .collect();
    let mut last_ts = T0;
    for step in steps {
        match step {
            Step::Sample(s) => {
                last_ts = last_ts.max(s.ts);
                let node = format!("n{}", s.node);
                let metrics: SmallVec<[Metric<'_>; 8]> = [
                    ("latency_p99_ms", s.latency),
                    ("mem_bw", s.mem_bw),
                    ("cpu", s.mem_bw / 2.0),
                ]
                .iter()
                .map(|&(name, value)| Metric {
                    name: Cow::Borrowed(name),
                    value,
                })
                .collect();
                let sample = Sample {
                    ts_ms: s.ts,
                    node: Cow::Owned(node),
                    pod: s.pod.map(|i| PodRef {
                        namespace: Cow::Borrowed(&names[i].0),
                        name: Cow::Borrowed(&names[i].1),
                        uid: None,
                    }),
                    container: None,
                    metrics,
                };
                engine.offer(&sample);
                engine.advance_auto(&mut events);
            }
            Step::Remove(i) => engine.remove_pod(&names[*i].0, &names[*i].1),
            Step::Add {
                pod,
                node,
                incarnation,
                at,
            } => {
                engine.upsert_pod(pod_info(world, *pod, *node, *incarnation, *at));
                added.entry(*pod).or_default().push(last_ts);
                peak_pods = peak_pods.max(engine.cluster().pod_count());
            }
        }
    }
    engine.flush(&mut events);
    Run {
        events,
        engine,
        peak_pods,
        added,
    }
}

fn acted(events: &[Event]) -> Vec<&Decision> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Decision(d) if d.outcome != Outcome::Blocked => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

fn pod_index(d: &Decision) -> usize {
    d.target
        .rsplit_once("/p")
        .and_then(|(_, i)| i.parse().ok())
        .unwrap_or_else(|| panic!("unexpected target {}", d.target))
}

/// Every safety property of one run; the message names the first one broken.
fn check_safety(world: &World, run: &Run) -> Result<(), String> {
    let acted = acted(&run.events);
    let (node_max, workload_max, ns_max, total_max, cooldown_s) = world.limits;
    for d in &acted {
        let i = pod_index(d);
        let def = &world.pods[i];
        if def.class == Class::Online {
            return Err(format!("a victim was targeted: {d:?}"));
        }
        if def.flag != Flag::None {
            return Err(format!("a {:?} pod was targeted: {d:?}", def.flag));
        }
        let window = |ms: i64, same: &dyn Fn(&Decision) -> bool| {
            acted
                .iter()
                .filter(|o| o.at <= d.at && d.at - o.at < ms && same(o))
                .count() as u32
        };
        let used = [
            (window(600_000, &|o| o.node == d.node), node_max, "node"),
            (
                window(3_600_000, &|o| {
                    world.pods[pod_index(o)].workload(pod_index(o)) == def.workload(i)
                }),
                workload_max,
                "workload",
            ),
            (
                window(3_600_000, &|o| {
                    o.target.split('/').next() == d.target.split('/').next()
                }),
                ns_max,
                "namespace",
            ),
            (window(1_800_000, &|_| true), total_max, "total"),
        ];
        for (used, max, what) in used {
            if used > max {
                return Err(format!("{what} limit {max} exceeded ({used}) at {d:?}"));
            }
        }
    }
    let mut last_on_node: BTreeMap<&str, i64> = BTreeMap::new();
    let mut acted_on: BTreeMap<usize, i64> = BTreeMap::new();
    for d in &acted {
        if let Some(last) = last_on_node.insert(&d.node, d.at)
            && d.at - last < i64::from(cooldown_s) * 1_000
        {
            return Err(format!(
                "cooldown broken on {} ({} ms)",
                d.node,
                d.at - last
            ));
        }
        let i = pod_index(d);
        if let Some(previous) = acted_on.insert(i, d.at) {
            let reincarnated = run
                .added
                .get(&i)
                .is_some_and(|times| times.iter().any(|&t| t >= previous));
            if !reincarnated {
                return Err(format!("{} acted on twice", d.target));
            }
        }
    }
    Ok(())
}

/// Engine state is bounded by the cluster view, not by the input.
fn check_memory(world: &World, run: &Run, steps: usize) -> Result<(), String> {
    let e = &run.engine;
    let live_pods = e.pods.iter().flatten().count();
    if live_pods > e.cluster().pod_count() {
        return Err(format!(
            "{live_pods} pod states for {} pods",
            e.cluster().pod_count()
        ));
    }
    if e.pods.len() > run.peak_pods {
        return Err(format!(
            "{} pod slots, peak {} pods",
            e.pods.len(),
            run.peak_pods
        ));
    }
    if e.nodes.iter().flatten().count() > world.nodes {
        return Err("more node states than nodes".into());
    }
    let tracked = e.tracked.iter().filter(|t| **t != 0).count();
    for state in e.pods.iter().flatten() {
        if state.series.len() > tracked {
            return Err(format!(
                "{} series, {tracked} tracked metrics",
                state.series.len()
            ));
        }
    }
    if e.buffered() != 0 {
        return Err(format!(
            "{} samples still buffered after flush",
            e.buffered()
        ));
    }
    let records: usize = e.policies.iter().map(|p| p.ledger.records().count()).sum();
    if records > acted(&run.events).len() || records > steps {
        return Err(format!("{records} ledger records"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Safety, limits and bounded state under every kind of fault at once.
    #[test]
    fn invariants_hold_under_duplicates_reordering_gaps_jumps_and_churn(world in world()) {
        let steps = faulty_steps(&world, true, true);
        let run = run(&world, &steps, config());
        if let Err(message) = check_safety(&world, &run) {
            prop_assert!(false, "{}", message);
        }
        if let Err(message) = check_memory(&world, &run, steps.len()) {
            prop_assert!(false, "{}", message);
        }
    }

    /// The same input gives the same events; exact duplicates and reordering within the
    /// lateness bound give the same events as the clean, ordered stream.
    #[test]
    fn invariants_decisions_are_deterministic_and_ignore_duplicates_and_reordering(world in world()) {
        let steps = faulty_steps(&world, false, false);
        let first = run(&world, &steps, config());
        let again = run(&world, &steps, config());
        prop_assert_eq!(&first.events, &again.events);
        let clean: Vec<Step> = {
            // The faulty stream's samples, deduplicated and in time order (stable).
            let mut seen = std::collections::HashSet::new();
            let mut samples: Vec<OwnedSample> = steps
                .iter()
                .filter_map(|s| match s { Step::Sample(s) => Some(s.clone()), _ => None })
                .filter(|s| seen.insert((s.ts, s.node, s.pod)))
                .collect();
            samples.sort_by_key(|s| s.ts);
            samples.into_iter().map(Step::Sample).collect()
        };
        let ordered = run(&world, &clean, config());
        prop_assert_eq!(first.engine.stats().late, 0);
        prop_assert_eq!(&first.events, &ordered.events);
    }

    /// When interference starts on every node at the same moment, the storm breaker holds
    /// every action; the control (breaker off) shows there was something to act on.
    #[test]
    fn invariants_the_storm_breaker_holds(mut world in world()) {
        world.nodes = world.nodes.max(3);
        world.gaps = vec![(0, 0); world.nodes];
        world.episodes = vec![(30, TICKS); world.nodes];
        world.churn.clear();
        world.drop_rate = 0;
        world.last_is_culprit = true;
        // Migration needs a node without interference; in a storm there is none.
        world.batch_action = "Evict";
        // An online victim and an eligible batch pod on every node.
        for n in 0..world.nodes {
            world.pods.push(PodDef { node: n, class: Class::Online, flag: Flag::None });
            world.pods.push(PodDef { node: n, class: Class::Batch, flag: Flag::None });
        }
        let steps = faulty_steps(&world, false, false);
        let storm = EngineConfig { storm_fraction: 0.3, storm_min_nodes: 3, ..config() };
        let held = run(&world, &steps, storm);
        prop_assert!(acted(&held.events).is_empty(), "acted in a storm: {:?}", acted(&held.events));
        let blocked = held.events.iter().any(|e| matches!(e,
            Event::Decision(d) if d.outcome == Outcome::Blocked && d.reason.contains("storm")));
        prop_assert!(blocked, "no decision was blocked by the storm breaker");
        let control = run(&world, &steps, config());
        prop_assert!(!acted(&control.events).is_empty(), "the control did not act");
    }
}
