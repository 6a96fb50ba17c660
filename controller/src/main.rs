//! The `fulcrum` command line: wiring only; the work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fulcrum::check::check_files;
use fulcrum::manifest::crd_yaml;

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
