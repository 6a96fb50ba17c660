//! A storm: once a breaker's Blocked decision is reported for an episode, attribution is
//! not run again while the breaker holds; after it closes the episode is acted on once the
//! main explanation is stable again.

use super::decision::{Decision, Event, Outcome};
use super::tests::{S, T0, decisions, node, pod, policy, sample};
use super::{Engine, EngineConfig, EngineStats};

/// Four nodes, each with a victim `web{n}` and a hog `hog{n}` on `n{n}`, and a spare.
fn engine() -> Engine {
    // Every hog follows the same pattern: common mode, which the placebo test would
    // report as unexplained before the breaker is reached. This is about the breaker.
    let mut engine = Engine::new(EngineConfig {
        placebo_pods: 0,
        ..EngineConfig::default()
    });
    for n in 0..4 {
        let name = format!("n{n}");
        engine.upsert_node(node(&name));
        engine.upsert_pod(pod("shop", &format!("web{n}"), &name, "online"));
        engine.upsert_pod(pod("spark", &format!("hog{n}"), &name, "batch"));
    }
    engine.upsert_node(node("spare"));
    engine.upsert_pod(pod("infra", "agent", "spare", "infra"));
    assert!(engine.set_policies(&[policy("")]).is_empty());
    engine
}

/// Period `i` of node `n{n}`: its hog's bandwidth (interfering when `busy`) and its
/// victim's latency, which follows it.
pub(super) fn offer_node(engine: &mut Engine, i: i64, n: usize, busy: bool) {
    let ts = T0 + i * 10 * S;
    let hog = if busy {
        4.0 + (i % 6) as f64
    } else {
        1.0 + 0.1 * (i % 3) as f64
    };
    let (node, web, hog_name) = (format!("n{n}"), format!("web{n}"), format!("hog{n}"));
    let latency = [("latency_p99_ms", 40.0 + 30.0 * hog)];
    engine.offer(&sample(ts, &node, Some(("shop", &web)), &latency));
    let usage = [("mem_bw", hog)];
    engine.offer(&sample(ts, &node, Some(("spark", &hog_name)), &usage));
}

/// Periods `from..to`: hogs on nodes below `busy` interfere, the others are quiet.
fn periods(engine: &mut Engine, events: &mut Vec<Event>, from: i64, to: i64, busy: usize) {
    for i in from..to {
        let ts = T0 + i * 10 * S;
        for n in 0..4 {
            offer_node(engine, i, n, n < busy);
        }
        engine.offer(&sample(
            ts,
            "spare",
            Some(("infra", "agent")),
            &[("cpu", 0.1)],
        ));
        engine.advance_auto(events);
    }
}

#[test]
fn the_storm_breaker_stops_actions_when_many_nodes_fire() {
    let (mut engine, mut events) = (engine(), Vec::new());
    periods(&mut engine, &mut events, 0, 20, 0);
    periods(&mut engine, &mut events, 20, 50, 4);
    let decisions = decisions(&events);
    assert!(
        decisions.iter().all(|d| d.outcome != Outcome::Executed),
        "{decisions:#?}"
    );
    assert!(
        decisions.iter().any(|d| d.reason.starts_with("storm:")),
        "{decisions:#?}"
    );
}

#[test]
fn attribution_stops_while_a_reported_breaker_holds_and_resumes_after_it() {
    let mut engine = engine();
    let mut events = Vec::new();
    periods(&mut engine, &mut events, 0, 20, 0);
    // Every node interferes: the storm breaker blocks.
    periods(&mut engine, &mut events, 20, 30, 4);
    let first: EngineStats = engine.stats().clone();
    let storm: Vec<Decision> = decisions(&events).into_iter().cloned().collect();
    assert!(!storm.is_empty(), "{events:#?}");
    assert!(
        storm
            .iter()
            .all(|d| d.outcome == Outcome::Blocked && d.reason.starts_with("storm:")),
        "{storm:#?}"
    );
    periods(&mut engine, &mut events, 30, 50, 4);
    let storm_end = engine.stats().clone();
    // The control: the nodes were evaluated in every period of the storm's second half, but
    // attribution ran on none of them (each evaluation of a firing node attributes).
    let evaluated = storm_end.evaluations - first.evaluations;
    assert!(evaluated >= 4 * 20, "{storm_end:?}");
    assert_eq!(storm_end.attributions, first.attributions, "{storm_end:?}");
    assert_eq!(decisions(&events).len(), storm.len(), "reported once");
    // Only n0 still interferes: the storm is over, n0's hog is acted on.
    periods(&mut engine, &mut events, 50, 70, 1);
    let after = &decisions(&events)[storm.len()..];
    let acted: Vec<_> = after
        .iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .collect();
    assert_eq!(acted.len(), 1, "{after:#?}");
    assert_eq!(acted[0].target, "spark/hog0");
    assert!(engine.stats().attributions > storm_end.attributions);
    // The streak started over when the breaker closed: the main explanation held for
    // `stable_evaluations` (2) evaluations at least a bucket apart after period 50.
    assert!(acted[0].at >= T0 + 51 * 10 * S, "{:?}", acted[0].at);
}
