//! Metric names: the shared naming rule and the interner that turns names into dense ids.

use std::collections::HashMap;

/// Longest metric name accepted in samples and policies.
pub const MAX_METRIC_NAME_LEN: usize = 128;

/// The metric names the event schema documents. Others are allowed and usable in policies.
pub const DOCUMENTED_METRICS: &[&str] = &[
    "cpu_usage_cores",
    "cpu_util",
    "cpu_throttled_ratio",
    "cpi",
    "mem_bw_bytes_per_sec",
    "mem_bw_util",
    "llc_miss_rate",
    "llc_occupancy_bytes",
    "mem_usage_bytes",
    "psi_cpu_some",
    "psi_mem_some",
    "psi_io_some",
    "disk_io_util",
    "net_rx_bytes_per_sec",
    "net_tx_bytes_per_sec",
    "latency_p99_ms",
    "qps",
    "error_rate",
    "gpu_util",
    "gpu_mem_bw_util",
    "pcie_bw_util",
];

/// True when `name` matches `[a-z][a-z0-9_]*` and is at most [`MAX_METRIC_NAME_LEN`] bytes.
#[inline]
pub fn is_valid_metric_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_lowercase() => {}
        _ => return false,
    }
    bytes.len() <= MAX_METRIC_NAME_LEN
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// A dense id for a metric name that some policy references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(u16);

impl MetricId {
    /// The id as an index into per-metric arrays.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Interns metric names into [`MetricId`]s so the engine keys its state by small integers.
///
/// Only metrics that policies reference are interned; a sample's other metrics are
/// skipped with a single hash lookup and never stored.
#[derive(Clone, Debug, Default)]
pub struct MetricRegistry {
    names: Vec<String>,
    /// A fast fixed-seed hash, not SipHash: every sample's metric names are looked up.
    ids: HashMap<String, MetricId, foldhash::fast::FixedState>,
}

impl MetricRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the id for `name`, assigning the next one if it is new.
    ///
    /// # Panics
    /// If more than 65 536 distinct metrics are interned; policies are limited far below that.
    pub fn intern(&mut self, name: &str) -> MetricId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = MetricId(u16::try_from(self.names.len()).expect("fewer than 65536 metrics"));
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The id of `name`, if some policy references it.
    #[inline]
    pub fn get(&self, name: &str) -> Option<MetricId> {
        self.ids.get(name).copied()
    }

    /// The name behind an id.
    pub fn name(&self, id: MetricId) -> &str {
        &self.names[id.index()]
    }

    /// How many metrics are interned.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no metric is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_name_rule() {
        for good in DOCUMENTED_METRICS
            .iter()
            .copied()
            .chain(["a", "x1_", "p99"])
        {
            assert!(is_valid_metric_name(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "Cpi",
            "cpi-x",
            "cpi.x",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn interning_is_stable_and_dense() {
        let mut reg = MetricRegistry::new();
        let a = reg.intern("cpi");
        let b = reg.intern("qps");
        assert_eq!(reg.intern("cpi"), a);
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(reg.get("qps"), Some(b));
        assert_eq!(reg.get("nope"), None);
        assert_eq!(reg.name(b), "qps");
        assert_eq!(reg.len(), 2);
    }
}
