//! The model checker and the history checkers.
//!
//! [`history`] judges Jepsen-style histories recorded by cluster tests (linearizability,
//! set-full, convergence, sibling-register validity) and renders HTML reports; [`cli`] holds the
//! subcommands of the `dynamo-check` binary so that the binary itself stays thin.

pub mod cli;
pub mod history;
