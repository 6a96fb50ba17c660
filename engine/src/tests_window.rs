//! Evaluation windows (see [`crate::window`]): one evaluation per node per sample period
//! when its pods sample at slightly different instants, at least one per window on a
//! continuous stream, and the same events however the caller batches `advance`.

use super::decision::{Event, Outcome};
use super::tests::{T0, World, noise, policy, sample};
use super::{Engine, EngineConfig, EngineStats, Offered};
use crate::sample::Sample;

/// The parts of one period's samples on n1: (pod, metric), one sample each.
const PARTS: [(&str, &str, &str); 8] = [
    ("shop", "web", "latency_p99_ms"),
    ("spark", "hog", "mem_bw"),
    ("spark", "busy", "mem_bw"),
    ("ai", "train", "mem_bw"),
    ("shop", "web", "mem_bw"),
    ("spark", "hog", "cpu"),
    ("spark", "busy", "cpu"),
    ("ai", "train", "cpu"),
];

/// The test world of `tests.rs` (n1: web, hog, busy, train; n2: agent) with `window_ms`.
fn engine(window_ms: u64) -> Engine {
    let config = EngineConfig {
        evaluation_window_ms: window_ms,
        ..EngineConfig::default()
    };
    World::with_config(&[policy("")], config).engine
}

/// A stream in time order: every `period_ms`, n1's pods report their 8 parts spread over
/// `instants` instants 13 ms apart, and n2's agent reports half a period later. The hog interferes
/// (the victim's latency above 100, following it) from period `from` on.
fn stream(period_ms: i64, instants: i64, periods: i64, from: i64) -> Vec<Sample<'static>> {
    let mut out = Vec::new();
    for i in 0..periods {
        let base = T0 + i * period_ms;
        let wobble = noise(i as u64);
        let hog = if i < from {
            1.0 + 0.1 * (i % 3) as f64
        } else {
            4.0 + (i % 6) as f64
        };
        for (j, (ns, name, metric)) in PARTS.iter().enumerate() {
            let value = match (*name, *metric) {
                ("web", "latency_p99_ms") => 40.0 + 30.0 * hog,
                ("web", _) => 1.0,
                ("hog", "mem_bw") => hog,
                ("hog", _) => 1.0 + hog / 4.0,
                ("busy", "mem_bw") => 2.0 + wobble,
                ("busy", _) => 6.0 + wobble,
                (_, "mem_bw") => 1.5 - wobble / 2.0,
                _ => 3.0,
            };
            let ts = base + (j as i64 % instants) * 13;
            out.push(sample(ts, "n1", Some((ns, name)), &[(metric, value)]));
        }
        let half = base + period_ms / 2;
        out.push(sample(
            half,
            "n2",
            Some(("infra", "agent")),
            &[("cpu", 0.1)],
        ));
    }
    out.sort_by_key(|s| s.ts_ms);
    out
}

/// How the caller drives the engine.
#[derive(Clone, Copy, Debug)]
enum Batching {
    /// The watermark advanced to each sample's time right after it is offered.
    PerSample,
    /// `advance_auto` (the lateness behind the newest sample) after each period's samples.
    PerPeriod(i64),
    /// Everything offered, then one flush.
    Once,
}

fn run(window_ms: u64, samples: &[Sample<'_>], batching: Batching) -> (Vec<Event>, EngineStats) {
    let mut engine = engine(window_ms);
    let mut events = Vec::new();
    let mut period = None;
    for s in samples {
        if let Batching::PerPeriod(ms) = batching {
            let this = s.ts_ms.div_euclid(ms);
            if period.is_some_and(|p| p != this) {
                engine.advance_auto(&mut events);
            }
            period = Some(this);
        }
        let offered = engine.offer(s);
        // The very first sample is held until a second confirms the stream's time.
        assert!(
            matches!(offered, Offered::Queued | Offered::Held),
            "{offered:?}"
        );
        if let Batching::PerSample = batching {
            engine.advance(s.ts_ms, &mut events);
        }
    }
    engine.flush(&mut events);
    (events, engine.stats().clone())
}

fn executed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Decision(d) if d.outcome == Outcome::Executed))
        .count()
}

#[test]
fn the_same_events_come_out_however_advance_is_batched() {
    let samples = stream(10_000, 8, 50, 20);
    for window in [2_000, 0, 25_000] {
        let (once, _) = run(window, &samples, Batching::Once);
        assert_eq!(executed(&once), 1, "window {window}: {once:#?}");
        for batching in [Batching::PerSample, Batching::PerPeriod(10_000)] {
            let (events, _) = run(window, &samples, batching);
            assert_eq!(events, once, "window {window}, {batching:?}");
        }
    }
}

#[test]
fn a_node_is_evaluated_once_per_period_not_once_per_sample_instant() {
    let samples = stream(10_000, 8, 50, 20);
    // From period 20 on the victim's latency is above 100: n1 can fire and is evaluated
    // (before, no trigger can hold and it is skipped).
    let evaluations = |window: u64| run(window, &samples, Batching::PerSample).1.evaluations;
    assert_eq!(evaluations(2_000), 30);
    // The control: at every distinct sample time, 8 per period.
    assert_eq!(evaluations(0), 8 * 30);
    // The decision is the same; only the attributions behind it are fewer.
    let (windowed, stats) = run(2_000, &samples, Batching::PerSample);
    let (every, control) = run(0, &samples, Batching::PerSample);
    assert!(stats.attributions < control.attributions, "{stats:?}");
    let target = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Decision(d) if d.outcome == Outcome::Executed => Some(d.target.clone()),
            _ => None,
        })
    };
    assert_eq!(target(&windowed).as_deref(), Some("spark/hog"));
    assert_eq!(target(&windowed), target(&every));
}

#[test]
fn a_continuous_stream_is_evaluated_at_least_once_per_window() {
    // One instant per period, every 500 ms, interfering throughout: 240 sample times.
    let samples = stream(500, 1, 240, 0);
    let evaluations = |window: u64| run(window, &samples, Batching::Once).1.evaluations;
    assert_eq!(evaluations(0), 240);
    // Anchored windows of 2 s hold 5 sample times (the first and 4 more up to its due
    // time); a window that moved with each sample would never come due before the end.
    assert_eq!(evaluations(2_000), 240 / 5);
}
