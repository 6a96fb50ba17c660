//! Inputs besides Fulcrum's native `fulcrum.metrics/v1` JSON: OpenTelemetry metrics (OTLP
//! protobuf or JSON, as the Collector's Kafka exporter writes them) and Prometheus samples
//! (the prometheus-kafka-adapter JSON). Both are mapped onto policy metrics by a
//! [`MetricsMap`] and become the engine's [`Sample`] values, so everything after decoding
//! is the code path of the native schema. Documented in `docs/inputs.md`.
//!
//! ```text
//!  message ─► otlp / prometheus ─► Converter: map rule ─► rates (per-series state)
//!                                                      └► Assembler ─► Sample ─► engine
//! ```

pub mod assemble;
pub mod buckets;
pub mod convert;
pub mod exponential;
pub mod mapping;
pub mod otlp;
pub mod prometheus;
pub mod rates;
mod target;

use std::path::PathBuf;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, Decoded, Metric, Sample, decode, range};
use serde::Serialize;

pub use assemble::{Origin, Origins};
pub use convert::Converter;
pub use mapping::{MapError, MetricsMap};

/// The format of the samples topic (or events file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Fulcrum's `fulcrum.metrics/v1` JSON.
    #[default]
    Native,
    /// OTLP `ExportMetricsServiceRequest`, protobuf (`otlp_proto`) or JSON (`otlp_json`).
    Otlp,
    /// prometheus-kafka-adapter JSON: `{"timestamp","value","name","labels"}`.
    PrometheusJson,
}

/// The command-line options choosing the input.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct InputArgs {
    /// Format of the samples topic or events file.
    #[arg(long, value_enum, env = "FULCRUM_INPUT_FORMAT", default_value_t = InputFormat::Native)]
    pub input_format: InputFormat,
    /// Metrics map (YAML) for `otlp` and `prometheus-json`; the shipped default otherwise.
    #[arg(long, env = "FULCRUM_METRICS_MAP", value_name = "FILE")]
    pub metrics_map: Option<PathBuf>,
}

impl InputArgs {
    /// The input these options describe, reading the map file. For OTLP and Prometheus
    /// the map's `group_window_ms` must be below the engine's lateness, or grouped
    /// samples would reach the engine late.
    pub fn spec(&self, lateness_ms: u64) -> Result<InputSpec, MapError> {
        let map = match &self.metrics_map {
            Some(path) => MetricsMap::load(path)?,
            None => MetricsMap::default_map(),
        };
        if self.input_format != InputFormat::Native && map.group_window_ms >= lateness_ms {
            return Err(MapError::Window {
                window_ms: map.group_window_ms,
                lateness_ms,
            });
        }
        Ok(InputSpec::new(self.input_format, map))
    }
}

/// A format and its map; cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct InputSpec {
    /// The format.
    pub format: InputFormat,
    /// The map (read once per process and kept for its lifetime).
    pub map: &'static MetricsMap,
}

impl Default for InputSpec {
    fn default() -> Self {
        Self::native()
    }
}

impl InputSpec {
    /// `format` with `map`, which is kept for the rest of the process.
    pub fn new(format: InputFormat, map: MetricsMap) -> Self {
        Self {
            format,
            map: Box::leak(Box::new(map)),
        }
    }

    /// The native schema.
    pub fn native() -> Self {
        static EMPTY: std::sync::OnceLock<MetricsMap> = std::sync::OnceLock::new();
        Self {
            format: InputFormat::Native,
            map: EMPTY.get_or_init(|| {
                MetricsMap::parse("metrics: []", "(empty)").unwrap_or_else(|e| panic!("{e}"))
            }),
        }
    }
}

/// Counters of the OTLP and Prometheus inputs (all zero for the native schema).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputStats {
    /// Data points of metrics the map does not name: dropped.
    pub unmapped: u64,
    /// Data points whose type the rule cannot convert (e.g. a histogram under a counter
    /// rule), or whose result is not finite: dropped.
    pub unsupported: u64,
    /// Prometheus staleness markers and OTLP points flagged "no recorded value": dropped.
    pub stale: u64,
    /// Points not newer than their series' last point (duplicates, out of order): dropped.
    pub out_of_order: u64,
    /// First points of counter and histogram series (a rate needs two): no value yet.
    pub first_points: u64,
    /// Counter and histogram resets.
    pub counter_resets: u64,
    /// Gaps longer than `max_gap_ms`: the series restarted.
    pub gaps: u64,
    /// Histogram intervals without observations: no value.
    pub empty_intervals: u64,
    /// Summary points without the rule's quantile: dropped.
    pub missing_quantile: u64,
    /// Values produced (before grouping into samples).
    pub values: u64,
}

/// Whether a sample's values pass the native schema's unit checks (fractions in 0..1, no
/// absurd magnitudes; `fulcrum_engine::sample::range`), checked after conversion and
/// summing; a sample that fails is rejected whole with the metric named, as the native
/// decoder rejects it.
fn check(sample: &Sample<'_>) -> Result<(), DecodeError> {
    let problem = sample
        .metrics
        .iter()
        .find_map(|m| range::check(&m.name, m.value).map(|p| (m.name.clone(), p)));
    match problem {
        None => Ok(()),
        Some((name, problem)) => Err(DecodeError::Field {
            field: format!("metrics.{name}"),
            problem,
        }),
    }
}

/// A `'static` sample as one of any lifetime (`SmallVec` makes `Sample` invariant); the
/// metrics stay inline.
fn relabel<'a>(sample: Sample<'static>) -> Sample<'a> {
    Sample {
        ts_ms: sample.ts_ms,
        node: sample.node,
        pod: sample.pod,
        container: sample.container,
        metrics: sample
            .metrics
            .into_iter()
            .map(|m| Metric {
                name: m.name,
                value: m.value,
            })
            .collect(),
    }
}

/// A decoder for one topic or file: the native decoder, or a converter with its state.
pub struct Input {
    format: InputFormat,
    converter: Converter,
    released: Vec<(Sample<'static>, Origins)>,
    /// Origins of the samples last returned, by index.
    origins: Vec<Origins>,
    /// Origins of the samples last rejected by the unit checks.
    dropped: Vec<Origin>,
}

impl Input {
    /// A decoder for `spec`.
    pub fn new(spec: InputSpec) -> Self {
        Self {
            format: spec.format,
            converter: Converter::new(spec.map),
            released: Vec::new(),
            origins: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// The format.
    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// Decodes one message. For OTLP and Prometheus the samples are those the message
    /// completed (possibly with values of earlier messages); rejected data points are in
    /// `rejected`. `Err` when the message as a whole is unusable.
    pub fn decode<'a>(
        &mut self,
        bytes: &'a [u8],
        options: &DecodeOptions,
    ) -> Result<Decoded<'a>, DecodeError> {
        self.decode_at(bytes, options, None)
    }

    /// [`Input::decode`] of the Kafka message `origin`: the samples remember which
    /// messages their values came from ([`Input::origins`]), and [`Input::joined`] says
    /// how many samples still to come hold values of this one.
    pub fn decode_at<'a>(
        &mut self,
        bytes: &'a [u8],
        options: &DecodeOptions,
        origin: Option<Origin>,
    ) -> Result<Decoded<'a>, DecodeError> {
        let mut rejected = Vec::new();
        self.converter.set_origin(origin);
        self.origins.clear();
        self.dropped.clear();
        match self.format {
            InputFormat::Native => return decode(bytes, options),
            InputFormat::Otlp => otlp::decode(bytes, options, &mut self.converter, &mut rejected)?,
            InputFormat::PrometheusJson => {
                prometheus::decode(bytes, options, &mut self.converter, &mut rejected)?
            }
        }
        self.converter.release(options.now_ms, &mut self.released);
        let samples = self.take_released(&mut rejected).map(relabel).collect();
        Ok(Decoded { samples, rejected })
    }

    /// The samples whose group window has passed in wall-clock time by `now_ms`, without
    /// a new message (a quiet feed). Their origins are in [`Input::origins`].
    pub fn release_due(&mut self, now_ms: i64) -> Decoded<'static> {
        self.origins.clear();
        self.dropped.clear();
        self.converter.release(now_ms, &mut self.released);
        let mut rejected = Vec::new();
        let samples = self.take_released(&mut rejected).collect();
        Decoded { samples, rejected }
    }

    /// Drains the released samples: those passing the unit checks, with their origins
    /// kept in `origins`; the others into `rejected`, their origins into `dropped`.
    fn take_released<'s>(
        &'s mut self,
        rejected: &'s mut Vec<DecodeError>,
    ) -> impl Iterator<Item = Sample<'static>> + 's {
        self.converter.take_void(&mut self.dropped);
        let (origins, dropped) = (&mut self.origins, &mut self.dropped);
        self.released
            .drain(..)
            .filter_map(move |(sample, from)| match check(&sample) {
                Ok(()) => {
                    origins.push(from);
                    Some(sample)
                }
                Err(e) => {
                    rejected.push(e);
                    dropped.extend(from);
                    None
                }
            })
    }

    /// The messages whose values sample `i` of the last decode or release holds (empty
    /// for the native schema and outside Kafka).
    pub fn origins(&self, i: usize) -> &[Origin] {
        self.origins.get(i).map_or(&[], |o| &o[..])
    }

    /// The messages whose values went into samples the last decode or release rejected,
    /// or into Prometheus bucket sets that gave no value (each settles one claim).
    pub fn dropped_origins(&self) -> &[Origin] {
        &self.dropped
    }

    /// How many samples hold values of the last decoded message: each of them, when
    /// released (by this decode or later), names the message in its origins once.
    pub fn joined(&self) -> usize {
        self.converter.joined()
    }

    /// The samples still waiting for the rest of their values (end of input), and those
    /// of them that fail the unit checks.
    pub fn finish(&mut self) -> Decoded<'static> {
        let mut rejected = Vec::new();
        self.converter.release_all(&mut self.released);
        self.origins.clear();
        self.dropped.clear();
        let samples = self.take_released(&mut rejected).collect();
        Decoded { samples, rejected }
    }

    /// The counters.
    pub fn stats(&self) -> &InputStats {
        &self.converter.stats
    }
}
