//! Waiting for the brokers before anything else: a metadata request retried with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tracing::{info, warn};

use super::reader::ReaderContext;
use super::{FeedError, FeedHealth, KafkaSettings};

/// Waits until the brokers answer a metadata request for `topic`, retrying with
/// exponential backoff (100 ms doubling to 10 s) and logging each failure clearly.
/// Returns false when `shutdown` fired first.
pub async fn wait_for_brokers(
    settings: &KafkaSettings,
    health: &FeedHealth,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, FeedError> {
    let probe: Arc<BaseConsumer<ReaderContext>> = Arc::new(
        settings
            .reader_config()
            .create_with_context(ReaderContext)?,
    );
    let topic = settings.topic.clone();
    let attempt = || {
        let probe = probe.clone();
        let topic = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                probe
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .map(|_| ())
            })
            .await
            .unwrap_or(Err(KafkaError::Canceled))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times();
    let brokers = settings.brokers.clone();
    let retry = attempt
        .retry(backoff)
        .notify(|e: &KafkaError, wait: Duration| {
            warn!(%brokers, error = %e, "kafka: brokers unreachable; retrying in {wait:?}");
        });
    tokio::select! {
        result = retry => {
            result?;
            health.connected.store(true, Ordering::Relaxed);
            info!(brokers = %settings.brokers, "kafka: connected");
            Ok(true)
        }
        _ = shutdown.changed() => Ok(false),
    }
}
