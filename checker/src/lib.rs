//! `dynamo-checker`: a stateright model of a Dynamo cluster that drives the shared protocol core,
//! and the history checkers that judge what real clusters' clients saw.
//!
//! The storage-node actor calls the very `Node::handle` the production node runs, so changing the
//! protocol in `dynamo-model` changes what is checked; nothing here re-implements the protocol.
//!
//! - [`actors`]: the node and client actors and the wire type;
//! - [`setup`]: named configurations, their bounds, and the `ActorModel` built from them;
//! - [`properties`]: the specification (always / sometimes properties with expected outcomes);
//! - [`register_view`]: the register view fed to stateright's linearizability tester;
//! - [`run`]: running a check (BFS, DFS or simulation) and judging its outcomes;
//! - [`trace`]: counterexamples as readable message-sequence traces;
//! - [`history`]: Jepsen-style histories and their checkers (linearizability, set-full,
//!   convergence, sibling-register validity) with HTML reports;
//! - [`cli`]: the `dynamo-check model | mutants | explore | history` subcommands, as library code
//!   so that the binary stays a thin dispatcher.

pub mod actors;
pub mod cli;
pub mod history;
pub mod properties;
pub mod register_view;
pub mod run;
pub mod setup;
pub mod symmetry;
pub mod trace;

pub use dynamo_model::mutant::Mutant;
