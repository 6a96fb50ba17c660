//! `fulcrum bench`: generates its own cluster and sample stream and measures decoding, the
//! engine (quiet and in a storm), and resident memory per tracked pod, with the machine it
//! ran on. Benchmarks print figures; the test suite never asserts timings.
//!
//! - [`workload`]: the generated cluster, policies and stream.
//! - [`decode`]: Fulcrum's decoder against a bare parse of the same bytes.
//! - [`formats`]: the same for OTLP (protobuf, JSON) and Prometheus-adapter JSON.
//! - [`engine`]: samples per second through `offer` + `advance`.
//! - [`memory`]: resident memory from `/proc`.
//! - [`snapshot`]: the cluster written as a snapshot file and loaded back through the
//!   snapshot loader, so that the peak memory includes loading the cluster view.
//! - [`ingest`]: with `--brokers`, Fulcrum's consume → decode → engine path against a bare
//!   consumer reading the same topic.
//!
//! Decision latency is measured in the engine runs: from the message that let a decision be
//! taken being consumed to the decision reaching an actuator thread (see [`engine`]).

pub mod decode;
pub mod engine;
pub mod formats;
pub mod ingest;
pub mod memory;
pub mod snapshot;
pub mod workload;

use serde_json::{Value, json};

use engine::EngineRun;
use workload::Workload;

/// How big a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// 200 nodes / 6,000 pods: under a minute in a release build.
    Small,
    /// 1,000 nodes / 30,000 pods, plus 100 nodes for the growth table.
    Medium,
    /// 10,000 nodes / 300,000 pods, plus 100 and 1,000 nodes for the growth table: a few
    /// minutes in a release build.
    Full,
}

/// Ticks (10 s each) of every engine run at small and medium scale: 10 minutes of event
/// time.
pub const TICKS: u64 = 60;
/// Ticks of every engine run at full scale: 5 minutes of event time (episodes start at
/// minute 2 and are acted on or blocked from about minute 3), so that the run takes
/// minutes on two cores.
pub const FULL_TICKS: u64 = 30;
/// Share of nodes interfering in a quiet run.
pub const QUIET_SHARE: f64 = 0.02;
/// Share of nodes interfering in the storm run.
pub const STORM_SHARE: f64 = 0.30;

/// Nodes (30 pods each) of the per-format decode measurement, over 5 ticks.
pub const FORMAT_NODES: usize = 100;

/// Everything one `fulcrum bench` measured.
#[derive(Debug)]
pub struct BenchReport {
    /// The scale.
    pub scale: Scale,
    /// Single-sample messages.
    pub decode_single: decode::DecodeRates,
    /// Batched messages (one per node and tick).
    pub decode_batch: decode::DecodeRates,
    /// The other input formats.
    pub formats: Vec<formats::FormatRates>,
    /// The largest quiet run (memory is read from it).
    pub engine: EngineRun,
    /// The same cluster with 30% of nodes interfering.
    pub storm: EngineRun,
    /// Quiet runs at smaller scales, for the growth table.
    pub growth: Vec<EngineRun>,
    /// Ingest from a broker (with `--brokers`), or why it failed.
    pub ingest: Option<Result<ingest::IngestRates, String>>,
}

/// Runs the benchmark (ingest too when `brokers` is given); `progress` is told what runs
/// next.
pub fn run(scale: Scale, brokers: Option<&str>, mut progress: impl FnMut(&str)) -> BenchReport {
    let (nodes, growth_nodes, ingest_nodes): (usize, &[usize], usize) = match scale {
        Scale::Small => (200, &[], 200),
        Scale::Medium => (1_000, &[100], 1_000),
        Scale::Full => (10_000, &[100, 1_000], 2_000),
    };
    let ticks = if scale == Scale::Full {
        FULL_TICKS
    } else {
        TICKS
    };
    progress(&format!("engine, {nodes} nodes, quiet"));
    let engine = engine::run(&Workload::new(nodes, QUIET_SHARE), ticks);
    progress(&format!("engine, {nodes} nodes, storm"));
    let storm = engine::run(&Workload::new(nodes, STORM_SHARE), ticks);
    let growth = growth_nodes
        .iter()
        .map(|&n| {
            progress(&format!("engine, {n} nodes, quiet"));
            engine::run(&Workload::new(n, QUIET_SHARE), ticks)
        })
        .collect();
    let ingest = brokers.map(|b| {
        progress(&format!("ingest from {b}, {ingest_nodes} nodes"));
        ingest::run(b, &Workload::new(ingest_nodes, QUIET_SHARE), 30).map_err(|e| e.to_string())
    });
    progress("decode");
    let decode_workload = Workload::new(200, QUIET_SHARE);
    let single = decode::messages(&decode_workload, 5, false);
    let batch = decode::messages(&decode_workload, 5, true);
    BenchReport {
        scale,
        decode_single: decode::measure(&single, false),
        decode_batch: decode::measure(&batch, true),
        formats: formats::measure(FORMAT_NODES, 5),
        engine,
        storm,
        growth,
        ingest,
    }
}

/// CPU model and core count of this machine.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{model}, {cores} cores")
}

fn per_pod(bytes: u64, run: &EngineRun) -> u64 {
    bytes / run.pods.max(1) as u64
}

/// Bytes per tracked pod: steady (after the stream) and at peak, above the process's
/// footprint before the engine was built.
fn memory(run: &EngineRun) -> (u64, u64) {
    let steady = run.rss_after.now.saturating_sub(run.rss_before.now);
    let peak = run.rss_after.peak.saturating_sub(run.rss_before.now);
    (per_pod(steady, run), per_pod(peak, run))
}

impl BenchReport {
    /// The JSON object (`--output json`).
    pub fn json(&self) -> Value {
        let (bytes_per_pod, peak_bytes_per_pod) = memory(&self.engine);
        let growth: Vec<Value> = self
            .growth
            .iter()
            .chain([&self.engine])
            .map(|r| {
                json!({
                    "pods": r.pods,
                    "engine_samples_per_sec": r.rate(),
                    "decision_latency_p99_ms": r.latency.p99_ms,
                })
            })
            .collect();
        let mut out = json!({
            "machine": machine(),
            "scale": format!("{:?}", self.scale).to_lowercase(),
            "pods": self.engine.pods,
            "decode_samples_per_sec": self.decode_single.fulcrum,
            "bare_decode_samples_per_sec": self.decode_single.bare,
            "decode_batch_samples_per_sec": self.decode_batch.fulcrum,
            "bare_decode_batch_samples_per_sec": self.decode_batch.bare,
            "engine_samples_per_sec": self.engine.rate(),
            "storm_engine_samples_per_sec": self.storm.rate(),
            "storm_ratio": self.storm.rate() / self.engine.rate().max(1e-9),
            "engine_vs_bare_decode": self.engine.rate() / self.decode_single.bare.max(1e-9),
            "decisions": self.engine.decisions,
            "storm_decisions": self.storm.decisions,
            "bytes_per_pod": bytes_per_pod,
            "peak_bytes_per_pod": peak_bytes_per_pod,
            "growth": growth,
            "ingest_samples_per_sec": self.ingest_rates().map(|r| r.fulcrum),
            "bare_consumer_samples_per_sec": self.ingest_rates().map(|r| r.bare),
            "ingest_ratio": self.ingest_rates().map(|r| r.fulcrum / r.bare.max(1e-9)),
            "ingest_memory_samples_per_sec": self.ingest_rates().map(|r| r.memory),
            "ingest_error": self.ingest.as_ref().and_then(|r| r.as_ref().err()),
            "decision_latency_p50_ms": self.latency().p50_ms,
            "decision_latency_p99_ms": self.latency().p99_ms,
            "decision_latency_max_ms": self.latency().max_ms,
            "decision_latency_decisions": self.latency().count,
            "quiet_decision_latency_p99_ms": self.engine.latency.p99_ms,
            "storm_decision_latency_p99_ms": self.storm.latency.p99_ms,
        });
        if let Some(object) = out.as_object_mut() {
            for f in &self.formats {
                let key = |what: &str| format!("{what}_{}_samples_per_sec", f.format);
                object.insert(key("decode"), json!(f.fulcrum));
                object.insert(key("bare_decode"), json!(f.bare));
            }
        }
        out
    }

    /// The readable report.
    pub fn text(&self) -> String {
        let (bytes_per_pod, peak) = memory(&self.engine);
        let m = |r: f64| format!("{:.2} M samples/s", r / 1e6);
        let mut out = format!("fulcrum bench ({:?} scale) on {}\n", self.scale, machine());
        out += &format!(
            "  decode, single:   {} (bare parse {}, ratio {:.2})\n",
            m(self.decode_single.fulcrum),
            m(self.decode_single.bare),
            self.decode_single.fulcrum / self.decode_single.bare.max(1e-9)
        );
        out += &format!(
            "  decode, batched:  {} (bare parse {}, ratio {:.2})\n",
            m(self.decode_batch.fulcrum),
            m(self.decode_batch.bare),
            self.decode_batch.fulcrum / self.decode_batch.bare.max(1e-9)
        );
        for f in &self.formats {
            out += &format!(
                "  decode, {:<18}{} (plain parse {}, ratio {:.2}; {} messages)\n",
                format!("{}:", f.format),
                m(f.fulcrum),
                m(f.bare),
                f.fulcrum / f.bare.max(1e-9),
                f.messages
            );
        }
        for r in self.growth.iter().chain([&self.engine]) {
            out += &format!(
                "  engine, {:>7} pods, quiet: {} ({} decisions)\n",
                r.pods,
                m(r.rate()),
                r.decisions
            );
        }
        out += &format!(
            "  engine, {:>7} pods, storm: {} ({:.2} of quiet; {} decisions)\n",
            self.storm.pods,
            m(self.storm.rate()),
            self.storm.rate() / self.engine.rate().max(1e-9),
            self.storm.decisions
        );
        out += &format!(
            "  memory per tracked pod: {bytes_per_pod} B steady, {peak} B at peak (incl. loading the cluster view)\n"
        );
        match &self.ingest {
            Some(Ok(r)) => {
                out += &format!(
                    "  ingest from the broker ({} samples): {} (bare consumer {}, ratio {:.2}; the same messages from memory {})\n",
                    r.samples,
                    m(r.fulcrum),
                    m(r.bare),
                    r.fulcrum / r.bare.max(1e-9),
                    m(r.memory)
                )
            }
            Some(Err(e)) => out += &format!("  ingest from the broker failed: {e}\n"),
            None => out += "  ingest from a broker: not run (give --brokers HOST:PORT)\n",
        }
        let l = self.latency();
        out += &format!(
            "  decision latency (consumed message to actuator, {} decisions): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
            l.count, l.p50_ms, l.p99_ms, l.max_ms
        );
        out
    }

    /// Decision latency over the quiet and the storm run: the larger of each figure.
    pub fn latency(&self) -> engine::Latency {
        let (q, s) = (self.engine.latency, self.storm.latency);
        engine::Latency {
            count: q.count + s.count,
            p50_ms: q.p50_ms.max(s.p50_ms),
            p99_ms: q.p99_ms.max(s.p99_ms),
            max_ms: q.max_ms.max(s.max_ms),
        }
    }

    fn ingest_rates(&self) -> Option<ingest::IngestRates> {
        self.ingest.as_ref().and_then(|r| r.as_ref().ok()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_nodes_get_decisions_and_a_quiet_cluster_none() {
        // A small cluster: hot nodes must give decisions, or the benchmark measures an
        // engine with nothing to do.
        let quiet = engine::run(&Workload::new(50, 0.1), 40);
        assert!(quiet.decisions > 0, "{quiet:?}");
        assert_eq!(quiet.samples, 40 * 50 * 31);
        let none = engine::run(&Workload::new(50, 0.0), 40);
        assert_eq!(none.decisions, 0, "no interference, no decision");
    }

    #[test]
    fn both_parsers_read_every_sample() {
        let w = Workload::new(3, 0.0);
        for batched in [false, true] {
            let messages = decode::messages(&w, 2, batched);
            let options = fulcrum_engine::sample::DecodeOptions {
                now_ms: workload::T0_MS,
            };
            let decoded: usize = messages
                .iter()
                .map(|m| {
                    fulcrum_engine::sample::decode(m.as_bytes(), &options)
                        .map(|d| d.samples.len())
                        .unwrap_or(0)
                })
                .sum();
            assert_eq!(decoded, 2 * 3 * 31, "batched={batched}");
        }
    }
}
