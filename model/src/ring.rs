//! Partitioning and replica placement (paper §4.2, §4.3, §6.2 strategy 3).
//!
//! Keys hash with XXH3-64 (seed 0) over the key bytes; the hash space is cut into Q equal
//! partitions and a key belongs to partition `hash >> (64 - log2 Q)`, i.e. the top bits. This
//! function decides where every byte of data lives, so a test pins it to known vectors.
//!
//! Each partition has one owner. Ownership is built by adding nodes one at a time, in id order; a
//! joining node takes ⌊Q/(S+1)⌋ partitions, each from whichever node currently owns the most. So
//! every node owns ⌊Q/S⌋ or ⌈Q/S⌉ partitions, and a join moves only what the new node takes,
//! about 1/(S+1) of the ring. The preference list of a partition is the first N distinct owners
//! met walking clockwise from it; the walk continues past N to give the fallbacks, in order.

use crate::ids::{Key, NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The stable 64-bit hash of a key: XXH3-64 with seed 0.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Partition ownership and, for each partition, the full clockwise order of distinct nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ring {
    owners: Vec<NodeId>,
    /// For each partition, every node in clockwise order of first ownership from it.
    walks: Vec<Vec<NodeId>>,
    shift: u32,
}

impl Ring {
    /// The ring of `partitions` (a power of two) over `nodes`, built by joining them in id order.
    /// Callers pass a validated [`crate::Config`]'s values, which guarantee a non-empty node set.
    pub fn new(partitions: u32, nodes: &BTreeSet<NodeId>) -> Ring {
        let q = partitions.max(1) as usize;
        let mut owners: Vec<NodeId> = Vec::new();
        for &node in nodes {
            if owners.is_empty() {
                owners = vec![node; q];
            } else {
                Self::join(&mut owners, node);
            }
        }
        Self::from_owners(owners)
    }

    /// The ring after `node` joins: it takes ⌊Q/(S+1)⌋ partitions from the most loaded owners.
    pub fn with_node(&self, node: NodeId) -> Ring {
        let mut owners = self.owners.clone();
        if !owners.contains(&node) {
            Self::join(&mut owners, node);
        }
        Self::from_owners(owners)
    }

    fn join(owners: &mut [NodeId], node: NodeId) {
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &o in owners.iter() {
            *counts.entry(o).or_default() += 1;
        }
        let take = owners.len() / (counts.len() + 1);
        for _ in 0..take {
            // The most loaded owner gives up a partition; ties go to the highest id.
            let donor = match counts.iter().max_by_key(|(id, c)| (**c, **id)) {
                Some((id, _)) => *id,
                None => return,
            };
            // Prefer a partition whose neighbours the joiner does not own, so that walks meet it
            // apart from its other partitions.
            let q = owners.len();
            let candidates: Vec<usize> = (0..q).filter(|&p| owners[p] == donor).collect();
            let isolated = candidates
                .iter()
                .copied()
                .find(|&p| owners[(p + q - 1) % q] != node && owners[(p + 1) % q] != node);
            let Some(p) = isolated.or(candidates.first().copied()) else { return };
            owners[p] = node;
            *counts.entry(donor).or_default() -= 1;
            *counts.entry(node).or_default() += 1;
        }
    }

    fn from_owners(owners: Vec<NodeId>) -> Ring {
        let q = owners.len();
        let distinct: BTreeSet<NodeId> = owners.iter().copied().collect();
        let walks = (0..q)
            .map(|start| {
                let mut walk = Vec::with_capacity(distinct.len());
                for step in 0..q {
                    let o = owners[(start + step) % q];
                    if !walk.contains(&o) {
                        walk.push(o);
                        if walk.len() == distinct.len() {
                            break;
                        }
                    }
                }
                walk
            })
            .collect();
        Ring { shift: 64 - q.trailing_zeros(), owners, walks }
    }

    /// Q.
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of every partition, by partition index.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The partition a key belongs to.
    pub fn partition_of(&self, key: &Key) -> PartitionId {
        let h = key_hash(key.as_bytes());
        // With Q = 1 the shift is 64, which `checked_shr` maps to partition 0.
        PartitionId(h.checked_shr(self.shift).unwrap_or(0) as u32)
    }

    /// Every node, in the order a request for `key` should try them: the first N are the
    /// preference list, the rest are fallbacks in order.
    pub fn walk(&self, key: &Key) -> &[NodeId] {
        let p = self.partition_of(key).0 as usize;
        self.walks.get(p).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The preference list of `key`: its first `n` distinct nodes clockwise.
    pub fn preference_list(&self, key: &Key, n: usize) -> &[NodeId] {
        let w = self.walk(key);
        &w[..n.min(w.len())]
    }

    /// Whether `node` is one of the ring's nodes.
    pub fn contains(&self, node: NodeId) -> bool {
        self.walks.first().is_some_and(|w| w.contains(&node))
    }
}
