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
            for (&(actor, counter), sent) in &self.sent {
                if past.contains(&Dot { actor, counter, ts_ms: 0 }) && seen.insert((actor, counter))
                {
                    pasts.push(&sent.past);
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
