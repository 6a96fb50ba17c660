//! Compiles a validated policy spec into the form the engine evaluates: matchers instead
//! of selectors, milliseconds instead of duration strings, metric ids instead of names.
//!
//! Compilation and validation are one pass: [`compile_spec`] either returns a
//! [`CompiledSpec`] or every [`FieldError`] it found, so the rules cannot drift apart.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::duration::Duration;
use crate::metric::{MetricId, MetricRegistry, is_valid_metric_name};
use crate::selector::{LabelMatcher, Labels, is_dns_label, selects_everything};
use crate::spec::{
    Action, Attribution, AttributionMethod, CandidateClass, EvictionSettings, InterferencePolicy,
    InterferencePolicySpec, Limits, MAX_LIST_ENTRIES, Mode, OutlierBaseline, RateLimit, Trigger,
    TriggerScope, VictimSelector,
};
use crate::validate::{FieldError, FieldErrors};

/// Matches pods by their labels and, optionally, their namespace's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMatcher {
    /// Requirements on the pod's labels.
    pub pods: LabelMatcher,
    /// Requirements on the namespace's labels; `None` admits every namespace.
    pub namespaces: Option<LabelMatcher>,
}

impl PodMatcher {
    /// True when a pod with `pod_labels` in a namespace with `namespace_labels` matches.
    #[inline]
    pub fn matches(&self, pod_labels: &impl Labels, namespace_labels: &impl Labels) -> bool {
        self.pods.matches(pod_labels)
            && self
                .namespaces
                .as_ref()
                .is_none_or(|ns| ns.matches(namespace_labels))
    }
}

/// A compiled candidate class.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledCandidate {
    /// The class name from the policy.
    pub name: String,
    /// Which pods belong to the class.
    pub matcher: PodMatcher,
    /// What to do with a culprit of this class.
    pub action: Action,
}

/// The condition a trigger tests on each sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Condition {
    /// Holds while the value is strictly above the threshold.
    Above(f64),
    /// Holds while the value exceeds the learned mean by `sigma` standard deviations.
    Outlier {
        /// Standard deviations above the mean.
        sigma: f64,
        /// History the baseline is learned from, in ms.
        baseline_window_ms: u64,
        /// Samples needed before the trigger may fire.
        min_samples: u32,
    },
}

/// A compiled trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledTrigger {
    /// The trigger name from the policy.
    pub name: String,
    /// Per victim pod or per node.
    pub scope: TriggerScope,
    /// The metric watched.
    pub metric: MetricId,
    /// The condition tested.
    pub condition: Condition,
    /// How long the condition must hold continuously, in ms.
    pub sustained_for_ms: u64,
}

/// A compiled attribution configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledAttribution {
    /// Correlation or usage share.
    pub method: AttributionMethod,
    /// Candidate metrics scored.
    pub metrics: Vec<MetricId>,
    /// History scored over, in ms.
    pub window_ms: u64,
    /// Least correlation needed to blame a candidate.
    pub min_correlation: f64,
}

/// A compiled sliding-window limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimit {
    /// Actions allowed per window.
    pub count: u32,
    /// Window length in ms.
    pub window_ms: u64,
}

/// Compiled limits and guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledLimits {
    /// Per node.
    pub per_node: WindowLimit,
    /// Per workload (owning controller).
    pub per_workload: WindowLimit,
    /// Per namespace.
    pub per_namespace: WindowLimit,
    /// For the whole policy.
    pub total: WindowLimit,
    /// Quiet period on a node after an action, in ms.
    pub cooldown_ms: u64,
    /// Minimum pod age for an action, in ms.
    pub min_pod_age_ms: u64,
}

/// A policy spec in engine form. Produced only from a spec that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledSpec {
    /// DryRun or Enforce.
    pub mode: Mode,
    /// Higher is evaluated first.
    pub priority: i32,
    /// Nodes covered.
    pub nodes: LabelMatcher,
    /// Pods protected.
    pub victims: PodMatcher,
    /// Candidate classes in policy order.
    pub candidates: Vec<CompiledCandidate>,
    /// Triggers in policy order.
    pub triggers: Vec<CompiledTrigger>,
    /// Attribution settings.
    pub attribution: CompiledAttribution,
    /// Hysteresis before a node is healthy again, in ms.
    pub clear_for_ms: u64,
    /// Limits and guards.
    pub limits: CompiledLimits,
    /// Eviction settings, as written.
    pub eviction: EvictionSettings,
}

/// A named, compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    /// `metadata.name` of the policy.
    pub name: String,
    /// `metadata.generation`, when known.
    pub generation: Option<i64>,
    /// The compiled spec.
    pub spec: CompiledSpec,
}

impl CompiledPolicy {
    /// Compiles a policy object, interning its metrics into `registry`.
    pub fn compile(
        policy: &InterferencePolicy,
        registry: &mut MetricRegistry,
    ) -> Result<Self, Vec<FieldError>> {
        let spec = compile_spec(&policy.spec, registry)?;
        Ok(Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            spec,
        })
    }
}

/// Checks `spec` and compiles it, or returns every problem found.
pub fn compile_spec(
    spec: &InterferencePolicySpec,
    registry: &mut MetricRegistry,
) -> Result<CompiledSpec, Vec<FieldError>> {
    let mut errors = FieldErrors::default();

    let nodes = match &spec.node_selector {
        Some(sel) => LabelMatcher::compile(sel, "spec.nodeSelector", &mut errors),
        None => LabelMatcher::everything(),
    };
    let victims = compile_victims(&spec.victims, &mut errors);
    let candidates = compile_candidates(&spec.candidates, &mut errors);
    let triggers = compile_triggers(&spec.triggers, registry, &mut errors);
    let attribution = compile_attribution(&spec.attribution, registry, &mut errors);
    let clear_for_ms = millis(
        &spec.recovery.clear_for,
        "spec.recovery.clearFor",
        &mut errors,
    );
    let limits = compile_limits(&spec.limits, &mut errors);
    check_eviction(&spec.eviction, &mut errors);

    if !errors.is_empty() {
        return Err(errors.into_vec());
    }
    Ok(CompiledSpec {
        mode: spec.mode,
        priority: spec.priority,
        nodes,
        victims,
        candidates,
        triggers,
        attribution,
        clear_for_ms,
        limits,
        eviction: spec.eviction.clone(),
    })
}

/// Compiles `spec.victims`, rejecting a selector that would make every pod a victim.
fn compile_victims(victims: &VictimSelector, errors: &mut FieldErrors) -> PodMatcher {
    let matcher = pod_matcher(
        &victims.pod_selector,
        victims.namespace_selector.as_ref(),
        "spec.victims",
        errors,
    );
    let every_namespace = victims
        .namespace_selector
        .as_ref()
        .is_none_or(selects_everything);
    if selects_everything(&victims.pod_selector) && every_namespace {
        errors.push(
            "spec.victims.podSelector",
            "must select something: with an empty selector (and no restricting namespaceSelector) every pod is a victim, so nothing could ever be acted on",
        );
    }
    matcher
}

/// Compiles `spec.candidates` in policy order, checking the list length and names.
fn compile_candidates(
    candidates: &[CandidateClass],
    errors: &mut FieldErrors,
) -> Vec<CompiledCandidate> {
    check_list_len(candidates.len(), "spec.candidates", errors);
    let mut names = HashSet::new();
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("spec.candidates[{i}]");
            check_entry_name(&c.name, &at, &mut names, errors);
            CompiledCandidate {
                name: c.name.clone(),
                matcher: pod_matcher(&c.pod_selector, c.namespace_selector.as_ref(), &at, errors),
                action: c.action,
            }
        })
        .collect()
}

/// Compiles `spec.triggers` in policy order; a trigger with a bad metric or condition
/// is reported and left out.
fn compile_triggers(
    triggers: &[Trigger],
    registry: &mut MetricRegistry,
    errors: &mut FieldErrors,
) -> Vec<CompiledTrigger> {
    check_list_len(triggers.len(), "spec.triggers", errors);
    let mut names = HashSet::new();
    let mut compiled = Vec::with_capacity(triggers.len());
    for (i, t) in triggers.iter().enumerate() {
        let at = format!("spec.triggers[{i}]");
        check_entry_name(&t.name, &at, &mut names, errors);
        let metric = metric_id(&t.metric, &format!("{at}.metric"), registry, errors);
        let condition = trigger_condition(t, &at, errors);
        let sustained_for_ms = millis(&t.sustained_for, &format!("{at}.sustainedFor"), errors);
        if let (Some(metric), Some(condition)) = (metric, condition) {
            compiled.push(CompiledTrigger {
                name: t.name.clone(),
                scope: t.scope,
                metric,
                condition,
                sustained_for_ms,
            });
        }
    }
    compiled
}

/// The condition of trigger `t` at `at`: exactly one of `above` or `outlier`.
fn trigger_condition(t: &Trigger, at: &str, errors: &mut FieldErrors) -> Option<Condition> {
    match (t.above, &t.outlier) {
        (Some(_), Some(_)) => {
            errors.push(at, "exactly one of above or outlier must be set, got both");
            None
        }
        (None, None) => {
            errors.push(
                at,
                "exactly one of above or outlier must be set, got neither",
            );
            None
        }
        (Some(above), None) => {
            if !above.is_finite() {
                errors.push(
                    format!("{at}.above"),
                    format!("must be a finite number, got {above}"),
                );
            }
            Some(Condition::Above(above))
        }
        (None, Some(o)) => Some(outlier_condition(o, &format!("{at}.outlier"), errors)),
    }
}

/// Compiles an outlier baseline at `at` (the `.outlier` path).
fn outlier_condition(o: &OutlierBaseline, at: &str, errors: &mut FieldErrors) -> Condition {
    if !(o.sigma.is_finite() && o.sigma > 0.0) {
        errors.push(
            format!("{at}.sigma"),
            format!("must be > 0, got {}", o.sigma),
        );
    }
    if o.min_samples < 2 {
        errors.push(
            format!("{at}.minSamples"),
            format!(
                "must be >= 2 (a deviation needs two samples), got {}",
                o.min_samples
            ),
        );
    }
    let baseline_window_ms =
        positive_millis(&o.baseline_window, &format!("{at}.baselineWindow"), errors);
    Condition::Outlier {
        sigma: o.sigma,
        baseline_window_ms,
        min_samples: o.min_samples,
    }
}

/// Compiles `spec.attribution`: its metric list, correlation bound and window.
fn compile_attribution(
    a: &Attribution,
    registry: &mut MetricRegistry,
    errors: &mut FieldErrors,
) -> CompiledAttribution {
    let metrics = attribution_metrics(&a.metrics, registry, errors);
    if !(a.min_correlation.is_finite() && (0.0..=1.0).contains(&a.min_correlation)) {
        errors.push(
            "spec.attribution.minCorrelation",
            format!("must be between 0 and 1, got {}", a.min_correlation),
        );
    }
    CompiledAttribution {
        method: a.method,
        metrics,
        window_ms: positive_millis(&a.window, "spec.attribution.window", errors),
        min_correlation: a.min_correlation,
    }
}

/// Interns `spec.attribution.metrics`, rejecting an empty or over-long list, duplicates
/// and invalid names.
fn attribution_metrics(
    metrics: &[String],
    registry: &mut MetricRegistry,
    errors: &mut FieldErrors,
) -> Vec<MetricId> {
    if metrics.is_empty() {
        errors.push("spec.attribution.metrics", "must list at least one metric");
    } else if metrics.len() > MAX_LIST_ENTRIES {
        errors.push(
            "spec.attribution.metrics",
            format!(
                "must list at most {MAX_LIST_ENTRIES} metrics, got {}",
                metrics.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    let mut ids = Vec::with_capacity(metrics.len());
    for (i, m) in metrics.iter().enumerate() {
        let at = format!("spec.attribution.metrics[{i}]");
        if !seen.insert(m.as_str()) {
            errors.push(at, format!("duplicate metric {m:?}"));
        } else if let Some(id) = metric_id(m, &at, registry, errors) {
            ids.push(id);
        }
    }
    ids
}

/// Compiles `spec.limits`.
fn compile_limits(l: &Limits, errors: &mut FieldErrors) -> CompiledLimits {
    CompiledLimits {
        per_node: window_limit(
            &l.max_actions_per_node,
            "spec.limits.maxActionsPerNode",
            errors,
        ),
        per_workload: window_limit(
            &l.max_actions_per_workload,
            "spec.limits.maxActionsPerWorkload",
            errors,
        ),
        per_namespace: window_limit(
            &l.max_actions_per_namespace,
            "spec.limits.maxActionsPerNamespace",
            errors,
        ),
        total: window_limit(&l.max_actions_total, "spec.limits.maxActionsTotal", errors),
        cooldown_ms: millis(&l.cooldown, "spec.limits.cooldown", errors),
        min_pod_age_ms: millis(&l.min_pod_age, "spec.limits.minPodAge", errors),
    }
}

/// Checks `spec.eviction`: a grace period, when set, must not be negative.
fn check_eviction(eviction: &EvictionSettings, errors: &mut FieldErrors) {
    if let Some(grace) = eviction.grace_period_seconds
        && grace < 0
    {
        errors.push(
            "spec.eviction.gracePeriodSeconds",
            format!("must be >= 0, got {grace}"),
        );
    }
}

fn pod_matcher(
    pods: &LabelSelector,
    namespaces: Option<&LabelSelector>,
    at: &str,
    errors: &mut FieldErrors,
) -> PodMatcher {
    PodMatcher {
        pods: LabelMatcher::compile(pods, &format!("{at}.podSelector"), errors),
        namespaces: namespaces
            .map(|sel| LabelMatcher::compile(sel, &format!("{at}.namespaceSelector"), errors)),
    }
}

fn check_list_len(len: usize, at: &str, errors: &mut FieldErrors) {
    if len == 0 {
        errors.push(at, "must have at least one entry");
    } else if len > MAX_LIST_ENTRIES {
        errors.push(
            at,
            format!("must have at most {MAX_LIST_ENTRIES} entries, got {len}"),
        );
    }
}

fn check_entry_name<'a>(
    name: &'a str,
    at: &str,
    seen: &mut HashSet<&'a str>,
    errors: &mut FieldErrors,
) {
    if !is_dns_label(name) {
        errors.push(
            format!("{at}.name"),
            format!("must be 1-63 lowercase alphanumerics or '-', starting and ending alphanumeric, got {name:?}"),
        );
    } else if !seen.insert(name) {
        errors.push(format!("{at}.name"), format!("duplicate name {name:?}"));
    }
}

fn metric_id(
    name: &str,
    at: &str,
    registry: &mut MetricRegistry,
    errors: &mut FieldErrors,
) -> Option<MetricId> {
    if is_valid_metric_name(name) {
        Some(registry.intern(name))
    } else {
        errors.push(
            at,
            format!("must match [a-z][a-z0-9_]* (at most 128 bytes), got {name:?}"),
        );
        None
    }
}

fn millis(d: &Duration, at: &str, errors: &mut FieldErrors) -> u64 {
    d.to_millis().unwrap_or_else(|e| {
        errors.push(at, e.to_string());
        0
    })
}

fn positive_millis(d: &Duration, at: &str, errors: &mut FieldErrors) -> u64 {
    match d.to_millis() {
        Ok(0) => {
            errors.push(at, format!("must be at least 1ms, got {:?}", d.as_str()));
            0
        }
        Ok(ms) => ms,
        Err(e) => {
            errors.push(at, e.to_string());
            0
        }
    }
}

fn window_limit(limit: &RateLimit, at: &str, errors: &mut FieldErrors) -> WindowLimit {
    if limit.count == 0 {
        errors.push(
            format!("{at}.count"),
            "must be >= 1 (use mode: DryRun to stop acting)",
        );
    }
    WindowLimit {
        count: limit.count,
        window_ms: positive_millis(&limit.window, &format!("{at}.window"), errors),
    }
}
