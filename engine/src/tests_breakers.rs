//! The stale-feed and storm breakers over a changing cluster: both open and close while
//! nodes come and go, and their incremental counts (see [`crate::breaker_counts`]) agree
//! with a scan of every node at every step, at times before and after the watermark.

use super::breaker_counts::Clock;
use super::decision::{Event, Outcome};
use super::tests::{S, decisions, node, pod, policy};
use super::tests_storm::offer_node;
use super::{Engine, EngineConfig};

/// Nodes `n{i}` for `i` in `nodes`, each with a victim `web{i}` and a hog `hog{i}`.
fn add_nodes(engine: &mut Engine, nodes: impl IntoIterator<Item = usize>) {
    for n in nodes {
        let name = format!("n{n}");
        engine.upsert_node(node(&name));
        engine.upsert_pod(pod("shop", &format!("web{n}"), &name, "online"));
        engine.upsert_pod(pod("spark", &format!("hog{n}"), &name, "batch"));
    }
}

/// Period `i`: the nodes in `reporting` send samples, the hogs of those in `busy`
/// interfere (their victims' latency is above the trigger's threshold).
fn period(
    engine: &mut Engine,
    events: &mut Vec<Event>,
    i: i64,
    reporting: &[usize],
    busy: &[usize],
) {
    for &n in reporting {
        offer_node(engine, i, n, busy.contains(&n));
    }
    engine.advance_auto(events);
    agree(engine);
}

/// The incremental counts equal a scan of every node, at non-monotone times around the
/// watermark on both cursors.
fn agree(engine: &Engine) {
    let wm = engine.watermark();
    if wm == i64::MIN {
        return;
    }
    for (dt, clock) in [
        (-90, Clock::Planning),
        (5, Clock::Planning),
        (-20, Clock::Watermark),
        (0, Clock::Planning),
        (70, Clock::Watermark),
        (0, Clock::Watermark),
    ] {
        let t = wm + dt * S;
        assert_eq!(
            engine.staleness_at(t, clock),
            engine.staleness_scan(t),
            "at {dt} s"
        );
        assert_eq!(
            engine.pressured_at(t, clock),
            engine.pressured_scan(t),
            "at {dt} s"
        );
    }
}

/// The breakers open at the watermark.
fn open(engine: &Engine) -> Vec<&'static str> {
    let open = engine.open_breakers();
    open.iter()
        .filter(|(_, o)| *o)
        .map(|(name, _)| *name)
        .collect()
}

fn run(
    engine: &mut Engine,
    events: &mut Vec<Event>,
    periods: std::ops::Range<i64>,
    reporting: &[usize],
    busy: &[usize],
) {
    for i in periods {
        period(engine, events, i, reporting, busy);
    }
}

#[test]
fn the_breakers_open_and_close_as_nodes_come_and_go() {
    let mut engine = Engine::new(EngineConfig {
        placebo_pods: 0,
        ..EngineConfig::default()
    });
    add_nodes(&mut engine, 0..6);
    assert!(engine.set_policies(&[policy("")]).is_empty());
    let mut events = Vec::new();
    let e = &mut events;
    run(&mut engine, e, 0..12, &[0, 1, 2, 3, 4, 5], &[]);
    assert!(open(&engine).is_empty());

    // Three of six nodes interfere: a storm.
    run(&mut engine, e, 12..30, &[0, 1, 2, 3, 4, 5], &[0, 1, 2]);
    assert_eq!(open(&engine), ["storm"]);
    let storm = decisions(e).len();
    assert!(
        decisions(e)
            .iter()
            .any(|d| d.reason.starts_with("storm: 3 of 6 live nodes"))
    );
    assert!(decisions(e).iter().all(|d| d.outcome != Outcome::Executed));
    // A quiet node joins: three of seven is still a storm.
    add_nodes(&mut engine, [6]);
    run(&mut engine, e, 30..36, &[0, 1, 2, 3, 4, 5, 6], &[0, 1, 2]);
    assert_eq!(open(&engine), ["storm"]);
    // A busy node leaves: two are too few for a storm, at once.
    engine.remove_node("n0");
    assert!(open(&engine).is_empty());
    run(&mut engine, e, 36..40, &[1, 2, 3, 4, 5, 6], &[1, 2]);
    assert!(open(&engine).is_empty());
    // A busy node joins: three of seven again.
    add_nodes(&mut engine, [7]);
    run(&mut engine, e, 40..56, &[1, 2, 3, 4, 5, 6, 7], &[1, 2, 7]);
    assert_eq!(open(&engine), ["storm"]);
    assert!(
        decisions(e)[storm..]
            .iter()
            .any(|d| d.reason.starts_with("storm: 3 of 7 live nodes"))
    );
    // Everyone quiet: the storm passes.
    run(&mut engine, e, 56..62, &[1, 2, 3, 4, 5, 6, 7], &[]);
    assert!(open(&engine).is_empty());

    // Four of seven nodes go silent: a stale feed once their data is a minute old.
    run(&mut engine, e, 62..66, &[1, 2, 7], &[]);
    assert!(open(&engine).is_empty(), "not stale yet");
    run(&mut engine, e, 66..74, &[1, 2, 7], &[]);
    assert_eq!(open(&engine), ["stale_feed"]);
    // A silent node leaves: three of six is not more than half.
    engine.remove_node("n6");
    assert!(open(&engine).is_empty());
    // Another goes silent (four of six), then all report again.
    run(&mut engine, e, 74..84, &[1, 2], &[]);
    assert_eq!(open(&engine), ["stale_feed"]);
    run(&mut engine, e, 84..90, &[1, 2, 3, 4, 5, 7], &[]);
    assert!(open(&engine).is_empty());
}
