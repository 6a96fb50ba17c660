//! Placement's search against the plain one it replaced: on randomised clusters (sizes,
//! taints, cordons, selectors, requests, terminating pods, silent nodes, pending Migrates,
//! a node-scope trigger) both choose the same destination or give the same reason; and a
//! successful search predicts the usage of no node ranked after the one it chooses. The
//! plain search shares the predicted-headroom check (`would_cross`) with the real one, but
//! not the bucket's usage cache: it runs on its own copy of the cluster, with the cache
//! cleared before each search, so usages the real search reuses are checked afresh.

use super::cluster::{NodeId, NodeInfo, PodId, Resources, Taint};
use super::engine::Migration;
use super::headroom::{Placing, UsageMemo};
use super::placement::PENDING_MS;
use super::tests::{S, T0, labels, node, noise, pod, policy, sample, with_spec};
use super::tests_placement::add_membw_trigger;
use super::{Engine, EngineConfig};

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 += 1;
        (noise(self.0) * n as f64) as u64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.0 += 1;
        noise(self.0) < p
    }
}

/// The search as it was before the index (placement.rs at 37984ec), written plainly:
/// every node through every filter, the pending Migrates summed per node, requests
/// summed over the node's pods, a stable sort of the survivors, each crossing described.
fn reference(e: &Engine, p: u16, pod: PodId, source: NodeId, t: i64) -> Result<String, String> {
    let Some(info) = e.cluster.pod_info(pod) else {
        return Err("pod vanished".into());
    };
    let load = e.hog_load(p, pod, t);
    let memo = UsageMemo::default();
    let window = e.policies[p as usize].policy.spec.attribution.window_ms;
    let placing = Placing::new(&load, (source, t), window, &memo);
    let (mut full, mut unmatched, mut busy, mut silent, mut cordoned, mut crossing) =
        (0, 0, 0, 0, 0, 0);
    let mut ranked: Vec<((bool, f64), NodeId, &NodeInfo)> = Vec::new();
    for id in e.cluster.node_ids().filter(|&id| id != source) {
        let Some(node) = e.cluster.node_info(id) else {
            continue;
        };
        if node.unschedulable || !node.ready {
            cordoned += 1;
            continue;
        }
        if !info.tolerates_and_selects(node) {
            unmatched += 1;
            continue;
        }
        let pending = e
            .migrations
            .values()
            .filter(|m| m.destination == Some(id) && t - m.at < PENDING_MS && m.at <= t)
            .fold(Resources::default(), |acc, m| acc.plus(m.requests));
        let free = node
            .allocatable
            .minus(e.cluster.requested_on_scan(id).plus(pending));
        if !info.requests.fits_in(free) {
            full += 1;
            continue;
        }
        let last = e.nodes.get(id.index()).and_then(Option::as_ref);
        let Some(last) = last.and_then(|s| s.last_ts) else {
            silent += 1;
            continue;
        };
        if t - last > e.config.stale_after_ms as i64 || e.under_pressure(id, t) {
            busy += 1;
            continue;
        }
        let headroom = if node.allocatable.cpu_millis > 0 {
            (free.cpu_millis - info.requests.cpu_millis) as f64 / node.allocatable.cpu_millis as f64
        } else {
            0.0
        };
        let repelled = node
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .any(|t| !info.tolerations.iter().any(|tol| tol.tolerates(t)));
        ranked.push(((!repelled, headroom), id, node));
    }
    ranked.sort_by(|(a, _, na), (b, _, nb)| {
        b.0.cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then_with(|| na.name.cmp(&nb.name))
    });
    let mut example: Option<(NodeId, String, String)> = None;
    for (_, id, node) in ranked {
        match e.would_cross(&placing, id) {
            None => return Ok(node.name.clone()),
            Some(why) => {
                crossing += 1;
                if example.as_ref().is_none_or(|(first, _, _)| id < *first) {
                    example = Some((id, node.name.clone(), why));
                }
            }
        }
    }
    let example = example
        .map(|(_, node, why)| format!(" ({node}: {why})"))
        .unwrap_or_default();
    Err(format!(
        "no other node fits: {full} lack CPU, memory or GPUs, {unmatched} fail selectors or taints, {busy} have interference or stale data, {crossing} would cross a trigger with the pod's usage{example}, {silent} have never reported samples, {cordoned} are cordoned or not ready"
    ))
}

/// A random node `name` (with `uniform`, of 8 CPUs).
fn random_node(rng: &mut Rng, name: &str, uniform: bool) -> NodeInfo {
    let mut n = node(name);
    // Every other cluster is uniform: ranks tie on CPU headroom and names decide.
    n.allocatable.cpu_millis = if uniform {
        8_000
    } else {
        2_000 + 1_000 * rng.below(8) as i64
    };
    n.ready = !rng.chance(0.08);
    n.unschedulable = rng.chance(0.08);
    if rng.chance(0.3) {
        n.labels.insert("disk".into(), "ssd".into());
    }
    for (effect, p) in [("PreferNoSchedule", 0.25), ("NoSchedule", 0.1)] {
        if rng.chance(p) {
            n.taints.push(Taint {
                key: "fulcrum.dev/steer-away".into(),
                value: String::new(),
                effect: effect.into(),
            });
        }
    }
    n
}

/// A random cluster that ran for 30 ticks (some nodes silent, some under a memory-bandwidth
/// trigger), with random Migrates pending; and the pods to place.
fn random_engine(seed: u64) -> (Engine, Vec<(String, String, String)>) {
    let mut rng = Rng(seed.wrapping_mul(1_000_003));
    let node_trigger = with_spec(policy(""), add_membw_trigger);
    let mut engine = Engine::new(EngineConfig::default());
    assert!(engine.set_policies(&[node_trigger]).is_empty());
    let mut nodes: Vec<String> = (0..6 + rng.below(14)).map(|i| format!("n{i:02}")).collect();
    // Node ids in another order than names (ties in rank are broken by name).
    let shift = rng.below(nodes.len() as u64) as usize;
    nodes.rotate_left(shift);
    if rng.chance(0.5) {
        nodes.reverse();
    }
    let mut pods = Vec::new();
    for n in &nodes {
        engine.upsert_node(random_node(&mut rng, n, seed.is_multiple_of(2)));
        for j in 0..rng.below(5) {
            let class = ["online", "batch", "batch"][rng.below(3) as usize];
            let mut info = pod("ns", &format!("{n}-p{j}"), n, class);
            info.requests.cpu_millis = if seed.is_multiple_of(2) {
                1_000
            } else {
                250 * (1 + rng.below(8) as i64)
            };
            info.terminating = rng.chance(0.1);
            if rng.chance(0.2) {
                info.node_selector = labels(&[("disk", "ssd")]).into();
            }
            pods.push((n.clone(), info.name.to_string(), class.to_owned()));
            engine.upsert_pod(info);
        }
    }
    let silent: Vec<bool> = nodes.iter().map(|_| rng.chance(0.1)).collect();
    let utils: Vec<f64> = nodes
        .iter()
        .map(|_| 0.3 + 0.1 * rng.below(8) as f64)
        .collect();
    for i in 0..30i64 {
        let ts = T0 + i * 10 * S;
        for (k, (n, name, _)) in pods.iter().enumerate() {
            let node_index = nodes.iter().position(|x| x == n).unwrap_or(0);
            if silent[node_index] {
                continue;
            }
            let bw = 1.0 + 3.0 * noise((k as u64) << 8 | i as u64);
            let metrics = [("mem_bw", bw), ("cpu", 0.5), ("latency_p99_ms", 40.0)];
            engine.offer(&sample(ts, n, Some(("ns", name)), &metrics));
        }
        for (n, (util, silent)) in nodes.iter().zip(utils.iter().zip(&silent)) {
            if !silent {
                engine.offer(&sample(ts, n, None, &[("mem_bw_util", *util)]));
            }
        }
        engine.advance_auto(&mut Vec::new());
    }
    let t = T0 + 29 * 10 * S;
    for k in 0..rng.below(12) {
        let destination = engine
            .cluster
            .node_id(&nodes[rng.below(nodes.len() as u64) as usize]);
        let migration = Migration {
            at: t - (rng.below(2 * PENDING_MS as u64) as i64) + 20 * S,
            source: NodeId(0),
            destination: destination.filter(|_| !rng.chance(0.1)),
            requests: Resources {
                cpu_millis: 500 * (1 + rng.below(6) as i64),
                ..Resources::default()
            },
        };
        engine.migrations.insert(format!("w{k}"), migration);
    }
    (engine, pods)
}

#[test]
fn the_search_chooses_as_the_plain_search_did_on_random_clusters() {
    let (mut found, mut blocked) = (0, 0);
    for seed in 0..60 {
        let (engine, pods) = random_engine(seed);
        let (mut plain, _) = random_engine(seed);
        let t = T0 + 29 * 10 * S;
        for (n, name, _) in pods.iter().filter(|(_, _, class)| class == "batch") {
            let (Some(pod), Some(source)) =
                (engine.cluster.pod_id("ns", name), engine.cluster.node_id(n))
            else {
                continue;
            };
            let got = engine.destination(0, pod, source, t).map(|(_, name)| name);
            plain.usage_cache.clear();
            let want = reference(&plain, 0, pod, source, t);
            assert_eq!(got, want, "seed {seed}, pod {name}");
            if got.is_ok() {
                found += 1;
            } else {
                blocked += 1;
            }
        }
    }
    // Both outcomes were compared, many times.
    assert!(
        found > 50 && blocked > 20,
        "found {found}, blocked {blocked}"
    );
}

#[test]
fn a_successful_search_predicts_no_usage_beyond_the_node_it_chooses() {
    let (_, blocked) = cluster_searches(&[0.3, 0.3, 0.3, 0.3, 0.3]);
    // Every destination passes: only the first in rank order is predicted.
    assert_eq!(blocked.0, 1, "{blocked:?}");
    // Control: every destination would cross the trigger, so the failed search predicts
    // each of them.
    let (_, blocked) = cluster_searches(&[0.89, 0.89, 0.89, 0.89, 0.89]);
    assert_eq!(blocked.0, 5, "{blocked:?}");
}

/// One search from a hog's node over five destinations at the given utilisations: whether
/// it found a node, and (usage predictions made for destinations, outcome).
fn cluster_searches(utils: &[f64]) -> (bool, (usize, Result<String, String>)) {
    let (engine, at) = searched_cluster(utils);
    let (computed, outcome) = search(&engine, at);
    (outcome.is_ok(), (computed, outcome))
}

/// The hog `n0-w`, its node `n0` and the time a search is made at.
type SearchAt = (PodId, NodeId, i64);

/// A hog's node `n0` and destinations `n1..` at the given utilisations, after 30 ticks.
fn searched_cluster(utils: &[f64]) -> (Engine, SearchAt) {
    let node_trigger = with_spec(policy(""), add_membw_trigger);
    let mut engine = Engine::new(EngineConfig::default());
    assert!(engine.set_policies(&[node_trigger]).is_empty());
    let names: Vec<String> = (0..=utils.len()).map(|i| format!("n{i}")).collect();
    for n in &names {
        engine.upsert_node(node(n));
        engine.upsert_pod(pod("ns", &format!("{n}-w"), n, "batch"));
    }
    for i in 0..30i64 {
        let ts = T0 + i * 10 * S;
        for (k, n) in names.iter().enumerate() {
            let bw = if k == 0 { 4.0 } else { 10.0 };
            let w = format!("{n}-w");
            engine.offer(&sample(ts, n, Some(("ns", &w)), &[("mem_bw", bw)]));
            let util = if k == 0 { 0.5 } else { utils[k - 1] };
            engine.offer(&sample(ts, n, None, &[("mem_bw_util", util)]));
        }
        engine.advance_auto(&mut Vec::new());
    }
    let t = T0 + 29 * 10 * S;
    let (Some(pod), Some(source)) = (
        engine.cluster.pod_id("ns", "n0-w"),
        engine.cluster.node_id("n0"),
    ) else {
        panic!("the cluster was just built");
    };
    (engine, (pod, source, t))
}

/// One search: (usage predictions made for destinations, outcome).
fn search(engine: &Engine, (pod, source, t): SearchAt) -> (usize, Result<String, String>) {
    let before = engine.usage_cache.computed();
    let outcome = engine.destination(0, pod, source, t).map(|(_, n)| n);
    (engine.usage_cache.computed() - before, outcome)
}

/// Removing a node clears the destinations' usages of the bucket: its id may be reused by
/// another node before the bucket ends, which must not read the old node's usage.
#[test]
fn a_removed_node_leaves_no_usage_behind_for_its_reused_id() {
    let (mut engine, at) = searched_cluster(&[0.89, 0.89, 0.89, 0.89, 0.89]);
    assert_eq!(search(&engine, at).0, 5);
    // Control: a second search of the bucket reuses every usage.
    assert_eq!(search(&engine, at).0, 0);
    let id = engine.cluster.node_id("n3");
    engine.remove_node("n3");
    engine.upsert_node(node("n9"));
    assert_eq!(engine.cluster.node_id("n9"), id, "the id is reused");
    // n9 has never reported: four destinations are predicted afresh.
    assert_eq!(search(&engine, at).0, 4);
}

#[test]
fn requested_resources_are_kept_through_pod_and_node_churn() {
    let mut rng = Rng(7);
    let mut index = super::cluster::ClusterIndex::new();
    let names = ["a", "b", "c"];
    for n in names {
        index.upsert_node(node(n));
    }
    let mut checked = 0;
    for step in 0..400u64 {
        let name = format!("p{}", rng.below(12));
        match rng.below(6) {
            0 => {
                index.remove_pod("ns", &name);
            }
            1 => {
                let n = names[rng.below(3) as usize];
                index.remove_node(n);
                index.upsert_node(node(n));
            }
            _ => {
                let mut info = pod("ns", &name, names[rng.below(3) as usize], "batch");
                info.requests.cpu_millis = 100 * (1 + rng.below(9) as i64);
                info.terminating = rng.chance(0.2);
                info.finished = rng.chance(0.1);
                index.upsert_pod(info);
            }
        }
        for id in index.node_ids() {
            let kept = index.requested_on(id);
            assert_eq!(kept, index.requested_on_scan(id), "step {step}");
            checked += usize::from(kept.cpu_millis > 0);
        }
    }
    // Control: the sums compared were not all empty.
    assert!(checked > 300, "{checked}");
}
