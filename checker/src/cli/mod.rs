//! Subcommands of the `dynamo-check` binary, kept in the library so the binary only parses
//! arguments and dispatches. Each subcommand module exposes a clap `Args` struct and a `main`
//! that returns the process exit code.

pub mod history;
pub mod model;

/// Exit code for a valid verdict.
pub const EXIT_VALID: u8 = 0;
/// Exit code for an invalid verdict.
pub const EXIT_INVALID: u8 = 1;
/// Exit code when the checker could not decide within its budget.
pub const EXIT_UNKNOWN: u8 = 2;
/// Exit code for bad arguments or unreadable input.
pub const EXIT_BAD_INPUT: u8 = 254;
