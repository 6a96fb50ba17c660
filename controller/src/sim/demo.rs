//! The demo driver: the simulated cluster produces `fulcrum.metrics/v1` samples into
//! librdkafka's in-process mock cluster; Fulcrum consumes them through the production run
//! loop (`crate::runner::run`: feed, engine, audit), and its decisions are carried out on
//! the simulated cluster through the [`Actuator`] interface. The same scenario also runs
//! without any action, for the comparison.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
use crate::feed::{FeedHealth, FeedOptions, FeedStats, KafkaSettings, StartPosition};
use crate::runner::{Report, RunnerIo};
use fulcrum_engine::cluster::ClusterIndex;
use fulcrum_engine::{ClusterUpdate, Decision, Engine, EngineConfig, Event};

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
    /// The run loop stopped with an error.
    #[error("feed: {0}")]
    Feed(#[from] crate::feed::FeedError),
    /// The feed did not keep up (it should take milliseconds per tick).
    #[error("the feed did not apply tick {0} within 30 s")]
    Stalled(u64),
    /// A shipped policy is invalid (a build problem).
    #[error("policy: {0}")]
    Policy(String),
}

/// Carries decisions out on the simulated world, at the tick the driver is at.
struct SimActuator {
    world: Arc<Mutex<World>>,
    tick: Arc<AtomicU64>,
}

/// Locks the world; a panic elsewhere never leaves it half-changed, so a poisoned lock is
/// still usable.
fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actuator for SimActuator {
    async fn execute(&mut self, decision: &Decision) -> Result<Actuation, ActuationError> {
        let tick = self.tick.load(Ordering::SeqCst);
        let mut world = lock(&self.world);
        let steer = decision.action == Action::Migrate;
        let (gone, replacement) = world
            .evict(&decision.target, tick, steer, STEER_TICKS)
            .ok_or_else(|| ActuationError::Gone(decision.target.clone()))?;
        let mut updates = vec![
            ClusterUpdate::RemovePod {
                namespace: gone.namespace.clone(),
                name: gone.name.clone(),
            },
            ClusterUpdate::UpsertNode(world.node_info(gone.node, tick)),
        ];
        let landed_on = replacement
            .as_ref()
            .map(|r| world.nodes[r.node].name.clone());
        if let Some(r) = &replacement {
            updates.push(ClusterUpdate::UpsertPod(Box::new(world.pod_info(r))));
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

/// The engine the demo decides with: the simulated cluster and the shipped policies.
fn demo_engine(world: &World, config: EngineConfig) -> Result<Engine, DemoError> {
    let policies: Vec<InterferencePolicy> = POLICIES
        .iter()
        .map(|text| {
            let value: serde_json::Value =
                serde_yaml_ng::from_str(text).map_err(|e| DemoError::Policy(e.to_string()))?;
            fulcrum_policies::document::check_document(&value)
                .map_err(|e| DemoError::Policy(format!("{e:?}")))
        })
        .collect::<Result<_, _>>()?;
    let mut engine = Engine::new(config);
    engine.load_cluster(cluster_of(world));
    let invalid = engine.set_policies(&policies);
    if !invalid.is_empty() {
        return Err(DemoError::Policy(format!("{invalid:?}")));
    }
    Ok(engine)
}

/// librdkafka's in-process mock cluster with the demo's topics, and a producer.
struct EmbeddedKafka {
    // Kept alive for the producer and the feed.
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    settings: KafkaSettings,
    producer: FutureProducer,
}

impl EmbeddedKafka {
    const TOPIC: &'static str = "fulcrum.metrics";

    fn start() -> Result<Self, DemoError> {
        let cluster = MockCluster::new(1)?;
        let mut settings =
            KafkaSettings::new(&cluster.bootstrap_servers(), Self::TOPIC, "fulcrum-demo");
        for t in [
            Self::TOPIC,
            settings.dlq_topic.as_str(),
            settings.audit_topic.as_str(),
        ] {
            cluster.create_topic(t, if t == Self::TOPIC { 4 } else { 1 }, 1)?;
        }
        settings.start = StartPosition::Earliest;
        settings.properties = vec![
            ("fetch.wait.max.ms".into(), "5".into()),
            ("linger.ms".into(), "0".into()),
        ];
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "0")
            .create()?;
        Ok(Self {
            _cluster: cluster,
            settings,
            producer,
        })
    }

    /// Produces one tick's messages and waits until every one is acknowledged.
    async fn produce(&self, messages: &[(String, String)]) -> Result<(), DemoError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, value) in messages {
            let record = FutureRecord::to(Self::TOPIC).key(key).payload(value);
            deliveries.push(self.producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(|_| rdkafka::error::KafkaError::Canceled)?
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

/// What the driver records from the runner's reports.
#[derive(Default)]
struct Recorder {
    timeline: Vec<(i64, Happening)>,
    decisions: Vec<Decision>,
}

impl Recorder {
    /// Records one report; `now` is the event time of the tick the driver is at.
    fn record(&mut self, report: Report, now: i64) {
        match report {
            Report::Engine(event) => {
                let at = match &event {
                    Event::Detected { at, .. } | Event::Recovered { at, .. } => *at,
                    Event::Decision(d) => d.at,
                    Event::Unexplained(u) => u.at,
                };
                if let Event::Decision(d) = &event {
                    self.decisions.push(d.as_ref().clone());
                }
                self.timeline.push((at, Happening::Engine(event)));
            }
            Report::Actuated {
                decision,
                actuation,
            } => self.timeline.push((
                now,
                Happening::Carried {
                    decision,
                    landed_on: actuation.landed_on,
                },
            )),
            Report::NotActuated { .. } => {}
        }
    }

    /// Seconds from each incident's onset to the action on its antagonist, if any.
    fn time_to_mitigate(&self, incidents: &[Incident], world: &World) -> Vec<Option<f64>> {
        incidents
            .iter()
            .map(|incident| {
                self.timeline.iter().find_map(|(at, h)| match h {
                    Happening::Carried { decision, .. }
                        if decision.target == incident.antagonist
                            && decision.node == incident.node =>
                    {
                        Some((*at - world.ts(incident.onset)) as f64 / 1000.0)
                    }
                    _ => None,
                })
            })
            .collect()
    }
}

/// Online latency with and without Fulcrum, tick by tick.
#[derive(Default)]
struct Comparison {
    worst: Vec<(i64, f64, f64)>,
    with_s: f64,
    without_s: f64,
}

impl Comparison {
    fn record(
        &mut self,
        at: i64,
        with: &[OnlineReading],
        without: &[OnlineReading],
        period_s: f64,
    ) {
        self.with_s += violation_seconds(with, period_s);
        self.without_s += violation_seconds(without, period_s);
        self.worst
            .push((at, worst_ratio(with), worst_ratio(without)));
    }
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
    let (world, incidents) = build(&config, t0);
    let (baseline, _) = build(&config, t0);
    let engine_config = EngineConfig::default();
    let lateness = engine_config.lateness_ms as i64;
    let engine = demo_engine(&world, engine_config)?;
    let kafka = EmbeddedKafka::start()?;
    let options = feed_options(&kafka, lateness);

    let world = Arc::new(Mutex::new(world));
    let current_tick = Arc::new(AtomicU64::new(0));
    let RunningFeed {
        task: runner,
        mut reports,
        stop: stop_tx,
        health,
        stats,
    } = RunningFeed::spawn(options, engine, &world, &current_tick);

    let period_s = config.period_ms as f64 / 1000.0;
    let mut recorder = Recorder::default();
    let mut comparison = Comparison::default();
    for tick in 0..config.ticks {
        current_tick.store(tick, Ordering::SeqCst);
        let (messages, readings, ts) = step_world(&world, &incidents, tick, &mut recorder);
        let (_, baseline_readings) = baseline.step(tick);
        comparison.record(ts, &readings, &baseline_readings, period_s);
        kafka.produce(&messages).await?;
        // Lock-step: wait until the runner applied this tick (up to the lateness bound),
        // so actions change the next ticks.
        let applied = AppliedWait {
            health: &health,
            target: ts - lateness,
            now: ts,
        };
        applied.wait(&mut reports, &mut recorder, tick).await?;
        progress(tick + 1, config.ticks);
    }
    let _ = stop_tx.send(true);
    let engine = runner
        .await
        .map_err(|_| DemoError::Stalled(config.ticks))??;
    drop(engine);
    let world = lock(&world).clone();
    while let Ok(report) = reports.try_recv() {
        recorder.record(report, world.ts(config.ticks));
    }
    let time_to_mitigate_s = recorder.time_to_mitigate(&incidents, &world);
    Ok(DemoRun {
        config,
        timeline: recorder.timeline,
        decisions: recorder.decisions,
        worst: comparison.worst,
        violation_with_s: comparison.with_s,
        violation_without_s: comparison.without_s,
        incidents,
        time_to_mitigate_s,
        wall_s: started.elapsed().as_secs_f64(),
        samples: stats.samples.load(Ordering::Relaxed),
    })
}

/// The feed options of the demo: the embedded Kafka from the earliest offset, evidence
/// of any age, event time driven only by the samples.
fn feed_options(kafka: &EmbeddedKafka, lateness: i64) -> FeedOptions {
    let mut options = FeedOptions::new(kafka.settings.clone());
    options.max_evidence_age_ms = 24 * 3_600_000;
    options.lateness_ms = lateness as u64;
    options.wall_clock_advance = false;
    options
}

/// Steps the simulated world through `tick`, recording the incidents that start at it.
/// Returns the tick's messages, its online readings and its event time.
fn step_world(
    world: &Mutex<World>,
    incidents: &[Incident],
    tick: u64,
    recorder: &mut Recorder,
) -> (Vec<(String, String)>, Vec<OnlineReading>, i64) {
    let world = lock(world);
    for incident in incidents.iter().filter(|i| i.onset == tick) {
        recorder
            .timeline
            .push((world.ts(tick), Happening::Onset(incident.clone())));
    }
    let (messages, readings) = world.step(tick);
    (messages, readings, world.ts(tick))
}

/// The production run loop on its own task, and the driver's handles on it.
struct RunningFeed {
    /// The run loop; it returns the engine when stopped.
    task: tokio::task::JoinHandle<Result<Engine, crate::feed::FeedError>>,
    /// The runner's reports.
    reports: mpsc::Receiver<Report>,
    /// Turns true to stop the run loop.
    stop: watch::Sender<bool>,
    /// The feed's readiness and watermark.
    health: Arc<FeedHealth>,
    /// The feed's counters.
    stats: Arc<FeedStats>,
}

impl RunningFeed {
    /// Spawns the run loop on `engine`, carrying decisions out on `world` at the tick in
    /// `tick`.
    fn spawn(
        options: FeedOptions,
        engine: Engine,
        world: &Arc<Mutex<World>>,
        tick: &Arc<AtomicU64>,
    ) -> Self {
        let (reports_tx, reports) = mpsc::channel(4096);
        let (stop, stop_rx) = watch::channel(false);
        let health = Arc::new(FeedHealth::default());
        let stats = Arc::new(FeedStats::default());
        health.watermark_ms.store(i64::MIN, Ordering::Relaxed);
        let task = tokio::spawn(crate::runner::run(
            options,
            engine,
            RunnerIo {
                actuator: SimActuator {
                    world: world.clone(),
                    tick: tick.clone(),
                },
                reports: reports_tx,
                updates: None,
                policies: None,
                health: health.clone(),
                stats: stats.clone(),
                shutdown: stop_rx,
                observer: None,
            },
        ));
        Self {
            task,
            reports,
            stop,
            health,
            stats,
        }
    }
}

/// Waiting for the runner to apply a tick, recording its reports meanwhile.
struct AppliedWait<'a> {
    health: &'a FeedHealth,
    /// The watermark that means the tick is applied.
    target: i64,
    /// Event time of the tick (when its actions are carried out).
    now: i64,
}

impl AppliedWait<'_> {
    async fn wait(
        &self,
        reports: &mut mpsc::Receiver<Report>,
        recorder: &mut Recorder,
        tick: u64,
    ) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Read the watermark first: the runner publishes it after the reports up to it.
            let reached = self.health.watermark_ms.load(Ordering::Relaxed) >= self.target;
            while let Ok(report) = reports.try_recv() {
                recorder.record(report, self.now);
            }
            if reached {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::Stalled(tick));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
