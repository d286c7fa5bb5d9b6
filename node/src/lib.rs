//! The production Dynamo node: a thin tokio + sled + postcard driver around `dynamo-model`.
//!
//! Every protocol decision is made by [`dynamo_model::Node::handle`]; this crate moves bytes,
//! timers and disk writes. Layout (after mini-redis):
//!
//! - [`server`]: start and stop a node (accept loops, tasks, shutdown order);
//! - [`connection`]: framed peer connections with a handshake, reconnect and bounded queues;
//! - [`outbox`]: the send buffer of a peer link that the driver and the link's task share;
//! - [`driver`]: the one task that owns the core, batches inputs, group-commits, runs effects;
//! - [`storage`]: the sled [`dynamo_model::Store`] (the only module that names sled);
//! - [`api`]: the Riak-shaped HTTP API; [`metrics`]: Prometheus text;
//! - [`config`], [`shutdown`], [`error`]; [`client`], [`cli`], [`dev`] and [`bench`](mod@bench) for the
//!   `dynamo` binary.

pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod connection;
pub mod dev;
pub mod driver;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod server;
pub mod shutdown;
pub mod storage;

pub use config::{ClusterSecret, NodeConfig, ServeArgs, SyncPolicy};
pub use error::NodeError;
pub use server::{start, RunningNode};
