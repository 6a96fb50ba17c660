//! `fulcrum bench --scale small --output json`, run from the binary just built (debug):
//! the harness runs to the end and reports every key issue 13 names, for every input
//! format. Rates are only checked to be measured (positive, finite): the test suite never
//! asserts timings.

use std::process::Command;

use serde_json::Value;

use crate::support::fulcrum_bin;

/// Keys that hold a rate, a ratio or a size, measured in every run.
const MEASURED: [&str; 17] = [
    "decode_samples_per_sec",
    "bare_decode_samples_per_sec",
    "decode_batch_samples_per_sec",
    "bare_decode_batch_samples_per_sec",
    "decode_otlp_protobuf_samples_per_sec",
    "bare_decode_otlp_protobuf_samples_per_sec",
    "decode_otlp_json_samples_per_sec",
    "bare_decode_otlp_json_samples_per_sec",
    "decode_prometheus_json_samples_per_sec",
    "bare_decode_prometheus_json_samples_per_sec",
    "engine_samples_per_sec",
    "storm_engine_samples_per_sec",
    "storm_ratio",
    "engine_vs_bare_decode",
    "bytes_per_pod",
    "peak_bytes_per_pod",
    "decision_latency_p99_ms",
];

/// Keys measured only with `--brokers`.
const INGEST: [&str; 4] = [
    "ingest_samples_per_sec",
    "bare_consumer_samples_per_sec",
    "ingest_ratio",
    "ingest_memory_samples_per_sec",
];

#[test]
fn bench_small_reports_every_key_with_measured_values_and_decisions() {
    let out = Command::new(fulcrum_bin())
        .args(["bench", "--scale", "small", "--output", "json"])
        .output()
        .expect("run fulcrum bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in MEASURED {
        let value = report[key].as_f64();
        assert!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "{key}: {}",
            report[key]
        );
    }
    // Without a broker the ingest keys are present and null, and no error is claimed.
    for key in INGEST {
        assert!(report[key].is_null(), "{key}: {}", report[key]);
    }
    assert!(
        report["ingest_error"].is_null(),
        "{}",
        report["ingest_error"]
    );
    assert_eq!(report["scale"], "small");
    assert_eq!(report["pods"], 6_000);
    // The engine had work to do: the injected episodes give decisions in both runs, and
    // the peak includes the steady state.
    assert!(report["decisions"].as_u64() > Some(0), "{report}");
    assert!(report["storm_decisions"].as_u64() > Some(0), "{report}");
    assert!(report["peak_bytes_per_pod"].as_u64() >= report["bytes_per_pod"].as_u64());
    assert!(
        report["machine"]
            .as_str()
            .is_some_and(|m| m.contains("cores"))
    );
}
