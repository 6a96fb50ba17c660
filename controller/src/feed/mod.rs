//! The Kafka side of Fulcrum: consume `fulcrum.metrics/v1` samples in a consumer group,
//! decode them into the engine, dead-letter what is malformed, track which offsets are
//! safe to commit, and publish decisions to (and restore them from) the audit topic.
//!
//! ```text
//!  ingest task ──(bounded channel of messages)──► Feed::apply: (decode) → DLQ | engine.offer
//!  consumer.recv(), native: decode               Feed::watermark → engine.advance (runner)
//!                                                 Feed::store_committable(watermark)
//! ```
//!
//! The loop that joins the feed, the engine, the actuator and the audit topic is
//! [`crate::runner`]. Delivery is at-least-once: a crash replays messages after the last
//! committed offset, and decisions stay idempotent across that replay because a replica
//! restores past actions from the audit topic at start. Topics, keys and headers are
//! documented in `docs/events.md`.

pub mod actuations;
pub mod audit;
pub mod config;
mod connect;
pub mod consumed;
pub mod context;
pub mod decoded;
pub mod dlq;
mod ingest;
mod nodes;
pub mod progress;
pub mod reader;
pub mod replacements;
pub mod retry;
mod source;
#[cfg(test)]
mod watermark_tests;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use rdkafka::error::KafkaError;
use serde::Serialize;

pub use config::{KafkaSettings, StartPosition};
pub use connect::wait_for_brokers;
pub use ingest::Received;
pub use source::Feed;

/// Tunables of the feed.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Kafka connection and topics.
    pub kafka: KafkaSettings,
    /// Event-time lateness bound (the engine's reorder window).
    pub lateness_ms: u64,
    /// A partition without messages for this long (wall clock) stops holding the watermark.
    pub idle_after_ms: u64,
    /// Decisions about evidence older than this (wall clock) are blocked, so a backlog is
    /// never acted on.
    pub max_evidence_age_ms: u64,
    /// Messages applied per engine step at most.
    pub batch: usize,
    /// Capacity of the channels between stages.
    pub channel_capacity: usize,
    /// How far back (wall clock) the audit topic is read at start.
    pub restore_window_ms: u64,
    /// A partition lagging behind the others (in event time) holds the watermark back by
    /// this much at most; its older samples are then late instead of delaying every node.
    pub max_skew_ms: u64,
    /// Samples the engine may hold (reorder buffer and held jumps) before the watermark
    /// stops waiting for slow partitions.
    pub max_buffered: usize,
    /// Let event time advance with the wall clock while partitions are quiet, so the last
    /// samples before a pause are applied (see `progress::Progress::watermark`). A driver
    /// that keeps producing (the demo) turns it off for run-to-run determinism.
    pub wall_clock_advance: bool,
    /// The format of the samples topic and its metrics map.
    pub input: crate::inputs::InputSpec,
}

impl FeedOptions {
    /// Defaults for `kafka`.
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            lateness_ms: 15_000,
            idle_after_ms: 10_000,
            max_evidence_age_ms: 300_000,
            batch: 512,
            channel_capacity: 1024,
            restore_window_ms: 24 * 3_600_000,
            max_skew_ms: 300_000,
            max_buffered: 1_000_000,
            wall_clock_advance: true,
            input: crate::inputs::InputSpec::native(),
        }
    }
}

/// Readiness of the feed, shared with health endpoints.
#[derive(Debug, Default)]
pub struct FeedHealth {
    /// Brokers reachable (set after the first successful metadata request or message).
    pub connected: AtomicBool,
    /// Partitions assigned to this replica.
    pub assigned: AtomicUsize,
    /// Wall-clock ms of the last message received.
    pub last_message_ms: AtomicI64,
    /// The engine's event-time watermark (ms): samples at or before it are applied.
    pub watermark_ms: AtomicI64,
}

impl FeedHealth {
    /// Ready to serve: connected to the brokers.
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Counters of the feed (exported as metrics by the operator).
#[derive(Debug, Default, Serialize)]
pub struct FeedStats {
    /// Messages received.
    pub messages: AtomicU64,
    /// Samples offered to the engine.
    pub samples: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Messages sent to the dead-letter topic, by the reason code of their first rejection
    /// (the `fulcrum.error.reason` header).
    pub dead_letter_reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Dead letters that could not be stored after bounded retries (their offsets are not
    /// committed).
    pub dead_letters_failed: AtomicU64,
    /// Rejected samples (a partly rejected batch counts each).
    pub rejected_samples: AtomicU64,
    /// Decisions published to the audit topic.
    pub decisions: AtomicU64,
    /// Unexplained episodes (nobody blamed) published to the audit topic.
    pub unexplained: AtomicU64,
    /// Offsets stored for commit.
    pub offsets_stored: AtomicU64,
    /// Actions restored from the audit topic at start.
    pub restored: AtomicU64,
    /// Gauge: event-time skew between the fastest and the slowest active partition (ms).
    pub skew_ms: AtomicU64,
    /// Gauge: samples waiting in the engine (reorder buffer and held jumps).
    pub buffered: AtomicU64,
    /// Gauge: the skew bound in force (ms): `max_skew_ms`, or 0 while the engine's buffer
    /// is over `max_buffered`.
    pub skew_bound_ms: AtomicU64,
    /// Gauge: `max_buffered`, the most samples the engine holds before the watermark stops
    /// waiting for slow partitions.
    pub buffer_limit: AtomicU64,
    /// Watermark computations that found the engine's buffer over `max_buffered`.
    pub buffer_overflows: AtomicU64,
    /// Messages received from a partition revoked before they were applied (dropped: the
    /// partition's new owner reads them again).
    pub revoked_dropped: AtomicU64,
    /// OTLP and Prometheus inputs: data points of metrics the map does not name (dropped).
    pub unmapped: AtomicU64,
    /// OTLP and Prometheus inputs: values produced from mapped data points.
    pub converted: AtomicU64,
    /// The engine's counters after its last step (for metrics; the stop summary has its own).
    #[serde(skip)]
    pub engine: std::sync::Mutex<EngineSnapshot>,
}

/// The engine's sample accounting after a step: its counters and the samples still waiting.
#[derive(Clone, Debug, Default)]
pub struct EngineSnapshot {
    /// The engine's counters.
    pub stats: fulcrum_engine::EngineStats,
    /// Samples waiting in the reorder buffer and the held pool.
    pub pending: u64,
}

impl EngineSnapshot {
    /// The engine's counters with `pending` (the stop summary's `engine` object): `applied`
    /// plus every drop reason plus `pending` is `offered`.
    pub fn summary(engine: &fulcrum_engine::Engine) -> serde_json::Value {
        let snapshot = Self::of(engine);
        let mut value = serde_json::to_value(&snapshot.stats).unwrap_or_default();
        value["pending"] = snapshot.pending.into();
        value
    }

    /// The snapshot of `engine` now.
    pub fn of(engine: &fulcrum_engine::Engine) -> Self {
        Self {
            stats: engine.stats().clone(),
            pending: (engine.buffered() + engine.held()) as u64,
        }
    }
}

/// Why the feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A Kafka client could not be created (bad configuration).
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// Past actions could not be restored from the audit topic.
    #[error(transparent)]
    Restore(#[from] audit::RestoreError),
    /// A decision could not be written to the audit topic: the run stops before acting on
    /// it or committing past it (a restart decides again, and restore stays complete).
    #[error("audit topic: {0}")]
    Audit(KafkaError),
    /// Shutdown was requested while a produce was being retried.
    #[error("shutdown requested")]
    Interrupted,
    /// The receiver of decisions went away.
    #[error("the decision receiver was dropped")]
    Closed,
}
