//! Decode throughput of each input format (not a test; figures go to docs/benchmarks.md).
//!
//! ```sh
//! cargo build --release -p fulcrum --example input_throughput
//! ./target/release/examples/input_throughput write /tmp/tp
//! .venv/bin/python tests/fixtures/inputs/producer.py convert /tmp/tp/events.jsonl /tmp/tp
//! ./target/release/examples/input_throughput measure /tmp/tp tests/fixtures/inputs/test-map.yaml
//! ```
//!
//! `write` makes native JSON Lines (20 nodes, 10 pods each, 6 metrics per pod sample, one
//! batch per node and tick, 60 ticks); the producer turns them into OTLP JSON, OTLP
//! protobuf (hex lines) and Prometheus-adapter JSON; `measure` decodes each file through
//! `fulcrum::inputs::Input` (the converters' state and sample assembly included).

use std::path::Path;
use std::time::{Duration, Instant};

use fulcrum::inputs::{Input, InputFormat, InputSpec, MetricsMap};
use fulcrum_engine::sample::DecodeOptions;

const T0: i64 = 1_764_151_200_000;

fn write(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the directory");
    let mut out = String::new();
    for tick in 0..60i64 {
        let ts = T0 + tick * 10_000;
        for n in 0..20 {
            let mut samples = Vec::new();
            for p in 0..10 {
                let r = ((tick * 31 + n * 7 + p * 3) % 17) as f64 / 17.0;
                samples.push(format!(
                    r#"{{"ts":{ts},"node":"node-{n}","pod":{{"namespace":"shop","name":"app-{n}-{p}","uid":"uid-{n}-{p}"}},"container":"main","metrics":{{"cpu_usage_cores":{},"latency_p99_ms":{},"mem_bw_bytes_per_sec":{},"llc_miss_rate":{},"cpi":{},"qps":{}}}}}"#,
                    1.0 + r,
                    100.0 + 50.0 * r,
                    2e9 * (1.0 + r),
                    0.2 + r / 10.0,
                    0.9 + r / 5.0,
                    800.0 + 10.0 * r
                ));
            }
            samples.push(format!(
                r#"{{"ts":{ts},"node":"node-{n}","metrics":{{"mem_bw_util":0.3}}}}"#
            ));
            out.push_str(&format!(
                "{{\"schema\":\"fulcrum.metrics/v1\",\"samples\":[{}]}}\n",
                samples.join(",")
            ));
        }
    }
    std::fs::write(dir.join("events.jsonl"), out).expect("write events.jsonl");
}

fn unhex(line: &str) -> Vec<u8> {
    (0..line.len() / 2)
        .filter_map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn measure(dir: &Path, map: &Path) {
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let lines = |f: &str| {
        read(f)
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect::<Vec<_>>()
    };
    let cases = [
        ("native", InputFormat::Native, lines("events.jsonl")),
        ("otlp (JSON)", InputFormat::Otlp, lines("otlp.jsonl")),
        (
            "otlp (protobuf)",
            InputFormat::Otlp,
            read("otlp.hex").lines().map(unhex).collect(),
        ),
        (
            "prometheus-json",
            InputFormat::PrometheusJson,
            lines("prometheus.jsonl"),
        ),
    ];
    println!("| format | messages | bytes | messages/s | samples/s | MB/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, format, messages) in cases {
        let map = MetricsMap::load(map).unwrap_or_else(|e| panic!("{e}"));
        let spec = InputSpec::new(format, map);
        let bytes: usize = messages.iter().map(Vec::len).sum();
        let options = DecodeOptions {
            now_ms: T0 + 86_400_000,
        };
        let (mut passes, mut samples) = (0u64, 0u64);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let mut input = Input::new(spec);
            for m in &messages {
                if let Ok(decoded) = input.decode(m, &options) {
                    samples += decoded.samples.len() as u64;
                }
            }
            samples += input.finish().samples.len() as u64;
            passes += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let n = messages.len() as f64 * passes as f64;
        println!(
            "| {name} | {} | {bytes} | {:.0} | {:.0} | {:.1} |",
            messages.len(),
            n / secs,
            samples as f64 / secs,
            bytes as f64 * passes as f64 / secs / 1e6
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") if args.len() == 3 => write(Path::new(&args[2])),
        Some("measure") if args.len() == 4 => measure(Path::new(&args[2]), Path::new(&args[3])),
        _ => eprintln!("usage: input_throughput write DIR | measure DIR MAP"),
    }
}
