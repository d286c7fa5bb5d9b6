//! The stateright actors: storage nodes and clients, both thin drivers around `dynamo-model`.
//!
//! A storage node actor owns a [`Node<MemStore>`] and feeds every message and timer to
//! [`Node::handle`], then turns the core's [`Effect`]s into stateright commands. It holds no
//! protocol logic of its own. The node's [`MemStore`] (with its incarnation, as [`Durable`]) is
//! the actor's durable `Storage`: it is saved after every step that changed it, so stateright's
//! `Crash` / `Recover` drop the volatile state (operations in progress, suspicions, timers) and
//! restart the node from what was durable.
//!
//! **Unsynced writes** ([`Durability::Syncs`]). The node's driver under `always` lets a copy for a
//! peer leave before its own writes are durable, and holds every other effect until a sync covers
//! what it depends on. In this mode the actor does the same with the core's own rule
//! ([`dynamo_model::marks`]): a step's writes are saved only at the node's next
//! [`ModelTimer::Sync`], which may fire at any moment after them; the held effects leave then. A
//! crash loses what no sync covered, and the restart takes a new incarnation, recorded with the
//! store, as the node does after every crash.
//!
//! A client actor runs a fixed script of gets and puts, one at a time, each sent to a chosen node,
//! and remembers every outcome. Properties read those outcomes; they never re-derive them.
//!
//! Time does not exist in the model: the core always sees `now_ms = 0`, so dots carry no
//! timestamps and equal states hash equally. Timers may fire in any order at any moment, which is
//! the inaccurate failure detector that drives sloppy quorum.
//!
//! **Probes.** By default the liveness probe (the tick's `Ping` to a suspected node and its `Pong`)
//! is not sent as two messages. A node that suspects a peer instead gets a [`ModelTimer::Probe`]
//! for it, which may fire at any moment and feeds the node a `Pong` from that peer: the very input
//! a completed round trip delivers. This over-approximates the real probe (an answer may now come
//! at any time, even from a node that is down), so every behaviour of the two-message probe is
//! still explored: its only other effect, the `Ping` clearing the receiver's own suspicion of the
//! sender, is what the receiver's own probe does. See `checker/README.md`.

use dynamo_model::marks::Marks;
use dynamo_model::sim::SyncFlaw;
use dynamo_model::{
    ActorId, ClientOp, ClientReply, Config, Context, Dot, Effect, Input, Key, MemStore, Msg, Node,
    NodeId, RequestId, Ring, Timer, Version,
};
use stateright::actor::{model_timeout, Actor, Id, Out};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Everything that crosses the model's network: peer messages, and client requests and replies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wire {
    /// A message of the peer protocol, node to node.
    Peer(Msg),
    /// A client's `seq`-th operation.
    Request {
        /// Position of the operation in the client's script.
        seq: u8,
        /// The operation.
        op: ClientOp,
    },
    /// The answer to a client's `seq`-th operation.
    Reply {
        /// Position of the operation in the client's script.
        seq: u8,
        /// The answer.
        reply: ClientReply,
    },
}

/// The model's timers: the core's own, and the abstracted liveness probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelTimer {
    /// A timer the core set.
    Node(Timer),
    /// A probe of a suspected peer is answered: the node receives a `Pong` from it.
    Probe(NodeId),
    /// Under [`Durability::Syncs`], the node's sync: its writes so far become durable and the
    /// effects held for them leave.
    Sync,
}

/// When a node's writes become durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// With the step that made them, before any of its effects leaves.
    #[default]
    EveryStep,
    /// At the node's next sync, some time later: copies for peers leave at once, every other
    /// effect waits for the writes it depends on, and a restart after a crash takes a new
    /// incarnation. The flaw, if any, is a mistake made on purpose, to show the properties catch
    /// it.
    Syncs(Option<SyncFlaw>),
}

/// A storage node's durable storage: its store, and the incarnation it last started under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    /// The store as of the last save.
    pub store: MemStore,
    /// The node's incarnation (always 0 when every step's writes are durable with it).
    pub incarnation: u32,
    /// Under [`Durability::Syncs`], how many times the node restarted (the incarnation, unless
    /// the flaw keeps it); the checker bounds it. Always 0 otherwise, so that a restarted node
    /// is the same state as one that never crashed.
    pub restarts: u32,
}

/// The storage node with actor index `i` is `NodeId(i)`; clients come after the nodes.
pub fn node_id(id: Id) -> NodeId {
    NodeId(usize::from(id) as u16)
}

/// The actor index of a node.
pub fn actor_of(node: NodeId) -> Id {
    Id::from(node.0 as usize)
}

/// A request id that names its client and script position, so that the node needs no table to
/// route the reply and the id is unique per node for the node's lifetime.
fn request_id(client: Id, seq: u8) -> RequestId {
    RequestId(((usize::from(client) as u64) << 8) | u64::from(seq))
}

fn split_request_id(req: RequestId) -> (Id, u8) {
    (Id::from((req.0 >> 8) as usize), (req.0 & 0xff) as u8)
}

/// One step of a client's script.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Put `value` (a one-byte value, unique in the run) on the client's latest read context.
    Put {
        /// The value's single byte.
        value: u8,
        /// The node to send it to.
        via: NodeId,
    },
    /// Get the key.
    Get {
        /// The node to send it to.
        via: NodeId,
    },
}

/// What a client learned from one operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A put was acknowledged by W replicas.
    Written {
        /// The new version's dot.
        dot: Dot,
        /// The value written.
        value: u8,
    },
    /// A get answered.
    Read {
        /// The values read (siblings), in dot order.
        values: Vec<u8>,
        /// The context returned.
        context: Context,
    },
    /// The operation was indeterminate, unavailable or rejected; the client stops there.
    Failed,
}

/// A client's state: its outcomes so far, and whether its next operation is in flight. The script
/// position is `outcomes.len()`, so it is not stored twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientState {
    /// Outcomes, in script order.
    pub outcomes: Vec<Outcome>,
    /// Whether the operation at position `outcomes.len()` was sent and awaits its reply.
    pub waiting: bool,
}

impl ClientState {
    /// The context of the client's latest read (empty before any).
    pub fn context(&self) -> Context {
        self.outcomes
            .iter()
            .rev()
            .find_map(|o| match o {
                Outcome::Read { context, .. } => Some(context.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// A storage node's state: the core node itself, plus an observation the properties read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The protocol state (durable store and volatile state).
    pub node: Node<MemStore>,
    /// Set if a step ever made a key's merged clock at this replica go backwards. Always false in
    /// a correct protocol without cut contexts, so it adds no states to a passing run; not
    /// tracked where contexts can be cut.
    pub clock_regressed: bool,
    /// Set if a step ever dropped a version of the key that no version it then held names (or
    /// is): lost rather than replaced. The restatement of `clock_regressed` where contexts can
    /// be cut, as a replacing version then need not name what the replaced one's past named;
    /// tracked only there.
    pub version_lost: bool,
    /// Under [`Durability::Syncs`], the writes no sync covered yet (always empty otherwise).
    pub marks: Marks,
    /// Under [`Durability::Syncs`], the effects waiting for the next sync, in order.
    pub held: Vec<Effect>,
    /// The restart count of its durable storage ([`Durable::restarts`]).
    pub restarts: u32,
}

impl NodeState {
    /// What the node saves: its store now, its incarnation and its restart count.
    fn durable(&self) -> Durable {
        let incarnation = self.node.actor().incarnation;
        Durable { store: self.node.store().clone(), incarnation, restarts: self.restarts }
    }
}

/// Hashes the node's store only while some of its writes are not durable: otherwise the store
/// equals the actor's durable storage (the actor saves it after every step that changed it, or
/// at each sync, and a crashed or restarted node holds its saved store), which the model state
/// hashes anyway. Hashing it twice would only double the cost of every state's fingerprint.
impl Hash for NodeState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.node.id().hash(h);
        self.node.actor().hash(h);
        self.node.volatile().hash(h);
        self.clock_regressed.hash(h);
        self.version_lost.hash(h);
        self.marks.hash(h);
        self.held.hash(h);
        self.restarts.hash(h);
        if self.marks.unsynced() {
            self.node.store().hash(h);
        }
    }
}

/// The state of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoleState {
    /// A storage node.
    Node(Box<NodeState>),
    /// A client.
    Client(ClientState),
}

/// The two roles of the model, as one stateright actor type.
#[derive(Clone, Debug)]
pub enum Role {
    /// A storage node running the shared core.
    Node {
        /// The node's clock actor.
        actor: ActorId,
        /// The cluster configuration (possibly carrying a mutant).
        config: Arc<Config>,
        /// The ring every node agrees on.
        ring: Arc<Ring>,
        /// The key whose clock the regression check watches.
        key: Key,
        /// Probes are abstracted into [`ModelTimer::Probe`] (otherwise `Ping` and `Pong` are
        /// sent as messages).
        probe_timers: bool,
        /// Contexts can be cut: watch for lost versions (`version_lost`) instead of clock
        /// regressions, which a cut makes by design (tracking both would split states on it).
        cuts: bool,
        /// When the node's writes become durable.
        durability: Durability,
    },
    /// A client running a script.
    Client {
        /// Its operations, in order.
        script: Vec<Step>,
        /// The key it works on.
        key: Key,
    },
}

impl Actor for Role {
    type Msg = Wire;
    type Timer = ModelTimer;
    type State = RoleState;
    type Storage = Durable;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Durable>, o: &mut Out<Self>) -> RoleState {
        match self {
            Role::Node { actor, config, ring, durability, .. } => {
                let mut durable = storage.clone().unwrap_or_default();
                // Every start over a saved store is a restart after a crash: under syncs it may
                // have lost writes whose copies left, so it takes a new incarnation and records
                // it before anything else (unless keeping it is the flaw run on purpose).
                let restart = storage.is_some() && *durability != Durability::EveryStep;
                if restart {
                    durable.restarts += 1;
                    if *durability != Durability::Syncs(Some(SyncFlaw::KeepIncarnation)) {
                        durable.incarnation += 1;
                    }
                }
                let actor = ActorId::new(actor.node, durable.incarnation);
                let node = Node::new(actor, config.clone(), ring.clone(), durable.store.clone());
                let mut ns = NodeState {
                    node,
                    clock_regressed: false,
                    version_lost: false,
                    marks: Marks::default(),
                    held: Vec::new(),
                    restarts: durable.restarts,
                };
                if storage.is_none() || restart {
                    // Saved at once, so that a store that was never written and one that was
                    // emptied (a fallback whose hints were all delivered) are the same state.
                    o.save(durable);
                }
                self.step_node(&mut ns, Input::Start, o);
                RoleState::Node(Box::new(ns))
            }
            Role::Client { .. } => {
                let mut cs = ClientState::default();
                self.next_request(id, &mut cs, o);
                RoleState::Client(cs)
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<RoleState>, src: Id, msg: Wire, o: &mut Out<Self>) {
        // Every delivery consumes its message, even one the receiver ignores, so that a quiescent
        // state (nothing left in flight) is reachable and the convergence property is not vacuous.
        match (state.to_mut(), msg) {
            (RoleState::Node(ns), Wire::Peer(msg)) => {
                self.step_node(ns, Input::Peer { from: node_id(src), msg }, o)
            }
            (RoleState::Node(ns), Wire::Request { seq, op }) => {
                self.step_node(ns, Input::Client { req: request_id(src, seq), op }, o)
            }
            (RoleState::Client(cs), Wire::Reply { seq, reply }) => {
                self.on_reply(id, cs, seq, reply, o)
            }
            _ => {}
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<RoleState>,
        timer: &ModelTimer,
        o: &mut Out<Self>,
    ) {
        let RoleState::Node(ns) = &**state else { return };
        let input = match *timer {
            ModelTimer::Node(t) => Input::Timer(t),
            ModelTimer::Probe(peer) => Input::Peer { from: peer, msg: Msg::Pong },
            ModelTimer::Sync => {
                let RoleState::Node(ns) = state.to_mut() else { return };
                return self.sync(ns, o);
            }
        };
        // Run the timer on a copy and keep the copy only if the protocol state changed: a tick
        // with nothing to do then counts as a no-op and stateright does not explore it.
        let mut next = ns.clone();
        self.step_node(&mut next, input, o);
        if next != *ns {
            *state.to_mut() = RoleState::Node(next);
        }
    }

    fn name(&self) -> String {
        match self {
            Role::Node { actor, .. } => format!("{}", actor.node),
            Role::Client { .. } => "client".into(),
        }
    }
}

impl Role {
    /// What a crashed node's state is kept as until it recovers: a node that has not started,
    /// over the durable store, so crashes that lost different volatile states lead to one state.
    /// Nothing reads a crashed node's volatile state (it receives no message and fires no timer)
    /// and recovery rebuilds it from the store, so this changes no behaviour. `None` for a
    /// client.
    pub fn crashed(&self, ns: &NodeState, durable: &Durable) -> Option<NodeState> {
        let Role::Node { actor, config, ring, .. } = self else { return None };
        let actor = ActorId::new(actor.node, durable.incarnation);
        let node = Node::new(actor, config.clone(), ring.clone(), durable.store.clone());
        Some(NodeState {
            node,
            marks: Marks::default(),
            held: Vec::new(),
            restarts: durable.restarts,
            ..ns.clone()
        })
    }

    /// Under [`Durability::Syncs`]: the node's writes so far become durable, and the effects
    /// held for them leave.
    fn sync(&self, ns: &mut NodeState, o: &mut Out<Self>) {
        o.save(ns.durable());
        ns.marks.synced();
        for effect in std::mem::take(&mut ns.held) {
            self.emit(effect, o);
        }
    }

    /// Hands one input to the core and carries out its effects.
    fn step_node(&self, ns: &mut NodeState, input: Input, o: &mut Out<Self>) {
        let Role::Node { key, probe_timers, cuts, durability, .. } = self else { return };
        let before = ns.node.store().clone();
        let suspected_before = ns.node.volatile().suspected.clone();
        let effects = match durability {
            Durability::EveryStep => {
                let mut effects = Vec::new();
                ns.node.handle(0, input, &mut effects);
                effects
            }
            Durability::Syncs(flaw) => {
                let answer_early = *flaw == Some(SyncFlaw::AnswerBeforeSync);
                let step = ns.marks.step(&mut ns.node, 0, input, answer_early);
                ns.held.extend(step.held);
                if step.wrote {
                    // Armed until it fires (a crash disarms it, and loses the writes too).
                    o.set_timer(ModelTimer::Sync, model_timeout());
                }
                step.ready
            }
        };
        if *probe_timers {
            // A probe timer is set exactly while its peer is suspected (a crash cancels them all
            // and a restarted node suspects nobody).
            let after = &ns.node.volatile().suspected;
            for peer in after.difference(&suspected_before) {
                o.set_timer(ModelTimer::Probe(*peer), model_timeout());
            }
            for peer in suspected_before.difference(after) {
                o.cancel_timer(ModelTimer::Probe(*peer));
            }
        }
        if *ns.node.store() != before {
            let old = before.data.get(key);
            let new = ns.node.store().data.get(key);
            if *cuts {
                let kept = |v: &Version| {
                    new.is_some_and(|n| n.versions().iter().any(|w| w == v || w.supersedes(v)))
                };
                if old.is_some_and(|o| !o.versions().iter().all(kept)) {
                    ns.version_lost = true;
                }
            } else {
                let old = old.map(|s| s.context()).unwrap_or_default();
                let new = new.map(|s| s.context()).unwrap_or_default();
                if !descends(&new, &old) {
                    ns.clock_regressed = true;
                }
            }
            // The durability rule: the write is durable before any effect of this step leaves
            // (under syncs, before any that depends on it: `sync` saves it).
            if *durability == Durability::EveryStep {
                o.save(ns.durable());
            }
        }
        for effect in effects {
            self.emit(effect, o);
        }
    }

    /// Carries out one effect of the core (probes are left to the probe timers when those are on).
    fn emit(&self, effect: Effect, o: &mut Out<Self>) {
        let Role::Node { probe_timers, .. } = self else { return };
        match effect {
            Effect::Send { msg: Msg::Ping | Msg::Pong, .. } if *probe_timers => {}
            Effect::Send { to, msg } => o.send(actor_of(to), Wire::Peer(msg)),
            Effect::Reply { req, reply } => {
                let (client, seq) = split_request_id(req);
                o.send(client, Wire::Reply { seq, reply });
            }
            Effect::SetTimer { timer, .. } => o.set_timer(ModelTimer::Node(timer), model_timeout()),
            Effect::CancelTimer(timer) => o.cancel_timer(ModelTimer::Node(timer)),
        }
    }

    fn on_reply(
        &self,
        id: Id,
        cs: &mut ClientState,
        seq: u8,
        reply: ClientReply,
        o: &mut Out<Self>,
    ) {
        let Role::Client { script, .. } = self else { return };
        if !cs.waiting || usize::from(seq) != cs.outcomes.len() {
            return; // a duplicate of an answer already taken
        }
        let outcome = match (script.get(usize::from(seq)), reply) {
            (Some(Step::Put { value, .. }), ClientReply::Written { dot, .. }) => {
                Outcome::Written { dot, value: *value }
            }
            (Some(Step::Get { .. }), ClientReply::Read { context, values }) => Outcome::Read {
                values: values.iter().map(|v| v.first().copied().unwrap_or(0)).collect(),
                context,
            },
            _ => Outcome::Failed,
        };
        let failed = outcome == Outcome::Failed;
        cs.outcomes.push(outcome);
        cs.waiting = false;
        if !failed {
            self.next_request(id, cs, o);
        }
    }

    /// Sends the next operation of the script, if any.
    fn next_request(&self, _id: Id, cs: &mut ClientState, o: &mut Out<Self>) {
        let Role::Client { script, key } = self else { return };
        let seq = cs.outcomes.len();
        let Some(step) = script.get(seq) else { return };
        let (via, op) = match step {
            Step::Put { value, via } => {
                (*via, ClientOp::put(key.clone(), cs.context(), vec![*value]))
            }
            Step::Get { via } => (*via, ClientOp::get(key.clone())),
        };
        cs.waiting = true;
        o.send(actor_of(via), Wire::Request { seq: seq as u8, op });
    }
}

/// Whether `new` has seen everything `old` has.
pub fn descends(new: &Context, old: &Context) -> bool {
    let mut joined = new.clone();
    joined.merge(old);
    joined == *new
}
