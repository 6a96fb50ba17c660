//! `fulcrum check-policy` on the shipped examples and on a file with many mistakes.

use std::path::{Path, PathBuf};

use fulcrum::check::check_files;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn run(files: &[PathBuf]) -> (bool, Vec<String>) {
    let mut out = Vec::new();
    let valid = check_files(files, &mut out).expect("writing to a Vec cannot fail");
    let text = String::from_utf8(out).expect("output is UTF-8");
    (valid, text.lines().map(str::to_owned).collect())
}

#[test]
fn every_shipped_example_is_valid() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/examples"))
        .expect("deploy/examples exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "four example policies ship");
    let (valid, lines) = run(&files);
    assert!(valid, "{lines:#?}");
    assert!(lines.iter().all(|l| l.ends_with(": valid")), "{lines:#?}");
}

#[test]
fn a_file_with_several_mistakes_prints_one_line_per_mistake() {
    let file = repo("tests/fixtures/invalid-policy.yaml");
    let (valid, lines) = run(std::slice::from_ref(&file));
    assert!(!valid);
    let prefix = format!("{}: broken (document 1): ", file.display());
    let problems: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("unexpected line {l}"))
        })
        .collect();
    let expected_paths = [
        "spec.mode",
        "spec.triggers[0].sustainedfor",
        "spec.victims.podSelector",
        "spec.candidates[0].podSelector.matchExpressions[0].operator",
        "spec.candidates[1].name",
        "spec.triggers[1].metric",
        "spec.triggers[1].outlier.sigma",
        "spec.triggers[1].outlier.minSamples",
        "spec.triggers[1].outlier.baselineWindow",
        "spec.triggers[2]",
        "spec.attribution.metrics[1]",
        "spec.attribution.minCorrelation",
        "spec.attribution.window",
        "spec.limits.maxActionsPerNode.count",
        "spec.limits.cooldown",
        "spec.eviction.gracePeriodSeconds",
    ];
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split_once(": ").map_or(*p, |(path, _)| path))
        .collect();
    assert_eq!(paths, expected_paths);
    assert!(problems.contains(&"spec.triggers[1].outlier.sigma: must be > 0, got -1"));
}

#[test]
fn multi_document_files_lists_and_unreadable_files() {
    let dir = std::env::temp_dir().join(format!("fulcrum-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = std::fs::read_to_string(repo("deploy/examples/dry-run-starter.yaml")).unwrap();
    let multi = dir.join("multi.yaml");
    let second = example.replace("name: dry-run-starter", "name: second");
    std::fs::write(&multi, format!("{example}---\n{second}---\nkind: Pod\n")).unwrap();
    let list = dir.join("list.json");
    let policy: serde_json::Value = serde_yaml_ng::from_str(&example).unwrap();
    std::fs::write(
        &list,
        serde_json::json!({"kind": "List", "items": [policy]}).to_string(),
    )
    .unwrap();
    let missing = dir.join("missing.yaml");

    let (valid, lines) = run(&[multi.clone(), list.clone(), missing.clone()]);
    assert!(!valid);
    let m = multi.display().to_string();
    let l = list.display().to_string();
    assert_eq!(lines[0], format!("{m}: dry-run-starter: valid"));
    assert_eq!(lines[1], format!("{m}: second: valid"));
    assert!(
        lines[2].starts_with(&format!("{m}: (unnamed) (document 3): apiVersion: must be")),
        "{}",
        lines[2]
    );
    assert!(
        lines.contains(&format!("{l}: dry-run-starter: valid")),
        "{lines:#?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("{}: cannot read:", missing.display()))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
