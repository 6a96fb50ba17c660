//! The ingest task: reads messages from the consumer and hands them on through a bounded
//! channel (a slow engine slows consumption down instead of buffering without bound).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::OwnedMessage;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::FeedHealth;
use super::context::FeedContext;
use crate::clock::now_ms;
use crate::telemetry::RateLimitedLog;

/// Reads messages until `shutdown` turns true or the receiver goes away.
pub(super) async fn ingest(
    consumer: Arc<StreamConsumer<FeedContext>>,
    tx: mpsc::Sender<OwnedMessage>,
    health: Arc<FeedHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut log = RateLimitedLog::default();
    loop {
        let received = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.changed() => return,
        };
        match received {
            Ok(message) => {
                health.connected.store(true, Ordering::Relaxed);
                health.last_message_ms.store(now_ms(), Ordering::Relaxed);
                if tx.send(message.detach()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if let Some(suppressed) = log.allow(now_ms(), 5_000) {
                    warn!(error = %e, suppressed, "kafka: consumer error");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
