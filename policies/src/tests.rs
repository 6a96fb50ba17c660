//! Policy tests: every validation rule with a failing example, defaults, compilation,
//! YAML round trips of the shipped examples, and the shape of the generated CRD.

use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::compile::{Condition, WindowLimit};
use crate::document::check_document;
use crate::spec::{Action, AttributionMethod, Mode, TriggerScope};
use crate::{CompiledPolicy, InterferencePolicy, MetricRegistry, validate};

const EXAMPLES: &[(&str, &str)] = &[
    (
        "online-vs-bigdata-migrate.yaml",
        include_str!("../../deploy/examples/online-vs-bigdata-migrate.yaml"),
    ),
    (
        "online-vs-ai-evict.yaml",
        include_str!("../../deploy/examples/online-vs-ai-evict.yaml"),
    ),
    (
        "node-membw-saturation.yaml",
        include_str!("../../deploy/examples/node-membw-saturation.yaml"),
    ),
    (
        "dry-run-starter.yaml",
        include_str!("../../deploy/examples/dry-run-starter.yaml"),
    ),
];

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

/// A valid policy using every field.
fn base() -> Value {
    yaml(EXAMPLES[0].1)
}

fn problems(doc: &Value) -> Vec<String> {
    match check_document(doc) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    match doc.pointer_mut(parent).expect("parent exists") {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => {
            let i: usize = key.parse().expect("index");
            if i < items.len() {
                items[i] = value;
            } else {
                items.push(value);
            }
        }
        other => panic!("cannot set {pointer} in {other}"),
    }
    doc
}

fn without(pointer: &str) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key))
        .expect("field exists");
    doc
}

#[test]
fn the_shipped_examples_are_valid() {
    for (name, text) in EXAMPLES {
        assert_eq!(problems(&yaml(text)), Vec::<String>::new(), "{name}");
    }
}

/// One case per rule: the broken document and the single error it must produce.
#[test]
fn every_rule_rejects_its_failing_example_with_a_field_path() {
    let t = "/spec/triggers";
    let cases: Vec<(&str, Value, &str)> = vec![
        ("not a mapping", json!([1]), "(document): must be a mapping, got a list"),
        ("apiVersion", with("/apiVersion", json!("fulcrum.dev/v1")), "apiVersion: must be \"fulcrum.dev/v1alpha1\""),
        ("kind", with("/kind", json!("Policy")), "kind: must be \"InterferencePolicy\""),
        ("name missing", without("/metadata/name"), "metadata.name: is required"),
        ("name invalid", with("/metadata/name", json!("Bad_Name")), "metadata.name: must be a DNS subdomain"),
        ("namespaced", with("/metadata/namespace", json!("default")), "metadata.namespace: must be absent"),
        ("spec missing", without("/spec"), "spec: is required"),
        ("mode enum", with("/spec/mode", json!("Enforced")), "spec.mode: unknown variant `Enforced`"),
        ("priority type", with("/spec/priority", json!("high")), "spec.priority: invalid type: string \"high\""),
        ("unknown field", with("/spec/triggers/0/sustainedfor", json!("30s")), "spec.triggers[0].sustainedfor: unknown field"),
        ("victims missing", without("/spec/victims"), "spec.victims: is required"),
        ("victims everything", with("/spec/victims/podSelector", json!({})), "spec.victims.podSelector: must select something"),
        ("victims everything in every namespace", { let mut d = with("/spec/victims/podSelector", json!({})); d["spec"]["victims"]["namespaceSelector"] = json!({}); d }, "spec.victims.podSelector: must select something"),
        ("sub-millisecond window", with("/spec/attribution/window", json!("500us")), "spec.attribution.window: must be at least 1ms"),
        ("attribution metrics too many", with("/spec/attribution/metrics", json!((0..17).map(|i| format!("m{i}")).collect::<Vec<_>>())), "spec.attribution.metrics: must list at most 16 metrics, got 17"),
        ("selector operator", with("/spec/nodeSelector", json!({"matchExpressions":[{"key":"a","operator":"Equals","values":["x"]}]})), "spec.nodeSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist"),
        ("selector In without values", with("/spec/nodeSelector", json!({"matchExpressions":[{"key":"a","operator":"In"}]})), "spec.nodeSelector.matchExpressions[0].values: must not be empty for operator In"),
        ("selector Exists with values", with("/spec/nodeSelector", json!({"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]}]})), "spec.nodeSelector.matchExpressions[0].values: must be empty for operator Exists"),
        ("selector key", with("/spec/victims/podSelector", json!({"matchLabels":{"a b":"x"}})), "spec.victims.podSelector.matchLabels[a b]: label key \"a b\""),
        ("selector value", with("/spec/victims/namespaceSelector", json!({"matchLabels":{"a":"x y"}})), "spec.victims.namespaceSelector.matchLabels[a]: label value \"x y\""),
        ("candidates empty", with("/spec/candidates", json!([])), "spec.candidates: must have at least one entry"),
        ("candidates too many", with("/spec/candidates", json!((0..17).map(|i| json!({"name": format!("c{i}"), "podSelector": {}, "action": "Evict"})).collect::<Vec<_>>())), "spec.candidates: must have at most 16 entries, got 17"),
        ("candidate name", with("/spec/candidates/0/name", json!("Big Data")), "spec.candidates[0].name: must be 1-63 lowercase alphanumerics"),
        ("candidate duplicate", with("/spec/candidates/1", json!({"name":"big-data","podSelector":{},"action":"Evict"})), "spec.candidates[1].name: duplicate name \"big-data\""),
        ("candidate action", with("/spec/candidates/0/action", json!("Kill")), "spec.candidates[0].action: unknown variant `Kill`"),
        ("triggers empty", with(t, json!([])), "spec.triggers: must have at least one entry"),
        ("trigger duplicate", with("/spec/triggers/1/name", json!("p99-slo")), "spec.triggers[1].name: duplicate name \"p99-slo\""),
        ("trigger scope", with("/spec/triggers/0/scope", json!("Pod")), "spec.triggers[0].scope: unknown variant `Pod`"),
        ("trigger metric", with("/spec/triggers/0/metric", json!("p99 latency")), "spec.triggers[0].metric: must match [a-z][a-z0-9_]*"),
        ("above and outlier", with("/spec/triggers/0/outlier", json!({})), "spec.triggers[0]: exactly one of above or outlier must be set, got both"),
        ("neither above nor outlier", without("/spec/triggers/0/above"), "spec.triggers[0]: exactly one of above or outlier must be set, got neither"),
        ("above type", with("/spec/triggers/0/above", json!("250ms")), "spec.triggers[0].above: invalid type: string \"250ms\""),
        ("sigma", with("/spec/triggers/1/outlier/sigma", json!(-1)), "spec.triggers[1].outlier.sigma: must be > 0, got -1"),
        ("minSamples", with("/spec/triggers/1/outlier/minSamples", json!(1)), "spec.triggers[1].outlier.minSamples: must be >= 2"),
        ("minSamples negative", with("/spec/triggers/1/outlier/minSamples", json!(-3)), "spec.triggers[1].outlier.minSamples: invalid value: integer `-3`"),
        ("baselineWindow zero", with("/spec/triggers/1/outlier/baselineWindow", json!("0s")), "spec.triggers[1].outlier.baselineWindow: must be at least 1ms"),
        ("sustainedFor syntax", with("/spec/triggers/0/sustainedFor", json!("30")), "spec.triggers[0].sustainedFor: \"30\" is not a duration"),
        ("attribution method", with("/spec/attribution/method", json!("Blame")), "spec.attribution.method: unknown variant `Blame`"),
        ("attribution metrics empty", with("/spec/attribution/metrics", json!([])), "spec.attribution.metrics: must list at least one metric"),
        ("attribution metric name", with("/spec/attribution/metrics/0", json!("MemBW")), "spec.attribution.metrics[0]: must match [a-z][a-z0-9_]*"),
        ("attribution metric duplicate", with("/spec/attribution/metrics/1", json!("mem_bw_bytes_per_sec")), "spec.attribution.metrics[1]: duplicate metric \"mem_bw_bytes_per_sec\""),
        ("attribution window unit", with("/spec/attribution/window", json!("5 minutes")), "spec.attribution.window: \"5 minutes\" has unknown unit"),
        ("attribution window zero", with("/spec/attribution/window", json!("0")), "spec.attribution.window: must be at least 1ms"),
        ("minCorrelation", with("/spec/attribution/minCorrelation", json!(1.5)), "spec.attribution.minCorrelation: must be between 0 and 1, got 1.5"),
        ("clearFor", with("/spec/recovery/clearFor", json!("2d")), "spec.recovery.clearFor: \"2d\" has unknown unit \"d\""),
        ("limit count", with("/spec/limits/maxActionsPerNode/count", json!(0)), "spec.limits.maxActionsPerNode.count: must be >= 1"),
        ("limit window", with("/spec/limits/maxActionsPerWorkload/window", json!("0s")), "spec.limits.maxActionsPerWorkload.window: must be at least 1ms"),
        ("limit namespace window", with("/spec/limits/maxActionsPerNamespace/window", json!("1y")), "spec.limits.maxActionsPerNamespace.window: \"1y\" has unknown unit"),
        ("limit total count", with("/spec/limits/maxActionsTotal/count", json!(0)), "spec.limits.maxActionsTotal.count: must be >= 1"),
        ("cooldown too long", with("/spec/limits/cooldown", json!("1000h")), "spec.limits.cooldown: \"1000h\" is longer than the 720h maximum"),
        ("minPodAge", with("/spec/limits/minPodAge", json!("")), "spec.limits.minPodAge: is empty"),
        ("grace period", with("/spec/eviction/gracePeriodSeconds", json!(-5)), "spec.eviction.gracePeriodSeconds: must be >= 0, got -5"),
        ("bool type", with("/spec/eviction/evictBarePods", json!("yes")), "spec.eviction.evictBarePods: invalid type: string \"yes\""),
    ];
    for (rule, doc, want) in cases {
        let got = problems(&doc);
        assert_eq!(
            got.len(),
            1,
            "rule {rule:?}: expected exactly one error, got {got:#?}"
        );
        assert!(
            got[0].starts_with(want),
            "rule {rule:?}: {:?} does not start with {want:?}",
            got[0]
        );
    }
}

#[test]
fn independent_mistakes_are_all_reported() {
    let mut doc = with("/spec/mode", json!("Enforced"));
    doc["spec"]["triggers"][1]["outlier"]["sigma"] = json!(-1);
    doc["spec"]["limits"]["cooldown"] = json!("1d");
    doc["spec"]["eviction"]["gracePeriodSeconds"] = json!("thirty");
    doc["spec"]["attribution"]["metricz"] = json!([]);
    let got = problems(&doc);
    let mut paths: Vec<&str> = got.iter().map(|e| e.split(": ").next().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "spec.attribution.metricz",
            "spec.eviction.gracePeriodSeconds",
            "spec.limits.cooldown",
            "spec.mode",
            "spec.triggers[1].outlier.sigma",
        ],
        "{got:#?}"
    );
}

#[test]
fn a_required_field_with_a_bad_type_stops_decoding_after_reporting_it() {
    let mut doc = with("/spec/mode", json!("Enforced"));
    doc["spec"]["victims"] = json!("online");
    let got = problems(&doc);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter()
            .any(|e| e.starts_with("spec.victims: invalid type")),
        "{got:#?}"
    );
}

#[test]
fn omitted_fields_take_the_documented_safe_defaults() {
    let doc = yaml(
        r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: minimal}
spec:
  victims: {podSelector: {matchLabels: {class: online}}}
  candidates: [{name: batch, podSelector: {matchLabels: {class: batch}}, action: Evict}]
  triggers: [{name: slo, metric: latency_p99_ms, above: 100}]
"#,
    );
    let policy = check_document(&doc).expect("minimal policy is valid");
    let spec = &policy.spec;
    assert_eq!(
        spec.mode,
        Mode::DryRun,
        "a policy must not act unless asked to"
    );
    assert_eq!(spec.priority, 0);
    assert_eq!(spec.triggers[0].scope, TriggerScope::Victim);
    assert_eq!(spec.triggers[0].sustained_for.as_str(), "30s");
    assert_eq!(spec.attribution.method, AttributionMethod::Correlation);
    assert_eq!(
        spec.attribution.metrics,
        ["mem_bw_bytes_per_sec", "cpu_usage_cores", "llc_miss_rate"]
    );
    assert!(!spec.eviction.evict_bare_pods && !spec.eviction.evict_local_storage_pods);
    assert!(!spec.eviction.evict_on_ping_pong);
    assert_eq!(spec.eviction.grace_period_seconds, None);

    let compiled = CompiledPolicy::compile(&policy, &mut MetricRegistry::new()).unwrap();
    let l = compiled.spec.limits;
    assert_eq!(
        l.per_node,
        WindowLimit {
            count: 1,
            window_ms: 600_000
        }
    );
    assert_eq!(
        l.per_workload,
        WindowLimit {
            count: 2,
            window_ms: 3_600_000
        }
    );
    assert_eq!(
        l.per_namespace,
        WindowLimit {
            count: 10,
            window_ms: 3_600_000
        }
    );
    assert_eq!(
        l.total,
        WindowLimit {
            count: 50,
            window_ms: 3_600_000
        }
    );
    assert_eq!((l.cooldown_ms, l.min_pod_age_ms), (300_000, 300_000));
    assert_eq!(compiled.spec.clear_for_ms, 120_000);
    assert_eq!(compiled.spec.attribution.window_ms, 300_000);
    assert_eq!(compiled.spec.attribution.min_correlation, 0.3);
}

#[test]
fn compilation_yields_matchers_millis_and_shared_metric_ids() {
    let mut registry = MetricRegistry::new();
    let a: InterferencePolicy = serde_json::from_value(base()).unwrap();
    let b: InterferencePolicy = serde_json::from_value(yaml(EXAMPLES[2].1)).unwrap();
    let a = CompiledPolicy::compile(&a, &mut registry).unwrap();
    let b = CompiledPolicy::compile(&b, &mut registry).unwrap();

    assert_eq!(a.name, "online-vs-bigdata");
    assert_eq!(a.spec.mode, Mode::Enforce);
    assert_eq!(a.spec.candidates[0].action, Action::Migrate);
    assert_eq!(a.spec.triggers[0].condition, Condition::Above(250.0));
    assert_eq!(a.spec.triggers[0].sustained_for_ms, 30_000);
    assert_eq!(
        a.spec.triggers[1].condition,
        Condition::Outlier {
            sigma: 2.0,
            baseline_window_ms: 1_800_000,
            min_samples: 30
        }
    );
    assert_eq!(registry.name(a.spec.triggers[1].metric), "cpi");
    // Both policies name mem_bw_bytes_per_sec first in attribution: one id.
    assert_eq!(a.spec.attribution.metrics[0], b.spec.attribution.metrics[0]);
    assert_eq!(registry.name(b.spec.triggers[0].metric), "mem_bw_util");

    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert!(a.spec.nodes.matches(&labels(&[("pool", "colocated")])));
    assert!(!a.spec.nodes.matches(&labels(&[("pool", "dedicated")])));
    let online = labels(&[("fulcrum.dev/class", "online")]);
    let batch = labels(&[("fulcrum.dev/class", "batch")]);
    assert!(a.spec.victims.matches(&online, &labels(&[])));
    assert!(a.spec.candidates[0].matcher.matches(&batch, &labels(&[])));
    assert!(!a.spec.candidates[0].matcher.matches(&online, &labels(&[])));
}

#[test]
fn validate_and_compile_agree() {
    let mut bad: InterferencePolicy = serde_json::from_value(base()).unwrap();
    bad.spec.triggers[0].above = Some(f64::NAN);
    let errors = validate(&bad.spec);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "spec.triggers[0].above: must be a finite number, got NaN"
    );
    assert_eq!(
        CompiledPolicy::compile(&bad, &mut MetricRegistry::new()).unwrap_err(),
        errors
    );
}

#[test]
fn examples_round_trip_yaml_to_types_to_yaml() {
    for (name, text) in EXAMPLES {
        let first: InterferencePolicy = serde_yaml_ng::from_str(text).unwrap();
        let rendered = serde_yaml_ng::to_string(&first).unwrap();
        let second: InterferencePolicy = serde_yaml_ng::from_str(&rendered).unwrap();
        assert_eq!(first, second, "{name}");
        assert_eq!(
            rendered,
            serde_yaml_ng::to_string(&second).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn status_round_trips() {
    let status = json!({
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "",
                        "lastTransitionTime": "2026-11-26T10:00:00Z"}],
        "detections": 17,
        "actions": {"evicted": 5, "migrated": 3, "dryRun": 0, "blocked": 4, "total": 12},
        "lastAction": {"time": "2026-11-26T10:00:00Z", "node": "node-a17", "pod": "spark/exec-1",
                       "action": "Migrate", "trigger": "p99-slo", "reason": "correlation 0.82"}
    });
    let mut doc = base();
    doc["status"] = status.clone();
    let policy = check_document(&doc).expect("status is accepted");
    let back = serde_json::to_value(policy.status.unwrap()).unwrap();
    assert_eq!(back, status);
}

/// Walks a schema node and reports anything that makes a CRD schema non-structural.
fn structural_problems(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!("{path}: has {forbidden}"));
        }
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    match obj.get("type").and_then(Value::as_str) {
        None if !preserves => out.push(format!("{path}: no type")),
        Some("object") => {
            let props = obj.get("properties").and_then(Value::as_object);
            let extra = obj.get("additionalProperties");
            if props.is_none() && extra.is_none() && !preserves {
                out.push(format!("{path}: object without properties"));
            }
            for (k, v) in props.into_iter().flatten() {
                structural_problems(v, &format!("{path}.{k}"), out);
            }
            if let Some(extra) = extra.filter(|e| e.is_object()) {
                structural_problems(extra, &format!("{path}.*"), out);
            }
        }
        Some("array") => match obj.get("items") {
            Some(items) => structural_problems(items, &format!("{path}[]"), out),
            None => out.push(format!("{path}: array without items")),
        },
        _ => {}
    }
}

#[test]
fn the_crd_schema_is_structural_and_carries_its_rules() {
    let crd = serde_json::to_value(InterferencePolicy::crd()).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ifp"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Mode", "Ready", "Detections", "Actions", "Age"]);

    let schema = &version["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    structural_problems(schema, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");

    let spec = &schema["properties"]["spec"];
    assert_eq!(
        spec["properties"]["mode"]["enum"],
        json!(["DryRun", "Enforce"])
    );
    assert_eq!(spec["properties"]["mode"]["default"], "DryRun");
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["candidates", "triggers", "victims"]);
    for list in ["candidates", "triggers"] {
        let l = &spec["properties"][list];
        assert_eq!(l["minItems"], 1, "{list}");
        assert_eq!(l["maxItems"], 16, "{list}");
        assert_eq!(l["x-kubernetes-list-type"], "map", "{list}");
        assert_eq!(l["x-kubernetes-list-map-keys"], json!(["name"]), "{list}");
    }
    let trigger = &spec["properties"]["triggers"]["items"];
    assert_eq!(
        trigger["x-kubernetes-validations"][0]["rule"],
        "has(self.above) != has(self.outlier)"
    );
    let rules = serde_json::to_string(schema).unwrap();
    for rule in [
        "self.sigma > 0.0",
        "duration(self.baselineWindow) >= duration('1ms')",
        "duration(self.window) >= duration('1ms')",
        "duration(self) <= duration('720h')",
    ] {
        assert!(rules.contains(rule), "missing CEL rule {rule}");
    }
    assert_eq!(
        trigger["properties"]["sustainedFor"]["pattern"],
        crate::duration::DURATION_PATTERN
    );
}
