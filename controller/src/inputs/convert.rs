//! One mapped data point at a time: find its rule, turn it into a value (gauge, rate or
//! quantile, scaled) with its series' state, and add it to its sample.

use std::hash::{Hash, Hasher};

use fulcrum_engine::sample::Sample;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;

use super::InputStats;
use super::assemble::{Assembler, Combine, Origin, Origins, TargetRef, Value};
use super::buckets::{Bucket, BucketSets};
use super::mapping::{Aggregate, Kind, MetricsMap, Target};
use super::rates::{Buckets, SeriesStates, Step};

/// A data point's reading, as the source sent it.
#[derive(Clone, Copy, Debug)]
pub enum Reading<'a> {
    /// A number without further type information (Prometheus; OTLP gauges).
    Gauge(f64),
    /// An OTLP sum.
    Sum {
        /// The value.
        value: f64,
        /// Whether the sum only grows (a counter).
        monotonic: bool,
        /// Delta (not cumulative) temporality.
        delta: bool,
    },
    /// A summary's precomputed quantiles: (quantile, value) pairs.
    Summary(&'a [ValueAtQuantile]),
    /// An explicit-bucket histogram (exponential ones are converted to this form).
    Histogram {
        /// Upper bounds of the buckets but the last.
        bounds: &'a [f64],
        /// Observations per bucket (`bounds.len() + 1`).
        counts: &'a [u64],
        /// Delta (not cumulative) temporality.
        delta: bool,
    },
}

/// One data point of a source metric.
#[derive(Clone, Copy, Debug)]
pub struct Point<'a> {
    /// The source metric name.
    pub source: &'a str,
    /// Event time (ms).
    pub ts_ms: i64,
    /// Start of a cumulative or delta series (ms), when the source says.
    pub start_ms: Option<i64>,
    /// The reading.
    pub reading: Reading<'a>,
    /// An order-independent hash of the point's labels (attributes), for its series key.
    pub labels_hash: u64,
}

/// The stateful part shared by the OTLP and Prometheus inputs.
pub struct Converter {
    /// The map.
    pub map: &'static MetricsMap,
    states: SeriesStates,
    assembler: Assembler,
    /// Counters.
    pub stats: InputStats,
    /// Scratch bounds and counts (exponential histograms as explicit buckets).
    pub buckets: (Vec<f64>, Vec<u64>),
    bucket_sets: BucketSets,
}

/// Order-independent hash of label pairs: the sum of the pairs' hashes.
pub fn labels_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    pairs.fold(0u64, |acc, pair| {
        let mut h = std::hash::DefaultHasher::new();
        pair.hash(&mut h);
        acc.wrapping_add(h.finish())
    })
}

impl Converter {
    /// A converter with empty state.
    pub fn new(map: &'static MetricsMap) -> Self {
        Self {
            map,
            states: SeriesStates::new(map.max_gap_ms),
            assembler: Assembler::default(),
            stats: InputStats::default(),
            buckets: Default::default(),
            bucket_sets: BucketSets::default(),
        }
    }

    /// The rule for a source metric given its labels, counting the point as unmapped
    /// when there is none.
    pub fn rule<'s>(
        &mut self,
        source: &str,
        label: impl Fn(&str) -> Option<&'s str>,
    ) -> Option<Target<'static>> {
        let map: &'static MetricsMap = self.map;
        let found = map.find(source, label);
        if found.is_none() {
            self.stats.unmapped += 1;
        }
        found
    }

    /// Converts `point` by `rule` and adds the result to its sample.
    pub fn apply(
        &mut self,
        rule: Target<'static>,
        point: &Point<'_>,
        target: &TargetRef<'_>,
        now_ms: i64,
    ) {
        let (metric, kind, scale, quantile, aggregate) = match rule {
            Target::Rule(r) => (r.metric.as_str(), r.kind, r.scale, r.quantile, r.aggregate),
            Target::Passthrough(name) => (name, Some(Kind::Gauge), 1.0, None, Aggregate::None),
        };
        let key = series_key(point, target);
        let stats = &mut self.stats;
        let ts = point.ts_ms;
        let step = match (kind, point.reading) {
            (None | Some(Kind::Gauge), Reading::Gauge(v))
            | (
                None,
                Reading::Sum {
                    value: v,
                    monotonic: false,
                    ..
                },
            )
            | (Some(Kind::Gauge), Reading::Sum { value: v, .. }) => {
                self.states.gauge(key, ts, v, stats)
            }
            (Some(Kind::Counter), Reading::Gauge(v))
            | (
                None | Some(Kind::Counter),
                Reading::Sum {
                    value: v,
                    delta: false,
                    ..
                },
            ) => self.states.counter(key, ts, v, point.start_ms, stats),
            (
                None | Some(Kind::Counter),
                Reading::Sum {
                    value: v,
                    delta: true,
                    ..
                },
            ) => self.states.delta(key, ts, v, point.start_ms, stats),
            (
                None | Some(Kind::Histogram),
                Reading::Histogram {
                    bounds,
                    counts,
                    delta,
                },
            ) => {
                let q = quantile.unwrap_or(0.99);
                let buckets = Buckets {
                    bounds,
                    counts,
                    delta,
                    start_ms: point.start_ms,
                };
                self.states.histogram(key, ts, buckets, q, stats)
            }
            (None | Some(Kind::Histogram), Reading::Summary(quantiles)) => {
                let q = quantile.unwrap_or(0.99);
                match quantiles.iter().find(|v| (v.quantile - q).abs() < 1e-9) {
                    Some(v) => self.states.gauge(key, ts, v.value, stats),
                    None => {
                        stats.missing_quantile += 1;
                        Step::Nothing
                    }
                }
            }
            _ => {
                stats.unsupported += 1;
                Step::Nothing
            }
        };
        let Step::Value(value) = step else {
            return;
        };
        let combine = match point.reading {
            Reading::Histogram { .. } | Reading::Summary(_) => Combine::Max,
            _ => Combine::Sum,
        };
        let value = value * scale;
        if !value.is_finite() {
            self.stats.unsupported += 1;
            return;
        }
        let mut target = *target;
        if aggregate == Aggregate::Pod && target.pod.is_some() {
            target.container = None;
        }
        self.stats.values += 1;
        let value = Value {
            metric,
            value,
            combine,
        };
        self.assembler.add(ts, &target, value, now_ms);
    }

    /// The Kafka message the next points come from (see [`Assembler::set_origin`]).
    pub fn set_origin(&mut self, origin: Option<Origin>) {
        self.assembler.set_origin(origin);
    }

    /// Groups the current origin's values joined (see [`Assembler::joined`]).
    pub fn joined(&self) -> usize {
        self.assembler.joined()
    }

    /// Moves finished samples, with their origins, into `out` (see
    /// [`Assembler::release`]).
    pub fn release(&mut self, now_ms: i64, out: &mut Vec<(Sample<'static>, Origins)>) {
        let window = i64::try_from(self.map.group_window_ms).unwrap_or(i64::MAX);
        self.complete_buckets(window, now_ms, false);
        self.assembler.release(window, now_ms, out);
    }

    /// Moves every waiting sample into `out`.
    pub fn release_all(&mut self, out: &mut Vec<(Sample<'static>, Origins)>) {
        self.complete_buckets(0, i64::MAX, true);
        self.assembler.release_all(out);
    }

    /// Adds a Prometheus `_bucket` sample to its bucket set.
    pub fn bucket(&mut self, bucket: &Bucket<'_>, now_ms: i64) {
        self.bucket_sets.add(bucket, &mut self.assembler, now_ms);
    }

    fn complete_buckets(&mut self, window: i64, now_ms: i64, all: bool) {
        let (states, assembler, stats) = (&mut self.states, &mut self.assembler, &mut self.stats);
        self.bucket_sets
            .complete(window, now_ms, all, states, assembler, stats);
    }

    /// Moves into `out` the origins whose claim on a sample ended without one (a bucket
    /// set that gave no value, or joined a sample holding the same message already).
    pub fn take_void(&mut self, out: &mut Vec<Origin>) {
        out.append(self.assembler.void());
    }
}

fn series_key(point: &Point<'_>, target: &TargetRef<'_>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    point.source.hash(&mut h);
    target.hash(&mut h);
    point.labels_hash.hash(&mut h);
    h.finish()
}
