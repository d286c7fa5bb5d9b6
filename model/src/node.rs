//! `Node`: one storage node's protocol state, and [`Node::handle`], the core's one entry point.
//!
//! Inputs go in, [`Effect`]s come out; the node does no I/O and reads no clock or randomness of
//! its own (time arrives with every call). Durable state lives in the [`Store`]; everything else
//! (operations in progress, suspicions) is volatile and lost on a crash.
//!
//! **Durability rule.** The effects produced by one `handle` call may leave the process only after
//! the store writes made during that call are durable under the driver's sync policy. A replica
//! acknowledges a write by emitting an effect, so acknowledging before syncing could lose an
//! acknowledged write on a crash. Drivers batch several calls and sync once per batch.
//!
//! One kind of effect is exempt: a copy of stored siblings sent for a peer to keep (a `Store` or
//! a `Handoff`, [`Basis::Replication`]) acknowledges nothing, so it may leave before any write is
//! durable, provided the driver takes a new incarnation (a new [`ActorId`]) whenever the node
//! restarts after a crash. The copy's receiver makes it durable before acknowledging it; what
//! rests on the sender's own copy (its answer to the client, counting it among the W) still
//! waits for the sender's writes; and if the sender crashes and loses a version it had sent, the
//! new incarnation never issues that version's counter again, so no two different versions can
//! come to share a dot.

use crate::clock::CONTEXT_COUNTER_MAX;
use crate::config::Config;
use crate::coordinator::Coord;
use crate::ids::{ActorId, Key, NodeId, OpId, RequestId};
use crate::msg::{Action, ClientOp, ClientReply, Msg, RequestError};
use crate::ring::Ring;
use crate::store::Store;
use crate::versioned::Siblings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The largest per-request timeout a client may ask for.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 60_000;

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Input {
    /// The node (re)started: arm the background tick.
    Start,
    /// A client asked for something. `req` must be unique on this node for its lifetime.
    Client {
        /// The request's id, echoed in the reply.
        req: RequestId,
        /// The operation.
        op: ClientOp,
    },
    /// A peer sent a message.
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: Msg,
    },
    /// A timer set earlier fired.
    Timer(Timer),
}

/// The node's named timers. Setting a timer that is already set re-arms it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// A coordinated operation's next deadline.
    Op(OpId),
    /// A forwarded request's deadline.
    Forward(RequestId),
    /// The background tick: hinted handoff and probes.
    Tick,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Effect {
    /// Send `msg` to `to`. Delivery may fail; the protocol copes.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: Msg,
    },
    /// Answer the client request `req`.
    Reply {
        /// The request.
        req: RequestId,
        /// The answer.
        reply: ClientReply,
    },
    /// Fire `timer` after `after_ms`.
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// Delay in ms.
        after_ms: u64,
    },
    /// Forget `timer`.
    CancelTimer(Timer),
}

/// What an outward effect is built from, for a driver that lets each effect out once the store
/// writes it depends on are durable, rather than after every write so far. Every effect but a
/// copy for a peer to keep ([`Basis::Replication`]) depends at least on the writes of the
/// [`Node::handle`] call that made it (the durability rule above); this says what else it may
/// carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Nothing read from the store: a `Fetch` or a `Forward` (a key, a client's own request,
    /// ids) or a probe.
    Nothing,
    /// The one sibling set the call read for the `Fetch` it answers: the hint kept for the
    /// `Fetch`'s `intended` node when that is another node, else the key's primary data.
    Fetched,
    /// A client's answer: what the call that took the request read or wrote (a get reads only
    /// its key's sibling set; a put writes the new version), and peers' answers, each of which
    /// its sender let out under this same rule.
    Request,
    /// Nothing at all, not even the call's own writes: a copy of stored siblings for the
    /// receiver to keep (`Store`, `Handoff`), which the receiver makes durable itself before it
    /// acknowledges. Only for a driver that takes a new incarnation after every crash (see the
    /// durability rule in the module's documentation).
    Replication,
    /// Anything the store held up to the end of the call, or that the node remembers of it.
    Everything,
}

/// The write mark that must be durable before `effect` may leave, for a driver that counts its
/// store's writes (its write mark) and lets each effect out once a sync covers what it depends
/// on: its own call's writes, and what it is built from ([`Effect::basis`]); nothing for a copy
/// for a peer to keep ([`Basis::Replication`]). `effect` was made by a [`Node::handle`] call
/// during which the write mark went from `before` to `after`; `started` is, for a reply to a
/// client, what the request depends on (`None` when unknown): the write mark at the end of the
/// call that took it, or for a get the mark of the last write of its key not yet durable (0 if
/// none); `fetched` is, when the call answered a `Fetch`, the mark of the last write not yet
/// durable of what it read ([`Node::reads`]). The node's driver holds effects by it, and so do
/// the simulator ([`crate::sim::Syncs`]) and the model checker's unsynced mode, through
/// [`crate::marks`].
pub fn dependency(
    effect: &Effect,
    before: u64,
    after: u64,
    started: Option<u64>,
    fetched: Option<u64>,
) -> u64 {
    let own = if after > before { after } else { 0 };
    let basis = match effect.basis() {
        Basis::Replication => return 0,
        Basis::Nothing => Some(0),
        Basis::Fetched => fetched,
        Basis::Request => started,
        Basis::Everything => None,
    };
    basis.map_or(after, |b| own.max(b))
}

impl Effect {
    /// What this effect is built from (see [`Basis`]).
    pub fn basis(&self) -> Basis {
        match self {
            Effect::Send {
                msg: Msg::Fetch { .. } | Msg::Forward { .. } | Msg::Ping | Msg::Pong,
                ..
            } => Basis::Nothing,
            Effect::Send { msg: Msg::FetchReply { .. }, .. } => Basis::Fetched,
            Effect::Send { msg: Msg::Store { .. } | Msg::Handoff { .. }, .. } => Basis::Replication,
            Effect::Reply { .. } => Basis::Request,
            _ => Basis::Everything,
        }
    }
}

/// A stored sibling set a message is about: a key's primary data, or the hint kept under a key
/// for another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// The key's primary data.
    Data(&'a Key),
    /// The hint kept for this node under the key.
    Hint(NodeId, &'a Key),
}

/// A request this node forwarded to a coordinator and still waits on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Forwarded {
    /// The coordinator it went to.
    pub to: NodeId,
    /// Whether it writes (a timeout is then indeterminate).
    pub is_write: bool,
    /// The answers the request needs (its R or W), for the timeout's reply.
    pub needed: usize,
    /// Whether the client has its answer (at its own timeout, while this node waits on).
    pub replied: bool,
    /// How long this node waits on for the coordinator after the client's timeout, when that
    /// came before this node's own first deadline (`sloppy_retry_ms`): as a coordinator does
    /// for its targets, it suspects the coordinator only once that had that long. Zero once
    /// armed (and for every request that allows `sloppy_retry_ms`).
    pub linger_ms: u64,
}

/// The volatile protocol state: lost on a crash. Part of the model checker's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Volatile {
    /// Nodes that recently failed to answer; cleared by any message from them.
    pub suspected: BTreeSet<NodeId>,
    /// Operations this node coordinates.
    pub ops: BTreeMap<OpId, Coord>,
    /// Requests this node forwarded.
    pub forwards: BTreeMap<RequestId, Forwarded>,
    /// Operations this node finished coordinating (bounded by
    /// [`crate::Limits::finished_ops_remembered`]), so that a duplicated request is not applied again.
    /// A set, not a queue, so that the order operations finished in is not part of the state.
    pub done: BTreeSet<OpId>,
}

/// Counters of what the node did and dropped; not part of the protocol state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages from nodes outside the ring, dropped.
    pub unknown_sender_dropped: u64,
    /// Messages naming a node outside the ring as the one a hint is for, or carrying versions to
    /// store outside the limits a client's write is held to, dropped. Peers never send them; one
    /// arriving means a damaged frame or a peer with another membership or larger limits.
    pub malformed_dropped: u64,
    /// Answers for operations that no longer exist, dropped.
    pub stale_responses_dropped: u64,
    /// Store reads or writes that failed.
    pub store_errors: u64,
    /// Hint writes made as a fallback, or in handing on a hint for a node no longer in the
    /// cluster (see `hints_rehomed`).
    pub hints_stored: u64,
    /// Hints removed after the intended node acknowledged them.
    pub hints_delivered: u64,
    /// Hints for a node no longer in the cluster handed to their key's preference list (see
    /// [`crate::handoff`]); each is removed then, or once a sync covers its copies.
    pub hints_rehomed: u64,
    /// Read-repair writes sent (or made locally).
    pub read_repairs: u64,
    /// Client requests forwarded to a coordinator.
    pub forwarded: u64,
    /// Client requests refused.
    pub rejected: u64,
}

/// One storage node.
#[derive(Clone, Debug)]
pub struct Node<S> {
    pub(crate) id: NodeId,
    pub(crate) actor: ActorId,
    pub(crate) config: Arc<Config>,
    pub(crate) ring: Arc<Ring>,
    pub(crate) store: S,
    pub(crate) state: Volatile,
    pub(crate) stats: Stats,
}

/// Equality and hashing cover what distinguishes two states of the same cluster: identity, durable
/// store and volatile state. The configuration and ring are fixed for a run, and counters are not
/// protocol state, so they are left out (this keeps model-checker states small).
impl<S: PartialEq> PartialEq for Node<S> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.actor == other.actor
            && self.store == other.store
            && self.state == other.state
    }
}
impl<S: Eq> Eq for Node<S> {}
impl<S: Hash> Hash for Node<S> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
        self.actor.hash(h);
        self.store.hash(h);
        self.state.hash(h);
    }
}

impl<S: Store> Node<S> {
    /// The one stored sibling set handling `input` reads, when that is all it reads of the store:
    /// a get's key (the answer is built from it and from peers' answers, see [`Basis::Request`]),
    /// or what a `Fetch` asks for ([`Basis::Fetched`]).
    pub fn reads<'a>(&self, input: &'a Input) -> Option<Record<'a>> {
        match input {
            Input::Client { op, .. } if !op.is_write() => Some(Record::Data(&op.key)),
            Input::Peer { msg: Msg::Fetch { key, intended, .. }, .. } => {
                Some(self.record(key, *intended))
            }
            _ => None,
        }
    }

    /// Where a replica message about `key` for `intended` lives here: in the hint kept for
    /// `intended` when that is another node, else in the key's primary data.
    pub(crate) fn record<'a>(&self, key: &'a Key, intended: Option<NodeId>) -> Record<'a> {
        match intended {
            Some(i) if i != self.id => Record::Hint(i, key),
            _ => Record::Data(key),
        }
    }

    /// A node `id` writing under `actor`, with its durable `store` (fresh or recovered) and a fresh
    /// volatile state. `ring` must be `Ring::new(config.partitions(), config.nodes())` or a ring
    /// every node agrees on.
    pub fn new(actor: ActorId, config: Arc<Config>, ring: Arc<Ring>, store: S) -> Self {
        Node {
            id: actor.node,
            actor,
            config,
            ring,
            store,
            state: Volatile::default(),
            stats: Stats::default(),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The actor this node writes clock entries under.
    pub fn actor(&self) -> ActorId {
        self.actor
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }
    /// The durable store.
    pub fn store(&self) -> &S {
        &self.store
    }
    /// The durable store, mutably (drivers use it to sync).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
    /// The volatile state.
    pub fn volatile(&self) -> &Volatile {
        &self.state
    }
    /// The volatile state, mutably: for tools that rename what a state refers to (the model
    /// checker's client symmetry), never for a driver.
    pub fn volatile_mut(&mut self) -> &mut Volatile {
        &mut self.state
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Gives the store back (a crash keeps it; the volatile state is dropped).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Handles one input at time `now_ms`, appending what must be done to `effects`.
    pub fn handle(&mut self, now_ms: u64, input: Input, effects: &mut Vec<Effect>) {
        match input {
            Input::Start => {
                effects.push(Effect::SetTimer {
                    timer: Timer::Tick,
                    after_ms: self.config.timeouts().tick_ms,
                });
            }
            Input::Client { req, op } => self.on_client(now_ms, req, op, effects),
            Input::Peer { from, msg } => self.on_peer(now_ms, from, msg, effects),
            Input::Timer(Timer::Op(op)) => self.on_op_timer(op, effects),
            Input::Timer(Timer::Forward(req)) => self.on_forward_timer(req, effects),
            Input::Timer(Timer::Tick) => self.on_tick(effects),
        }
    }

    fn on_client(
        &mut self,
        now_ms: u64,
        req: RequestId,
        mut op: ClientOp,
        effects: &mut Vec<Effect>,
    ) {
        let id = OpId { origin: self.id, req };
        let st = &self.state;
        if st.ops.contains_key(&id) || st.done.contains(&id) || st.forwards.contains_key(&req) {
            return; // a duplicate of a request in progress or done: never apply a put twice
        }
        if let Err(e) = self.validate(&op) {
            return self.refuse(id, e, effects);
        }
        let prefs = self.ring.preference_list(&op.key, self.config.n());
        if prefs.contains(&self.id) {
            self.coordinate(now_ms, id, op, effects);
            return;
        }
        // Not a coordinator for this key: hand it to the first preference-list node we do not
        // suspect (or the first, if we suspect them all).
        let to = prefs
            .iter()
            .copied()
            .find(|p| !self.state.suspected.contains(p))
            .or(prefs.first().copied());
        let Some(to) = to else { return };
        // The client is answered within its timeout here too: the coordinator gets the time left
        // after a hop there and back (see `coordinator_timeout_ms`), so that its answer, even at
        // its own deadline, normally arrives before this node's.
        let timeout_ms = op.timeout_ms.unwrap_or(self.config.timeouts().request_ms);
        let forwarded = Forwarded {
            to,
            is_write: op.is_write(),
            needed: self.config.needed(&op),
            replied: false,
            linger_ms: self.config.timeouts().sloppy_retry_ms.saturating_sub(timeout_ms),
        };
        op.timeout_ms = Some(coordinator_timeout_ms(timeout_ms));
        self.stats.forwarded += 1;
        self.state.forwards.insert(req, forwarded);
        effects.push(Effect::SetTimer { timer: Timer::Forward(req), after_ms: timeout_ms });
        effects.push(Effect::Send { to, msg: Msg::Forward { req, op } });
    }

    /// Checks a client operation against the configuration before anything is done with it.
    pub fn validate(&self, op: &ClientOp) -> Result<(), RequestError> {
        let limits = self.config.limits();
        let n = self.config.n();
        if op.key.0.is_empty() {
            return Err(RequestError::EmptyKey);
        }
        if op.key.0.len() > limits.key_bytes_max {
            return Err(RequestError::KeyTooLarge {
                bytes: op.key.0.len(),
                max: limits.key_bytes_max,
            });
        }
        for (which, value) in [("r", op.r), ("w", op.w)] {
            if let Some(value) = value {
                if value == 0 || value > n {
                    return Err(RequestError::BadQuorum { which: which.into(), value, n });
                }
            }
        }
        if let Some(t) = op.timeout_ms {
            if t == 0 || t > REQUEST_TIMEOUT_MS_MAX {
                return Err(RequestError::BadTimeout {
                    value_ms: t,
                    max_ms: REQUEST_TIMEOUT_MS_MAX,
                });
            }
        }
        if let Action::Put { context, payload } = &op.action {
            if context.len() > limits.context_entries_max {
                return Err(RequestError::ContextTooLarge {
                    entries: context.len(),
                    max: limits.context_entries_max,
                });
            }
            if let Some(v) = payload.value() {
                if v.len() > limits.value_bytes_max {
                    return Err(crate::versioned::PutError::ValueTooLarge {
                        bytes: v.len(),
                        max: limits.value_bytes_max,
                    }
                    .into());
                }
            }
        }
        let pending = self.state.ops.len() + self.state.forwards.len();
        if pending >= limits.pending_ops_max {
            return Err(RequestError::Overloaded { pending });
        }
        Ok(())
    }

    /// Whether a peer's versions, which may be stored, keep the limits a client's write is held
    /// to: values within `value_bytes_max`, and pasts and counters a client's context may have
    /// ([`crate::clock::Context::check`]). (Not the sibling count: writes through several
    /// coordinators merge into sets larger than any one coordinator made.) A peer is
    /// authenticated, so a set outside them means a damaged frame or a peer configured with
    /// larger limits; stored, it could be larger than any frame this node may send on, or name
    /// a counter no write can follow.
    fn within_limits(&self, siblings: &Siblings) -> bool {
        let limits = self.config.limits();
        // A version whose past holds its own dot comes of no real history (a put's counter is
        // above everything its context names); stored, it could make a set that no longer
        // decodes (see `versioned::DAMAGED_VERSIONS_MAX`).
        siblings.versions().iter().all(|v| {
            v.payload.value().is_none_or(|b| b.len() <= limits.value_bytes_max)
                && v.dot.counter <= CONTEXT_COUNTER_MAX
                && v.past.check(limits.context_entries_max).is_ok()
                && !v.is_damaged()
        })
    }

    /// Whether a peer's `key` is one a client could use.
    fn key_within_limits(&self, key: &Key) -> bool {
        !key.0.is_empty() && key.0.len() <= self.config.limits().key_bytes_max
    }

    fn on_peer(&mut self, now_ms: u64, from: NodeId, msg: Msg, effects: &mut Vec<Effect>) {
        if !self.ring.contains(from) || from == self.id {
            self.stats.unknown_sender_dropped += 1;
            return;
        }
        if let Msg::Store { intended: Some(i), .. } | Msg::Fetch { intended: Some(i), .. } = &msg {
            if !self.ring.contains(*i) {
                self.stats.malformed_dropped += 1;
                return;
            }
        }
        let outside_limits = match &msg {
            Msg::Store { key, siblings, .. } | Msg::Handoff { key, siblings } => {
                !self.key_within_limits(key) || !self.within_limits(siblings)
            }
            // A get's answers are merged, stored and repaired onto other replicas.
            Msg::FetchReply { siblings, .. } => !self.within_limits(siblings),
            // A forwarded put's context becomes the new version's past: it must be one a client
            // could send (a counter past the bound would make the version one no replica takes).
            Msg::Forward { op: ClientOp { action: Action::Put { context, .. }, .. }, .. } => {
                context.check(self.config.limits().context_entries_max).is_err()
            }
            _ => false,
        };
        if outside_limits {
            self.stats.malformed_dropped += 1;
            return;
        }
        // Any message is proof of life.
        self.state.suspected.remove(&from);
        match msg {
            Msg::Forward { req, op } => self.on_forward(now_ms, from, req, op, effects),
            Msg::ForwardReply { req, reply } => self.on_forward_reply(from, req, reply, effects),
            Msg::Store { op, key, siblings, intended } => {
                self.on_store(from, op, key, siblings, intended, effects)
            }
            Msg::StoreAck { op } => self.on_store_ack(from, op, effects),
            Msg::Fetch { op, key, intended } => self.on_fetch(from, op, key, intended, effects),
            Msg::FetchReply { op, siblings } => self.on_fetch_reply(from, op, siblings, effects),
            Msg::Handoff { key, siblings } => self.on_handoff(from, key, siblings, effects),
            Msg::HandoffAck { key, siblings } => self.on_handoff_ack(from, key, siblings),
            Msg::Ping => effects.push(Effect::Send { to: from, msg: Msg::Pong }),
            Msg::Pong => {}
        }
    }

    fn on_forward(
        &mut self,
        now_ms: u64,
        from: NodeId,
        req: RequestId,
        op: ClientOp,
        effects: &mut Vec<Effect>,
    ) {
        let id = OpId { origin: from, req };
        if self.state.ops.contains_key(&id) || self.state.done.contains(&id) {
            return; // a duplicate of a request in progress or done
        }
        let refused = match self.validate(&op) {
            Err(e) => Some(e),
            Ok(()) if !self.ring.preference_list(&op.key, self.config.n()).contains(&self.id) => {
                Some(RequestError::NotCoordinator { node: self.id })
            }
            Ok(()) => None,
        };
        match refused {
            Some(e) => self.refuse(id, e, effects),
            None => self.coordinate(now_ms, id, op, effects),
        }
    }

    fn on_forward_reply(
        &mut self,
        from: NodeId,
        req: RequestId,
        reply: ClientReply,
        effects: &mut Vec<Effect>,
    ) {
        match self.state.forwards.get(&req) {
            Some(f) if f.to == from => {
                let replied = f.replied;
                self.state.forwards.remove(&req);
                effects.push(Effect::CancelTimer(Timer::Forward(req)));
                if !replied {
                    effects.push(Effect::Reply { req, reply });
                }
            }
            _ => self.stats.stale_responses_dropped += 1,
        }
    }

    fn on_forward_timer(&mut self, req: RequestId, effects: &mut Vec<Effect>) {
        let Some(f) = self.state.forwards.get_mut(&req) else { return };
        if !f.replied {
            f.replied = true;
            let reply = if f.is_write {
                ClientReply::Indeterminate { acks: 0, needed: f.needed }
            } else {
                ClientReply::Unavailable { replies: 0, needed: f.needed }
            };
            effects.push(Effect::Reply { req, reply });
            if f.linger_ms > 0 {
                // The client's deadline, before the coordinator had this node's own patience:
                // answered; the coordinator is judged once it has had it.
                let linger_ms = std::mem::take(&mut f.linger_ms);
                effects.push(Effect::SetTimer { timer: Timer::Forward(req), after_ms: linger_ms });
                return;
            }
        }
        if let Some(f) = self.state.forwards.remove(&req) {
            self.state.suspected.insert(f.to);
        }
    }

    /// Sends `reply` to whoever asked for operation `op`: the local client or the forwarding node.
    pub(crate) fn reply(&self, op: OpId, reply: ClientReply, effects: &mut Vec<Effect>) {
        reply_from(self.id, op, reply, effects);
    }
}

/// Sends `reply` for operation `op` from node `me`: to the local client, or back to the origin.
pub(crate) fn reply_from(me: NodeId, op: OpId, reply: ClientReply, effects: &mut Vec<Effect>) {
    if op.origin == me {
        effects.push(Effect::Reply { req: op.req, reply });
    } else {
        effects.push(Effect::Send { to: op.origin, msg: Msg::ForwardReply { req: op.req, reply } });
    }
}

/// A forwarded request's timeout is split: this fraction of it (one part in
/// `FORWARD_HOP_SHARE`) is kept for the hop to the coordinator and back...
pub const FORWARD_HOP_SHARE: u64 = 5;
/// ...and at least this much, or half the timeout when that is shorter, so that a short timeout
/// does not leave a healthy coordinator's answer late (and the coordinator suspected).
pub const FORWARD_HOP_MIN_MS: u64 = 20;

/// The timeout a coordinator gets for a request forwarded with `timeout_ms` left: the rest after
/// the hop's share ([`FORWARD_HOP_SHARE`], [`FORWARD_HOP_MIN_MS`]), at least 1 ms.
pub(crate) fn coordinator_timeout_ms(timeout_ms: u64) -> u64 {
    let hop = (timeout_ms / FORWARD_HOP_SHARE).max(FORWARD_HOP_MIN_MS.min(timeout_ms / 2));
    (timeout_ms - hop).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every timeout a client may set (1-60,000 ms) leaves the coordinator at least 1 ms and at
    /// most the whole, and the hop a fifth of it, at least 20 ms or half, whichever is shorter.
    #[test]
    fn a_forwarded_timeout_leaves_time_for_the_hop() {
        for t in 1..=60_000u64 {
            let c = coordinator_timeout_ms(t);
            assert!((1..=t).contains(&c), "{t} ms gave the coordinator {c} ms");
            if t >= 2 {
                let hop = t - c;
                assert!(hop >= t / FORWARD_HOP_SHARE, "{t}: hop {hop}");
                assert!(hop >= FORWARD_HOP_MIN_MS.min(t / 2), "{t}: hop {hop}");
            }
        }
        assert_eq!(coordinator_timeout_ms(1_000), 800);
        assert_eq!(coordinator_timeout_ms(50), 30);
        assert_eq!(coordinator_timeout_ms(10), 5);
    }

    #[test]
    fn an_effect_waits_for_the_writes_it_can_carry() {
        let key = || Key(b"k".to_vec());
        let op = OpId { origin: NodeId(1), req: RequestId(7) };
        let send = |msg| Effect::Send { to: NodeId(2), msg };
        let fetch = send(Msg::Fetch { op, key: key(), intended: None });
        let forward = send(Msg::Forward {
            req: RequestId(7),
            op: ClientOp::put(key(), Default::default(), b"v".to_vec()),
        });
        let store = send(Msg::Store {
            op: Some(op),
            key: key(),
            siblings: Default::default(),
            intended: None,
        });
        let fetched = send(Msg::FetchReply { op, siblings: Default::default() });
        let ack = send(Msg::StoreAck { op });
        let reply = Effect::Reply {
            req: RequestId(7),
            reply: ClientReply::Unavailable { replies: 1, needed: 2 },
        };
        // Made by a call that wrote nothing while writes up to mark 9 were not yet durable.
        for carries_nothing_stored in [&fetch, &forward, &send(Msg::Ping), &send(Msg::Pong)] {
            assert_eq!(dependency(carries_nothing_stored, 9, 9, None, None), 0);
        }
        // A copy for a peer to keep waits for nothing, not even its own call's writes.
        for handoff in [&store, &send(Msg::Handoff { key: key(), siblings: Default::default() })] {
            assert_eq!(dependency(handoff, 8, 9, None, None), 0);
        }
        // What may carry stored data, or vouch for it, waits for every write so far.
        for carries in [&fetched, &ack] {
            assert_eq!(dependency(carries, 9, 9, None, None), 9);
        }
        // The answer to a `Fetch`: the last write of what it read.
        assert_eq!(dependency(&fetched, 9, 9, None, Some(3)), 3);
        assert_eq!(dependency(&fetched, 9, 9, None, Some(0)), 0, "read what is durable");
        // A client's answer: what its request depends on, and its own call's writes.
        assert_eq!(dependency(&reply, 9, 9, Some(4), None), 4);
        assert_eq!(dependency(&reply, 8, 9, Some(4), None), 9);
        assert_eq!(dependency(&reply, 9, 9, None, None), 9, "unknown request: every write");
        // A call's own writes count for everything but a copy.
        assert_eq!(dependency(&fetch, 8, 9, None, None), 9);
        assert_eq!(dependency(&fetched, 8, 9, None, Some(0)), 9);
    }
}
