//! Bounded, interruptible retries of a produce: exponential backoff from 200 ms to 5 s,
//! at most [`MAX_TRIES`] tries (about half a minute), abandoned as soon as shutdown is
//! requested. Errors that another try cannot fix (a message over the size limit, an
//! authorisation failure) end the retries at once.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;
use tracing::warn;

/// Tries of one produce at most.
pub const MAX_TRIES: usize = 8;

/// Why a produce was given up.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    /// The last error, after the tries allowed (or at once when retrying cannot help).
    #[error("{0}")]
    Failed(KafkaError),
    /// Shutdown was requested while retrying.
    #[error("shutdown requested while retrying")]
    Interrupted,
}

/// True when another try cannot succeed.
pub fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// True when the message is over the producer's or the broker's size limit.
pub fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// Runs `produce` until it succeeds, fails permanently, runs out of tries, or shutdown
/// turns true. `what` names the produce in log lines.
pub async fn produce_with_retries<F, Fut>(
    what: &str,
    produce: F,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), KafkaError>>,
{
    if *shutdown.borrow() {
        return Err(GaveUp::Interrupted);
    }
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(MAX_TRIES - 1);
    let attempt = produce
        .retry(backoff)
        .when(|e: &KafkaError| !is_permanent(e))
        .notify(|e: &KafkaError, wait| warn!(error = %e, "{what} failed; retrying in {wait:?}"));
    tokio::select! {
        result = attempt => result.map_err(GaveUp::Failed),
        _ = shutdown.wait_for(|stop| *stop) => Err(GaveUp::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn transient() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let tries = AtomicUsize::new(0);
        let (_tx, mut rx) = watch::channel(false);
        let result = produce_with_retries(
            "test",
            || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(transient())
            },
            &mut rx,
        )
        .await;
        assert!(matches!(result, Err(GaveUp::Failed(_))));
        assert_eq!(tries.load(Ordering::Relaxed), MAX_TRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_over_the_size_limit_is_not_retried() {
        let tries = AtomicUsize::new(0);
        let (_tx, mut rx) = watch::channel(false);
        let result = produce_with_retries(
            "test",
            || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge,
                ))
            },
            &mut rx,
        )
        .await;
        assert!(matches!(result, Err(GaveUp::Failed(_))));
        assert_eq!(tries.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_the_retries() {
        let (tx, mut rx) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = tx.send(true);
        });
        let started = tokio::time::Instant::now();
        let result = produce_with_retries("test", || async { Err(transient()) }, &mut rx).await;
        stopper.await.unwrap();
        assert!(matches!(result, Err(GaveUp::Interrupted)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
