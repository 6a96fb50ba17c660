//! Engine throughput: the generated stream through `offer` and `advance`, tick by tick, as
//! the feed drives it (decoding excluded: samples are generated borrowed, in memory).

use std::time::{Duration, Instant};

use fulcrum_engine::{EngineConfig, Event};

use super::memory::{Rss, rss};
use super::workload::Workload;

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

/// Runs `ticks` ticks of `workload` through a fresh engine.
pub fn run(workload: &Workload, ticks: u64) -> EngineRun {
    let rss_before = rss();
    let mut engine = workload.engine(EngineConfig::default());
    let rss_loaded = rss();
    let mut samples = Vec::with_capacity(workload.pods() + workload.nodes);
    let mut events: Vec<Event> = Vec::new();
    let mut busy = Duration::ZERO;
    let mut offered = 0u64;
    let mut decisions = 0u64;
    for tick in 0..ticks {
        samples.clear();
        workload.tick(tick, &mut samples);
        let started = Instant::now();
        for s in &samples {
            engine.offer(s);
        }
        engine.advance_auto(&mut events);
        busy += started.elapsed();
        offered += samples.len() as u64;
        decisions += events
            .drain(..)
            .filter(|e| matches!(e, Event::Decision(_)))
            .count() as u64;
    }
    let rss_after = rss();
    drop(engine);
    EngineRun {
        pods: workload.pods(),
        samples: offered,
        busy,
        decisions,
        rss_before,
        rss_loaded,
        rss_after,
    }
}
