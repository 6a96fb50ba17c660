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
            pipeline: super::pipeline::Pipeline::default(),
        };
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
