//! A seeded, deterministic cluster simulator over the real core.
//!
//! Many [`Node`]s over [`MemStore`]s exchange messages through a simulated network that can delay,
//! reorder (by random delays), drop and duplicate them; nodes can crash (volatile state and timers
//! lost, store kept) and restart. Clients run random workloads and every invocation and outcome is
//! recorded. All randomness comes from one ChaCha8 generator seeded by [`SimConfig::seed`], so a
//! seed replays a run exactly. After every step the simulator checks [`invariants::check_node`];
//! [`Sim::run_workload`] also checks, once faults stop and the cluster has quiesced, that no
//! acknowledged write was lost, every value read had been written, and every key's N primaries hold
//! the same siblings with no hints left anywhere; and it checks every version nodes send, so that
//! no dot ever names two writes. A failure carries the seed and the trace.
//!
//! With contexts cut to the client limit ([`crate::clock::Context::capped`]) a write can replace a
//! version whose past alone named an older write. The simulator keeps the past of every version
//! nodes send, and counts a write as superseded when a held version names it through such a chain;
//! a stale copy that came back as a sibling beside a version superseding it that way is left out
//! when primaries are compared. Without cut pasts the chains add nothing.
//!
//! With [`SimConfig::syncs`] writes become durable only at each node's syncs, as under the
//! node's `always` policy, and a crash may lose what the last sync did not cover: each effect
//! waits for a sync covering the writes it depends on, by the rule the node's driver applies
//! ([`crate::dependency`], through [`crate::marks`], which the model checker's unsynced mode
//! uses too: copies for peers to keep leave at once, the answer to a read of durable data waits
//! only for its own step's writes), and a node restarted after a crash writes under a new
//! incarnation. The checks above
//! then cover that rule and its exemptions from the durability rule (see [`crate::node`]).
//!
//! Convergence is reached through read repair: after healing, the run reads every key from all N
//! replicas (as Jepsen's final reads do). Background anti-entropy is not part of the core yet.

use crate::clock::{Context, Dot};
use crate::config::{Config, ConfigParams};
use crate::ids::{ActorId, Key, NodeId, RequestId};
use crate::invariants;
use crate::lineage::Lineage;
use crate::marks::Marks;
use crate::msg::{Action, ClientOp, ClientReply, Msg};
use crate::node::{Effect, Input, Node, Timer};
use crate::ring::Ring;
use crate::store::MemStore;
use crate::versioned::Payload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// How many trace lines a failure keeps (the most recent ones).
pub const TRACE_LINES_MAX: usize = 400;
/// Most events one call may process before it gives up.
pub const STEPS_MAX: usize = 2_000_000;

/// Network and node faults, active during the fault period of a workload run.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Per-mille chance that a message is dropped.
    pub drop_per_mille: u32,
    /// Per-mille chance that a message is delivered twice.
    pub dup_per_mille: u32,
    /// Per-mille chance, per client operation started, that a random node crashes.
    pub crash_per_mille: u32,
    /// How long a crashed node stays down, in ms.
    pub down_ms: u64,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Faults { drop_per_mille: 0, dup_per_mille: 0, crash_per_mille: 0, down_ms: 0 }
    }
}

/// A simulation's shape. `Default` is a 5-node, N=3 R=2 W=2 sloppy cluster with moderate faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// Protocol configuration (nodes, N, R, W, Q, sloppy, timeouts, limits).
    pub params: ConfigParams,
    /// Message delay range in ms (random within it, so messages reorder).
    pub delay_ms: (u64, u64),
    /// Faults during the fault period.
    pub faults: Faults,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations per client.
    pub ops_per_client: usize,
    /// Distinct keys the clients use.
    pub keys: usize,
    /// A client gives up on a request after this long (its outcome is then unknown).
    pub client_timeout_ms: u64,
    /// Out of 1,000 requests, how many name a timeout of their own (`timeout_ms`), drawn
    /// between 1 ms and twice `sloppy_retry_ms`: many shorter than the coordinator's first
    /// deadline, which answers them at once and judges the replicas later. Drawn from a stream
    /// of their own, so that 0 (the default) leaves every other run as it was.
    pub short_timeouts_per_mille: u32,
    /// Keep every sent version (see [`Lineage`]) for the checks that no dot is
    /// issued twice and that follow chains of pasts. On for every checked run; off only where
    /// one simulation makes millions of puts (the benchmark), since what it keeps only grows.
    pub track_lineage: bool,
    /// Durability by syncs (see [`Syncs`]); `None` makes every step's writes durable at once.
    pub syncs: Option<Syncs>,
    /// The seeded bug every node runs (see [`crate::mutant`]): shows that a simulation, a pinned
    /// seed above all, still catches the bug it was written for.
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let mut params = ConfigParams::for_nodes((1..=5).map(NodeId));
        params.partitions = 8;
        params.timeouts.request_ms = 200;
        params.timeouts.sloppy_retry_ms = 60;
        params.timeouts.tick_ms = 100;
        // Low enough that some puts are refused, so the runs check that a refusal never applies.
        params.limits.siblings_max = 4;
        SimConfig {
            seed: 0,
            params,
            delay_ms: (1, 10),
            faults: Faults {
                drop_per_mille: 50,
                dup_per_mille: 20,
                crash_per_mille: 30,
                down_ms: 400,
            },
            clients: 4,
            ops_per_client: 12,
            keys: 3,
            client_timeout_ms: 1_000,
            short_timeouts_per_mille: 0,
            track_lineage: true,
            syncs: None,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// Writes made durable by syncs, as the node's driver does under `always`: a step's writes are
/// durable once the node's next sync has run, which it makes some time after a step leaves
/// writes that are not; a crash keeps those and the writes of a random number of the steps
/// after (none to all, as a store that recovers a prefix of its log may), and loses the rest.
/// Each effect waits for the writes it depends on ([`crate::dependency`], through
/// [`crate::marks`]), as the driver holds it.
#[derive(Clone, Debug)]
pub struct Syncs {
    /// How long after a step that leaves writes not yet durable the node syncs (random within).
    pub after_ms: (u64, u64),
    /// A flaw to run with, on purpose: shows that the checks catch what it breaks.
    pub flaw: Option<SyncFlaw>,
}

/// Ways to get [`Syncs`] wrong, each of which the simulator's checks (and the model checker's
/// properties, in its unsynced mode) must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncFlaw {
    /// Restart a crashed node under its old incarnation: a copy that left before its sync then
    /// lets the node issue that copy's counter again, for another write (a dot issued twice).
    KeepIncarnation,
    /// Let a client's answer out before the writes it depends on are durable (its basis taken
    /// as nothing): a crash then loses a write acknowledged on fewer than W durable stores.
    AnswerBeforeSync,
}

/// One recorded client event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryEvent {
    /// A client invoked `op` at node `origin`.
    Invoke {
        /// Which client.
        client: usize,
        /// The request id.
        req: RequestId,
        /// Where it was sent.
        origin: NodeId,
        /// What it asked.
        op: ClientOp,
    },
    /// The outcome; `None` if the client gave up waiting (unknown outcome).
    Complete {
        /// Which client.
        client: usize,
        /// The request id.
        req: RequestId,
        /// The reply, if any came.
        reply: Option<ClientReply>,
    },
}

/// Why a simulation failed, with everything needed to replay it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// What went wrong.
    pub reason: String,
    /// The last steps before it.
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation failed: {}", self.reason)?;
        writeln!(f, "seed = {} (replay with DYNAMO_SIM_SEED={})", self.seed, self.seed)?;
        writeln!(f, "last {} steps:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a workload run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Events processed.
    pub steps: usize,
    /// Simulated time at the end, ms.
    pub now_ms: u64,
    /// Puts and deletes acknowledged.
    pub writes_ok: usize,
    /// Puts and deletes refused (they must never take effect).
    pub writes_rejected: usize,
    /// Puts and deletes with unknown outcome.
    pub writes_indeterminate: usize,
    /// Gets answered.
    pub reads_ok: usize,
    /// Reads that returned more than one value.
    pub reads_with_siblings: usize,
    /// Messages dropped by the network.
    pub dropped: usize,
    /// Crashes injected.
    pub crashes: usize,
    /// Hints delivered (summed over nodes' counters).
    pub hints_delivered: u64,
    /// Read repairs sent (summed over nodes' counters).
    pub read_repairs: u64,
    /// Counters the nodes recorded as issued because a merge made a key's versions forget them
    /// (`Store::save_issued`; only cut pasts do that), counted over every node's store at the end.
    pub issued_records: usize,
    /// Acknowledged writes found superseded on a primary only through a chain of pasts, not named
    /// by a held version's own past (only cut pasts leave such chains).
    pub superseded_through_chains: usize,
    /// Versions left out when primaries were compared because another version they held
    /// superseded them through a chain of pasts (stale copies back beside a cut past).
    pub stale_siblings: usize,
    /// Requests given a timeout of their own (see [`SimConfig::short_timeouts_per_mille`]).
    pub own_timeouts: usize,
    /// Under [`SimConfig::syncs`]: effects let out while their node had writes not yet durable.
    pub sent_before_sync: usize,
    /// Under [`SimConfig::syncs`]: effects held for a sync.
    pub held_for_sync: usize,
    /// Under [`SimConfig::syncs`]: crashes of a node that had writes not yet durable.
    pub unsynced_crashes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Deliver { from: NodeId, to: NodeId, msg: Msg },
    Timer { node: NodeId, timer: Timer, generation: u64 },
    ClientNext { client: usize },
    ClientGiveUp { client: usize, req: RequestId },
    Restart { node: NodeId },
    Sync { node: NodeId, generation: u64 },
}

/// A node's disk under [`SimConfig::syncs`]: what its last sync made durable, and what it wrote
/// and held back since.
#[derive(Debug, Default)]
struct Disk {
    /// What the store held at its last sync.
    durable: MemStore,
    /// The store after each step that changed it since, oldest first: a crash keeps one of
    /// these, or `durable` (see [`Syncs`]).
    unsynced: Vec<MemStore>,
    /// The writes no sync covered yet, counted for [`dependency`].
    marks: Marks,
    /// The effects waiting for the next sync, in order.
    held: Vec<Effect>,
    /// The generation of the sync scheduled, if one is (a crash cancels it).
    sync_due: Option<u64>,
}

#[derive(Debug)]
enum Slot {
    Up(Box<Node<MemStore>>),
    Down(MemStore),
}

#[derive(Debug, Default)]
struct ClientState {
    done: usize,
    pending: Option<RequestId>,
    contexts: BTreeMap<Key, Context>,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    config: Arc<Config>,
    ring: Arc<Ring>,
    rng: ChaCha8Rng,
    /// The same seed's second stream, for the requests' own timeouts only: drawing them leaves
    /// `rng`'s draws, and so every other run, as they were.
    timeouts_rng: ChaCha8Rng,
    /// The third stream, for what a crash under [`SimConfig::syncs`] keeps: likewise apart.
    crash_rng: ChaCha8Rng,
    now_ms: u64,
    seq: u64,
    next_req: u64,
    queue: BinaryHeap<Reverse<(u64, u64, EventKind)>>,
    slots: BTreeMap<NodeId, Slot>,
    timers: BTreeMap<(NodeId, Timer), u64>,
    generation: u64,
    faults_on: bool,
    clients: Vec<ClientState>,
    replies: BTreeMap<RequestId, ClientReply>,
    /// Requests a node has answered: a second answer to one is a violation.
    answered: BTreeSet<RequestId>,
    owners: BTreeMap<RequestId, Option<usize>>,
    history: Vec<HistoryEvent>,
    written: BTreeMap<Key, BTreeSet<Vec<u8>>>,
    trace: VecDeque<String>,
    report: SimReport,
    steps: usize,
    violation: Option<String>,
    /// Acknowledged writes: key, dot and the W they were acknowledged under.
    acked: Vec<(Key, Dot, usize)>,
    /// The past of every version any node sent, by key and dot (actor, counter): a version
    /// written on a cut context (`Context::capped`) can replace one whose past alone named an
    /// older write, which is then superseded through that chain rather than named.
    lineage: BTreeMap<Key, Lineage>,
    copies_check_due: bool,
    /// With [`SimConfig::syncs`]: each node's disk.
    disks: BTreeMap<NodeId, Disk>,
    /// Each node's incarnation (a new one after each crash under [`SimConfig::syncs`]).
    incarnations: BTreeMap<NodeId, u32>,
}

impl Sim {
    /// A cluster of `cfg.params.nodes`, all up and started. Fails on an invalid configuration.
    pub fn new(cfg: SimConfig) -> Result<Sim, crate::config::ConfigError> {
        let config = Config::new(cfg.params.clone())?;
        #[cfg(feature = "mutants")]
        let config = config.with_mutant(cfg.mutant);
        let config = Arc::new(config);
        let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            timeouts_rng: {
                let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
                r.set_stream(1);
                r
            },
            crash_rng: {
                let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
                r.set_stream(2);
                r
            },
            clients: (0..cfg.clients).map(|_| ClientState::default()).collect(),
            cfg,
            config,
            ring,
            now_ms: 0,
            seq: 0,
            next_req: 1,
            queue: BinaryHeap::new(),
            slots: BTreeMap::new(),
            timers: BTreeMap::new(),
            generation: 0,
            faults_on: false,
            replies: BTreeMap::new(),
            answered: BTreeSet::new(),
            owners: BTreeMap::new(),
            history: Vec::new(),
            written: BTreeMap::new(),
            trace: VecDeque::new(),
            report: SimReport::default(),
            steps: 0,
            violation: None,
            acked: Vec::new(),
            lineage: BTreeMap::new(),
            copies_check_due: false,
            disks: BTreeMap::new(),
            incarnations: BTreeMap::new(),
        };
        let ids: Vec<NodeId> = sim.config.nodes().iter().copied().collect();
        for id in ids {
            sim.slots.insert(id, Slot::Down(MemStore::default()));
            if sim.cfg.syncs.is_some() {
                sim.disks.insert(id, Disk::default());
            }
            sim.start(id);
        }
        Ok(sim)
    }

    /// Simulated time, ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    /// The ring every node uses.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }
    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The recorded client history.
    pub fn history(&self) -> &[HistoryEvent] {
        &self.history
    }
    /// A running node, if it is up.
    pub fn node(&self, id: NodeId) -> Option<&Node<MemStore>> {
        match self.slots.get(&id) {
            Some(Slot::Up(n)) => Some(n),
            _ => None,
        }
    }
    /// A node's durable store, up or down.
    pub fn store(&self, id: NodeId) -> Option<&MemStore> {
        if self.cfg.syncs.is_some() {
            return self.disks.get(&id).map(|d| &d.durable);
        }
        match self.slots.get(&id)? {
            Slot::Up(n) => Some(n.store()),
            Slot::Down(s) => Some(s),
        }
    }
    /// The N primaries of `key`.
    pub fn primaries(&self, key: &Key) -> Vec<NodeId> {
        self.ring.preference_list(key, self.config.n()).to_vec()
    }

    /// Crashes `id`: its volatile state and timers are lost, its store is kept (under
    /// [`SimConfig::syncs`], as of its last sync, and its next start takes a new incarnation).
    pub fn crash(&mut self, id: NodeId) {
        if let Some(Slot::Up(_)) = self.slots.get(&id) {
            if let Some(Slot::Up(node)) = self.slots.remove(&id) {
                let store = match &self.cfg.syncs {
                    Some(syncs) => {
                        // The store recovers a prefix of its writes: those the last sync covered,
                        // and perhaps some later ones that reached the disk anyway. Everything
                        // else on the disk goes (the marks, the held effects, the sync due).
                        let disk = std::mem::take(self.disks.entry(id).or_default());
                        let Disk { mut durable, mut unsynced, .. } = disk;
                        let kept = self.crash_rng.random_range(0..=unsynced.len());
                        if kept < unsynced.len() {
                            self.report.unsynced_crashes += 1;
                        }
                        unsynced.truncate(kept);
                        if let Some(last) = unsynced.pop() {
                            durable = last;
                        }
                        if syncs.flaw != Some(SyncFlaw::KeepIncarnation) {
                            *self.incarnations.entry(id).or_default() += 1;
                        }
                        let store = durable.clone();
                        self.disks.insert(id, Disk { durable, ..Disk::default() });
                        store
                    }
                    None => node.into_store(),
                };
                self.slots.insert(id, Slot::Down(store));
            }
            self.timers.retain(|(n, _), _| *n != id);
            self.log(format!("crash {id}"));
        }
    }

    /// Restarts a crashed `id` over its kept store.
    pub fn restart(&mut self, id: NodeId) {
        if let Some(Slot::Down(_)) = self.slots.get(&id) {
            self.start(id);
            self.log(format!("restart {id}"));
        }
    }

    fn start(&mut self, id: NodeId) {
        let Some(Slot::Down(store)) = self.slots.remove(&id) else { return };
        let actor = ActorId::new(id, self.incarnations.get(&id).copied().unwrap_or(0));
        let node = Node::new(actor, self.config.clone(), self.ring.clone(), store);
        self.slots.insert(id, Slot::Up(Box::new(node)));
        self.step_node(id, Input::Start);
    }

    /// Sends `op` to `origin` as a client request and returns its id; run the simulation to get
    /// the answer.
    pub fn submit(&mut self, origin: NodeId, op: ClientOp) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.owners.insert(req, None);
        self.log(format!("client → {origin} {req} {op:?}"));
        self.step_node(origin, Input::Client { req, op });
        req
    }

    /// Runs until `req` is answered (or nothing is left to do, or `deadline_ms` of simulated time
    /// passed) and returns the answer.
    pub fn run_until_reply(&mut self, req: RequestId, deadline_ms: u64) -> Option<ClientReply> {
        let until = self.now_ms + deadline_ms;
        for _ in 0..STEPS_MAX {
            if let Some(r) = self.replies.remove(&req) {
                return Some(r);
            }
            if !self.step_before(until) {
                break;
            }
        }
        self.replies.remove(&req)
    }

    /// Submits `op` to `origin` and runs until it is answered (within 10 s simulated).
    pub fn request(&mut self, origin: NodeId, op: ClientOp) -> Option<ClientReply> {
        let req = self.submit(origin, op);
        self.run_until_reply(req, 10_000)
    }

    /// Runs every event due within the next `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now_ms + ms;
        for _ in 0..STEPS_MAX {
            if !self.step_before(until) {
                break;
            }
        }
        self.now_ms = self.now_ms.max(until);
    }

    /// Runs the configured random workload with faults, heals, reads every key from all replicas,
    /// waits for quiescence and checks the end-state properties.
    pub fn run_workload(mut self) -> Result<SimReport, SimFailure> {
        self.faults_on = true;
        for client in 0..self.cfg.clients {
            self.schedule(0, EventKind::ClientNext { client });
        }
        // Fault period: until every client has finished its operations.
        let mut guard = 0;
        while self.clients.iter().any(|c| c.done < self.cfg.ops_per_client || c.pending.is_some()) {
            guard += 1;
            if guard > STEPS_MAX || !self.step_before(u64::MAX) {
                return Err(self.fail("clients did not finish their workload"));
            }
            self.check_last()?;
        }
        // Heal: no more faults; bring every node back and let suspicions clear.
        self.faults_on = false;
        let down: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Down(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.restart(id);
        }
        let t = self.config.timeouts().clone();
        self.run_for(4 * t.tick_ms + 2 * t.request_ms + self.cfg.delay_ms.1 * 4);
        self.check_last()?;
        // Final reads: every key, all N replicas, retried until answered.
        let keys: Vec<Key> = (0..self.cfg.keys).map(key_name).collect();
        let origins: Vec<NodeId> = self.config.nodes().iter().copied().collect();
        for (i, key) in keys.iter().enumerate() {
            let mut answered = false;
            for attempt in 0..10 {
                let origin = origins[(i + attempt) % origins.len()];
                let mut op = ClientOp::get(key.clone());
                op.r = Some(self.config.n());
                let req = self.submit(origin, op);
                if let Some(ClientReply::Read { values, .. }) = self.run_until_reply(req, 10_000) {
                    self.check_read_values(key, &values)?;
                    answered = true;
                    break;
                }
            }
            if !answered {
                return Err(self.fail(&format!("final read of {key} never gathered N replies")));
            }
        }
        // Quiesce: no operation in progress, no message in flight, no hint anywhere.
        let mut quiet = false;
        for _ in 0..200 {
            if self.quiescent() {
                quiet = true;
                break;
            }
            self.run_for(t.tick_ms);
        }
        if !quiet {
            return Err(self.fail("cluster did not quiesce (hints or operations left)"));
        }
        self.check_end_state(&keys)?;
        self.report.steps = self.steps;
        self.report.now_ms = self.now_ms;
        for slot in self.slots.values() {
            if let Slot::Up(n) = slot {
                self.report.hints_delivered += n.stats().hints_delivered;
                self.report.read_repairs += n.stats().read_repairs;
            }
        }
        self.report.issued_records = self
            .slots
            .values()
            .map(|slot| match slot {
                Slot::Up(n) => n.store().issued.len(),
                Slot::Down(s) => s.issued.len(),
            })
            .sum();
        Ok(self.report)
    }

    fn quiescent(&self) -> bool {
        let in_flight = self.queue.iter().any(|Reverse((_, _, e))| {
            matches!(e, EventKind::Deliver { .. } | EventKind::Sync { .. })
        });
        !in_flight
            && self.slots.values().all(|s| match s {
                Slot::Up(n) => {
                    n.volatile().ops.is_empty()
                        && n.volatile().forwards.is_empty()
                        && n.store().hints.is_empty()
                }
                Slot::Down(_) => false,
            })
    }

    fn check_end_state(&mut self, keys: &[Key]) -> Result<(), SimFailure> {
        let mut acked: Vec<(Key, Dot)> = Vec::new();
        let mut invoked: BTreeMap<RequestId, Key> = BTreeMap::new();
        for e in &self.history {
            match e {
                HistoryEvent::Invoke { req, op, .. } => {
                    invoked.insert(*req, op.key.clone());
                }
                HistoryEvent::Complete {
                    req,
                    reply: Some(ClientReply::Written { dot, .. }),
                    ..
                } => {
                    if let Some(k) = invoked.get(req) {
                        acked.push((k.clone(), *dot));
                    }
                }
                HistoryEvent::Complete { .. } => {}
            }
        }
        if let Some(v) = self.violation.clone() {
            return Err(self.fail(&format!("invariant violated: {v}")));
        }
        for key in keys {
            let prim = self.primaries(key);
            // What each holds, less the versions it holds that it also supersedes through a chain
            // of cut pasts (a stale copy that came back as a sibling, which replicas may keep or
            // not); without cut pasts that is everything it holds.
            let mut stale = 0;
            let mut held = |p: NodeId| {
                self.store(p).map(|s| {
                    let set = s.data.get(key).cloned().unwrap_or_default();
                    let settled: Vec<_> =
                        self.known(key).settled(&set).into_iter().cloned().collect();
                    stale += set.len() - settled.len();
                    settled
                })
            };
            let first = held(prim[0]);
            for p in &prim[1..] {
                let other = held(*p);
                if other != first {
                    return Err(self.fail(&format!(
                        "primaries of {key} diverge after quiescence: {} has {first:?}, {p} has {other:?}",
                        prim[0]
                    )));
                }
            }
            self.report.stale_siblings += stale;
        }
        for (key, dot) in &acked {
            for p in self.primaries(key) {
                let set = self.store(p).and_then(|s| s.data.get(key));
                let named = set.is_some_and(|s| s.covers(dot));
                let covered = named || set.is_some_and(|s| self.supersedes(key, s, dot));
                if covered && !named {
                    self.report.superseded_through_chains += 1;
                }
                if !covered {
                    return Err(self.fail(&format!(
                        "acknowledged write {dot} of {key} is lost: primary {p} neither holds nor supersedes it"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_read_values(&mut self, key: &Key, values: &[Vec<u8>]) -> Result<(), SimFailure> {
        let written = self.written.get(key);
        for v in values {
            if !written.is_some_and(|w| w.contains(v)) {
                let shown = String::from_utf8_lossy(v).into_owned();
                return Err(self.fail(&format!("read of {key} returned {shown:?}, never written")));
            }
        }
        Ok(())
    }

    /// The value a recorded put wrote, if it was a put of a value.
    fn invoked_value(&self, req: RequestId) -> Option<Vec<u8>> {
        self.history.iter().rev().find_map(|e| match e {
            HistoryEvent::Invoke { req: r, op, .. } if *r == req => match &op.action {
                Action::Put { payload: Payload::Value(v), .. } => Some(v.clone()),
                _ => None,
            },
            _ => None,
        })
    }

    /// The W a recorded put asked for, if it overrode the default.
    fn invoked_w(&self, req: RequestId) -> Option<usize> {
        self.history.iter().rev().find_map(|e| match e {
            HistoryEvent::Invoke { req: r, op, .. } if *r == req => op.w,
            _ => None,
        })
    }

    /// The versions of `key` nodes sent (none, when the run does not keep them).
    fn known(&self, key: &Key) -> &Lineage {
        static NONE_SENT: Lineage = Lineage::new();
        self.lineage.get(key).unwrap_or(&NONE_SENT)
    }

    /// Whether `set` holds `dot` of `key` or supersedes it, through the pasts of the versions
    /// nodes sent (see [`Lineage::covers`]).
    fn supersedes(&self, key: &Key, set: &crate::versioned::Siblings, dot: &Dot) -> bool {
        self.known(key).covers(set, dot)
    }

    /// Every acknowledged write is held or superseded on the durable storage (primary data or a
    /// hint) of at least W nodes. Nothing may take a copy away: merges only add, and a hint goes
    /// only once its intended node holds it.
    fn check_durable_copies(&self) -> Option<String> {
        for (key, dot, w) in &self.acked {
            let holders = self
                .slots
                .keys()
                .filter(|id| {
                    self.store(**id).is_some_and(|s| {
                        s.data.get(key).is_some_and(|v| self.supersedes(key, v, dot))
                            || s.hints
                                .iter()
                                .any(|((_, k), v)| k == key && self.supersedes(key, v, dot))
                    })
                })
                .count();
            if holders < *w {
                return Some(format!(
                    "acknowledged write {dot} of {key} is durable on {holders} nodes, fewer than W = {w}"
                ));
            }
        }
        None
    }

    fn check_last(&mut self) -> Result<(), SimFailure> {
        let mut bad = self.violation.clone();
        if bad.is_none() && std::mem::take(&mut self.copies_check_due) {
            bad = self.check_durable_copies();
        }
        for slot in self.slots.values() {
            if bad.is_some() {
                break;
            }
            if let Slot::Up(n) = slot {
                if let Err(e) = invariants::check_node(n) {
                    bad = Some(e);
                    break;
                }
            }
        }
        match bad {
            Some(e) => Err(self.fail(&format!("invariant violated: {e}"))),
            None => Ok(()),
        }
    }

    fn fail(&self, reason: &str) -> SimFailure {
        SimFailure {
            seed: self.cfg.seed,
            reason: reason.to_string(),
            trace: self.trace.iter().cloned().collect(),
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES_MAX {
            self.trace.pop_front();
        }
        let mut line = format!("t={} {line}", self.now_ms);
        if line.len() > 300 {
            let mut cut = 300;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        self.trace.push_back(line);
    }

    fn schedule(&mut self, after_ms: u64, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse((self.now_ms + after_ms, self.seq, kind)));
    }

    /// Processes the next event if it is due before `until`. Returns false if there was none.
    fn step_before(&mut self, until: u64) -> bool {
        match self.queue.peek() {
            Some(Reverse((at, _, _))) if *at <= until => {}
            _ => return false,
        }
        let Some(Reverse((at, _, kind))) = self.queue.pop() else { return false };
        self.now_ms = self.now_ms.max(at);
        self.steps += 1;
        match kind {
            EventKind::Deliver { from, to, msg } => {
                if matches!(self.slots.get(&to), Some(Slot::Up(_))) {
                    self.log(format!("{from} → {to} {msg:?}"));
                    self.step_node(to, Input::Peer { from, msg });
                }
            }
            EventKind::Timer { node, timer, generation } => {
                if self.timers.get(&(node, timer)) == Some(&generation) {
                    self.timers.remove(&(node, timer));
                    if !matches!(timer, Timer::Tick) {
                        self.log(format!("{node} timer {timer:?}"));
                    }
                    self.step_node(node, Input::Timer(timer));
                }
            }
            EventKind::ClientNext { client } => self.client_next(client),
            EventKind::ClientGiveUp { client, req } => {
                if self.clients[client].pending == Some(req) {
                    self.complete(client, req, None);
                }
            }
            EventKind::Restart { node } => self.restart(node),
            EventKind::Sync { node, generation } => {
                if self.disks.get(&node).and_then(|d| d.sync_due) == Some(generation) {
                    self.sync(node);
                }
            }
        }
        true
    }

    /// Under [`SimConfig::syncs`]: makes `id`'s writes durable and lets out what waited for it.
    fn sync(&mut self, id: NodeId) {
        let Some(Slot::Up(node)) = self.slots.get(&id) else { return };
        let disk = self.disks.entry(id).or_default();
        disk.durable = node.store().clone();
        disk.unsynced.clear();
        disk.sync_due = None;
        disk.marks.synced();
        for e in std::mem::take(&mut disk.held) {
            self.apply(id, e);
        }
    }

    fn step_node(&mut self, id: NodeId, input: Input) {
        let now = self.now_ms;
        let Some(Slot::Up(node)) = self.slots.get_mut(&id) else { return };
        let Some(syncs) = self.cfg.syncs.clone() else {
            let mut effects = Vec::new();
            node.handle(now, input, &mut effects);
            for e in effects {
                self.apply(id, e);
            }
            return;
        };
        let disk = self.disks.entry(id).or_default();
        let answer_early = syncs.flaw == Some(SyncFlaw::AnswerBeforeSync);
        let step = disk.marks.step(node, now, input, answer_early);
        if step.wrote {
            disk.unsynced.push(node.store().clone());
        }
        self.report.sent_before_sync += step.early;
        self.report.held_for_sync += step.held.len();
        disk.held.extend(step.held);
        let due = (disk.marks.unsynced() && disk.sync_due.is_none()).then(|| {
            self.generation += 1;
            self.generation
        });
        if due.is_some() {
            disk.sync_due = due;
        }
        for e in step.ready {
            self.apply(id, e);
        }
        if let Some(generation) = due {
            let (lo, hi) = syncs.after_ms;
            let after = self.rng.random_range(lo..=hi.max(lo));
            self.schedule(after, EventKind::Sync { node: id, generation });
        }
    }

    fn apply(&mut self, id: NodeId, effect: Effect) {
        match effect {
            Effect::Send { to, msg } => {
                if let (true, Msg::Store { key, siblings, .. } | Msg::Handoff { key, siblings }) =
                    (self.cfg.track_lineage, &msg)
                {
                    let known = self.lineage.entry(key.clone()).or_default();
                    for v in siblings.versions() {
                        // A version never changes once written: two under one dot are two
                        // writes that took the same counter.
                        if let Some(first) = known.record(v) {
                            if self.violation.is_none() {
                                self.violation = Some(format!(
                                    "dot {} of {key} was issued twice: {first:?} and {v:?}",
                                    v.dot
                                ));
                            }
                        }
                    }
                }
                let copies = if self.faults_on && self.chance(self.cfg.faults.drop_per_mille) {
                    self.report.dropped += 1;
                    0
                } else if self.faults_on && self.chance(self.cfg.faults.dup_per_mille) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let (lo, hi) = self.cfg.delay_ms;
                    let delay = self.rng.random_range(lo..=hi.max(lo));
                    self.schedule(delay, EventKind::Deliver { from: id, to, msg: msg.clone() });
                }
            }
            Effect::Reply { req, reply } => {
                self.log(format!("{id} → client {req} {reply:?}"));
                if !self.answered.insert(req) && self.violation.is_none() {
                    self.violation = Some(format!("request {req} was answered twice"));
                }
                match self.owners.get(&req).copied() {
                    Some(Some(client)) if self.clients[client].pending == Some(req) => {
                        self.complete(client, req, Some(reply));
                    }
                    Some(None) => {
                        self.replies.insert(req, reply);
                    }
                    _ => {}
                }
            }
            Effect::SetTimer { timer, after_ms } => {
                self.generation += 1;
                let generation = self.generation;
                self.timers.insert((id, timer), generation);
                self.schedule(after_ms, EventKind::Timer { node: id, timer, generation });
            }
            Effect::CancelTimer(timer) => {
                self.timers.remove(&(id, timer));
            }
        }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.random_range(0..1000) < per_mille
    }

    fn client_next(&mut self, client: usize) {
        if self.clients[client].done >= self.cfg.ops_per_client {
            return;
        }
        if self.faults_on && self.chance(self.cfg.faults.crash_per_mille) {
            let ids: Vec<NodeId> = self.config.nodes().iter().copied().collect();
            let victim = ids[self.rng.random_range(0..ids.len())];
            if self.node(victim).is_some() {
                self.crash(victim);
                self.report.crashes += 1;
                self.schedule(self.cfg.faults.down_ms, EventKind::Restart { node: victim });
            }
        }
        let key = key_name(self.rng.random_range(0..self.cfg.keys.max(1)));
        let context = self.clients[client].contexts.get(&key).cloned().unwrap_or_default();
        let seq = self.clients[client].done;
        let op = match self.rng.random_range(0..10) {
            0..=3 => ClientOp::get(key.clone()),
            4 => ClientOp::delete(key.clone(), context),
            _ => {
                let value = format!("c{client}.{seq}").into_bytes();
                self.written.entry(key.clone()).or_default().insert(value.clone());
                ClientOp::put(key.clone(), context, value)
            }
        };
        let mut op = op;
        if self.timeouts_rng.random_range(0..1000) < self.cfg.short_timeouts_per_mille {
            let most = 2 * self.config.timeouts().sloppy_retry_ms.max(1);
            op.timeout_ms = Some(self.timeouts_rng.random_range(1..=most));
            self.report.own_timeouts += 1;
        }
        let ids: Vec<NodeId> = self.config.nodes().iter().copied().collect();
        let origin = ids[self.rng.random_range(0..ids.len())];
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.owners.insert(req, Some(client));
        self.clients[client].pending = Some(req);
        self.history.push(HistoryEvent::Invoke { client, req, origin, op: op.clone() });
        self.schedule(self.cfg.client_timeout_ms, EventKind::ClientGiveUp { client, req });
        self.log(format!("client {client} → {origin} {req} {op:?}"));
        if self.node(origin).is_some() {
            self.step_node(origin, Input::Client { req, op });
        }
    }

    fn complete(&mut self, client: usize, req: RequestId, reply: Option<ClientReply>) {
        let key = self.history.iter().rev().find_map(|e| match e {
            HistoryEvent::Invoke { req: r, op, .. } if *r == req => Some(op.key.clone()),
            _ => None,
        });
        match &reply {
            Some(ClientReply::Read { context, values }) => {
                self.report.reads_ok += 1;
                if values.len() > 1 {
                    self.report.reads_with_siblings += 1;
                }
                if let Some(k) = &key {
                    self.clients[client].contexts.insert(k.clone(), context.clone());
                }
            }
            Some(ClientReply::Written { context, dot }) => {
                self.report.writes_ok += 1;
                if let Some(k) = &key {
                    self.clients[client].contexts.insert(k.clone(), context.clone());
                    let w = self.invoked_w(req).unwrap_or(self.config.w());
                    self.acked.push((k.clone(), *dot, w));
                }
            }
            Some(ClientReply::Rejected(_)) => {
                // A refused put must never take effect: its value counts as never written, so
                // the phantom-read checks catch it if it ever shows up.
                self.report.writes_rejected += 1;
                if let (Some(k), Some(v)) = (&key, self.invoked_value(req)) {
                    if let Some(w) = self.written.get_mut(k) {
                        w.remove(&v);
                    }
                }
            }
            Some(ClientReply::Indeterminate { .. }) | None => {
                let was_write = self.history.iter().rev().any(|e| {
                    matches!(e, HistoryEvent::Invoke { req: r, op, .. } if *r == req && op.is_write())
                });
                if was_write {
                    self.report.writes_indeterminate += 1;
                }
            }
            _ => {}
        }
        self.history.push(HistoryEvent::Complete { client, req, reply: reply.clone() });
        self.copies_check_due = true;
        self.clients[client].pending = None;
        self.clients[client].done += 1;
        if let (Some(ClientReply::Read { values, .. }), Some(k)) = (&reply, &key) {
            // Checked when the read completes, so a phantom fails at the step that produced it.
            let written = self.written.get(k);
            if let Some(v) = values.iter().find(|v| !written.is_some_and(|w| w.contains(*v))) {
                let shown = String::from_utf8_lossy(v).into_owned();
                self.violation = Some(format!("read of {k} returned {shown:?}, never written"));
            }
        }
        let pause = self.rng.random_range(0..20);
        self.schedule(pause, EventKind::ClientNext { client });
    }
}

/// The name of the `i`-th workload key.
pub fn key_name(i: usize) -> Key {
    Key(format!("k{i}").into_bytes())
}
