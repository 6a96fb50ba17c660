//! Engine throughput and decision latency: the generated stream through `offer` and
//! `advance`, one node's message at a time, as the feed drives it (decoding excluded:
//! samples are generated borrowed, in memory). Decisions go to an actuator thread over a
//! channel, which timestamps their arrival.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use fulcrum_engine::{EngineConfig, Event};

use super::memory::{Rss, rss};
use super::workload::{PODS_PER_NODE, Workload};

/// Decision latency: from the message that let a decision be taken being consumed (its
/// samples offered, the watermark advanced) to the decision reaching the actuator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// Decisions measured.
    pub count: usize,
    /// Median, in ms.
    pub p50_ms: f64,
    /// 99th percentile, in ms.
    pub p99_ms: f64,
    /// Maximum, in ms.
    pub max_ms: f64,
}

impl Latency {
    /// The percentiles of `samples` (any order).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
            samples.get(i).copied().map_or(0.0, ms)
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: samples.last().copied().map_or(0.0, ms),
        }
    }
}

/// What one engine run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineRun {
    /// Pods in the cluster.
    pub pods: usize,
    /// Samples offered.
    pub samples: u64,
    /// Time inside `offer` and `advance`.
    pub busy: Duration,
    /// Decisions the engine took (any outcome).
    pub decisions: u64,
    /// Consumed message to actuator, per decision.
    pub latency: Latency,
    /// Resident memory before the engine was built, after the cluster view and policies
    /// were loaded, and after the stream.
    pub rss_before: Rss,
    /// After loading.
    pub rss_loaded: Rss,
    /// After the stream (steady state).
    pub rss_after: Rss,
}

impl EngineRun {
    /// Samples per second inside the engine.
    pub fn rate(&self) -> f64 {
        self.samples as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

/// The actuator: receives decisions with the instant their message was consumed and
/// returns the latencies when the channel closes.
fn actuator() -> (
    mpsc::Sender<(Instant, Event)>,
    std::thread::JoinHandle<Vec<Duration>>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Event)>();
    let handle = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        for (consumed, event) in rx {
            latencies.push(consumed.elapsed());
            std::hint::black_box(event);
        }
        latencies
    });
    (tx, handle)
}

/// Runs `ticks` ticks of `workload` through a fresh engine, one message (a node's
/// samples of one period) at a time, advancing the watermark after each.
pub fn run(workload: &Workload, ticks: u64) -> EngineRun {
    // The cluster view is loaded as replay loads it: from a snapshot file, through the
    // snapshot loader (written first, outside the measurement).
    let file = super::snapshot::path(workload);
    let written = super::snapshot::write_file(workload, &file).map_err(|e| e.to_string());
    let rss_before = rss();
    let loaded =
        written.and_then(|()| super::snapshot::engine_via_snapshot(&file, EngineConfig::default()));
    let mut engine = loaded.unwrap_or_else(|e| {
        eprintln!(
            "bench: loading the cluster from {} failed ({e}); built in memory",
            file.display()
        );
        workload.engine(EngineConfig::default())
    });
    let rss_loaded = rss();
    let mut samples = Vec::with_capacity(workload.pods() + workload.nodes);
    let mut events: Vec<Event> = Vec::new();
    let (to_actuator, actuator) = actuator();
    let mut busy = Duration::ZERO;
    let mut offered = 0u64;
    let mut decisions = 0u64;
    for tick in 0..ticks {
        samples.clear();
        workload.tick(tick, &mut samples);
        for message in samples.chunks(PODS_PER_NODE + 1) {
            let consumed = Instant::now();
            // As the feed offers a message: its node looked up once.
            engine.offer_each(message, |_, _, _, _| {});
            engine.advance_auto(&mut events);
            busy += consumed.elapsed();
            offered += message.len() as u64;
            for event in events.drain(..) {
                if matches!(event, Event::Decision(_)) {
                    decisions += 1;
                    // The actuator outlives the loop: a send cannot fail here.
                    let _ = to_actuator.send((consumed, event));
                }
            }
        }
    }
    drop(to_actuator);
    let latency = Latency::of(actuator.join().unwrap_or_default());
    let rss_after = rss();
    drop(engine);
    EngineRun {
        pods: workload.pods(),
        samples: offered,
        busy,
        decisions,
        latency,
        rss_before,
        rss_loaded,
        rss_after,
    }
}
