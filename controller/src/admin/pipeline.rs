//! Metrics of the pipeline itself, measured by the run loop ([`RunObserver`]):
//! `fulcrum_decision_latency_seconds`, `fulcrum_consumer_lag{partition}` and
//! `fulcrum_breaker_open{breaker}`; and the dead letters by reason.

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::metrics::Metrics;
use crate::feed::FeedStats;
use crate::runner::RunObserver;

type Labels = Vec<(String, String)>;

/// The pipeline's metrics.
#[derive(Debug)]
pub struct Pipeline {
    /// `fulcrum_decision_latency_seconds`: sample consumed → decision at the actuator.
    pub decision_latency: Histogram,
    /// `fulcrum_consumer_lag{partition}`: messages of the partition not applied yet.
    pub consumer_lag: Family<Labels, Gauge>,
    /// `fulcrum_breaker_open{breaker}`: 1 while the breaker holds every action.
    pub breaker_open: Family<Labels, Gauge>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            // 50 ms .. ~410 s: the lateness bound (15 s by default) is part of the latency.
            decision_latency: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            consumer_lag: Family::default(),
            breaker_open: Family::default(),
        }
    }
}

impl Pipeline {
    /// Registers the pipeline's metrics (the registry adds the `fulcrum_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "decision_latency_seconds",
            "From consuming the sample that made a decision to the decision reaching the actuator",
            self.decision_latency.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages of each assigned samples partition not applied yet",
            self.consumer_lag.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while a breaker (catching_up, stale_feed, storm) holds every action",
            self.breaker_open.clone(),
        );
    }
}

impl RunObserver for Metrics {
    fn decision_latency(&self, latency: Duration) {
        self.pipeline
            .decision_latency
            .observe(latency.as_secs_f64());
    }

    fn breakers(&self, breakers: &[(&'static str, bool)]) {
        for (name, open) in breakers {
            let labels = vec![("breaker".to_owned(), (*name).to_owned())];
            self.pipeline
                .breaker_open
                .get_or_create(&labels)
                .set(i64::from(*open));
        }
    }

    fn consumer_lag(&self, lag: &[(i32, i64)]) {
        // Revoked partitions leave the family.
        self.pipeline.consumer_lag.clear();
        for (partition, messages) in lag {
            let labels = vec![("partition".to_owned(), partition.to_string())];
            self.pipeline
                .consumer_lag
                .get_or_create(&labels)
                .set(*messages);
        }
    }
}

/// The reason codes a dead letter can carry (`DecodeError::reason`), exported at 0 before
/// the first dead letter so alerts and dashboards see the series.
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "absurd_magnitude",
    "bad_metric_name",
    "bad_name",
    "bad_timestamp",
    "duplicate_field",
    "missing_field",
    "mixed_batch",
    "no_metrics",
    "non_finite",
    "not_json",
    "not_protobuf",
    "not_utf8",
    "out_of_range",
    "too_large",
    "too_many_metrics",
    "ts_in_future",
    "ts_too_old",
    "unknown_schema",
    "wrong_type",
];

/// Copies the dead-letter counts by reason into `fulcrum_dead_letters_total{reason}`
/// (every known reason exported, at 0 until it occurs).
pub fn copy_dead_letters(metrics: &Metrics, stats: &FeedStats) {
    for reason in DEAD_LETTER_REASONS {
        Metrics::set_counter(
            &metrics.dead_letters,
            vec![("reason".into(), (*reason).into())],
            0,
        );
    }
    let reasons = stats
        .dead_letter_reasons
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    for (reason, n) in reasons {
        Metrics::set_counter(&metrics.dead_letters, vec![("reason".into(), reason)], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_metrics_are_exported_and_follow_what_the_run_loop_reports() {
        let m = Metrics::new();
        m.decision_latency(Duration::from_millis(1500));
        m.breakers(&[("storm", true), ("stale_feed", false)]);
        m.consumer_lag(&[(0, 7), (1, 0)]);
        let stats = FeedStats::default();
        if let Ok(mut r) = stats.dead_letter_reasons.lock() {
            r.insert("not_json".into(), 2);
        }
        copy_dead_letters(&m, &stats);
        let text = m.render();
        for line in [
            "fulcrum_decision_latency_seconds_count 1",
            "fulcrum_decision_latency_seconds_sum 1.5",
            "fulcrum_breaker_open{breaker=\"storm\"} 1",
            "fulcrum_breaker_open{breaker=\"stale_feed\"} 0",
            "fulcrum_consumer_lag{partition=\"0\"} 7",
            "fulcrum_dead_letters_total{reason=\"not_json\"} 2",
            "fulcrum_dead_letters_total{reason=\"too_large\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // The storm passes, partition 1 is revoked.
        m.breakers(&[("storm", false)]);
        m.consumer_lag(&[(0, 3)]);
        let text = m.render();
        assert!(
            text.contains("fulcrum_breaker_open{breaker=\"storm\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("fulcrum_consumer_lag{partition=\"0\"} 3"),
            "{text}"
        );
        assert!(!text.contains("partition=\"1\""), "{text}");
    }
}
