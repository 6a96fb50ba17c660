//! Engine tests: each trigger kind, attribution method, exclusion and limit, and the
//! documented edge cases (out-of-order, duplicates, unknown pods, stale nodes), plus
//! property tests over random clusters and sample streams.

use std::borrow::Cow;
use std::collections::BTreeMap;

use fulcrum_policies::InterferencePolicy;
use fulcrum_policies::spec::Action;
use proptest::prelude::*;
use smallvec::SmallVec;

use super::cluster::{NodeInfo, Owner, PodInfo, Resources};
use super::decision::{Decision, Event, Outcome, Unexplained};
use super::{Engine, EngineConfig, Offered};
use crate::sample::{Metric, PodRef, Sample};

pub(crate) const T0: i64 = 1_764_151_200_000;
pub(crate) const S: i64 = 1_000;

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels(&[("pool", "colocated")]),
        allocatable: Resources {
            cpu_millis: 16_000,
            memory_bytes: 64 << 30,
            gpus: 0,
        },
        ready: true,
        ..NodeInfo::default()
    }
}

pub(crate) fn pod_info(ns: &str, name: &str, node: &str, class: &str) -> PodInfo {
    pod(ns, name, node, class)
}

pub(crate) fn pod(ns: &str, name: &str, node: &str, class: &str) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{name}").into(),
        node_name: Some(node.into()),
        labels: labels(&[("class", class)]).into(),
        owner: Some(Owner {
            kind: "StatefulSet".into(),
            name: format!("{name}-set").into(),
        }),
        workload: format!("{ns}/StatefulSet/{name}-set").into(),
        running: true,
        created_ms: Some(T0 - 3_600_000),
        requests: Resources {
            cpu_millis: 1_000,
            memory_bytes: 1 << 30,
            gpus: 0,
        },
        ..PodInfo::default()
    }
}

/// A policy protecting `class: online` from `class: batch` (Migrate) and `class: ai` (Evict).
pub(crate) fn policy(extra: &str) -> InterferencePolicy {
    let text = format!(
        r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {{name: protect}}
spec:
  mode: Enforce
  victims: {{podSelector: {{matchLabels: {{class: online}}}}}}
  candidates:
    - {{name: batch, podSelector: {{matchLabels: {{class: batch}}}}, action: Migrate}}
    - {{name: ai, podSelector: {{matchLabels: {{class: ai}}}}, action: Evict}}
  triggers:
    - {{name: p99, metric: latency_p99_ms, above: 100, sustainedFor: 30s}}
  attribution: {{method: Correlation, metrics: [mem_bw, cpu], window: 2m, minCorrelation: 0.5}}
  limits: {{minPodAge: 5m, cooldown: 5m}}
{extra}
"#
    );
    let value: serde_json::Value = serde_yaml_ng::from_str(&text).expect("policy YAML");
    fulcrum_policies::document::check_document(&value).unwrap_or_else(|e| panic!("{e:?}"))
}

pub(crate) fn with_spec(
    mut p: InterferencePolicy,
    f: impl FnOnce(&mut fulcrum_policies::InterferencePolicySpec),
) -> InterferencePolicy {
    f(&mut p.spec);
    p
}

pub(crate) fn sample<'a>(
    ts: i64,
    node: &'a str,
    pod: Option<(&'a str, &'a str)>,
    metrics: &[(&'a str, f64)],
) -> Sample<'a> {
    Sample {
        ts_ms: ts,
        node: Cow::Borrowed(node),
        pod: pod.map(|(ns, name)| PodRef {
            namespace: Cow::Borrowed(ns),
            name: Cow::Borrowed(name),
            uid: None,
        }),
        container: None,
        metrics: metrics
            .iter()
            .map(|(n, v)| Metric {
                name: Cow::Borrowed(n),
                value: *v,
            })
            .collect::<SmallVec<_>>(),
    }
}

/// Deterministic noise in [0, 1), independent of any pattern in `i`.
pub(crate) fn noise(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) struct World {
    pub(super) engine: Engine,
    pub(super) events: Vec<Event>,
}

impl World {
    /// Node n1 with victim shop/web, antagonist spark/hog, decoy spark/busy, AI ai/train;
    /// node n2 empty (a migration destination).
    pub(super) fn new(policies: &[InterferencePolicy]) -> Self {
        Self::with_config(policies, EngineConfig::default())
    }

    /// [`World::new`] with engine settings `config`.
    pub(super) fn with_config(policies: &[InterferencePolicy], config: EngineConfig) -> Self {
        let mut engine = Engine::new(config);
        engine.upsert_node(node("n1"));
        engine.upsert_node(node("n2"));
        engine.upsert_pod(pod("shop", "web", "n1", "online"));
        engine.upsert_pod(pod("spark", "hog", "n1", "batch"));
        engine.upsert_pod(pod("spark", "busy", "n1", "batch"));
        engine.upsert_pod(pod("ai", "train", "n1", "ai"));
        // n2 reports through a small agent: a destination must have been heard from.
        engine.upsert_pod(pod("infra", "agent", "n2", "infra"));
        let invalid = engine.set_policies(policies);
        assert!(invalid.is_empty(), "{invalid:?}");
        Self {
            engine,
            events: Vec::new(),
        }
    }

    pub(super) fn offer(&mut self, s: &Sample<'_>) -> Offered {
        self.engine.offer(s)
    }

    /// One 10 s tick: the hog's memory bandwidth follows `hog`, the victim's latency
    /// follows the hog, the decoy is busy but flat-ish and uncorrelated, and n2 reports.
    pub(super) fn tick(&mut self, i: i64, hog: f64) {
        let ts = T0 + i * 10 * S;
        let wobble = noise(i as u64);
        let latency = 40.0 + 30.0 * hog;
        let samples = [
            sample(
                ts,
                "n1",
                Some(("shop", "web")),
                &[("latency_p99_ms", latency), ("mem_bw", 1.0), ("cpu", 1.0)],
            ),
            sample(
                ts,
                "n1",
                Some(("spark", "hog")),
                &[("mem_bw", hog), ("cpu", 1.0 + hog / 4.0)],
            ),
            sample(
                ts,
                "n1",
                Some(("spark", "busy")),
                &[("mem_bw", 2.0 + wobble), ("cpu", 6.0 + wobble)],
            ),
            sample(
                ts,
                "n1",
                Some(("ai", "train")),
                &[("mem_bw", 1.5 - wobble / 2.0), ("cpu", 3.0)],
            ),
            sample(ts, "n2", None, &[("mem_bw", 1.0)]),
            sample(ts, "n2", Some(("infra", "agent")), &[("cpu", 0.1)]),
        ];
        for s in &samples {
            self.engine.offer(s);
        }
        self.engine.advance_auto(&mut self.events);
    }

    /// Quiet for `quiet` ticks, then the hog oscillates strongly for `busy` ticks.
    pub(super) fn run(&mut self, quiet: i64, busy: i64) {
        for i in 0..quiet {
            self.tick(i, 1.0 + ((i % 3) as f64) * 0.1);
        }
        for i in quiet..quiet + busy {
            let phase = (i % 6) as f64;
            self.tick(i, 4.0 + phase); // latency 160..310, always above 100
        }
        self.engine.flush(&mut self.events);
    }

    pub(super) fn decisions(&self) -> Vec<&Decision> {
        decisions(&self.events)
    }
}

/// The decisions among `events`.
pub(super) fn decisions(events: &[Event]) -> Vec<&Decision> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Decision(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

/// The unexplained-episode reports among `events`.
pub(super) fn unexplained(events: &[Event]) -> Vec<&Unexplained> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Unexplained(u) => Some(u.as_ref()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_correlated_antagonist_is_found_and_migrated() {
    let mut w = World::new(&[policy("")]);
    w.run(20, 30);
    let d = w.decisions();
    assert!(!d.is_empty(), "{:#?}", w.events);
    let first = d[0];
    assert_eq!(first.target, "spark/hog");
    assert_eq!(first.action, Action::Migrate);
    assert_eq!(first.outcome, Outcome::Executed);
    assert_eq!(first.destination.as_deref(), Some("n2"));
    assert_eq!(first.victim.as_deref(), Some("shop/web"));
    assert_eq!(first.trigger, "p99");
    let top = &first.explanation.scores[0];
    assert_eq!(top.pod, "spark/hog");
    let best_r = top
        .metrics
        .iter()
        .filter_map(|m| m.correlation)
        .fold(f64::MIN, f64::max);
    assert!(best_r > 0.9, "{top:?}");
    assert!(
        top.score.unwrap() > 0.3,
        "a correlated share: r times its share of the node: {top:?}"
    );
    // The decoy is busy but uncorrelated: scored, never blamed.
    let busy = first
        .explanation
        .scores
        .iter()
        .find(|s| s.pod == "spark/busy")
        .unwrap();
    assert!(busy.excluded.is_some(), "{busy:?}");
    assert!(first.explanation.evidence.held_ms >= 30_000);
    assert!(
        first.explanation.guard.starts_with("allowed"),
        "{}",
        first.explanation.guard
    );
    // Exactly one action: the cooldown holds the rest of the run.
    let executed: Vec<_> = d
        .iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(executed.len(), 1, "{d:#?}");
    assert!(d.iter().all(|d| d.target != "shop/web"));
    assert_eq!(w.engine.stats().detections, 1);
}

#[test]
fn a_quiet_cluster_gives_no_decision() {
    let mut w = World::new(&[policy("")]);
    w.run(60, 0);
    assert!(w.events.is_empty(), "{:#?}", w.events);
    // n2's node-level mem_bw is not referenced by any node-scope trigger.
    assert_eq!(w.engine.stats().applied, 60 * 5);
    assert_eq!(w.engine.stats().irrelevant, 60);
}

#[test]
fn dry_run_decides_but_executes_nothing() {
    let p = with_spec(policy(""), |s| {
        s.mode = fulcrum_policies::spec::Mode::DryRun
    });
    let mut w = World::new(&[p]);
    w.run(20, 30);
    let d = w.decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].outcome, Outcome::DryRun);
    assert_eq!(w.engine.stats().executed, 0);
    assert_eq!(w.engine.stats().dry_run, 1);
}

#[test]
fn usage_attribution_ranks_by_share() {
    let p = with_spec(policy(""), |s| {
        s.attribution.method = fulcrum_policies::spec::AttributionMethod::Usage
    });
    let mut w = World::new(&[p]);
    w.run(20, 30);
    let d = w.decisions();
    // By share the hog (4..9 of ~9..14 GB/s) leads mem_bw; the decoy leads cpu.
    let first = d[0];
    let scores: Vec<(&str, f64)> = first
        .explanation
        .scores
        .iter()
        .filter_map(|s| Some((s.pod.as_str(), s.score?)))
        .collect();
    assert_eq!(first.explanation.method, "Usage");
    assert!(
        scores.iter().all(|(_, s)| (0.0..=1.0).contains(s)),
        "{scores:?}"
    );
    assert!(
        scores.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted by share within the class: {scores:?}"
    );
}

#[test]
fn a_node_scope_trigger_uses_node_samples() {
    let p = with_spec(policy(""), |s| {
        s.triggers[0].scope = fulcrum_policies::spec::TriggerScope::Node;
        s.triggers[0].metric = "mem_bw_util".into();
        s.triggers[0].above = Some(0.8);
    });
    let mut w = World::new(&[p]);
    for i in 0..40 {
        let ts = T0 + i * 10 * S;
        let hog = if i < 15 { 1.0 } else { 4.0 + (i % 6) as f64 };
        let util = if i < 15 { 0.3 } else { 0.75 + hog / 50.0 };
        w.offer(&sample(ts, "n1", None, &[("mem_bw_util", util)]));
        w.offer(&sample(
            ts,
            "n1",
            Some(("spark", "hog")),
            &[("mem_bw", hog)],
        ));
        w.offer(&sample(
            ts,
            "n1",
            Some(("spark", "busy")),
            &[("mem_bw", 2.0 + ((i * 7) % 5) as f64 / 5.0)],
        ));
        w.offer(&sample(ts, "n2", None, &[("mem_bw_util", 0.2)]));
        w.engine.advance_auto(&mut w.events);
    }
    w.engine.flush(&mut w.events);
    let d = w.decisions();
    assert_eq!(d[0].target, "spark/hog", "{:#?}", w.events);
    assert_eq!(d[0].victim, None);
    assert_eq!(d[0].explanation.evidence.metric, "mem_bw_util");
}

#[test]
fn an_outlier_trigger_learns_the_victims_baseline() {
    let p = with_spec(policy(""), |s| {
        s.triggers[0].metric = "latency_p99_ms".into();
        s.triggers[0].above = None;
        s.triggers[0].outlier = Some(fulcrum_policies::spec::OutlierBaseline {
            sigma: 3.0,
            baseline_window: "30m".into(),
            min_samples: 10,
        });
    });
    let mut w = World::new(&[p]);
    w.run(20, 30);
    let d = w.decisions();
    assert_eq!(d[0].target, "spark/hog");
    let b = d[0]
        .explanation
        .evidence
        .baseline
        .expect("outlier evidence has a baseline");
    assert!(b.samples >= 10 && b.mean < 80.0, "{b:?}");
}

#[test]
fn built_in_exclusions_cannot_be_lifted() {
    type Change = fn(&mut PodInfo);
    let cases: [(&str, Change); 6] = [
        ("DaemonSet", |p| {
            p.owner = Some(Owner {
                kind: "DaemonSet".into(),
                name: "ds".into(),
            })
        }),
        ("mirror", |p| p.mirror = true),
        ("protected", |p| p.protected = true),
        ("critical", |p| p.priority = 2_000_000_000),
        ("bare", |p| p.owner = None),
        ("emptyDir", |p| p.local_storage = true),
    ];
    for (what, change) in cases {
        let mut w = World::new(&[policy("")]);
        let mut hog = pod("spark", "hog", "n1", "batch");
        change(&mut hog);
        w.engine.upsert_pod(hog);
        w.run(20, 30);
        // The hog is the best explanation and cannot be acted on: one Blocked decision
        // says so, and the busy decoy, which does not explain the degradation after
        // accounting for the hog, is not acted on instead.
        let d = w.decisions();
        assert!(
            d.iter().all(|d| d.outcome == Outcome::Blocked),
            "{what}: {d:#?}"
        );
        assert_eq!(d.len(), 1, "{what}: reported once per episode: {d:#?}");
        assert_eq!(d[0].target, "spark/hog", "{what}");
        assert!(
            d[0].reason
                .starts_with("spark/hog explains 100% of the degradation"),
            "{what}: {}",
            d[0].reason
        );
        assert!(w.engine.stats().unattributed > 0, "{what}");
    }
    // A culprit too young to act on is waited for: nothing else is acted on meanwhile.
    let mut w = World::new(&[policy("")]);
    let mut hog = pod("spark", "hog", "n1", "batch");
    hog.created_ms = Some(T0 + 290 * S);
    w.engine.upsert_pod(hog);
    w.run(20, 30);
    let d = w.decisions();
    assert!(d.iter().all(|d| d.outcome == Outcome::Blocked), "{d:#?}");
    assert_eq!(d[0].target, "spark/hog");
    assert_eq!(
        d[0].reason,
        "waiting: the main culprit is younger than minPodAge (5m)"
    );
    // kube-system is excluded whatever the labels say.
    let mut w = World::new(&[policy("")]);
    w.engine.remove_pod("spark", "hog");
    w.engine
        .upsert_pod(pod("kube-system", "hog", "n1", "batch"));
    w.run(20, 30);
    // (Its samples are sent as spark/hog, which is gone: nothing explains the victim.)
    assert!(w.decisions().is_empty());
    let unexplained = unexplained(&w.events);
    assert_eq!(unexplained.len(), 1, "once per episode: {unexplained:#?}");
    assert_eq!(
        unexplained[0].cause, "not-significant",
        "{:?}",
        unexplained[0]
    );
}

#[test]
fn bare_and_local_storage_pods_are_allowed_when_the_policy_says_so() {
    let p = with_spec(policy(""), |s| {
        s.eviction.evict_bare_pods = true;
        s.eviction.evict_local_storage_pods = true;
    });
    let mut w = World::new(&[p]);
    let mut hog = pod("spark", "hog", "n1", "batch");
    hog.owner = None;
    hog.local_storage = true;
    w.engine.upsert_pod(hog);
    w.run(20, 30);
    assert_eq!(w.decisions()[0].target, "spark/hog");
}

#[test]
fn a_victim_is_never_a_target_even_when_it_matches_a_candidate_class() {
    let mut w = World::new(&[policy("")]);
    let mut web = pod("shop", "web", "n1", "online");
    std::sync::Arc::make_mut(&mut web.labels).insert("also".into(), "batch".into());
    w.engine.upsert_pod(web);
    w.run(20, 30);
    assert!(w.decisions().iter().all(|d| d.target != "shop/web"));
}

#[test]
fn a_pdb_without_budget_blocks_and_another_culprit_is_not_invented() {
    let mut w = World::new(&[policy("")]);
    let selector = fulcrum_policies::LabelMatcher::compile(
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(labels(&[("class", "batch")])),
            match_expressions: None,
        },
        "selector",
        &mut Default::default(),
    );
    w.engine.upsert_pdb(super::PdbInfo {
        namespace: "spark".into(),
        name: "batch-pdb".into(),
        selector,
        disruptions_allowed: Some(0),
    });
    w.run(20, 30);
    let d = w.decisions();
    assert_eq!(d.len(), 1, "reported once per episode: {d:#?}");
    assert_eq!(d[0].outcome, Outcome::Blocked);
    assert!(
        d[0].reason.contains("PodDisruptionBudget spark/batch-pdb"),
        "{}",
        d[0].reason
    );
}

#[test]
fn migrate_needs_a_node_that_fits() {
    let mut w = World::new(&[policy("")]);
    let mut full = node("n2");
    full.allocatable = Resources {
        cpu_millis: 500,
        memory_bytes: 1 << 30,
        gpus: 0,
    };
    w.engine.upsert_node(full);
    w.run(20, 30);
    let d = w.decisions();
    assert_eq!(d[0].outcome, Outcome::Blocked);
    assert!(
        d[0].reason
            .starts_with("no other node fits: 1 lack CPU, memory or GPUs"),
        "{}",
        d[0].reason
    );
}

#[test]
fn cooldown_and_node_limit_hold_between_actions() {
    // Two antagonists on one node: after the first action, the second waits for the
    // cooldown (5m) and the per-node limit (1 per 10m).
    let mut w = World::new(&[policy("")]);
    w.engine.upsert_pod(pod("spark", "hog2", "n1", "batch"));
    for i in 0..120 {
        let ts = T0 + i * 10 * S;
        let hog = if i < 20 { 1.0 } else { 4.0 + (i % 6) as f64 };
        w.offer(&sample(
            ts,
            "n1",
            Some(("shop", "web")),
            &[("latency_p99_ms", 40.0 + 30.0 * hog)],
        ));
        // Once migrated, a hog has left n1 and reports no more from it.
        let migrated = |w: &World, target: &str| {
            w.decisions()
                .iter()
                .any(|d| d.target == target && d.outcome == Outcome::Executed)
        };
        if !migrated(&w, "spark/hog") {
            w.offer(&sample(
                ts,
                "n1",
                Some(("spark", "hog")),
                &[("mem_bw", hog)],
            ));
        }
        if !migrated(&w, "spark/hog2") {
            w.offer(&sample(
                ts,
                "n1",
                Some(("spark", "hog2")),
                &[("mem_bw", hog * 0.9)],
            ));
        }
        w.offer(&sample(ts, "n2", None, &[("mem_bw", 1.0)]));
        w.offer(&sample(ts, "n2", Some(("infra", "agent")), &[("cpu", 0.1)]));
        w.engine.advance_auto(&mut w.events);
    }
    w.engine.flush(&mut w.events);
    let executed: Vec<&Decision> = w
        .decisions()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(executed.len(), 2, "{:#?}", w.decisions());
    assert!(
        executed[1].at - executed[0].at >= 600_000,
        "per-node limit: 1 per 10m"
    );
    let blocked: Vec<&str> = w
        .decisions()
        .iter()
        .filter(|d| d.outcome == Outcome::Blocked)
        .map(|d| d.reason.split(':').next().unwrap())
        .collect();
    // The episode that acted waits out its cooldown quietly; the per-node limit, which
    // outlives the cooldown, is reported once.
    assert_eq!(blocked, ["maxActionsPerNode"]);
}

#[test]
fn several_policies_take_turns_by_priority_and_act_once_per_node() {
    let low = with_spec(policy(""), |s| s.priority = 1);
    let mut high = with_spec(policy(""), |s| s.priority = 10);
    high.metadata.name = Some("urgent".into());
    let mut w = World::new(&[low, high]);
    w.run(20, 30);
    let executed: Vec<&Decision> = w
        .decisions()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].policy, "urgent");
}

#[test]
fn late_duplicate_and_unknown_samples_are_counted_and_dropped() {
    let mut w = World::new(&[policy("")]);
    let m = [("latency_p99_ms", 10.0)];
    assert_eq!(w.offer(&sample(T0, "nope", None, &m)), Offered::UnknownNode);
    assert_eq!(
        w.offer(&sample(T0, "n1", Some(("shop", "ghost")), &m)),
        Offered::UnknownPod
    );
    assert_eq!(
        w.offer(&sample(T0, "n2", Some(("shop", "web")), &m)),
        Offered::UnknownPod,
        "wrong node"
    );
    let mut other = sample(T0, "n1", Some(("shop", "web")), &m);
    other.pod.as_mut().unwrap().uid = Some(Cow::Borrowed("another-incarnation"));
    assert_eq!(w.offer(&other), Offered::UnknownPod);
    assert_eq!(
        w.offer(&sample(
            T0,
            "n1",
            Some(("shop", "web")),
            &[("unrelated", 1.0)]
        )),
        Offered::Irrelevant
    );
    // Until two samples agree on what time it is, the first one waits (it could come
    // from a broken clock); a duplicate of it does not count as a second instant.
    assert_eq!(
        w.offer(&sample(T0, "n1", Some(("shop", "web")), &m)),
        Offered::Held
    );
    assert_eq!(
        w.offer(&sample(T0, "n1", Some(("shop", "web")), &m)),
        Offered::Held
    );
    assert_eq!(
        w.offer(&sample(T0 + 10 * S, "n1", Some(("shop", "web")), &m)),
        Offered::Queued
    );
    assert_eq!(
        w.offer(&sample(T0 + 3_600_000, "n1", Some(("shop", "web")), &m)),
        Offered::Held,
        "one broken clock must not make everything late"
    );
    w.engine.advance(T0 + 30 * S, &mut w.events);
    assert_eq!(
        w.offer(&sample(T0 + 20 * S, "n1", Some(("shop", "web")), &m)),
        Offered::Late
    );
    let s = w.engine.stats();
    assert_eq!(
        (
            s.unknown_node,
            s.unknown_pod,
            s.irrelevant,
            s.duplicates,
            s.late,
            s.applied
        ),
        (1, 3, 1, 1, 1, 2)
    );
}

#[test]
fn out_of_order_samples_within_the_lateness_are_applied_in_order() {
    let mut ordered = World::new(&[policy("")]);
    ordered.run(20, 30);
    let mut shuffled = World::new(&[policy("")]);
    // Same samples, with each pair of ticks delivered newest first.
    let mut lines: Vec<(i64, f64)> = (0..20).map(|i| (i, 1.0 + ((i % 3) as f64) * 0.1)).collect();
    lines.extend((20..50).map(|i| (i, 4.0 + (i % 6) as f64)));
    for pair in lines.chunks(2) {
        for &(i, hog) in pair.iter().rev() {
            shuffled.tick(i, hog);
        }
    }
    shuffled.engine.flush(&mut shuffled.events);
    assert_eq!(shuffled.engine.stats().late, 0);
    assert_eq!(ordered.events, shuffled.events);
}

#[test]
fn a_forgotten_node_warms_up_again_with_its_node_triggers_and_remembers_its_actions() {
    let p = with_spec(policy(""), |s| {
        s.triggers[0].scope = fulcrum_policies::spec::TriggerScope::Node;
        s.triggers[0].metric = "mem_bw_util".into();
        s.triggers[0].above = Some(0.8);
    });
    let mut w = World::new(&[p]);
    let n1 = w.engine.cluster().node_id("n1").unwrap();
    let tracks = |w: &World| w.engine.nodes[n1.index()].as_ref().unwrap().tracks.len();
    assert_eq!(tracks(&w), 1);
    let hog = w.engine.cluster().pod_id("spark", "hog").unwrap();
    w.engine.pods[hog.index()].as_mut().unwrap().acted = true;
    w.engine.forget_node("n1");
    assert_eq!(tracks(&w), 1, "node-scope tracks are rebuilt");
    assert!(
        w.engine.pods[hog.index()].as_ref().unwrap().acted,
        "acted pods stay acted"
    );
}

#[test]
fn vanished_pods_free_their_state() {
    let mut w = World::new(&[policy("")]);
    w.run(5, 0);
    let id = w.engine.cluster().pod_id("spark", "hog").unwrap();
    assert!(w.engine.pods[id.index()].is_some());
    w.engine.remove_pod("spark", "hog");
    assert!(w.engine.pods[id.index()].is_none());
    assert_eq!(w.engine.cluster().pod_count(), 4);
}

#[test]
fn a_retracted_action_frees_its_limit_budget() {
    let mut w = World::new(&[policy("")]);
    w.run(20, 30);
    let first = w.decisions()[0].clone();
    w.engine.retract(&first);
    let ledger = &w.engine.policies[0].ledger;
    assert_eq!(ledger.records().count(), 0);
    // The episode decides again on the next samples (a refused eviction is retried).
    let before = w.decisions().len();
    for i in 50..53 {
        w.tick(i, 6.0);
    }
    let again: Vec<&Decision> = w.decisions()[before..].to_vec();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].outcome, Outcome::Executed, "{again:#?}");
    assert_eq!(again[0].target, first.target);
}

/// A random world: `nodes` nodes, pods of random classes, random samples.
#[derive(Clone, Debug)]
struct RandomWorld {
    pods: Vec<(usize, &'static str, bool)>, // (node, class, protected)
    samples: Vec<(i64, usize, usize, f64, f64)>, // (tick, pod, _, latency, mem_bw)
    limits: (u32, u32, u32, u32),
}

fn random_world() -> impl Strategy<Value = RandomWorld> {
    let pods = proptest::collection::vec(
        (
            0..4usize,
            prop_oneof![Just("online"), Just("batch"), Just("ai"), Just("other")],
            proptest::bool::weighted(0.2),
        ),
        4..16,
    );
    (pods, 1..3u32, 1..3u32, 1..4u32, 1..5u32).prop_flat_map(|(pods, a, b, c, d)| {
        let n = pods.len();
        let samples = proptest::collection::vec(
            (0..60i64, 0..n, Just(0usize), 0.0..400.0f64, 0.0..10.0f64),
            50..400,
        );
        (Just(pods), samples, Just((a, b, c, d))).prop_map(|(pods, mut samples, limits)| {
            // One sample per (tick, pod): duplicates with different values would make the
            // kept one depend on arrival order, which is documented (first wins).
            let mut seen = std::collections::HashSet::new();
            samples.retain(|s| seen.insert((s.0, s.1)));
            RandomWorld {
                pods,
                samples,
                limits,
            }
        })
    })
}

/// A world whose antagonists drive their victims: every pod samples every tick for 40
/// ticks; pods that are not online are quiet for 15 ticks, then burst (each its own random
/// level per tick), and an online pod's latency is 40 + 20 × the summed bandwidth of the
/// other pods on its node.
fn driven_world() -> impl Strategy<Value = RandomWorld> {
    let pods = proptest::collection::vec(
        (
            0..4usize,
            prop_oneof![Just("online"), Just("batch"), Just("ai"), Just("other")],
            proptest::bool::weighted(0.2),
        ),
        4..16,
    );
    (pods, 1..3u32, 1..3u32, 1..4u32, 1..5u32).prop_flat_map(|(pods, a, b, c, d)| {
        let n = pods.len();
        let levels = proptest::collection::vec(0.0..1.0f64, n * 40);
        (Just(pods), levels, Just((a, b, c, d))).prop_map(|(pods, u, limits)| {
            let n = pods.len();
            let bw = |k: usize, i: usize| {
                if k < 15 {
                    0.1 + 0.1 * u[k * n + i]
                } else {
                    2.0 + 8.0 * u[k * n + i]
                }
            };
            let mut samples = Vec::new();
            for k in 0..40 {
                for (i, &(node, class, _)) in pods.iter().enumerate() {
                    let (latency, own) = if class == "online" {
                        let load: f64 = (0..n)
                            .filter(|&j| pods[j].0 == node && pods[j].1 != "online")
                            .map(|j| bw(k, j))
                            .sum();
                        (40.0 + 20.0 * load, 0.5)
                    } else {
                        (50.0, bw(k, i))
                    };
                    samples.push((k as i64, i, 0, latency, own));
                }
            }
            RandomWorld {
                pods,
                samples,
                limits,
            }
        })
    })
}

/// True when some node holds a victim and a candidate that may be acted on.
fn has_actionable_pair(world: &RandomWorld) -> bool {
    world.pods.iter().any(|&(node, class, _)| {
        class == "online"
            && world
                .pods
                .iter()
                .any(|&(n, c, protected)| n == node && (c == "batch" || c == "ai") && !protected)
    })
}

fn run_random(world: &RandomWorld, order: &[usize]) -> (Vec<Event>, Engine) {
    let p = with_spec(policy(""), |s| {
        s.limits.max_actions_per_node.count = world.limits.0;
        s.limits.max_actions_per_workload.count = world.limits.1;
        s.limits.max_actions_per_namespace.count = world.limits.2;
        s.limits.max_actions_total.count = world.limits.3;
        s.limits.cooldown = "0s".into();
        s.triggers[0].sustained_for = "10s".into();
        s.attribution.min_correlation = 0.0;
    });
    let mut engine = Engine::new(EngineConfig {
        min_correlation_points: 2,
        min_usage_share: 0.0,
        min_usage_variation: 0.0,
        storm_fraction: 1.0,
        // Random data rarely explains anything: test every level so that the limits see
        // actions.
        false_blame_rate: f64::INFINITY,
        ..EngineConfig::default()
    });
    for n in 0..5 {
        engine.upsert_node(node(&format!("n{n}")));
    }
    for (i, (n, class, protected)) in world.pods.iter().enumerate() {
        let mut info = pod(
            if i % 2 == 0 { "a" } else { "b" },
            &format!("p{i}"),
            &format!("n{n}"),
            class,
        );
        info.protected = *protected;
        info.workload = format!("w{}", i % 3).into();
        engine.upsert_pod(info);
    }
    assert!(engine.set_policies(&[p]).is_empty());
    let names: Vec<(String, String, String)> = world
        .pods
        .iter()
        .enumerate()
        .map(|(i, (n, _, _))| {
            (
                format!("n{n}"),
                if i % 2 == 0 { "a".into() } else { "b".into() },
                format!("p{i}"),
            )
        })
        .collect();
    let mut events = Vec::new();
    for &k in order {
        let (tick, pod, _, latency, bw) = world.samples[k];
        let (node, ns, name) = &names[pod];
        let s = sample(
            T0 + tick * 10 * S,
            node,
            Some((ns, name)),
            &[
                ("latency_p99_ms", latency),
                ("mem_bw", bw),
                ("cpu", bw / 2.0),
            ],
        );
        engine.offer(&s);
        engine.advance_auto(&mut events);
    }
    engine.flush(&mut events);
    (events, engine)
}

/// Only candidates that are not protected are acted on, and no limit is exceeded.
fn safe_and_within_limits(
    world: &RandomWorld,
    events: &[Event],
) -> Result<(), proptest::test_runner::TestCaseError> {
    let acted: Vec<&Decision> = events
        .iter()
        .filter_map(|e| match e {
            Event::Decision(d) if d.outcome != Outcome::Blocked => Some(d.as_ref()),
            _ => None,
        })
        .collect();
    let index = |d: &Decision| -> usize {
        d.target
            .split("/p")
            .nth(1)
            .and_then(|i| i.parse().ok())
            .unwrap_or(usize::MAX)
    };
    for d in &acted {
        let (_, class, protected) = world.pods[index(d)];
        prop_assert!(class == "batch" || class == "ai", "{d:?}");
        prop_assert!(!protected, "{d:?}");
    }
    let (node_max, workload_max, ns_max, total_max) = world.limits;
    // Windows (10m / 1h) are longer than the 10 min of samples: counts are totals.
    prop_assert!(acted.len() as u32 <= total_max);
    let count = |f: &dyn Fn(&Decision) -> String| {
        let mut m: BTreeMap<String, u32> = BTreeMap::new();
        for d in &acted {
            *m.entry(f(d)).or_default() += 1;
        }
        m.values().copied().max().unwrap_or(0)
    };
    prop_assert!(count(&|d| d.node.clone()) <= node_max);
    prop_assert!(count(&|d| d.target.split('/').next().unwrap_or_default().to_owned()) <= ns_max);
    let per_workload = count(&|d| format!("w{}", index(d) % 3));
    prop_assert!(per_workload <= workload_max);
    Ok(())
}

fn by_time(world: &RandomWorld) -> Vec<usize> {
    let mut order: Vec<usize> = (0..world.samples.len()).collect();
    order.sort_by_key(|&k| world.samples[k].0);
    order
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn victims_and_protected_pods_are_never_targeted_and_limits_hold(world in random_world()) {
        let (events, _) = run_random(&world, &by_time(&world));
        safe_and_within_limits(&world, &events)?;
    }

    #[test]
    fn limits_hold_where_antagonists_drive_their_victims(world in driven_world()) {
        let (events, _) = run_random(&world, &by_time(&world));
        safe_and_within_limits(&world, &events)?;
    }

    #[test]
    fn the_same_input_gives_the_same_decisions(world in random_world()) {
        let order = by_time(&world);
        let (a, _) = run_random(&world, &order);
        let (b, _) = run_random(&world, &order);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn shuffling_within_the_lateness_bound_changes_nothing(world in random_world(), seed in any::<u64>()) {
        let order = by_time(&world);
        // Swap neighbours whose ticks are within one tick (10 s < 15 s lateness).
        let mut shuffled = order.clone();
        let mut state = seed | 1;
        for i in 1..shuffled.len() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            let (a, b) = (world.samples[shuffled[i - 1]].0, world.samples[shuffled[i]].0);
            if state % 2 == 0 && (b - a).abs() <= 1 {
                shuffled.swap(i - 1, i);
            }
        }
        let (a, ea) = run_random(&world, &order);
        let (b, eb) = run_random(&world, &shuffled);
        prop_assert_eq!(eb.stats().late, 0);
        prop_assert_eq!(ea.stats().applied, eb.stats().applied);
        prop_assert_eq!(a, b);
    }
}

/// The limits property above is only as strong as the worlds it sees: they must lead to
/// actions, and many must run into a limit, or it proves nothing. In worlds whose
/// antagonists drive their victims, every world with a victim next to a candidate that may
/// be acted on acts.
#[test]
fn the_limits_property_sees_actions_and_limits_that_bind() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = driven_world();
    let (mut with_actions, mut binding, mut eligible, cases) = (0, 0, 0, 64);
    for _ in 0..cases {
        let world = strategy.new_tree(&mut runner).unwrap().current();
        eligible += usize::from(has_actionable_pair(&world));
        let (events, _) = run_random(&world, &by_time(&world));
        let decisions: Vec<&Decision> = events
            .iter()
            .filter_map(|e| match e {
                Event::Decision(d) => Some(d.as_ref()),
                _ => None,
            })
            .collect();
        if decisions.iter().any(|d| d.outcome != Outcome::Blocked) {
            with_actions += 1;
        }
        if decisions
            .iter()
            .any(|d| d.outcome == Outcome::Blocked && d.reason.starts_with("maxActions"))
        {
            binding += 1;
        }
    }
    // Every world in which an antagonist that may be acted on drives a victim acts, and
    // (the control) no other world does; limits bind in a good share of them.
    assert!(eligible * 2 >= cases, "{eligible} of {cases} worlds");
    assert_eq!(
        with_actions, eligible,
        "{with_actions} worlds acted, {eligible} had an actionable pair"
    );
    assert!(
        binding * 4 > cases,
        "{binding} of {cases} worlds hit a limit"
    );
}

#[test]
fn editing_one_policy_keeps_the_trigger_and_episode_state_of_the_others() {
    let mut w = World::new(&[policy("")]);
    for i in 0..26 {
        w.tick(i, if i < 20 { 1.0 } else { 6.0 });
    }
    let web = w.engine.cluster.pod_id("shop", "web").expect("web");
    let n1 = w.engine.cluster.node_id("n1").expect("n1");
    let since = |e: &Engine, name: &str| -> Option<i64> {
        let p = e.policies.iter().position(|s| s.policy.name == name)? as u16;
        let state = e.pods[web.index()].as_ref()?;
        state.tracks.iter().find(|t| t.policy == p)?.since
    };
    let episodes = |e: &Engine, name: &str| -> usize {
        let Some(p) = e.policies.iter().position(|s| s.policy.name == name) else {
            return 0;
        };
        e.nodes[n1.index()].as_ref().map_or(0, |n| {
            n.episodes.iter().filter(|x| x.policy == p as u16).count()
        })
    };
    let before = since(&w.engine, "protect");
    assert!(before.is_some(), "the trigger holds before the edit");
    assert_eq!(episodes(&w.engine, "protect"), 1);
    let mut other = with_spec(policy(""), |s| s.priority = 10);
    other.metadata.name = Some("other".into());
    // "other" sorts first, so "protect" moves from index 0 to 1 and keeps its state.
    assert!(
        w.engine
            .set_policies(&[policy(""), other.clone()])
            .is_empty()
    );
    assert_eq!(since(&w.engine, "protect"), before);
    assert_eq!(episodes(&w.engine, "protect"), 1);
    assert_eq!(since(&w.engine, "other"), None);
    // Control: editing "protect" itself starts its state over.
    let edited = with_spec(policy(""), |s| s.priority = 5);
    assert!(w.engine.set_policies(&[edited, other]).is_empty());
    assert_eq!(since(&w.engine, "protect"), None);
    assert_eq!(episodes(&w.engine, "protect"), 0);
}
