//! `dynamo-check history FILE --model ...`: judge a recorded history and print the verdict.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown (budget exhausted), 254 bad arguments or
//! unreadable input; input errors name the offending line.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::history::linear::{self, Budget, LinearError, Model};
use crate::history::parse::{read_history, ParseError};
use crate::history::siblings::Quorum;
use crate::history::{convergence, report, set_full, siblings};
use crate::history::{HistoryError, KeyMode, Validity, Verdict};

use super::{EXIT_BAD_INPUT, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID};

/// Which property to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckModel {
    /// Linearizable read/write register, per key.
    Register,
    /// Linearizable read/write/compare-and-set register, per key.
    CasRegister,
    /// Jepsen's set-full: no acknowledged element lost.
    Set,
    /// Final reads on every node agree and keep every unsuperseded acknowledged write.
    Convergence,
    /// Sibling register: no phantom values; no stale reads under a declared strict quorum.
    Siblings,
}

/// Where keys are found in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeysArg {
    /// `key` field if present, else `[key value]` tuples if every invocation has one.
    Auto,
    /// The `key` field.
    Field,
    /// `[key value]` tuples, as Jepsen's independent checker.
    Tuple,
    /// One key for the whole history.
    None,
}

/// Arguments of `dynamo-check history`.
#[derive(Clone, Debug, clap::Args)]
pub struct HistoryArgs {
    /// History file: JSON lines or Jepsen EDN, one operation per line.
    pub file: PathBuf,
    /// The property to check.
    #[arg(long, value_enum)]
    pub model: CheckModel,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Give up with "unknown" after this many seconds (linearizability).
    #[arg(long, value_name = "S")]
    pub time_limit: Option<f64>,
    /// Give up with "unknown" when one key's search holds more configurations than this
    /// (a memory bound for linearizability).
    #[arg(long, value_name = "N")]
    pub configurations_max: Option<usize>,
    /// Where keys are found.
    #[arg(long, value_enum, default_value = "auto")]
    pub keys: KeysArg,
    /// Replicas per key the run used (siblings; with --r and --w declares the quorum).
    #[arg(long)]
    pub n: Option<u32>,
    /// Read quorum the run used.
    #[arg(long)]
    pub r: Option<u32>,
    /// Write quorum the run used.
    #[arg(long)]
    pub w: Option<u32>,
    /// The run used sloppy quorums: stale reads are reported, not violations.
    #[arg(long)]
    pub sloppy: bool,
}

/// Why the subcommand could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that parse but make no sense.
    #[error("bad arguments: {0}")]
    BadArgs(String),
    /// The history file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The history could not be parsed.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ParseError,
    },
    /// The history is malformed.
    #[error("{path}: {source}")]
    History {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HistoryError,
    },
    /// The history does not fit the model.
    #[error("{path}: {source}")]
    Linear {
        /// The file.
        path: PathBuf,
        /// Why.
        source: LinearError,
    },
    /// The report could not be written.
    #[error("cannot write report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Run the subcommand, print the verdict to stdout (errors to stderr), return the exit code.
pub fn main(args: &HistoryArgs) -> u8 {
    let stdout = std::io::stdout();
    match run(args, &mut stdout.lock()) {
        Ok(validity) => exit_code(validity),
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    }
}

/// The exit code for a verdict.
pub fn exit_code(validity: Validity) -> u8 {
    match validity {
        Validity::Valid => EXIT_VALID,
        Validity::Invalid => EXIT_INVALID,
        Validity::Unknown => EXIT_UNKNOWN,
    }
}

/// Check the file named in `args`, writing the explanation to `out`.
pub fn run(args: &HistoryArgs, out: &mut dyn Write) -> Result<Validity, CliError> {
    let budget = budget(args)?;
    let quorum = quorum(args)?;
    let path = args.file.clone();
    let file = File::open(&path).map_err(|source| CliError::Open { path: path.clone(), source })?;
    let history = read_history(BufReader::new(file))
        .map_err(|source| CliError::Parse { path: path.clone(), source })?
        .keyed(key_mode(args.keys));
    let history_err = |source| CliError::History { path: path.clone(), source };
    let verdict: Verdict = match args.model {
        CheckModel::Register | CheckModel::CasRegister => {
            let model = if args.model == CheckModel::Register {
                Model::Register
            } else {
                Model::CasRegister
            };
            linear::check(&history, model, budget)
                .map_err(|source| CliError::Linear { path: path.clone(), source })?
                .verdict(&history)
        }
        CheckModel::Set => set_full::check(&history).map_err(history_err)?.verdict(&history),
        CheckModel::Convergence => {
            convergence::check(&history).map_err(history_err)?.verdict(&history)
        }
        CheckModel::Siblings => {
            siblings::check(&history, quorum).map_err(history_err)?.verdict(&history)
        }
    };
    // The verdict matters more than a closed stdout, so a failed print is not an error.
    let _ = write!(out, "{}", verdict.explanation);
    if let Some(html_path) = &args.html {
        let title = format!("{} — {}", path.display(), verdict.validity.name());
        std::fs::write(html_path, report::render(&history, &verdict, &title))
            .map_err(|source| CliError::Report { path: html_path.clone(), source })?;
        let _ = writeln!(out, "report written to {}", html_path.display());
    }
    Ok(verdict.validity)
}

fn budget(args: &HistoryArgs) -> Result<Budget, CliError> {
    let deadline = match args.time_limit {
        None => None,
        Some(s) if s.is_finite() && s >= 0.0 => Some(
            Instant::now()
                + Duration::try_from_secs_f64(s).map_err(|e| CliError::BadArgs(e.to_string()))?,
        ),
        Some(s) => {
            return Err(CliError::BadArgs(format!(
                "--time-limit must be a non-negative number of seconds, got {s}"
            )))
        }
    };
    Ok(Budget { deadline, cache_entries_max: args.configurations_max })
}

fn quorum(args: &HistoryArgs) -> Result<Option<Quorum>, CliError> {
    match (args.n, args.r, args.w) {
        (Some(n), Some(r), Some(w)) => {
            if r == 0 || w == 0 || r > n || w > n {
                return Err(CliError::BadArgs(format!(
                    "need 1 <= R, W <= N, got N={n} R={r} W={w}"
                )));
            }
            Ok(Some(Quorum { n, r, w, sloppy: args.sloppy }))
        }
        (None, None, None) => Ok(None),
        _ => Err(CliError::BadArgs("--n, --r and --w must be given together".into())),
    }
}

fn key_mode(keys: KeysArg) -> KeyMode {
    match keys {
        KeysArg::Auto => KeyMode::Auto,
        KeysArg::Field => KeyMode::Field,
        KeysArg::Tuple => KeyMode::Tuple,
        KeysArg::None => KeyMode::None,
    }
}
