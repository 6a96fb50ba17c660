//! Guards: why a pod may not be acted on (built-in exclusions no policy can switch off),
//! and the breakers that stop every action (a feed catching up, a stale feed, a storm).

use crate::breaker_counts::Clock;
use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::limits::fmt_ms;
use crate::state::Track;

/// Priority at and above which pods are system-critical and never acted on.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Why a candidate may not be acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exclusion {
    /// Shown in explanations.
    pub(crate) reason: String,
    /// The reason may pass (a young pod ages); otherwise it holds for good.
    pub(crate) temporary: bool,
    /// The pod was already acted on: the earlier decision is its report.
    pub(crate) acted: bool,
}

impl Exclusion {
    pub(crate) fn never(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            temporary: false,
            acted: false,
        }
    }

    fn for_now(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            temporary: true,
            acted: false,
        }
    }
}

impl Engine {
    /// Why pod `pod` may not be acted on by policy `p` at `t`, if it may not.
    pub(crate) fn exclusion(&self, p: u16, pod: PodId, t: i64) -> Option<Exclusion> {
        let (Some(info), Some(state)) = (
            self.cluster.pod_info(pod),
            self.pods.get(pod.index()).and_then(Option::as_ref),
        ) else {
            return Some(Exclusion::for_now("unknown to the cluster view"));
        };
        let spec = &self.policies[p as usize].policy.spec;
        let policy = &self.policies[p as usize].policy.name;
        let never = Exclusion::never;
        let for_now = Exclusion::for_now;
        Some(if state.is_victim() {
            never("a victim of a policy covering the node")
        } else if info.is_daemonset() {
            never("a DaemonSet pod")
        } else if info.mirror {
            never("a static (mirror) pod")
        } else if info.namespace == "kube-system" {
            never("in kube-system")
        } else if info.protected {
            never("annotated fulcrum.dev/protect: \"true\"")
        } else if info.priority >= SYSTEM_CRITICAL_PRIORITY {
            never("of system-critical priority")
        } else if info.is_bare() && !spec.eviction.evict_bare_pods {
            never("a bare pod (no controller would recreate it; see eviction.evictBarePods)")
        } else if info.local_storage && !spec.eviction.evict_local_storage_pods {
            never("using emptyDir storage (see eviction.evictLocalStoragePods)")
        } else if info.terminating || !info.running {
            for_now("not running")
        } else if state.acted_for(spec.mode) || self.restored_acted(policy, &info.key(), spec.mode)
        {
            // Not again; if interference persists, comparable contributors may be next.
            Exclusion {
                acted: true,
                ..never("already acted on")
            }
        } else if info
            .created_ms
            .is_some_and(|c| t - c < spec.limits.min_pod_age_ms as i64)
        {
            for_now(&format!(
                "younger than minPodAge ({})",
                fmt_ms(spec.limits.min_pod_age_ms)
            ))
        } else if state
            .last_ts
            .is_none_or(|l| t - l > state.cadence.stale_after(self.config.staleness()))
        {
            for_now("without recent samples")
        } else {
            return None;
        })
    }

    /// True when some trigger condition currently holds on `node` (on the node or on one
    /// of its victims), sustained or not, with fresh data. Used by the storm breaker (nodes
    /// that fire together are counted before any of them acts) and by placement.
    pub(crate) fn under_pressure(&self, node: NodeId, t: i64) -> bool {
        let stale = self.config.staleness();
        let Some(state) = self.nodes.get(node.index()).and_then(Option::as_ref) else {
            return false;
        };
        // No track of the node or its pods holds after `armed_until`.
        let armed = state.armed_until.is_some_and(|u| t <= u);
        let holding = |track: &Track| track.holding(t, stale);
        let scan = || {
            state.tracks.iter().any(holding)
                || self.cluster.node_pods(node).iter().any(|pod| {
                    self.pods
                        .get(pod.index())
                        .and_then(Option::as_ref)
                        .is_some_and(|s| s.tracks.iter().any(holding))
                })
        };
        // A track holds at `t` exactly when `t` is at most its `holding_until`.
        let pressed = armed
            && if state.pressure_dirty {
                scan()
            } else {
                state.pressure_until.is_some_and(|u| t <= u)
            };
        debug_assert_eq!(
            pressed,
            scan(),
            "the cached pressure of a node disagrees with its tracks"
        );
        pressed
    }

    /// Recomputes the latest [`crate::state::Track::holding_until`] over `node`'s and its
    /// pods' tracks when it may be stale.
    pub(crate) fn refresh_pressure(&mut self, node: NodeId) {
        let stale = self.config.staleness();
        let pods = self.cluster.node_pods(node).iter().filter_map(|pod| {
            let s = self.pods.get(pod.index())?.as_ref()?;
            crate::state::holding_until(&s.tracks, stale)
        });
        let pods = pods.max();
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut)
            && state.pressure_dirty
        {
            state.pressure_until = crate::state::holding_until(&state.tracks, stale).max(pods);
            state.pressure_dirty = false;
        }
        self.sync_breakers(node);
    }

    /// The storm and stale-feed breakers: a reason not to act anywhere, if one holds.
    pub(crate) fn breaker(&self, t: i64) -> Option<String> {
        if let Some(reason) = self.catching_up(t) {
            return Some(reason);
        }
        let (tracked, stale) = self.staleness_at(t, Clock::Planning);
        self.stale_feed(tracked, stale)
            .or_else(|| self.storm(t, tracked - stale, Clock::Planning))
    }

    /// Which breaker is open at the engine's watermark, by name: `catching_up` (the
    /// evidence is older than the horizon), `stale_feed` and `storm`. For metrics; the
    /// decisions themselves use `Engine::breaker` at their own time.
    pub fn open_breakers(&self) -> [(&'static str, bool); 3] {
        let t = self.watermark();
        let (tracked, stale) = self.staleness_at(t, Clock::Watermark);
        [
            ("catching_up", self.catching_up(t).is_some()),
            ("stale_feed", self.stale_feed(tracked, stale).is_some()),
            (
                "storm",
                self.storm(t, tracked - stale, Clock::Watermark).is_some(),
            ),
        ]
    }

    fn catching_up(&self, t: i64) -> Option<String> {
        (t < self.horizon).then(|| {
            format!(
                "catching up: the evidence is {} older than the newest acceptable ({})",
                fmt_ms((self.horizon - t) as u64),
                "see --max-evidence-age"
            )
        })
    }

    /// (nodes that report samples, those of them without recent samples) at `t`, from the
    /// incremental counts (checked against [`Engine::staleness_scan`] in debug builds).
    pub(crate) fn staleness_at(&self, t: i64, clock: Clock) -> (usize, usize) {
        let counted = self.breaker_counts.staleness(t, clock);
        debug_assert_eq!(
            counted,
            self.staleness_scan(t),
            "the breaker counts disagree with the nodes' staleness at {t}"
        );
        counted
    }

    /// [`Engine::staleness_at`] by a scan of every node: the reference.
    pub(crate) fn staleness_scan(&self, t: i64) -> (usize, usize) {
        let (mut tracked, mut stale) = (0usize, 0usize);
        for state in self.nodes.iter().flatten() {
            if state.covering.is_empty() {
                continue;
            }
            // `fresh_until` is `last_ts` plus the node's staleness bound.
            if let Some(fresh_until) = state.fresh_until {
                tracked += 1;
                if t > fresh_until {
                    stale += 1;
                }
            }
        }
        (tracked, stale)
    }

    /// Nodes under pressure at `t`, from the incremental counts: those whose cached
    /// pressure is exact are counted, those whose cache is dirty and that are armed at `t`
    /// are scanned (checked against a scan of every node in debug builds).
    pub(crate) fn pressured_at(&self, t: i64, clock: Clock) -> usize {
        let counts = &self.breaker_counts;
        let dirty = counts
            .maybe_pressed(t)
            .filter(|n| self.under_pressure(*n, t))
            .count();
        let pressured = counts.pressed(t, clock) + dirty;
        debug_assert_eq!(
            pressured,
            self.pressured_scan(t),
            "the breaker counts disagree with the nodes under pressure at {t}"
        );
        pressured
    }

    /// [`Engine::pressured_at`] by a scan of every node: the reference.
    pub(crate) fn pressured_scan(&self, t: i64) -> usize {
        self.cluster
            .node_ids()
            .filter(|n| self.under_pressure(*n, t))
            .count()
    }

    fn stale_feed(&self, tracked: usize, stale: usize) -> Option<String> {
        (tracked > 0 && stale as f64 > self.config.stale_fraction * tracked as f64).then(|| {
            format!(
                "stale feed: {stale} of {tracked} reporting nodes have no samples in the last {} (or {} of their own sampling intervals)",
                fmt_ms(self.config.stale_after_ms),
                self.config.stale_cadences
            )
        })
    }

    fn storm(&self, t: i64, live: usize, clock: Clock) -> Option<String> {
        let firing = self.pressured_at(t, clock);
        (firing >= self.config.storm_min_nodes
            && firing as f64 > self.config.storm_fraction * live as f64)
            .then(|| {
                format!(
                    "storm: {firing} of {live} live nodes have interference at once (more than {:.0}%); a systemic cause is likelier",
                    self.config.storm_fraction * 100.0
                )
            })
    }
}
