//! `fulcrum run` in operator mode: wiring of the Kubernetes adapter, the run loop, the
//! admin server and the report consumers (stdout, Events, policy status, metrics).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fulcrum::admin::metrics::Metrics;
use fulcrum::admin::{self, Admin};
use fulcrum::cluster::events::Recorder;
use fulcrum::cluster::evict::{KubeActuator, RetrySettings};
use fulcrum::cluster::policies::{Facts, PolicySinks, watch_policies};
use fulcrum::cluster::reflect::{self, Shared};
use fulcrum::cluster::replacement::Landing;
use fulcrum::cluster::status::StatusBook;
use fulcrum::cluster::steer;
use fulcrum::feed::replacements::{REPLACEMENT_SCHEMA, ReplacementLog, ReplacementRecord};
use fulcrum::feed::{FeedHealth, FeedOptions, FeedStats};
use fulcrum::runner::{Report, RunnerIo};
use fulcrum_engine::{ClusterUpdate, Engine};
use fulcrum_policies::InterferencePolicy;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Output, RunArgs, print_event, print_stop, runtime, shutdown_signal};

/// How often expired steering taints are looked for, and statuses written at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The two clients: one for watches, status and Events (kube's retry layer on), one for
/// actions (retry layer off: the actuator owns its retry policy).
async fn clients(args: &RunArgs) -> anyhow::Result<(Client, Client)> {
    let mut config = match &args.operator.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("loading the kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("finding a Kubernetes configuration (kubeconfig or in-cluster)")?,
    };
    let watch_client = Client::try_from(config.clone()).context("building the client")?;
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_millis(args.operator.api_timeout));
    let act_client = Client::try_from(config).context("building the client")?;
    Ok((watch_client, act_client))
}

/// Runs the operator until SIGINT/SIGTERM.
pub fn run(args: RunArgs, json_logs: bool) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.policies.is_empty(),
        "--policy is for shadow mode (--cluster); in operator mode the policies are the cluster's InterferencePolicy objects"
    );
    let settings = args
        .kafka
        .settings()
        .context("--brokers (or FULCRUM_KAFKA_BROKERS) is required")?;
    // The same options as shadow mode (`--input-format` and `--metrics-map` included).
    let options = args.feed_options(settings)?;
    let rt = runtime()?;
    let telemetry = {
        let _context = rt.enter(); // the OTLP channel runs on the runtime
        fulcrum::telemetry::init_tracing(json_logs)?
    };
    if telemetry.exporting() {
        info!("exporting spans over OTLP");
    }
    let shutdown = shutdown_signal(&rt);
    let stats = Arc::new(FeedStats::default());
    let summary = rt.block_on(operate(args, options, stats.clone(), shutdown));
    telemetry.shutdown();
    let summary = summary?;
    let Some(engine_stats) = summary else {
        return Ok(true);
    };
    let summary = serde_json::json!({"kind": "Stopped", "feed": &*stats, "engine": engine_stats});
    info!(%summary, "stopped");
    print_stop(&summary);
    Ok(true)
}

async fn operate(
    args: RunArgs,
    options: FeedOptions,
    stats: Arc<FeedStats>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let (watch_client, act_client) = clients(&args).await?;
    let (shared, landings) = Shared::new();
    let health = Arc::new(FeedHealth::default());
    let metrics = Arc::new(Metrics::new());
    let handlers = admin_handlers(
        args.engine.config().stale_after_ms as i64,
        &shared,
        &health,
        &stats,
        &metrics,
    );
    let admin_addr = args.operator.admin_addr;
    let admin_task = admin::serve(admin_addr, handlers, shutdown.clone())
        .await
        .with_context(|| format!("binding --admin-addr {admin_addr}"))?;
    let (updates_tx, mut updates) = mpsc::channel::<ClusterUpdate>(4096);
    reflect::spawn(&watch_client, updates_tx, &shared, &shutdown);
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "fulcrum".into());
    let recorder = Recorder::spawn(watch_client.clone(), instance);
    let (book, facts, mut policies) = start_policies(
        &watch_client,
        &shared,
        &recorder,
        args.operator.dry_run,
        &shutdown,
    );

    let mut engine = Engine::new(args.engine.config());
    if !sync(&mut engine, &shared, &mut updates, &mut shutdown).await {
        return Ok(None);
    }
    set_initial_policies(&mut engine, &mut policies)?;
    tokio::spawn(steer::sweep(
        act_client.clone(),
        shared.marks.clone(),
        SWEEP_EVERY,
        shutdown.clone(),
    ));
    let status_task = {
        let (book, client, shutdown) = (book.clone(), watch_client.clone(), shutdown.clone());
        tokio::spawn(async move { book.write_loop(client, STATUS_EVERY, shutdown).await })
    };
    let actuator =
        actuator(&args, act_client, &shared, facts, &metrics).abandon_on(shutdown.clone());
    let replacement_log = ReplacementLog::new(&options.kafka).context("creating a producer")?;
    tokio::spawn(report_landings(
        landings,
        recorder.clone(),
        book.clone(),
        replacement_log,
    ));
    let (reports_tx, reports_rx) = mpsc::channel::<Report>(1024);
    let consumer = tokio::spawn(consume(
        reports_rx,
        args.output,
        recorder,
        book,
        metrics.clone(),
        shared.clone(),
    ));
    let io = RunnerIo {
        actuator,
        reports: reports_tx,
        updates: Some(updates),
        policies: Some(policies),
        health,
        stats,
        shutdown,
        observer: Some(metrics.clone()),
    };
    let engine = fulcrum::runner::run(options, engine, io).await?;
    let _ = consumer.await;
    // Bounded: a final status write, then the admin server stops.
    let _ = tokio::time::timeout(Duration::from_secs(5), status_task).await;
    admin_task.abort();
    Ok(Some(fulcrum::feed::EngineSnapshot::summary(&engine)))
}

/// Hands the policies listed at start to the engine (before the audit restore needs them).
fn set_initial_policies(
    engine: &mut Engine,
    policies: &mut watch::Receiver<Vec<InterferencePolicy>>,
) -> anyhow::Result<()> {
    let invalid = engine.set_policies(&policies.borrow_and_update());
    anyhow::ensure!(
        invalid.is_empty(),
        "validated policies rejected: {invalid:?}"
    );
    let (nodes, pods) = (engine.cluster().node_count(), engine.cluster().pod_count());
    let policies = engine.policies().count();
    info!(nodes, pods, policies, "cluster listed");
    Ok(())
}

/// The Eviction-API actuator, counting answers in the metrics.
fn actuator(
    args: &RunArgs,
    client: Client,
    shared: &Shared,
    facts: Facts,
    metrics: &Arc<Metrics>,
) -> KubeActuator {
    let retry = RetrySettings {
        max_retries: args.operator.eviction_retries,
        timeout: Duration::from_millis(args.operator.api_timeout),
        ..RetrySettings::default()
    };
    let observer = metrics.clone();
    let replacements = shared.replacements.clone();
    KubeActuator::new(client, shared.uids.clone(), facts, replacements, retry)
        .observe(move |code, took| observer.eviction_answered(code, took))
}

/// Starts the policy controller; returns the status book, the policy facts and the valid set.
fn start_policies(
    client: &Client,
    shared: &Shared,
    recorder: &Recorder,
    dry_run: bool,
    shutdown: &watch::Receiver<bool>,
) -> (
    Arc<StatusBook>,
    Facts,
    watch::Receiver<Vec<InterferencePolicy>>,
) {
    let book = Arc::new(StatusBook::default());
    let (set_tx, policies) = watch::channel(Vec::new());
    let facts: Facts = Default::default();
    let sinks = PolicySinks {
        set: set_tx,
        book: book.clone(),
        recorder: recorder.clone(),
        facts: Arc::clone(&facts),
        synced: shared.synced.clone(),
        dry_run,
    };
    tokio::spawn(watch_policies(client.clone(), sinks, shutdown.clone()));
    (book, facts, policies)
}

/// Applies cluster updates until every reflector has listed once (false: shutdown first).
async fn sync(
    engine: &mut Engine,
    shared: &Shared,
    updates: &mut mpsc::Receiver<ClusterUpdate>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut shutdown2 = shutdown.clone();
    let synced = reflect::wait_synced(&shared.synced, &mut shutdown2);
    tokio::pin!(synced);
    loop {
        tokio::select! {
            biased;
            Some(update) = updates.recv() => engine.apply(update),
            ok = &mut synced => {
                // Updates sent before the last list completed are applied now.
                while let Ok(update) = updates.try_recv() {
                    engine.apply(update);
                }
                return ok;
            }
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// Hands every report to stdout, Events, policy status and metrics.
async fn consume(
    mut reports: mpsc::Receiver<Report>,
    output: Output,
    recorder: Recorder,
    book: Arc<StatusBook>,
    metrics: Arc<Metrics>,
    shared: Shared,
) {
    let uid = |pod: &str| {
        let (ns, name) = pod.split_once('/')?;
        shared
            .uids
            .lock()
            .ok()?
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|m| m.uid.clone())
    };
    while let Some(report) = reports.recv().await {
        recorder.report(&report, uid);
        book.record(&report);
        metrics.observe(&report);
        match &report {
            Report::Engine(event) => print_event(event, output),
            Report::Actuated { decision, .. } => print_json(serde_json::json!({
                "kind": "Actuated", "policy": decision.policy, "target": decision.target,
                "action": decision.action, "node": decision.node,
            })),
            Report::NotActuated { decision, error } => print_json(serde_json::json!({
                "kind": "NotActuated", "policy": decision.policy, "target": decision.target,
                "action": decision.action, "error": error.kind(), "message": error.to_string(),
            })),
        }
    }
}

/// Reports where replacements landed (or that they cannot be scheduled).
async fn report_landings(
    mut landings: mpsc::UnboundedReceiver<Landing>,
    recorder: Recorder,
    book: Arc<StatusBook>,
    audit: ReplacementLog,
) {
    while let Some(landing) = landings.recv().await {
        match &landing.node {
            Ok(node) => {
                info!(evicted = %landing.evicted, replacement = %landing.replacement, %node, "replacement landed")
            }
            Err(why) => {
                warn!(evicted = %landing.evicted, replacement = %landing.replacement, %why, "replacement cannot be scheduled")
            }
        }
        recorder.landing(&landing);
        book.landed(&landing);
        let record = replacement_record(&landing);
        if let Err(e) = audit.publish(&record).await {
            warn!(error = %e, evicted = %landing.evicted, "could not publish the replacement to the audit topic");
        }
        print_json(serde_json::json!({
            "kind": "Replacement", "policy": landing.policy, "evicted": landing.evicted,
            "replacement": landing.replacement, "node": landing.node.as_ref().ok(),
            "unschedulable": landing.node.as_ref().err(),
        }));
    }
}

/// The audit record of a landing.
fn replacement_record(landing: &Landing) -> ReplacementRecord {
    ReplacementRecord {
        schema: REPLACEMENT_SCHEMA.to_owned(),
        at: fulcrum::clock::now_ms(),
        policy: landing.policy.clone(),
        source_node: landing.source_node.clone(),
        evicted: landing.evicted.clone(),
        replacement: landing.replacement.clone(),
        node: landing.node.as_ref().ok().cloned(),
        unschedulable: landing.node.as_ref().err().cloned(),
    }
}

fn print_json(value: serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

fn admin_handlers(
    stale_after_ms: i64,
    shared: &Shared,
    health: &Arc<FeedHealth>,
    stats: &Arc<FeedStats>,
    metrics: &Arc<Metrics>,
) -> Admin {
    use std::sync::atomic::Ordering::Relaxed;
    let (synced, health2) = (shared.synced.clone(), health.clone());
    let ready = Arc::new(move || {
        let pending = synced.pending();
        if !pending.is_empty() || !synced.all() {
            return Err(format!("not listed yet: {}", pending.join(", ")));
        }
        if !health2.ready() {
            return Err("Kafka brokers not reachable yet".into());
        }
        if health2.assigned.load(Relaxed) == 0 {
            return Err("no partition assigned".into());
        }
        let last = health2.last_message_ms.load(Relaxed);
        let age = fulcrum::clock::now_ms() - last;
        if last > 0 && age > stale_after_ms {
            return Err(format!("feed stale: no sample for {} s", age / 1000));
        }
        Ok(())
    });
    let (metrics2, stats, health, uids, nodes) = (
        metrics.clone(),
        stats.clone(),
        health.clone(),
        shared.uids.clone(),
        shared.nodes.clone(),
    );
    let render = Arc::new(move || {
        let m = &metrics2;
        let accepted = stats.samples.load(Relaxed);
        let rejected = stats.rejected_samples.load(Relaxed);
        Metrics::set_counter(
            &m.samples,
            vec![("result".into(), "accepted".into())],
            accepted,
        );
        Metrics::set_counter(
            &m.samples,
            vec![("result".into(), "rejected".into())],
            rejected,
        );
        fulcrum::admin::pipeline::copy_dead_letters(m, &stats);
        m.refresh_feed(&stats);
        let watermark = health.watermark_ms.load(Relaxed);
        if watermark > 0 {
            let lag = (fulcrum::clock::now_ms() - watermark) as f64 / 1000.0;
            m.watermark_lag.set(lag);
        }
        let pods = uids.lock().map(|u| u.len()).unwrap_or(0);
        m.tracked_pods.set(pods as i64);
        m.tracked_nodes.set(nodes.load(Relaxed) as i64);
        m.render()
    });
    Admin {
        ready,
        metrics: render,
    }
}
