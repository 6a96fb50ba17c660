//! Restoring executed decisions from the audit log: an intent whose result never reached
//! the log is judged by its target, and a restored action counts against the workload
//! recorded with it once its pod is gone.

use super::decision::{Decision, Outcome};
use super::tests::{World, pod, policy, with_spec};

fn executed(w: &World) -> Vec<Decision> {
    w.decisions()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Executed)
        .cloned()
        .collect()
}

/// The decision a first run took on spark/hog (uid `uid-hog`).
fn first_action() -> Decision {
    let mut first = World::new(&[policy("")]);
    first.run(20, 30);
    let taken = executed(&first);
    assert_eq!(taken.len(), 1, "{taken:#?}");
    assert_eq!(taken[0].target, "spark/hog");
    taken[0].clone()
}

/// A fresh engine restores `decision` as an unsettled intent after `prepare` changed its
/// cluster view; returns whether it was counted and what the same interference does then.
fn unsettled_then_run(
    decision: &Decision,
    uid: Option<&str>,
    prepare: impl FnOnce(&mut World),
) -> (bool, Vec<Decision>) {
    let mut w = World::new(&[policy("")]);
    prepare(&mut w);
    let counted = w.engine.restore_unsettled(decision, uid, None);
    w.run(20, 30);
    (counted, executed(&w))
}

#[test]
fn an_intent_whose_target_still_exists_untouched_is_released_and_decided_again() {
    let d = first_action();
    let (counted, again) = unsettled_then_run(&d, Some("uid-hog"), |_| {});
    assert!(!counted);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0].target, "spark/hog");
}

#[test]
fn an_intent_whose_target_is_gone_replaced_or_terminating_counts_as_an_action() {
    let d = first_action();
    // Replaced: a pod of the same name with another UID (a StatefulSet's next replica).
    let (counted, again) = unsettled_then_run(&d, Some("uid-hog"), |w| {
        let mut next = pod("spark", "hog", "n1", "batch");
        next.uid = "uid-hog-2".into();
        w.engine.upsert_pod(next);
    });
    assert!(counted);
    assert!(again.is_empty(), "replaced: {again:#?}");
    // Terminating: the eviction was accepted and the pod is shutting down.
    let (counted, again) = unsettled_then_run(&d, Some("uid-hog"), |w| {
        let mut going = pod("spark", "hog", "n1", "batch");
        going.terminating = true;
        w.engine.upsert_pod(going);
    });
    assert!(counted);
    assert!(again.is_empty(), "terminating: {again:#?}");
    // No UID recorded (a record written before actuation records existed): counted.
    let (counted, again) = unsettled_then_run(&d, None, |_| {});
    assert!(counted);
    assert!(again.is_empty(), "no uid: {again:#?}");
    // Gone: counted against the node (cooldown, maxActionsPerNode), so the decoy left on
    // the node is not acted on in its place either.
    let (counted, again) = unsettled_then_run(&d, Some("uid-hog"), |w| {
        w.engine.remove_pod("spark", "hog");
    });
    assert!(counted);
    assert!(again.is_empty(), "gone: {again:#?}");
}

#[test]
fn a_restored_action_counts_against_the_recorded_workload_of_a_pod_that_is_gone() {
    // One action per workload per hour; the restored action was on node n2 (no cooldown
    // or node limit on n1) and its pod is gone, but it belonged to the hog's workload.
    let one_per_workload = || {
        with_spec(policy(""), |s| {
            s.limits.max_actions_per_workload.count = 1;
        })
    };
    let mut d = first_action();
    d.node = "n2".into();
    d.target = "spark/hog-old".into();
    let workload = "spark/StatefulSet/hog-set";
    let run = |recorded: Option<&str>| {
        let mut w = World::new(&[one_per_workload()]);
        w.engine.restore_with_workload(&d, recorded);
        w.run(20, 30);
        let blocked = w.decisions().iter().any(|d| {
            d.outcome == Outcome::Blocked && d.explanation.guard.contains("maxActionsPerWorkload")
        });
        (executed(&w), blocked)
    };
    let (acted, blocked) = run(Some(workload));
    assert!(acted.is_empty(), "{acted:#?}");
    assert!(blocked);
    // Control (the defect: the workload fell back to `spark/Pod/hog-old`): without the
    // recorded workload the limit does not see the action and the hog is acted on.
    let (acted, _) = run(None);
    assert_eq!(acted.len(), 1, "{acted:#?}");
}
