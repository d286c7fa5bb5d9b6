//! The Dynamo protocol core: a sans-IO, deterministic state machine.
//!
//! This crate is the one implementation of the protocol. The model checker (`dynamo-checker`)
//! explores it and the production node (`dynamo-node`) runs it; neither re-implements any of it.
//! [`Node::handle`] takes an [`Input`] (client request, peer message, timer) and the current time,
//! and appends [`Effect`]s (send, reply, set or cancel a timer). It does no I/O and has no clock or
//! randomness of its own. Durable state goes through the [`Store`] trait.
//!
//! Modules follow the paper's vocabulary (DeCandia et al., SOSP 2007): [`ring`] (§4.2, §6.2),
//! [`clock`] and [`versioned`] (§4.4), [`coordinator`] and [`replica`] (§4.5), [`handoff`]
//! (§4.6); [`sim`] drives many nodes in a seeded, deterministic simulated network.
//!
//! ```
//! use dynamo_model::{ClientOp, ClientReply, Context, Key};
//! use dynamo_model::sim::{Faults, Sim, SimConfig};
//!
//! // Five nodes, N = 3, R = W = 2, on a simulated network without faults.
//! let mut sim = Sim::new(SimConfig { faults: Faults::none(), ..SimConfig::default() })?;
//! let key = Key::from("cart");
//! let coordinator = sim.primaries(&key)[0];
//! let put = ClientOp::put(key.clone(), Context::new(), b"milk".to_vec());
//! assert!(matches!(sim.request(coordinator, put), Some(ClientReply::Written { .. })));
//! match sim.request(coordinator, ClientOp::get(key)) {
//!     Some(ClientReply::Read { values, .. }) => assert_eq!(values, [b"milk".to_vec()]),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), dynamo_model::ConfigError>(())
//! ```

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod handoff;
pub mod ids;
pub mod invariants;
pub mod lineage;
pub mod marks;
pub mod msg;
#[cfg(feature = "mutants")]
pub mod mutant;
pub mod node;
pub mod replica;
pub mod ring;
pub mod sim;
pub mod store;
pub mod versioned;
pub mod wire;

pub use clock::{CausalOrder, ClockError, Context, Dot, DotRun, VClock};
pub use config::{
    Config, ConfigError, ConfigParams, Limits, Timeouts, PARTITIONS_MAX, TIMEOUT_MS_MAX,
};
pub use ids::{ActorId, Key, NodeId, OpId, PartitionId, RequestId};
pub use msg::{Action, ClientOp, ClientReply, Msg, RequestError};
pub use node::{dependency, Basis, Effect, Input, Node, Record, Stats, Timer};
pub use ring::Ring;
pub use store::{MemStore, Store, StoreError};
pub use versioned::{Payload, PutError, Siblings, Version, Writer};
