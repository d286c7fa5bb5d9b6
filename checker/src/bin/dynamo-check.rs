//! `dynamo-check`: the model checker's command line. All logic lives in
//! `dynamo_checker::cli`; this file only parses and dispatches.

use clap::{Parser, Subcommand};
use dynamo_checker::cli::model::{explore, list_mutants, run_model, ExploreArgs, ModelArgs};

#[derive(Parser, Debug)]
#[command(name = "dynamo-check", about = "Model checker for the Dynamo protocol core")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a named configuration exhaustively (or by simulation) against every property.
    Model(ModelArgs),
    /// List the seeded protocol bugs, one per line.
    Mutants,
    /// Serve stateright's Explorer web UI for a configuration.
    Explore(ExploreArgs),
}

fn main() {
    let code = match Cli::parse().cmd {
        Cmd::Model(args) => run_model(&args),
        Cmd::Mutants => {
            print!("{}", list_mutants());
            0
        }
        Cmd::Explore(args) => explore(&args),
    };
    std::process::exit(code);
}
