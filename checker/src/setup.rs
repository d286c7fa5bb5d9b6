//! Named configurations of the model and the stateright `ActorModel` built from them.
//!
//! A [`Setup`] is everything that bounds one check: the cluster (nodes, N, R, W, sloppy or
//! strict), the clients and their scripts, the network semantics, how many nodes may be crashed
//! at once, an optional mutant, and the in-flight bound that keeps the state space finite. Named
//! configurations ([`Setup::named`]) give a protocol designer reproducible starting points; flags
//! override their fields.

use crate::actors::{NodeState, Role, RoleState, Step, Wire};
use crate::properties;
use crate::register_view::History;
use dynamo_model::mutant::Mutant;
use dynamo_model::{ActorId, Config, ConfigError, ConfigParams, Key, Msg, Node, NodeId, Ring};
use stateright::actor::{ActorModel, ActorModelState, Id, LossyNetwork, Network};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// The key every named configuration works on.
pub const KEY: &str = "k";

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

/// Which client operations go where: the script is built from the preference list, so it does not
/// depend on node ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A put through the preference list's `i`-th node.
    Put(usize),
    /// A get through the preference list's `i`-th node.
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
    /// Merge states that differ only in a crashed node's dead volatile state (DFS and simulation).
    pub reduce_crashed: bool,
    /// Whether the linearizability tester runs (it keeps a history in every state).
    pub linearizability: bool,
    /// The seeded bug, if any.
    pub mutant: Option<Mutant>,
}

/// Names of the configurations [`Setup::named`] knows.
pub const NAMES: [&str; 3] = ["tiny", "canonical", "large"];

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
            reduce_crashed: false,
            skip_idle_crashes: true,
            linearizability: false,
            mutant: None,
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

    /// The validated protocol configuration, carrying the mutant if one is set.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut params = ConfigParams::for_nodes((0..self.nodes).map(|i| NodeId(i as u16)));
        params.n = self.n;
        params.r = self.r;
        params.w = self.w;
        params.partitions = self.partitions;
        params.sloppy_quorum = self.sloppy;
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

    /// Whether any two puts may race (siblings become possible).
    pub fn concurrent_puts(&self) -> bool {
        self.clients.iter().filter(|s| s.iter().any(|o| matches!(o, Op::Put(_)))).count() > 1
    }

    /// Builds the stateright model.
    pub fn model(&self) -> Result<DynamoModel, ConfigError> {
        let config = Arc::new(self.config()?);
        let ring = Arc::new(self.ring(&config));
        let key = Key::from(KEY);
        let walk = ring.walk(&key).to_vec();
        let pref = |i: usize| walk.get(i % self.n.max(1)).copied().unwrap_or(NodeId(0));
        let mut next_value = b'a';
        let nodes: Vec<Role> = (0..self.nodes)
            .map(|i| Role::Node {
                actor: ActorId::new(NodeId(i as u16), 0),
                config: config.clone(),
                ring: ring.clone(),
                key: key.clone(),
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
        let history = History::new(self.linearizability);
        let model = ActorModel::new(info, history)
            .actors(nodes)
            .actors(clients)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(self.crashes)
            .record_msg_out(History::record_out)
            .record_msg_in(History::record_in)
            .within_boundary(within_boundary);
        Ok(properties::add_all(model, self))
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
                    if self.skip_idle_crashes {
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
                "reduction",
                if self.reduce_crashed { "crashed nodes' volatile state merged" } else { "none" }
                    .into(),
            ),
            ("linearizability", if self.linearizability { "tested" } else { "off" }.into()),
            ("mutant", self.mutant.map(|m| m.name()).unwrap_or("none").into()),
        ]
    }
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

/// The stateright model of a Dynamo cluster.
pub type DynamoModel = ActorModel<Role, Arc<ModelInfo>, History>;
/// One state of it.
pub type DynamoState = ActorModelState<Role, History>;

/// The checked space: clients never crash (only storage nodes do), at most `in_flight_max`
/// messages are in flight, and no message is in flight twice. The last bound is what keeps
/// periodic ticks finite: a tick re-sends a ping or a hint that is still undelivered, and such a
/// copy is indistinguishable from the first until one is delivered (duplication is the
/// `duplicating` network's job).
fn within_boundary(info: &Arc<ModelInfo>, state: &DynamoState) -> bool {
    if state.crashed.iter().skip(info.node_count).any(|c| *c) {
        return false;
    }
    if info.setup.skip_idle_crashes && crashed_idle(info, state) {
        return false;
    }
    let mut seen = BTreeSet::new();
    let mut exchanges = BTreeSet::new();
    let mut count = 0;
    let max = info.setup.in_flight_budget();
    for (src, dst, msg, copies) in envelopes(&state.network) {
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

/// The canonical representative of a state, used for fingerprints by DFS and simulation (through
/// stateright's `symmetry_fn`). A crashed node's leftover volatile state can never influence the
/// future: it cannot receive messages or fire timers, and recovery rebuilds it from the durable
/// store. So states that differ only there are merged, by replacing a crashed node's state with
/// a freshly started node over the same store.
pub fn representative(state: &DynamoState) -> DynamoState {
    let mut rep = state.clone();
    for (i, crashed) in state.crashed.iter().enumerate() {
        if !*crashed {
            continue;
        }
        let Some(slot) = rep.actor_states.get_mut(i) else { continue };
        if let RoleState::Node(ns) = &**slot {
            let node = &ns.node;
            let store = state.actor_storages.get(i).cloned().flatten().unwrap_or_default();
            let fresh = Node::new(
                node.actor(),
                Arc::new(node.config().clone()),
                Arc::new(node.ring().clone()),
                store,
            );
            let fresh = NodeState { node: fresh, ..(**ns).clone() };
            *slot = Arc::new(RoleState::Node(Box::new(fresh)));
        }
    }
    rep
}

/// Whether a crashed node had no volatile state when it crashed. Such a crash loses nothing: the
/// node's store is durable and it had no operation, forward or suspicion to lose, so the crash and
/// its recovery look, to everyone else, like a stretch in which the node happened to do nothing
/// while its messages were delayed, which the network already allows. Pruning these crashes keeps
/// every reachable combination of stores and client outcomes.
fn crashed_idle(info: &ModelInfo, state: &DynamoState) -> bool {
    state.crashed.iter().take(info.node_count).enumerate().any(|(i, crashed)| {
        *crashed
            && state.actor_states.get(i).is_some_and(|s| match &**s {
                RoleState::Node(ns) => {
                    let v = ns.node.volatile();
                    v.ops.is_empty() && v.forwards.is_empty() && v.suspected.is_empty()
                }
                RoleState::Client(_) => false,
            })
    })
}

/// Every envelope in the network with its number of copies. (Stateright 0.31's `iter_all` never
/// advances within an ordered flow, so the variants are walked here directly.)
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
