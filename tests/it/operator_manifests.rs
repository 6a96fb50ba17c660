//! What the operator's shipped manifests declare: the ClusterRole's rules
//! (deploy/rbac.yaml) and the metrics the alerts use (deploy/monitoring), for the
//! end-to-end tests to check against what the operator really does.

use serde_json::Value;

/// Every fulcrum_* metric an alert of deploy/monitoring uses.
pub(crate) fn alert_metrics() -> std::collections::BTreeSet<String> {
    let path = crate::support::workspace().join("deploy/monitoring/monitoring.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        for group in doc["spec"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            for rule in group["rules"].as_array().cloned().unwrap_or_default() {
                let expr = rule["expr"].as_str().unwrap_or_default();
                for (i, _) in expr.match_indices("fulcrum_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The (verb, group, resource) triples the ClusterRole grants.
pub(crate) fn granted(rules: &[Value]) -> Vec<(String, String, String)> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = Vec::new();
    for r in rules {
        for verb in list(&r["verbs"]) {
            for group in list(&r["apiGroups"]) {
                for resource in list(&r["resources"]) {
                    out.push((verb.clone(), group.clone(), resource));
                }
            }
        }
    }
    out
}

/// The rules of the ClusterRole in deploy/rbac.yaml.
pub(crate) fn cluster_role_rules() -> Vec<Value> {
    let path = crate::support::workspace().join("deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub(crate) fn allowed(rules: &[Value], verb: &str, group: &str, resource: &str) -> bool {
    let has = |v: &Value, want: &str| {
        let list = v.as_array().cloned().unwrap_or_default();
        assert!(!list.iter().any(|x| x == "*"), "RBAC must not use *");
        list.iter().any(|x| x == want)
    };
    rules.iter().any(|r| {
        has(&r["verbs"], verb) && has(&r["apiGroups"], group) && has(&r["resources"], resource)
    })
}
