//! Seeded protocol bugs ("mutants") that prove the model checker's properties have teeth.
//!
//! This module exists only with the `mutants` cargo feature, which is off by default and enabled
//! only by `dynamo-checker`. A mutant is chosen at run time with [`crate::Config::with_mutant`];
//! each one is a small, deliberate deviation from the protocol at one site, marked in the code by a
//! `#[cfg(feature = "mutants")]` hook. Without the feature neither this module nor the hooks are
//! compiled, so the production node can never run a mutant.

use crate::clock::Dot;
use crate::config::Config;
use crate::coordinator::CoordKind;
use crate::ids::{Key, NodeId};
use crate::store::Store;
use crate::versioned::{Siblings, Version};
use serde::{Deserialize, Serialize};

/// One seeded bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mutant {
    /// The coordinator acknowledges a put after W-1 acknowledgements (itself included).
    AckBeforeQuorum,
    /// The coordinator answers a get after R-1 replies (itself included).
    ReadBeforeQuorum,
    /// A put reuses the coordinator's previous counter instead of incrementing it.
    PutNoIncrement,
    /// Merging into primary data keeps only the highest-dot version, dropping concurrent siblings.
    ReconcileDropsSibling,
    /// A fallback deletes a hint as soon as it sends it, before the intended node acknowledged.
    HintDeletedEarly,
    /// A read repair replaces the replica's siblings instead of merging into them.
    ReadRepairOverwrites,
    /// A fallback writes the copy into its own primary data instead of the hint store.
    FallbackWritesPrimary,
    /// The coordinator ignores its record of the counters its key's versions forgot (see
    /// `Store::issued`), so after a cut context replaced them it can issue one of them again.
    IssuedNotRecorded,
    /// A get's answer carries the merged context whole, however many entries it has, instead of
    /// cut to the limit (see `Context::capped`).
    ReadContextUncapped,
}

impl Mutant {
    /// Every mutant, in a stable order.
    pub const ALL: [Mutant; 9] = [
        Mutant::AckBeforeQuorum,
        Mutant::ReadBeforeQuorum,
        Mutant::PutNoIncrement,
        Mutant::ReconcileDropsSibling,
        Mutant::HintDeletedEarly,
        Mutant::ReadRepairOverwrites,
        Mutant::FallbackWritesPrimary,
        Mutant::IssuedNotRecorded,
        Mutant::ReadContextUncapped,
    ];

    /// The mutant's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeQuorum => "ack-before-quorum",
            Mutant::ReadBeforeQuorum => "read-before-quorum",
            Mutant::PutNoIncrement => "put-no-increment",
            Mutant::ReconcileDropsSibling => "reconcile-drops-sibling",
            Mutant::HintDeletedEarly => "hint-deleted-early",
            Mutant::ReadRepairOverwrites => "read-repair-overwrites",
            Mutant::FallbackWritesPrimary => "fallback-writes-primary",
            Mutant::IssuedNotRecorded => "issued-not-recorded",
            Mutant::ReadContextUncapped => "read-context-uncapped",
        }
    }

    /// The mutant called `name`, if any.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Whether `m` is the configured mutant.
pub(crate) fn active(config: &Config, m: Mutant) -> bool {
    config.mutant() == Some(m)
}

/// Answers needed before replying: one fewer than the protocol asks under the quorum mutants.
pub(crate) fn needed(config: &Config, kind: &CoordKind, needed: usize) -> usize {
    let early = match kind {
        CoordKind::Put { .. } => active(config, Mutant::AckBeforeQuorum),
        CoordKind::Get { .. } => active(config, Mutant::ReadBeforeQuorum),
    };
    if early {
        needed.saturating_sub(1).max(1)
    } else {
        needed
    }
}

/// Under [`Mutant::PutNoIncrement`], renames the freshly issued version to the previous counter.
pub(crate) fn issued_dot(config: &Config, siblings: &mut Siblings, dot: Dot) -> Dot {
    if !active(config, Mutant::PutNoIncrement) || dot.counter <= 1 {
        return dot;
    }
    let stale = Dot { counter: dot.counter - 1, ..dot };
    let versions = siblings.versions().iter().cloned().map(|v| {
        if v.dot == dot {
            Version { dot: stale, ..v }
        } else {
            v
        }
    });
    *siblings = Siblings::from_versions(versions.collect::<Vec<_>>());
    stale
}

/// Under [`Mutant::IssuedNotRecorded`], the coordinator reads no issued-counter record.
pub(crate) fn issued(config: &Config, issued: u64) -> u64 {
    if active(config, Mutant::IssuedNotRecorded) {
        0
    } else {
        issued
    }
}

/// The most entries a get's answer may carry: unbounded under [`Mutant::ReadContextUncapped`].
pub(crate) fn read_context_max(config: &Config, max: usize) -> usize {
    if active(config, Mutant::ReadContextUncapped) {
        usize::MAX
    } else {
        max
    }
}

/// Under [`Mutant::ReconcileDropsSibling`], keeps only the highest-dot version.
pub(crate) fn after_reconcile(config: &Config, held: &mut Siblings) {
    if !active(config, Mutant::ReconcileDropsSibling) {
        return;
    }
    if let Some(last) = held.versions().last().cloned() {
        *held = Siblings::from_versions([last]);
    }
}

/// Under [`Mutant::HintDeletedEarly`], forgets a hint the moment it is sent.
pub(crate) fn on_handoff_sent<S: Store>(config: &Config, store: &mut S, to: NodeId, key: &Key) {
    if active(config, Mutant::HintDeletedEarly) {
        let _ = store.remove_hint(to, key);
    }
}

/// Under [`Mutant::ReadRepairOverwrites`], a read repair (a `Store` without an op, meant for
/// primary data) replaces the held siblings. Returns whether it did so.
pub(crate) fn overwrite_repair<S: Store>(
    config: &Config,
    store: &mut S,
    is_repair: bool,
    key: &Key,
    siblings: &Siblings,
) -> bool {
    is_repair && active(config, Mutant::ReadRepairOverwrites) && store.save(key, siblings).is_ok()
}

/// Under [`Mutant::FallbackWritesPrimary`], forgets whom a copy was meant for.
pub(crate) fn intended(config: &Config, intended: Option<NodeId>) -> Option<NodeId> {
    if active(config, Mutant::FallbackWritesPrimary) {
        None
    } else {
        intended
    }
}
