//! Guards and lifecycle that need a running engine: `recovery.clearFor`, the evidence-age
//! and stale-feed breakers, and policy edits while samples keep flowing. Each test has a
//! control run that differs only in what is being tested.

use super::decision::{Decision, Event, Outcome};
use super::tests::{S, T0, World, pod_info, policy, sample, with_spec};

fn recoveries(events: &[Event]) -> Vec<(i64, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Recovered { at, lasted_ms, .. } => Some((*at, *lasted_ms)),
            _ => None,
        })
        .collect()
}

fn owned(w: &World) -> Vec<Decision> {
    w.decisions().into_iter().cloned().collect()
}

/// Quiet, busy (latency far above the threshold), then quiet for `calm` ticks.
fn episode(extra: &str, calm: i64) -> World {
    let mut w = World::new(&[policy(extra)]);
    for i in 0..20 {
        w.tick(i, 1.0);
    }
    for i in 20..40 {
        w.tick(i, 4.0 + (i % 6) as f64);
    }
    for i in 40..40 + calm {
        w.tick(i, 1.0);
    }
    w.engine.flush(&mut w.events);
    w
}

#[test]
fn an_episode_recovers_only_after_clear_for_without_any_trigger_holding() {
    // The last busy tick is 39 (T0 + 390 s); clear from tick 40 on.
    let w = episode("  recovery: {clearFor: 2m}", 20);
    let r = recoveries(&w.events);
    assert_eq!(r.len(), 1, "{:#?}", w.events);
    let clear_since = T0 + 400 * S;
    assert!(r[0].0 >= clear_since + 120 * S, "{r:?}");
    assert!(r[0].0 <= clear_since + 130 * S, "{r:?}");
    assert!(r[0].1 > 0);
    // Control: the same calm of 200 s does not end a 5-minute clearFor.
    let c = episode("  recovery: {clearFor: 5m}", 20);
    assert!(recoveries(&c.events).is_empty());
}

#[test]
fn the_evidence_age_breaker_blocks_a_backlog() {
    let mut w = World::new(&[policy("")]);
    // Everything in this run is older than the newest acceptable evidence.
    w.engine.set_horizon(T0 + 3_600 * S);
    w.run(20, 30);
    let d = owned(&w);
    assert!(!d.is_empty());
    assert!(d.iter().all(|d| d.outcome == Outcome::Blocked), "{d:#?}");
    assert!(
        d.iter().any(|d| d.reason.starts_with("catching up")),
        "{d:#?}"
    );
    // Control: the same run without a horizon acts.
    let mut c = World::new(&[policy("")]);
    c.run(20, 30);
    assert!(owned(&c).iter().any(|d| d.outcome == Outcome::Executed));
}

/// n1 has interference; n3..n5 report (a victim each) until `quiet_from`, then go silent.
fn stale_neighbours(quiet_from: i64) -> Vec<Decision> {
    owned(&stale_world(quiet_from))
}

fn stale_world(quiet_from: i64) -> World {
    let mut w = World::new(&[policy("")]);
    for n in 3..6 {
        let name = format!("n{n}");
        let mut info = w
            .engine
            .cluster()
            .node_info(w.engine.cluster().node_id("n1").unwrap())
            .unwrap()
            .clone();
        info.name = name.clone();
        w.engine.upsert_node(info);
        w.engine
            .upsert_pod(pod_info("shop", &format!("web{n}"), &name, "online"));
    }
    for i in 0..50 {
        let hog = if i < 20 { 1.0 } else { 4.0 + (i % 6) as f64 };
        if i < quiet_from {
            for n in 3..6 {
                let (node, web) = (format!("n{n}"), format!("web{n}"));
                let s = sample(
                    T0 + i * 10 * S,
                    &node,
                    Some(("shop", &web)),
                    &[("latency_p99_ms", 50.0)],
                );
                w.offer(&s);
            }
        }
        w.tick(i, hog);
    }
    w.engine.flush(&mut w.events);
    w
}

#[test]
fn open_breakers_names_the_breaker_that_holds_at_the_watermark() {
    let open = |w: &World| -> Vec<&'static str> {
        w.engine
            .open_breakers()
            .iter()
            .filter(|(_, open)| *open)
            .map(|(name, _)| *name)
            .collect()
    };
    assert_eq!(open(&stale_world(10)), ["stale_feed"]);
    // Control: neighbours reporting throughout leave every breaker closed.
    assert!(open(&stale_world(50)).is_empty());
}

#[test]
fn the_stale_feed_breaker_stops_actions_when_most_reporting_nodes_went_quiet() {
    let d = stale_neighbours(10);
    assert!(!d.is_empty());
    assert!(d.iter().all(|d| d.outcome == Outcome::Blocked), "{d:#?}");
    assert!(
        d.iter().any(|d| d.reason.starts_with("stale feed")),
        "{d:#?}"
    );
    // Control: the same neighbours reporting throughout let n1 act.
    let c = stale_neighbours(50);
    assert!(c.iter().any(|d| d.outcome == Outcome::Executed), "{c:#?}");
}

#[test]
fn policy_edits_on_a_running_engine_take_effect_and_keep_the_ledger() {
    let mut w = World::new(&[policy("")]);
    for i in 0..20 {
        w.tick(i, 1.0);
    }
    // Raise the threshold before the interference: nothing fires.
    let blind = with_spec(policy(""), |s| s.triggers[0].above = Some(10_000.0));
    assert!(w.engine.set_policies(&[blind]).is_empty());
    for i in 20..40 {
        w.tick(i, 4.0 + (i % 6) as f64);
    }
    assert!(w.events.is_empty(), "{:#?}", w.events);
    // Back to the real threshold: it fires and acts.
    assert!(w.engine.set_policies(&[policy("")]).is_empty());
    for i in 40..60 {
        w.tick(i, 4.0 + (i % 6) as f64);
    }
    let executed = owned(&w)
        .into_iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .count();
    assert_eq!(executed, 1);
    // An edit keeps the ledger of a policy that keeps its name (limits hold across
    // edits); a renamed policy starts from an empty one.
    let ledger = |w: &World| w.engine.policies[0].ledger.records().count();
    let eager = with_spec(policy(""), |s| s.limits.cooldown = "0s".into());
    assert!(
        w.engine
            .set_policies(std::slice::from_ref(&eager))
            .is_empty()
    );
    assert_eq!(ledger(&w), 1);
    let mut renamed = eager;
    renamed.metadata.name = Some("renamed".into());
    assert!(w.engine.set_policies(&[renamed]).is_empty());
    assert_eq!(ledger(&w), 0);
}

/// The hog is acted on and keeps reporting (its eviction under way) while the victim
/// stays degraded, long past a 1-minute cooldown. With `retract`, the first action is
/// retracted (the actuator failed), so the hog is not "already acted on".
fn acted_and_still_reporting(retract: bool) -> Vec<Decision> {
    let p = with_spec(policy(""), |s| s.limits.cooldown = "1m".into());
    let mut w = World::new(&[p]);
    let mut retracted = false;
    for i in 0..80 {
        w.tick(i, if i < 20 { 1.0 } else { 4.0 + (i % 6) as f64 });
        if retract && !retracted {
            let first = w
                .decisions()
                .into_iter()
                .find(|d| d.outcome == Outcome::Executed)
                .cloned();
            if let Some(d) = first {
                w.engine.retract(&d);
                retracted = true;
            }
        }
    }
    w.engine.flush(&mut w.events);
    owned(&w)
}

#[test]
fn a_pod_already_acted_on_that_keeps_reporting_is_not_reported_blocked_again() {
    let d = acted_and_still_reporting(false);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].target, "spark/hog");
    assert_eq!(d[0].outcome, Outcome::Executed);
    // Control: the episode does plan again after the cooldown and names the hog: once
    // its action is retracted, it is acted on again.
    let c = acted_and_still_reporting(true);
    let on_hog = c
        .iter()
        .filter(|d| d.target == "spark/hog" && d.outcome == Outcome::Executed)
        .count();
    assert!(on_hog >= 2, "{c:#?}");
}
