//! The `fulcrum` command line: wiring only; the work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fulcrum::check::check_files;
use fulcrum::engine::EngineConfig;
use fulcrum::manifest::crd_yaml;
use fulcrum::replay::{ReplayInput, render_json, render_text, replay_files};
use fulcrum_policies::Duration;

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
    /// policies are InterferencePolicy documents, events are JSON Lines of fulcrum.metrics/v1
    /// messages. Bad event lines are reported on stderr with their line numbers and skipped.
    /// Exits 0 unless an input is unusable (2).
    Replay {
        /// Cluster snapshot (YAML or JSON); repeatable.
        #[arg(long, required = true, value_name = "FILE")]
        cluster: Vec<PathBuf>,
        /// Policy file; repeatable.
        #[arg(long = "policy", required = true, value_name = "FILE")]
        policies: Vec<PathBuf>,
        /// Samples as JSON Lines.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// How late a sample may arrive (event time) and still be applied in order.
        #[arg(long, default_value = "15s", value_parser = parse_duration_ms)]
        lateness: u64,
        /// A node or series without samples this long is stale and never acted on.
        #[arg(long, default_value = "60s", value_parser = parse_duration_ms)]
        stale_after: u64,
    },
}

/// Output formats of `replay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A readable timeline and summary.
    Text,
    /// One JSON object: {"decisions":[...],"summary":{...}}.
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
        Command::Replay {
            cluster,
            policies,
            events,
            output,
            lateness,
            stale_after,
        } => {
            let config = EngineConfig {
                lateness_ms: lateness,
                stale_after_ms: stale_after,
                ..EngineConfig::default()
            };
            replay(
                ReplayInput {
                    cluster,
                    policies,
                    config,
                },
                &events,
                output,
            )
        }
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

/// Runs `fulcrum replay`; problems with individual lines or policies go to stderr.
fn replay(input: ReplayInput, events: &std::path::Path, output: Output) -> anyhow::Result<bool> {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let report = replay_files(&input, events, now_ms)?;
    let mut stderr = std::io::stderr().lock();
    for (name, errors) in &report.invalid_policies {
        for error in errors {
            writeln!(stderr, "{name}: skipped: {error}")?;
        }
    }
    const SHOWN: usize = 20;
    for e in report.line_errors.iter().take(SHOWN) {
        writeln!(
            stderr,
            "{}:{}: {} ({})",
            events.display(),
            e.line,
            e.error,
            e.error.reason()
        )?;
    }
    if report.line_errors.len() > SHOWN {
        writeln!(
            stderr,
            "... and {} more rejected lines",
            report.line_errors.len() - SHOWN
        )?;
    }
    let mut stdout = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer(&mut stdout, &render_json(&report)).context("writing JSON")?;
            writeln!(stdout)?;
        }
        Output::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            write!(stdout, "{}", render_text(&report, color))?;
        }
    }
    Ok(true)
}
