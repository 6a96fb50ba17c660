//! Collects mapped values into samples: one sample per (time, node, pod, container), with
//! values mapped onto the same policy metric added up (container series of one pod with
//! `aggregate: pod`, or several source series of one node). A group is released once event
//! time has passed it by the group window, or once it has waited that long in wall-clock
//! time, so values of one scrape that arrive in separate messages still form one sample
//! (the engine keeps only the first sample of a (time, node, pod, container)).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use fulcrum_engine::sample::{Metric, PodRef, Sample};

/// Where a value belongs, borrowed from the decoded message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TargetRef<'a> {
    /// The node.
    pub node: &'a str,
    /// Namespace, name and UID of the pod, for pod series.
    pub pod: Option<(&'a str, &'a str, Option<&'a str>)>,
    /// The container, for container series.
    pub container: Option<&'a str>,
}

impl TargetRef<'_> {
    /// A stable 64-bit hash of the target.
    pub fn hash64(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

struct Group {
    opened_ms: i64,
    sample: Sample<'static>,
}

/// Groups waiting to be released, ordered by event time.
#[derive(Default)]
pub struct Assembler {
    groups: BTreeMap<(i64, u64), Group>,
    max_ts: i64,
}

impl Assembler {
    /// Adds `value` of policy metric `metric` to the group of (`ts`, `target`).
    pub fn add(
        &mut self,
        ts: i64,
        target: &TargetRef<'_>,
        metric: &'static str,
        value: f64,
        now_ms: i64,
    ) {
        self.max_ts = self.max_ts.max(ts);
        let group = self
            .groups
            .entry((ts, target.hash64()))
            .or_insert_with(|| Group {
                opened_ms: now_ms,
                sample: Sample {
                    ts_ms: ts,
                    node: Cow::Owned(target.node.to_owned()),
                    pod: target.pod.map(|(namespace, name, uid)| PodRef {
                        namespace: Cow::Owned(namespace.to_owned()),
                        name: Cow::Owned(name.to_owned()),
                        uid: uid.map(|u| Cow::Owned(u.to_owned())),
                    }),
                    container: target.container.map(|c| Cow::Owned(c.to_owned())),
                    metrics: Default::default(),
                },
            });
        let metrics = &mut group.sample.metrics;
        match metrics.iter_mut().find(|m| m.name == metric) {
            Some(m) => m.value += value,
            None => metrics.push(Metric {
                name: Cow::Borrowed(metric),
                value,
            }),
        }
    }

    /// Moves into `out`, in event-time order, the groups event time has passed by more
    /// than `window_ms` and those opened more than `window_ms` of wall-clock time before
    /// `now_ms`.
    pub fn release(&mut self, window_ms: i64, now_ms: i64, out: &mut Vec<Sample<'static>>) {
        let horizon = self.max_ts.saturating_sub(window_ms);
        while let Some(entry) = self.groups.first_entry() {
            let (ts, _) = *entry.key();
            if ts >= horizon && now_ms.saturating_sub(entry.get().opened_ms) <= window_ms {
                break;
            }
            out.push(entry.remove().sample);
        }
    }

    /// Moves every group into `out` (end of input).
    pub fn release_all(&mut self, out: &mut Vec<Sample<'static>>) {
        out.extend(
            std::mem::take(&mut self.groups)
                .into_values()
                .map(|g| g.sample),
        );
    }

    /// Groups waiting.
    pub fn pending(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: TargetRef<'static> = TargetRef {
        node: "n1",
        pod: None,
        container: None,
    };

    #[test]
    fn values_of_one_target_and_time_form_one_sample_and_add_up() {
        let mut a = Assembler::default();
        let pod = TargetRef {
            node: "n1",
            pod: Some(("ns", "p", None)),
            container: None,
        };
        a.add(1_000, &pod, "cpu_usage_cores", 0.5, 0);
        a.add(1_000, &pod, "mem_usage_bytes", 10.0, 0);
        a.add(1_000, &pod, "cpu_usage_cores", 0.25, 0);
        a.add(1_000, &NODE, "cpu_usage_cores", 2.0, 0);
        let mut out = Vec::new();
        a.release(5_000, 0, &mut out);
        assert!(out.is_empty(), "event time has not passed the window");
        a.add(6_001, &NODE, "cpu_usage_cores", 2.0, 0);
        a.release(5_000, 0, &mut out);
        assert_eq!(out.len(), 2);
        let pod_sample = out.iter().find(|s| s.pod.is_some()).unwrap();
        assert_eq!(pod_sample.metric("cpu_usage_cores"), Some(0.75));
        assert_eq!(pod_sample.metric("mem_usage_bytes"), Some(10.0));
        assert_eq!(a.pending(), 1);
    }

    #[test]
    fn groups_waiting_longer_than_the_window_in_wall_clock_time_are_released() {
        let mut a = Assembler::default();
        a.add(1_000, &NODE, "cpu_usage_cores", 1.0, 100);
        let mut out = Vec::new();
        a.release(5_000, 5_100, &mut out);
        assert!(out.is_empty());
        a.release(5_000, 5_101, &mut out);
        assert_eq!(out.len(), 1);
    }
}
