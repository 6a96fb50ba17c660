//! Ingest from a real broker: the same topic read by Fulcrum's consume → decode → engine
//! path (`feed::reader::read_topic`, as `fulcrum replay --brokers` reads) and by a bare
//! rdkafka consumer that only parses each message, in the same run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fulcrum_engine::EngineConfig;
use fulcrum_engine::sample::{DecodeOptions, decode};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::decode::{bare_samples, messages};
use super::workload::Workload;
use crate::feed::KafkaSettings;
use crate::feed::reader::{ReaderContext, read_topic};
use crate::inputs::InputSpec;

/// Partitions of the benchmark topic.
const PARTITIONS: i32 = 8;

/// Samples per second through each path.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IngestRates {
    /// Fulcrum: consume, decode, offer, advance.
    pub fulcrum: f64,
    /// A bare consumer that parses each message and does nothing else.
    pub bare: f64,
    /// The same messages decoded and offered from memory, without a broker (the watermark
    /// follows the newest sample less the lateness): the most Fulcrum's path can reach.
    pub memory: f64,
    /// Samples in the topic.
    pub samples: u64,
}

/// Why the ingest benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The broker refused or failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The async runtime for topic creation could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Produces `ticks` ticks of `workload` (one batch message per node and tick, keyed by node)
/// to a fresh topic on `brokers`, then reads it with both paths.
pub fn run(brokers: &str, workload: &Workload, ticks: u64) -> Result<IngestRates, IngestError> {
    let topic = format!("fulcrum.bench.{}", std::process::id());
    create_topic(brokers, &topic)?;
    let batches = messages(workload, ticks, true);
    let samples: u64 = batches.iter().map(|m| bare_samples(m, true) as u64).sum();
    produce(brokers, &topic, &batches)?;
    let settings = KafkaSettings::new(brokers, &topic, "fulcrum-bench");
    // Each path reads twice; the second read counts (both see a warm broker).
    let mut rates = IngestRates {
        samples,
        ..IngestRates::default()
    };
    for _ in 0..2 {
        rates.bare = samples as f64 / bare_read(&settings)?.as_secs_f64();
        rates.fulcrum = samples as f64 / fulcrum_read(&settings, workload)?.as_secs_f64();
        rates.memory = samples as f64 / memory_read(&batches, workload).as_secs_f64();
    }
    Ok(rates)
}

fn create_topic(brokers: &str, topic: &str) -> Result<(), IngestError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in runtime.block_on(admin.create_topics([&new], &options))? {
        result.map_err(|(_, code)| KafkaError::AdminOp(code))?;
    }
    Ok(())
}

fn produce(brokers: &str, topic: &str, batches: &[String]) -> Result<(), IngestError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    for value in batches {
        // The node name keys the message, as agents do.
        let key = value
            .split("\"node\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(_), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Reads every partition from its beginning to its end, parsing each message bare.
fn bare_read(settings: &KafkaSettings) -> Result<Duration, IngestError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(&settings.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut open: BTreeSet<i32> = (0..PARTITIONS).collect();
    let started = Instant::now();
    let mut parsed = 0usize;
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let text = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("");
                parsed += bare_samples(text, true);
            }
            None => {}
        }
    }
    let elapsed = started.elapsed();
    std::hint::black_box(parsed);
    Ok(elapsed)
}

/// Reads the topic through Fulcrum's path into a fresh engine.
fn fulcrum_read(settings: &KafkaSettings, workload: &Workload) -> Result<Duration, IngestError> {
    let mut engine = workload.engine(EngineConfig::default());
    let (_stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let mut events = 0usize;
    read_topic(
        settings,
        InputSpec::native(),
        &mut engine,
        15_000,
        false,
        &shutdown,
        |_| events += 1,
    )?;
    let elapsed = started.elapsed();
    std::hint::black_box(events);
    Ok(elapsed)
}

/// Decodes and offers `batches` from memory into a fresh engine, advancing it after each
/// message, on one thread.
fn memory_read(batches: &[String], workload: &Workload) -> Duration {
    let mut engine = workload.engine(EngineConfig::default());
    let options = DecodeOptions {
        now_ms: super::workload::T0_MS,
    };
    let mut out = Vec::new();
    let started = Instant::now();
    for message in batches {
        if let Ok(decoded) = decode(message.as_bytes(), &options) {
            engine.offer_each(&decoded.samples, |_, _, _, _| {});
        }
        engine.advance_auto(&mut out);
        out.clear();
    }
    engine.flush(&mut out);
    let elapsed = started.elapsed();
    std::hint::black_box(out.len());
    elapsed
}
