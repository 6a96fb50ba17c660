//! Criterion micro-benchmarks of the per-sample hot path: the `fulcrum.metrics/v1` decoder
//! (one sample per message and one batch per node) and the engine's `offer_each` +
//! `advance` on the generated benchmark cluster (`fulcrum::bench::workload`).
//!
//! ```sh
//! cargo bench -p fulcrum --bench hot_path            # or --profile bench-fast
//! ```
//!
//! Not run by `cargo test` (bench targets are built only with `--benches`/`--all-targets`).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fulcrum::bench::decode::messages;
use fulcrum::bench::workload::{PODS_PER_NODE, T0_MS, Workload};
use fulcrum_engine::sample::{DecodeOptions, decode};
use fulcrum_engine::{EngineConfig, Event};

fn decoder(c: &mut Criterion) {
    let workload = Workload::new(20, 0.0);
    let options = DecodeOptions { now_ms: T0_MS };
    let mut group = c.benchmark_group("decode");
    for (name, batched) in [("single", false), ("batch_per_node", true)] {
        let msgs = messages(&workload, 1, batched);
        let samples: usize = msgs
            .iter()
            .map(|m| decode(m.as_bytes(), &options).map_or(0, |d| d.samples.len()))
            .sum();
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                for m in &msgs {
                    n += decode(m.as_bytes(), &options).map_or(0, |d| d.samples.len());
                }
                n
            });
        });
    }
    group.finish();
}

/// The steady per-sample path: one period of a 50-node stream (a tenth of the nodes
/// interfering from minute 2) through `offer_each` and `advance`, one node's message at a
/// time as the feed offers them, on one engine that keeps running across iterations
/// (sample generation is not timed).
fn engine_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    let workload = Workload::new(50, 0.1);
    group.throughput(Throughput::Elements(workload.pods() as u64 + 50));
    let mut engine = workload.engine(EngineConfig::default());
    let mut tick = 0u64;
    let mut samples = Vec::new();
    let mut out: Vec<Event> = Vec::new();
    group.bench_function("one_period_50_nodes", |b| {
        b.iter_custom(|iters| {
            let mut busy = Duration::ZERO;
            for _ in 0..iters {
                samples.clear();
                workload.tick(tick, &mut samples);
                tick += 1;
                let started = Instant::now();
                for message in samples.chunks(PODS_PER_NODE + 1) {
                    engine.offer_each(message, |_, _, _, _| {});
                    engine.advance_auto(&mut out);
                }
                busy += started.elapsed();
                out.clear();
            }
            busy
        });
    });
    group.finish();
}

criterion_group!(benches, decoder, engine_path);
criterion_main!(benches);
