//! Label selectors compiled into matchers, with Kubernetes' key and value rules.

use std::collections::BTreeMap;
use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validate::FieldErrors;

/// Read access to a set of labels, so matchers work on any map type.
pub trait Labels {
    /// The value of `key`, if the label is present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels> Labels for Option<L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref().and_then(|labels| labels.label(key))
    }
}

/// One requirement of a selector; all must hold for a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The label is present and its value is one of these (sorted).
    In(String, Vec<String>),
    /// The label is absent or its value is none of these (sorted).
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

/// A compiled label selector. The empty matcher matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelMatcher {
    requirements: Vec<Requirement>,
}

impl Requirement {
    fn matches(&self, labels: &impl Labels) -> bool {
        match self {
            Requirement::In(key, values) => labels
                .label(key)
                .is_some_and(|v| values.binary_search_by(|x| x.as_str().cmp(v)).is_ok()),
            Requirement::NotIn(key, values) => labels
                .label(key)
                .is_none_or(|v| values.binary_search_by(|x| x.as_str().cmp(v)).is_err()),
            Requirement::Exists(key) => labels.label(key).is_some(),
            Requirement::DoesNotExist(key) => labels.label(key).is_none(),
        }
    }
}

impl LabelMatcher {
    /// A matcher that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A matcher that matches no label set (an unsupported or null selector).
    pub fn nothing() -> Self {
        Self {
            requirements: vec![Requirement::In(String::new(), Vec::new())],
        }
    }

    /// True when this matcher places no requirement (matches everything).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The compiled requirements, in selector order (matchLabels first).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when `labels` satisfies every requirement.
    #[inline]
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Compiles `selector`, reporting each problem under `path` (e.g. `spec.nodeSelector`).
    pub fn compile(selector: &LabelSelector, path: &str, errors: &mut FieldErrors) -> Self {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let at = format!("{path}.matchLabels[{key}]");
            check_label_key(key, &at, errors);
            check_label_value(value, &at, errors);
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            check_label_key(&expr.key, &format!("{at}.key"), errors);
            let mut values = expr.values.clone().unwrap_or_default();
            for (j, value) in values.iter().enumerate() {
                check_label_value(value, &format!("{at}.values[{j}]"), errors);
            }
            values.sort();
            values.dedup();
            let key = expr.key.clone();
            let needs_values = |errors: &mut FieldErrors, values: &[String]| {
                if values.is_empty() {
                    errors.push(
                        format!("{at}.values"),
                        format!("must not be empty for operator {}", expr.operator),
                    );
                }
            };
            let no_values = |errors: &mut FieldErrors, values: &[String]| {
                if !values.is_empty() {
                    errors.push(
                        format!("{at}.values"),
                        format!("must be empty for operator {}", expr.operator),
                    );
                }
            };
            match expr.operator.as_str() {
                "In" => {
                    needs_values(errors, &values);
                    requirements.push(Requirement::In(key, values));
                }
                "NotIn" => {
                    needs_values(errors, &values);
                    requirements.push(Requirement::NotIn(key, values));
                }
                "Exists" => {
                    no_values(errors, &values);
                    requirements.push(Requirement::Exists(key));
                }
                "DoesNotExist" => {
                    no_values(errors, &values);
                    requirements.push(Requirement::DoesNotExist(key));
                }
                other => errors.push(
                    format!("{at}.operator"),
                    format!("must be one of In, NotIn, Exists, DoesNotExist, got {other:?}"),
                ),
            }
        }
        Self { requirements }
    }
}

/// True when `selector` has no requirement at all (`{}`), i.e. selects everything.
pub fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

fn is_name_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// True when `s` is a DNS-1123 subdomain (lowercase, `.`-separated labels, at most 253 bytes).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// True when `s` is a DNS-1123 label (lowercase alphanumerics and `-`, at most 63 bytes).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn check_label_key(key: &str, path: &str, errors: &mut FieldErrors) {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        errors.push(
            path,
            format!("label key {key:?}: prefix must be a DNS subdomain"),
        );
    }
    if !is_name_segment(name) {
        errors.push(
            path,
            format!(
                "label key {key:?}: name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
            ),
        );
    }
}

fn check_label_value(value: &str, path: &str, errors: &mut FieldErrors) {
    if !value.is_empty() && !is_name_segment(value) {
        errors.push(
            path,
            format!(
                "label value {value:?} must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn compile(sel: &LabelSelector) -> (LabelMatcher, Vec<String>) {
        let mut errors = FieldErrors::default();
        let m = LabelMatcher::compile(sel, "spec.sel", &mut errors);
        (
            m,
            errors.into_vec().iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn empty_selector_matches_everything() {
        let (m, errs) = compile(&LabelSelector::default());
        assert!(errs.is_empty());
        assert!(m.is_everything());
        assert!(m.matches(&labels(&[])));
        assert!(m.matches(&labels(&[("a", "b")])));
        assert!(selects_everything(&LabelSelector::default()));
        assert!(!LabelMatcher::nothing().matches(&labels(&[])));
        assert!(!LabelMatcher::nothing().matches(&labels(&[("", "")])));
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("class", "batch")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["a", "b"]),
                expr("zone", "NotIn", &["z1"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let (m, errs) = compile(&sel);
        assert!(errs.is_empty(), "{errs:?}");
        let base = [("class", "batch"), ("tier", "b"), ("team", "x")];
        assert!(m.matches(&labels(&base)));
        // NotIn matches an absent label and rejects a listed value.
        assert!(m.matches(&labels(&[base[0], base[1], base[2], ("zone", "z2")])));
        assert!(!m.matches(&labels(&[base[0], base[1], base[2], ("zone", "z1")])));
        // Each requirement can fail on its own.
        assert!(!m.matches(&labels(&[("class", "online"), base[1], base[2]])));
        assert!(!m.matches(&labels(&[base[0], ("tier", "c"), base[2]])));
        assert!(!m.matches(&labels(&[base[0], base[1]])));
        assert!(!m.matches(&labels(&[base[0], base[1], base[2], ("legacy", "")])));
        assert!(!m.matches(&None::<BTreeMap<String, String>>));
    }

    #[test]
    fn bad_selectors_report_every_problem_with_a_path() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("bad key!", "ok"), ("ok", "-bad")])),
            match_expressions: Some(vec![
                expr("a", "In", &[]),
                expr("b", "Exists", &["x"]),
                expr("c", "Equals", &["x"]),
                expr("UPPER.example.com/x", "Exists", &[]),
            ]),
        };
        let (_, errs) = compile(&sel);
        let want = [
            "spec.sel.matchLabels[bad key!]: label key",
            "spec.sel.matchLabels[ok]: label value \"-bad\"",
            "spec.sel.matchExpressions[0].values: must not be empty for operator In",
            "spec.sel.matchExpressions[1].values: must be empty for operator Exists",
            "spec.sel.matchExpressions[2].operator: must be one of",
            "spec.sel.matchExpressions[3].key: label key \"UPPER.example.com/x\": prefix",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(want) {
            assert!(err.starts_with(want), "{err} does not start with {want}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("node-a17.example.com"));
        assert!(!is_dns_subdomain("Node"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_dns_label("kube-system"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
