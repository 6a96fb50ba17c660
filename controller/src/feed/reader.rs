//! Bounded or following reads of a samples topic without a consumer group commit, for
//! `fulcrum replay --brokers ... --topic ...`: every partition from its beginning to its
//! end at start (or onwards with `follow`), through the same decoder and engine as a file
//! replay and with a watermark that waits for the slowest partition, so the decisions
//! equal those of a file replay of the same samples.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::config::KafkaSettings;
use super::progress::Progress;
use crate::clock::now_ms;
use crate::inputs::{Input, InputSpec};
use fulcrum_engine::sample::{DecodeError, DecodeOptions};
use fulcrum_engine::{Engine, Event, Offered};

/// A client context that treats end-of-partition events as the normal signal they are
/// for a bounded read, instead of logging them as errors.
pub struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            tracing::debug!(%reason, "end of partition");
        } else {
            tracing::warn!(%error, %reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// What a topic read saw besides the engine's events.
#[derive(Debug, Default)]
pub struct ReadSummary {
    /// Messages read.
    pub messages: usize,
    /// Rejected messages or batch members, with `topic[partition]@offset`.
    pub errors: Vec<(String, DecodeError)>,
    /// Counters of the OTLP or Prometheus input.
    pub input: crate::inputs::InputStats,
}

/// Reads `settings.topic` into `engine`, calling `on_event` for every event. Without
/// `follow` it stops at the end offsets seen at start; with `follow` it stops when
/// `shutdown` turns true. Messages are decoded as `input` says. Blocking (librdkafka polling); call from a blocking thread.
pub fn read_topic(
    settings: &KafkaSettings,
    input: InputSpec,
    engine: &mut Engine,
    lateness_ms: u64,
    follow: bool,
    shutdown: &watch::Receiver<bool>,
    mut on_event: impl FnMut(&Event),
) -> Result<ReadSummary, KafkaError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let (mut progress, mut open) = assign_from_beginning(&consumer, settings, follow)?;
    let mut summary = ReadSummary::default();
    let mut out = Vec::new();
    let mut options = DecodeOptions { now_ms: now_ms() };
    let mut input = Input::new(input);
    // With `follow`, an idle partition must not hold back the others forever.
    let idle_after = if follow { 10_000 } else { u64::MAX / 4 };
    while (!open.is_empty() || follow) && !*shutdown.borrow() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) if !follow && open.remove(&p) => {
                progress.reached_end(p);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(e),
            Some(Ok(message)) => {
                let newest =
                    offer_message(&message, &mut input, engine, &mut options, &mut summary);
                progress.observe(message.partition(), message.offset(), newest, now_ms());
            }
        }
        if let Some(watermark) = progress.watermark(lateness_ms, now_ms(), idle_after, false) {
            engine.advance(watermark, &mut out);
            for event in out.drain(..) {
                on_event(&event);
            }
        }
    }
    let rest = input.finish();
    for sample in &rest.samples {
        engine.offer(sample);
    }
    let end = || format!("{}(end of input)", settings.topic);
    summary
        .errors
        .extend(rest.rejected.into_iter().map(|e| (end(), e)));
    summary.input = input.stats().clone();
    engine.flush(&mut out);
    for event in out.drain(..) {
        on_event(&event);
    }
    Ok(summary)
}

/// Assigns every partition of `settings.topic` from its low watermark. Returns the
/// progress tracker and the partitions still to read: those with messages, or all with
/// `follow`; the empty ones are at their end already.
fn assign_from_beginning(
    consumer: &BaseConsumer<ReaderContext>,
    settings: &KafkaSettings,
    follow: bool,
) -> Result<(Progress, BTreeSet<i32>), KafkaError> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(&settings.topic), timeout)?;
    let topic = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| {
            KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
        })?;
    let mut list = TopicPartitionList::new();
    let mut progress = Progress::default();
    let mut open = BTreeSet::new();
    for p in topic.partitions() {
        let (low, high) = consumer.fetch_watermarks(&settings.topic, p.id(), timeout)?;
        list.add_partition_offset(&settings.topic, p.id(), Offset::Offset(low))?;
        if high > low || follow {
            open.insert(p.id());
            progress.expect(p.id(), now_ms());
        } else {
            progress.reached_end(p.id());
        }
    }
    consumer.assign(&list)?;
    Ok((progress, open))
}

/// Decodes one message and offers its samples to `engine`, counting it and recording
/// rejections with its `topic[partition]@offset`. Returns the newest event time the
/// engine queued from it, if any.
fn offer_message(
    message: &impl Message,
    input: &mut Input,
    engine: &mut Engine,
    options: &mut DecodeOptions,
    summary: &mut ReadSummary,
) -> Option<i64> {
    summary.messages += 1;
    options.now_ms = now_ms();
    let location = format!(
        "{}[{}]@{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let mut newest = None;
    match input.decode(message.payload().unwrap_or_default(), options) {
        Ok(decoded) => {
            for sample in &decoded.samples {
                if engine.offer(sample) == Offered::Queued {
                    newest = Some(newest.map_or(sample.ts_ms, |n: i64| n.max(sample.ts_ms)));
                }
            }
            summary
                .errors
                .extend(decoded.rejected.into_iter().map(|e| (location.clone(), e)));
        }
        Err(e) => summary.errors.push((location, e)),
    }
    newest
}
