//! Forward jumps in event time: telling a broken clock from a stream that moved on.
//!
//! A sample more than `max_forward_jump_ms` ahead of the newest queued sample (or any
//! sample before the engine knows what time it is) is *held*, not queued: one sample from a
//! broken clock must not move the watermark and make every other sample late. The jump is
//! accepted, and the held samples near it are queued, once it is confirmed:
//!
//! - by samples from two different nodes within `max_forward_jump_ms` of each other, or
//! - when at most one node reported in the last `max_forward_jump_ms` (a one-node feed, or
//!   the engine's first samples), by two samples at different instants.
//!
//! So a pause of the whole feed (an outage of the monitoring pipeline) costs one sample of
//! delay, never the rest of the stream, while a single node whose clock runs ahead of the
//! others is held back for as long as it stays alone. Held samples that the stream later
//! reaches are queued normally. The pool is bounded ([`HELD_CAPACITY`]); samples pushed out
//! of it, and those still held at [`Engine::flush`], count as `too_far_ahead`.

use crate::engine::Engine;
use crate::ingest::Offered;
use crate::reorder::Pending;

/// Held samples kept at most; the oldest held is dropped (as `too_far_ahead`) beyond it.
pub const HELD_CAPACITY: usize = 4096;

impl Engine {
    /// Queues `p` when it is within reach of the stream, holds it otherwise.
    pub(crate) fn queue_or_hold(&mut self, p: Pending) -> Offered {
        let jump = self.config.max_forward_jump_ms as i64;
        if self.max_ts != i64::MIN && p.ts <= self.max_ts.saturating_add(jump) {
            self.queue(p);
            return Offered::Queued;
        }
        if self.held.len() >= HELD_CAPACITY {
            self.held.remove(0);
            self.stats.too_far_ahead += 1;
        }
        let ts = p.ts;
        self.held.push(p);
        if self.confirm_jump(ts) {
            Offered::Queued
        } else {
            Offered::Held
        }
    }

    /// Puts a sample in the reorder buffer and moves the newest time.
    fn queue(&mut self, p: Pending) {
        if p.ts <= self.watermark {
            self.stats.late += 1;
            return;
        }
        let raised = p.ts > self.max_ts;
        self.max_ts = self.max_ts.max(p.ts);
        let node = p.node.index();
        if self.node_seen.len() <= node {
            self.node_seen.resize(node + 1, i64::MIN);
        }
        self.node_seen[node] = self.node_seen[node].max(p.ts);
        self.buffer.push(p);
        if raised && !self.held.is_empty() {
            self.release_reachable();
        }
    }

    /// Nodes that queued a sample within `max_forward_jump_ms` of the newest time.
    fn active_nodes(&self) -> usize {
        if self.max_ts == i64::MIN {
            return 0;
        }
        let since = self
            .max_ts
            .saturating_sub(self.config.max_forward_jump_ms as i64);
        self.node_seen.iter().filter(|&&t| t >= since).count()
    }

    /// Accepts the jump to around `ts` if held samples confirm it; queues them if so.
    fn confirm_jump(&mut self, ts: i64) -> bool {
        let jump = self.config.max_forward_jump_ms as i64;
        let near = |p: &Pending| p.ts.abs_diff(ts) <= jump as u64;
        let mut nodes: Vec<u32> = self
            .held
            .iter()
            .filter(|p| near(p))
            .map(|p| p.node.0)
            .collect();
        let mut instants: Vec<i64> = self.held.iter().filter(|p| near(p)).map(|p| p.ts).collect();
        nodes.sort_unstable();
        nodes.dedup();
        instants.sort_unstable();
        instants.dedup();
        let required = self.active_nodes().clamp(1, 2);
        if nodes.len() < required || (nodes.len() < 2 && instants.len() < 2) {
            return false;
        }
        let (mut group, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|p| near(p));
        self.held = kept;
        group.sort();
        for p in group {
            self.queue(p);
        }
        true
    }

    /// Queues held samples the stream has come within reach of.
    fn release_reachable(&mut self) {
        let reach = self
            .max_ts
            .saturating_add(self.config.max_forward_jump_ms as i64);
        if !self.held.iter().any(|p| p.ts <= reach) {
            return;
        }
        let (mut reachable, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|p| p.ts <= reach);
        self.held = kept;
        reachable.sort();
        for p in reachable {
            self.queue(p);
        }
    }

    /// Drops every held sample (end of a bounded stream): they count as `too_far_ahead`.
    pub(crate) fn drop_held(&mut self) {
        self.stats.too_far_ahead += self.held.len() as u64;
        self.held.clear();
    }

    /// Samples held back as too far ahead, waiting for confirmation.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}
