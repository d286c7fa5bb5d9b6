//! `dynamo-check`: the command-line front of the model checker and the history checkers.
//!
//! Only argument parsing and dispatch live here; each subcommand is a module of
//! `dynamo_checker::cli`. Add a subcommand by adding a variant to [`Command`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dynamo_checker::cli;

#[derive(Debug, Parser)]
#[command(name = "dynamo-check", version, about = "Check Dynamo models and recorded histories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        Command::History(args) => cli::history::main(args),
    };
    ExitCode::from(code)
}
