//! Process-level tests of the `fulcrum` binary: exit codes, help, version and `crd` output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fulcrum(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("fulcrum runs")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_and_help_on_every_verb() {
    let out = fulcrum(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("fulcrum {}", env!("CARGO_PKG_VERSION"))
    );

    let out = fulcrum(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for verb in ["crd", "check-policy", "replay"] {
        assert!(help.contains(verb), "top-level help lists {verb}");
        let out = fulcrum(&[verb, "--help"]);
        assert!(out.status.success(), "{verb} --help");
        assert!(
            stdout(&out).contains("Usage: fulcrum"),
            "{verb} --help prints usage"
        );
    }
    let out = fulcrum(&["no-such-verb"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn crd_prints_the_committed_manifest() {
    let out = fulcrum(&["crd"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/crds/interferencepolicies.yaml"))
            .expect("deploy/crds/interferencepolicies.yaml exists");
    assert!(
        stdout(&out) == committed,
        "deploy/crds/interferencepolicies.yaml is stale: run `cargo run -p fulcrum -- crd > deploy/crds/interferencepolicies.yaml`"
    );
}

#[test]
fn check_policy_exit_codes() {
    let examples: Vec<String> = std::fs::read_dir(repo_root().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert!(examples.len() >= 4);
    let mut args = vec!["check-policy"];
    args.extend(examples.iter().map(String::as_str));
    let out = fulcrum(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), examples.len());

    let out = fulcrum(&["check-policy", "tests/fixtures/invalid-policy.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).lines().count() > 5, "{}", stdout(&out));

    let out = fulcrum(&["check-policy"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing FILE is a usage error"
    );
}

/// Writes a small recorded world: node a with a victim and an antagonist whose memory
/// bandwidth drives the victim's latency from tick 20 on; node b idle but reporting through
/// its agent (a node never heard from is never a Migrate destination).
fn write_replay_inputs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let pod_on = |name: &str, class: &str, node: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"ns","uid":"u-{name}","labels":{{"class":"{class}"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"StatefulSet","name":"{name}","uid":"s","controller":true}}]}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c"}}]}},"status":{{"phase":"Running"}}}}"#
        )
    };
    let pod = |name: &str, class: &str| pod_on(name, class, "a");
    let node = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}},"status":{{"allocatable":{{"cpu":"8","memory":"16Gi"}}}}}}"#
        )
    };
    let cluster = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{},{},{},{},{}]}}"#,
        node("a"),
        node("b"),
        pod("web", "online"),
        pod("hog", "batch"),
        pod_on("agent", "infra", "b")
    );
    std::fs::write(dir.join("cluster.json"), cluster).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: fulcrum.dev/v1alpha1\nkind: InterferencePolicy\nmetadata: {name: p}\nspec:\n  mode: Enforce\n  victims: {podSelector: {matchLabels: {class: online}}}\n  candidates: [{name: batch, podSelector: {matchLabels: {class: batch}}, action: Migrate}]\n  triggers: [{name: slo, metric: latency_p99_ms, above: 100}]\n  attribution: {metrics: [mem_bw], window: 2m}\n",
    )
    .unwrap();
    let mut events = String::new();
    for i in 0..60i64 {
        let ts = 1_764_151_200_000 + i * 10_000;
        let hog = if i < 20 { 1.0 } else { 4.0 + (i % 5) as f64 };
        events.push_str(&format!(
            "{{\"schema\":\"fulcrum.metrics/v1\",\"samples\":[{{\"ts\":{ts},\"node\":\"a\",\"pod\":{{\"namespace\":\"ns\",\"name\":\"web\"}},\"metrics\":{{\"latency_p99_ms\":{}}}}},{{\"ts\":{ts},\"node\":\"a\",\"pod\":{{\"namespace\":\"ns\",\"name\":\"hog\"}},\"metrics\":{{\"mem_bw\":{hog}}}}},{{\"ts\":{ts},\"node\":\"b\",\"pod\":{{\"namespace\":\"ns\",\"name\":\"agent\"}},\"metrics\":{{\"mem_bw\":0.1}}}}]}}\n",
            30.0 * hog
        ));
        if i == 5 {
            events.push_str("not json at all\n");
        }
    }
    std::fs::write(dir.join("events.jsonl"), events).unwrap();
}

#[test]
fn replay_prints_decisions_and_reports_bad_lines() {
    let dir = std::env::temp_dir().join(format!("fulcrum-cli-replay-{}", std::process::id()));
    write_replay_inputs(&dir);
    let arg = |f: &str| dir.join(f).display().to_string();
    let base = [
        "replay",
        "--cluster",
        &arg("cluster.json"),
        "--policy",
        &arg("policy.yaml"),
        "--events",
        &arg("events.jsonl"),
    ];

    let out = fulcrum(&[&base[..], &["--output", "json"]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let decisions = json["decisions"].as_array().unwrap();
    assert_eq!(decisions[0]["target"], "ns/hog");
    assert_eq!(decisions[0]["action"], "Migrate");
    assert_eq!(decisions[0]["destination"], "b");
    assert_eq!(json["summary"]["rejected"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events.jsonl:7: not valid JSON"),
        "{stderr}"
    );

    let out = fulcrum(&base);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("MIGRATE") && text.contains("ns/hog -> b"),
        "{text}"
    );
    assert!(text.contains("summary:"), "{text}");

    let out = fulcrum(&[
        "replay",
        "--cluster",
        &arg("missing.json"),
        "--policy",
        &arg("policy.yaml"),
        "--events",
        &arg("events.jsonl"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unreadable cluster file is unusable input"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}
