//! The model's reductions lose nothing a property can see: on `tiny` (every quorum mode, with and
//! without a crash) each combination of client outcomes and durable stores reachable with the
//! probe sent as `Ping` and `Pong` messages (and idle-with-suspicions crashes kept) is reachable
//! with the probe timer too, and so is every such combination in a quiescent state.

use dynamo_checker::actors::RoleState;
use dynamo_checker::properties::quiescent;
use dynamo_checker::setup::{DynamoState, Setup};
use stateright::Model;
use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;

/// What the properties observe of a state: client states and durable stores, and quiescence.
type Seen = (Vec<String>, bool);

fn observed(setup: &Setup) -> BTreeSet<Seen> {
    let model = setup.model().expect("valid setup");
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<DynamoState> = model.init_states();
    let mut out = BTreeSet::new();
    while let Some(s) = stack.pop() {
        if !seen.insert(hasher.hash_one(&s)) {
            continue;
        }
        let mut view: Vec<String> = s
            .actor_states
            .iter()
            .filter_map(|a| match &**a {
                RoleState::Client(c) => Some(format!("{c:?}")),
                RoleState::Node(_) => None,
            })
            .collect();
        view.push(format!("{:?}", s.actor_storages));
        out.insert((view, quiescent(&model, &s)));
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
