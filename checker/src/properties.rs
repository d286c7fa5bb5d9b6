//! The properties: the specification a protocol designer reads, printed with every result.
//!
//! Every property only *observes* a state: node stores (durable storage as stateright saved it),
//! node and client states, the network, and the recorded history. None re-implements protocol
//! logic. Convergence is an always-property with a quiescence premise rather than an `eventually`
//! (which stateright can miss on cycles); the premise is made non-vacuous by the actors consuming
//! every delivered message and by the `quiescent state reached` sometimes-property.
//!
//! Each property has an expected outcome that depends on the setup: read-your-writes is expected
//! to fail under sloppy quorum and to hold under strict quorum with R + W > N; linearizability is
//! expected to fail whenever two puts race or sloppy quorum can route around a primary; hint paths
//! are reached only under sloppy quorum; and so on. A run passes when every outcome is expected.
//!
//! Where contexts can be cut ([`Setup::cuts_contexts`]), "superseded" and "sees" follow chains of
//! pasts through the lineage of sent versions (see [`crate::register_view`]), the clock property
//! becomes "a replica drops a version only for one that names it", convergence compares replicas
//! without the stale copies a cut lets come back, and two properties are added: no dot is sent
//! with two different versions, and every read context fits the limit.

use crate::actors::{ClientState, NodeState, Outcome, Role, RoleState, Step, Wire};
use crate::register_view::History;
use crate::setup::{DynamoModel, DynamoState, ModelInfo, NetworkKind, Setup};
use dynamo_model::{Dot, MemStore, Msg, NodeId, Siblings, Version};
use stateright::actor::{ActorModelAction, ActorModelState, Id, Network};
use stateright::{Expectation, Model};
use std::collections::BTreeSet;
use std::fmt;

/// What a run is expected to show for one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An always-property has no counterexample.
    Holds,
    /// An always-property has a counterexample (an expected discovery).
    Violated,
    /// A sometimes-property has an example.
    Reached,
    /// A sometimes-property has none (its path does not exist in this setup).
    NotReached,
    /// No expectation: reported, never judged.
    Either,
}

impl Expect {
    /// Whether `found` (a discovery exists) meets the expectation.
    pub fn met_by(self, found: bool) -> bool {
        match self {
            Expect::Holds | Expect::NotReached => !found,
            Expect::Violated | Expect::Reached => found,
            Expect::Either => true,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Holds => "holds",
            Expect::Violated => "violated",
            Expect::Reached => "reached",
            Expect::NotReached => "not reached",
            Expect::Either => "(any)",
        })
    }
}

/// A property's predicate over one state.
pub type Condition = fn(&DynamoModel, &DynamoState) -> bool;

/// One property of the specification.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Its name, as printed and as stateright reports it.
    pub name: &'static str,
    /// Always or sometimes.
    pub expectation: Expectation,
    /// What this setup is expected to show.
    pub expect: Expect,
    /// Whether a state satisfies the property.
    pub condition: Condition,
}

/// Property names, so tests and the CLI do not repeat string literals.
pub mod names {
    /// Siblings form an antichain at every replica, and the core's node invariant holds.
    pub const ANTICHAIN: &str = "siblings form an antichain at every replica";
    /// Every value a get returned was written by some put.
    pub const READS_WRITTEN: &str = "every value read was written";
    /// Acknowledged puts are durable on W nodes.
    pub const ACKED_DURABLE: &str = "acked put present or superseded on >= W durable stores";
    /// A replica's merged clock for the key never goes backwards.
    pub const CLOCK_MONOTONIC: &str = "a replica's clock for the key never goes backwards";
    /// Only the preference list holds primary data; fallbacks keep hints.
    pub const PRIMARY_DATA: &str = "only primaries hold primary data";
    /// Under cut contexts, the restatement of [`CLOCK_MONOTONIC`]: a replica forgets a dot only
    /// with a version that was replaced by one naming it.
    pub const VERSIONS_REPLACED: &str = "a replica drops a version only for one that names it";
    /// Under cut contexts: no counter is issued twice.
    pub const NO_DOT_REUSE: &str = "no dot is sent with two different versions";
    /// Under cut contexts: every read context fits the limit.
    pub const CONTEXTS_FIT: &str = "every context a get returns fits the limit";
    /// Sometimes, under cut contexts: a node records a counter its copy of a key forgot.
    pub const COUNTER_RECORDED: &str = "a node records a counter its key's versions forgot";
    /// Sometimes, under cut contexts: an acknowledged write is held on some store only through a
    /// chain of pasts (what the lineage is for).
    pub const HELD_THROUGH_CHAIN: &str = "an acked put is superseded only through a chain";
    /// Sometimes, under cut contexts: a replica holds a version that another of its versions
    /// names only through a chain (a stale copy back beside a write on a cut context).
    pub const STALE_COPY: &str = "a stale copy comes back beside a write on a cut context";
    /// Convergence under a quiescence premise.
    pub const CONVERGENCE: &str = "once quiescent, N primaries equal and no hints remain";
    /// Read-your-writes.
    pub const READ_YOUR_WRITES: &str = "a get after an acked put of the same client sees it";
    /// Linearizability of the register view.
    pub const LINEARIZABLE: &str = "linearizable (register view)";
    /// Sometimes: siblings.
    pub const SIBLINGS: &str = "concurrent puts create siblings";
    /// Sometimes: a hint.
    pub const HINT_STORED: &str = "a fallback stores a hint";
    /// Sometimes: handoff.
    pub const HINT_DELIVERED: &str = "a hint is delivered";
    /// Sometimes: crash and recovery.
    pub const CRASH_RECOVER: &str = "a node crashes and recovers";
    /// Sometimes: a get returns siblings.
    pub const GET_SIBLINGS: &str = "a get returns siblings";
    /// Sometimes: a quiescent state with data exists.
    pub const QUIESCENT: &str = "a quiescent state with data is reached";
    /// Sometimes: a coordinator's answer reaches the node that forwarded the request.
    pub const FORWARD_ANSWERED: &str = "a forwarded request's answer comes back";
    /// Sometimes, under syncs: a write's copy is durable at a replica while its coordinator has
    /// not yet made it durable itself.
    pub const COPY_BEFORE_SYNC: &str = "a copy is durable elsewhere before its coordinator syncs";
    /// Sometimes, under syncs: a coordinator lost a write in a crash that a replica holds.
    pub const LOST_IN_CRASH: &str = "a crash loses a write whose copy another node keeps";
}

/// The specification for `setup`, with expected outcomes.
pub fn specs(setup: &Setup) -> Vec<Spec> {
    use names::*;
    use Expectation::{Always, Sometimes};
    let sloppy_routes = setup.sloppy && setup.has_fallbacks();
    let reached = |yes: bool| if yes { Expect::Reached } else { Expect::NotReached };
    let ryw = if sloppy_routes {
        Expect::Violated
    } else if setup.r + setup.w > setup.n {
        Expect::Holds
    } else {
        Expect::Either
    };
    // Sloppy quorum can acknowledge a put that a later get misses: a stale read. Under strict
    // quorum the named scripts start every put at once, so puts overlap and sibling reads still
    // linearize; no expectation is set there.
    let lin = if sloppy_routes { Expect::Violated } else { Expect::Either };
    // A lost message leaves a replica behind, and so does a crash that loses a copy no sync
    // covered yet (under syncs): only a read's repair (or anti-entropy, not built yet) brings it
    // back, so quiescence need not find the primaries equal.
    let converges =
        if setup.network == NetworkKind::Lossy || (setup.unsynced() && setup.crashes > 0) {
            Expect::Either
        } else {
            Expect::Holds
        };
    // A duplicating network may also redeliver a client's request, which re-runs the operation,
    // so quiescence need not be reachable there.
    let quiescence =
        if setup.network == NetworkKind::Duplicating { Expect::Either } else { Expect::Reached };
    // A write on a cut context can leave a version it does not name beside it: a false
    // conflict, so one client's puts may make siblings (and a get return them) too.
    let siblings = if setup.concurrent_puts() {
        Expect::Reached
    } else if setup.cuts_contexts() {
        Expect::Either
    } else {
        Expect::NotReached
    };
    let mut specs = vec![
        spec(ANTICHAIN, Always, Expect::Holds, antichain),
        spec(READS_WRITTEN, Always, Expect::Holds, reads_written),
        spec(ACKED_DURABLE, Always, Expect::Holds, acked_durable),
    ];
    if setup.cuts_contexts() {
        // A cut context forgets what the versions it replaces named: the clock goes back by
        // design, and the lineage shows what was replaced.
        specs.extend([
            spec(VERSIONS_REPLACED, Always, Expect::Holds, versions_replaced),
            spec(NO_DOT_REUSE, Always, Expect::Holds, no_dot_reuse),
            spec(CONTEXTS_FIT, Always, Expect::Holds, contexts_fit),
        ]);
    } else {
        specs.push(spec(CLOCK_MONOTONIC, Always, Expect::Holds, clock_monotonic));
        if setup.unsynced() {
            // A crash may lose a version whose copies left: its counter must never be issued
            // again, for another version.
            specs.push(spec(NO_DOT_REUSE, Always, Expect::Holds, no_dot_reuse));
        }
    }
    specs.extend([
        spec(PRIMARY_DATA, Always, Expect::Holds, primary_data),
        spec(CONVERGENCE, Always, converges, convergence),
        spec(READ_YOUR_WRITES, Always, ryw, read_your_writes),
    ]);
    if setup.linearizability {
        specs.push(spec(LINEARIZABLE, Always, lin, linearizable));
    }
    specs.extend([
        spec(SIBLINGS, Sometimes, siblings, siblings_created),
        spec(HINT_STORED, Sometimes, reached(sloppy_routes), hint_stored),
        spec(HINT_DELIVERED, Sometimes, reached(sloppy_routes), hint_delivered),
        spec(CRASH_RECOVER, Sometimes, reached(setup.crashes > 0), crash_recovered),
        spec(GET_SIBLINGS, Sometimes, siblings, gets_siblings),
        spec(QUIESCENT, Sometimes, quiescence, quiescent_with_data),
        spec(FORWARD_ANSWERED, Sometimes, reached(setup.forwards()), forward_answered),
    ]);
    if setup.unsynced() {
        // Witnesses that what syncs add is explored: copies durable ahead of their coordinator,
        // and writes a crash lost at their coordinator but not elsewhere.
        specs.extend([
            spec(COPY_BEFORE_SYNC, Sometimes, reached(setup.n > 1), copy_before_sync),
            spec(
                LOST_IN_CRASH,
                Sometimes,
                reached(setup.n > 1 && setup.crashes > 0),
                lost_in_crash,
            ),
        ]);
    }
    if setup.cuts_contexts() {
        // Witnesses that the cut is taken and that what the restated properties add is used.
        // Reported, not judged: whether a script's contexts reach the limit depends on the
        // script (the `capped` tests assert all three are reached there).
        specs.extend([
            spec(COUNTER_RECORDED, Sometimes, Expect::Either, counter_recorded),
            spec(HELD_THROUGH_CHAIN, Sometimes, Expect::Either, held_through_chain),
            spec(STALE_COPY, Sometimes, Expect::Either, stale_copy),
        ]);
    }
    specs
}

impl Spec {
    /// Whether `state` is a discovery for this property: a counterexample to an always-property
    /// or an example of a sometimes-property.
    pub fn discovered(&self, model: &DynamoModel, state: &DynamoState) -> bool {
        let holds = (self.condition)(model, state);
        match self.expectation {
            Expectation::Sometimes => holds,
            _ => !holds,
        }
    }
}

fn spec(name: &'static str, e: Expectation, expect: Expect, condition: Condition) -> Spec {
    Spec { name, expectation: e, expect, condition }
}

/// The storage nodes' states, with their ids.
fn nodes<'a>(
    info: &'a ModelInfo,
    state: &'a DynamoState,
) -> impl Iterator<Item = (NodeId, &'a NodeState)> + 'a {
    state.actor_states.iter().take(info.node_count).enumerate().filter_map(|(i, s)| match &**s {
        RoleState::Node(ns) => Some((NodeId(i as u16), &**ns)),
        RoleState::Client(_) => None,
    })
}

/// The clients' states.
pub fn clients<'a>(
    info: &'a ModelInfo,
    state: &'a DynamoState,
) -> impl Iterator<Item = &'a ClientState> + 'a {
    state.actor_states.iter().skip(info.node_count).filter_map(|s| match &**s {
        RoleState::Client(cs) => Some(cs),
        RoleState::Node(_) => None,
    })
}

/// The durable stores, as stateright saved them (empty before a node's first write).
fn durable<'a>(
    info: &'a ModelInfo,
    state: &'a DynamoState,
) -> impl Iterator<Item = (NodeId, Option<&'a MemStore>)> + 'a {
    (0..info.node_count).map(|i| {
        (NodeId(i as u16), state.actor_storages.get(i).and_then(|d| d.as_ref().map(|d| &d.store)))
    })
}

/// A version some node other than its coordinator holds durably, while the coordinator's durable
/// store neither holds it nor supersedes it; with `lost`, only one whose coordinator has since
/// restarted under a new incarnation (so lost it in a crash), otherwise only one the coordinator,
/// up, still writes under (so has not synced yet).
fn copy_ahead(m: &DynamoModel, s: &DynamoState, lost: bool) -> bool {
    let info = &m.cfg;
    durable(info, s).any(|(holder, st)| {
        let Some(set) = st.and_then(|st| st.data.get(&info.key)) else { return false };
        set.versions().iter().any(|v| {
            let i = usize::from(v.dot.actor.node.0);
            let Some(own) = s.actor_storages.get(i).and_then(Option::as_ref) else { return false };
            let at_coordinator = own
                .store
                .data
                .get(&info.key)
                .is_some_and(|set| set.versions().iter().any(|w| w == v || w.supersedes(v)));
            let when = if lost {
                v.dot.actor.incarnation < own.incarnation
            } else {
                v.dot.actor.incarnation == own.incarnation && !s.crashed.get(i).is_some_and(|c| *c)
            };
            holder != v.dot.actor.node && when && !at_coordinator
        })
    })
}

fn copy_before_sync(m: &DynamoModel, s: &DynamoState) -> bool {
    copy_ahead(m, s, false)
}

fn lost_in_crash(m: &DynamoModel, s: &DynamoState) -> bool {
    copy_ahead(m, s, true)
}

fn antichain(m: &DynamoModel, s: &DynamoState) -> bool {
    nodes(&m.cfg, s).all(|(_, ns)| dynamo_model::invariants::check_node(&ns.node).is_ok())
}

fn reads_written(m: &DynamoModel, s: &DynamoState) -> bool {
    let written: BTreeSet<u8> = m
        .actors
        .iter()
        .filter_map(|a| match a {
            Role::Client { script, .. } => Some(script),
            Role::Node { .. } => None,
        })
        .flatten()
        .filter_map(|step| match step {
            Step::Put { value, .. } => Some(*value),
            Step::Get { .. } => None,
        })
        .collect();
    clients(&m.cfg, s).flat_map(|c| &c.outcomes).all(|o| match o {
        Outcome::Read { values, .. } => values.iter().all(|v| written.contains(v)),
        _ => true,
    })
}

/// Whether `siblings` holds the write (`dot`, `value`) or something that supersedes it (through
/// the lineage's chains of pasts, when the run keeps one).
fn holds_write(siblings: &Siblings, dot: &Dot, value: u8, history: &History) -> bool {
    siblings.versions().iter().any(|v| {
        (v.dot == *dot && v.payload.value().and_then(|b| b.first()) == Some(&value))
            || history.names(&v.past, dot)
    })
}

fn acked_durable(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    let w = info.setup.w;
    clients(info, s).flat_map(|c| &c.outcomes).all(|o| {
        let Outcome::Written { dot, value } = o else { return true };
        let holders = durable(info, s)
            .filter(|(_, store)| {
                store.is_some_and(|st| {
                    let holds = |sib: &Siblings| holds_write(sib, dot, *value, &s.history);
                    st.data.get(&info.key).is_some_and(holds)
                        || st.hints.iter().any(|((_, k), sib)| *k == info.key && holds(sib))
                })
            })
            .count();
        holders >= w
    })
}

fn clock_monotonic(m: &DynamoModel, s: &DynamoState) -> bool {
    nodes(&m.cfg, s).all(|(_, ns)| !ns.clock_regressed)
}

fn versions_replaced(m: &DynamoModel, s: &DynamoState) -> bool {
    nodes(&m.cfg, s).all(|(_, ns)| !ns.version_lost)
}

fn counter_recorded(m: &DynamoModel, s: &DynamoState) -> bool {
    durable(&m.cfg, s).any(|(_, st)| st.is_some_and(|st| !st.issued.is_empty()))
}

/// Some store holds an acknowledged write only through a chain of pasts: followed through the
/// lineage it is there, read directly from the pasts it is not.
fn held_through_chain(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    let direct = History::new(false, None, false);
    clients(info, s).flat_map(|c| &c.outcomes).any(|o| {
        let Outcome::Written { dot, value } = o else { return false };
        durable(info, s).any(|(_, st)| {
            st.and_then(|st| st.data.get(&info.key)).is_some_and(|sib| {
                holds_write(sib, dot, *value, &s.history) && !holds_write(sib, dot, *value, &direct)
            })
        })
    })
}

fn stale_copy(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    durable(info, s).any(|(_, st)| {
        let held = st.and_then(|st| st.data.get(&info.key));
        settled(held, &s.history).len() < held.map_or(0, |h| h.len())
    })
}

fn no_dot_reuse(_: &DynamoModel, s: &DynamoState) -> bool {
    s.history.lineage.as_ref().is_none_or(|sent| sent.reused.is_none())
}

fn contexts_fit(m: &DynamoModel, s: &DynamoState) -> bool {
    let max = m.cfg.setup.context_entries_max;
    clients(&m.cfg, s).flat_map(|c| &c.outcomes).all(|o| match o {
        Outcome::Read { context, .. } => context.len() <= max,
        _ => true,
    })
}

fn primary_data(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    durable(info, s).all(|(id, store)| {
        info.primaries.contains(&id) || store.is_none_or(|st| st.data.is_empty())
    })
}

/// A state is quiescent when no node is down, no operation is in progress anywhere, and no
/// enabled delivery or timer would change any actor or durable store. The last test asks the
/// model itself (which runs the core), so the premise follows the protocol as it is.
pub fn quiescent(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    if s.crashed.iter().any(|c| *c) {
        return false;
    }
    if nodes(info, s).any(|(_, ns)| {
        let v = ns.node.volatile();
        !v.ops.is_empty() || !v.forwards.is_empty()
    }) || clients(info, s).any(|c| c.waiting)
    {
        return false;
    }
    // Every delivery consumes its message, so outside the duplicating network a quiescent state
    // has nothing in flight.
    if !matches!(s.network, Network::UnorderedDuplicating(..)) && s.network.len() > 0 {
        return false;
    }
    let mut actions = Vec::new();
    m.actions(s, &mut actions);
    actions.into_iter().all(|a| match a {
        ActorModelAction::Deliver { .. } | ActorModelAction::Timeout(..) => {
            match m.next_state(s, a) {
                None => true,
                Some(next) => unchanged(s, &next),
            }
        }
        _ => true,
    })
}

/// Whether a step changed no actor, no durable store and (ignoring which message a duplicating
/// network delivered last) nothing in flight.
fn unchanged<H>(a: &ActorModelState<Role, H>, b: &ActorModelState<Role, H>) -> bool {
    let same_net = match (&a.network, &b.network) {
        (Network::UnorderedDuplicating(x, _), Network::UnorderedDuplicating(y, _)) => x == y,
        (x, y) => x == y,
    };
    same_net
        && a.actor_states.len() == b.actor_states.len()
        && a.actor_states.iter().zip(&b.actor_states).all(|(x, y)| **x == **y)
        && a.actor_storages == b.actor_storages
}

fn convergence(m: &DynamoModel, s: &DynamoState) -> bool {
    if !quiescent(m, s) {
        return true;
    }
    let info = &m.cfg;
    let mut primary_sets = durable(info, s)
        .filter(|(id, _)| info.primaries.contains(id))
        .map(|(_, st)| settled(st.and_then(|st| st.data.get(&info.key)), &s.history));
    let first = primary_sets.next().unwrap_or_default();
    let equal = primary_sets.all(|p| p == first);
    let no_hints = durable(info, s).all(|(_, st)| st.is_none_or(|st| st.hints.is_empty()));
    equal && no_hints
}

/// A replica's versions, without a stale copy another of them names through a chain of pasts
/// (see `Lineage::settled`); the whole set when the run keeps no lineage.
fn settled<'a>(siblings: Option<&'a Siblings>, history: &History) -> Vec<&'a Version> {
    match (siblings, &history.lineage) {
        (Some(set), Some(sent)) => sent.lineage.settled(set),
        (Some(set), None) => set.versions().iter().collect(),
        (None, _) => Vec::new(),
    }
}

fn read_your_writes(m: &DynamoModel, s: &DynamoState) -> bool {
    clients(&m.cfg, s).all(|c| {
        let mut acked = Vec::new();
        for o in &c.outcomes {
            match o {
                Outcome::Written { dot, .. } => acked.push(*dot),
                Outcome::Read { context, .. } => {
                    if !acked.iter().all(|d| s.history.names(context, d)) {
                        return false;
                    }
                }
                Outcome::Failed => {}
            }
        }
        true
    })
}

fn linearizable(_: &DynamoModel, s: &DynamoState) -> bool {
    s.history.linearizable()
}

fn siblings_created(m: &DynamoModel, s: &DynamoState) -> bool {
    durable(&m.cfg, s).any(|(_, st)| st.is_some_and(|st| st.data.values().any(|sib| sib.len() > 1)))
}

fn hint_stored(m: &DynamoModel, s: &DynamoState) -> bool {
    durable(&m.cfg, s).any(|(_, st)| st.is_some_and(|st| !st.hints.is_empty()))
}

/// The intended node acknowledged exactly the hint its holder keeps, so the holder deletes it on
/// delivery of this acknowledgement.
fn hint_delivered(m: &DynamoModel, s: &DynamoState) -> bool {
    let info = &m.cfg;
    s.network.iter_deliverable().any(|env| {
        let Wire::Peer(Msg::HandoffAck { key, siblings }) = env.msg else { return false };
        let from = crate::actors::node_id(env.src);
        s.actor_storages
            .get(usize::from(env.dst))
            .and_then(Option::as_ref)
            .and_then(|d| d.store.hints.get(&(from, key.clone())))
            .is_some_and(|held| held == siblings)
            && usize::from(env.dst) < info.node_count
    })
}

/// A node is crashed, having lost what it was doing (crashes of nodes that would lose nothing
/// are left out, see `Setup::skip_idle_crashes`), and its recovery is a step inside the checked
/// space. The witness is the state before the recovery, in the same way as for a delivered hint:
/// nothing in a state marks a node that has recovered, because such a mark would keep every
/// state after a recovery apart from the same state of a run without the crash (except under
/// syncs, where the new incarnation and the restart count already do).
fn crash_recovered(m: &DynamoModel, s: &DynamoState) -> bool {
    s.crashed.iter().enumerate().take(m.cfg.node_count).any(|(i, crashed)| {
        *crashed
            && m.next_state(s, ActorModelAction::Recover(Id::from(i)))
                .is_some_and(|next| m.within_boundary(&next))
    })
}

fn gets_siblings(m: &DynamoModel, s: &DynamoState) -> bool {
    clients(&m.cfg, s)
        .flat_map(|c| &c.outcomes)
        .any(|o| matches!(o, Outcome::Read { values, .. } if values.len() > 1))
}

/// A coordinator's `ForwardReply` is deliverable to the node still waiting on that forward from
/// that coordinator, which relays it to the client: the state before the answer is relayed (as
/// for a delivered hint, nothing in a state marks a request answered through a forward).
fn forward_answered(m: &DynamoModel, s: &DynamoState) -> bool {
    s.network.iter_deliverable().any(|env| {
        let Wire::Peer(Msg::ForwardReply { req, .. }) = env.msg else { return false };
        let i = usize::from(env.dst);
        let from = crate::actors::node_id(env.src);
        i < m.cfg.node_count
            && matches!(
                s.actor_states.get(i).map(|st| &**st),
                Some(RoleState::Node(ns))
                    if ns.node.volatile().forwards.get(req).is_some_and(|f| f.to == from && !f.replied)
            )
    })
}

fn quiescent_with_data(m: &DynamoModel, s: &DynamoState) -> bool {
    durable(&m.cfg, s).any(|(_, st)| st.is_some_and(|st| !st.data.is_empty())) && quiescent(m, s)
}
