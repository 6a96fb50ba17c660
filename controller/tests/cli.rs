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
    for verb in ["crd", "check-policy"] {
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
