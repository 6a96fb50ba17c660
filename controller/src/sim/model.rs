//! The contention model: how co-located pods' demands on shared resources (memory
//! bandwidth and LLC, CPU, PCIe) turn into the latency and CPI of online pods.
//!
//! The shape follows what measurements of co-location show: tail latency of a
//! latency-critical service stays flat at low utilisation of a shared resource and rises
//! steeply (convexly) as the resource saturates (Lo et al., "Heracles", ISCA 2015, Fig. 2:
//! memory bandwidth and LLC antagonists; queueing theory gives the same convex 1/(1-ρ)
//! form), and a victim's CPI rises with its antagonist's usage, which is what CPI2
//! correlates (Zhang et al., "CPI2", EuroSys 2013). The constants are chosen so a healthy
//! node sits around half its SLO and a memory-bandwidth or PCIe antagonist pushes it well
//! past. `docs/demo.md` gives the formulas.

/// Capacities of a node's shared resources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity {
    /// Cores.
    pub cores: f64,
    /// Memory bandwidth, bytes/s.
    pub mem_bw: f64,
    /// PCIe bandwidth, as a utilisation (1.0 = saturated); 0 for nodes without GPUs.
    pub pcie: f64,
}

/// What one pod demands in a tick.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Demand {
    /// Cores used.
    pub cpu: f64,
    /// Memory bandwidth, bytes/s.
    pub mem_bw: f64,
    /// PCIe utilisation contributed.
    pub pcie: f64,
    /// GPU utilisation (its own GPU).
    pub gpu: f64,
}

/// Utilisation of a node's shared resources.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    /// CPU utilisation (may exceed 1: oversubscribed).
    pub cpu: f64,
    /// Memory-bandwidth utilisation.
    pub mem_bw: f64,
    /// PCIe utilisation.
    pub pcie: f64,
}

/// Sums demands against capacity.
pub fn pressure(capacity: Capacity, demands: impl IntoIterator<Item = Demand>) -> Pressure {
    let (cpu, bw, pcie) = demands.into_iter().fold((0.0, 0.0, 0.0), |(c, b, p), d| {
        (c + d.cpu, b + d.mem_bw, p + d.pcie)
    });
    Pressure {
        cpu: cpu / capacity.cores,
        mem_bw: bw / capacity.mem_bw,
        pcie: if capacity.pcie > 0.0 {
            pcie / capacity.pcie
        } else {
            0.0
        },
    }
}

/// p99 latency (ms) of an online pod with base latency `base_ms` under `p`, with `noise`
/// in [0, 1) for measurement jitter. `pcie_sensitive` for inference services on GPU nodes.
pub fn online_p99_ms(base_ms: f64, p: Pressure, pcie_sensitive: bool, noise: f64) -> f64 {
    let bw = 1.0 + 4.0 * p.mem_bw.min(1.3).powi(3);
    let cpu = 1.0 + 0.6 * p.cpu.min(1.5).powi(2);
    let pcie = if pcie_sensitive {
        1.0 + 10.0 * (p.pcie - 0.5).max(0.0).powi(2)
    } else {
        1.0
    };
    base_ms * bw * cpu * pcie * (1.0 + 0.08 * noise)
}

/// Cycles per instruction of an online pod under `p` (LLC and memory-bandwidth contention).
pub fn online_cpi(p: Pressure, noise: f64) -> f64 {
    0.9 * (1.0 + 0.8 * p.mem_bw.min(1.3).powi(2)) * (1.0 + 0.04 * noise)
}

/// LLC miss rate of a pod streaming `mem_bw` bytes/s on a node under `p`.
pub fn llc_miss_rate(mem_bw: f64, p: Pressure) -> f64 {
    (0.05 + mem_bw / 4.0e10 + 0.3 * p.mem_bw.min(1.3)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_flat_when_idle_and_convex_near_saturation() {
        let at = |bw: f64| {
            online_p99_ms(
                60.0,
                Pressure {
                    cpu: 0.5,
                    mem_bw: bw,
                    pcie: 0.0,
                },
                false,
                0.0,
            )
        };
        assert!(at(0.2) < 90.0);
        assert!(at(0.5) < 125.0);
        let (a, b, c) = (at(0.6), at(0.8), at(1.0));
        assert!(c - b > b - a, "convex: {a} {b} {c}");
        assert!(at(0.95) > 250.0, "a saturated node violates a 250 ms SLO");
    }

    #[test]
    fn pcie_only_hurts_sensitive_pods_past_half_utilisation() {
        let p = Pressure {
            cpu: 0.3,
            mem_bw: 0.3,
            pcie: 1.2,
        };
        assert!(online_p99_ms(60.0, p, true, 0.0) > 200.0);
        assert_eq!(
            online_p99_ms(60.0, p, false, 0.0),
            online_p99_ms(60.0, Pressure { pcie: 0.0, ..p }, false, 0.0)
        );
        let calm = Pressure { pcie: 0.45, ..p };
        assert_eq!(
            online_p99_ms(60.0, calm, true, 0.0),
            online_p99_ms(60.0, calm, false, 0.0)
        );
    }
}
