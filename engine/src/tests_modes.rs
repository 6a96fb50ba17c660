//! DryRun and Enforce: a dry run consumes nothing Enforce needs, live or restored from
//! the audit log; restored actions stamped after the samples being re-read still count.

use fulcrum_policies::spec::Mode;

use super::decision::{Decision, Outcome};
use super::tests::{S, T0, World, policy, with_spec};

fn dry_run() -> fulcrum_policies::InterferencePolicy {
    with_spec(policy(""), |s| s.mode = Mode::DryRun)
}

/// Ticks `from..to` with the hog oscillating strongly (the victim's latency follows it).
fn busy(w: &mut World, from: i64, to: i64) {
    for i in from..to {
        w.tick(i, 4.0 + (i % 6) as f64);
    }
}

fn owned(w: &World) -> Vec<Decision> {
    w.decisions().into_iter().cloned().collect()
}

fn acted_on(decisions: &[Decision], outcome: Outcome, target: &str) -> usize {
    decisions
        .iter()
        .filter(|d| d.outcome == outcome && d.target == target)
        .count()
}

#[test]
fn switching_from_dry_run_to_enforce_acts_on_the_culprit_the_dry_run_found() {
    let mut w = World::new(&[dry_run()]);
    w.run(20, 30);
    let dry = owned(&w);
    assert_eq!(acted_on(&dry, Outcome::DryRun, "spark/hog"), 1, "{dry:#?}");
    // The documented rollout: the same policy, now enforced, interference continuing.
    let invalid = w.engine.set_policies(&[policy("")]);
    assert!(invalid.is_empty());
    w.events.clear();
    busy(&mut w, 50, 90);
    w.engine.flush(&mut w.events);
    let enforced = owned(&w);
    assert_eq!(
        acted_on(&enforced, Outcome::Executed, "spark/hog"),
        1,
        "{enforced:#?}"
    );
}

#[test]
fn a_policy_kept_in_dry_run_does_not_report_the_same_culprit_twice() {
    let mut w = World::new(&[dry_run()]);
    w.run(20, 30);
    w.engine.set_policies(&[dry_run()]);
    busy(&mut w, 50, 90);
    w.engine.flush(&mut w.events);
    assert_eq!(acted_on(&owned(&w), Outcome::DryRun, "spark/hog"), 1);
}

/// Decisions of a dry run, restored into a fresh engine running `policy`, then the same
/// interference again.
fn restored_then_run(
    decisions: &[Decision],
    policy: fulcrum_policies::InterferencePolicy,
) -> Vec<Decision> {
    let mut w = World::new(&[policy]);
    for d in decisions {
        w.engine.restore(d);
    }
    w.run(20, 30);
    owned(&w)
}

#[test]
fn restored_dry_run_decisions_bind_dry_run_but_not_enforce() {
    let mut w = World::new(&[dry_run()]);
    w.run(20, 30);
    let dry = owned(&w);
    assert_eq!(acted_on(&dry, Outcome::DryRun, "spark/hog"), 1);
    let enforced = restored_then_run(&dry, policy(""));
    assert_eq!(acted_on(&enforced, Outcome::Executed, "spark/hog"), 1);
    // Controls: the same decisions bind a policy still in DryRun, and executed ones bind
    // Enforce (so restore did something in both cases).
    let again = restored_then_run(&dry, dry_run());
    assert_eq!(
        acted_on(&again, Outcome::DryRun, "spark/hog"),
        0,
        "{again:#?}"
    );
    let executed: Vec<Decision> = dry
        .iter()
        .cloned()
        .map(|mut d| {
            d.outcome = Outcome::Executed;
            d.mode = Mode::Enforce;
            d
        })
        .collect();
    let repeat = restored_then_run(&executed, policy(""));
    assert_eq!(acted_on(&repeat, Outcome::Executed, "spark/hog"), 0);
}

#[test]
fn an_action_restored_with_a_later_stamp_than_the_samples_still_blocks_and_says_so() {
    let mut first = World::new(&[policy("")]);
    first.run(20, 30);
    let mut taken = owned(&first);
    taken.retain(|d| d.outcome == Outcome::Executed);
    assert_eq!(taken.len(), 1);
    // The replica restarts and re-reads samples from before the action.
    taken[0].at = T0 + 3_600 * S;
    let again = restored_then_run(&taken, policy(""));
    assert_eq!(
        again
            .iter()
            .filter(|d| d.outcome == Outcome::Executed)
            .count(),
        0,
        "{again:#?}"
    );
    for d in &again {
        assert!(
            !d.reason.contains("ago") || d.reason.contains("was 0s ago"),
            "a wrapped negative duration: {}",
            d.reason
        );
    }
}
