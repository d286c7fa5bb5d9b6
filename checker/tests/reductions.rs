//! The model's reductions lose nothing a property can see: on `tiny` (every quorum mode, with and
//! without a crash) each combination of client outcomes and durable stores reachable with the
//! probe sent as `Ping` and `Pong` messages (and idle-with-suspicions crashes kept) is reachable
//! with the probe timer too, and so is every such combination in a quiescent state. Receiving
//! client replies in the step that sends them keeps every reachable combination of durable stores
//! with clients at least as far along, and exactly the same quiescent states. Merging restarted
//! nodes with nodes that never crashed keeps exactly the same observable states.

use dynamo_checker::actors::{ClientState, Durability, RoleState};
use dynamo_checker::properties::quiescent;
use dynamo_checker::setup::{DynamoModel, DynamoState, Setup};
use stateright::Model;
use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;

/// What the properties observe of a state: client states and durable stores, and quiescence.
type Seen = (Vec<String>, bool);

/// The views of every state a depth-first search of `setup` reaches.
fn reachable<T: Ord>(setup: &Setup, view: impl Fn(&DynamoModel, &DynamoState) -> T) -> BTreeSet<T> {
    let model = setup.model().expect("valid setup");
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<DynamoState> = model.init_states();
    let mut out = BTreeSet::new();
    while let Some(s) = stack.pop() {
        if !seen.insert(hasher.hash_one(&s)) {
            continue;
        }
        out.insert(view(&model, &s));
        let mut actions = Vec::new();
        model.actions(&s, &mut actions);
        for a in actions {
            if let Some(next) = model.next_state(&s, a) {
                if model.within_boundary(&next) {
                    stack.push(next);
                }
            }
        }
    }
    out
}

fn observed(setup: &Setup) -> BTreeSet<Seen> {
    reachable(setup, |model, s| {
        let mut view: Vec<String> = s
            .actor_states
            .iter()
            .filter_map(|a| match &**a {
                RoleState::Client(c) => Some(format!("{c:?}")),
                RoleState::Node(_) => None,
            })
            .collect();
        view.push(format!("{:?}", s.actor_storages));
        (view, quiescent(model, s))
    })
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn probe_timers_keep_every_observable_state() {
    for (sloppy, crashes) in [(true, 0), (false, 0), (true, 1), (false, 1)] {
        let mut setup = Setup::named("tiny").expect("known configuration");
        setup.sloppy = sloppy;
        setup.crashes = crashes;
        let reduced = observed(&setup);
        setup.probe_timers = false;
        let messages = observed(&setup);
        // Not vacuous: the unreduced search saw several outcomes, some of them quiescent.
        assert!(
            messages.len() > 1 && messages.iter().any(|(_, quiet)| *quiet),
            "sloppy={sloppy} crashes={crashes}: only {} observable states",
            messages.len()
        );
        let missing: Vec<_> = messages.difference(&reduced).collect();
        assert!(
            missing.is_empty(),
            "sloppy={sloppy} crashes={crashes}: {} observable states lost, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        eprintln!(
            "sloppy={sloppy} crashes={crashes}: {} observable states with ping messages, {} with \
             probe timers",
            messages.len(),
            reduced.len()
        );
    }
}

/// Every state a search reaches, as (client states, durable stores, quiescent).
fn reached(setup: &Setup) -> BTreeSet<(Vec<ClientView>, String, bool)> {
    reachable(setup, |model, s| {
        let clients = s
            .actor_states
            .iter()
            .filter_map(|a| match &**a {
                RoleState::Client(c) => Some(ClientView::of(c)),
                RoleState::Node(_) => None,
            })
            .collect();
        (clients, format!("{:?}", s.actor_storages), quiescent(model, s))
    })
}

/// A client's outcomes so far (each rendered) and whether it waits for a reply.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ClientView {
    outcomes: Vec<String>,
    waiting: bool,
}

impl ClientView {
    fn of(c: &ClientState) -> Self {
        ClientView {
            outcomes: c.outcomes.iter().map(|o| format!("{o:?}")).collect(),
            waiting: c.waiting,
        }
    }
    /// Whether `later` is this client after zero or more further replies.
    fn leads_to(&self, later: &ClientView) -> bool {
        later.outcomes.starts_with(&self.outcomes)
            && (later.outcomes.len() > self.outcomes.len() || later.waiting == self.waiting)
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn eager_replies_keep_every_store_and_quiescent_state() {
    let cases = [
        ("tiny", true, 0),
        ("tiny", false, 0),
        ("tiny", true, 1),
        ("tiny", false, 1),
        ("canonical", false, 0),
    ];
    for (name, sloppy, crashes) in cases {
        let mut setup = Setup::named(name).expect("known configuration");
        setup.sloppy = sloppy;
        setup.crashes = crashes;
        assert!(setup.delivers_replies_at_once(), "the default receives replies at once");
        let eager = reached(&setup);
        setup.eager_replies = false;
        let lazy = reached(&setup);
        let what = format!("{name} sloppy={sloppy} crashes={crashes}");
        assert!(lazy.len() > 1 && lazy.iter().any(|(_, _, q)| *q), "{what}: vacuous");
        // The reduced model only takes steps the full one can take.
        assert!(eager.is_subset(&lazy), "{what}: a state the full model cannot reach");
        // Every full-model state has a counterpart with the same stores and quiescence, and its
        // clients at least as far along.
        let lost: Vec<_> = lazy
            .iter()
            .filter(|(clients, stores, quiet)| {
                !eager.iter().any(|(c, st, q)| {
                    st == stores
                        && q == quiet
                        && clients.iter().zip(c).all(|(before, after)| before.leads_to(after))
                })
            })
            .collect();
        assert!(
            lost.is_empty(),
            "{what}: {} states without a counterpart, e.g. {:?}",
            lost.len(),
            lost.first()
        );
        // Quiescent states are the same ones.
        let quiet = |set: &BTreeSet<(Vec<ClientView>, String, bool)>| {
            set.iter().filter(|(_, _, q)| *q).cloned().collect::<BTreeSet<_>>()
        };
        assert_eq!(quiet(&eager), quiet(&lazy), "{what}: quiescent states differ");
        eprintln!(
            "{what}: {} observable states with lazy replies, {} with eager",
            lazy.len(),
            eager.len()
        );
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn merged_restarts_keep_exactly_the_observable_states() {
    let every_step = Durability::EveryStep;
    let cases = [
        ("tiny", true, 1, every_step),
        ("tiny", false, 1, every_step),
        ("canonical", false, 1, every_step),
        ("tiny", true, 1, Durability::Syncs(None)),
    ];
    for (name, sloppy, crashes, durability) in cases {
        let mut setup = Setup::named(name).expect("known configuration");
        setup.sloppy = sloppy;
        setup.crashes = crashes;
        setup.durability = durability;
        assert!(setup.merge_restarts && setup.forgets_finished_ops(), "merged by default");
        let (merged, merged_states) = count(&setup);
        setup.merge_restarts = false;
        let (kept, kept_states) = count(&setup);
        let what = format!("{name} sloppy={sloppy} crashes={crashes} {durability:?}");
        assert!(kept.len() > 1 && kept.iter().any(|(_, q)| *q), "{what}: vacuous");
        assert_eq!(merged, kept, "{what}: observable states differ");
        // Not vacuous either: the merge does merge states.
        assert!(merged_states < kept_states, "{what}: {merged_states} vs {kept_states} states");
        eprintln!(
            "{what}: {} observable states either way; {kept_states} states without the merge, \
             {merged_states} with it",
            kept.len()
        );
    }
}

/// The observable states of `setup` and how many states it has.
fn count(setup: &Setup) -> (BTreeSet<Seen>, usize) {
    let observable = observed(setup);
    let hasher = std::collections::hash_map::RandomState::new();
    let states = reachable(setup, |_, s| hasher.hash_one(s)).len();
    (observable, states)
}

/// A node's store is left out of its state's hash because it always equals the node's durable
/// storage, which the model state hashes; this checks that premise in every reachable state.
#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn every_node_store_equals_its_durable_storage() {
    // Under syncs, only while some write is not yet durable (the store is then hashed too).
    let unsynced = Durability::Syncs(None);
    for (name, sloppy, durability) in [
        ("tiny", true, Durability::EveryStep),
        ("canonical", false, Durability::EveryStep),
        ("tiny", true, unsynced),
    ] {
        let mut setup = Setup::named(name).expect("known configuration");
        setup.sloppy = sloppy;
        setup.crashes = 1;
        setup.durability = durability;
        let mismatches = reachable(&setup, |_, s| {
            s.actor_states
                .iter()
                .zip(&s.actor_storages)
                .filter(|(a, stored)| match &***a {
                    RoleState::Node(ns) => {
                        !ns.marks.unsynced()
                            && stored.as_ref().map(|d| &d.store) != Some(ns.node.store())
                    }
                    RoleState::Client(_) => false,
                })
                .count()
        });
        assert_eq!(mismatches, BTreeSet::from([0]), "{name} sloppy={sloppy} {durability:?}");
    }
}
