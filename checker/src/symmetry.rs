//! Symmetry over interchangeable clients and their values.
//!
//! Two clients are interchangeable when their scripts are the same step for step (same kinds of
//! operation through the same nodes) and differ only in the values they put. Renaming one client
//! as the other everywhere (its actor id, the request ids that name it, and the values it puts
//! in stores, messages, operations in progress and outcomes) then maps every run of the model
//! onto another run, and every property is unchanged by it: properties speak of "a client" and
//! "a value", never of a particular one. So two states that are renamings of each other have the
//! same futures and the same verdicts, and the search needs only one of them.
//!
//! [`representative`] picks one state of each class; the depth-first search (the default) uses it
//! through stateright's `symmetry_fn`; breadth-first search and `--strategy sim` do not. The
//! renaming below rebuilds every part of the state that can name a client or a value; it
//! destructures each core type in full, so a field added to the core does not compile until it
//! is renamed here too.
//! `tests/symmetry.rs` checks that the renaming commutes with every step of the model.

use crate::actors::{ClientState, Durable, ModelTimer, NodeState, Outcome, RoleState, Step, Wire};
use crate::setup::DynamoState;
use dynamo_model::coordinator::{Coord, CoordKind};
use dynamo_model::node::Volatile;
use dynamo_model::{
    Action, ClientOp, ClientReply, MemStore, Msg, NodeId, OpId, Payload, RequestId, Siblings,
    Timer, Version,
};
use stateright::actor::{Envelope, Id, Network, Timers};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Which clients of a model are interchangeable, and with which values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symmetry {
    /// The renamings other than the identity: for each, the actor index every actor goes to
    /// (nodes stay in place) and the value every value byte goes to.
    renamings: Vec<Renaming>,
}

/// One renaming of clients and values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Renaming {
    actor: Vec<usize>,
    value: [u8; 256],
}

impl Symmetry {
    /// The symmetry of a model whose clients are the actors `first_client..` with the given
    /// scripts. `None` when no two clients are interchangeable.
    pub fn of(first_client: usize, scripts: &[&[Step]]) -> Option<Symmetry> {
        // A step without its value: what interchangeable clients must have in common.
        let shape = |s: &[Step]| -> Vec<(bool, NodeId)> {
            s.iter()
                .map(|step| match step {
                    Step::Put { via, .. } => (true, *via),
                    Step::Get { via } => (false, *via),
                })
                .collect()
        };
        let shapes: Vec<_> = scripts.iter().map(|s| shape(s)).collect();
        let mut renamings = Vec::new();
        for perm in permutations(scripts.len()) {
            let identity = perm.iter().enumerate().all(|(i, p)| i == *p);
            if identity || perm.iter().enumerate().any(|(i, p)| shapes[i] != shapes[*p]) {
                continue;
            }
            let mut actor: Vec<usize> = (0..first_client + scripts.len()).collect();
            let mut value = [0u8; 256];
            for (i, v) in value.iter_mut().enumerate() {
                *v = i as u8;
            }
            for (i, p) in perm.iter().enumerate() {
                actor[first_client + i] = first_client + p;
                for (from, to) in scripts[i].iter().zip(scripts[*p]) {
                    if let (Step::Put { value: a, .. }, Step::Put { value: b, .. }) = (from, to) {
                        value[usize::from(*a)] = *b;
                    }
                }
            }
            renamings.push(Renaming { actor, value });
        }
        (!renamings.is_empty()).then_some(Symmetry { renamings })
    }

    /// `state` renamed by the `i`-th renaming (for tests).
    pub fn rename(&self, i: usize, state: &DynamoState) -> Option<DynamoState> {
        self.renamings.get(i).and_then(|r| r.state(state))
    }

    /// How many renamings besides the identity there are.
    pub fn renamings(&self) -> usize {
        self.renamings.len()
    }
}

/// All permutations of `0..n` (n is the client count: small).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// The state of `state`'s class the search keeps: the renaming whose client states come first,
/// and among renamings with equal client states the one with the smallest hash. Any choice
/// within the class is sound (every member has the same futures and verdicts); choosing the same
/// one from every member is what makes it a reduction. Client states alone usually decide, so
/// the whole state is renamed only for the winner or on a tie.
pub fn representative(state: &DynamoState) -> DynamoState {
    let Some(sym) = state.history.symmetry.as_deref() else { return state.clone() };
    let identity = std::iter::once((clients(state, None), None));
    let renamed = sym.renamings.iter().map(|r| (clients(state, Some(r)), Some(r)));
    let candidates: Vec<_> = identity.chain(renamed).collect();
    let Some(first) = candidates.iter().map(|(c, _)| c).min() else { return state.clone() };
    let mut tied = candidates
        .iter()
        .filter(|(c, _)| c == first)
        .filter_map(|(_, r)| match r {
            None => Some(state.clone()),
            Some(r) => r.state(state),
        })
        .collect::<Vec<_>>();
    if tied.len() == 1 {
        return tied.pop().unwrap_or_else(|| state.clone());
    }
    tied.into_iter().min_by_key(fingerprint).unwrap_or_else(|| state.clone())
}

/// A hash that is the same in every run and thread.
fn fingerprint(s: &DynamoState) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The client states of `state` in actor order, after `renaming`.
fn clients(state: &DynamoState, renaming: Option<&Renaming>) -> Vec<ClientState> {
    let mut placed = BTreeMap::new();
    for (i, a) in state.actor_states.iter().enumerate() {
        if let RoleState::Client(c) = &**a {
            match renaming {
                None => placed.insert(i, c.clone()),
                Some(r) => placed.insert(r.actor.get(i).copied().unwrap_or(i), r.client(c)),
            };
        }
    }
    placed.into_values().collect()
}

impl Renaming {
    fn id(&self, id: Id) -> Id {
        Id::from(self.actor.get(usize::from(id)).copied().unwrap_or(usize::from(id)))
    }

    /// Request ids are (client actor index, script position); see `actors::request_id`.
    fn req(&self, req: RequestId) -> RequestId {
        let client = (req.0 >> 8) as usize;
        let to = self.actor.get(client).copied().unwrap_or(client);
        RequestId(((to as u64) << 8) | (req.0 & 0xff))
    }

    fn op(&self, op: OpId) -> OpId {
        OpId { origin: op.origin, req: self.req(op.req) }
    }

    fn byte(&self, b: u8) -> u8 {
        self.value[usize::from(b)]
    }

    fn bytes(&self, v: &[u8]) -> Vec<u8> {
        v.iter().map(|b| self.byte(*b)).collect()
    }

    fn payload(&self, p: &Payload) -> Payload {
        match p {
            Payload::Value(v) => Payload::Value(self.bytes(v)),
            Payload::Tombstone => Payload::Tombstone,
        }
    }

    fn siblings(&self, s: &Siblings) -> Siblings {
        Siblings::from_versions(s.versions().iter().map(|v| {
            let Version { dot, past, payload } = v;
            Version { dot: *dot, past: past.clone(), payload: self.payload(payload) }
        }))
    }

    fn client_op(&self, op: &ClientOp) -> ClientOp {
        let ClientOp { key, action, r, w, timeout_ms } = op;
        let action = match action {
            Action::Get => Action::Get,
            Action::Put { context, payload } => {
                Action::Put { context: context.clone(), payload: self.payload(payload) }
            }
        };
        ClientOp { key: key.clone(), action, r: *r, w: *w, timeout_ms: *timeout_ms }
    }

    fn reply(&self, reply: &ClientReply) -> ClientReply {
        match reply {
            ClientReply::Read { context, values } => ClientReply::Read {
                context: context.clone(),
                values: values.iter().map(|v| self.bytes(v)).collect(),
            },
            ClientReply::Written { dot, context } => {
                ClientReply::Written { dot: *dot, context: context.clone() }
            }
            ClientReply::Indeterminate { acks, needed } => {
                ClientReply::Indeterminate { acks: *acks, needed: *needed }
            }
            ClientReply::Unavailable { replies, needed } => {
                ClientReply::Unavailable { replies: *replies, needed: *needed }
            }
            ClientReply::Rejected(e) => ClientReply::Rejected(e.clone()),
        }
    }

    fn msg(&self, msg: &Msg) -> Msg {
        match msg {
            Msg::Forward { req, op } => {
                Msg::Forward { req: self.req(*req), op: self.client_op(op) }
            }
            Msg::ForwardReply { req, reply } => {
                Msg::ForwardReply { req: self.req(*req), reply: self.reply(reply) }
            }
            Msg::Store { op, key, siblings, intended } => Msg::Store {
                op: op.map(|o| self.op(o)),
                key: key.clone(),
                siblings: self.siblings(siblings),
                intended: *intended,
            },
            Msg::StoreAck { op } => Msg::StoreAck { op: self.op(*op) },
            Msg::Fetch { op, key, intended } => {
                Msg::Fetch { op: self.op(*op), key: key.clone(), intended: *intended }
            }
            Msg::FetchReply { op, siblings } => {
                Msg::FetchReply { op: self.op(*op), siblings: self.siblings(siblings) }
            }
            Msg::Handoff { key, siblings } => {
                Msg::Handoff { key: key.clone(), siblings: self.siblings(siblings) }
            }
            Msg::HandoffAck { key, siblings } => {
                Msg::HandoffAck { key: key.clone(), siblings: self.siblings(siblings) }
            }
            Msg::Ping => Msg::Ping,
            Msg::Pong => Msg::Pong,
        }
    }

    fn wire(&self, w: &Wire) -> Wire {
        match w {
            Wire::Peer(m) => Wire::Peer(self.msg(m)),
            Wire::Request { seq, op } => Wire::Request { seq: *seq, op: self.client_op(op) },
            Wire::Reply { seq, reply } => Wire::Reply { seq: *seq, reply: self.reply(reply) },
        }
    }

    fn coord(&self, c: &Coord) -> Coord {
        let Coord { key, kind, targets, answered, needed, replied, rest_ms, linger_ms } = c;
        let kind = match kind {
            CoordKind::Put { dot, clock, siblings } => CoordKind::Put {
                dot: *dot,
                clock: clock.clone(),
                siblings: self.siblings(siblings),
            },
            CoordKind::Get { replies } => CoordKind::Get {
                replies: replies.iter().map(|(n, s)| (*n, self.siblings(s))).collect(),
            },
        };
        Coord {
            key: key.clone(),
            kind,
            targets: targets.clone(),
            answered: answered.clone(),
            needed: *needed,
            replied: *replied,
            rest_ms: *rest_ms,
            linger_ms: *linger_ms,
        }
    }

    fn volatile(&self, v: &Volatile) -> Volatile {
        let Volatile { suspected, ops, forwards, done } = v;
        Volatile {
            suspected: suspected.clone(),
            ops: ops.iter().map(|(id, c)| (self.op(*id), self.coord(c))).collect(),
            forwards: forwards.iter().map(|(r, f)| (self.req(*r), f.clone())).collect(),
            done: done.iter().map(|id| self.op(*id)).collect(),
        }
    }

    fn store(&self, s: &MemStore) -> MemStore {
        let MemStore { data, hints, issued } = s;
        MemStore {
            data: Arc::new(data.iter().map(|(k, s)| (k.clone(), self.siblings(s))).collect()),
            hints: Arc::new(hints.iter().map(|(k, s)| (k.clone(), self.siblings(s))).collect()),
            // Counters per key: nothing the symmetry renames.
            issued: issued.clone(),
        }
    }

    fn client(&self, c: &ClientState) -> ClientState {
        let ClientState { outcomes, waiting } = c;
        let outcomes = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Written { dot, value } => {
                    Outcome::Written { dot: *dot, value: self.byte(*value) }
                }
                Outcome::Read { values, context } => {
                    Outcome::Read { values: self.bytes(values), context: context.clone() }
                }
                Outcome::Failed => Outcome::Failed,
            })
            .collect();
        ClientState { outcomes, waiting: *waiting }
    }

    /// A node's state renamed. Its sync marks and held effects are taken as they are: symmetry
    /// is off where writes wait for syncs (see `Setup::uses_symmetry`), so they are empty here
    /// (they name client requests, which a renaming would have to move).
    fn node(&self, ns: &NodeState) -> NodeState {
        let NodeState { node, clock_regressed, version_lost, marks, held, restarts } = ns;
        debug_assert!(!marks.unsynced() && held.is_empty(), "symmetry under syncs");
        let mut node = node.clone();
        *node.volatile_mut() = self.volatile(node.volatile());
        *node.store_mut() = self.store(node.store());
        NodeState {
            node,
            clock_regressed: *clock_regressed,
            version_lost: *version_lost,
            marks: marks.clone(),
            held: held.clone(),
            restarts: *restarts,
        }
    }

    fn timer(&self, t: &ModelTimer) -> ModelTimer {
        match t {
            ModelTimer::Node(Timer::Op(op)) => ModelTimer::Node(Timer::Op(self.op(*op))),
            ModelTimer::Node(Timer::Forward(req)) => {
                ModelTimer::Node(Timer::Forward(self.req(*req)))
            }
            ModelTimer::Node(Timer::Tick) => ModelTimer::Node(Timer::Tick),
            ModelTimer::Probe(n) => ModelTimer::Probe(*n),
            ModelTimer::Sync => ModelTimer::Sync,
        }
    }

    /// Moves the entry of actor `i` to actor `self.actor[i]`.
    fn place<T: Clone>(&self, items: &[T], f: impl Fn(&T) -> T) -> Vec<T> {
        let mut out = items.to_vec();
        for (i, item) in items.iter().enumerate() {
            if let Some(slot) = self.actor.get(i).and_then(|to| out.get_mut(*to)) {
                *slot = f(item);
            }
        }
        out
    }

    /// The whole state renamed; `None` on a network kind this renaming does not handle.
    fn state(&self, s: &DynamoState) -> Option<DynamoState> {
        let Network::UnorderedNonDuplicating(multiset) = &s.network else { return None };
        let mut envelopes = Vec::new();
        for (env, copies) in multiset.iter() {
            let renamed =
                Envelope { src: self.id(env.src), dst: self.id(env.dst), msg: self.wire(&env.msg) };
            envelopes.extend(std::iter::repeat_n(renamed, *copies));
        }
        let actor_states = self.place(&s.actor_states, |a| {
            Arc::new(match &**a {
                RoleState::Node(ns) => RoleState::Node(Box::new(self.node(ns))),
                RoleState::Client(c) => RoleState::Client(self.client(c)),
            })
        });
        let timers_set = self.place(&s.timers_set, |ts| {
            let mut out = Timers::new();
            for t in ts.iter() {
                out.set(self.timer(t));
            }
            out
        });
        Some(DynamoState {
            actor_states,
            network: Network::new_unordered_nonduplicating(envelopes),
            timers_set,
            random_choices: self.place(&s.random_choices, Clone::clone),
            crashed: self.place(&s.crashed, Clone::clone),
            history: s.history.clone(),
            actor_storages: self.place(&s.actor_storages, |st| {
                st.as_ref().map(|d| Durable { store: self.store(&d.store), ..d.clone() })
            }),
        })
    }
}
