//! Histograms into quantiles over each interval: OTLP exponential (cumulative and delta),
//! explicit delta and summary points made by the independent producer
//! (`tests/fixtures/inputs/producer.py histograms`, the official `opentelemetry-proto`
//! package), and Prometheus `_bucket` series as the prometheus-kafka-adapter writes them
//! (one message per bucket). Each with an empty interval and a reset.

use std::collections::HashMap;

use fulcrum::inputs::{Input, InputFormat, InputSpec, MetricsMap, Origin};
use fulcrum_engine::sample::DecodeOptions;

use crate::inputs::{close, decode_all, producer, prom, unhex, values};
use crate::scenario::{T0, temp_dir};

#[test]
fn otlp_exponential_delta_and_summary_points_become_quantiles_over_each_interval() {
    let dir = temp_dir("inputs-hist");
    producer(&["histograms", &dir.display().to_string()]);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let json: Vec<Vec<u8>> = read("hist.jsonl")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    let proto: Vec<Vec<u8>> = read("hist.hex").lines().map(unhex).collect();
    let map = || {
        MetricsMap::parse(
            "metrics:\n\
             - {source: rpc.exp, metric: lat_exp, type: histogram, quantile: 0.5}\n\
             - {source: rpc.exp.delta, metric: lat_exp_delta, type: histogram, quantile: 0.5}\n\
             - {source: rpc.delta, metric: lat_delta, type: histogram, quantile: 0.5}\n\
             - {source: rpc.summary, metric: lat_summary, type: histogram, quantile: 0.99, scale: 1000}\n",
            "test",
        )
        .unwrap()
    };
    let from_json = decode_all(InputFormat::Otlp, map(), &json);
    let from_proto = decode_all(InputFormat::Otlp, map(), &proto);
    assert_eq!(from_json, from_proto, "JSON and protobuf decode alike");
    let (samples, rejected, stats) = from_json;
    assert!(rejected.is_empty(), "{rejected:?}");

    // Cumulative exponential: the second point added 2 observations in (0.5, 1] (a new
    // lower bucket): the median of the interval is 0.75. The third point added none: no
    // value. The fourth has fewer observations (a restart): its 3 in (1, 2] are the
    // interval, median 1.5.
    let exp = values(&samples, "lat_exp");
    assert!(close(&exp, &[(10_000, 0.75), (30_000, 1.5)]), "{exp:?}");
    // Delta exponential: 4 observations in (2, 4], median 3; then an empty point.
    let delta = values(&samples, "lat_exp_delta");
    assert!(close(&delta, &[(10_000, 3.0)]), "{delta:?}");
    // Explicit delta: 6 observations in (0.1, 1], median 0.55.
    let explicit = values(&samples, "lat_delta");
    assert!(close(&explicit, &[(10_000, 0.55)]), "{explicit:?}");
    // Summary: its own p99 (0.8 s, in ms); the point without p99 is dropped, counted.
    let summary = values(&samples, "lat_summary");
    assert!(close(&summary, &[(10_000, 800.0)]), "{summary:?}");
    assert_eq!(stats.missing_quantile, 1);
    // The empty intervals give no sample at all at 20 s, not a made-up value.
    assert!(
        samples.iter().all(|s| s.ts_ms != T0 + 20_000),
        "{samples:?}"
    );
    assert_eq!(stats.empty_intervals, 2);
    assert_eq!(stats.counter_resets, 1);
    assert_eq!((stats.unsupported, stats.unmapped), (0, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Prometheus messages of the bucket test: two series of one pod over 60 s.
fn bucket_messages() -> Vec<Vec<u8>> {
    let name = "http_request_duration_seconds_bucket";
    let labels = |handler: &'static str, le: &'static str| {
        vec![
            ("node", "node-0"),
            ("namespace", "shop"),
            ("pod", "cart-0"),
            ("container", "app"),
            ("handler", handler),
            ("le", le),
        ]
    };
    // One message per bucket (in no particular order), with _sum and _count beside them.
    let scrape = |t: i64, handler: &'static str, counts: [&str; 3]| {
        let series = &labels(handler, "")[..5];
        vec![
            prom(t, name, counts[2], &labels(handler, "+Inf")),
            prom(t, name, counts[0], &labels(handler, "0.1")),
            prom(t, name, counts[1], &labels(handler, "0.5")),
            prom(t, "http_request_duration_seconds_count", counts[2], series),
            prom(t, "http_request_duration_seconds_sum", "1.5", series),
        ]
    };
    let mut messages = Vec::new();
    messages.extend(scrape(0, "/cart", ["5", "5", "5"])); // first point
    messages.extend(scrape(0, "/health", ["0", "0", "0"])); // first point
    // /cart: 10 new in (0.1, 0.5], median 0.3 s; /health: 4 new above 0.5 s, median at
    // the highest finite bound. The pod's latency is the worse of its series.
    messages.extend(scrape(10, "/cart", ["5", "15", "15"]));
    messages.extend(scrape(10, "/health", ["0", "0", "4"]));
    let memory = "container_memory_working_set_bytes";
    messages.push(prom(10, memory, "1e8", &labels("", "")[..4]));
    messages.extend(scrape(20, "/cart", ["5", "15", "15"])); // no new requests
    messages.extend(scrape(30, "/cart", ["2", "2", "2"])); // restarted: 2 in (0, 0.1]
    messages.extend(scrape(60, "/cart", ["2", "2", "2"])); // closes the windows
    messages
}

fn bucket_map() -> MetricsMap {
    MetricsMap::parse(
        "metrics:\n\
         - {source: http_request_duration_seconds, metric: latency_p99_ms, type: histogram, quantile: 0.5, scale: 1000, aggregate: pod}\n\
         - {source: container_memory_working_set_bytes, metric: mem_usage_bytes, aggregate: pod}\n",
        "test",
    )
    .unwrap()
}

/// Every message's claim on samples (what the feed waits for before committing its
/// offset) is settled exactly once: by a sample naming it, or as dropped (a bucket set
/// that gave no value, or a sample rejected). A claim never settled would hold commits
/// forever; one settled twice would let them run ahead of the engine.
#[test]
fn every_message_claim_on_a_grouped_sample_is_settled_exactly_once() {
    let mut input = Input::new(InputSpec::new(InputFormat::PrometheusJson, bucket_map()));
    let options = DecodeOptions {
        now_ms: T0 + 86_400_000,
    };
    let mut claims: HashMap<i64, i64> = HashMap::new();
    let settle = |input: &Input, n: usize, claims: &mut HashMap<i64, i64>| {
        for i in 0..n {
            for o in input.origins(i) {
                *claims.entry(o.offset).or_default() -= 1;
            }
        }
        for o in input.dropped_origins() {
            *claims.entry(o.offset).or_default() -= 1;
        }
    };
    let mut released = 0;
    for (offset, message) in bucket_messages().iter().enumerate() {
        let origin = Origin {
            partition: 0,
            offset: offset as i64,
        };
        let n = input
            .decode_at(message, &options, Some(origin))
            .unwrap()
            .samples
            .len();
        released += n;
        *claims.entry(offset as i64).or_default() += input.joined() as i64;
        settle(&input, n, &mut claims);
    }
    let n = input.finish().samples.len();
    released += n;
    settle(&input, n, &mut claims);
    assert_eq!(released, 2, "the control: samples were released");
    assert!(!claims.is_empty());
    let unsettled: Vec<_> = claims.iter().filter(|(_, c)| **c != 0).collect();
    assert!(unsettled.is_empty(), "offset -> claims left: {unsettled:?}");
}

#[test]
fn prometheus_bucket_series_become_a_quantile_per_series_and_interval() {
    let messages = bucket_messages();
    let (samples, rejected, stats) =
        decode_all(InputFormat::PrometheusJson, bucket_map(), &messages);
    assert!(rejected.is_empty(), "{rejected:?}");

    let p50 = values(&samples, "latency_p99_ms");
    assert!(close(&p50, &[(10_000, 500.0), (30_000, 50.0)]), "{p50:?}");
    // The quantile joined the pod's sample of its time: one sample, not a second one the
    // engine would drop as a duplicate.
    let at10: Vec<_> = samples.iter().filter(|s| s.ts_ms == T0 + 10_000).collect();
    assert_eq!(at10.len(), 1, "{at10:?}");
    assert_eq!(at10[0].metric("mem_usage_bytes"), Some(1e8));
    assert_eq!(at10[0].container, None);
    // The empty interval (20 s) and the last point (60 s, nothing new) give no sample.
    assert_eq!(samples.len(), 2, "{samples:?}");
    assert_eq!(stats.empty_intervals, 2);
    assert_eq!(stats.counter_resets, 1);
    assert_eq!(stats.first_points, 2);
    // _sum and _count are not mapped: dropped and counted.
    let parts = messages
        .iter()
        .filter(|m| {
            String::from_utf8_lossy(m).contains("_seconds_sum")
                || String::from_utf8_lossy(m).contains("_seconds_count")
        })
        .count() as u64;
    assert_eq!(stats.unmapped, parts);
}
