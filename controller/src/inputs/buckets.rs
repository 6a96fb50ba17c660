//! Prometheus histograms: the adapter writes one message per bucket series
//! (`<name>_bucket` with an `le` label, cumulative counts), so the buckets of one series
//! (its labels without `le`) at one time are collected into a bucket set, which becomes an
//! explicit-bucket cumulative histogram point once complete: when event time has passed
//! it by the group window, when it has waited that long in wall-clock time, or when the
//! sample it belongs to is released. The point then takes the histograms' path
//! (`rates.rs`: interval, resets, empty intervals) and its value joins its sample.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use smallvec::SmallVec;

use super::InputStats;
use super::assemble::{Assembler, Combine, Origins, TargetRef, Value};
use super::mapping::{Aggregate, Rule};
use super::rates::{Buckets, SeriesStates, Step};

/// An owned [`TargetRef`].
struct Owned {
    node: String,
    pod: Option<(String, String, Option<String>)>,
    container: Option<String>,
}

impl Owned {
    fn new(t: &TargetRef<'_>) -> Self {
        Self {
            node: t.node.to_owned(),
            pod: t
                .pod
                .map(|(ns, name, uid)| (ns.to_owned(), name.to_owned(), uid.map(str::to_owned))),
            container: t.container.map(str::to_owned),
        }
    }

    fn as_ref(&self) -> TargetRef<'_> {
        TargetRef {
            node: &self.node,
            pod: self
                .pod
                .as_ref()
                .map(|(ns, name, uid)| (ns.as_str(), name.as_str(), uid.as_deref())),
            container: self.container.as_deref(),
        }
    }
}

struct Set {
    rule: &'static Rule,
    target: Owned,
    /// (le, cumulative count).
    buckets: SmallVec<[(f64, f64); 16]>,
    origins: Origins,
}

/// Bucket sets waiting to be complete, by (time, series key).
#[derive(Default)]
pub struct BucketSets {
    sets: BTreeMap<(i64, u64), Set>,
    /// Keys in the order their sets opened (wall clock), for the wall-clock window; keys
    /// of sets completed otherwise are skipped when they come up.
    opened: VecDeque<(i64, (i64, u64))>,
    bounds: Vec<f64>,
    counts: Vec<u64>,
}

/// One `_bucket` sample.
pub struct Bucket<'a> {
    /// The histogram rule (its source is the name without `_bucket`).
    pub rule: &'static Rule,
    /// Event time (ms).
    pub ts_ms: i64,
    /// Where it belongs.
    pub target: TargetRef<'a>,
    /// Hash of the series' labels other than `le` and `__name__`.
    pub labels_hash: u64,
    /// The `le` label.
    pub le: f64,
    /// The cumulative count.
    pub count: f64,
}

impl BucketSets {
    /// Adds a bucket to its set; the assembler counts the current message as joining the
    /// set (once) and learns the event time.
    pub fn add(&mut self, b: &Bucket<'_>, assembler: &mut Assembler, now_ms: i64) {
        let mut h = std::hash::DefaultHasher::new();
        (b.rule.source.as_str(), b.target, b.labels_hash).hash(&mut h);
        assembler.see(b.ts_ms);
        let key = (b.ts_ms, h.finish());
        let opened = &mut self.opened;
        let set = self.sets.entry(key).or_insert_with(|| {
            opened.push_back((now_ms, key));
            Set {
                rule: b.rule,
                target: Owned::new(&b.target),
                buckets: SmallVec::new(),
                origins: Origins::new(),
            }
        });
        assembler.join(&mut set.origins);
        match set.buckets.iter_mut().find(|(le, _)| *le == b.le) {
            Some(bucket) => bucket.1 = b.count,
            None => set.buckets.push((b.le, b.count)),
        }
    }

    /// Whether no set waits.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Completes the sets due (see the module doc; `all` at the end of input) into their
    /// samples in `assembler`, before it releases them. Walks only the sets completed and
    /// the groups about to be released.
    pub fn complete(
        &mut self,
        window_ms: i64,
        now_ms: i64,
        all: bool,
        states: &mut SeriesStates,
        assembler: &mut Assembler,
        stats: &mut InputStats,
    ) {
        if self.sets.is_empty() {
            self.opened.clear();
            return;
        }
        let (horizon, released) = assembler.due(window_ms, now_ms);
        // By event time, and for the samples about to be released: in time order.
        let limit = released.map_or(horizon - 1, |ts| ts.max(horizon - 1));
        while let Some(entry) = self.sets.first_entry() {
            if !all && entry.key().0 > limit {
                break;
            }
            let (key, set) = entry.remove_entry();
            self.finish(key, set, states, assembler, stats);
        }
        // By wall clock: in the order the sets opened.
        while let Some(&(opened, key)) = self.opened.front() {
            if !all && now_ms.saturating_sub(opened) <= window_ms {
                break;
            }
            self.opened.pop_front();
            if let Some(set) = self.sets.remove(&key) {
                self.finish(key, set, states, assembler, stats);
            }
        }
    }

    fn finish(
        &mut self,
        (ts, key): (i64, u64),
        mut set: Set,
        states: &mut SeriesStates,
        assembler: &mut Assembler,
        stats: &mut InputStats,
    ) {
        set.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.bounds.clear();
        self.counts.clear();
        let mut below = 0.0;
        for &(le, cumulative) in &set.buckets {
            if le.is_finite() {
                self.bounds.push(le);
            }
            self.counts
                .push((cumulative - below).max(0.0).round() as u64);
            below = cumulative.max(below);
        }
        if set.buckets.last().is_none_or(|(le, _)| le.is_finite()) {
            self.counts.push(0);
        }
        let rule = set.rule;
        let q = rule.quantile.unwrap_or(0.99);
        let point = Buckets {
            bounds: &self.bounds,
            counts: &self.counts,
            delta: false,
            start_ms: None,
        };
        let step = states.histogram(key, ts, point, q, stats);
        let value = match step {
            Step::Value(v) if (v * rule.scale).is_finite() => v * rule.scale,
            Step::Value(_) => {
                stats.unsupported += 1;
                return assembler.void().extend(set.origins);
            }
            Step::Nothing => return assembler.void().extend(set.origins),
        };
        let mut target = set.target.as_ref();
        if rule.aggregate == Aggregate::Pod && target.pod.is_some() {
            target.container = None;
        }
        stats.values += 1;
        let value = Value {
            metric: rule.metric.as_str(),
            value,
            combine: Combine::Max,
        };
        assembler.add_from(ts, &target, value, &set.origins);
    }
}
