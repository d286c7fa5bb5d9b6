//! Versions and sibling sets (paper §4.4), with the put-with-context rule.
//!
//! A [`Version`] is one write: its [`Dot`] (who issued it, with which counter), the causal past it
//! was written on top of (the client's context), and a value or a tombstone. Its *clock* is the past
//! plus its own dot. Version `a` is superseded by version `b` when `b`'s clock contains `a`'s dot.
//!
//! Keeping the dot apart from the past (a dotted version vector) is what lets two writes coordinated
//! by the same node on the same context stay concurrent: the second one gets the next counter after
//! the first, but its past does not contain the first, so neither supersedes the other. A plain
//! `context.increment(actor)` would give both the same clock and silently lose one. When no
//! concurrent local write exists, the new clock is exactly `context.increment(actor)`.
//!
//! [`Siblings`] is the antichain of versions a replica holds for a key: no member supersedes
//! another, members are sorted by dot, and replicas merge sets with [`Siblings::reconcile`].
//! Replicas always exchange whole sibling sets, never single versions, so every replica that holds a
//! dot of an actor has also seen (held or superseded) every earlier dot of that actor for the key.
//! That is what makes the joined clock of a read a faithful summary of what the reader saw, as
//! long as no past is cut: a context over the client limit is handed out capped
//! (`Context::capped`), and a capped or truncated past makes a write replace less than it saw.

use crate::clock::{Context, Dot, CONTEXT_COUNTER_MAX};
use crate::config::Limits;
use crate::ids::ActorId;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// A value or a deletion marker.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Payload {
    /// A stored value. (Encoded as one byte string, not a sequence of `u8`s: same postcard bytes,
    /// far cheaper to encode and decode.)
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A delete: kept as a version so that it supersedes what it deleted (paper §4.4).
    Tombstone,
}

impl Payload {
    /// The value, unless this is a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Payload::Value(v) => Some(v),
            Payload::Tombstone => None,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Value(v) => match std::str::from_utf8(v) {
                Ok(s) if v.len() <= 32 => write!(f, "{s:?}"),
                _ => write!(f, "<{} bytes>", v.len()),
            },
            Payload::Tombstone => f.write_str("⊥"),
        }
    }
}

/// One write of a key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    /// The write's identity.
    pub dot: Dot,
    /// The context the write was made on: everything it supersedes.
    pub past: Context,
    /// What was written.
    pub payload: Payload,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}{}", self.payload, self.dot, self.past)
    }
}

impl Version {
    /// The version's clock: its past plus its own dot.
    pub fn clock(&self) -> Context {
        let mut c = self.past.clone();
        c.add_dot(&self.dot);
        c
    }

    /// Whether this version supersedes `other` (it was written knowing `other`).
    pub fn supersedes(&self, other: &Version) -> bool {
        self.dot != other.dot && self.past.contains(&other.dot)
    }

    /// Whether the version's past holds its own dot. No real history makes one (a put's counter
    /// is above everything its context names): only a damaged frame or record could.
    pub fn is_damaged(&self) -> bool {
        self.past.contains(&self.dot)
    }
}

/// Why a put was refused. The put did not happen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Error, Serialize, Deserialize)]
pub enum PutError {
    /// The value is larger than allowed.
    #[error("value of {bytes} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The key would hold too many concurrent versions; read it and write with the merged context.
    #[error(
        "key would hold {siblings} siblings, more than the limit {max}; read and resolve first"
    )]
    TooManySiblings {
        /// Siblings after the put.
        siblings: usize,
        /// The limit.
        max: usize,
    },
    /// The context claims `actor`'s counter at [`CONTEXT_COUNTER_MAX`], so no write of `actor`
    /// can follow it. No real history reaches it: the context was made up or damaged.
    #[error(
        "the context claims counter {counter} of {actor}, the last allowed; no write can follow it"
    )]
    CounterExhausted {
        /// The coordinator whose counter would overflow.
        actor: ActorId,
        /// The counter claimed.
        counter: u64,
    },
}

/// Who coordinates a put: its actor, and the highest counter the actor recorded as issued for
/// the key when the key's versions forgot it ([`crate::store::Store::issued`]; 0 when none is
/// recorded, as when the versions still name every counter it issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    /// The coordinator's actor.
    pub actor: ActorId,
    /// The highest counter it issued for the key, as far as recorded.
    pub issued: u64,
}

impl From<ActorId> for Writer {
    fn from(actor: ActorId) -> Writer {
        Writer { actor, issued: 0 }
    }
}

/// An antichain of versions, sorted by dot. Decoding rebuilds the antichain, so a set read from
/// the network or disk is canonical whatever order or redundancy it arrived with; it refuses a
/// set with more than [`DAMAGED_VERSIONS_MAX`] versions whose past holds their own dot.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(try_from = "DecodedVersions")]
pub struct Siblings {
    /// Shared on clone, copied on write: sibling sets are copied far more often (into messages,
    /// replies, caches and model-checker states) than changed.
    versions: Arc<Vec<Version>>,
}

impl From<Vec<Version>> for Siblings {
    fn from(versions: Vec<Version>) -> Self {
        Siblings::from_versions(versions)
    }
}

/// Versions whose past holds their own dot that a decoded sibling set may carry. No real history
/// makes one (only a made-up or damaged context); each costs [`Siblings::from_versions`] a look
/// at every other version, so a set of many (a peer's frame can hold tens of thousands) would
/// take time quadratic in its size.
pub const DAMAGED_VERSIONS_MAX: usize = 16;

/// A sibling set as decoded, before [`Siblings::from_versions`] rebuilds it.
#[derive(Deserialize)]
#[serde(transparent)]
struct DecodedVersions(#[serde(deserialize_with = "crate::wire::bounded_vec")] Vec<Version>);

impl TryFrom<DecodedVersions> for Siblings {
    type Error = String;
    fn try_from(DecodedVersions(versions): DecodedVersions) -> Result<Self, String> {
        let damaged = versions.iter().filter(|v| v.is_damaged()).count();
        if damaged > DAMAGED_VERSIONS_MAX {
            return Err(format!(
                "{damaged} versions hold their own dot in their past (at most \
                 {DAMAGED_VERSIONS_MAX} are decoded)"
            ));
        }
        Ok(Siblings::from_versions(versions))
    }
}

impl From<Siblings> for Vec<Version> {
    fn from(s: Siblings) -> Self {
        Arc::unwrap_or_clone(s.versions)
    }
}

/// Encoded as the sequence of its versions, straight from the shared vector (a copy of every
/// version, values included, just to encode them was a tenth of a replica's work per write).
impl Serialize for Siblings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.versions.as_slice().serialize(serializer)
    }
}

impl fmt::Debug for Siblings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.versions.iter()).finish()
    }
}

/// Which of `versions` (sorted by dot, one per dot) are maximal: no other version's past holds
/// their dot. (A damaged version, whose past holds its own dot, is not superseded by itself.)
/// Small sets are checked pair by pair; larger ones against the join of every past, then each
/// damaged version whose dot it holds against the others pair by pair (decoding admits at most
/// [`DAMAGED_VERSIONS_MAX`] of them), so the time is about linear, not quadratic, in the versions
/// and their pasts.
fn maximal<V: Borrow<Version>>(versions: &[V]) -> Vec<bool> {
    let superseded_by_another =
        |v: &Version| versions.iter().any(|w| Borrow::<Version>::borrow(w).supersedes(v));
    let all = || versions.iter().map(Borrow::<Version>::borrow);
    if versions.len() <= PAIRWISE_MAX {
        return all().map(|v| !superseded_by_another(v)).collect();
    }
    let seen = Context::join_all(all().map(|v| &v.past));
    all().map(|v| !seen.contains(&v.dot) || (v.is_damaged() && !superseded_by_another(v))).collect()
}

/// Sets of at most this many versions are checked pair by pair in [`maximal`] (quicker than
/// joining their pasts).
const PAIRWISE_MAX: usize = 8;

/// Whether every version of `versions` that `kept` leaves out is named by one it keeps (a
/// version's past holds its dot).
fn absorbs<V: Borrow<Version>>(versions: &[V], kept: &[bool]) -> bool {
    let with_kept = || versions.iter().map(Borrow::<Version>::borrow).zip(kept.iter().copied());
    let mut left_out = with_kept().filter(|(_, k)| !k).map(|(v, _)| v);
    let kept = || with_kept().filter(|(_, k)| *k).map(|(v, _)| v);
    if versions.len() <= PAIRWISE_MAX {
        return left_out.all(|v| kept().any(|w| w.supersedes(v)));
    }
    let named = Context::join_all(kept().map(|w| &w.past));
    left_out.all(|v| named.contains(&v.dot))
}

/// A version of the union of two sets being merged, and which of them hold it as it is.
struct InUnion<'a> {
    version: &'a Version,
    /// The set merged into holds it (of two versions with one dot, its own is taken).
    in_mine: bool,
    /// The set merged in holds it.
    in_theirs: bool,
}

impl Borrow<Version> for InUnion<'_> {
    fn borrow(&self) -> &Version {
        self.version
    }
}

/// Which versions of `union` (in dot order) a merge keeps that takes the other set's versions
/// one at a time in dot order: one is dropped if a version of this set still held names it, and
/// else it stays and drops the versions of this set it names. (The other set's versions, an
/// antichain, never name each other.)
///
/// In time about linear in the versions and their pasts (times a logarithm), not in the product
/// of the two sets' sizes: how many held pasts hold each incoming dot is kept up to date as held
/// versions are dropped, in a Fenwick tree over those dots, and the held versions an incoming
/// past names are found by their dots, each dropped once.
fn one_at_a_time(union: &[InUnion<'_>]) -> Vec<bool> {
    let key = |d: &Dot| (d.actor, d.counter);
    // The only points asked about: the incoming versions' dots, sorted (as `contains` sees a dot).
    let mut points: Vec<(ActorId, u64)> =
        union.iter().filter(|u| !u.in_mine).map(|u| key(&u.version.dot)).collect();
    points.dedup();
    let span = |(actor, lo, hi): (ActorId, u64, u64)| {
        points.partition_point(|p| *p < (actor, lo))..points.partition_point(|p| *p <= (actor, hi))
    };
    let mut cover = Coverage::new(points.len());
    let held: Vec<usize> = (0..union.len()).filter(|&i| union[i].in_mine).collect();
    for &j in &held {
        past_spans(&union[j].version.past).for_each(|s| cover.add(span(s), 1));
    }
    let mut kept = vec![true; union.len()];
    // `next[k]`: a position at or before the first held version still kept from `k` on.
    let mut next: Vec<usize> = (0..=held.len()).collect();
    for (i, u) in union.iter().enumerate().filter(|(_, u)| !u.in_mine) {
        if cover.at(points.partition_point(|p| *p < key(&u.version.dot))) > 0 {
            kept[i] = false;
            continue;
        }
        for (actor, lo, hi) in past_spans(&u.version.past) {
            let start = held.partition_point(|&j| key(&union[j].version.dot) < (actor, lo));
            let end = held.partition_point(|&j| key(&union[j].version.dot) <= (actor, hi));
            let mut k = first_kept(&mut next, start);
            while k < end {
                let j = held[k];
                kept[j] = false;
                past_spans(&union[j].version.past).for_each(|s| cover.add(span(s), -1));
                next[k] = k + 1;
                k = first_kept(&mut next, k + 1);
            }
        }
    }
    kept
}

/// The first position at or after `k` whose held version is still kept (`next` links each
/// dropped position onward; the links are shortened as they are followed).
fn first_kept(next: &mut [usize], k: usize) -> usize {
    let mut root = k;
    while next[root] != root {
        root = next[root];
    }
    let mut at = k;
    while next[at] != root {
        let onward = next[at];
        next[at] = root;
        at = onward;
    }
    root
}

/// The dots a past holds, as spans of one actor's counters: its clock's entries from 1, then its
/// runs.
fn past_spans(past: &Context) -> impl Iterator<Item = (ActorId, u64, u64)> + '_ {
    let clock = past.clock().entries().iter().map(|e| (e.actor, 1, e.counter));
    clock.chain(past.cloud().iter().map(|r| (r.actor, r.first, r.last)))
}

/// Counts per point, with a count added over a range of points at once (a Fenwick tree over the
/// differences).
struct Coverage(Vec<i64>);

impl Coverage {
    fn new(points: usize) -> Coverage {
        Coverage(vec![0; points + 2])
    }

    fn add(&mut self, range: std::ops::Range<usize>, delta: i64) {
        if range.start < range.end {
            self.bump(range.start, delta);
            self.bump(range.end, -delta);
        }
    }

    fn bump(&mut self, at: usize, delta: i64) {
        let mut i = at + 1;
        while i < self.0.len() {
            self.0[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// The count at point `at`.
    fn at(&self, at: usize) -> i64 {
        let (mut i, mut sum) = (at + 1, 0);
        while i > 0 {
            sum += self.0[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

impl Siblings {
    /// No versions.
    pub fn new() -> Self {
        Siblings::default()
    }

    /// Builds the antichain of the maximal versions among `versions`: those no other version
    /// supersedes (of versions with one dot, the first). In time about linear in the versions and
    /// their pasts, not quadratic: a set read from disk or the network may be large. (Plus, for
    /// each damaged version whose dot a past holds, one whose past holds its own dot, a look at
    /// every version: decoding admits at most [`DAMAGED_VERSIONS_MAX`] of them.)
    pub fn from_versions(versions: impl IntoIterator<Item = Version>) -> Self {
        let mut versions: Vec<Version> = versions.into_iter().collect();
        // Stable: of versions with equal dots the first stays.
        versions.sort_by_key(|v| v.dot);
        versions.dedup_by(|later, kept| later.dot == kept.dot);
        let mut kept = maximal(&versions).into_iter();
        versions.retain(|_| kept.next().unwrap_or(true));
        Siblings { versions: Arc::new(versions) }
    }

    /// The set without its damaged versions ([`Version::is_damaged`]), and how many there were;
    /// `None` when there were none. (What a damaged version superseded stays gone.)
    pub fn without_damaged(&self) -> Option<(Siblings, usize)> {
        let dropped = self.versions.iter().filter(|v| v.is_damaged()).count();
        (dropped > 0).then(|| {
            let kept = self.versions.iter().filter(|v| !v.is_damaged()).cloned();
            (Siblings::from_versions(kept), dropped)
        })
    }

    /// The versions, sorted by dot.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Number of versions.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether there is no version.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The highest counter of `actor` this set names, in a version's dot or past.
    pub fn max_counter(&self, actor: ActorId) -> u64 {
        let in_version = |v: &Version| {
            let own = if v.dot.actor == actor { v.dot.counter } else { 0 };
            own.max(v.past.max_counter(actor))
        };
        self.versions.iter().map(in_version).max().unwrap_or(0)
    }

    /// The highest counter of `actor` this set names, if `after` (what the set became) names only
    /// lower ones: the counter a node must record apart before it saves `after` as its versions
    /// of the key (see [`crate::store::Store::issued`]).
    pub fn forgotten_in(&self, after: &Siblings, actor: ActorId) -> Option<u64> {
        let mine = self.max_counter(actor);
        (after.max_counter(actor) < mine).then_some(mine)
    }

    /// The join of every version's clock: the context a reader of this set gets.
    pub fn context(&self) -> Context {
        match &self.versions[..] {
            // The usual case, and the quickest by a copy.
            [v] => {
                let mut c = v.past.clone();
                c.add_dot(&v.dot);
                c
            }
            versions => {
                let mut c = Context::join_all(versions.iter().map(|v| &v.past));
                c.add_dots(versions.iter().map(|v| &v.dot));
                c
            }
        }
    }

    /// The values of the non-tombstone versions, in dot order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.versions.iter().filter_map(|v| v.payload.value())
    }

    /// Whether every version is a tombstone (or there is none): the key reads as not found.
    pub fn is_deleted(&self) -> bool {
        self.versions.iter().all(|v| v.payload == Payload::Tombstone)
    }

    /// Whether `dot` is held here or superseded by something held here.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.versions.iter().any(|v| v.dot == *dot || v.past.contains(dot))
    }

    /// Adds one version, keeping the antichain: it is dropped if something here supersedes it (or
    /// holds its dot already), and it drops what it supersedes.
    pub fn insert(&mut self, version: Version) {
        if self.versions.iter().any(|v| v.dot == version.dot || v.supersedes(&version)) {
            return;
        }
        self.replace_where(version, |new, old| new.supersedes(old));
    }

    /// Drops the versions `superseded(&version, old)` picks and adds `version` in dot order. A set
    /// shared with other clones is not copied whole first: only the versions that stay are
    /// (usually none: a write supersedes what it was made on).
    fn replace_where(&mut self, version: Version, superseded: impl Fn(&Version, &Version) -> bool) {
        match Arc::get_mut(&mut self.versions) {
            Some(versions) => versions.retain(|v| !superseded(&version, v)),
            None => {
                let kept = self.versions.iter().filter(|v| !superseded(&version, v)).cloned();
                let mut versions = Vec::with_capacity(self.versions.len() + 1);
                versions.extend(kept);
                self.versions = Arc::new(versions);
            }
        }
        let versions = Arc::make_mut(&mut self.versions);
        let at = versions.partition_point(|v| v.dot < version.dot);
        versions.insert(at, version);
    }

    /// Merges `other` into `self` (paper §4.4 syntactic reconciliation). Returns whether `self`
    /// changed. Of two versions with one dot, this set's stays.
    ///
    /// Where pasts are whole, the result is the maximal versions of the union, each version that
    /// leaves being named (its dot held in the past) by one that stays, whatever the order of
    /// merges; it is found in time about linear in both sets and their pasts, since a peer's set
    /// may be large. Where a past was cut (a context capped for a client, a truncated clock), the
    /// maximal versions may leave out one that only a version left out names: then `other`'s
    /// versions are merged one at a time in dot order, each dropped if a version of this set
    /// still held names it and otherwise dropping the ones it names, in about linear time too.
    /// Nothing is copied when the result is one of the two sets (the usual
    /// cases: a replica receiving a newer write, or one it holds already, and a coordinator
    /// merging equal replies).
    pub fn reconcile(&mut self, other: &Siblings) -> bool {
        if Arc::ptr_eq(&self.versions, &other.versions) {
            return false;
        }
        // The union in dot order. Of two versions with one dot, this set's is taken; neither set
        // holds a version naming that dot, so it is kept, and when the two differ (compared
        // whole) the result is not `other`.
        let (mine, theirs) = (&self.versions[..], &other.versions[..]);
        let mut union = Vec::with_capacity(mine.len() + theirs.len());
        let (mut i, mut j) = (0, 0);
        while i < mine.len() || j < theirs.len() {
            let order = match (mine.get(i), theirs.get(j)) {
                (Some(a), Some(b)) => a.dot.cmp(&b.dot),
                (Some(_), None) => Ordering::Less,
                (None, _) => Ordering::Greater,
            };
            union.push(match order {
                Ordering::Less => InUnion { version: &mine[i], in_mine: true, in_theirs: false },
                Ordering::Equal => {
                    let in_theirs = mine[i] == theirs[j];
                    InUnion { version: &mine[i], in_mine: true, in_theirs }
                }
                Ordering::Greater => {
                    InUnion { version: &theirs[j], in_mine: false, in_theirs: true }
                }
            });
            i += usize::from(order != Ordering::Greater);
            j += usize::from(order != Ordering::Less);
        }
        let mut kept = maximal(&union);
        if !absorbs(&union, &kept) {
            kept = one_at_a_time(&union);
        }
        if union.iter().zip(&kept).all(|(u, k)| *k == u.in_mine) {
            return false;
        }
        if union.iter().zip(&kept).all(|(u, k)| *k == u.in_theirs) {
            *self = other.clone();
            return true;
        }
        let versions = union.iter().zip(&kept).filter(|(_, k)| **k).map(|(u, _)| u.version.clone());
        self.versions = Arc::new(versions.collect());
        true
    }

    /// The union of two sets, reconciled.
    pub fn reconciled(&self, other: &Siblings) -> Siblings {
        let mut s = self.clone();
        s.reconcile(other);
        s
    }

    /// Applies a put coordinated by `writer`: the new version's past is `context`; it replaces
    /// exactly the versions whose dots the context covers and keeps the concurrent ones. Its
    /// counter is one above the highest of the writer's counters known here, in the context, or
    /// recorded as issued (see [`Writer`] and the module docs).
    /// Returns the new version's dot, or why the put was refused (then nothing changed).
    pub fn apply_put(
        &mut self,
        writer: impl Into<Writer>,
        context: &Context,
        payload: Payload,
        now_ms: u64,
        limits: &Limits,
        clock_entries_max: Option<usize>,
    ) -> Result<Dot, PutError> {
        let Writer { actor, issued } = writer.into();
        if let Payload::Value(v) = &payload {
            if v.len() > limits.value_bytes_max {
                return Err(PutError::ValueTooLarge {
                    bytes: v.len(),
                    max: limits.value_bytes_max,
                });
            }
        }
        let kept = self.versions.iter().filter(|v| !context.contains(&v.dot)).count();
        if kept + 1 > limits.siblings_max {
            return Err(PutError::TooManySiblings { siblings: kept + 1, max: limits.siblings_max });
        }
        let last = self.max_counter(actor).max(context.max_counter(actor)).max(issued);
        // Never above what a client's context may claim: the contexts this write's readers get
        // back must be ones the node takes again.
        let Some(counter) = last.checked_add(1).filter(|&c| c <= CONTEXT_COUNTER_MAX) else {
            return Err(PutError::CounterExhausted { actor, counter: last });
        };
        let dot = Dot { actor, counter, ts_ms: now_ms };
        let mut past = context.clone();
        if let Some(max) = clock_entries_max {
            // Leave room for the dot's own entry.
            past.truncate(max.saturating_sub(1).max(1));
        }
        self.replace_where(Version { dot, past, payload }, |_, old| context.contains(&old.dot));
        Ok(dot)
    }

    /// Checks the representation invariants: sorted by dot, unique dots, an antichain.
    pub fn check(&self) -> Result<(), String> {
        for pair in self.versions.windows(2) {
            if pair[0].dot >= pair[1].dot {
                return Err(format!("siblings not strictly sorted by dot: {self:?}"));
            }
        }
        for a in self.versions.iter() {
            for b in self.versions.iter() {
                if a.supersedes(b) {
                    return Err(format!("{a:?} supersedes its sibling {b:?}"));
                }
            }
        }
        Ok(())
    }
}
