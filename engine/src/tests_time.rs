//! Event-time tests on real-shaped feeds: pauses of the whole stream, broken clocks,
//! far-future first samples, and the accounting of every offered sample.

use std::borrow::Cow;

use proptest::prelude::*;
use smallvec::SmallVec;

use super::cluster::NodeInfo;
use super::decision::Event;
use super::{Engine, EngineConfig, Offered};
use crate::sample::{Metric, Sample};

const T0: i64 = 1_764_151_200_000;
const S: i64 = 1_000;
const MIN: i64 = 60 * S;

fn policy() -> fulcrum_policies::InterferencePolicy {
    let text = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: node-pressure}
spec:
  mode: DryRun
  victims: {podSelector: {matchLabels: {class: online}}}
  candidates:
    - {name: batch, podSelector: {matchLabels: {class: batch}}, action: Evict}
  triggers:
    - {name: psi, metric: psi_mem_some_avg10, scope: Node, above: 0.5, sustainedFor: 30s}
  attribution: {method: Usage, metrics: [mem_bw], window: 2m}
"#;
    let value: serde_json::Value = serde_yaml_ng::from_str(text).expect("policy YAML");
    fulcrum_policies::document::check_document(&value).unwrap_or_else(|e| panic!("{e:?}"))
}

fn engine(nodes: &[&str]) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    for name in nodes {
        engine.upsert_node(NodeInfo {
            name: (*name).into(),
            ready: true,
            ..NodeInfo::default()
        });
    }
    let invalid = engine.set_policies(&[policy()]);
    assert!(invalid.is_empty(), "{invalid:?}");
    engine
}

fn node_sample(ts: i64, node: &str) -> Sample<'_> {
    Sample {
        ts_ms: ts,
        node: Cow::Borrowed(node),
        pod: None,
        container: None,
        metrics: [Metric {
            name: Cow::Borrowed("psi_mem_some_avg10"),
            value: 0.1,
        }]
        .into_iter()
        .collect::<SmallVec<_>>(),
    }
}

/// Offers each (ts, node) in order as a replay does (advancing after each), then flushes.
fn replay(engine: &mut Engine, samples: &[(i64, &str)]) -> Vec<Event> {
    let mut out = Vec::new();
    for (ts, node) in samples {
        engine.offer(&node_sample(*ts, node));
        engine.advance_auto(&mut out);
    }
    engine.flush(&mut out);
    out
}

/// Every offered sample is applied, dropped for a counted reason, or still waiting.
fn assert_accounted(engine: &Engine) {
    let s = engine.stats();
    let accounted = s.applied
        + s.late
        + s.duplicates
        + s.unknown_node
        + s.unknown_pod
        + s.irrelevant
        + s.too_far_ahead
        + s.forgotten
        + engine.buffered() as u64
        + engine.held() as u64;
    assert_eq!(s.offered, accounted, "{s:?}");
}

#[test]
fn a_pause_of_the_whole_stream_longer_than_the_jump_bound_does_not_stop_ingestion() {
    // The issue's repro: one node, a 10 min 30 s pause, then a 49 min one.
    let mut e = engine(&["n1"]);
    let at = [
        0,
        10 * S,
        20 * S,
        30 * S,
        11 * MIN,
        11 * MIN + 10 * S,
        60 * MIN,
    ]
    .into_iter()
    .chain([60 * MIN + 10 * S, 60 * MIN + 20 * S]);
    let samples: Vec<(i64, &str)> = at.map(|t| (T0 + t, "n1")).collect();
    replay(&mut e, &samples);
    assert_eq!(e.stats().applied, 9, "{:?}", e.stats());
    assert_eq!(e.stats().too_far_ahead, 0);
    assert_accounted(&e);
}

#[test]
fn a_whole_cluster_resuming_after_an_outage_confirms_the_jump_across_nodes() {
    let mut e = engine(&["n1", "n2", "n3"]);
    let mut samples = Vec::new();
    for t in [0, 60 * S, 120 * S, 5 * 3_600 * S, 5 * 3_600 * S + 60 * S] {
        for n in ["n1", "n2", "n3"] {
            samples.push((T0 + t, n));
        }
    }
    replay(&mut e, &samples);
    assert_eq!(e.stats().applied, 15, "{:?}", e.stats());
    assert_accounted(&e);
}

#[test]
fn one_node_with_a_clock_an_hour_ahead_is_held_back_alone() {
    let mut e = engine(&["n1", "n2", "bad"]);
    let mut samples = Vec::new();
    for i in 0..30 {
        let t = T0 + i * 10 * S;
        samples.push((t, "n1"));
        samples.push((t, "n2"));
        samples.push((t + 3_600 * S, "bad"));
    }
    let mut out = Vec::new();
    for (ts, node) in &samples {
        e.offer(&node_sample(*ts, node));
        e.advance_auto(&mut out);
    }
    assert_eq!(e.stats().late, 0, "the broken clock made real samples late");
    assert_eq!(
        e.held(),
        30,
        "the bad node's samples wait for a second node"
    );
    e.flush(&mut out);
    assert_eq!(e.stats().applied, 60);
    assert_eq!(e.stats().too_far_ahead, 30);
    assert_accounted(&e);
}

#[test]
fn a_far_future_first_sample_does_not_make_the_real_ones_late() {
    // A file (or a partition) whose first line comes from a clock a day ahead.
    let mut e = engine(&["n1", "n2"]);
    let mut samples = vec![(T0 + 24 * 3_600 * S - S, "n2")];
    for i in 0..20 {
        samples.push((T0 + i * 60 * S, "n1"));
    }
    let mut out = Vec::new();
    for (ts, node) in &samples {
        e.offer(&node_sample(*ts, node));
        e.advance_auto(&mut out);
    }
    assert_eq!(e.stats().late, 0, "{:?}", e.stats());
    assert!(e.watermark() < T0 + 20 * 60 * S);
    e.flush(&mut out);
    assert_eq!(e.stats().applied, 20);
    assert_eq!(e.stats().too_far_ahead, 1);
    assert_accounted(&e);
}

#[test]
fn the_held_pool_is_bounded_and_what_it_pushes_out_is_counted() {
    let mut e = engine(&["n1", "n2", "bad"]);
    let mut out = Vec::new();
    e.offer(&node_sample(T0, "n1"));
    e.offer(&node_sample(T0, "n2"));
    let extra = 10u64;
    for i in 0..(crate::jump::HELD_CAPACITY as i64 + extra as i64) {
        assert_eq!(
            e.offer(&node_sample(T0 + 3_600 * S + i * S, "bad")),
            Offered::Held
        );
    }
    e.advance_auto(&mut out);
    assert_eq!(e.held(), crate::jump::HELD_CAPACITY);
    assert_eq!(e.stats().too_far_ahead, extra);
    assert_accounted(&e);
}

#[test]
fn a_watermark_pushed_past_a_lagging_stream_drains_the_buffer_and_counts_its_stragglers() {
    // What the feed does when the reorder buffer passes its bound: it stops waiting for
    // the lagging partition and advances to the fastest one's time.
    let mut e = engine(&["fast", "slow"]);
    let mut out = Vec::new();
    e.offer(&node_sample(T0, "slow"));
    for i in 0..100 {
        assert_eq!(
            e.offer(&node_sample(T0 + i * 10 * S, "fast")),
            Offered::Queued
        );
    }
    e.advance(T0, &mut out);
    assert_eq!(e.buffered(), 99, "held back by the slow stream");
    e.advance(T0 + 99 * 10 * S, &mut out);
    assert_eq!(e.buffered(), 0);
    assert_eq!(e.stats().applied, 101);
    for i in 1..100 {
        assert_eq!(
            e.offer(&node_sample(T0 + i * 10 * S, "slow")),
            Offered::Late
        );
    }
    assert_eq!(
        e.offer(&node_sample(T0 + 100 * 10 * S, "slow")),
        Offered::Queued
    );
    assert_eq!(e.stats().late, 99);
    assert_accounted(&e);
}

#[test]
fn samples_of_a_forgotten_node_still_queued_are_dropped_and_counted() {
    let mut e = engine(&["n1", "n2"]);
    let mut out = Vec::new();
    for i in 0..5 {
        e.offer(&node_sample(T0 + i * 10 * S, "n1"));
        e.offer(&node_sample(T0 + i * 10 * S, "n2"));
    }
    e.advance_auto(&mut out);
    let queued_n1 = 2; // within the 15 s lateness: T0+30s and T0+40s
    e.forget_node("n1");
    e.flush(&mut out);
    assert_eq!(e.stats().forgotten, queued_n1, "{:?}", e.stats());
    assert_eq!(e.stats().applied, 10 - queued_n1);
    assert_accounted(&e);
}

proptest! {
    /// Inserting a pause of any length into a stream (at least two samples on each side)
    /// never lowers the number of samples applied after it.
    #[test]
    fn a_gap_of_any_length_never_lowers_what_is_applied_after_it(
        steps in prop::collection::vec(1i64..120, 4..60),
        cut in 2usize..100,
        gap in 0i64..(8 * 24 * 3_600),
        nodes in 1usize..4,
    ) {
        let names = ["n1", "n2", "n3"];
        let cut = cut.min(steps.len() - 2).max(2);
        let mut times = Vec::new();
        let mut t = T0;
        for s in &steps {
            t += s * S;
            times.push(t);
        }
        let count_after = |gap_ms: i64| {
            let mut e = engine(&names[..nodes]);
            let mut samples = Vec::new();
            for (i, t) in times.iter().enumerate() {
                let t = if i >= cut { t + gap_ms } else { *t };
                for n in &names[..nodes] {
                    samples.push((t, *n));
                }
            }
            replay(&mut e, &samples);
            assert_accounted(&e);
            e.stats().applied
        };
        prop_assert!(count_after(gap * S) >= count_after(0));
    }
}

#[test]
fn node_churn_reuses_slots_and_restored_targets_expire() {
    let mut e = engine(&["n1"]);
    for i in 0..1_000 {
        let name = format!("spot-{i}");
        e.upsert_node(NodeInfo {
            name: name.clone(),
            ready: true,
            ..NodeInfo::default()
        });
        e.remove_node(&name);
    }
    assert!(
        e.nodes.len() <= 2 && e.node_seen.len() <= 2,
        "node slots grew with churn: {}",
        e.nodes.len()
    );
    // A restored action bars its target for a day of event time, then is forgotten.
    let mut w = super::tests::World::new(&[super::tests::policy("")]);
    w.run(20, 30);
    let executed: Vec<_> = w.decisions().into_iter().cloned().collect();
    let mut fresh = super::tests::World::new(&[super::tests::policy("")]);
    for d in &executed {
        fresh.engine.restore(d);
    }
    assert!(!fresh.engine.acted_targets.is_empty());
    let mut out = Vec::new();
    let later = executed[0].at + crate::RESTORED_TARGET_TTL_MS + 3_600 * S;
    for t in [later, later + 10 * S] {
        let web = super::tests::sample(t, "n1", Some(("shop", "web")), &[("latency_p99_ms", 1.0)]);
        assert_ne!(fresh.engine.offer(&web), Offered::Irrelevant);
    }
    fresh.engine.flush(&mut out);
    assert!(fresh.engine.acted_targets.is_empty());
}

fn psi_sample(ts: i64, node: &str, psi: f64) -> Sample<'_> {
    let mut s = node_sample(ts, node);
    s.metrics[0].value = psi;
    s
}

fn detections(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Detected { .. }))
        .count()
}

#[test]
fn a_sixty_second_feed_with_jitter_sustains_its_triggers() {
    // Every interval a little over the default 60 s floor, as on the production trace.
    let mut e = engine(&["n1"]);
    let mut out = Vec::new();
    let mut t = T0;
    for i in 0..20u64 {
        t += 60 * S + (1 + i % 5) as i64 * S;
        e.offer(&psi_sample(t, "n1", 0.9));
        e.advance_auto(&mut out);
    }
    e.flush(&mut out);
    assert_eq!(detections(&out), 1, "{out:#?}");
    // Control: an explicit --stale-after 60s is a fixed bound, which such a feed breaks.
    let mut fixed = Engine::new(EngineConfig {
        stale_cadences: 0.0,
        ..EngineConfig::default()
    });
    fixed.upsert_node(NodeInfo {
        name: "n1".into(),
        ready: true,
        ..NodeInfo::default()
    });
    fixed.set_policies(&[policy()]);
    let mut out = Vec::new();
    let mut t = T0;
    for i in 0..20u64 {
        t += 60 * S + (1 + i % 5) as i64 * S;
        fixed.offer(&psi_sample(t, "n1", 0.9));
        fixed.advance_auto(&mut out);
    }
    fixed.flush(&mut out);
    assert_eq!(detections(&out), 0);
}

#[test]
fn a_victim_whose_samples_stop_goes_stale_while_its_node_is_still_evaluated() {
    use super::tests::{World, policy as protect, sample, with_spec};
    let slow = || {
        with_spec(protect(""), |s| {
            s.triggers[0].sustained_for = fulcrum_policies::Duration::new("2m")
        })
    };
    // The victim's latency rises at tick 20, then stops arriving at tick 22 while its
    // neighbours keep reporting: n1 is evaluated every 10 s, and the trigger's run
    // reaches 2 minutes at tick 32, on data 110 s old.
    let run = |victim_reports: bool| {
        let mut w = World::new(&[slow()]);
        for i in 0..20 {
            w.tick(i, 1.0);
        }
        for i in 20..60 {
            let hog = 4.0 + (i % 6) as f64;
            if victim_reports || i < 22 {
                w.tick(i, hog);
                continue;
            }
            let ts = T0 + i * 10 * S;
            for (ns, pod, v) in [
                ("spark", "hog", hog),
                ("spark", "busy", 2.0),
                ("ai", "train", 1.5),
            ] {
                w.offer(&sample(
                    ts,
                    "n1",
                    Some((ns, pod)),
                    &[("mem_bw", v), ("cpu", 1.0)],
                ));
            }
            w.engine.advance_auto(&mut w.events);
        }
        w.engine.flush(&mut w.events);
        assert!(w.engine.stats().applied > 0);
        w.events
    };
    let stale = run(false);
    assert_eq!(detections(&stale), 0, "fired on stale evidence: {stale:#?}");
    // Control: had the victim kept reporting, the same stream fires.
    assert_eq!(detections(&run(true)), 1);
}
