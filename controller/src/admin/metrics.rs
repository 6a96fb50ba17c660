//! The operator's metrics (prefix `fulcrum_`), in a prometheus-client registry. Counters
//! about decisions come from the run loop's reports; feed and cluster figures are copied in
//! by the wiring before each scrape ([`Metrics::render`] calls its `refresh` hook).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use fulcrum_engine::{Event, Outcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::actuator::ActuationError;
use crate::feed::FeedStats;
use crate::runner::Report;

type Labels = Vec<(String, String)>;

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `fulcrum_samples_total{result}` (result: `accepted`, `rejected`).
    pub samples: Family<Labels, Counter>,
    /// `fulcrum_dead_letters_total{reason}`.
    pub dead_letters: Family<Labels, Counter>,
    /// `fulcrum_decisions_total{policy,action,outcome}`.
    pub decisions: Family<Labels, Counter>,
    /// `fulcrum_detections_total{policy}`.
    pub detections: Family<Labels, Counter>,
    /// `fulcrum_eviction_requests_total{code}` (code 0: no answer).
    pub eviction_requests: Family<Labels, Counter>,
    /// `fulcrum_api_request_duration_seconds{verb}` (verb `evict`: the actuator's calls).
    pub api_duration: Family<Labels, Histogram>,
    /// `fulcrum_watermark_lag_seconds`.
    pub watermark_lag: Gauge<f64, AtomicU64>,
    /// `fulcrum_tracked_pods`.
    pub tracked_pods: Gauge,
    /// `fulcrum_tracked_nodes`.
    pub tracked_nodes: Gauge,
    /// `fulcrum_engine_samples_offered_total`: samples offered to the engine.
    pub engine_offered: Counter,
    /// `fulcrum_engine_samples_total{outcome}`: what became of them (`applied` or the
    /// reason they were dropped); with `fulcrum_reorder_buffer_samples` they add up to
    /// the offered ones.
    pub engine_samples: Family<Labels, Counter>,
    /// `fulcrum_reorder_buffer_samples`: samples waiting for the watermark (reorder buffer
    /// and held jumps).
    pub buffered: Gauge,
    /// `fulcrum_reorder_buffer_limit_samples`: the waiting samples beyond which the
    /// watermark stops waiting for lagging partitions (`--max-buffered`).
    pub buffer_limit: Gauge,
    /// `fulcrum_reorder_buffer_overflows_total`: watermark computations that found the
    /// buffer over its limit.
    pub buffer_overflows: Counter,
    /// `fulcrum_partition_skew_seconds`: event-time skew between the fastest and the
    /// slowest active partition.
    pub skew: Gauge<f64, AtomicU64>,
    /// `fulcrum_partition_skew_bound_seconds`: how far a lagging partition may hold the
    /// watermark back now (`--max-skew`, 0 while the buffer is over its limit).
    pub skew_bound: Gauge<f64, AtomicU64>,
    /// `fulcrum_unexplained_episodes_total{policy,reason}`: episodes in which nobody was
    /// blamed, once each, by why (`no-samples`, `too-few-points`, ...).
    pub unexplained: Family<Labels, Counter>,
    /// Latency, consumer lag and breakers (see [`super::pipeline`]).
    pub pipeline: super::pipeline::Pipeline,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fulcrum");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            samples: Family::default(),
            dead_letters: Family::default(),
            decisions: Family::default(),
            detections: Family::default(),
            eviction_requests: Family::default(),
            api_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            watermark_lag: Gauge::default(),
            tracked_pods: Gauge::default(),
            tracked_nodes: Gauge::default(),
            engine_offered: Counter::default(),
            engine_samples: Family::default(),
            buffered: Gauge::default(),
            buffer_limit: Gauge::default(),
            buffer_overflows: Counter::default(),
            skew: Gauge::default(),
            skew_bound: Gauge::default(),
            unexplained: Family::default(),
            pipeline: super::pipeline::Pipeline::default(),
        };
        m.register_feed(&mut registry);
        m.pipeline.register(&mut registry);
        registry.register("samples", "Samples consumed, by result", m.samples.clone());
        registry.register(
            "dead_letters",
            "Messages sent to the dead-letter topic, by the reason of their (first) rejection",
            m.dead_letters.clone(),
        );
        registry.register(
            "decisions",
            "Decisions, by policy, action and outcome",
            m.decisions.clone(),
        );
        registry.register(
            "detections",
            "Interference episodes detected",
            m.detections.clone(),
        );
        registry.register(
            "eviction_requests",
            "Eviction API calls, by HTTP status",
            m.eviction_requests.clone(),
        );
        registry.register(
            "watermark_lag_seconds",
            "Wall clock minus the event-time watermark",
            m.watermark_lag.clone(),
        );
        registry.register(
            "tracked_pods",
            "Pods in the cluster index",
            m.tracked_pods.clone(),
        );
        registry.register(
            "tracked_nodes",
            "Nodes in the cluster index",
            m.tracked_nodes.clone(),
        );
        let version = vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())];
        registry.register(
            "api_request_duration_seconds",
            "Duration of the Kubernetes API calls made to act",
            m.api_duration.clone(),
        );
        registry.register("build", "Build information", Info::new(version));
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
    }

    fn register_feed(&self, registry: &mut Registry) {
        registry.register(
            "engine_samples_offered",
            "Samples offered to the engine",
            self.engine_offered.clone(),
        );
        registry.register(
            "engine_samples",
            "Samples offered to the engine, by outcome: applied or the reason dropped",
            self.engine_samples.clone(),
        );
        registry.register(
            "reorder_buffer_samples",
            "Samples waiting for the watermark",
            self.buffered.clone(),
        );
        registry.register(
            "reorder_buffer_limit_samples",
            "Waiting samples beyond which lagging partitions no longer hold the watermark",
            self.buffer_limit.clone(),
        );
        registry.register(
            "reorder_buffer_overflows",
            "Watermark computations that found the reorder buffer over its limit",
            self.buffer_overflows.clone(),
        );
        registry.register(
            "partition_skew_seconds",
            "Event-time skew between the fastest and the slowest active partition",
            self.skew.clone(),
        );
        registry.register(
            "partition_skew_bound_seconds",
            "How far a lagging partition may hold the watermark back now",
            self.skew_bound.clone(),
        );
        registry.register(
            "unexplained_episodes",
            "Interference episodes in which nobody was blamed, by policy and reason",
            self.unexplained.clone(),
        );
    }

    /// Copies the feed's and the engine's figures in (before a scrape).
    pub fn refresh_feed(&self, stats: &FeedStats) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Ok(engine) = stats.engine.lock() {
            let offered = engine.stats.offered;
            let current = self.engine_offered.get();
            if offered > current {
                self.engine_offered.inc_by(offered - current);
            }
            for (outcome, n) in engine.stats.sample_outcomes() {
                let labels = vec![("outcome".to_owned(), outcome.to_owned())];
                Self::set_counter(&self.engine_samples, labels, n);
            }
            self.buffered.set(engine.pending as i64);
        }
        self.buffer_limit
            .set(stats.buffer_limit.load(Relaxed) as i64);
        let overflows = stats.buffer_overflows.load(Relaxed);
        let current = self.buffer_overflows.get();
        if overflows > current {
            self.buffer_overflows.inc_by(overflows - current);
        }
        self.skew.set(stats.skew_ms.load(Relaxed) as f64 / 1000.0);
        self.skew_bound
            .set(stats.skew_bound_ms.load(Relaxed) as f64 / 1000.0);
    }

    /// Counts what the run loop reported.
    pub fn observe(&self, report: &Report) {
        let decision = |policy: &str, action: String, outcome: &str| {
            self.decisions
                .get_or_create(&vec![
                    ("policy".into(), policy.into()),
                    ("action".into(), action),
                    ("outcome".into(), outcome.into()),
                ])
                .inc();
        };
        match report {
            Report::Engine(Event::Unexplained(u)) => {
                self.unexplained
                    .get_or_create(&vec![
                        ("policy".into(), u.policy.clone()),
                        ("reason".into(), u.cause.clone()),
                    ])
                    .inc();
            }
            Report::Engine(Event::Detected { policy, .. }) => {
                self.detections
                    .get_or_create(&vec![("policy".into(), policy.clone())])
                    .inc();
            }
            Report::Engine(Event::Decision(d)) if d.outcome != Outcome::Executed => {
                decision(
                    &d.policy,
                    format!("{:?}", d.action),
                    &format!("{:?}", d.outcome),
                );
            }
            Report::Actuated { decision: d, .. } => {
                decision(&d.policy, format!("{:?}", d.action), "Executed");
            }
            Report::NotActuated { decision: d, error } => {
                let outcome = match error {
                    ActuationError::Gone(_) => "Gone",
                    ActuationError::Blocked(_) => "Blocked",
                    ActuationError::Failed(_) => "Failed",
                };
                decision(&d.policy, format!("{:?}", d.action), outcome);
            }
            _ => {}
        }
    }

    /// Counts one eviction answer and its duration.
    pub fn eviction_answered(&self, code: u16, took: std::time::Duration) {
        self.api_duration
            .get_or_create(&vec![("verb".into(), "evict".into())])
            .observe(took.as_secs_f64());
        self.eviction_requests
            .get_or_create(&vec![("code".into(), code.to_string())])
            .inc();
    }

    /// Sets a counter family member to `total` (copied from a monotonic source).
    pub fn set_counter(family: &Family<Labels, Counter>, labels: Labels, total: u64) {
        let counter = family.get_or_create(&labels);
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    }

    #[test]
    fn the_skew_the_bound_and_the_buffer_are_exported_and_move() {
        let m = Metrics::new();
        let stats = FeedStats::default();
        let set = |skew: u64, bound: u64, overflows: u64, pending: u64| {
            stats.skew_ms.store(skew, Relaxed);
            stats.skew_bound_ms.store(bound, Relaxed);
            stats.buffer_limit.store(1_000, Relaxed);
            stats.buffer_overflows.store(overflows, Relaxed);
            if let Ok(mut e) = stats.engine.lock() {
                e.pending = pending;
                e.stats.offered = 10 + pending;
                e.stats.applied = 10;
            }
            m.refresh_feed(&stats);
            m.render()
        };
        let before = set(90_000, 300_000, 0, 40);
        assert_eq!(value(&before, "fulcrum_partition_skew_seconds "), 90.0);
        assert_eq!(
            value(&before, "fulcrum_partition_skew_bound_seconds "),
            300.0
        );
        assert_eq!(value(&before, "fulcrum_reorder_buffer_samples "), 40.0);
        assert_eq!(
            value(&before, "fulcrum_reorder_buffer_limit_samples "),
            1000.0
        );
        assert_eq!(
            value(&before, "fulcrum_reorder_buffer_overflows_total "),
            0.0
        );
        assert_eq!(
            value(&before, "fulcrum_engine_samples_offered_total "),
            50.0
        );
        // Over the limit: the bound drops to zero and the gauges follow.
        let after = set(400_000, 0, 3, 1_200);
        assert_eq!(value(&after, "fulcrum_partition_skew_seconds "), 400.0);
        assert_eq!(value(&after, "fulcrum_partition_skew_bound_seconds "), 0.0);
        assert_eq!(value(&after, "fulcrum_reorder_buffer_samples "), 1200.0);
        assert_eq!(
            value(&after, "fulcrum_reorder_buffer_overflows_total "),
            3.0
        );
        assert_eq!(
            value(&after, "fulcrum_engine_samples_offered_total "),
            1210.0
        );
        assert_eq!(
            value(&after, "fulcrum_engine_samples_total{outcome=\"applied\"} "),
            10.0
        );
    }
}
