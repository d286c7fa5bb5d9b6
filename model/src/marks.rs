//! Effects held until a sync, for drivers that keep their store in memory: the simulator
//! ([`crate::sim::Syncs`]) and the model checker's unsynced mode hold each effect exactly as the
//! node's driver does under `always`, by [`dependency`] over write marks.
//!
//! The driver's store counts its writes, and an fsync covers those made before it started. Here a
//! sync is one instant that covers every write made so far, so all a mark has to tell is whether
//! the next sync is still needed: what a node wrote since its last sync (the keys, whether a hint)
//! and, for each client request it took, whether the answer waits for such a write. An effect
//! depends on its own step's writes, or on the last write of what it was built from; once a sync
//! covered them it may leave. Two nodes whose writes are all durable hold equal marks whatever
//! they wrote before, which keeps the checker's states canonical (and its state space finite).
//!
//! ```
//! use dynamo_model::marks::Marks;
//! use dynamo_model::{ActorId, ClientOp, Config, ConfigParams, Context, Input, Key, MemStore};
//! use dynamo_model::{Node, NodeId, RequestId, Ring};
//! use std::sync::Arc;
//!
//! let config = Arc::new(Config::new(ConfigParams::for_nodes([NodeId(0)]))?);
//! let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
//! let mut node = Node::new(ActorId::new(NodeId(0), 0), config, ring, MemStore::default());
//! let mut marks = Marks::default();
//! let put = ClientOp::put(Key::from("k"), Context::new(), b"v".to_vec());
//! let step = marks.step(&mut node, 0, Input::Client { req: RequestId(1), op: put }, false);
//! // The put's answer waits for the write it made; once synced, it may leave.
//! assert!(marks.unsynced() && !step.held.is_empty());
//! marks.synced();
//! assert!(!marks.unsynced());
//! # Ok::<(), dynamo_model::ConfigError>(())
//! ```

use crate::ids::{Key, RequestId};
use crate::node::{dependency, Effect, Input, Node, Record};
use crate::store::MemStore;
use std::collections::{BTreeMap, BTreeSet};

/// What a node wrote that no sync covered yet, and which of its client requests' answers wait
/// for such a write (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Marks {
    /// Whether some write is not yet durable.
    unsynced: bool,
    /// The keys whose data was written since the last sync.
    keys: BTreeSet<Key>,
    /// Whether a hint changed since the last sync.
    hints: bool,
    /// For each client request the node took and has not answered, whether its answer waits for
    /// a write no sync covered yet.
    requests: BTreeMap<RequestId, bool>,
}

/// What one step made, split by whether it may leave now.
#[derive(Debug, Default)]
pub struct Step {
    /// Effects that may leave at once (timer effects always may), in order.
    pub ready: Vec<Effect>,
    /// Effects that wait for the next sync, in order.
    pub held: Vec<Effect>,
    /// Of `ready`, how many left while some write of the node was not yet durable.
    pub early: usize,
    /// Whether the step changed the store.
    pub wrote: bool,
}

impl Marks {
    /// Whether some write is not yet durable.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Hands `input` to `node` at `now_ms` and splits the effects by what they depend on
    /// ([`dependency`]). With `answer_early`, a flaw on purpose, a client's answer leaves at once
    /// whatever it depends on.
    pub fn step(
        &mut self,
        node: &mut Node<MemStore>,
        now_ms: u64,
        input: Input,
        answer_early: bool,
    ) -> Step {
        let stored = node.store().clone();
        // Marks as `dependency` takes them, with the last sync at 0: 1 for writes made before
        // this step and not yet durable, 2 for this step's own.
        let read = node.reads(&input).map(|r| {
            u64::from(match r {
                Record::Data(key) => self.keys.contains(key),
                Record::Hint(..) => self.hints,
            })
        });
        let taken = match &input {
            Input::Client { req, .. } => Some(*req),
            _ => None,
        };
        let mut effects = Vec::new();
        node.handle(now_ms, input, &mut effects);
        let before = u64::from(self.unsynced);
        let wrote = *node.store() != stored;
        let after = if wrote { 2 } else { before };
        if wrote {
            self.unsynced = true;
            let now = node.store();
            for k in now.data.keys().chain(stored.data.keys()) {
                if stored.data.get(k) != now.data.get(k) {
                    self.keys.insert(k.clone());
                }
            }
            self.hints |= stored.hints != now.hints;
        }
        if let Some(req) = taken {
            self.requests.insert(req, read.unwrap_or(after) > 0);
        }
        // As the driver: what a peer message's step read counts for the answer to a `Fetch`,
        // what a client request's step read for the request's answer.
        let fetched = if taken.is_some() { None } else { read };
        let mut step = Step { wrote, ..Step::default() };
        for e in effects {
            if matches!(e, Effect::SetTimer { .. } | Effect::CancelTimer(_)) {
                step.ready.push(e);
                continue;
            }
            let started = match &e {
                Effect::Reply { req, .. } => self.requests.remove(req).map(u64::from),
                _ => None,
            };
            let needs = match e {
                Effect::Reply { .. } if answer_early => 0,
                _ => dependency(&e, before, after, started, fetched),
            };
            if needs == 0 {
                step.early += usize::from(self.unsynced);
                step.ready.push(e);
            } else {
                step.held.push(e);
            }
        }
        step
    }

    /// A sync made every write so far durable.
    pub fn synced(&mut self) {
        self.unsynced = false;
        self.keys.clear();
        self.hints = false;
        for waits in self.requests.values_mut() {
            *waits = false;
        }
    }
}
