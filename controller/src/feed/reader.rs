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

use std::sync::mpsc::{Receiver, SyncSender};

use super::config::KafkaSettings;
use super::decoded::OwnedSamples;
use super::progress::Progress;
use crate::clock::now_ms;
use crate::inputs::{Input, InputSpec};
use fulcrum_engine::sample::{DecodeError, DecodeOptions};
use fulcrum_engine::{Engine, Event};

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
/// `shutdown` turns true. Messages are decoded as `input` says. Blocking (librdkafka
/// polling); call from a blocking thread.
///
/// Two threads: one polls and decodes (`consume`), the calling one offers the samples to
/// `engine` and advances it, in message order, so decoding the next messages overlaps the
/// engine's work and the events are those of a single-threaded read.
pub fn read_topic(
    settings: &KafkaSettings,
    input: InputSpec,
    engine: &mut Engine,
    lateness_ms: u64,
    follow: bool,
    shutdown: &watch::Receiver<bool>,
    on_event: impl FnMut(&Event),
) -> Result<ReadSummary, KafkaError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let (progress, open) = assign_from_beginning(&consumer, settings, follow)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(PIPELINE_MESSAGES);
    let topic = settings.topic.as_str();
    std::thread::scope(|scope| {
        let reader = Reader {
            consumer,
            input: Input::new(input),
            open,
            follow,
            shutdown: shutdown.clone(),
            topic,
        };
        scope.spawn(move || reader.consume(&tx));
        let driver = Driver {
            engine,
            progress,
            lateness_ms,
            // With `follow`, an idle partition must not hold back the others forever.
            idle_after: if follow { 10_000 } else { u64::MAX / 4 },
            out: Vec::new(),
        };
        // `rx` is dropped when `drive` returns, which stops a reader still sending.
        driver.drive(rx, on_event)
    })
}

/// Messages decoded ahead of the engine at most.
const PIPELINE_MESSAGES: usize = 256;

/// What the consuming thread hands to the engine's thread, in order.
enum Item {
    /// A message's samples.
    Message {
        partition: i32,
        offset: i64,
        /// `topic[partition]@offset` and the errors, when some samples were rejected.
        rejected: Vec<(String, DecodeError)>,
        samples: OwnedSamples,
    },
    /// A partition reached its end (without `follow`).
    End(i32),
    /// Nothing arrived within a poll.
    Idle,
    /// The consumer failed.
    Failed(KafkaError),
    /// The reading stopped: the samples still grouped (end of input), those of them
    /// rejected, and the input's counters.
    Finished {
        rest: OwnedSamples,
        rejected: Vec<(String, DecodeError)>,
        input: crate::inputs::InputStats,
    },
}

/// The consuming side: polls and decodes.
struct Reader<'s> {
    consumer: BaseConsumer<ReaderContext>,
    input: Input,
    open: BTreeSet<i32>,
    follow: bool,
    shutdown: watch::Receiver<bool>,
    topic: &'s str,
}

impl Reader<'_> {
    /// Polls until every open partition ended (or, with `follow`, shutdown), sending what
    /// it reads; stops early when the receiver is gone.
    fn consume(mut self, tx: &SyncSender<Item>) {
        let mut options = DecodeOptions { now_ms: now_ms() };
        while (!self.open.is_empty() || self.follow) && !*self.shutdown.borrow() {
            let item = match self.consumer.poll(Duration::from_millis(200)) {
                None => Item::Idle,
                Some(Err(KafkaError::PartitionEOF(p))) if !self.follow && self.open.remove(&p) => {
                    Item::End(p)
                }
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => {
                    let _ = tx.send(Item::Failed(e));
                    return;
                }
                Some(Ok(message)) => {
                    options.now_ms = now_ms();
                    decode(&mut self.input, self.topic, &message, &options)
                }
            };
            if tx.send(item).is_err() {
                return;
            }
        }
        let mut rest = OwnedSamples::new("", self.input.finish());
        let end = format!("{}(end of input)", self.topic);
        let rejected = std::mem::take(&mut rest.rejected)
            .into_iter()
            .map(|e| (end.clone(), e))
            .collect();
        let input = self.input.stats().clone();
        let _ = tx.send(Item::Finished {
            rest,
            rejected,
            input,
        });
    }
}

/// Decodes one message, recording rejections with its `topic[partition]@offset`.
fn decode(input: &mut Input, topic: &str, message: &impl Message, options: &DecodeOptions) -> Item {
    let location = || format!("{}[{}]@{}", topic, message.partition(), message.offset());
    let payload = message.payload().unwrap_or_default();
    let (samples, rejected) = match input.decode(payload, options) {
        Ok(decoded) => {
            // A JSON payload is UTF-8 and the samples borrow from it; a protobuf one (OTLP)
            // is not, and its samples own their strings (an empty text borrows nothing).
            let text = std::str::from_utf8(payload).unwrap_or_default();
            let mut samples = OwnedSamples::new(text, decoded);
            let errors = std::mem::take(&mut samples.rejected);
            let rejected = match errors.is_empty() {
                true => Vec::new(),
                false => {
                    let at = location();
                    errors.into_iter().map(|e| (at.clone(), e)).collect()
                }
            };
            (samples, rejected)
        }
        Err(e) => (OwnedSamples::default(), vec![(location(), e)]),
    };
    Item::Message {
        partition: message.partition(),
        offset: message.offset(),
        rejected,
        samples,
    }
}

/// The engine's side: offers, tracks progress, advances.
struct Driver<'e> {
    engine: &'e mut Engine,
    progress: Progress,
    lateness_ms: u64,
    idle_after: u64,
    out: Vec<Event>,
}

impl Driver<'_> {
    /// Handles what the reader sends until it finishes (it stops on shutdown), then
    /// flushes the engine.
    fn drive(
        mut self,
        rx: Receiver<Item>,
        mut on_event: impl FnMut(&Event),
    ) -> Result<ReadSummary, KafkaError> {
        let mut summary = ReadSummary::default();
        while let Ok(item) = rx.recv() {
            match item {
                Item::Message {
                    partition,
                    offset,
                    rejected,
                    samples: owned,
                } => {
                    summary.messages += 1;
                    summary.errors.extend(rejected);
                    let mut samples = Vec::with_capacity(owned.len());
                    owned.samples_into(&mut samples);
                    let newest =
                        super::source::offer_samples(self.engine, &samples, |_, _, _, _, _| true);
                    self.progress.observe(partition, offset, newest, now_ms());
                }
                Item::End(p) => self.progress.reached_end(p),
                Item::Idle => {}
                Item::Failed(e) => return Err(e),
                Item::Finished {
                    rest,
                    rejected,
                    input,
                } => {
                    let mut samples = Vec::with_capacity(rest.len());
                    rest.samples_into(&mut samples);
                    self.engine.offer_each(&samples, |_, _, _, _| {});
                    summary.errors.extend(rejected);
                    summary.input = input;
                    break;
                }
            }
            let now = now_ms();
            let watermark = self
                .progress
                .watermark(self.lateness_ms, now, self.idle_after, false);
            if let Some(watermark) = watermark {
                self.engine.advance(watermark, &mut self.out);
                for event in self.out.drain(..) {
                    on_event(&event);
                }
            }
        }
        self.engine.flush(&mut self.out);
        for event in self.out.drain(..) {
            on_event(&event);
        }
        Ok(summary)
    }
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
