//! Common mode at the onset: a step of the whole cluster at the moment the victim degrades
//! is not evidence against the co-located pod that stepped with it (see `onset.rs`).

use super::decision::Event;
use super::tests::{S, T0, decisions, node, noise, pod, policy, sample, unexplained};
use super::{Engine, EngineConfig};

/// The tick (10 s each) at which the victim's latency steps up.
const ONSET_TICK: i64 = 60;

/// Other nodes, each with one batch pod of the kind of `spark/a`.
const OTHERS: [&str; 3] = ["n2", "n3", "n4"];

/// Node n1: victim shop/web whose latency steps up at [`ONSET_TICK`]; batch spark/a, whose
/// memory bandwidth steps from 2.0-2.5 to 9.0-9.5 at the same tick, and ai/c. Nodes n2-n4
/// each run a batch pod spark/b-nX, stepping the same way when `everywhere` (a
/// cluster-wide load change), flat otherwise.
fn cluster_step(everywhere: bool, placebo_pods: usize) -> Vec<Event> {
    let mut engine = Engine::new(EngineConfig {
        placebo_pods,
        ..EngineConfig::default()
    });
    engine.upsert_node(node("n1"));
    for (ns, name, class) in [
        ("shop", "web", "online"),
        ("spark", "a", "batch"),
        ("ai", "c", "ai"),
    ] {
        engine.upsert_pod(pod(ns, name, "n1", class));
    }
    for n in OTHERS {
        engine.upsert_node(node(n));
        engine.upsert_pod(pod("spark", &format!("b-{n}"), n, "batch"));
    }
    assert!(engine.set_policies(&[policy("")]).is_empty());
    let mut out = Vec::new();
    for i in 0..120i64 {
        let ts = T0 + i * 10 * S;
        let up = i >= ONSET_TICK;
        let r = |k: u64| noise(i as u64 * 31 + k);
        let latency = if up { 160.0 } else { 60.0 } + 10.0 * r(1);
        let web = [("latency_p99_ms", latency)];
        engine.offer(&sample(ts, "n1", Some(("shop", "web")), &web));
        let a = [("mem_bw", if up { 9.0 } else { 2.0 } + 0.5 * r(2))];
        engine.offer(&sample(ts, "n1", Some(("spark", "a")), &a));
        let c = [("mem_bw", 2.0 + r(3)), ("cpu", 5.0 + r(4))];
        engine.offer(&sample(ts, "n1", Some(("ai", "c")), &c));
        for (k, n) in OTHERS.iter().enumerate() {
            let b = if up && everywhere { 9.0 } else { 2.0 } + 0.5 * r(10 + k as u64);
            let name = format!("b-{n}");
            engine.offer(&sample(ts, n, Some(("spark", &name)), &[("mem_bw", b)]));
        }
        engine.advance_auto(&mut out);
    }
    engine.flush(&mut out);
    out
}

/// The first decision must blame spark/a within sustainedFor (30 s) plus one sample period.
fn assert_found(events: &[Event]) {
    let d = decisions(events);
    let first = d.first().expect("spark/a is blamed");
    assert_eq!(first.target, "spark/a", "{first:#?}");
    let onset = T0 + ONSET_TICK * 10 * S;
    assert!(
        first.at <= onset + 40 * S,
        "{} s late",
        (first.at - onset) / S
    );
}

#[test]
fn a_cluster_wide_step_at_the_onset_is_not_blamed_on_a_neighbour() {
    let events = cluster_step(true, EngineConfig::default().placebo_pods);
    assert!(decisions(&events).is_empty(), "{:#?}", decisions(&events));
    let u = unexplained(&events);
    let first = u.first().expect("the episode is unexplained");
    let a = first
        .explanation
        .scores
        .iter()
        .find(|s| s.pod == "spark/a")
        .expect("spark/a is scored");
    let ignored = a.metrics[0].ignored.as_deref().unwrap_or_default();
    assert!(
        ignored.starts_with("common mode: stepped up"),
        "{ignored} {a:#?}"
    );
}

#[test]
fn a_step_of_the_neighbour_alone_is_found() {
    // Control: only spark/a steps; the placebo pods on other nodes stay flat.
    assert_found(&cluster_step(false, EngineConfig::default().placebo_pods));
}

#[test]
fn without_placebo_pods_the_cluster_wide_step_is_blamed() {
    // The placebo is what saves the first test: turned off, the common step is blamed.
    assert_found(&cluster_step(true, 0));
}
