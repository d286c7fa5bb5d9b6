//! What the simulator and the model checker know of the versions nodes sent each other, to judge
//! writes on cut pasts.
//!
//! A write on a cut context (see `Context::capped`) names the versions it replaces but not always
//! what their pasts named, so an acknowledged write can be superseded only through a chain of
//! pasts whose middle version is gone from every store. A [`Lineage`] keeps every version sent,
//! by dot, and follows such chains; it also tells a dot sent with two different versions (a
//! counter issued twice). Without cut pasts a chain adds nothing: a past holds everything the
//! pasts of the versions it names held.

use crate::clock::{Context, Dot};
use crate::ids::ActorId;
use crate::versioned::{Siblings, Version};
use std::collections::{BTreeMap, BTreeSet};

/// The versions nodes sent, each as first sent under its actor and counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lineage {
    sent: BTreeMap<(ActorId, u64), Version>,
}

impl Lineage {
    /// Nothing sent yet.
    pub const fn new() -> Lineage {
        Lineage { sent: BTreeMap::new() }
    }

    /// The version first sent under `dot`'s actor and counter.
    pub fn get(&self, dot: &Dot) -> Option<&Version> {
        self.sent.get(&(dot.actor, dot.counter))
    }

    /// Records `v`. If another version was sent under its dot before (another time, past or
    /// payload: a counter issued twice), keeps that one and returns it.
    pub fn record(&mut self, v: &Version) -> Option<&Version> {
        match self.sent.entry((v.dot.actor, v.dot.counter)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v.clone());
                None
            }
            std::collections::btree_map::Entry::Occupied(e) => {
                (e.get() != v).then(|| e.into_mut()).map(|first| &*first)
            }
        }
    }

    /// Whether one of `pasts` names `dot`, or names a version sent whose past names it, and so on.
    pub fn names<'a>(&'a self, pasts: impl IntoIterator<Item = &'a Context>, dot: &Dot) -> bool {
        let mut pasts: Vec<&Context> = pasts.into_iter().collect();
        let mut seen: BTreeSet<(ActorId, u64)> = BTreeSet::new();
        while let Some(past) = pasts.pop() {
            if past.contains(dot) {
                return true;
            }
            // Only versions inside the past's runs of counters can be named by it.
            let clock = past.clock().entries().iter().map(|e| (e.actor, 1, e.counter));
            let runs = clock.chain(past.cloud().iter().map(|r| (r.actor, r.first, r.last)));
            for (actor, first, last) in runs {
                for (&sent_dot, sent) in self.sent.range((actor, first)..=(actor, last)) {
                    if seen.insert(sent_dot) {
                        pasts.push(&sent.past);
                    }
                }
            }
        }
        false
    }

    /// Whether `set` holds `dot` or supersedes it, directly or through a chain of pasts.
    pub fn covers(&self, set: &Siblings, dot: &Dot) -> bool {
        set.covers(dot) || self.names(set.versions().iter().map(|v| &v.past), dot)
    }

    /// The versions of `set` that no other version of it names through a chain of pasts: without
    /// a stale copy that came back beside a write on a cut past (the cost of the cut). Without
    /// cut pasts, the whole set (no version of an antichain names another).
    pub fn settled<'s>(&self, set: &'s Siblings) -> Vec<&'s Version> {
        let versions = set.versions();
        versions
            .iter()
            .filter(|v| {
                let others = versions.iter().filter(|u| u.dot != v.dot).map(|u| &u.past);
                !self.names(others, &v.dot)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::versioned::Payload;

    fn dot(node: u16, counter: u64) -> Dot {
        Dot { actor: ActorId::new(NodeId(node), 0), counter, ts_ms: counter }
    }

    fn version(d: Dot, past: &[Dot]) -> Version {
        let mut p = Context::new();
        past.iter().for_each(|x| p.add_dot(x));
        Version { dot: d, past: p, payload: Payload::Value(vec![d.counter as u8]) }
    }

    /// c names b, b named a: c's past alone does not hold a, the chain through b does; with b
    /// never sent, nothing links c to a. A cloud run (a past holding 1:3 but not 1:2) names only
    /// what it holds.
    #[test]
    fn chains_follow_sent_pasts_and_only_what_they_hold() {
        let (a, b, c) = (dot(1, 1), dot(2, 1), dot(3, 1));
        let mut lineage = Lineage::default();
        assert!(lineage.record(&version(a, &[])).is_none());
        let vc = version(c, &[b]);
        assert!(!lineage.names([&vc.past], &a), "b was never sent");
        assert!(lineage.record(&version(b, &[a])).is_none());
        assert!(lineage.names([&vc.past], &a));
        assert!(lineage.covers(&Siblings::from_versions([vc.clone()]), &a));
        let stale = version(a, &[]);
        let both = Siblings::from_versions([vc.clone(), stale]);
        let settled: Vec<Dot> = lineage.settled(&both).iter().map(|v| v.dot).collect();
        assert_eq!(settled, vec![c], "a came back beside the write that superseded it");

        // A cloud run holds only its own counters: 1:3 alone reaches neither 1:2 nor what 1:2's
        // past named.
        let (d2, d3, e) = (dot(1, 2), dot(1, 3), dot(5, 1));
        assert!(lineage.record(&version(d2, &[e])).is_none());
        let gap = version(dot(4, 1), &[d3]);
        assert!(!lineage.names([&gap.past], &d2), "1:3 alone does not name 1:2");
        assert!(!lineage.names([&gap.past], &e), "nor what 1:2 named");
        assert!(lineage.names([&gap.past], &d3));
        // A clock entry holds every counter up to its own: {6:2} reaches a sent 6:1 and, through
        // its past, what 6:1 named.
        let (f1, f2, g) = (dot(6, 1), dot(6, 2), dot(7, 1));
        assert!(lineage.record(&version(f1, &[g])).is_none());
        let mut clock = Context::new();
        clock.add_dot(&f1);
        clock.add_dot(&f2);
        assert!(clock.cloud().is_empty(), "6:1 and 6:2 fold into the clock entry {{6:2}}");
        assert!(lineage.names([&clock], &g));
    }

    /// A dot sent again with another payload is a counter issued twice: the first is kept.
    #[test]
    fn a_dot_sent_with_two_versions_is_told() {
        let mut lineage = Lineage::default();
        let first = version(dot(1, 1), &[]);
        assert!(lineage.record(&first).is_none());
        assert!(lineage.record(&first).is_none(), "the same version again is no reuse");
        let other = Version { payload: Payload::Tombstone, ..first.clone() };
        assert_eq!(lineage.record(&other), Some(&first));
        assert_eq!(lineage.get(&first.dot), Some(&first));
    }
}
