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

mod stream;
mod world;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;

use crate::EngineConfig;
use crate::decision::{Decision, Event, Outcome};
use stream::{OwnedSample, Run, Step, config, faulty_steps, run};
use world::{Class, Flag, PodDef, TICKS, World, world};

/// Cases per property in the default run; `PROPTEST_CASES` overrides it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24)
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

/// Passed cases and decisions checked, per property, for the figures the run prints.
static TALLIES: [(AtomicU64, AtomicU64); 3] = [
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
];

/// Counts a passed case of property `i` that checked `decisions` decisions; when the last
/// case of the run passes, prints how many cases and decisions the property checked.
fn tally(i: usize, name: &str, decisions: usize) {
    let (cases_passed, checked) = &TALLIES[i];
    let checked = checked.fetch_add(decisions as u64, Ordering::Relaxed) + decisions as u64;
    let passed = cases_passed.fetch_add(1, Ordering::Relaxed) + 1;
    if passed == u64::from(cases()) {
        eprintln!("figure: {name}: {passed} cases passed, {checked} decisions checked");
    }
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
        tally(0, "safety, limits and bounded state", acted(&run.events).len());
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
            let mut seen = HashSet::new();
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
        let decisions = first.events.iter().filter(|e| matches!(e, Event::Decision(_))).count();
        tally(1, "determinism, duplicates and reordering", decisions);
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
        let held_back = held.events.iter().filter(|e| matches!(e, Event::Decision(_))).count();
        tally(2, "storm breaker (all blocked)", held_back);
    }
}
