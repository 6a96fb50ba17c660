//! `fulcrum demo` at a small scale (debug build): the true antagonist is the first target
//! on its node, no online or protected pod is touched, and SLO violations are at most half
//! of those without Fulcrum.

use fulcrum::sim::scenario::PROTECTED_POD;
use fulcrum::sim::{DemoConfig, report};
use fulcrum_engine::decision::Outcome;

#[test]
fn the_demo_finds_each_antagonist_first_and_halves_slo_violations() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime
        .block_on(fulcrum::sim::run(DemoConfig::small(7), |_, _| {}))
        .expect("the demo runs");
    assert!(!run.incidents.is_empty());
    for incident in &run.incidents {
        let first = run
            .decisions
            .iter()
            .find(|d| d.node == incident.node && d.outcome != Outcome::Blocked)
            .unwrap_or_else(|| panic!("no action on {}: {:#?}", incident.node, run.decisions));
        assert_eq!(
            first.target, incident.antagonist,
            "first target on {}",
            incident.node
        );
    }
    for d in run
        .decisions
        .iter()
        .filter(|d| d.outcome != Outcome::Blocked)
    {
        assert!(
            !d.target.starts_with("shop/") && !d.target.starts_with("inference/"),
            "online pod touched: {d:?}"
        );
        assert_ne!(d.target, PROTECTED_POD);
    }
    assert!(run.violation_without_s > 0.0);
    assert!(
        run.violation_with_s <= run.violation_without_s / 2.0,
        "with {} s, without {} s",
        run.violation_with_s,
        run.violation_without_s
    );
    assert!(
        run.time_to_mitigate_s.iter().all(Option::is_some),
        "{:?}",
        run.time_to_mitigate_s
    );

    let json = report::render_json(&run);
    assert_eq!(
        json["summary"]["slo_violation_seconds"]["with_fulcrum"],
        run.violation_with_s
    );
    assert!(json["summary"]["actions"]["migrated"].as_u64().unwrap() >= 1);
    assert!(json["summary"]["actions"]["evicted"].as_u64().unwrap() >= 1);
    let svg = report::render_svg(&run).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("with Fulcrum") && svg.contains("<polygon"),
        "chart has lines, legend and action markers"
    );
    let text = report::render_text(&run, false);
    assert!(
        text.contains("ONSET") && text.contains("DECIDE") && text.contains("SLO-violation seconds")
    );
}
