//! Client symmetry is sound: in every reachable state of `twins` (strict with a crash, and sloppy
//! under a smaller in-flight bound), renaming the two clients and their values gives a reachable
//! state with the same verdict on every property, the same boundary verdict, the renamed
//! successors, and the same representative.

use dynamo_checker::setup::{DynamoModel, DynamoState, Setup};
use dynamo_checker::symmetry::representative;
use stateright::Model;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

fn fp(s: &DynamoState) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Every state reachable in `model` (no symmetry applied: this walks `next_state` itself).
fn reachable(model: &DynamoModel) -> Vec<DynamoState> {
    let mut seen = HashSet::new();
    let mut stack = model.init_states();
    let mut out = Vec::new();
    while let Some(s) = stack.pop() {
        if !seen.insert(fp(&s)) {
            continue;
        }
        for next in successors(model, &s) {
            stack.push(next);
        }
        out.push(s);
    }
    out
}

fn successors(model: &DynamoModel, s: &DynamoState) -> Vec<DynamoState> {
    let mut actions = Vec::new();
    model.actions(s, &mut actions);
    actions
        .into_iter()
        .filter_map(|a| model.next_state(s, a))
        .filter(|n| model.within_boundary(n))
        .collect()
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn renaming_interchangeable_clients_commutes_with_every_step() {
    let mut strict = Setup::named("twins").expect("known configuration");
    strict.sloppy = false;
    let mut sloppy = Setup::named("twins").expect("known configuration");
    sloppy.crashes = 0;
    sloppy.in_flight_max = 2;
    for setup in [strict, sloppy] {
        let what = format!("twins sloppy={} crashes={}", setup.sloppy, setup.crashes);
        let model = setup.model().expect("valid setup");
        let sym = model.init_states()[0].history.symmetry.clone().expect("twins are symmetric");
        assert_eq!(sym.renamings(), 1, "{what}: two clients, one swap");
        let states = reachable(&model);
        let all: HashSet<u64> = states.iter().map(fp).collect();
        let mut moved = 0;
        for s in &states {
            let r = sym.rename(0, s).expect("unordered network");
            if fp(&r) != fp(s) {
                moved += 1;
            }
            assert!(all.contains(&fp(&r)), "{what}: renamed state unreachable: {r:?}");
            for p in model.properties() {
                assert_eq!(
                    (p.condition)(&model, s),
                    (p.condition)(&model, &r),
                    "{what}: {} differs on a renamed state",
                    p.name
                );
            }
            let of_renamed: BTreeSet<u64> = successors(&model, &r).iter().map(fp).collect();
            let renamed_of: BTreeSet<u64> = successors(&model, s)
                .iter()
                .map(|n| fp(&sym.rename(0, n).expect("unordered network")))
                .collect();
            assert_eq!(of_renamed, renamed_of, "{what}: steps do not commute at {s:?}");
            assert_eq!(
                fp(&representative(s)),
                fp(&representative(&r)),
                "{what}: two representatives"
            );
        }
        // Not vacuous: most states are not their own renaming.
        assert!(moved * 2 > states.len(), "{what}: only {moved} of {} states moved", states.len());
        let classes: HashSet<u64> = states.iter().map(|s| fp(&representative(s))).collect();
        eprintln!("{what}: {} states, {} classes", states.len(), classes.len());
    }
}
