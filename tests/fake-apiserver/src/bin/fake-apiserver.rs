//! `fake-apiserver`: runs the fake Kubernetes API server for manual runs and kubectl.
//!
//! Loads seed objects (a `List`, multi-document YAML or JSON), listens on 127.0.0.1, writes a
//! kubeconfig and prints the URL, then serves until interrupted.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fulcrum_fake_apiserver::FakeApiServer;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "fake-apiserver",
    about = "A fake Kubernetes API server for tests"
)]
struct Args {
    /// Seed objects: a Kubernetes List, multi-document YAML or JSON (repeatable).
    #[arg(long = "seed", short = 's')]
    seeds: Vec<PathBuf>,
    /// Port on 127.0.0.1 (0 = random).
    #[arg(long, short = 'p', default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig pointing at the server.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch bookmark interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    bookmark_ms: u64,
    /// How long gracefully deleted pods stay terminating, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pod_termination_ms: u64,
    /// Disable the pod-replacing controller and the scheduler.
    #[arg(long)]
    no_controllers: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let api = FakeApiServer::builder()
        .port(args.port)
        .bookmark_interval(Duration::from_millis(args.bookmark_ms))
        .pod_termination_delay(Duration::from_millis(args.pod_termination_ms))
        .controllers(!args.no_controllers)
        .try_start()?;
    for seed in &args.seeds {
        let text = std::fs::read_to_string(seed)?;
        let n = api.apply_manifest(&text)?;
        eprintln!("loaded {n} objects from {}", seed.display());
    }
    if let Some(path) = &args.kubeconfig {
        api.write_kubeconfig(path)?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    println!("{}", api.url());
    loop {
        std::thread::park();
    }
}
