//! Attribution that never blames a bystander, as `fulcrum replay` sees it: recorded-style
//! scenarios (the cluster list and JSON Lines of `scenario.rs`) for each way the engine
//! used to blame an innocent pod, each with the control that shows what it should find.

use fulcrum::replay::{ReplayInput, ReplayReport, replay_files};
use fulcrum_engine::decision::Outcome;
use fulcrum_engine::{Decision, EngineConfig, Event};

use crate::scenario::{POLICY, Scenario, T0, replay, replay_with, temp_dir};

fn decisions(report: &ReplayReport) -> Vec<&Decision> {
    report.decisions().collect()
}

fn unexplained(report: &ReplayReport) -> Vec<&fulcrum_engine::decision::Unexplained> {
    report
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Unexplained(u) => Some(u.as_ref()),
            _ => None,
        })
        .collect()
}

/// The main culprit cannot be acted on; a busy decoy partly follows it. Nothing is acted
/// on: one Blocked decision names the culprit and why, and the decoy is not blamed.
fn main_culprit_not_actionable(owner: &'static str, class: &'static str, name: &str) {
    let mut scenario = Scenario::new(4, Some(60));
    scenario.variant.antagonist_owner = owner;
    scenario.variant.antagonist_class = class;
    scenario.variant.decoy_follows = true;
    let report = replay(&scenario, "Enforce", name);
    let d = decisions(&report);
    assert!(
        d.iter().all(|d| d.outcome == Outcome::Blocked),
        "{name}: {d:#?}"
    );
    assert_eq!(d.len(), 1, "{name}: {d:#?}");
    assert_eq!(d[0].target, "spark/sort-exec-0", "{name}");
    assert!(
        d[0].reason.starts_with("spark/sort-exec-0 explains"),
        "{}",
        d[0].reason
    );
    // The decoy looks correlated on its own, and not after accounting for the culprit.
    let decoy = d[0]
        .explanation
        .scores
        .iter()
        .find(|s| s.pod == "spark/etl-exec-0")
        .expect("decoy scored");
    let r = decoy
        .metrics
        .iter()
        .find(|m| m.metric == "cpu_usage_cores")
        .and_then(|m| m.correlation)
        .unwrap_or(0.0);
    assert!(r > 0.3, "{name}: the decoy looks correlated: {decoy:?}");
    assert!(d.iter().all(|d| d.target != "spark/etl-exec-0"));
}

#[test]
fn a_daemonset_main_culprit_blocks_and_the_correlated_decoy_is_not_acted_on() {
    main_culprit_not_actionable("DaemonSet", "batch", "daemonset");
}

#[test]
fn a_non_candidate_main_culprit_blocks_and_the_correlated_decoy_is_not_acted_on() {
    main_culprit_not_actionable("ReplicaSet", "", "noncandidate");
}

#[test]
fn the_control_the_same_culprit_as_a_candidate_is_migrated_not_the_decoy() {
    let mut scenario = Scenario::new(4, Some(60));
    scenario.variant.decoy_follows = true;
    let report = replay(&scenario, "Enforce", "decoy-control");
    let d = decisions(&report);
    assert_eq!(d[0].target, "spark/sort-exec-0", "{d:#?}");
    assert_eq!(d[0].outcome, Outcome::Executed);
    assert!(d.iter().all(|d| d.target != "spark/etl-exec-0"));
}

#[test]
fn a_victim_degraded_on_its_own_for_an_hour_blames_nobody() {
    let mut scenario = Scenario::new(3, None);
    scenario.ticks = 400; // 66 minutes at 10 s
    scenario.variant.victim_alone = true;
    let report = replay(&scenario, "Enforce", "noise-hour");
    assert!(decisions(&report).is_empty(), "{:#?}", decisions(&report));
    assert_eq!(report.engine.stats().detections, 1, "one long episode");
    // Said once, with why.
    let u = unexplained(&report);
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!(u[0].victim.as_deref(), Some("shop/cart-0"));
    assert_eq!(u[0].cause, "not-significant", "{}", u[0].reason);
    assert!(
        report.engine.stats().unattributed > 300,
        "evaluated all along"
    );
}

#[test]
fn a_steady_hog_present_from_before_the_window_is_found() {
    // The hog starts at tick 60 and holds a flat level; it is young, so the engine waits
    // out minPodAge (5m) and acts when the 5m window no longer holds the onset.
    let mut scenario = Scenario::new(4, Some(60));
    scenario.variant.steady = true;
    scenario.variant.created_at_onset = true;
    let report = replay(&scenario, "Enforce", "steady-hog");
    let d = decisions(&report);
    let acted: Vec<_> = d
        .iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(acted.len(), 1, "{d:#?}");
    assert_eq!(acted[0].target, "spark/sort-exec-0");
    assert!(acted[0].at >= T0 + 60 * 10_000 + 300_000, "after minPodAge");
    let top = &acted[0].explanation.scores[0];
    assert!(
        top.metrics
            .iter()
            .any(|m| m.onset_step.is_some_and(|z| z > 6.0)),
        "found by its step at the onset: {top:?}"
    );
    // Before, it was waited for: nothing else was acted on.
    assert!(d.iter().all(|d| d.target == "spark/sort-exec-0"), "{d:#?}");
}

/// Every pod on every node follows one cluster-wide load (a rising morning and traffic
/// that moves from one sample to the next everywhere at once).
fn co_movement(name: &str, config: EngineConfig) -> ReplayReport {
    let mut scenario = Scenario::new(4, None);
    scenario.ticks = 720; // two hours
    scenario.variant.daily_curve = true;
    replay_with(&scenario, "Enforce", name, config)
}

#[test]
fn cluster_wide_co_movement_is_not_evidence() {
    let report = co_movement("daily-curve", EngineConfig::default());
    assert!(
        report.engine.stats().detections > 0,
        "the curve crosses the SLO"
    );
    assert!(decisions(&report).is_empty(), "{:#?}", decisions(&report));
    let u = unexplained(&report);
    assert!(!u.is_empty());
    // The correlations were there, and the placebo matched them.
    let matched = u.iter().flat_map(|u| &u.explanation.scores).any(|s| {
        s.metrics.iter().any(|m| {
            m.correlation.is_some_and(|r| r > 0.5)
                && m.common_mode.is_some_and(|c| c.placebo_correlation > 0.5)
                && !m.significant
        })
    });
    assert!(matched, "{u:#?}");
}

#[test]
fn the_control_without_the_placebo_the_same_co_movement_blames_a_bystander() {
    let config = EngineConfig {
        placebo_pods: 0,
        ..EngineConfig::default()
    };
    let report = co_movement("daily-curve-control", config);
    let d = decisions(&report);
    assert!(
        d.iter()
            .any(|d| d.target.starts_with("spark/") || d.target.starts_with("infra/")),
        "{d:#?}"
    );
}

/// A second policy, evaluated after the scenario's (lower priority), for AI pods only.
const AI_POLICY: &str = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: online-vs-ai}
spec:
  mode: Enforce
  priority: 200
  nodeSelector: {matchLabels: {pool: colocated}}
  victims: {podSelector: {matchLabels: {fulcrum.dev/class: online}}}
  candidates:
    - {name: ai, podSelector: {matchLabels: {fulcrum.dev/class: ai}}, action: Evict}
  triggers:
    - {name: p99-slo, metric: latency_p99_ms, above: 250, sustainedFor: 30s}
  attribution:
    method: Correlation
    metrics: [mem_bw_bytes_per_sec, cpu_usage_cores, llc_miss_rate]
    window: 5m
    minCorrelation: 0.3
"#;

#[test]
fn two_policies_where_the_first_finds_no_culprit_act_only_through_the_second() {
    let scenario = Scenario::new(4, Some(60));
    let dir = temp_dir("two-policies");
    let (cluster, events) = scenario.write(&dir);
    let first = dir.join("ai.yaml");
    let second = dir.join("batch.yaml");
    std::fs::write(&first, AI_POLICY).unwrap();
    std::fs::write(&second, POLICY.replace("MODE", "Enforce")).unwrap();
    let input = ReplayInput {
        cluster: vec![cluster],
        policies: vec![first, second],
        config: EngineConfig::default(),
    };
    let report = replay_files(&input, &events, T0 + 86_400_000).expect("replay runs");
    std::fs::remove_dir_all(&dir).unwrap();
    let d = decisions(&report);
    // The AI policy's best explanation is not one of its candidates: it blocks, and no AI
    // pod is evicted in its place; the batch policy migrates the antagonist.
    assert!(d.iter().all(|d| !d.target.starts_with("ml/")), "{d:#?}");
    let ai: Vec<_> = d.iter().filter(|d| d.policy == "online-vs-ai").collect();
    assert!(ai.iter().all(|d| d.outcome == Outcome::Blocked), "{ai:#?}");
    let acted: Vec<_> = d
        .iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(acted.len(), 1, "{d:#?}");
    assert_eq!(acted[0].policy, "protect-online");
    assert_eq!(acted[0].target, "spark/sort-exec-0");
}
