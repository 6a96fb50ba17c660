//! The metrics map (`--metrics-map FILE`): which source metrics become which policy
//! metrics, and how. The format is documented in `docs/inputs.md`; the shipped default is
//! `default-map.yaml` next to this file.

use std::collections::HashMap;
use std::path::Path;

use fulcrum_policies::metric::{DOCUMENTED_METRICS, is_valid_metric_name};
use serde::Deserialize;

/// The shipped default map (kubeletstats, hostmetrics, cAdvisor, node-exporter).
pub const DEFAULT_MAP_YAML: &str = include_str!("default-map.yaml");

/// How a source series is turned into values.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The value as it is.
    #[default]
    Gauge,
    /// A cumulative (or OTLP delta) counter, turned into a per-second rate.
    Counter,
    /// A histogram, turned into a quantile of the observations in each interval.
    Histogram,
}

/// Which pod or node a mapped value is attributed to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Keep the series' own target (container, pod or node).
    #[default]
    None,
    /// Drop the container: container series of one pod are added up into the pod.
    Pod,
}

/// One rule of the map.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The source metric name (OTLP metric name or Prometheus `__name__`).
    pub source: String,
    /// Label (OTLP: data point attribute) matchers; see [`Matcher`].
    #[serde(default, rename = "match")]
    pub matchers: HashMap<String, Matcher>,
    /// The policy metric the values become.
    pub metric: String,
    /// How the series is read; for OTLP it may be left out and follows the data.
    #[serde(default, rename = "type")]
    pub kind: Option<Kind>,
    /// Factor applied to the final value (after the rate or quantile), for units.
    #[serde(default = "one")]
    pub scale: f64,
    /// For histograms: the quantile taken, in (0, 1].
    #[serde(default)]
    pub quantile: Option<f64>,
    /// Whether container series are added up into their pod.
    #[serde(default)]
    pub aggregate: Aggregate,
}

fn one() -> f64 {
    1.0
}

/// A label matcher: `"value"` (equals; `""` means absent or empty), `"!value"` (differs),
/// or a list of values (any of them).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Matcher {
    /// Equals (or, with a leading `!`, differs from) this value.
    One(String),
    /// Equals one of these values.
    AnyOf(Vec<String>),
}

impl Matcher {
    /// Whether a label value (`None` when the label is absent) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        match self {
            Matcher::One(m) => match m.strip_prefix('!') {
                Some(not) => value != not,
                None => value == m,
            },
            Matcher::AnyOf(list) => list.iter().any(|m| m == value),
        }
    }
}

/// Which Prometheus labels name the node, pod and container.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusLabels {
    /// The node label.
    pub node: String,
    /// Used for the node when `node` is absent; a `:port` suffix is removed.
    pub node_fallback: String,
    /// The namespace label.
    pub namespace: String,
    /// The pod label.
    pub pod: String,
    /// The pod UID label.
    pub uid: String,
    /// The container label.
    pub container: String,
}

impl Default for PrometheusLabels {
    fn default() -> Self {
        Self {
            node: "node".into(),
            node_fallback: "instance".into(),
            namespace: "namespace".into(),
            pod: "pod".into(),
            uid: "uid".into(),
            container: "container".into(),
        }
    }
}

/// Settings of the Prometheus input.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSettings {
    /// Label names.
    pub labels: PrometheusLabels,
}

/// A metrics map, as read from YAML.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsMap {
    /// A counter or histogram gap longer than this (ms) restarts the series instead of
    /// averaging over the gap.
    #[serde(default = "default_max_gap")]
    pub max_gap_ms: u64,
    /// Values of one pod, container or node at one time are collected into one sample
    /// until event time has passed that time by this much (ms), or as long in wall-clock
    /// time has passed. Keep it below the engine's lateness.
    #[serde(default = "default_window")]
    pub group_window_ms: u64,
    /// Prometheus settings.
    #[serde(default)]
    pub prometheus: PrometheusSettings,
    /// Extra metric names that pass through unmapped (besides the documented metrics).
    #[serde(default)]
    pub passthrough: Vec<String>,
    /// The rules, tried in order; the first whose source and matchers fit wins.
    pub metrics: Vec<Rule>,
    /// Rule indices by source name (built after reading).
    #[serde(skip)]
    by_source: HashMap<String, Vec<usize>>,
}

fn default_max_gap() -> u64 {
    300_000
}

fn default_window() -> u64 {
    5_000
}

/// Why a metrics map cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not fit the format.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the field path.
        message: String,
    },
    /// The group window is not below the engine's lateness.
    #[error(
        "group_window_ms ({window_ms}) must be below the lateness ({lateness_ms} ms): lower it in the metrics map or raise --lateness"
    )]
    Window {
        /// The map's group window.
        window_ms: u64,
        /// The engine's lateness.
        lateness_ms: u64,
    },
    /// A rule is inconsistent.
    #[error("{path}: metrics[{index}] ({source_name}): {problem}")]
    Rule {
        /// The file.
        path: String,
        /// The rule's index.
        index: usize,
        /// The rule's source name.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
}

/// What a source metric maps to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target<'m> {
    /// A rule of the map.
    Rule(&'m Rule),
    /// The name is a policy metric already (this one): passed through as a gauge.
    Passthrough(&'m str),
}

impl MetricsMap {
    /// The shipped default map.
    pub fn default_map() -> Self {
        Self::parse(DEFAULT_MAP_YAML, "(default map)")
            .unwrap_or_else(|e| panic!("the shipped default map is invalid: {e}"))
    }

    /// Reads a map file.
    pub fn load(path: &Path) -> Result<Self, MapError> {
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a map.
    pub fn parse(text: &str, path: &str) -> Result<Self, MapError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut map: MetricsMap =
            serde_path_to_error::deserialize(de).map_err(|e| MapError::Parse {
                path: path.to_owned(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        for (index, rule) in map.metrics.iter().enumerate() {
            if let Some(problem) = rule_problem(rule) {
                return Err(MapError::Rule {
                    path: path.to_owned(),
                    index,
                    source_name: rule.source.clone(),
                    problem,
                });
            }
            map.by_source
                .entry(rule.source.clone())
                .or_default()
                .push(index);
        }
        Ok(map)
    }

    /// The rule for `source` whose matchers fit the labels given by `label`, or
    /// passthrough for a policy metric name, or `None` (unmapped).
    pub fn find<'s>(
        &self,
        source: &str,
        label: impl Fn(&str) -> Option<&'s str>,
    ) -> Option<Target<'_>> {
        if let Some(indices) = self.by_source.get(source) {
            return indices
                .iter()
                .map(|&i| &self.metrics[i])
                .find(|r| r.matchers.iter().all(|(k, m)| m.matches(label(k))))
                .map(Target::Rule);
        }
        DOCUMENTED_METRICS
            .iter()
            .copied()
            .chain(self.passthrough.iter().map(String::as_str))
            .find(|p| *p == source)
            .map(Target::Passthrough)
    }

    /// Whether any rule (or passthrough) names `source`, before label matching.
    pub fn knows(&self, source: &str) -> bool {
        self.by_source.contains_key(source)
            || DOCUMENTED_METRICS.contains(&source)
            || self.passthrough.iter().any(|p| p == source)
    }
}

fn rule_problem(rule: &Rule) -> Option<String> {
    if !is_valid_metric_name(&rule.metric) {
        return Some(format!(
            "metric {:?} must match [a-z][a-z0-9_]*",
            rule.metric
        ));
    }
    if !rule.scale.is_finite() {
        return Some("scale must be a finite number".into());
    }
    match (rule.kind, rule.quantile) {
        (Some(Kind::Histogram), Some(q)) if q > 0.0 && q <= 1.0 => None,
        (Some(Kind::Histogram), _) => Some("a histogram rule needs quantile in (0, 1]".into()),
        (None, Some(q)) if !(q > 0.0 && q <= 1.0) => Some("quantile must be in (0, 1]".into()),
        (Some(_), Some(_)) => Some("quantile is only for type: histogram".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_parses_and_maps_known_names() {
        let map = MetricsMap::default_map();
        let labels = |_: &str| None;
        assert!(matches!(
            map.find("k8s.pod.cpu.usage", labels),
            Some(Target::Rule(r)) if r.metric == "cpu_usage_cores"
        ));
        assert_eq!(
            map.find("cpu_usage_cores", labels),
            Some(Target::Passthrough("cpu_usage_cores"))
        );
        assert_eq!(map.find("otelcol_exporter_sent", labels), None);
    }

    #[test]
    fn matchers_select_rules_by_label() {
        let map = MetricsMap::parse(
            "metrics:\n- {source: x, match: {direction: receive}, metric: net_rx_bytes_per_sec}\n- {source: x, match: {direction: '!receive'}, metric: net_tx_bytes_per_sec}\n- {source: y, match: {container: ''}, metric: cpu}\n",
            "t",
        )
        .unwrap();
        let rx = map.find("x", |_| Some("receive"));
        assert!(matches!(rx, Some(Target::Rule(r)) if r.metric == "net_rx_bytes_per_sec"));
        let tx = map.find("x", |_| Some("transmit"));
        assert!(matches!(tx, Some(Target::Rule(r)) if r.metric == "net_tx_bytes_per_sec"));
        assert!(map.find("y", |_| None).is_some());
        assert_eq!(
            map.find("y", |_| Some("app")),
            None,
            "container present: no match"
        );
    }

    #[test]
    fn bad_rules_are_refused_with_their_index() {
        let err = MetricsMap::parse(
            "metrics:\n- {source: a, metric: ok}\n- {source: h, metric: p99, type: histogram}\n",
            "m.yaml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("metrics[1] (h)"), "{err}");
        let err = MetricsMap::parse("metrics:\n- {source: a, metric: ok, scael: 2}\n", "m.yaml")
            .unwrap_err();
        assert!(err.to_string().contains("scael"), "{err}");
    }
}
