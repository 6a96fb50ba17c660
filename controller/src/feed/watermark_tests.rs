//! The feed's watermark against real feeds, with a real engine: the reorder buffer's bound
//! driven past it (a partition that lags far behind holds the watermark back by the skew
//! bound at most, and while the engine holds more than `max_buffered` samples by nothing at
//! all; every sample the bound costs is counted as late, never lost silently), and a
//! far-future first message that must neither blind the watermark nor hold commits.

use fulcrum_engine::{Engine, EngineConfig, Offered};

use crate::bench::workload::T0_MS;

use super::progress::{Progress, skew_bound};
use super::source::offer_samples;
use crate::bench::workload::{PERIOD_MS, Workload};

const LATENESS_MS: u64 = 15_000;
const MAX_SKEW_MS: u64 = 300_000;
const TICKS: u64 = 60;

/// What a run through the bound produced.
struct Run {
    engine: Engine,
    /// The most samples the engine held when a watermark was computed.
    peak_buffered: usize,
    /// Watermark computations that found the buffer over the bound.
    overflows: usize,
}

/// Offers the samples of `node` at `tick` as one message of partition `node`, and records
/// it in `progress` as the feed does.
fn deliver(engine: &mut Engine, progress: &mut Progress, w: &Workload, node: usize, tick: u64) {
    let mut samples = Vec::new();
    w.tick(tick, &mut samples);
    let name = format!("node-{node:05}");
    samples.retain(|s| s.node == name);
    let newest = offer_samples(engine, &samples, |_, _, _, _, _| true);
    progress.observe(node as i32, tick as i64, newest, 0);
}

/// Computes the watermark as `Feed::watermark` does and advances the engine to it.
fn step(engine: &mut Engine, progress: &mut Progress, max_buffered: usize, run: &mut Run) {
    let buffered = engine.buffered() + engine.held();
    run.peak_buffered = run.peak_buffered.max(buffered);
    if buffered > max_buffered {
        run.overflows += 1;
    }
    progress.set_max_skew(Some(skew_bound(buffered, max_buffered, MAX_SKEW_MS)));
    if let Some(watermark) = progress.watermark(LATENESS_MS, 0, 3_600_000, false) {
        engine.advance(watermark, &mut Vec::new());
    }
}

/// Node 1's partition stalls after its first message while node 0's runs on for ten
/// minutes; then node 1's partition catches up.
fn lagging_partition(max_buffered: usize) -> Run {
    let w = Workload::new(2, 0.0);
    let mut engine = w.engine(EngineConfig {
        lateness_ms: LATENESS_MS,
        ..EngineConfig::default()
    });
    let mut run = Run {
        engine: Engine::new(EngineConfig::default()),
        peak_buffered: 0,
        overflows: 0,
    };
    let mut progress = Progress::default();
    deliver(&mut engine, &mut progress, &w, 1, 0);
    for tick in 0..TICKS {
        deliver(&mut engine, &mut progress, &w, 0, tick);
        step(&mut engine, &mut progress, max_buffered, &mut run);
    }
    for tick in 1..TICKS {
        deliver(&mut engine, &mut progress, &w, 1, tick);
        step(&mut engine, &mut progress, max_buffered, &mut run);
    }
    run.engine = engine;
    run
}

/// Every offered sample is applied, dropped for a counted reason, or still waiting.
fn assert_accounted(engine: &Engine) {
    let s = engine.stats();
    let dropped = s.late
        + s.duplicates
        + s.unknown_node
        + s.unknown_pod
        + s.irrelevant
        + s.too_far_ahead
        + s.forgotten;
    let waiting = (engine.buffered() + engine.held()) as u64;
    assert_eq!(s.offered, s.applied + dropped + waiting, "{s:?}");
}

#[test]
fn a_buffer_driven_past_its_bound_stays_bounded_and_counts_what_it_cost_as_late() {
    let per_message = crate::bench::workload::PODS_PER_NODE + 1;
    // Control: with room, the skew bound alone holds node 0's last five minutes (and the
    // lateness) back, and node 1's samples within the bound are applied.
    let roomy = lagging_partition(1_000_000);
    let window = (MAX_SKEW_MS as i64 / PERIOD_MS) as usize * per_message;
    assert!(roomy.peak_buffered >= window, "{}", roomy.peak_buffered);
    assert_eq!(roomy.overflows, 0);
    assert_accounted(&roomy.engine);
    // Past the bound the watermark follows the fastest partition: the buffer never holds
    // more than the bound and one message.
    let bound = 200;
    let tight = lagging_partition(bound);
    assert!(tight.overflows > 0);
    assert!(
        tight.peak_buffered <= bound + per_message,
        "{} > {bound} + {per_message}",
        tight.peak_buffered
    );
    assert_accounted(&tight.engine);
    // What the bound cost is counted: node 1's samples behind the watermark are late,
    // more of them than under the skew bound alone, and nothing else is lost.
    let (r, t) = (roomy.engine.stats(), tight.engine.stats());
    assert!(t.late > r.late, "{} <= {}", t.late, r.late);
    assert_eq!(t.offered, r.offered);
    assert_eq!(t.applied + t.late, r.applied + r.late);
}

#[test]
fn a_far_future_first_message_neither_blinds_the_idle_watermark_nor_holds_commits() {
    let w = Workload::new(2, 0.0);
    let mut engine = w.engine(EngineConfig::default());
    let mut progress = Progress::default();
    // The partition's first message: a node sample from a clock a day ahead (the decoder
    // accepts up to a day).
    let mut first = Vec::new();
    w.tick(0, &mut first);
    first.retain(|s| s.pod.is_none());
    first.truncate(1);
    first[0].ts_ms += 86_400_000 - 1_000;
    let newest = offer_samples(&mut engine, &first, |_, _, _, _, _| true);
    assert_eq!(
        newest, None,
        "a held sample moved the partition's event time"
    );
    progress.observe(0, 0, newest, 0);
    // Then the real stream, both nodes in the same partition.
    for tick in 0..30u64 {
        let mut samples = Vec::new();
        w.tick(tick, &mut samples);
        let newest = offer_samples(&mut engine, &samples, |_, _, _, _, _| true);
        progress.observe(0, tick as i64 + 1, newest, 0);
    }
    // The partition goes quiet: the all-idle branch takes the newest *real* time.
    let last = T0_MS + 29 * PERIOD_MS;
    let watermark = progress
        .watermark(LATENESS_MS, 60_000, 10_000, false)
        .expect("a watermark");
    assert!(watermark <= last, "{watermark} is past the real stream");
    assert!(watermark >= last - LATENESS_MS as i64 - 1_000);
    engine.advance(watermark, &mut Vec::new());
    // Commits go past the far-future message, and the next real samples are not late.
    let committed = progress.committable(watermark);
    assert!(
        committed
            .first()
            .is_some_and(|&(p, next)| p == 0 && next > 1),
        "{committed:?}"
    );
    let mut next = Vec::new();
    w.tick(30, &mut next);
    assert!(next.iter().all(|s| engine.offer(s) == Offered::Queued));
    assert_eq!(engine.stats().late, 0);
    assert_eq!(engine.held(), 1, "the far-future sample waits alone");
}
