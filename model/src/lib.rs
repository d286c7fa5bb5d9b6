//! The Dynamo protocol core.
