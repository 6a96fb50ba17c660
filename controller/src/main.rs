//! The `fulcrum` command line: wiring only; the work lives in the library.

#![warn(missing_docs)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fulcrum::actuator::Shadow;
use fulcrum::check::check_files;
use fulcrum::feed::config::{
    DEFAULT_AUDIT_TOPIC, default_dlq_topic, env_properties, parse_property,
};
use fulcrum::feed::reader::read_topic;
use fulcrum::feed::{FeedHealth, FeedOptions, FeedStats, KafkaSettings, StartPosition};
use fulcrum::inputs::InputArgs;
use fulcrum::load::build_engine;
use fulcrum::manifest::crd_yaml;
use fulcrum::replay::{
    LineError, ReplayInput, ReplayReport, prepare, render_json, render_text, replay_files_within,
};
use fulcrum::runner::{Report, RunnerIo};
use fulcrum_engine::{EngineConfig, Event};
use fulcrum_policies::Duration;
use tokio::sync::{mpsc, watch};

#[path = "cli/operator.rs"]
mod operator;
#[path = "cli/showcase.rs"]
mod showcase;

/// Fulcrum: detects interference between co-located workloads and evicts or migrates the
/// noisy neighbour, as InterferencePolicy resources declare.
#[derive(Parser)]
#[command(name = "fulcrum", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch Fulcrum find noisy neighbours in a simulated co-located cluster and fix them.
    ///
    /// Embedded: a simulated cluster (tens of nodes, hundreds of pods) sends samples through
    /// an in-process Kafka; Fulcrum consumes them with the production feed, decides with the
    /// shipped example policies, and acts on the simulation. Prints a timeline and compares
    /// SLO violations with and without Fulcrum. Needs no external service.
    Demo(DemoArgs),
    /// Measure decoding, the engine (quiet and in a storm) and memory per tracked pod on a
    /// generated cluster and stream; prints the figures with the machine they ran on.
    ///
    /// Build with `--release` for meaningful figures. `--scale small` (6,000 pods) takes
    /// under a minute; `--scale medium` 30,000 pods (and 3,000); `--scale full` (300,000
    /// pods, plus 3,000 and 30,000 for the growth table) several minutes. See
    /// docs/benchmarks.md.
    Bench(BenchArgs),
    /// Print the InterferencePolicy CustomResourceDefinition generated from the Rust types.
    Crd,
    /// Validate policy files and explain every error with its field path.
    ///
    /// Reads multi-document YAML or JSON (`-` for standard input; the items of a `kind: List`
    /// are checked one by one). Prints one line per valid policy and one per problem.
    /// Exits 0 when every policy is valid, 1 otherwise, 2 on a usage or output error.
    CheckPolicy {
        /// Policy files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Backtest policies on a recorded cluster and recorded samples; print the decisions.
    ///
    /// The cluster is a Kubernetes List (`kubectl get nodes,pods,pdb,namespaces -A -o yaml`),
    /// policies are InterferencePolicy documents. Samples come from a JSON Lines file
    /// (`--events`) or a Kafka topic read from its beginning to its current end
    /// (`--brokers`, `--topic`; `--follow` keeps reading). Bad lines are reported on stderr
    /// and skipped. Exits 0 unless an input is unusable (2).
    Replay(ReplayArgs),
    /// The operator: consume samples from Kafka, decide, and act on the cluster.
    ///
    /// Operator mode (default): the cluster view and the InterferencePolicy objects come
    /// from the Kubernetes API (kubeconfig or in-cluster config); decisions are carried out
    /// with the Eviction API, reported as Events and in each policy's status, and served on
    /// the admin server (`/healthz`, `/readyz`, `/metrics`). Shadow mode (`--cluster`):
    /// the cluster is a snapshot file, policies come from `--policy` files, and nothing is
    /// acted on. Either way decisions go to the audit topic and standard output, offsets
    /// are committed once samples are applied, malformed messages go to the dead-letter
    /// topic, and SIGINT or SIGTERM stops cleanly (exit 0). Every flag has a `FULCRUM_*`
    /// environment twin; in operator mode, spans (one per decision and per API call) are exported
    /// over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (standard `OTEL_*` variables).
    Run(RunArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// How big a cluster to generate.
    #[arg(long, value_enum, default_value_t = fulcrum::bench::Scale::Small)]
    scale: fulcrum::bench::Scale,
    /// Also measure ingest from this Kafka-compatible broker (creates a topic
    /// `fulcrum.bench.<pid>` with 8 partitions and fills it).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
struct DemoArgs {
    /// Seed of the simulation (same seed, same scenario).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A smaller cluster and a shorter run.
    #[arg(long)]
    small: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Also write a chart of online latency with action markers (.svg or .html).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct EngineArgs {
    /// How late a sample may arrive (event time) and still be applied in order.
    #[arg(long, env = "FULCRUM_LATENESS", default_value = "15s", value_parser = parse_duration_ms)]
    lateness: u64,
    /// A node or series without samples this long is stale and never acted on. Without
    /// it: 60 s, or 2.5 of the series' own sampling intervals if longer (a 60 s feed).
    #[arg(long, env = "FULCRUM_STALE_AFTER", value_parser = parse_duration_ms)]
    stale_after: Option<u64>,
}

impl EngineArgs {
    fn config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        EngineConfig {
            lateness_ms: self.lateness,
            stale_after_ms: self.stale_after.unwrap_or(defaults.stale_after_ms),
            // Given explicitly, the flag is the bound.
            stale_cadences: if self.stale_after.is_some() {
                0.0
            } else {
                defaults.stale_cadences
            },
            ..defaults
        }
    }
}

#[derive(Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "FULCRUM_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    brokers: Option<String>,
    /// Samples topic.
    #[arg(long, env = "FULCRUM_KAFKA_TOPIC", default_value = "fulcrum.metrics")]
    topic: String,
    /// Consumer group.
    #[arg(long, env = "FULCRUM_KAFKA_GROUP", default_value = "fulcrum")]
    group: String,
    /// Dead-letter topic (default: `<topic>.dlq`).
    #[arg(long, env = "FULCRUM_KAFKA_DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// Audit (decisions) topic.
    #[arg(long, env = "FULCRUM_KAFKA_AUDIT_TOPIC", default_value = DEFAULT_AUDIT_TOPIC)]
    audit_topic: String,
    /// Where a group without committed offsets starts.
    #[arg(long, value_enum, env = "FULCRUM_KAFKA_START", default_value_t = StartPosition::Latest)]
    start: StartPosition,
    /// A librdkafka property, `key=value` (repeatable; also FULCRUM_KAFKA_CONFIG_<KEY>).
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_config: Vec<(String, String)>,
}

impl KafkaArgs {
    fn settings(&self) -> Option<KafkaSettings> {
        let brokers = self.brokers.as_ref()?;
        let mut s = KafkaSettings::new(brokers, &self.topic, &self.group);
        s.dlq_topic = self
            .dlq_topic
            .clone()
            .unwrap_or_else(|| default_dlq_topic(&self.topic));
        s.audit_topic = self.audit_topic.clone();
        s.start = self.start;
        s.properties = env_properties(std::env::vars());
        s.properties.extend(self.kafka_config.iter().cloned());
        Some(s)
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// Cluster snapshot (YAML or JSON); repeatable.
    #[arg(long, required = true, value_name = "FILE")]
    cluster: Vec<PathBuf>,
    /// Policy file; repeatable.
    #[arg(long = "policy", required = true, value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Samples as JSON Lines.
    #[arg(long, value_name = "FILE", required_unless_present = "brokers")]
    events: Option<PathBuf>,
    /// With `--brokers`: keep reading new samples until interrupted.
    #[arg(long, requires = "brokers")]
    follow: bool,
    /// An events file out of time order is sorted in memory when it is at most this many
    /// bytes; a larger one stops the replay (sort it by time first).
    #[arg(long, value_name = "BYTES", default_value_t = fulcrum::replay::MAX_SORT_BYTES)]
    max_sort_bytes: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Shadow mode: decide against this cluster snapshot (YAML or JSON; repeatable) and act
    /// on nothing. Without it, the cluster is the Kubernetes API (operator mode).
    #[arg(
        long,
        env = "FULCRUM_CLUSTER",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    cluster: Vec<PathBuf>,
    /// Shadow mode only: policy file (repeatable). In operator mode the policies are the
    /// cluster's InterferencePolicy objects.
    #[arg(
        long = "policy",
        env = "FULCRUM_POLICY",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    policies: Vec<PathBuf>,
    /// Decisions about evidence older than this (wall clock) are blocked.
    #[arg(long, env = "FULCRUM_MAX_EVIDENCE_AGE", default_value = "5m", value_parser = parse_duration_ms)]
    max_evidence_age: u64,
    /// How far (event time) a lagging partition may hold the others back; its older
    /// samples are late beyond it.
    #[arg(long, env = "FULCRUM_MAX_SKEW", default_value = "5m", value_parser = parse_duration_ms)]
    max_skew: u64,
    /// Samples the engine may hold waiting for the watermark before lagging partitions
    /// stop holding it back (their older samples are then late).
    #[arg(long, env = "FULCRUM_MAX_BUFFERED", default_value_t = 1_000_000)]
    max_buffered: usize,
    /// How each event is printed on standard output.
    #[arg(long, env = "FULCRUM_OUTPUT", value_enum, default_value_t = Output::Json)]
    output: Output,
    /// Log format on standard error.
    #[arg(long, env = "FULCRUM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Same as `--log-format json` (kept for compatibility).
    #[arg(long, hide = true)]
    log_json: bool,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    input: InputArgs,
}

impl RunArgs {
    /// The feed's options from the flags: one place for shadow and operator mode, so a
    /// flag never applies to one mode only.
    fn feed_options(&self, settings: KafkaSettings) -> anyhow::Result<FeedOptions> {
        let mut options = FeedOptions::new(settings);
        options.input = self.input.spec(self.engine.lateness)?;
        options.lateness_ms = self.engine.lateness;
        options.max_evidence_age_ms = self.max_evidence_age;
        options.max_skew_ms = self.max_skew;
        options.max_buffered = self.max_buffered;
        Ok(options)
    }
}

/// Flags of operator mode (ignored in shadow mode).
#[derive(Args)]
struct OperatorArgs {
    /// Kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster config).
    #[arg(long, env = "FULCRUM_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Address of the admin server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "FULCRUM_ADMIN_ADDR",
        default_value = "0.0.0.0:8080",
        value_name = "HOST:PORT"
    )]
    admin_addr: std::net::SocketAddr,
    /// Force DryRun on every policy: decide, record and report, never evict (a safe
    /// first install).
    #[arg(long, env = "FULCRUM_DRY_RUN")]
    dry_run: bool,
    /// Retries of an eviction that failed with 5xx, a timeout or a connection error
    /// (exponential backoff), before it is reported Failed.
    #[arg(long, env = "FULCRUM_EVICTION_RETRIES", default_value_t = 3)]
    eviction_retries: usize,
    /// Time limit of one Kubernetes API call made to act (eviction, taint).
    #[arg(long, env = "FULCRUM_API_TIMEOUT", default_value = "10s", value_parser = parse_duration_ms)]
    api_timeout: u64,
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text.
    Text,
    /// JSON.
    Json,
}

fn parse_duration_ms(text: &str) -> Result<u64, String> {
    Duration::new(text).to_millis().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<bool> = match cli.command {
        Command::Crd => {
            print!("{}", crd_yaml());
            Ok(true)
        }
        Command::CheckPolicy { files } => {
            check_files(&files, &mut std::io::stdout().lock()).map_err(Into::into)
        }
        Command::Demo(args) => showcase::demo(args),
        Command::Bench(args) => showcase::bench(args),
        Command::Replay(args) => replay(args),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A watch that turns true on SIGINT or SIGTERM.
fn shutdown_signal(rt: &tokio::runtime::Runtime) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Runs `fulcrum replay`; problems with individual lines or policies go to stderr.
fn replay(args: ReplayArgs) -> anyhow::Result<bool> {
    let input = ReplayInput {
        cluster: args.cluster.clone(),
        policies: args.policies.clone(),
        config: args.engine.config(),
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (report, source) = match (&args.events, args.kafka.settings()) {
        (Some(events), _) => (
            replay_files_within(
                &input,
                events,
                now_ms,
                args.input.spec(args.engine.lateness)?,
                args.max_sort_bytes,
            )?,
            events.display().to_string(),
        ),
        (None, Some(settings)) => {
            fulcrum::telemetry::init_logging(false);
            (replay_kafka(&input, &settings, &args)?, String::new())
        }
        (None, None) => anyhow::bail!("give --events FILE or --brokers with --topic"),
    };
    let mut stderr = std::io::stderr().lock();
    for problem in &report.cluster_problems {
        writeln!(stderr, "{problem}")?;
    }
    if let Some(d) = &report.sorted {
        writeln!(
            stderr,
            "{source}:{}: goes back in time by {} ms: the file is not in time order (sorted by node?); replayed sorted by time",
            d.line,
            d.newest_ms - d.ts_ms
        )?;
    }
    for (name, errors) in &report.invalid_policies {
        for error in errors {
            writeln!(stderr, "{name}: skipped: {error}")?;
        }
    }
    const SHOWN: usize = 20;
    for e in report.line_errors.iter().take(SHOWN) {
        let at = if source.is_empty() {
            e.location.clone()
        } else {
            format!("{source}:{}", e.location)
        };
        writeln!(stderr, "{at}: {} ({})", e.error, e.error.reason())?;
    }
    if report.line_errors.len() > SHOWN {
        writeln!(
            stderr,
            "... and {} more rejected lines",
            report.line_errors.len() - SHOWN
        )?;
    }
    if args.follow {
        return Ok(true); // events were printed as they happened
    }
    print_report(&report, args.output)?;
    Ok(true)
}

fn print_report(report: &ReplayReport, output: Output) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer(&mut stdout, &render_json(report)).context("writing JSON")?;
            writeln!(stdout)?;
        }
        Output::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            write!(stdout, "{}", render_text(report, color))?;
        }
    }
    Ok(())
}

fn replay_kafka(
    input: &ReplayInput,
    settings: &KafkaSettings,
    args: &ReplayArgs,
) -> anyhow::Result<ReplayReport> {
    let (mut engine, invalid_policies, cluster_problems) = prepare(input)?;
    let rt = runtime()?;
    let shutdown = shutdown_signal(&rt);
    let mut events = Vec::new();
    let follow = args.follow;
    let output = args.output;
    let summary = read_topic(
        settings,
        args.input.spec(args.engine.lateness)?,
        &mut engine,
        input.config.lateness_ms,
        follow,
        &shutdown,
        |event| {
            if follow {
                print_event(event, output);
            } else {
                events.push(event.clone());
            }
        },
    )
    .with_context(|| format!("reading topic {} from {}", settings.topic, settings.brokers))?;
    Ok(ReplayReport {
        events,
        line_errors: summary
            .errors
            .into_iter()
            .map(|(location, error)| LineError { location, error })
            .collect(),
        lines: summary.messages,
        invalid_policies,
        engine,
        sorted: None,
        cluster_problems,
        input: summary.input,
    })
}

fn print_event(event: &Event, output: Output) {
    let mut stdout = std::io::stdout().lock();
    let _ = match output {
        Output::Json => serde_json::to_writer(&mut stdout, event).map_err(std::io::Error::other),
        Output::Text => write!(stdout, "{}", fulcrum::replay::output::event_line(event)),
    };
    let _ = writeln!(stdout);
    let _ = stdout.flush();
}

/// Runs the operator (or shadow mode with `--cluster`) until SIGINT/SIGTERM.
fn run(args: RunArgs) -> anyhow::Result<bool> {
    let json_logs = args.log_json || args.log_format == LogFormat::Json;
    if args.cluster.is_empty() {
        return operator::run(args, json_logs);
    }
    fulcrum::telemetry::init_logging(json_logs);
    anyhow::ensure!(
        !args.policies.is_empty(),
        "shadow mode (--cluster) needs at least one --policy file"
    );
    let settings = args
        .kafka
        .settings()
        .context("--brokers (or FULCRUM_KAFKA_BROKERS) is required")?;
    let (engine, invalid, problems) =
        build_engine(&args.cluster, &args.policies, args.engine.config())?;
    for problem in problems {
        tracing::warn!(%problem, "cluster snapshot");
    }
    for (name, errors) in &invalid {
        for error in errors {
            tracing::warn!(policy = %name, %error, "invalid policy skipped");
        }
    }
    let options = args.feed_options(settings)?;
    let rt = runtime()?;
    let shutdown = shutdown_signal(&rt);
    let health = Arc::new(FeedHealth::default());
    let stats = Arc::new(FeedStats::default());
    let (tx, mut rx) = mpsc::channel::<Report>(1024);
    let output = args.output;
    let printer = rt.spawn(async move {
        while let Some(report) = rx.recv().await {
            if let Report::Engine(event) = report {
                print_event(&event, output);
            }
        }
    });
    let io = RunnerIo {
        actuator: Shadow,
        reports: tx,
        updates: None,
        policies: None,
        health,
        stats: stats.clone(),
        shutdown,
        observer: None,
    };
    let result = rt.block_on(fulcrum::runner::run(options, engine, io));
    let _ = rt.block_on(printer);
    let engine = result?;
    let engine = fulcrum::feed::EngineSnapshot::summary(&engine);
    let summary = serde_json::json!({"kind": "Stopped", "feed": &*stats, "engine": engine});
    tracing::info!(%summary, "stopped");
    print_stop(&summary);
    Ok(true)
}

fn print_stop(summary: &serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{summary}");
    let _ = stdout.flush();
}

#[cfg(test)]
#[path = "cli/main_tests.rs"]
mod tests;
