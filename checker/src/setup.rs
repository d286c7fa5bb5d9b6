//! Named configurations of the model and the stateright `ActorModel` built from them.
//!
//! A [`Setup`] is everything that bounds one check: the cluster (nodes, N, R, W, sloppy or
//! strict), the clients and their scripts, the network semantics, how many nodes may be crashed
//! at once, an optional mutant, and the in-flight bound that keeps the state space finite. Named
//! configurations ([`Setup::named`]) give a protocol designer reproducible starting points; flags
//! override their fields.

use crate::actors::{actor_of, Durability, NodeState, Role, RoleState, Step, Wire};
use crate::properties;
use crate::register_view::History;
use crate::symmetry::Symmetry;
use dynamo_model::mutant::Mutant;
use dynamo_model::sim::SyncFlaw;
use dynamo_model::{
    ActorId, Config, ConfigError, ConfigParams, Effect, Key, Limits, Msg, NodeId, Ring,
};
use stateright::actor::{ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network};
use stateright::{Model, Path, Property};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// The key every named configuration works on.
pub const KEY: &str = "k";

/// Why a [`Setup`] cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The protocol refuses the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Contexts are cut where no versions are sent, so lineage would be empty.
    #[error(
        "context_entries_max = {0} cuts contexts, and the properties then follow the versions \
         nodes send each other: N must be at least 2"
    )]
    CutsNeedReplicas(usize),
}

/// The network semantics of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    /// Per-pair FIFO, no loss, no duplication.
    Ordered,
    /// Any order, each message delivered exactly once.
    Unordered,
    /// Any order, a message may be delivered any number of times.
    Duplicating,
    /// Any order, a message may be dropped.
    Lossy,
}

impl NetworkKind {
    /// Every kind, by command-line name.
    pub const ALL: [(&'static str, NetworkKind); 4] = [
        ("ordered", NetworkKind::Ordered),
        ("unordered", NetworkKind::Unordered),
        ("duplicating", NetworkKind::Duplicating),
        ("lossy", NetworkKind::Lossy),
    ];

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<NetworkKind> {
        NetworkKind::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        NetworkKind::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Which client operations go where: the script is built from the key's walk of the ring (its
/// preference list first), so it does not depend on node ids. An index counts along the whole
/// walk (modulo the node count): with `--n` below a named configuration's N, an index that was on
/// the preference list can fall outside it, and the request is then forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A put through the walk's `i`-th node: a preference-list node when `i` < N, which
    /// coordinates it; a later one forwards it to a coordinator.
    Put(usize),
    /// A get through the walk's `i`-th node, as for a put.
    Get(usize),
}

/// The bounds of one check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Setup {
    /// The configuration's name.
    pub name: String,
    /// Storage node count.
    pub nodes: usize,
    /// Q, the partition count.
    pub partitions: u32,
    /// Replicas per key.
    pub n: usize,
    /// Read quorum.
    pub r: usize,
    /// Write quorum.
    pub w: usize,
    /// Sloppy quorum with hinted handoff, or strict quorum.
    pub sloppy: bool,
    /// Each client's script.
    pub clients: Vec<Vec<Op>>,
    /// Nodes that may be crashed at the same time.
    pub crashes: usize,
    /// Network semantics.
    pub network: NetworkKind,
    /// Most peer messages in flight at once (a state with more is outside the checked space).
    pub in_flight_max: usize,
    /// At most one background round trip (ping/pong, handoff/ack) per pair of nodes in flight:
    /// the tick period is assumed longer than a round trip.
    pub one_round_trip: bool,
    /// Leave out crashes of nodes that have no volatile state (they lose nothing).
    pub skip_idle_crashes: bool,
    /// Abstract the liveness probe (`Ping` and `Pong`) into a timer that answers it at any moment
    /// (see [`crate::actors::ModelTimer::Probe`]); otherwise both are sent as messages.
    pub probe_timers: bool,
    /// Drop replies that their receiver can only ignore (see [`DynamoModel`]); needs
    /// `probe_timers`, and is off on the duplicating network. Off by default: it frees in-flight
    /// slots for live messages, so under the same in-flight bound it explores more, not less.
    pub drop_dead_replies: bool,
    /// Deliver a reply to its client in the same step that sends it (see [`DynamoModel`]); only
    /// on the ordered and unordered networks and without the linearizability tester.
    pub eager_replies: bool,
    /// Merge a restarted node's states with those of a node that never crashed (see
    /// [`DynamoModel`], **crashes**). On by default; tests compare against the model without it.
    pub merge_restarts: bool,
    /// Search one state per class of states that differ only in a renaming of interchangeable
    /// clients and their values (see [`crate::symmetry`]); applies in DFS (the default strategy), on the
    /// unordered network, without the linearizability tester or cut contexts (whose lineage holds
    /// values), and only where two clients run the same script.
    pub symmetry: bool,
    /// Whether the linearizability tester runs (it keeps a history in every state).
    pub linearizability: bool,
    /// The seeded bug, if any.
    pub mutant: Option<Mutant>,
    /// Most entries a context handed to a client may have (`Limits::context_entries_max`). Below
    /// the default, contexts can be cut ([`Setup::cuts_contexts`]) and the properties follow a
    /// write's lineage through the pasts of every version ever sent.
    pub context_entries_max: usize,
    /// When a node's writes become durable: with each step (the default), or at syncs, as the
    /// node's driver makes them under `always` (see [`Durability`]).
    pub durability: Durability,
}

/// Names of the configurations [`Setup::named`] knows.
pub const NAMES: [&str; 6] = ["tiny", "canonical", "twins", "capped", "forwarded", "large"];

impl Setup {
    /// A named configuration, in sloppy mode (flags switch to strict).
    pub fn named(name: &str) -> Option<Setup> {
        let base = Setup {
            name: name.to_string(),
            nodes: 4,
            partitions: 4,
            n: 3,
            r: 2,
            w: 2,
            sloppy: true,
            clients: Vec::new(),
            crashes: 0,
            network: NetworkKind::Unordered,
            in_flight_max: 3,
            one_round_trip: true,
            skip_idle_crashes: true,
            probe_timers: true,
            drop_dead_replies: false,
            eager_replies: true,
            merge_restarts: true,
            symmetry: true,
            linearizability: false,
            mutant: None,
            context_entries_max: Limits::default().context_entries_max,
            durability: Durability::EveryStep,
        };
        match name {
            // Seconds: 3 nodes (2 primaries, 1 fallback), one client, one put and one get.
            "tiny" => Some(Setup {
                nodes: 3,
                n: 2,
                r: 1,
                w: 2,
                clients: vec![vec![Op::Put(0), Op::Get(1)]],
                ..base
            }),
            // 3 primaries + 1 fallback, two clients each putting through the first primary and
            // reading through another, at most one node crashed.
            "canonical" => Some(Setup {
                clients: vec![vec![Op::Put(0), Op::Get(1)], vec![Op::Put(0), Op::Get(2)]],
                crashes: 1,
                ..base
            }),
            // Canonical with interchangeable clients: both put through the first primary and read
            // through the second, so client symmetry applies.
            "twins" => Some(Setup {
                clients: vec![vec![Op::Put(0), Op::Get(1)], vec![Op::Put(0), Op::Get(1)]],
                crashes: 1,
                ..base
            }),
            // Contexts cut to 2 entries: 3 nodes, all primaries (no fallbacks: sloppy quorum
            // differs from strict only in its two-stage deadline). One client writes through each
            // node in turn, reading in between, so that its contexts come to name three
            // coordinators and are cut, and its last put asks a coordinator whose first counter a
            // cut may have made its copy of the key forget (see `with_capped_script`); a second
            // client's put races with all of it.
            "capped" => {
                Some(Setup { nodes: 3, context_entries_max: 2, ..base }.with_capped_script())
            }
            // Requests through a node outside the preference list: one client puts and reads
            // through the fallback (walk index 3 of 4 nodes), which forwards both to a primary
            // and answers by itself when no answer comes in time; the other puts through the
            // first primary and reads through the second; at most one node crashed.
            "forwarded" => Some(Setup {
                clients: vec![vec![Op::Put(3), Op::Get(3)], vec![Op::Put(0), Op::Get(1)]],
                crashes: 1,
                ..base
            }),
            // Meant for simulation: 5 nodes, three clients with read-modify-write scripts.
            "large" => Some(Setup {
                nodes: 5,
                partitions: 8,
                clients: vec![
                    vec![Op::Put(0), Op::Get(1), Op::Put(1), Op::Get(2)],
                    vec![Op::Put(1), Op::Get(2), Op::Put(2)],
                    vec![Op::Put(2), Op::Get(0), Op::Get(1)],
                ],
                crashes: 2,
                in_flight_max: 12,
                ..base
            }),
            _ => None,
        }
    }

    /// The `capped` configuration's clients. The first puts through nodes 2, 1, 0, 1 and 2 with a
    /// get before each of the middle three. At equal times a cut keeps the lowest actors after the answered
    /// dots, so the third get's context, cut from {n0, n1, n2} to 2 entries, leaves out n2; the
    /// put through n1 on it replaces the version that named n2's counter, and the last put asks n2
    /// for a new counter after n2's copy of the key may have forgotten its first. The second puts
    /// through node 0 with no context, racing with all of that, and reads through node 2.
    fn with_capped_script(self) -> Setup {
        let walk = self.walk().expect("the capped configuration is valid");
        let at = |node: u16| {
            walk.iter().position(|n| n.0 == node).expect("every node is on the key's walk")
        };
        let script = vec![
            Op::Put(at(2)),
            Op::Get(at(1)),
            Op::Put(at(1)),
            Op::Get(at(0)),
            Op::Put(at(0)),
            Op::Get(at(1)),
            Op::Put(at(1)),
            Op::Put(at(2)),
        ];
        let racer = vec![Op::Put(at(0)), Op::Get(at(2))];
        Setup { clients: vec![script, racer], ..self }
    }

    /// Whether contexts handed to clients can be cut: the limit is below the default, which no
    /// named configuration's contexts reach. The properties then follow lineage through the
    /// versions nodes send each other, which needs N >= 2 (with one replica nothing is sent; see
    /// [`Setup::check`]).
    pub fn cuts_contexts(&self) -> bool {
        self.context_entries_max < Limits::default().context_entries_max
    }

    /// Whether writes become durable only at syncs ([`Durability::Syncs`]).
    pub fn unsynced(&self) -> bool {
        self.durability != Durability::EveryStep
    }

    /// Whether the run keeps the lineage of every version sent: where contexts are cut (the
    /// properties follow chains of pasts) and where writes wait for syncs (a crash can lose a
    /// version whose copies left, and no dot may then be issued for a second one).
    pub fn follows_lineage(&self) -> bool {
        self.cuts_contexts() || self.unsynced()
    }

    /// Checks what the protocol's configuration cannot: lineage needs versions to be sent.
    /// [`Setup::model`] calls it, so no model is built from a setup it refuses.
    pub fn check(&self) -> Result<(), SetupError> {
        if self.cuts_contexts() && self.n < 2 {
            return Err(SetupError::CutsNeedReplicas(self.context_entries_max));
        }
        self.config()?;
        Ok(())
    }

    /// The validated protocol configuration, carrying the mutant if one is set.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut params = ConfigParams::for_nodes((0..self.nodes).map(|i| NodeId(i as u16)));
        params.n = self.n;
        params.r = self.r;
        params.w = self.w;
        params.partitions = self.partitions;
        params.sloppy_quorum = self.sloppy;
        if self.forgets_finished_ops() {
            params.limits.finished_ops_remembered = 0;
        }
        params.limits.context_entries_max = self.context_entries_max;
        Ok(Config::new(params)?.with_mutant(self.mutant))
    }

    /// The ring of this configuration.
    pub fn ring(&self, config: &Config) -> Ring {
        Ring::new(config.partitions(), config.nodes())
    }

    /// The in-flight budget actually applied: a duplicating network keeps every message ever sent,
    /// so its budget is four times larger.
    pub fn in_flight_budget(&self) -> usize {
        if self.network == NetworkKind::Duplicating {
            self.in_flight_max * 4
        } else {
            self.in_flight_max
        }
    }

    /// The key's walk: preference list, then fallbacks.
    pub fn walk(&self) -> Result<Vec<NodeId>, ConfigError> {
        let config = self.config()?;
        Ok(self.ring(&config).walk(&Key::from(KEY)).to_vec())
    }

    /// The key's preference list.
    pub fn primaries(&self) -> Result<Vec<NodeId>, ConfigError> {
        let mut walk = self.walk()?;
        walk.truncate(self.n);
        Ok(walk)
    }

    /// Whether the walk has fallbacks past the preference list.
    pub fn has_fallbacks(&self) -> bool {
        self.nodes > self.n
    }

    /// Whether a client sends a request through a node outside the key's preference list, which
    /// forwards it.
    pub fn forwards(&self) -> bool {
        self.clients.iter().flatten().any(|op| match op {
            Op::Put(i) | Op::Get(i) => self.walk_index(*i) >= self.n,
        })
    }

    /// The position on the key's walk that a script's index `i` names (see [`Op`]).
    fn walk_index(&self, i: usize) -> usize {
        i % self.nodes.max(1)
    }

    /// Whether any two puts may race (siblings become possible).
    pub fn concurrent_puts(&self) -> bool {
        self.clients.iter().filter(|s| s.iter().any(|o| matches!(o, Op::Put(_)))).count() > 1
    }

    /// Builds the stateright model.
    pub fn model(&self) -> Result<DynamoModel, SetupError> {
        self.check()?;
        let config = Arc::new(self.config()?);
        let ring = Arc::new(self.ring(&config));
        let key = Key::from(KEY);
        let walk = ring.walk(&key).to_vec();
        // The walk holds every node (each has a partition).
        let pref = |i: usize| walk.get(self.walk_index(i)).copied().unwrap_or(NodeId(0));
        let mut next_value = b'a';
        let nodes: Vec<Role> = (0..self.nodes)
            .map(|i| Role::Node {
                actor: ActorId::new(NodeId(i as u16), 0),
                config: config.clone(),
                ring: ring.clone(),
                key: key.clone(),
                probe_timers: self.probe_timers,
                cuts: self.cuts_contexts(),
                durability: self.durability,
            })
            .collect();
        let mut clients = Vec::new();
        for script in &self.clients {
            let steps = script
                .iter()
                .map(|op| match op {
                    Op::Put(i) => {
                        let value = next_value;
                        next_value += 1;
                        Step::Put { value, via: pref(*i) }
                    }
                    Op::Get(i) => Step::Get { via: pref(*i) },
                })
                .collect();
            clients.push(Role::Client { script: steps, key: key.clone() });
        }
        let info = Arc::new(ModelInfo {
            setup: self.clone(),
            key,
            primaries: walk.iter().copied().take(self.n).collect(),
            node_count: self.nodes,
        });
        let network = match self.network {
            NetworkKind::Ordered => Network::new_ordered([]),
            NetworkKind::Duplicating => Network::new_unordered_duplicating([]),
            NetworkKind::Unordered | NetworkKind::Lossy => {
                Network::new_unordered_nonduplicating([])
            }
        };
        let lossy =
            if self.network == NetworkKind::Lossy { LossyNetwork::Yes } else { LossyNetwork::No };
        let scripts: Vec<&[Step]> = clients
            .iter()
            .filter_map(|c| match c {
                Role::Client { script, .. } => Some(script.as_slice()),
                Role::Node { .. } => None,
            })
            .collect();
        let symmetry = if self.uses_symmetry() {
            Symmetry::of(self.nodes, &scripts).map(Arc::new)
        } else {
            None
        };
        let history = History::new(self.linearizability, symmetry, self.follows_lineage());
        let actors = ActorModel::new(info, history)
            .actors(nodes)
            .actors(clients)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(self.crashes)
            .record_msg_out(History::record_out)
            .record_msg_in(History::record_in)
            .within_boundary(within_boundary);
        let properties = properties::specs(self)
            .into_iter()
            .map(|s| Property { expectation: s.expectation, name: s.name, condition: s.condition })
            .collect();
        let drop_dead_replies = self.drops_dead_replies();
        let eager_replies = self.delivers_replies_at_once();
        Ok(DynamoModel { inner: actors, properties, drop_dead_replies, eager_replies })
    }

    /// Whether nodes forget the operations they finished: with `merge_restarts`, on every network
    /// that delivers each request at most once. There the memory never decides anything (it only
    /// turns away a second copy of a request); kept, it would keep a restarted node, which lost
    /// it, apart from one that never crashed.
    pub fn forgets_finished_ops(&self) -> bool {
        self.merge_restarts && self.network != NetworkKind::Duplicating
    }

    /// Whether two clients run the same script (through the same nodes).
    pub fn interchangeable_clients(&self) -> bool {
        self.clients.iter().enumerate().any(|(i, a)| self.clients[..i].contains(a))
    }

    /// Whether client symmetry may apply (it still needs two clients with the same script).
    pub fn uses_symmetry(&self) -> bool {
        self.symmetry
            && !self.linearizability
            // The lineage holds values, and under syncs marks and held effects name requests:
            // a renaming would have to move both.
            && !self.follows_lineage()
            && self.network == NetworkKind::Unordered
    }

    /// Whether client replies are delivered in the step that sends them (see [`DynamoModel`]).
    pub fn delivers_replies_at_once(&self) -> bool {
        self.eager_replies
            && !self.linearizability
            && matches!(self.network, NetworkKind::Ordered | NetworkKind::Unordered)
    }

    /// Whether dead replies are dropped in this run (see [`DynamoModel`]).
    pub fn drops_dead_replies(&self) -> bool {
        self.drop_dead_replies && self.probe_timers && self.network != NetworkKind::Duplicating
    }

    /// One line per bound, for the report.
    pub fn bounds(&self) -> Vec<(&'static str, String)> {
        let walk = self.walk().map(|w| format!("{w:?}")).unwrap_or_else(|e| e.to_string());
        vec![
            ("config", self.name.clone()),
            ("nodes", format!("{} (walk of {KEY:?}: {walk})", self.nodes)),
            ("N / R / W", format!("{} / {} / {}", self.n, self.r, self.w)),
            ("quorum", if self.sloppy { "sloppy (hinted handoff)" } else { "strict" }.into()),
            ("clients", format!("{} {:?}", self.clients.len(), self.clients)),
            (
                "crashes",
                format!(
                    "at most {} node(s) down at once{}",
                    self.crashes,
                    if self.unsynced() {
                        " and crashes in the whole run (each restart is a new incarnation), \
                         idle nodes included"
                    } else if self.skip_idle_crashes {
                        ", only nodes with volatile state crash"
                    } else {
                        ""
                    }
                ),
            ),
            ("network", self.network.name().into()),
            (
                "in flight",
                format!("at most {} peer messages, no two identical", self.in_flight_budget()),
            ),
            (
                "round trips",
                if self.one_round_trip {
                    "one ping/pong and one handoff/ack per node pair in flight"
                } else {
                    "unbounded"
                }
                .into(),
            ),
            (
                "probes",
                if self.probe_timers {
                    "a suspected node's probe may be answered at any moment (no Ping/Pong messages)"
                } else {
                    "Ping and Pong sent as messages"
                }
                .into(),
            ),
            (
                "client replies",
                if self.delivers_replies_at_once() {
                    "received in the step that sends them (the next request may still wait)"
                } else {
                    "messages like any other"
                }
                .into(),
            ),
            (
                "dead replies",
                if self.drops_dead_replies() {
                    "dropped (a reply for an operation its receiver no longer has)"
                } else {
                    "delivered"
                }
                .into(),
            ),
            (
                "restarts",
                match (self.merge_restarts, self.forgets_finished_ops()) {
                    (true, true) => {
                        "merged with never-crashed nodes (lost state dropped at the \
                                     crash, finished operations not remembered)"
                    }
                    (true, false) => {
                        "lost state dropped at the crash (finished operations \
                                      remembered: requests may arrive twice)"
                    }
                    (false, _) => "not merged",
                }
                .into(),
            ),
            (
                "symmetry",
                match (self.interchangeable_clients(), self.uses_symmetry()) {
                    (false, _) => "none (no two clients run the same script)",
                    (true, true) => {
                        "clients with the same script are interchangeable, with \
                                     their values (applied by DFS)"
                    }
                    (true, false) => "off",
                }
                .into(),
            ),
            ("linearizability", if self.linearizability { "tested" } else { "off" }.into()),
            ("mutant", self.mutant.map(|m| m.name()).unwrap_or("none").into()),
            (
                "contexts",
                if self.cuts_contexts() {
                    format!(
                        "cut to {} entries; properties follow lineage through sent versions",
                        self.context_entries_max
                    )
                } else {
                    format!("at most {} entries (never cut here)", self.context_entries_max)
                },
            ),
            (
                "writes",
                match self.durability {
                    Durability::EveryStep => {
                        "durable with the step that made them, before any of its effects leaves"
                            .into()
                    }
                    Durability::Syncs(flaw) => format!(
                        "durable at the node's next sync (any moment after); copies for peers \
                         leave at once, other effects wait for what they depend on; a crash \
                         loses the rest and the restart takes a new incarnation{}",
                        match flaw {
                            None => String::new(),
                            Some(f) => format!(" (flaw on purpose: {})", sync_flaw_name(f)),
                        }
                    ),
                },
            ),
        ]
    }
}

/// The flaws a run under syncs can carry on purpose, by command-line name.
pub const SYNC_FLAWS: [(&str, SyncFlaw); 2] = [
    ("keep-incarnation", SyncFlaw::KeepIncarnation),
    ("answer-before-sync", SyncFlaw::AnswerBeforeSync),
];

/// The command-line name of a flaw.
pub fn sync_flaw_name(flaw: SyncFlaw) -> &'static str {
    SYNC_FLAWS.iter().find(|(_, f)| *f == flaw).map(|(n, _)| *n).unwrap_or("?")
}

/// What the properties need to know about a run, shared by every state.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The setup.
    pub setup: Setup,
    /// The key.
    pub key: Key,
    /// Its preference list.
    pub primaries: BTreeSet<NodeId>,
    /// How many of the actors are storage nodes (the rest are clients).
    pub node_count: usize,
}

/// Stateright's actor model of the cluster: nodes and clients over a network.
pub type ActorsModel = ActorModel<Role, Arc<ModelInfo>, History>;
/// One state of it.
pub type DynamoState = ActorModelState<Role, History>;
/// One step.
pub type DynamoAction = ActorModelAction<Wire, crate::actors::ModelTimer, ()>;

/// The stateright model of a Dynamo cluster: the actor model, with the specification's properties
/// and one reduction applied after every step.
///
/// **Dead replies.** A `StoreAck` or `FetchReply` for an operation its coordinator no longer has
/// (finished, timed out, or lost in a crash), a `ForwardReply` for a forward its origin no longer
/// waits on, and a `Fetch` whose answer would be such a `FetchReply` can only be ignored by their
/// receiver: operation ids are never reused (a client sends each request once and the network does
/// not duplicate), so the operation never comes back. Delivering one changes nothing but the
/// receiver's suspicion of the sender, which the receiver's probe timer can clear at any moment
/// anyway. Such a message is removed from the network as soon as it is dead, instead of adding
/// every moment of its useless delivery to the state space and holding an in-flight slot. Every
/// behaviour of the unreduced model maps to one of the reduced model with the same stores, client
/// outcomes and quiescent states, so no discovery is lost (`--drop-dead-replies` turns it on).
///
/// **Client replies.** A reply is received by its client in the same step that sends it (on by
/// default; `--lazy-replies` turns it off, and it is off on the lossy and duplicating networks and
/// with the linearizability tester). Receiving a reply changes only the client: it records the
/// outcome and sends its next request, which may then wait in the network as long as any
/// message. No other actor reads a client's state, and the in-flight bound counts peer messages
/// only, so moving every reply's receipt to right after its sending maps each run of the
/// unreduced model onto a run of this one with the same node states, stores and peer messages at
/// every step, the clients at least as far along, and the same quiescent states. The properties
/// over client outcomes only grow stricter when outcomes are recorded earlier (an acknowledged put
/// must be durable from the moment it is acknowledged), and each client's own order of
/// operations, which read-your-writes is about, is unchanged. Without it every other step of the
/// run could happen before or after each receipt, multiplying the states by the ways of
/// interleaving four replies. Linearizability is different: a later receipt shifts the client's
/// next invocation later in real time, which can add constraints, so the tester sees lazy replies.
///
/// **Crashes.** A crashed node's state is replaced by an unstarted node over its durable store
/// (see [`Role::crashed`]), so crashes that lost different operations in progress lead to the
/// same state. A crashed node receives nothing and fires no timer, and its recovery rebuilds the
/// node from the store alone, so no behaviour changes. With the finished-operation memory off
/// (see [`Setup::config`]) and no flag marking a restarted node, a node after its recovery is
/// also the same state as a node that never crashed, so the runs after a recovery are not
/// explored a second time. Under syncs ([`Setup::unsynced`]) a restart takes a new incarnation,
/// so a recovered node stays apart from one that never crashed, and every crash counts against
/// the run's bound, idle ones included (see [`Setup::bounds`]).
pub struct DynamoModel {
    /// The actor model.
    pub inner: ActorsModel,
    properties: Vec<Property<DynamoModel>>,
    drop_dead_replies: bool,
    eager_replies: bool,
}

impl fmt::Debug for DynamoModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoModel").field("setup", &self.cfg.setup).finish_non_exhaustive()
    }
}

impl std::ops::Deref for DynamoModel {
    type Target = ActorsModel;
    fn deref(&self) -> &ActorsModel {
        &self.inner
    }
}

impl Model for DynamoModel {
    type State = DynamoState;
    type Action = DynamoAction;

    fn init_states(&self) -> Vec<DynamoState> {
        self.inner.init_states().into_iter().map(|s| self.reduce(s)).collect()
    }
    fn actions(&self, state: &DynamoState, actions: &mut Vec<DynamoAction>) {
        self.inner.actions(state, actions)
    }
    fn next_state(&self, last: &DynamoState, action: DynamoAction) -> Option<DynamoState> {
        if let ActorModelAction::Crash(id) = action {
            return self.crash(last, id).map(|s| self.reduce(s));
        }
        let next = self.inner.next_state(last, action)?;
        Some(self.reduce(self.receive_replies(next, None)))
    }
    fn format_action(&self, action: &DynamoAction) -> String {
        self.inner.format_action(action)
    }
    fn format_step(&self, last: &DynamoState, action: DynamoAction) -> Option<String> {
        self.inner.format_step(last, action)
    }
    fn as_svg(&self, path: Path<DynamoState, DynamoAction>) -> Option<String> {
        // The actor model draws only its own steps, so the replies received within a step are
        // spelled out as deliveries of their own.
        let mut actions = Vec::new();
        for (state, action) in path.clone().into_vec() {
            if let Some(a) = action {
                actions.extend(self.expand(&state, a));
            }
        }
        let init = path.into_vec().into_iter().next()?.0;
        self.inner.as_svg(Path::from_actions(&self.inner, init, &actions)?)
    }
    fn properties(&self) -> Vec<Property<DynamoModel>> {
        self.properties.clone()
    }
    fn within_boundary(&self, state: &DynamoState) -> bool {
        Model::within_boundary(&self.inner, state)
    }
}

impl DynamoModel {
    /// Crashes node `id` (see [`DynamoModel`], **crashes**). Clients never crash; with
    /// `skip_idle_crashes`, neither does a node that would lose nothing.
    fn crash(&self, last: &DynamoState, id: Id) -> Option<DynamoState> {
        let i = usize::from(id);
        let RoleState::Node(ns) = &**last.actor_states.get(i)? else { return None };
        if self.cfg.setup.skip_idle_crashes && loses_nothing(&self.cfg.setup, ns) {
            return None;
        }
        if self.cfg.setup.unsynced() {
            // Each restart takes a new incarnation, so runs with more crashes never merge with
            // runs with fewer: the crashes of the whole run are bounded (those done, and those of
            // nodes still down), not only those at once.
            let restarts: usize = (0..self.cfg.node_count)
                .filter_map(|n| last.actor_storages.get(n).and_then(Option::as_ref))
                .map(|d| d.restarts as usize)
                .sum();
            let down = last.crashed.iter().take(self.cfg.node_count).filter(|c| **c).count();
            if restarts + down >= self.cfg.setup.crashes {
                return None;
            }
        }
        let durable =
            last.actor_storages.get(i).and_then(Option::as_ref).cloned().unwrap_or_default();
        let kept = self.inner.actors.get(i)?.crashed(ns, &durable)?;
        let mut next = self.inner.next_state(last, ActorModelAction::Crash(id))?;
        if self.cfg.setup.merge_restarts {
            next.actor_states[i] = Arc::new(RoleState::Node(Box::new(kept)));
        }
        Some(next)
    }

    /// The actor-model steps one step of this model consists of: `action` itself, then the
    /// delivery of each client reply it sent (see [`DynamoModel`]).
    pub fn expand(&self, last: &DynamoState, action: DynamoAction) -> Vec<DynamoAction> {
        let mut steps = vec![action.clone()];
        if let Some(next) = self.inner.next_state(last, action) {
            self.receive_replies(next, Some(&mut steps));
        }
        steps
    }

    /// Delivers every client reply in flight to its client, one after another, noting each
    /// delivery in `trail`. Each delivery consumes a reply and sends at most a request, so this
    /// ends.
    fn receive_replies(
        &self,
        mut state: DynamoState,
        mut trail: Option<&mut Vec<DynamoAction>>,
    ) -> DynamoState {
        if !self.eager_replies {
            return state;
        }
        while let Some((src, dst, msg)) = deliverable_reply(&state.network) {
            let deliver = ActorModelAction::Deliver { src, dst, msg };
            if let Some(t) = trail.as_deref_mut() {
                t.push(deliver.clone());
            }
            match self.inner.next_state(&state, deliver) {
                Some(next) => state = next,
                None => break,
            }
        }
        state
    }

    fn reduce(&self, mut state: DynamoState) -> DynamoState {
        if !self.drop_dead_replies {
            return state;
        }
        let dead = |src: Id, dst: Id, msg: &Wire| dead_reply(&self.cfg, &state, src, dst, msg);
        let any_dead = envelopes(&state.network).into_iter().any(|(s, d, m, _)| dead(s, d, m));
        if !any_dead {
            return state;
        }
        let mut network = state.network.clone();
        match &mut network {
            Network::UnorderedNonDuplicating(multiset) => {
                multiset.retain(|e, _| !dead(e.src, e.dst, &e.msg));
            }
            Network::Ordered(flows) => {
                for ((src, dst), queue) in flows.iter_mut() {
                    queue.retain(|m| !dead(*src, *dst, m));
                }
                flows.retain(|_, queue| !queue.is_empty());
            }
            Network::UnorderedDuplicating(..) => {}
        }
        state.network = network;
        state
    }
}

/// Whether the message `src` sent to `dst` can only be ignored, now and forever (see
/// [`DynamoModel`]).
fn dead_reply(info: &ModelInfo, state: &DynamoState, src: Id, dst: Id, msg: &Wire) -> bool {
    let Wire::Peer(msg) = msg else { return false };
    // The node whose operation or forward the message (or its answer) is for.
    let waiter = match msg {
        Msg::StoreAck { .. } | Msg::FetchReply { .. } | Msg::ForwardReply { .. } => dst,
        Msg::Fetch { .. } => src,
        _ => return false,
    };
    let i = usize::from(waiter);
    if i >= info.node_count {
        return false;
    }
    if state.crashed.get(i).copied().unwrap_or(false) {
        return true; // its operations and forwards are lost; a restart starts with none
    }
    let Some(RoleState::Node(ns)) = state.actor_states.get(i).map(|s| &**s) else { return false };
    let v = ns.node.volatile();
    match msg {
        Msg::StoreAck { op } | Msg::FetchReply { op, .. } | Msg::Fetch { op, .. } => {
            !v.ops.contains_key(op)
        }
        Msg::ForwardReply { req, .. } => !v.forwards.contains_key(req),
        _ => false,
    }
}

/// The checked space: at most `in_flight_max` messages are in flight, and no message is in
/// flight twice. The last bound is what keeps periodic ticks finite: a tick re-sends a ping or a
/// hint that is still undelivered, and such a copy is indistinguishable from the first until one
/// is delivered (duplication is the `duplicating` network's job). Which actors may crash is
/// decided by [`DynamoModel`]'s crash step.
fn within_boundary(info: &Arc<ModelInfo>, state: &DynamoState) -> bool {
    let mut seen = BTreeSet::new();
    let mut exchanges = BTreeSet::new();
    let mut count = 0;
    let max = info.setup.in_flight_budget();
    // Under syncs, a peer message a node holds for its sync is already on its way: it counts as
    // in flight (otherwise a sync put off for ever would let a node pile up answers to a
    // handoff its peer's ticks keep sending). A crashed node's are lost.
    let held: Vec<(Id, Id, Wire)> = state
        .actor_states
        .iter()
        .take(info.node_count)
        .enumerate()
        .filter(|(i, _)| !state.crashed.get(*i).copied().unwrap_or(false))
        .flat_map(|(i, s)| match &**s {
            RoleState::Node(ns) => ns
                .held
                .iter()
                .filter_map(|e| match e {
                    Effect::Send { to, msg } => {
                        Some((Id::from(i), actor_of(*to), Wire::Peer(msg.clone())))
                    }
                    _ => None,
                })
                .collect(),
            RoleState::Client(_) => Vec::new(),
        })
        .collect();
    let held = held.iter().map(|(src, dst, msg)| (*src, *dst, msg, 1));
    for (src, dst, msg, copies) in envelopes(&state.network).into_iter().chain(held) {
        // Client requests and replies are bounded by the clients themselves (one operation in
        // flight each); the budget counts peer messages.
        if matches!(msg, Wire::Peer(_)) {
            count += copies;
        }
        if count > max || copies > 1 || !seen.insert((src, dst, msg)) {
            return false;
        }
        if info.setup.one_round_trip {
            // A probe or a handoff and its answer form one round trip between a pair of nodes.
            let trip = match msg {
                Wire::Peer(Msg::Ping) => Some((false, src, dst)),
                Wire::Peer(Msg::Pong) => Some((false, dst, src)),
                Wire::Peer(Msg::Handoff { .. }) => Some((true, src, dst)),
                Wire::Peer(Msg::HandoffAck { .. }) => Some((true, dst, src)),
                _ => None,
            };
            if trip.is_some_and(|t| !exchanges.insert(t)) {
                return false;
            }
        }
    }
    true
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.bounds() {
            writeln!(f, "  {k:<16} {v}")?;
        }
        Ok(())
    }
}

/// The message type, re-exported for trace printing.
pub type WireMsg = Wire;

/// Whether crashing a node in state `ns` would lose nothing: never under syncs, where the
/// restart takes a new incarnation and the node's later writes carry other dots. Otherwise its
/// store is durable, and it has no operation or forward to lose, so the crash and its recovery
/// look, to everyone else, like a stretch in which the node happened to do nothing while its
/// messages were delayed, which the network already allows. Leaving out these crashes keeps every
/// reachable combination of stores and client outcomes.
///
/// Suspicions count as volatile state only when the probe is sent as messages. With probe timers
/// a crash that loses only suspicions is the same as every probe being answered (each a step the
/// model explores) followed by an idle crash. The set of finished operations counts only on the
/// duplicating network: elsewhere no request arrives twice, so it never decides anything.
fn loses_nothing(setup: &Setup, ns: &NodeState) -> bool {
    let v = ns.node.volatile();
    !setup.unsynced()
        && v.ops.is_empty()
        && v.forwards.is_empty()
        && (setup.probe_timers || v.suspected.is_empty())
        && (setup.network != NetworkKind::Duplicating || v.done.is_empty())
}

/// Every envelope in the network with its number of copies. (Stateright 0.31's `iter_all` never
/// advances within an ordered flow, so the variants are walked here directly.)
/// A client reply that can be delivered now (on an ordered network, one at the head of its flow).
fn deliverable_reply(net: &Network<Wire>) -> Option<(Id, Id, Wire)> {
    let is_reply = |m: &Wire| matches!(m, Wire::Reply { .. });
    match net {
        Network::UnorderedNonDuplicating(multiset) => {
            multiset.keys().find(|e| is_reply(&e.msg)).map(|e| (e.src, e.dst, e.msg.clone()))
        }
        Network::Ordered(flows) => flows.iter().find_map(|((src, dst), q)| {
            q.front().filter(|m| is_reply(m)).map(|m| (*src, *dst, m.clone()))
        }),
        // Replies stay in a duplicating network after delivery; they are not received eagerly.
        Network::UnorderedDuplicating(..) => None,
    }
}

fn envelopes(net: &Network<Wire>) -> Vec<(Id, Id, &Wire, usize)> {
    match net {
        Network::UnorderedDuplicating(set, _) => {
            set.iter().map(|e| (e.src, e.dst, &e.msg, 1)).collect()
        }
        Network::UnorderedNonDuplicating(multiset) => {
            multiset.iter().map(|(e, n)| (e.src, e.dst, &e.msg, *n)).collect()
        }
        Network::Ordered(flows) => flows
            .iter()
            .flat_map(|((src, dst), q)| q.iter().map(move |m| (*src, *dst, m, 1)))
            .collect(),
    }
}
