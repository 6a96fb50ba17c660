//! The `fulcrum` command line: wiring only; the work lives in the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulcrum::manifest::{crd_yaml, read_documents};
use fulcrum_policies::document::check_document;

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
    /// Reads multi-document YAML or JSON (`-` for standard input). Exits 0 when every policy
    /// is valid, 1 otherwise.
    CheckPolicy {
        /// Policy files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => {
            print!("{}", crd_yaml());
            Ok(true)
        }
        Command::CheckPolicy { files } => check_policies(&files),
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

/// Checks every policy in `files`; prints one line per problem. Returns whether all are valid.
fn check_policies(files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut all_valid = true;
    for file in files {
        let shown = file.display();
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            text
        } else {
            match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(err) => {
                    println!("{shown}: cannot read: {err}");
                    all_valid = false;
                    continue;
                }
            }
        };
        let documents = match read_documents(&text) {
            Ok(documents) => documents,
            Err(err) => {
                println!("{shown}: {err}");
                all_valid = false;
                continue;
            }
        };
        if documents.is_empty() {
            println!("{shown}: no policy found");
            all_valid = false;
        }
        for doc in &documents {
            let name = doc
                .value
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("(unnamed)");
            match check_document(&doc.value) {
                Ok(_) => println!("{shown}: {name}: valid"),
                Err(errors) => {
                    all_valid = false;
                    for error in errors {
                        println!("{shown}: {name} (document {}): {error}", doc.position);
                    }
                }
            }
        }
    }
    Ok(all_valid)
}
