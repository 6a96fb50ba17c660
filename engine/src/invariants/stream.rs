//! Turning a world into input steps (samples and cluster changes, with the world's faults)
//! and running them through an engine.

use std::borrow::Cow;
use std::collections::HashMap;

use smallvec::SmallVec;

use super::world::{Class, T0, TICK, TICKS, World, node_info, noise, pod_info, policy};
use crate::decision::Event;
use crate::sample::{Metric, PodRef, Sample};
use crate::{Engine, EngineConfig};

/// One input step: a sample, or a change to the cluster view.
#[derive(Clone, Debug)]
pub(super) enum Step {
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
pub(super) struct OwnedSample {
    pub(super) ts: i64,
    pub(super) node: usize,
    pub(super) pod: Option<usize>,
    pub(super) latency: f64,
    pub(super) mem_bw: f64,
}

/// The clean stream: one sample per live pod per tick (except in gaps), in time order, with
/// the churn steps at their ticks. Interference raises the victims' latency on a node and
/// the culprit's memory bandwidth together.
pub(super) fn clean_steps(world: &World, with_churn: bool) -> Vec<Step> {
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
pub(super) fn faulty_steps(world: &World, with_churn: bool, with_jumps: bool) -> Vec<Step> {
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

pub(super) struct Run {
    pub(super) events: Vec<Event>,
    pub(super) engine: Engine,
    /// Most pods in the cluster view at once.
    pub(super) peak_pods: usize,
    /// Per pod index: times it was (re)added after the start.
    pub(super) added: HashMap<usize, Vec<i64>>,
}

pub(super) fn engine(world: &World, config: EngineConfig) -> Engine {
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

pub(super) fn config() -> EngineConfig {
    EngineConfig {
        min_correlation_points: 3,
        min_usage_share: 0.0,
        min_usage_variation: 0.0,
        // Random data rarely explains anything: test every level, so the invariants see
        // actions to check.
        false_blame_rate: f64::INFINITY,
        storm_fraction: 1.0,
        ..EngineConfig::default()
    }
}

pub(super) fn run(world: &World, steps: &[Step], config: EngineConfig) -> Run {
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
