//! The durable-state interface the core writes through, and an in-memory implementation.
//!
//! A store holds primary data (key → siblings) and, apart from it, hints: copies a node keeps for
//! another, intended node while it stood in as a fallback (paper §4.6). The core calls the store
//! synchronously; the driver makes the writes of a `handle` call durable before any effect of that
//! call leaves the process, copies for peers to keep aside (see [`crate::node`]).

use crate::ids::{Key, NodeId};
use crate::versioned::Siblings;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use thiserror::Error;

/// A storage failure. The core answers the affected request with an error and carries on.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The backend failed to read or write.
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// A stored record could not be decoded.
    #[error("stored record for {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// One hint: the intended node, the key, and the siblings kept for it.
pub type Hint = (NodeId, Key, Siblings);

/// Durable state of one node.
pub trait Store {
    /// Primary data for `key`; empty if none.
    fn load(&self, key: &Key) -> Result<Siblings, StoreError>;
    /// Replaces primary data for `key`.
    fn save(&mut self, key: &Key, siblings: &Siblings) -> Result<(), StoreError>;
    /// The hint kept for `intended` under `key`; empty if none.
    fn load_hint(&self, intended: NodeId, key: &Key) -> Result<Siblings, StoreError>;
    /// Replaces the hint kept for `intended` under `key`.
    fn save_hint(
        &mut self,
        intended: NodeId,
        key: &Key,
        siblings: &Siblings,
    ) -> Result<(), StoreError>;
    /// Removes the hint kept for `intended` under `key`.
    fn remove_hint(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError>;
    /// Removes the hint kept for `intended` under `key` once every write made before this call
    /// is durable: for a hint whose only other copies are writes of the same step. A crash may
    /// keep some of a step's writes and not others (a backend that writes large records to
    /// files of their own, apart from its log), and a removal kept without the copies it relied
    /// on would lose the hint. A store whose writes are durable when made (this default) removes
    /// it at once.
    fn remove_hint_once_durable(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        self.remove_hint(intended, key)
    }
    /// Up to `limit` hints whose intended node is not in `skip`, taken in turns: one of each
    /// such node's (in key order), then a second of each, and so on. So every node's hints get
    /// their share of a handoff batch, and a node that does not take its hints (down, and not yet
    /// suspected) cannot hold up the others' for good.
    fn hints(&self, skip: &BTreeSet<NodeId>, limit: usize) -> Result<Vec<Hint>, StoreError>;
    /// How many hints are kept.
    fn hint_count(&self) -> Result<usize, StoreError>;
    /// A floor for this node's next counter for `key`: the highest counter it issued that the
    /// key's versions no longer name (0 if none). A coordinator takes its next counter from the
    /// key's versions; a merge can replace its versions with ones that name none of its counters
    /// when a past was cut (a context capped for a client, `Context::capped`, or a clock
    /// truncated, `Config::clock_entries_max`; a version supersedes another only if its past
    /// names the other's counter, so only a cut past, or one of the checker's seeded bugs, can),
    /// and this record, written before such a merge is saved, keeps the node from issuing a
    /// counter twice.
    fn issued(&self, key: &Key) -> Result<u64, StoreError>;
    /// Records that this node issued `counter` for `key`, which its versions are about to forget:
    /// the record becomes at least `counter` (it never goes down).
    fn save_issued(&mut self, key: &Key, counter: u64) -> Result<(), StoreError>;
}

/// Up to `limit` items of `walks` taken in turns: the first of each walk (in order), then the
/// second of each, and so on (the order of [`Store::hints`]). A walk's `Ok(None)` is an item it
/// passes over, which uses its turn; an error ends the taking.
pub fn take_in_turns<T, E>(
    mut walks: Vec<impl Iterator<Item = Result<Option<T>, E>>>,
    limit: usize,
) -> Result<Vec<T>, E> {
    let mut out = Vec::new();
    while out.len() < limit && !walks.is_empty() {
        let mut i = 0;
        while i < walks.len() && out.len() < limit {
            match walks[i].next() {
                Some(item) => {
                    out.extend(item?);
                    i += 1;
                }
                None => {
                    walks.remove(i);
                }
            }
        }
    }
    Ok(out)
}

/// An in-memory store: what the simulator and the model checker use. Every write is durable at
/// once, which is what a synced store looks like to the protocol.
///
/// The data and hint maps are shared on clone and copied on write, so copying a store (the model
/// checker does it for every state) is cheap, and comparing a store with an unchanged copy of
/// itself is a pointer comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemStore {
    /// Primary data.
    pub data: Arc<BTreeMap<Key, Siblings>>,
    /// Hints, by intended node and key.
    pub hints: Arc<BTreeMap<(NodeId, Key), Siblings>>,
    /// The counters recorded as issued (see [`Store::issued`]). Not shared: it stays empty
    /// unless pasts are cut, and an empty map copies for nothing (a shared one would have
    /// every copy of every state count references on one cache line).
    pub issued: BTreeMap<Key, u64>,
}

impl Store for MemStore {
    fn load(&self, key: &Key) -> Result<Siblings, StoreError> {
        Ok(self.data.get(key).cloned().unwrap_or_default())
    }
    fn save(&mut self, key: &Key, siblings: &Siblings) -> Result<(), StoreError> {
        if self.data.get(key) != Some(siblings) {
            Arc::make_mut(&mut self.data).insert(key.clone(), siblings.clone());
        }
        Ok(())
    }
    fn load_hint(&self, intended: NodeId, key: &Key) -> Result<Siblings, StoreError> {
        Ok(self.hints.get(&(intended, key.clone())).cloned().unwrap_or_default())
    }
    fn save_hint(
        &mut self,
        intended: NodeId,
        key: &Key,
        siblings: &Siblings,
    ) -> Result<(), StoreError> {
        let id = (intended, key.clone());
        if self.hints.get(&id) != Some(siblings) {
            Arc::make_mut(&mut self.hints).insert(id, siblings.clone());
        }
        Ok(())
    }
    fn remove_hint(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        let id = (intended, key.clone());
        if self.hints.contains_key(&id) {
            Arc::make_mut(&mut self.hints).remove(&id);
        }
        Ok(())
    }
    fn hints(&self, skip: &BTreeSet<NodeId>, limit: usize) -> Result<Vec<Hint>, StoreError> {
        let nodes: BTreeSet<NodeId> =
            self.hints.keys().map(|(n, _)| *n).filter(|n| !skip.contains(n)).collect();
        let walks = nodes.into_iter().map(|node| {
            self.hints
                .range((node, Key::default())..)
                .take_while(move |((n, _), _)| *n == node)
                .map(|((n, k), s)| Ok(Some((*n, k.clone(), s.clone()))))
        });
        take_in_turns(walks.collect(), limit)
    }
    fn hint_count(&self) -> Result<usize, StoreError> {
        Ok(self.hints.len())
    }
    fn issued(&self, key: &Key) -> Result<u64, StoreError> {
        Ok(self.issued.get(key).copied().unwrap_or(0))
    }
    fn save_issued(&mut self, key: &Key, counter: u64) -> Result<(), StoreError> {
        let held = self.issued.entry(key.clone()).or_insert(0);
        *held = (*held).max(counter);
        Ok(())
    }
}
