//! Recorded-style scenarios for `fulcrum replay`: a cluster list as `kubectl get -o yaml`
//! prints it and JSON Lines of samples as node agents send them, written to files and
//! replayed through the same code path as the CLI.

use std::path::{Path, PathBuf};

use fulcrum::replay::{ReplayInput, ReplayReport, render_json, replay_files};
use fulcrum_engine::decision::Outcome;
use fulcrum_engine::{Decision, EngineConfig};
use serde_json::{Value, json};

pub const T0: i64 = 1_764_151_200_000; // 2025-11-26T10:00:00Z
pub const NOW: i64 = T0 + 86_400_000;

/// Deterministic noise in [0, 1).
pub fn noise(seed: u64, i: u64) -> f64 {
    let mut x = (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A seed spread over all 64 bits: [`noise`] of nearby seeds are shifted copies of one
/// another (correlated), of spread seeds independent.
pub fn spread(seed: u64) -> u64 {
    seed.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(32) ^ 0x5851_F42D_4C95_7F2D
}

/// A pod in a scenario.
pub struct PodSpec {
    pub namespace: &'static str,
    pub name: String,
    pub node: String,
    pub class: &'static str,
    pub protected: bool,
}

/// A co-located cluster: `nodes` nodes with an online service each, busy decoys, an AI job
/// and (optionally) a memory-bandwidth antagonist on node-0 from `onset` on.
pub struct Scenario {
    pub nodes: usize,
    pub pods: Vec<PodSpec>,
    pub ticks: i64,
    pub period_ms: i64,
    pub onset: Option<i64>,
    pub seed: u64,
    pub antagonist_protected: bool,
    /// Event time of the first tick.
    pub t0: i64,
    /// Variations on the antagonist, the decoys and the victim.
    pub variant: Variant,
}

/// Variations of the scenario for the attribution tests.
pub struct Variant {
    /// The antagonist's controller kind (`ReplicaSet`, or `DaemonSet`).
    pub antagonist_owner: &'static str,
    /// The antagonist's class label (`batch`; empty: no label, not a candidate).
    pub antagonist_class: &'static str,
    /// The antagonist holds a flat level after its onset instead of bursting.
    pub steady: bool,
    /// The antagonist pod is created at its onset (young: minPodAge makes the engine wait).
    pub created_at_onset: bool,
    /// node-0's busy decoy follows the antagonist's bursts in part (correlated-looking).
    pub decoy_follows: bool,
    /// node-0's victim degrades on its own from the first tick; no antagonist.
    pub victim_alone: bool,
    /// Every pod on every node follows one cluster-wide daily load curve plus noise.
    pub daily_curve: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Self {
            antagonist_owner: "ReplicaSet",
            antagonist_class: "batch",
            steady: false,
            created_at_onset: false,
            decoy_follows: false,
            victim_alone: false,
            daily_curve: false,
        }
    }
}

impl Scenario {
    pub fn new(nodes: usize, onset: Option<i64>) -> Self {
        let mut pods = Vec::new();
        for n in 0..nodes {
            let node = format!("node-{n}");
            pods.push(PodSpec {
                namespace: "shop",
                name: format!("cart-{n}"),
                node: node.clone(),
                class: "online",
                protected: false,
            });
            pods.push(PodSpec {
                namespace: "spark",
                name: format!("etl-exec-{n}"),
                node: node.clone(),
                class: "batch",
                protected: false,
            });
            pods.push(PodSpec {
                namespace: "ml",
                name: format!("train-{n}"),
                node: node.clone(),
                class: "ai",
                protected: false,
            });
        }
        pods.push(PodSpec {
            namespace: "spark",
            name: "sort-exec-0".into(),
            node: "node-0".into(),
            class: "batch",
            protected: false,
        });
        pods.push(PodSpec {
            namespace: "infra",
            name: "log-agent-0".into(),
            node: "node-0".into(),
            class: "batch",
            protected: true,
        });
        Self {
            nodes,
            pods,
            ticks: 180,
            period_ms: 10_000,
            onset,
            seed: 7,
            antagonist_protected: false,
            t0: T0,
            variant: Variant::default(),
        }
    }

    pub fn cluster(&self) -> Value {
        let mut items = Vec::new();
        for n in 0..self.nodes {
            items.push(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{n}"), "labels": {"pool": "colocated"}},
                "status": {"allocatable": {"cpu": "32", "memory": "128Gi"},
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }));
        }
        for ns in ["shop", "spark", "ml", "infra"] {
            items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        for p in &self.pods {
            let antagonist = p.name == "sort-exec-0";
            let protected = p.protected || (self.antagonist_protected && antagonist);
            let mut annotations = serde_json::Map::new();
            if protected {
                annotations.insert("fulcrum.dev/protect".into(), json!("true"));
            }
            let v = &self.variant;
            let (owner, class) = if antagonist {
                (v.antagonist_owner, v.antagonist_class)
            } else {
                ("ReplicaSet", p.class)
            };
            let mut labels = json!({"pod-template-hash": "abc12"});
            if !class.is_empty() {
                labels["fulcrum.dev/class"] = json!(class);
            }
            let created = match self.onset {
                Some(o) if antagonist && v.created_at_onset => {
                    // T0 is 10:00:00Z on 2025-11-26; the onset is within that day.
                    let s = ((self.t0 - T0) + o * self.period_ms - 5_000) / 1000;
                    format!(
                        "2025-11-26T{:02}:{:02}:{:02}Z",
                        10 + s / 3600,
                        s / 60 % 60,
                        s % 60
                    )
                }
                _ => "2025-11-26T08:00:00Z".to_owned(),
            };
            items.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": p.name, "namespace": p.namespace, "uid": format!("uid-{}", p.name),
                    "creationTimestamp": created,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner,
                                         "name": format!("{}-abc12", p.name), "uid": "rs", "controller": true}]
                },
                "spec": {"nodeName": p.node,
                         "containers": [{"name": "main", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]},
                "status": {"phase": "Running"}
            }));
        }
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    }

    /// Samples: one batch line per node per tick (node-0's pods one line each, to exercise
    /// both forms).
    pub fn events(&self) -> String {
        self.keyed_events()
            .into_iter()
            .map(|(_, line)| line + "\n")
            .collect()
    }

    /// The event lines with their Kafka key (the node name).
    pub fn keyed_events(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..self.ticks {
            let ts = self.t0 + i * self.period_ms;
            let v = &self.variant;
            let active = self.onset.is_some_and(|o| i >= o);
            // The antagonist bursts memory bandwidth in an irregular pattern once active
            // (or holds a flat level, `steady`).
            let burst = match (active, v.steady) {
                (true, false) => 6.0 + 6.0 * noise(self.seed, i as u64 * 3),
                (true, true) => 9.0 + 0.1 * noise(self.seed, i as u64 * 3),
                (false, _) => 0.5 + 0.2 * noise(self.seed, i as u64),
            };
            // One cluster-wide load: two hours of a rising morning, and traffic that rises
            // and falls from one sample to the next on every node at once (fast enough
            // that the autocorrelation discount leaves its correlations many points).
            let day = if v.daily_curve {
                0.4 - 0.4
                    * (std::f64::consts::PI * (8.0 + (i * self.period_ms) as f64 / 3.6e6) / 12.0)
                        .cos()
                    + 0.3 * noise(spread(self.seed ^ 0xDA11), i as u64)
            } else {
                0.0
            };
            for n in 0..self.nodes {
                let node = format!("node-{n}");
                let mut samples = Vec::new();
                for (k, p) in self.pods.iter().enumerate().filter(|(_, p)| p.node == node) {
                    let r = if v.daily_curve {
                        noise(spread(self.seed + k as u64), i as u64)
                    } else {
                        noise(self.seed + k as u64, i as u64)
                    };
                    let metrics = match (p.class, p.name.as_str()) {
                        ("online", _) if v.victim_alone && n == 0 => {
                            json!({"latency_p99_ms": 300.0 + 40.0 * r, "cpi": 1.0 + 0.05 * r,
                                   "qps": 800.0 + 50.0 * r, "cpu_usage_cores": 1.5 + 0.3 * r})
                        }
                        ("online", _) if v.daily_curve => {
                            json!({"latency_p99_ms": 150.0 + 200.0 * day + 25.0 * r, "cpi": 0.9 + 0.2 * day,
                                   "qps": 400.0 + 800.0 * day + 50.0 * r, "cpu_usage_cores": 0.5 + 2.0 * day + 0.2 * r})
                        }
                        (_, name) if v.daily_curve && p.class != "ai" && name != "log-agent-0" => {
                            json!({"mem_bw_bytes_per_sec": 1e9 + 4e9 * day + 5e8 * r,
                                   "cpu_usage_cores": 2.0 + 6.0 * day + 0.8 * r, "llc_miss_rate": 0.2 + 0.1 * day})
                        }
                        (_, "etl-exec-0") if v.decoy_follows => {
                            json!({"mem_bw_bytes_per_sec": 3e9 + 2e9 * r,
                                   "cpu_usage_cores": 4.0 + 0.4 * burst + 1.5 * r, "llc_miss_rate": 0.3 + 0.1 * r})
                        }
                        ("online", _) => {
                            let pressure = if n == 0 && !v.victim_alone {
                                burst
                            } else {
                                0.5
                            };
                            json!({"latency_p99_ms": 120.0 + 30.0 * pressure + 20.0 * r,
                                   "cpi": 0.9 + 0.08 * pressure + 0.05 * r, "qps": 800.0 + 50.0 * r,
                                   "cpu_usage_cores": 1.5 + 0.3 * r})
                        }
                        (_, "sort-exec-0") if v.victim_alone => {
                            json!({"mem_bw_bytes_per_sec": 5e8 + 1e8 * r,
                                                     "cpu_usage_cores": 3.0 + 0.2 * r, "llc_miss_rate": 0.2})
                        }
                        (_, "sort-exec-0") => json!({"mem_bw_bytes_per_sec": burst * 1e9 + 1e8 * r,
                                                     "cpu_usage_cores": 3.0 + burst / 4.0, "llc_miss_rate": 0.2 + burst / 40.0}),
                        ("batch", _) => {
                            json!({"mem_bw_bytes_per_sec": 3e9 + 2e9 * r, "cpu_usage_cores": 6.0 + 3.0 * r,
                                               "llc_miss_rate": 0.3 + 0.1 * r})
                        }
                        ("ai", _) => {
                            json!({"gpu_util": 0.85 + 0.1 * r, "pcie_bw_util": 0.5 + 0.2 * r,
                                            "cpu_usage_cores": 4.0 + r, "mem_bw_bytes_per_sec": 2e9 + 1e9 * r})
                        }
                        _ => json!({"cpu_usage_cores": 0.1}),
                    };
                    samples.push(json!({"ts": ts, "node": node,
                                        "pod": {"namespace": p.namespace, "name": p.name, "uid": format!("uid-{}", p.name)},
                                        "container": "main", "metrics": metrics}));
                }
                let util = if n == 0 && !v.victim_alone {
                    0.3 + burst / 20.0
                } else {
                    0.3 + 0.4 * day
                };
                samples.push(json!({"ts": ts, "node": node, "metrics": {"mem_bw_util": util}}));
                if n == 0 {
                    for mut s in samples {
                        s["schema"] = json!("fulcrum.metrics/v1");
                        out.push((node.clone(), s.to_string()));
                    }
                } else {
                    let batch = json!({"schema": "fulcrum.metrics/v1", "samples": samples});
                    out.push((node.clone(), batch.to_string()));
                }
            }
        }
        out
    }

    /// Writes cluster.json and events.jsonl into `dir`.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let cluster = dir.join("cluster.json");
        let events = dir.join("events.jsonl");
        std::fs::write(
            &cluster,
            serde_json::to_string_pretty(&self.cluster()).unwrap(),
        )
        .unwrap();
        std::fs::write(&events, self.events()).unwrap();
        (cluster, events)
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fulcrum-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The policy used by the scenario tests; `MODE` is replaced by `DryRun` or `Enforce`.
pub const POLICY: &str = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: protect-online}
spec:
  mode: MODE
  nodeSelector: {matchLabels: {pool: colocated}}
  victims: {podSelector: {matchLabels: {fulcrum.dev/class: online}}}
  candidates:
    - {name: big-data, podSelector: {matchLabels: {fulcrum.dev/class: batch}}, action: Migrate}
    - {name: ai, podSelector: {matchLabels: {fulcrum.dev/class: ai}}, action: Evict}
  triggers:
    - {name: p99-slo, metric: latency_p99_ms, above: 250, sustainedFor: 30s}
  attribution:
    method: Correlation
    metrics: [mem_bw_bytes_per_sec, cpu_usage_cores, llc_miss_rate]
    window: 5m
    minCorrelation: 0.5
"#;

pub fn replay(scenario: &Scenario, mode: &str, name: &str) -> ReplayReport {
    replay_with(scenario, mode, name, EngineConfig::default())
}

/// [`replay`] with an engine configuration.
pub fn replay_with(
    scenario: &Scenario,
    mode: &str,
    name: &str,
    config: EngineConfig,
) -> ReplayReport {
    let dir = temp_dir(name);
    let (cluster, events) = scenario.write(&dir);
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY.replace("MODE", mode)).unwrap();
    let input = ReplayInput {
        cluster: vec![cluster],
        policies: vec![policy],
        config,
    };
    let report = replay_files(&input, &events, NOW).expect("replay runs");
    std::fs::remove_dir_all(&dir).unwrap();
    report
}

fn decisions(report: &ReplayReport) -> Vec<&Decision> {
    report.decisions().collect()
}

#[test]
fn a_memory_bandwidth_antagonist_among_busy_decoys_is_found() {
    let report = replay(&Scenario::new(4, Some(60)), "Enforce", "antagonist");
    assert!(report.line_errors.is_empty(), "{:?}", report.line_errors);
    let d = decisions(&report);
    assert!(!d.is_empty(), "no decision");
    let first = d[0];
    assert_eq!(first.node, "node-0");
    assert_eq!(first.target, "spark/sort-exec-0", "{first:#?}");
    assert_eq!(first.outcome, Outcome::Executed);
    assert!(first.destination.as_deref().is_some_and(|n| n != "node-0"));
    assert!(first.at >= T0 + 60 * 10_000, "no action before the onset");
    // Caution costs no speed: found within sustainedFor (30 s) plus one sample period.
    assert!(
        first.at <= T0 + 60 * 10_000 + 30_000 + 10_000,
        "{}",
        first.at - T0 - 600_000
    );
    // Busy decoys on the same node were considered and not blamed.
    let decoy = first
        .explanation
        .scores
        .iter()
        .find(|s| s.pod == "spark/etl-exec-0")
        .expect("decoy scored");
    assert!(decoy.excluded.is_some(), "{decoy:?}");
    // Nothing happens on the quiet nodes, and online or protected pods are never touched.
    assert!(d.iter().all(|d| d.node == "node-0"));
    assert!(
        d.iter()
            .all(|d| !d.target.starts_with("shop/") && d.target != "infra/log-agent-0")
    );
}

#[test]
fn a_quiet_cluster_gives_no_decision() {
    let report = replay(&Scenario::new(4, None), "Enforce", "quiet");
    assert!(decisions(&report).is_empty(), "{:#?}", decisions(&report));
    assert_eq!(report.engine.stats().detections, 0);
    assert!(report.engine.stats().applied > 0);
}

#[test]
fn dry_run_executes_nothing() {
    let report = replay(&Scenario::new(4, Some(60)), "DryRun", "dryrun");
    let d = decisions(&report);
    assert!(!d.is_empty());
    assert!(d.iter().all(|d| d.outcome != Outcome::Executed), "{d:#?}");
    assert_eq!(d[0].outcome, Outcome::DryRun);
    assert_eq!(d[0].target, "spark/sort-exec-0");
}

#[test]
fn a_protected_antagonist_is_never_touched() {
    let mut scenario = Scenario::new(4, Some(60));
    scenario.antagonist_protected = true;
    let report = replay(&scenario, "Enforce", "protected");
    let d = decisions(&report);
    // The antagonist explains the degradation and is protected: one Blocked decision says
    // so, and no busy decoy is acted on in its place.
    assert!(d.iter().all(|d| d.outcome == Outcome::Blocked), "{d:#?}");
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].target, "spark/sort-exec-0");
    assert!(
        d[0].reason.contains("explains")
            && d[0].reason.contains("annotated fulcrum.dev/protect")
            && d[0].reason.contains("no other pod explains it"),
        "{}",
        d[0].reason
    );
}

#[test]
fn json_output_follows_the_replay_contract() {
    let report = replay(&Scenario::new(4, Some(60)), "Enforce", "json");
    let out = render_json(&report);
    let decisions = out["decisions"].as_array().unwrap();
    assert!(!decisions.is_empty());
    for d in decisions {
        assert!(d["at"].is_i64());
        for field in ["policy", "node", "trigger", "target", "reason"] {
            assert!(d[field].is_string(), "{field} in {d}");
        }
        assert!(d["victim"].is_string() || d["victim"].is_null());
        assert!(d["destination"].is_string() || d["destination"].is_null());
        assert!(["Evict", "Migrate"].contains(&d["action"].as_str().unwrap()));
        assert!(["Enforce", "DryRun"].contains(&d["mode"].as_str().unwrap()));
        assert!(["Executed", "DryRun", "Blocked"].contains(&d["outcome"].as_str().unwrap()));
    }
    let summary = &out["summary"];
    assert_eq!(summary["rejected"], 0);
    assert!(summary["actions"]["migrated"].as_u64().unwrap() >= 1);
    assert_eq!(summary["detections"], 1);
}

#[test]
fn bad_lines_are_reported_with_line_numbers_and_skipped() {
    let scenario = Scenario::new(2, Some(60));
    let dir = temp_dir("badlines");
    let (cluster, events) = scenario.write(&dir);
    let clean = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<&str> = clean.lines().collect();
    lines.insert(3, "this is not json");
    lines.insert(
        10,
        r#"{"schema":"fulcrum.metrics/v1","ts":1,"node":"node-0","metrics":{"cpi":1}}"#,
    );
    lines.insert(20, "");
    let dirty = dir.join("dirty.jsonl");
    std::fs::write(&dirty, lines.join("\n")).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY.replace("MODE", "Enforce")).unwrap();
    let input = ReplayInput {
        cluster: vec![cluster],
        policies: vec![policy],
        config: EngineConfig::default(),
    };
    let clean_report = replay_files(&input, &events, NOW).unwrap();
    let dirty_report = replay_files(&input, &dirty, NOW).unwrap();
    let errors: Vec<(&str, &str)> = dirty_report
        .line_errors
        .iter()
        .map(|e| (e.location.as_str(), e.error.reason()))
        .collect();
    assert_eq!(errors, [("4", "not_json"), ("11", "ts_too_old")]);
    assert_eq!(
        render_json(&clean_report)["decisions"],
        render_json(&dirty_report)["decisions"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
