//! Collects mapped values into samples: one sample per (time, node, pod, container), with
//! values mapped onto the same policy metric added up (container series of one pod with
//! `aggregate: pod`, or several source series of one node). A group is released once event
//! time has passed it by the group window, or once it has waited that long in wall-clock
//! time, so values of one scrape that arrive in separate messages still form one sample
//! (the engine keeps only the first sample of a (time, node, pod, container)).
//!
//! Each group remembers the Kafka messages ([`Origin`]) whose values it holds, so the feed
//! stores a message's offset only once every group it joined has reached the engine.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use fulcrum_engine::sample::{Metric, PodRef, Sample};
use smallvec::SmallVec;

/// The Kafka message a value came from (partition and offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// The messages whose values a sample holds, inline up to four.
pub type Origins = SmallVec<[Origin; 4]>;

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

/// How values of one policy metric in one sample combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Added up (container series into their pod, several source series of a node).
    Sum,
    /// The largest (quantiles of several series: the worst one, never their sum).
    Max,
}

struct Group {
    opened_ms: i64,
    sample: Sample<'static>,
    origins: Origins,
}

/// A policy metric's value and how it combines with others of the same sample.
#[derive(Clone, Copy, Debug)]
pub struct Value {
    /// The policy metric.
    pub metric: &'static str,
    /// The value.
    pub value: f64,
    /// How it combines.
    pub combine: Combine,
}

/// The group of (`ts`, `target`), opened at `now_ms` if new.
fn group<'g>(
    groups: &'g mut BTreeMap<(i64, u64), Group>,
    max_ts: &mut i64,
    ts: i64,
    target: &TargetRef<'_>,
    now_ms: i64,
) -> &'g mut Group {
    *max_ts = (*max_ts).max(ts);
    groups
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
            origins: Origins::new(),
        })
}

fn put(sample: &mut Sample<'static>, v: Value) {
    let metrics = &mut sample.metrics;
    match metrics.iter_mut().find(|m| m.name == v.metric) {
        Some(m) if v.combine == Combine::Max => m.value = m.value.max(v.value),
        Some(m) => m.value += v.value,
        None => metrics.push(Metric {
            name: Cow::Borrowed(v.metric),
            value: v.value,
        }),
    }
}

/// Groups waiting to be released, ordered by event time.
#[derive(Default)]
pub struct Assembler {
    groups: BTreeMap<(i64, u64), Group>,
    max_ts: i64,
    /// The origin of the values added now (`None` outside Kafka).
    origin: Option<Origin>,
    /// Groups the current origin joined since [`Assembler::set_origin`].
    joined: usize,
    /// Origins whose claim on a sample ended without one (see [`Assembler::add_from`]).
    void: Vec<Origin>,
}

impl Assembler {
    /// The message the next values come from; resets [`Assembler::joined`].
    pub fn set_origin(&mut self, origin: Option<Origin>) {
        self.origin = origin;
        self.joined = 0;
    }

    /// How many groups the current origin's values joined (each group once).
    pub fn joined(&self) -> usize {
        self.joined
    }

    /// Adds `value` of policy metric `metric` to the group of (`ts`, `target`), from the
    /// current origin.
    pub fn add(&mut self, ts: i64, target: &TargetRef<'_>, value: Value, now_ms: i64) {
        let group = group(&mut self.groups, &mut self.max_ts, ts, target, now_ms);
        if let Some(origin) = self.origin
            && !group.origins.contains(&origin)
        {
            group.origins.push(origin);
            self.joined += 1;
        }
        put(&mut group.sample, value);
    }

    /// Adds a value made from several messages (a Prometheus histogram's bucket series),
    /// each already counted as having joined one sample: an origin the group holds
    /// already goes to [`Assembler::take_void`] instead (its claim ends here).
    pub fn add_from(&mut self, ts: i64, target: &TargetRef<'_>, value: Value, from: &[Origin]) {
        let now_ms = self
            .groups
            .get(&(ts, target.hash64()))
            .map_or(0, |g| g.opened_ms);
        let group = group(&mut self.groups, &mut self.max_ts, ts, target, now_ms);
        for origin in from {
            if group.origins.contains(origin) {
                self.void.push(*origin);
            } else {
                group.origins.push(*origin);
            }
        }
        put(&mut group.sample, value);
    }

    /// Counts `origins` as holding the current origin (once), as [`Assembler::add`] does
    /// for a group: for values that wait elsewhere before joining a group.
    pub fn join(&mut self, origins: &mut Origins) {
        if let Some(origin) = self.origin
            && !origins.contains(&origin)
        {
            origins.push(origin);
            self.joined += 1;
        }
    }

    /// Notes event time `ts` seen (for [`Assembler::release`]'s horizon).
    pub fn see(&mut self, ts: i64) {
        self.max_ts = self.max_ts.max(ts);
    }

    /// Origins whose claim ended without a sample: the caller settles them.
    pub fn void(&mut self) -> &mut Vec<Origin> {
        &mut self.void
    }

    /// The event time below which groups are released now, and the time of the last
    /// group [`Assembler::release`] would release now (it walks only those groups).
    pub fn due(&self, window_ms: i64, now_ms: i64) -> (i64, Option<i64>) {
        let horizon = self.max_ts.saturating_sub(window_ms);
        let last = self
            .groups
            .iter()
            .take_while(|((ts, _), g)| {
                *ts < horizon || now_ms.saturating_sub(g.opened_ms) > window_ms
            })
            .last()
            .map(|((ts, _), _)| *ts);
        (horizon, last)
    }

    /// Moves into `out`, in event-time order, the groups event time has passed by more
    /// than `window_ms` and those opened more than `window_ms` of wall-clock time before
    /// `now_ms`.
    pub fn release(
        &mut self,
        window_ms: i64,
        now_ms: i64,
        out: &mut Vec<(Sample<'static>, Origins)>,
    ) {
        let horizon = self.max_ts.saturating_sub(window_ms);
        while let Some(entry) = self.groups.first_entry() {
            let (ts, _) = *entry.key();
            if ts >= horizon && now_ms.saturating_sub(entry.get().opened_ms) <= window_ms {
                break;
            }
            let group = entry.remove();
            out.push((group.sample, group.origins));
        }
    }

    /// Moves every group into `out` (end of input).
    pub fn release_all(&mut self, out: &mut Vec<(Sample<'static>, Origins)>) {
        out.extend(
            std::mem::take(&mut self.groups)
                .into_values()
                .map(|g| (g.sample, g.origins)),
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

    fn sum(metric: &'static str, value: f64) -> Value {
        Value {
            metric,
            value,
            combine: Combine::Sum,
        }
    }

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
        a.add(1_000, &pod, sum("cpu_usage_cores", 0.5), 0);
        a.add(1_000, &pod, sum("mem_usage_bytes", 10.0), 0);
        a.add(1_000, &pod, sum("cpu_usage_cores", 0.25), 0);
        a.add(1_000, &NODE, sum("cpu_usage_cores", 2.0), 0);
        let mut out = Vec::new();
        a.release(5_000, 0, &mut out);
        assert!(out.is_empty(), "event time has not passed the window");
        a.add(6_001, &NODE, sum("cpu_usage_cores", 2.0), 0);
        a.release(5_000, 0, &mut out);
        assert_eq!(out.len(), 2);
        let pod_sample = &out.iter().find(|(s, _)| s.pod.is_some()).unwrap().0;
        assert_eq!(pod_sample.metric("cpu_usage_cores"), Some(0.75));
        assert_eq!(pod_sample.metric("mem_usage_bytes"), Some(10.0));
        assert_eq!(a.pending(), 1);
    }

    #[test]
    fn groups_waiting_longer_than_the_window_in_wall_clock_time_are_released() {
        let mut a = Assembler::default();
        a.add(1_000, &NODE, sum("cpu_usage_cores", 1.0), 100);
        let mut out = Vec::new();
        a.release(5_000, 5_100, &mut out);
        assert!(out.is_empty());
        a.release(5_000, 5_101, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn groups_remember_each_message_whose_values_they_hold_once() {
        let mut a = Assembler::default();
        let m = |offset| {
            Some(Origin {
                partition: 0,
                offset,
            })
        };
        a.set_origin(m(7));
        a.add(1_000, &NODE, sum("cpu_usage_cores", 1.0), 0);
        a.add(1_000, &NODE, sum("mem_usage_bytes", 1.0), 0);
        a.add(2_000, &NODE, sum("cpu_usage_cores", 1.0), 0);
        assert_eq!(a.joined(), 2, "two groups, each counted once");
        a.set_origin(m(8));
        a.add(1_000, &NODE, sum("psi_cpu_some", 0.1), 0);
        assert_eq!(a.joined(), 1);
        a.set_origin(None);
        a.add(1_000, &NODE, sum("psi_io_some", 0.1), 0);
        assert_eq!(a.joined(), 0, "values outside Kafka have no origin");
        let mut out = Vec::new();
        a.release_all(&mut out);
        let origins: Vec<Vec<i64>> = out
            .iter()
            .map(|(_, o)| o.iter().map(|o| o.offset).collect())
            .collect();
        assert_eq!(origins, [vec![7, 8], vec![7]]);
    }
}
