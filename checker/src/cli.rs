//! Command-line front ends, as library code so the `dynamo-check` binary stays a thin dispatcher.

pub mod model;
