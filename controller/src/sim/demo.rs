//! The demo driver: the simulated cluster produces `fulcrum.metrics/v1` samples into
//! librdkafka's in-process mock cluster; Fulcrum consumes them through the production feed
//! (`crate::feed::run`), decides, and its decisions are carried out on the simulated
//! cluster through the [`Actuator`] interface. The same scenario also runs without any
//! action, for the comparison.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fulcrum_policies::InterferencePolicy;
use fulcrum_policies::spec::Action;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use super::scenario::{DemoConfig, Incident, build};
use super::world::{OnlineReading, World};
use crate::actuator::{Actuation, ActuationError, Actuator};
use crate::engine::cluster::ClusterIndex;
use crate::engine::decision::Outcome;
use crate::engine::{ClusterUpdate, Decision, Engine, EngineConfig, Event};
use crate::feed::{FeedHealth, FeedIo, FeedOptions, FeedStats, KafkaSettings, StartPosition};

/// The policies the demo runs: the shipped examples.
pub const POLICIES: [&str; 2] = [
    include_str!("../../../deploy/examples/online-vs-bigdata-migrate.yaml"),
    include_str!("../../../deploy/examples/online-vs-ai-evict.yaml"),
];

/// How long the steering taint stays on a migration's source node, in ticks.
const STEER_TICKS: u64 = 60;

/// Something that happened, for the timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    /// An injected antagonist switched on.
    Onset(Incident),
    /// An engine event (detection, decision, recovery).
    Engine(Event),
    /// A decision was carried out on the simulated cluster.
    Carried {
        /// The decision.
        decision: Box<Decision>,
        /// Where the replacement landed.
        landed_on: Option<String>,
    },
}

/// Everything the demo measured.
#[derive(Clone, Debug)]
pub struct DemoRun {
    /// The configuration.
    pub config: DemoConfig,
    /// (event time ms, what) in order.
    pub timeline: Vec<(i64, Happening)>,
    /// Decisions as the engine emitted them.
    pub decisions: Vec<Decision>,
    /// Per tick: worst online p99 / SLO ratio with Fulcrum and without.
    pub worst: Vec<(i64, f64, f64)>,
    /// SLO-violation seconds of online pods, with Fulcrum.
    pub violation_with_s: f64,
    /// SLO-violation seconds of online pods, without any action.
    pub violation_without_s: f64,
    /// Injected incidents.
    pub incidents: Vec<Incident>,
    /// Per incident: seconds from onset to the action on its antagonist, if any.
    pub time_to_mitigate_s: Vec<Option<f64>>,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Samples Fulcrum consumed.
    pub samples: u64,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded Kafka could not start.
    #[error("embedded Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The feed stopped with an error.
    #[error("feed: {0}")]
    Feed(#[from] crate::feed::FeedError),
    /// The feed did not keep up (it should take milliseconds per tick).
    #[error("the feed did not apply tick {0} within 30 s")]
    Stalled(u64),
    /// A shipped policy is invalid (a build problem).
    #[error("policy: {0}")]
    Policy(String),
}

/// Carries decisions out on the simulated world.
struct SimActuator<'w> {
    world: &'w mut World,
    tick: u64,
}

impl Actuator for SimActuator<'_> {
    fn execute(&mut self, decision: &Decision, _now_ms: i64) -> Result<Actuation, ActuationError> {
        let steer = decision.action == Action::Migrate;
        let (gone, replacement) = self
            .world
            .evict(&decision.target, self.tick, steer, STEER_TICKS)
            .ok_or_else(|| ActuationError::Gone(decision.target.clone()))?;
        let mut updates = vec![
            ClusterUpdate::RemovePod {
                namespace: gone.namespace.clone(),
                name: gone.name.clone(),
            },
            ClusterUpdate::UpsertNode(self.world.node_info(gone.node, self.tick)),
        ];
        let landed_on = replacement
            .as_ref()
            .map(|r| self.world.nodes[r.node].name.clone());
        if let Some(r) = &replacement {
            updates.push(ClusterUpdate::UpsertPod(Box::new(self.world.pod_info(r))));
        }
        Ok(Actuation { landed_on, updates })
    }
}

fn cluster_of(world: &World) -> ClusterIndex {
    let mut index = ClusterIndex::new();
    for n in 0..world.nodes.len() {
        index.upsert_node(world.node_info(n, 0));
    }
    for (ns, labels) in &world.namespaces {
        index.upsert_namespace(ns, labels.clone());
    }
    for pod in &world.pods {
        index.upsert_pod(world.pod_info(pod));
    }
    index
}

fn violation_seconds(readings: &[OnlineReading], period_s: f64) -> f64 {
    readings.iter().filter(|r| r.p99_ms > r.slo_ms).count() as f64 * period_s
}

fn worst_ratio(readings: &[OnlineReading]) -> f64 {
    readings
        .iter()
        .map(|r| r.p99_ms / r.slo_ms)
        .fold(0.0, f64::max)
}

/// Runs the demo. `progress(tick, ticks)` is called once per tick.
pub async fn run(
    config: DemoConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<DemoRun, DemoError> {
    let started = Instant::now();
    let now = jiff::Timestamp::now().as_millisecond();
    // Event time runs ahead of wall time and ends a minute before now.
    let t0 = now - config.ticks as i64 * config.period_ms - 60_000;
    let (mut world, incidents) = build(&config, t0);
    let (baseline, _) = build(&config, t0);

    let policies: Vec<InterferencePolicy> = POLICIES
        .iter()
        .map(|text| {
            let value: serde_json::Value =
                serde_yaml_ng::from_str(text).map_err(|e| DemoError::Policy(e.to_string()))?;
            fulcrum_policies::document::check_document(&value)
                .map_err(|e| DemoError::Policy(format!("{e:?}")))
        })
        .collect::<Result<_, _>>()?;
    let engine_config = EngineConfig::default();
    let lateness = engine_config.lateness_ms as i64;
    let mut engine = Engine::new(engine_config);
    engine.load_cluster(cluster_of(&world));
    let invalid = engine.set_policies(&policies);
    if !invalid.is_empty() {
        return Err(DemoError::Policy(format!("{invalid:?}")));
    }

    let kafka = MockCluster::new(1)?;
    let topic = "fulcrum.metrics";
    let mut settings = KafkaSettings::new(&kafka.bootstrap_servers(), topic, "fulcrum-demo");
    for t in [
        topic,
        settings.dlq_topic.as_str(),
        settings.audit_topic.as_str(),
    ] {
        kafka.create_topic(t, if t == topic { 4 } else { 1 }, 1)?;
    }
    settings.start = StartPosition::Earliest;
    settings.properties = vec![
        ("fetch.wait.max.ms".into(), "5".into()),
        ("linger.ms".into(), "0".into()),
    ];
    let mut options = FeedOptions::new(settings.clone());
    options.max_evidence_age_ms = 24 * 3_600_000;
    options.lateness_ms = lateness as u64;
    options.wall_clock_advance = false;

    let (events_tx, mut events_rx) = mpsc::channel(4096);
    let (updates_tx, updates_rx) = mpsc::channel(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = Arc::new(FeedHealth::default());
    let stats = Arc::new(FeedStats::default());
    health.watermark_ms.store(i64::MIN, Ordering::Relaxed);
    let feed = tokio::spawn(crate::feed::run(
        options,
        engine,
        FeedIo {
            events: events_tx,
            updates: Some(updates_rx),
            health: health.clone(),
            stats: stats.clone(),
            shutdown: stop_rx,
        },
    ));

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "0")
        .create()?;
    let period_s = config.period_ms as f64 / 1000.0;
    let mut timeline: Vec<(i64, Happening)> = Vec::new();
    let mut decisions = Vec::new();
    let mut worst = Vec::with_capacity(config.ticks as usize);
    let (mut with_s, mut without_s) = (0.0, 0.0);
    for tick in 0..config.ticks {
        for incident in incidents.iter().filter(|i| i.onset == tick) {
            timeline.push((world.ts(tick), Happening::Onset(incident.clone())));
        }
        let (messages, readings) = world.step(tick);
        let (_, baseline_readings) = baseline.step(tick);
        with_s += violation_seconds(&readings, period_s);
        without_s += violation_seconds(&baseline_readings, period_s);
        worst.push((
            world.ts(tick),
            worst_ratio(&readings),
            worst_ratio(&baseline_readings),
        ));
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, value) in &messages {
            let record = FutureRecord::to(topic).key(key).payload(value);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(|_| rdkafka::error::KafkaError::Canceled)?
                .map_err(|(e, _)| e)?;
        }
        // Lock-step: wait until the feed applied this tick (up to the lateness bound),
        // carrying out decisions as they arrive, so actions change the next ticks.
        let target = world.ts(tick) - lateness;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Read the watermark first: the feed publishes it after the events up to it.
            let reached = health.watermark_ms.load(Ordering::Relaxed) >= target;
            while let Ok(event) = events_rx.try_recv() {
                handle(
                    event,
                    &mut world,
                    tick,
                    &mut timeline,
                    &mut decisions,
                    &updates_tx,
                )
                .await;
            }
            if reached {
                break;
            }
            if Instant::now() > deadline {
                return Err(DemoError::Stalled(tick));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        progress(tick + 1, config.ticks);
    }
    let _ = stop_tx.send(true);
    let engine = feed.await.map_err(|_| DemoError::Stalled(config.ticks))??;
    while let Ok(event) = events_rx.try_recv() {
        handle(
            event,
            &mut world,
            config.ticks,
            &mut timeline,
            &mut decisions,
            &updates_tx,
        )
        .await;
    }
    drop(engine);

    let time_to_mitigate_s = incidents
        .iter()
        .map(|incident| {
            timeline.iter().find_map(|(at, h)| match h {
                Happening::Carried { decision, .. }
                    if decision.target == incident.antagonist && decision.node == incident.node =>
                {
                    Some((*at - world.ts(incident.onset)) as f64 / 1000.0)
                }
                _ => None,
            })
        })
        .collect();
    Ok(DemoRun {
        config,
        timeline,
        decisions,
        worst,
        violation_with_s: with_s,
        violation_without_s: without_s,
        incidents,
        time_to_mitigate_s,
        wall_s: started.elapsed().as_secs_f64(),
        samples: stats.samples.load(Ordering::Relaxed),
    })
}

async fn handle(
    event: Event,
    world: &mut World,
    tick: u64,
    timeline: &mut Vec<(i64, Happening)>,
    decisions: &mut Vec<Decision>,
    updates: &mpsc::Sender<ClusterUpdate>,
) {
    let at = match &event {
        Event::Detected { at, .. } | Event::Recovered { at, .. } => *at,
        Event::Decision(d) => d.at,
    };
    let executed = match &event {
        Event::Decision(d) => {
            decisions.push(d.as_ref().clone());
            (d.outcome == Outcome::Executed).then(|| d.clone())
        }
        _ => None,
    };
    timeline.push((at, Happening::Engine(event)));
    if let Some(decision) = executed {
        let now = world.ts(tick);
        let mut actuator = SimActuator { world, tick };
        if let Ok(actuation) = actuator.execute(&decision, now) {
            for update in actuation.updates {
                let _ = updates.send(update).await;
            }
            timeline.push((
                now,
                Happening::Carried {
                    decision,
                    landed_on: actuation.landed_on,
                },
            ));
        }
    }
}
