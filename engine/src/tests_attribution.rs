//! Attribution under real-shaped data: independent neighbours never blamed (a measured
//! false-blame rate per episode), a real antagonist still found (the control), steady
//! hogs, co-movement, a victim's own level shift, unaligned cadences.
//!
//! The false-blame figure in `docs/benchmarks.md` comes from
//! `FULCRUM_ATTRIBUTION_CASES=10000 cargo test --release -p fulcrum-engine false_blame -- --nocapture`;
//! the default run uses fewer cases to keep CI fast.

use super::decision::{Event, Outcome};
use super::tests::{T0, node, pod, policy, sample, with_spec};
use super::{Engine, EngineConfig};

/// When the antagonist of the control starts (s).
const ONSET_S: f64 = 300.0;

/// splitmix64: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// How a process moves, on a 5 s internal clock.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Noise,
    Ar1,
    Walk,
    Periodic { period_s: f64, phase: f64 },
    Step { at_s: f64 },
}

impl Shape {
    fn random(rng: &mut Rng, span_s: f64) -> Self {
        match rng.next() % 5 {
            0 => Shape::Noise,
            1 => Shape::Ar1,
            2 => Shape::Walk,
            3 => Shape::Periodic {
                period_s: 60.0 + 540.0 * rng.unit(),
                phase: rng.unit() * std::f64::consts::TAU,
            },
            _ => Shape::Step {
                at_s: span_s * rng.unit(),
            },
        }
    }
}

/// A process in standard units (roughly mean 0, deviation 1).
struct Process {
    shape: Shape,
    state: f64,
}

impl Process {
    fn step(&mut self, rng: &mut Rng, t_s: f64) -> f64 {
        let e = rng.normal();
        self.state = match self.shape {
            Shape::Noise => e,
            Shape::Ar1 => 0.9 * self.state + 0.44 * e,
            Shape::Walk => self.state + 0.3 * e,
            Shape::Periodic { period_s, phase } => {
                (std::f64::consts::TAU * t_s / period_s + phase).sin() * 1.3 + 0.3 * e
            }
            Shape::Step { at_s } => f64::from(u8::from(t_s >= at_s)) * 3.0 + 0.3 * e,
        };
        self.state
    }
}

/// One stream's sampling: cadence, offset, jitter, gaps.
#[derive(Clone, Copy)]
struct Cadence {
    every_s: f64,
    offset_s: f64,
}

impl Cadence {
    fn random(rng: &mut Rng, cadences: &[f64]) -> Self {
        let every_s = rng.pick(cadences);
        Self {
            every_s,
            offset_s: rng.unit() * every_s,
        }
    }
    /// Sample instants (s) in `[0, span)`: jittered by up to a fifth of the cadence,
    /// 2% of samples lost, and sometimes a 3-minute gap.
    fn instants(&self, rng: &mut Rng, span_s: f64) -> Vec<f64> {
        let gap = (rng.unit() < 0.1).then(|| rng.unit() * span_s);
        let mut out = Vec::new();
        let mut k = 0.0;
        loop {
            let t = self.offset_s + k * self.every_s + (rng.unit() - 0.5) * self.every_s * 0.4;
            k += 1.0;
            if t >= span_s {
                return out;
            }
            let in_gap = gap.is_some_and(|g| t >= g && t < g + 180.0);
            if t >= 0.0 && !in_gap && rng.unit() >= 0.02 {
                out.push(t);
            }
        }
    }
}

/// The outcome of one simulated episode-long run on node n1.
struct RunResult {
    victim_every_s: f64,
    detections: u64,
    blamed_episodes: usize,
    /// How long the trigger had held when spark/a was acted on (ms).
    culprit_found_at: Option<i64>,
}

/// What drives the victim in a run.
#[derive(Clone, Copy, PartialEq)]
enum Drive {
    /// Its own process: every neighbour is independent of it.
    Own,
    /// `spark/a`'s memory bandwidth, from `ONSET_S` on.
    Antagonist,
    /// One cluster-wide load (noise, AR(1) or a periodic pattern) that the victim and
    /// every pod on both nodes follow, plus their own processes.
    CommonMode,
}

/// A run: victim `shop/web` and neighbours `spark/a`, `spark/b`, `ai/c` on n1, each with
/// its own cadence, and pods of the same classes on n2 (the placebo).
fn run_case(seed: u64, drive: Drive, span_s: f64, placebo_pods: usize) -> RunResult {
    let antagonist = drive == Drive::Antagonist;
    let mut rng = Rng(seed);
    let cadences: &[f64] = if antagonist {
        &[10.0, 15.0, 30.0]
    } else {
        &[10.0, 15.0, 30.0, 60.0]
    };
    let victim_shape = if antagonist {
        Shape::Noise
    } else {
        Shape::random(&mut rng, span_s)
    };
    let mut procs: Vec<Process> = (0..7)
        .map(|i| Process {
            shape: if i == 0 {
                victim_shape
            } else {
                Shape::random(&mut rng, span_s)
            },
            state: 0.0,
        })
        .collect();
    if antagonist {
        // Bursts: independent from one sample to the next, or persistent for a while.
        procs[1].shape = if rng.unit() < 0.5 {
            Shape::Noise
        } else {
            Shape::Ar1
        };
    }
    // Processes on a 5 s clock: 0 = victim's own, 1..=6 = (a, b, c) × (mem_bw, cpu).
    let ticks = (span_s / 5.0) as usize + 1;
    let mut paths = vec![Vec::with_capacity(ticks); procs.len()];
    for k in 0..ticks {
        for (i, p) in procs.iter_mut().enumerate() {
            paths[i].push(p.step(&mut rng, k as f64 * 5.0));
        }
    }
    let at = |i: usize, t_s: f64| paths[i][((t_s / 5.0) as usize).min(ticks - 1)];
    let streams = ["web", "a", "b", "c"];
    let mut events: Vec<(f64, usize)> = Vec::new();
    let mut victim_every_s = 0.0;
    for (s, _) in streams.iter().enumerate() {
        let c = Cadence::random(&mut rng, cadences);
        if s == 0 {
            victim_every_s = c.every_s;
        }
        events.extend(c.instants(&mut rng, span_s).into_iter().map(|t| (t, s)));
    }
    events.sort_by(|x, y| x.0.total_cmp(&y.0));
    let p = with_spec(policy(""), |s| {
        s.attribution.window = "5m".into();
        s.attribution.min_correlation = 0.3;
        s.limits.cooldown = "1h".into();
    });
    let mut engine = Engine::new(EngineConfig {
        stale_after_ms: 150_000,
        placebo_pods,
        ..EngineConfig::default()
    });
    engine.upsert_node(node("n1"));
    engine.upsert_node(node("n2"));
    for (ns, name, class) in [
        ("shop", "web", "online"),
        ("spark", "a", "batch"),
        ("spark", "b", "batch"),
        ("ai", "c", "ai"),
    ] {
        engine.upsert_pod(pod(ns, name, "n1", class));
    }
    engine.upsert_pod(pod("infra", "agent", "n2", "infra"));
    // Pods of the candidates' classes on n2, each with its own processes: the placebo
    // (they cannot be the cause).
    let placebo_pods = [
        ("spark", "p2", "batch"),
        ("spark", "p3", "batch"),
        ("spark", "p4", "batch"),
        ("ai", "q2", "ai"),
        ("ai", "q3", "ai"),
    ];
    for (ns, name, class) in placebo_pods {
        engine.upsert_pod(pod(ns, name, "n2", class));
    }
    let common = common_path(seed, drive == Drive::CommonMode, ticks);
    let c = |t_s: f64| common[((t_s / 5.0) as usize).min(ticks - 1)];
    let mut placebo_rng = Rng(seed ^ 0x091A_C3B0);
    let mut placebo: Vec<Process> = (0..2 * placebo_pods.len())
        .map(|_| Process {
            shape: Shape::random(&mut placebo_rng, span_s),
            state: 0.0,
        })
        .collect();
    assert!(engine.set_policies(&[p]).is_empty());
    let mut out = Vec::new();
    let mut last_n2 = -1.0f64;
    for (t_s, s) in events {
        let ts = T0 + (t_s * 1000.0) as i64;
        if t_s - last_n2 >= 10.0 {
            engine.offer(&sample(ts, "n2", Some(("infra", "agent")), &[("cpu", 0.1)]));
            for (k, (ns, name, _)) in placebo_pods.iter().enumerate() {
                let bw = placebo[2 * k].step(&mut placebo_rng, t_s);
                let cpu = placebo[2 * k + 1].step(&mut placebo_rng, t_s);
                let usage = [
                    ("mem_bw", (4.0 + bw + 2.0 * c(t_s)).max(0.01)),
                    ("cpu", (3.0 + 0.8 * (cpu + 2.0 * c(t_s))).max(0.01)),
                ];
                engine.offer(&sample(ts, "n2", Some((ns, name)), &usage));
            }
            last_n2 = t_s;
        }
        let value = |i: usize, base: f64, scale: f64| {
            if antagonist && i == 1 {
                // Quiet until the onset at 5 minutes, then bursting.
                return if t_s < ONSET_S {
                    1.0 + 0.05 * at(0, t_s + 2.5)
                } else {
                    (4.0 + at(1, t_s)).max(0.5)
                };
            }
            (base + scale * (at(i, t_s) + 2.0 * c(t_s))).max(0.01)
        };
        let latency = if antagonist {
            if t_s < ONSET_S {
                60.0 + 5.0 * at(0, t_s)
            } else {
                180.0 + 40.0 * at(1, t_s) + 5.0 * at(0, t_s)
            }
        } else {
            match victim_shape {
                Shape::Step { .. } => 60.0 + 30.0 * at(0, t_s) + 40.0 * c(t_s),
                _ => 180.0 + 20.0 * at(0, t_s) + 40.0 * c(t_s),
            }
        };
        let pod_name = streams[s];
        let (ns, metrics) = match s {
            0 => ("shop", vec![("latency_p99_ms", latency)]),
            _ => (
                if s == 3 { "ai" } else { "spark" },
                vec![
                    ("mem_bw", value(2 * s - 1, 4.0, 1.0)),
                    ("cpu", value(2 * s, 3.0, 0.8)),
                ],
            ),
        };
        engine.offer(&sample(ts, "n1", Some((ns, pod_name)), &metrics));
        engine.advance_auto(&mut out);
    }
    engine.flush(&mut out);
    let mut blamed: Vec<u64> = Vec::new();
    let mut culprit_found_at = None;
    for e in &out {
        if let Event::Decision(d) = e {
            if !blamed.contains(&d.explanation.episode) {
                blamed.push(d.explanation.episode);
            }
            if d.target == "spark/a" && d.outcome == Outcome::Executed {
                culprit_found_at.get_or_insert(d.explanation.evidence.held_ms);
            }
        }
    }
    RunResult {
        victim_every_s,
        detections: engine.stats().detections,
        blamed_episodes: blamed.len(),
        culprit_found_at,
    }
}

/// The cluster-wide load on the 5 s clock (zero unless `on`), from its own generator so
/// that the other processes of a seed stay the same.
fn common_path(seed: u64, on: bool, ticks: usize) -> Vec<f64> {
    if !on {
        return vec![0.0; ticks];
    }
    let mut rng = Rng(seed ^ 0xC0AA_0000);
    let shape = match rng.next() % 3 {
        0 => Shape::Noise,
        1 => Shape::Ar1,
        _ => Shape::Periodic {
            period_s: 60.0 + 540.0 * rng.unit(),
            phase: rng.unit() * std::f64::consts::TAU,
        },
    };
    let mut p = Process { shape, state: 0.0 };
    (0..ticks)
        .map(|k| p.step(&mut rng, k as f64 * 5.0))
        .collect()
}

/// `FULCRUM_PLACEBO_PODS` (0 measures the same cases without the placebo), else the
/// default.
fn placebo_pods() -> usize {
    std::env::var("FULCRUM_PLACEBO_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EngineConfig::default().placebo_pods)
}

/// Cases to run: `FULCRUM_ATTRIBUTION_CASES`, else `PROPTEST_CASES`, else `default`.
fn cases(default: u64) -> u64 {
    ["FULCRUM_ATTRIBUTION_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(default)
}

#[test]
fn false_blame_rate_per_episode_with_independent_neighbours_is_below_one_percent() {
    let n = cases(100);
    let (mut episodes, mut blamed) = (0u64, 0u64);
    for seed in 0..n {
        let r = run_case(seed, Drive::Own, 1800.0, placebo_pods());
        episodes += r.detections;
        blamed += r.blamed_episodes as u64;
    }
    let rate = blamed as f64 / episodes.max(1) as f64;
    println!(
        "false blame: {blamed} of {episodes} episodes ({:.3}%) over {n} cases",
        rate * 100.0
    );
    assert!(episodes >= n, "every case has an episode: {episodes}");
    assert!(rate < 0.01, "{blamed} of {episodes}");
}

#[test]
fn the_control_a_real_antagonist_is_found_in_the_same_setting_and_in_time() {
    let n = cases(100).min(2000);
    let (mut found, mut in_time) = (0u64, 0u64);
    for seed in 0..n {
        let r = run_case(1_000_000 + seed, Drive::Antagonist, 900.0, placebo_pods());
        if let Some(held_ms) = r.culprit_found_at {
            found += 1;
            // sustainedFor (30 s) plus one sample period of the victim, plus jitter.
            let allowed_ms = 30_000.0 + r.victim_every_s * 1000.0 * 1.2;
            if (held_ms as f64) <= allowed_ms {
                in_time += 1;
            }
        }
    }
    println!(
        "antagonist found in {found} of {n} cases, {in_time} within sustainedFor + one period"
    );
    // Measured at 10 000 cases: see docs/benchmarks.md. The misses inspected were antagonists whose
    // bursts dip below the trigger and restart its run (no onset left to compare).
    assert!(found * 100 >= n * 90, "found in {found} of {n}");
    assert!(in_time * 100 >= n * 80, "in time in {in_time} of {n}");
}

/// Blamed episodes and episodes over `n` cases where every pod follows one cluster-wide load.
fn common_mode_blame(n: u64, placebo_pods: usize) -> (u64, u64) {
    let (mut episodes, mut blamed) = (0u64, 0u64);
    for seed in 0..n {
        let r = run_case(2_000_000 + seed, Drive::CommonMode, 1800.0, placebo_pods);
        episodes += r.detections;
        blamed += r.blamed_episodes as u64;
    }
    (blamed, episodes)
}

#[test]
fn a_cluster_wide_load_is_rarely_blamed_on_a_neighbour() {
    let n = cases(100);
    let (blamed, episodes) = common_mode_blame(n, placebo_pods());
    // Control: the same cases without the placebo.
    let m = n.min(2000);
    let (without, of) = common_mode_blame(m, 0);
    println!(
        "common mode: {blamed} of {episodes} episodes blamed over {n} cases; without the placebo {without} of {of} over {m}"
    );
    assert!(episodes >= n, "every case has an episode: {episodes}");
    let rate = blamed as f64 / episodes.max(1) as f64;
    let rate_without = without as f64 / of.max(1) as f64;
    // Measured: about a third of the rate without the placebo (docs/benchmarks.md).
    assert!(rate < 0.15, "{blamed} of {episodes}");
    assert!(
        rate * 2.0 < rate_without,
        "{rate} vs {rate_without} without"
    );
}
