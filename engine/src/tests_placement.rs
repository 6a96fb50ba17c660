//! Placement that holds and budgets that are spent once: PreferNoSchedule and steering
//! taints, nodes that never reported, Migrates decided in the same advance, ping-pong, one
//! PodDisruptionBudget for two culprits; and a victim's own level shift.

use fulcrum_policies::spec::Action;

use super::cluster::{NodeInfo, PdbInfo, Resources, Taint};
use super::decision::{Decision, Event, Outcome};
use super::tests::{S, T0, labels, node, noise, pod, policy, sample, with_spec};
use super::{Engine, EngineConfig};

/// A pod reporting the same values every tick: node, (namespace, name), metrics.
type Steady = (String, (String, String), Vec<(&'static str, f64)>);

/// A cluster: `hogs` nodes `h0..` each with victim `shop/web-i` and antagonist
/// `spark/hog-i` (plus a busy decoy), and destination nodes that report through agents.
struct Cluster {
    engine: Engine,
    events: Vec<Event>,
    hogs: usize,
    destinations: Vec<String>,
    /// Destinations whose agent uses memory bandwidth (4 units) and whose node reports
    /// `mem_bw_util` (the value given).
    loaded: Vec<(String, f64)>,
    /// Pods on destinations reporting the same values every tick: (node, pod, metrics).
    steady: Vec<Steady>,
}

impl Cluster {
    fn new(hogs: usize, destinations: &[NodeInfo]) -> Self {
        Self::with_policy(hogs, destinations, policy(""))
    }

    fn with_policy(
        hogs: usize,
        destinations: &[NodeInfo],
        policy: fulcrum_policies::InterferencePolicy,
    ) -> Self {
        let mut engine = Engine::new(EngineConfig::default());
        for i in 0..hogs {
            let n = format!("h{i}");
            engine.upsert_node(node(&n));
            engine.upsert_pod(pod("shop", &format!("web-{i}"), &n, "online"));
            engine.upsert_pod(pod("spark", &format!("hog-{i}"), &n, "batch"));
            engine.upsert_pod(pod("spark", &format!("busy-{i}"), &n, "batch"));
        }
        for d in destinations {
            engine.upsert_node(d.clone());
            engine.upsert_pod(pod("infra", &format!("agent-{}", d.name), &d.name, "infra"));
        }
        let invalid = engine.set_policies(&[policy]);
        assert!(invalid.is_empty(), "{invalid:?}");
        Self {
            engine,
            events: Vec::new(),
            hogs,
            destinations: destinations.iter().map(|d| d.name.clone()).collect(),
            loaded: Vec::new(),
            steady: Vec::new(),
        }
    }

    /// Quiet for 20 ticks, then every hog bursts and its victim follows it.
    fn run(&mut self, silent: &[&str]) {
        for i in 0..50i64 {
            let ts = T0 + i * 10 * S;
            for h in 0..self.hogs {
                let hog = if i < 20 {
                    1.0
                } else {
                    4.0 + ((i + h as i64) % 6) as f64
                };
                let n = format!("h{h}");
                let (web, hg, busy) = (format!("web-{h}"), format!("hog-{h}"), format!("busy-{h}"));
                let wobble = noise((i * 7 + h as i64) as u64);
                for (name, metrics) in [
                    (web.as_str(), vec![("latency_p99_ms", 40.0 + 30.0 * hog)]),
                    (hg.as_str(), vec![("mem_bw", hog), ("cpu", 1.0 + hog / 4.0)]),
                    (
                        busy.as_str(),
                        vec![("mem_bw", 2.0 + wobble), ("cpu", 6.0 + wobble)],
                    ),
                ] {
                    let ns = if name.starts_with("web") {
                        "shop"
                    } else {
                        "spark"
                    };
                    self.engine
                        .offer(&sample(ts, &n, Some((ns, name)), &metrics));
                }
            }
            for d in &self.destinations {
                if silent.contains(&d.as_str()) {
                    continue;
                }
                let agent = format!("agent-{d}");
                let load = self.loaded.iter().find(|(n, _)| n == d).map(|(_, u)| *u);
                let usage = match load {
                    Some(_) => vec![("cpu", 0.1), ("mem_bw", 4.0)],
                    None => vec![("cpu", 0.1)],
                };
                self.engine
                    .offer(&sample(ts, d, Some(("infra", &agent)), &usage));
                if let Some(util) = load {
                    self.engine
                        .offer(&sample(ts, d, None, &[("mem_bw_util", util)]));
                }
            }
            for (n, (ns, name), metrics) in &self.steady {
                self.engine.offer(&sample(ts, n, Some((ns, name)), metrics));
            }
            self.engine.advance_auto(&mut self.events);
        }
        self.engine.flush(&mut self.events);
    }

    fn decisions(&self) -> Vec<&Decision> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Decision(d) => Some(d.as_ref()),
                _ => None,
            })
            .collect()
    }

    fn executed(&self) -> Vec<&Decision> {
        self.decisions()
            .into_iter()
            .filter(|d| d.outcome == Outcome::Executed)
            .collect()
    }
}

fn sized(name: &str, cpu_millis: i64) -> NodeInfo {
    NodeInfo {
        allocatable: Resources {
            cpu_millis,
            memory_bytes: 64 << 30,
            gpus: 0,
        },
        ..node(name)
    }
}

fn tainted(mut n: NodeInfo, key: &str, effect: &str) -> NodeInfo {
    n.taints.push(Taint {
        key: key.into(),
        value: "protect".into(),
        effect: effect.into(),
    });
    n
}

#[test]
fn prefer_no_schedule_and_the_steering_taint_are_avoided() {
    // d-big has the most headroom; d-small is the one left when d-big is steered away.
    let plain = [sized("d-big", 32_000), sized("d-small", 8_000)];
    let mut c = Cluster::new(1, &plain);
    c.run(&[]);
    assert_eq!(
        c.executed()[0].destination.as_deref(),
        Some("d-big"),
        "control"
    );
    for key in ["fulcrum.dev/steer-away", "example.com/maintenance"] {
        let steered = [
            tainted(sized("d-big", 32_000), key, "PreferNoSchedule"),
            sized("d-small", 8_000),
        ];
        let mut c = Cluster::new(1, &steered);
        c.run(&[]);
        assert_eq!(
            c.executed()[0].destination.as_deref(),
            Some("d-small"),
            "{key}"
        );
    }
}

#[test]
fn a_node_that_has_never_reported_is_never_a_destination() {
    let nodes = [sized("d-big", 32_000), sized("d-small", 8_000)];
    let mut c = Cluster::new(1, &nodes);
    c.run(&["d-big"]);
    assert_eq!(c.executed()[0].destination.as_deref(), Some("d-small"));
    // With no reporting node left, the Migrate is Blocked and says why.
    let mut c = Cluster::new(1, &[sized("d-big", 32_000)]);
    c.run(&["d-big"]);
    let d = c.decisions();
    assert_eq!(d[0].outcome, Outcome::Blocked, "{d:#?}");
    assert!(
        d[0].reason.contains("1 have never reported samples"),
        "{}",
        d[0].reason
    );
}

#[test]
fn migrates_of_the_same_advance_count_against_their_destination() {
    // d-one has room for one more 1-CPU pod (2 of 3 CPUs are taken by its agent and
    // headroom); both hogs fire in the same evaluation round.
    let nodes = [sized("d-one", 2_500), sized("d-many", 32_000)];
    let mut c = Cluster::new(2, &nodes);
    // d-one ranks first by headroom fraction only if d-many is fuller: fill d-many.
    for k in 0..28 {
        c.engine
            .upsert_pod(pod("fill", &format!("f{k}"), "d-many", "infra"));
    }
    c.run(&[]);
    let executed = c.executed();
    assert_eq!(executed.len(), 2, "{:#?}", c.decisions());
    assert!(
        executed[1].at - executed[0].at < 300_000,
        "same advance window"
    );
    let destinations: Vec<_> = executed.iter().map(|d| d.destination.as_deref()).collect();
    assert_eq!(
        destinations,
        [Some("d-one"), Some("d-many")],
        "{executed:#?}"
    );
}

/// A hog migrated once whose replacement interferes again on its new node: the decisions
/// on the replacement. `evict_on_ping_pong` sets the policy's `eviction.evictOnPingPong`.
fn ping_pong(evict_on_ping_pong: bool) -> Vec<Decision> {
    let p = with_spec(policy(""), |s| {
        s.eviction.evict_on_ping_pong = evict_on_ping_pong;
    });
    let mut c = Cluster::with_policy(1, &[sized("d-big", 32_000)], p);
    c.run(&[]);
    assert_eq!(c.executed().len(), 1);
    // The replacement of spark/hog-0 (same workload) lands next to another victim on
    // d-big and interferes there: the hog data of h0 now comes from d-big.
    c.engine.remove_pod("spark", "hog-0");
    let mut replacement = pod("spark", "hog-0-r", "d-big", "batch");
    replacement.workload = pod("spark", "hog-0", "h0", "batch").workload;
    c.engine.upsert_pod(replacement);
    c.engine.upsert_pod(pod("shop", "web-b", "d-big", "online"));
    c.engine.upsert_node(sized("d-other", 32_000));
    c.engine
        .upsert_pod(pod("infra", "agent-d-other", "d-other", "infra"));
    for i in 50..110i64 {
        let ts = T0 + i * 10 * S;
        let hog = if i < 70 { 1.0 } else { 4.0 + (i % 6) as f64 };
        for (node, ns, name, metrics) in [
            (
                "d-big",
                "shop",
                "web-b",
                vec![("latency_p99_ms", 40.0 + 30.0 * hog)],
            ),
            (
                "d-big",
                "spark",
                "hog-0-r",
                vec![("mem_bw", hog), ("cpu", 1.0)],
            ),
            ("d-big", "infra", "agent-d-big", vec![("cpu", 0.1)]),
            ("d-other", "infra", "agent-d-other", vec![("cpu", 0.1)]),
        ] {
            c.engine
                .offer(&sample(ts, node, Some((ns, name)), &metrics));
        }
        c.engine.advance_auto(&mut c.events);
    }
    c.engine.flush(&mut c.events);
    c.decisions()
        .into_iter()
        .filter(|d| d.target == "spark/hog-0-r")
        .cloned()
        .collect()
}

#[test]
fn a_migrated_workload_that_interferes_again_is_not_migrated_twice() {
    let again = ping_pong(false);
    assert!(!again.is_empty());
    assert!(
        again.iter().all(|d| d.outcome == Outcome::Blocked),
        "{again:#?}"
    );
    assert!(
        again
            .iter()
            .any(|d| d.reason.contains("not migrated twice")),
        "{again:#?}"
    );
    assert_eq!(again[0].action, Action::Migrate);
}

#[test]
fn a_ping_pong_is_evicted_when_the_policy_allows_it() {
    let again = ping_pong(true);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0].outcome, Outcome::Executed);
    assert_eq!(again[0].action, Action::Evict);
    assert_eq!(again[0].destination, None);
    assert!(
        again[0].reason.contains("evicted, not migrated"),
        "{}",
        again[0].reason
    );
}

#[test]
fn one_disruption_budget_is_not_spent_twice_before_the_cluster_view_catches_up() {
    let nodes = [sized("d-big", 64_000)];
    let pdb = |allowed| PdbInfo {
        namespace: "spark".into(),
        name: "hogs".into(),
        selector: fulcrum_policies::LabelMatcher::compile(
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(labels(&[("class", "batch")])),
                match_expressions: None,
            },
            "selector",
            &mut Default::default(),
        ),
        disruptions_allowed: Some(allowed),
    };
    let mut c = Cluster::new(2, &nodes);
    c.engine.upsert_pdb(pdb(1));
    c.run(&[]);
    assert_eq!(c.executed().len(), 1, "{:#?}", c.decisions());
    assert!(
        c.decisions().iter().any(|d| d.outcome == Outcome::Blocked
            && d.reason.contains("PodDisruptionBudget spark/hogs")),
        "{:#?}",
        c.decisions()
    );
    // Control: a budget of two lets both go.
    let mut c = Cluster::new(2, &nodes);
    c.engine.upsert_pdb(pdb(2));
    c.run(&[]);
    assert_eq!(c.executed().len(), 2, "{:#?}", c.decisions());
}

#[test]
fn extended_resources_must_fit_on_the_destination() {
    let mut gpu_node = sized("d-gpu", 8_000);
    gpu_node.allocatable.gpus = 4;
    let mut c = Cluster::new(1, &[sized("d-cpu", 32_000), gpu_node]);
    let mut hog = pod("spark", "hog-0", "h0", "batch");
    hog.requests.gpus = 1;
    c.engine.upsert_pod(hog);
    c.run(&[]);
    assert_eq!(c.executed()[0].destination.as_deref(), Some("d-gpu"));
    // Control: without the GPU request the roomier CPU node wins.
    let mut c = Cluster::new(1, &[sized("d-cpu", 32_000), sized("d-gpu", 8_000)]);
    c.run(&[]);
    assert_eq!(c.executed()[0].destination.as_deref(), Some("d-cpu"));
}

/// Adds a node-scope trigger to `s`: the node's `mem_bw_util` above 0.9.
pub(super) fn add_membw_trigger(s: &mut fulcrum_policies::InterferencePolicySpec) {
    let mut t = s.triggers[0].clone();
    t.name = "membw".into();
    t.scope = fulcrum_policies::spec::TriggerScope::Node;
    t.metric = "mem_bw_util".into();
    t.above = Some(0.9);
    s.triggers.push(t);
}

/// Destinations at the given memory-bandwidth utilisations; with `trigger`, the policy
/// also fires when a node's `mem_bw_util` is above 0.9.
fn headroom(nodes: &[(NodeInfo, f64)], trigger: bool) -> Vec<Decision> {
    let p = with_spec(policy(""), |s| {
        if trigger {
            add_membw_trigger(s);
        }
    });
    let infos: Vec<NodeInfo> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let mut c = Cluster::with_policy(1, &infos, p);
    c.loaded = nodes.iter().map(|(n, u)| (n.name.clone(), *u)).collect();
    c.run(&[]);
    c.decisions().into_iter().cloned().collect()
}

#[test]
fn a_hog_is_never_migrated_where_its_usage_would_cross_a_trigger() {
    // d-big has the most CPU headroom but runs at 0.6 of its memory bandwidth: the hog's
    // bandwidth would take it past 0.9. d-small, at 0.2, takes it.
    let nodes = [
        (sized("d-big", 32_000), 0.6),
        (sized("d-small", 8_000), 0.2),
    ];
    let d = headroom(&nodes, true);
    assert_eq!(d[0].outcome, Outcome::Executed, "{d:#?}");
    assert_eq!(d[0].destination.as_deref(), Some("d-small"));
    // Control: without a trigger on memory bandwidth, d-big is the destination.
    let c = headroom(&nodes, false);
    assert_eq!(c[0].destination.as_deref(), Some("d-big"), "{c:#?}");
    // With no node left that keeps its headroom, the Migrate is Blocked and says why.
    let d = headroom(&nodes[..1], true);
    assert_eq!(d[0].outcome, Outcome::Blocked, "{d:#?}");
    assert!(
        d[0].reason.contains(
            "1 would cross a trigger with the pod's usage (d-big: mem_bw_util would reach"
        ),
        "{}",
        d[0].reason
    );
}

/// d-big (most CPU headroom) hosts `shop/calm` (labelled `class`) that reports a calm
/// latency and `bw` of memory bandwidth; `second` adds a policy protecting `class:
/// fragile` that attributes on `net_rx` only.
fn tolerated(nodes: &[NodeInfo], class: &str, second: bool, bw: f64) -> Vec<Decision> {
    let mut c = Cluster::new(1, nodes);
    c.engine.upsert_pod(pod("shop", "calm", "d-big", class));
    if second {
        let mut quiet = with_spec(policy(""), |s| {
            s.victims.pod_selector.match_labels = Some([("class".into(), "fragile".into())].into());
            s.attribution.metrics = vec!["net_rx".into()];
        });
        quiet.metadata.name = Some("quiet".into());
        let invalid = c.engine.set_policies(&[policy(""), quiet]);
        assert!(invalid.is_empty(), "{invalid:?}");
    }
    let metrics = vec![("mem_bw", bw), ("cpu", 0.2), ("latency_p99_ms", 40.0)];
    c.steady = vec![("d-big".into(), ("shop".into(), "calm".into()), metrics)];
    c.run(&[]);
    c.decisions().into_iter().cloned().collect()
}

#[test]
fn a_hog_is_never_migrated_where_its_victims_would_reach_the_level_that_hurt_them() {
    let nodes = [sized("d-big", 32_000), sized("d-small", 8_000)];
    // On h0 the hog ran next to a decoy using ~2 of memory bandwidth. d-big's online
    // victim runs next to 3: with the hog's added, d-big would reach more than h0 carried
    // when web-0 crossed its trigger. d-small takes it.
    let d = tolerated(&nodes, "online", false, 3.0);
    assert_eq!(d[0].outcome, Outcome::Executed, "{d:#?}");
    assert_eq!(d[0].destination.as_deref(), Some("d-small"));
    // Controls: no victim there, a victim whose policy does not attribute on memory
    // bandwidth, or a victim whose node stays below h0's level: d-big, the roomier.
    for (class, second, bw) in [
        ("web", false, 3.0),
        ("fragile", true, 3.0),
        ("online", false, 0.5),
    ] {
        let c = tolerated(&nodes, class, second, bw);
        assert_eq!(c[0].outcome, Outcome::Executed, "{class}: {c:#?}");
        assert_eq!(c[0].destination.as_deref(), Some("d-big"), "{class} {bw}");
    }
    // With only the victim's node left, the Migrate is Blocked and says why.
    let d = tolerated(&nodes[..1], "online", false, 3.0);
    assert_eq!(d[0].outcome, Outcome::Blocked, "{d:#?}");
    let why = "1 would cross a trigger with the pod's usage (d-big: mem_bw would reach";
    assert!(d[0].reason.contains(why), "{}", d[0].reason);
    let why = "on h0 that made its victims cross a trigger, next to victim shop/calm of protect";
    assert!(d[0].reason.contains(why), "{}", d[0].reason);
}
