//! `dynamo-check`: the command-line front of the model checker and the history checkers.
//!
//! Only argument parsing and dispatch live here; each subcommand is a module of
//! `dynamo_checker::cli`. Add a subcommand by adding a variant to [`Command`].

/// mimalloc: a model check clones and drops millions of small states (sibling sets, clocks,
/// maps), and the system allocator spent about a third of the run's time on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dynamo_checker::cli;
use dynamo_checker::cli::model::{explore, list_mutants, run_model, ExploreArgs, ModelArgs};

#[derive(Debug, Parser)]
#[command(name = "dynamo-check", version, about = "Check Dynamo models and recorded histories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a named configuration exhaustively (or by simulation) against every property
    /// (exit 0 all expectations met, 1 a property failed, 2 incomplete).
    Model(ModelArgs),
    /// List the seeded protocol bugs, one per line.
    Mutants,
    /// Serve stateright's Explorer web UI for a configuration on 127.0.0.1.
    Explore(ExploreArgs),
    /// Judge a recorded Jepsen-style history (exit 0 valid, 1 invalid, 2 unknown, 254 bad input).
    History(cli::history::HistoryArgs),
}

fn main() -> ExitCode {
    let parsed = match Cli::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help and version are not errors; anything else is a bad argument.
            let code = if e.use_stderr() { cli::EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match &parsed.command {
        Command::Model(args) => exit_code(run_model(args)),
        Command::Mutants => {
            print!("{}", list_mutants());
            0
        }
        Command::Explore(args) => exit_code(explore(args)),
        Command::History(args) => cli::history::main(args),
    };
    ExitCode::from(code)
}

fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(cli::EXIT_BAD_INPUT)
}
