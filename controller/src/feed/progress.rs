//! Per-partition progress: which offsets are safe to commit (their samples are applied to
//! engine state) and the event-time watermark across partitions.
//!
//! A message's offset is committed only once the watermark has passed its newest sample,
//! i.e. once every sample in it has left the reorder buffer and changed engine state.
//! The watermark is the minimum over active partitions of their newest event time minus
//! the lateness bound, so one partition lagging behind holds it back instead of having its
//! samples dropped as late. Partitions that are idle (no message for a while) or at their
//! end (bounded replay) do not hold it back.
//!
//! With the OTLP and Prometheus inputs a message's values can wait in the group window
//! (`crate::inputs::assemble`) and reach the engine with a later message or a timer: such
//! a message is [waiting](Progress::wait) until every sample holding its values has been
//! [settled](Progress::settle), and its offset is not committed before.

use std::collections::{BTreeMap, VecDeque};

/// A consumed message not yet committable.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: i64,
    /// The newest sample time the engine queued from it (None: none yet).
    newest: Option<i64>,
    /// Samples holding its values that have not reached the engine yet.
    waiting: u32,
}

#[derive(Clone, Debug, Default)]
struct Partition {
    /// Consumed messages in offset order.
    pending: VecDeque<Entry>,
    max_ts: Option<i64>,
    last_seen_ms: i64,
    at_end: bool,
    /// At least one message arrived (with or without usable samples).
    delivered: bool,
    /// The offset after the last message observed.
    next: Option<i64>,
}

/// Progress of the partitions a consumer reads.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    partitions: BTreeMap<i32, Partition>,
    /// How far (event time) the slowest active partition may hold the watermark behind
    /// the fastest; `None`: without bound (bounded replays, for determinism).
    max_skew_ms: Option<u64>,
    /// The skew seen by the last watermark computation (ms).
    last_skew_ms: i64,
}

/// The skew bound that keeps the engine's buffer bounded: `max_skew_ms` while the engine
/// holds at most `max_buffered` samples, 0 beyond (the watermark then follows the fastest
/// partition, the buffer drains, and a lagging partition's older samples are late).
pub fn skew_bound(buffered: usize, max_buffered: usize, max_skew_ms: u64) -> u64 {
    if buffered > max_buffered {
        0
    } else {
        max_skew_ms
    }
}

impl Progress {
    /// Records a consumed message. `newest_ts` is its newest sample time (None when it held
    /// no usable sample); `now_ms` is the wall clock, for idleness.
    pub fn observe(&mut self, partition: i32, offset: i64, newest_ts: Option<i64>, now_ms: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.pending.push_back(Entry {
            offset,
            newest: newest_ts,
            waiting: 0,
        });
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        if let Some(ts) = newest_ts {
            p.max_ts = Some(p.max_ts.map_or(ts, |m| m.max(ts)));
        }
        p.last_seen_ms = now_ms;
        p.at_end = false;
        p.delivered = true;
    }

    /// Holds commits of `partition` before `offset` (recorded by [`Progress::observe`]):
    /// a message whose dead letter could not be stored must be read again after a restart.
    pub fn hold(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition)
            && let Some(entry) = p.pending.iter_mut().find(|e| e.offset == offset)
        {
            entry.newest = Some(i64::MAX);
        }
    }

    /// Marks a message (recorded by [`Progress::observe`]) as having values in `samples`
    /// samples not yet offered to the engine: its offset (and every later one of its
    /// partition) is not committable until each of them is [settled](Progress::settle).
    pub fn wait(&mut self, partition: i32, offset: i64, samples: usize) {
        if let Some(entry) = self.entry(partition, offset) {
            let samples = u32::try_from(samples).unwrap_or(u32::MAX);
            entry.waiting = entry.waiting.saturating_add(samples);
        }
    }

    /// One sample holding values of the message at `offset` was offered to the engine:
    /// `queued_ts` is its time if the engine queued it. The message then waits for the
    /// watermark to pass that time too. Unknown messages (a revoked partition, or one
    /// committed already) are ignored.
    pub fn settle(&mut self, partition: i32, offset: i64, queued_ts: Option<i64>) {
        let Some(entry) = self.entry(partition, offset) else {
            return;
        };
        entry.waiting = entry.waiting.saturating_sub(1);
        if let Some(ts) = queued_ts {
            entry.newest = Some(entry.newest.map_or(ts, |n| n.max(ts)));
            if let Some(p) = self.partitions.get_mut(&partition) {
                p.max_ts = Some(p.max_ts.map_or(ts, |m| m.max(ts)));
            }
        }
    }

    fn entry(&mut self, partition: i32, offset: i64) -> Option<&mut Entry> {
        let p = self.partitions.get_mut(&partition)?;
        // Entries are in offset order: a binary search finds the message.
        let i = p.pending.binary_search_by_key(&offset, |e| e.offset).ok()?;
        p.pending.get_mut(i)
    }

    /// Registers a partition expected to deliver: until it does (or goes idle), it holds
    /// the watermark back, so its first samples are not late.
    pub fn expect(&mut self, partition: i32, now_ms: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.last_seen_ms = now_ms;
        p.at_end = false;
    }

    /// Marks a partition as read to its end (it no longer holds the watermark back).
    pub fn reached_end(&mut self, partition: i32) {
        self.partitions.entry(partition).or_default().at_end = true;
    }

    /// Bounds how far the slowest active partition may hold the watermark behind the
    /// fastest: its samples older than that are late instead of holding every node back.
    pub fn set_max_skew(&mut self, max_skew_ms: Option<u64>) {
        self.max_skew_ms = max_skew_ms;
    }

    /// The event-time skew between the fastest and the slowest active partition at the
    /// last watermark computation (ms), for metrics.
    pub fn skew_ms(&self) -> i64 {
        self.last_skew_ms
    }

    /// Forgets a revoked partition.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The watermark: min over partitions that are neither idle nor at their end of (newest
    /// event time - lateness). When every partition is idle or at its end, the max over all.
    ///
    /// With `wall_clock_advance`, event time is assumed to keep pace with the wall clock
    /// while a partition is quiet: its newest time counts as `max_ts + min(quiet time,
    /// lateness)`. A live feed whose producers pause therefore still applies (and commits)
    /// its last samples once `lateness` has passed; a bounded replay does not use it.
    pub fn watermark(
        &mut self,
        lateness_ms: u64,
        now_ms: i64,
        idle_after_ms: u64,
        wall_clock_advance: bool,
    ) -> Option<i64> {
        let lateness = lateness_ms as i64;
        let effective = |p: &Partition| {
            p.max_ts.map(|ts| {
                if wall_clock_advance {
                    ts + (now_ms - p.last_seen_ms).clamp(0, lateness)
                } else {
                    ts
                }
            })
        };
        let mut active = self
            .partitions
            .values()
            .filter(|p| !p.at_end && now_ms - p.last_seen_ms <= idle_after_ms as i64)
            .peekable();
        if active.peek().is_none() {
            return self
                .partitions
                .values()
                .filter_map(effective)
                .max()
                .map(|ts| ts - lateness);
        }
        // An active partition that has not delivered yet holds everything back; one that
        // delivers only messages without usable samples does not.
        let (mut min, mut max): (Option<i64>, Option<i64>) = (None, None);
        for p in active {
            match effective(p) {
                Some(ts) => {
                    min = Some(min.map_or(ts, |m| m.min(ts)));
                    max = Some(max.map_or(ts, |m| m.max(ts)));
                }
                None if !p.delivered => return None,
                None => {}
            }
        }
        let (min, max) = (min?, max?);
        self.last_skew_ms = max - min;
        let floor = self
            .max_skew_ms
            .map_or(i64::MIN, |s| max.saturating_sub(s as i64));
        Some(min.max(floor) - lateness)
    }

    /// Offsets that became safe to commit now that `watermark` is reached: for each
    /// partition, the next offset after the longest prefix of messages whose samples have
    /// all reached the engine and are all at or before the watermark.
    pub fn committable(&mut self, watermark: i64) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.partitions {
            let mut next = None;
            while let Some(&entry) = p.pending.front() {
                if entry.waiting > 0 || entry.newest.is_some_and(|ts| ts > watermark) {
                    break;
                }
                p.pending.pop_front();
                next = Some(entry.offset + 1);
            }
            if let Some(next) = next {
                out.push((partition, next));
            }
        }
        out
    }

    /// The first offset of `partition` not yet applied: the oldest message consumed but
    /// not committable yet, or the one after the last observed (None: nothing observed).
    pub fn next_unapplied(&self, partition: i32) -> Option<i64> {
        let p = self.partitions.get(&partition)?;
        p.pending.front().map(|e| e.offset).or(p.next)
    }

    /// Messages consumed but not yet committable.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_commit_only_after_the_watermark_passes_their_samples() {
        let mut p = Progress::default();
        p.observe(0, 10, Some(1_000), 0);
        p.observe(0, 11, None, 0); // a dead letter: nothing to wait for, but ordered
        p.observe(0, 12, Some(5_000), 0);
        p.observe(1, 3, Some(2_000), 0);
        assert_eq!(p.committable(999), vec![]);
        assert_eq!(p.committable(1_000), vec![(0, 12)]);
        assert_eq!(p.committable(4_999), vec![(1, 4)]);
        assert_eq!(p.committable(5_000), vec![(0, 13)]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_message_whose_values_wait_in_a_group_is_not_committed_before_they_are_applied() {
        let mut p = Progress::default();
        p.observe(0, 10, Some(1_000), 0);
        // Message 11 put values into two samples still waiting in the group window.
        p.observe(0, 11, None, 0);
        p.wait(0, 11, 2);
        p.observe(0, 12, Some(2_000), 0);
        assert_eq!(
            p.committable(10_000),
            vec![(0, 11)],
            "11 waits, and 12 behind it"
        );
        // One sample reaches the engine at 3 s; the other is still waiting.
        p.settle(0, 11, Some(3_000));
        assert_eq!(p.committable(10_000), vec![]);
        // The other was dropped by the engine (late or duplicate): nothing more to wait
        // for but the watermark passing the queued one.
        p.settle(0, 11, None);
        assert_eq!(p.committable(2_999), vec![]);
        assert_eq!(p.committable(3_000), vec![(0, 13)]);
        // Settling a message no longer pending (or of a revoked partition) is ignored.
        p.settle(0, 11, Some(9_000));
        p.settle(5, 1, Some(9_000));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_held_message_stops_commits_of_its_partition_only() {
        let mut p = Progress::default();
        p.observe(0, 10, Some(1_000), 0);
        p.observe(0, 11, None, 0); // its dead letter could not be stored
        p.hold(0, 11);
        p.observe(0, 12, Some(2_000), 0);
        p.observe(1, 5, Some(2_000), 0);
        assert_eq!(p.committable(10_000), vec![(0, 11), (1, 6)]);
        assert_eq!(p.committable(20_000), vec![]);
        assert_eq!(p.pending(), 2);
        // The watermark is not moved by the hold.
        assert_eq!(p.watermark(0, 0, 10_000, false), Some(2_000));
    }

    #[test]
    fn a_lagging_partition_holds_the_others_back_only_up_to_the_skew_bound() {
        let mut p = Progress::default();
        p.observe(0, 1, Some(1_000_000), 0);
        p.observe(1, 1, Some(100_000), 0);
        assert_eq!(p.watermark(15_000, 0, 10_000, false), Some(85_000));
        assert_eq!(p.skew_ms(), 900_000);
        p.set_max_skew(Some(300_000));
        assert_eq!(p.watermark(15_000, 0, 10_000, false), Some(685_000));
        // Within the bound, the slowest partition still holds the watermark.
        p.observe(1, 2, Some(900_000), 0);
        assert_eq!(p.watermark(15_000, 0, 10_000, false), Some(885_000));
        assert_eq!(p.skew_ms(), 100_000);
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let mut p = Progress::default();
        p.observe(0, 1, Some(100_000), 0);
        p.observe(1, 1, Some(40_000), 0);
        assert_eq!(p.watermark(15_000, 1_000, 10_000, false), Some(25_000));
        // Partition 1 goes idle: it no longer holds the others back.
        p.observe(0, 2, Some(110_000), 20_000);
        assert_eq!(p.watermark(15_000, 20_000, 10_000, false), Some(95_000));
        // At the end of a bounded read, the newest time counts.
        p.reached_end(0);
        p.reached_end(1);
        assert_eq!(p.watermark(15_000, 20_000, 10_000, false), Some(95_000));
        p.revoke(0);
        assert_eq!(p.watermark(15_000, 20_000, 10_000, false), Some(25_000));
        assert_eq!(Progress::default().watermark(1, 0, 1, false), None);
    }

    #[test]
    fn a_quiet_live_feed_releases_its_last_samples_after_the_lateness() {
        let mut p = Progress::default();
        p.observe(0, 1, Some(100_000), 0);
        assert_eq!(p.watermark(15_000, 0, 10_000, true), Some(85_000));
        assert_eq!(p.watermark(15_000, 5_000, 10_000, true), Some(90_000));
        assert_eq!(p.watermark(15_000, 60_000, 10_000, true), Some(100_000));
        assert_eq!(p.committable(100_000), vec![(0, 2)]);
        // A bounded read never advances on the wall clock.
        assert_eq!(p.watermark(15_000, 60_000, 10_000, false), Some(85_000));
    }

    #[test]
    fn an_expected_partition_holds_the_watermark_until_it_delivers_or_idles() {
        let mut p = Progress::default();
        p.expect(0, 0);
        p.expect(1, 0);
        p.observe(0, 1, Some(100_000), 0);
        assert_eq!(p.watermark(15_000, 1_000, 10_000, false), None);
        p.observe(1, 1, Some(50_000), 2_000);
        assert_eq!(p.watermark(15_000, 2_000, 10_000, false), Some(35_000));
        // An expected partition that never delivers stops holding after idle_after.
        let mut q = Progress::default();
        q.expect(0, 0);
        q.expect(1, 0);
        q.observe(0, 1, Some(100_000), 11_000);
        assert_eq!(q.watermark(15_000, 11_000, 10_000, false), Some(85_000));
        // A partition that delivers only unusable messages does not hold it either.
        let mut r = Progress::default();
        r.observe(0, 1, Some(100_000), 0);
        r.observe(1, 1, None, 0);
        assert_eq!(r.watermark(15_000, 1_000, 10_000, false), Some(85_000));
    }
}
