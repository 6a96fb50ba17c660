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
pub mod convert;
pub mod mapping;
pub mod otlp;
pub mod prometheus;
pub mod rates;
mod target;

use std::path::PathBuf;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, Decoded, Metric, Sample, decode, range};
use serde::Serialize;

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
    /// Data points whose type the rule cannot convert (e.g. a summary), or whose result is
    /// not finite: dropped.
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
    /// Values produced (before grouping into samples).
    pub values: u64,
}

/// The samples whose values pass the native schema's unit checks (fractions in 0..1, no
/// absurd magnitudes; `fulcrum_engine::sample::range`), checked after conversion and
/// summing; the others are rejected whole with the metric named, as the native decoder
/// rejects them.
fn checked<'r>(
    samples: impl Iterator<Item = Sample<'static>> + 'r,
    rejected: &'r mut Vec<DecodeError>,
) -> impl Iterator<Item = Sample<'static>> + 'r {
    samples.filter(move |sample| {
        let problem = sample
            .metrics
            .iter()
            .find_map(|m| range::check(&m.name, m.value).map(|p| (m.name.clone(), p)));
        match problem {
            None => true,
            Some((name, problem)) => {
                rejected.push(DecodeError::Field {
                    field: format!("metrics.{name}"),
                    problem,
                });
                false
            }
        }
    })
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
    released: Vec<Sample<'static>>,
}

impl Input {
    /// A decoder for `spec`.
    pub fn new(spec: InputSpec) -> Self {
        Self {
            format: spec.format,
            converter: Converter::new(spec.map),
            released: Vec::new(),
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
        let mut rejected = Vec::new();
        match self.format {
            InputFormat::Native => return decode(bytes, options),
            InputFormat::Otlp => otlp::decode(bytes, options, &mut self.converter, &mut rejected)?,
            InputFormat::PrometheusJson => {
                prometheus::decode(bytes, options, &mut self.converter, &mut rejected)?
            }
        }
        self.converter.release(options.now_ms, &mut self.released);
        let samples = checked(self.released.drain(..), &mut rejected)
            .map(relabel)
            .collect();
        Ok(Decoded { samples, rejected })
    }

    /// The samples still waiting for the rest of their values (end of input), and those
    /// of them that fail the unit checks.
    pub fn finish(&mut self) -> Decoded<'static> {
        let mut all = Vec::new();
        self.converter.release_all(&mut all);
        let mut rejected = Vec::new();
        let samples = checked(all.into_iter(), &mut rejected).collect();
        Decoded { samples, rejected }
    }

    /// The counters.
    pub fn stats(&self) -> &InputStats {
        &self.converter.stats
    }
}
