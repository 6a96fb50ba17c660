//! The ingest task: reads messages from the consumer and hands them on through a bounded
//! channel (a slow engine slows consumption down instead of buffering without bound).
//! Messages of the native schema are decoded here, so decoding overlaps the engine's work
//! on earlier messages (the runtime has a thread per core); the payload is copied once,
//! into the decoded samples, and the message itself is kept only when it must be
//! dead-lettered. OTLP and Prometheus messages are decoded by the engine's stage: their
//! converter keeps state across messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, decode};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::FeedHealth;
use super::context::FeedContext;
use super::decoded::OwnedSamples;
use crate::clock::now_ms;
use crate::telemetry::RateLimitedLog;

/// A message as the ingest task hands it to the engine's stage.
#[derive(Debug)]
pub struct Received {
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// Native schema: the message decoded (`Err`: unusable as a whole).
    pub(super) decoded: Option<Result<OwnedSamples, DecodeError>>,
    /// The message itself, when the engine's stage needs it: to decode it (other formats)
    /// or to dead-letter it (something was rejected).
    pub(super) message: Option<OwnedMessage>,
}

impl Received {
    /// The message as received, decoded by the engine's stage.
    fn raw(message: &BorrowedMessage<'_>) -> Self {
        Self {
            partition: message.partition(),
            offset: message.offset(),
            decoded: None,
            message: Some(message.detach()),
        }
    }

    /// The message decoded as the native schema, kept whole only if something was rejected.
    fn native(message: &BorrowedMessage<'_>) -> Self {
        let payload = message.payload().unwrap_or_default();
        let options = DecodeOptions { now_ms: now_ms() };
        let decoded = decode(payload, &options).map(|d| {
            // Decoding succeeded, so the payload is UTF-8.
            OwnedSamples::new(std::str::from_utf8(payload).unwrap_or_default(), d)
        });
        let rejected = decoded.as_ref().map_or(true, |d| !d.rejected.is_empty());
        Self {
            partition: message.partition(),
            offset: message.offset(),
            decoded: Some(decoded),
            message: rejected.then(|| message.detach()),
        }
    }
}

/// Reads messages until `shutdown` turns true or the receiver goes away; decodes them when
/// `native`.
pub(super) async fn ingest(
    consumer: Arc<StreamConsumer<FeedContext>>,
    tx: mpsc::Sender<Received>,
    health: Arc<FeedHealth>,
    mut shutdown: watch::Receiver<bool>,
    native: bool,
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
                let item = match native {
                    true => Received::native(&message),
                    false => Received::raw(&message),
                };
                drop(message);
                if tx.send(item).await.is_err() {
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
