//! Vector clocks (paper §4.4) and the dots that name single writes.
//!
//! A [`VClock`] maps actors to the highest counter of theirs it has seen. It never stores a zero
//! counter, and its entries are kept sorted by actor, so two clocks that mean the same thing are
//! equal and hash equally. Causal order is the named method [`VClock::causal_cmp`]; `Ord` on the
//! type is only a total order for sorting and has no causal meaning.
//!
//! Each entry also carries the wall-clock time (as given to the core) at which its actor issued the
//! counter. It orders entries by age where a clock or context must be cut: in optional truncation,
//! which drops the oldest entry once a clock grows past a bound, as the paper describes, and where
//! a context over the client limit is handed out capped ([`Context::capped`], newest kept).
//! Truncation is off by default: it can make a descendant look concurrent, or a dropped actor's
//! later write look newer than it is.

use crate::ids::ActorId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use thiserror::Error;

/// How two clocks relate in causal order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CausalOrder {
    /// The left clock happened before the right one.
    Before,
    /// The left clock happened after the right one.
    After,
    /// Both clocks are the same.
    Equal,
    /// Neither descends from the other.
    Concurrent,
}

/// One write's identity: its actor and the counter the actor gave it. Decoding refuses a counter
/// of 0: every context covers it, so any write would silently replace such a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawDot")]
pub struct Dot {
    /// The coordinator that issued the write.
    pub actor: ActorId,
    /// The actor's counter for this write; at least 1.
    pub counter: u64,
    /// Time (ms, as given to the core) when the write was issued; used only to cut clocks and
    /// contexts, oldest first.
    pub ts_ms: u64,
}

/// The wire form of a [`Dot`], checked when decoded.
#[derive(Deserialize)]
struct RawDot {
    actor: ActorId,
    counter: u64,
    ts_ms: u64,
}

impl TryFrom<RawDot> for Dot {
    type Error = ClockError;
    fn try_from(raw: RawDot) -> Result<Self, ClockError> {
        if raw.counter == 0 {
            return Err(ClockError::ZeroCounter(raw.actor));
        }
        Ok(Dot { actor: raw.actor, counter: raw.counter, ts_ms: raw.ts_ms })
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}

/// One clock entry: the actor's highest counter seen and when that counter was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    /// Whose counter.
    pub actor: ActorId,
    /// The counter; never zero.
    pub counter: u64,
    /// When the actor issued that counter.
    pub ts_ms: u64,
}

/// Why bytes or entries did not make a valid clock.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ClockError {
    /// Entries must be sorted by actor with no repeats.
    #[error("clock entries are not strictly sorted by actor")]
    Unsorted,
    /// A zero counter would let equal clocks differ.
    #[error("clock entry for {0} has a zero counter")]
    ZeroCounter(ActorId),
    /// The bytes were not a clock at all.
    #[error("context is not a valid encoded clock: {0}")]
    Undecodable(String),
    /// A run of dots must hold at least one counter.
    #[error("context run for {0} ends below where it starts")]
    EmptyRun(ActorId),
    /// A counter no real history reaches (see [`CONTEXT_COUNTER_MAX`]).
    #[error("context claims counter {counter} of {actor}, above the limit {max}")]
    CounterTooLarge {
        /// Whose counter.
        actor: ActorId,
        /// The counter claimed.
        counter: u64,
        /// The limit.
        max: u64,
    },
    /// The clock has more entries than allowed.
    #[error("context has {entries} entries, more than the limit {max}")]
    TooManyEntries {
        /// Entries found.
        entries: usize,
        /// The limit.
        max: usize,
    },
}

/// The largest counter a context from a client may claim: 2^48, more writes of one key through
/// one coordinator than any store makes (nine years at a million a second). A context made up to
/// claim more could push a coordinator's counter for a key to its last value, after which it
/// could write that key no more.
pub const CONTEXT_COUNTER_MAX: u64 = 1 << 48;

/// A vector clock: sorted, zero-free entries.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(try_from = "DecodedEntries")]
pub struct VClock {
    entries: Vec<Entry>,
}

/// A clock's entries as decoded, at most [`crate::wire`]'s bound of them.
#[derive(Deserialize)]
#[serde(transparent)]
struct DecodedEntries(#[serde(deserialize_with = "crate::wire::bounded_vec")] Vec<Entry>);

impl TryFrom<DecodedEntries> for VClock {
    type Error = ClockError;
    fn try_from(DecodedEntries(entries): DecodedEntries) -> Result<Self, ClockError> {
        VClock::try_from(entries)
    }
}

impl TryFrom<Vec<Entry>> for VClock {
    type Error = ClockError;
    fn try_from(entries: Vec<Entry>) -> Result<Self, ClockError> {
        for pair in entries.windows(2) {
            if pair[0].actor >= pair[1].actor {
                return Err(ClockError::Unsorted);
            }
        }
        if let Some(e) = entries.iter().find(|e| e.counter == 0) {
            return Err(ClockError::ZeroCounter(e.actor));
        }
        Ok(VClock { entries })
    }
}

impl From<VClock> for Vec<Entry> {
    fn from(c: VClock) -> Self {
        c.entries
    }
}

/// Encoded as the sequence of its entries, without copying them.
impl Serialize for VClock {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.as_slice().serialize(serializer)
    }
}

impl fmt::Debug for VClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for VClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}:{}", e.actor, e.counter)?;
        }
        f.write_str("}")
    }
}

impl VClock {
    /// The empty clock, before every write.
    pub fn new() -> Self {
        VClock::default()
    }

    /// The entries, sorted by actor.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the clock has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counter seen for `actor` (0 if none).
    pub fn get(&self, actor: ActorId) -> u64 {
        match self.entries.binary_search_by(|e| e.actor.cmp(&actor)) {
            Ok(i) => self.entries[i].counter,
            Err(_) => 0,
        }
    }

    /// Whether the clock has seen the write `dot`.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// Raises `actor`'s entry to `counter` (if higher), recording when it was issued.
    pub fn witness(&mut self, actor: ActorId, counter: u64, ts_ms: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.binary_search_by(|e| e.actor.cmp(&actor)) {
            Ok(i) => {
                if self.entries[i].counter < counter {
                    self.entries[i].counter = counter;
                    self.entries[i].ts_ms = ts_ms;
                }
            }
            Err(i) => self.entries.insert(i, Entry { actor, counter, ts_ms }),
        }
    }

    /// Adds one to `actor`'s counter and returns the dot of that new event (the counter stays at
    /// `u64::MAX` once there; puts refuse that case, see [`crate::versioned::PutError`]).
    pub fn increment(&mut self, actor: ActorId, ts_ms: u64) -> Dot {
        let counter = self.get(actor).saturating_add(1);
        self.witness(actor, counter, ts_ms);
        Dot { actor, counter, ts_ms }
    }

    /// Records the write `dot` in the clock.
    pub fn add_dot(&mut self, dot: &Dot) {
        self.witness(dot.actor, dot.counter, dot.ts_ms);
    }

    /// The least upper bound of both clocks, in place.
    pub fn merge(&mut self, other: &VClock) {
        if other.entries.is_empty() {
            return;
        }
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].actor.cmp(&b[j].actor) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    out.push(if a[i].counter >= b[j].counter { a[i] } else { b[j] });
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.entries = out;
    }

    /// The least upper bound of both clocks.
    pub fn merged(&self, other: &VClock) -> VClock {
        let mut c = self.clone();
        c.merge(other);
        c
    }

    /// Whether `self` has seen everything `other` has (`self ≥ other` in causal order).
    pub fn descends(&self, other: &VClock) -> bool {
        let mut mine = self.entries.iter().peekable();
        for theirs in &other.entries {
            loop {
                match mine.peek() {
                    Some(m) if m.actor < theirs.actor => {
                        mine.next();
                    }
                    Some(m) if m.actor == theirs.actor => {
                        if m.counter < theirs.counter {
                            return false;
                        }
                        break;
                    }
                    _ => return false,
                }
            }
        }
        true
    }

    /// How `self` relates to `other` in causal order.
    pub fn causal_cmp(&self, other: &VClock) -> CausalOrder {
        let (mut ge, mut le) = (true, true);
        let (mut a, mut b) = (self.entries.iter().peekable(), other.entries.iter().peekable());
        while ge || le {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.actor.cmp(&y.actor) {
                    Ordering::Less => {
                        le = false;
                        a.next();
                    }
                    Ordering::Greater => {
                        ge = false;
                        b.next();
                    }
                    Ordering::Equal => {
                        match x.counter.cmp(&y.counter) {
                            Ordering::Less => ge = false,
                            Ordering::Greater => le = false,
                            Ordering::Equal => {}
                        }
                        a.next();
                        b.next();
                    }
                },
                (Some(_), None) => {
                    le = false;
                    break;
                }
                (None, Some(_)) => {
                    ge = false;
                    break;
                }
                (None, None) => break,
            }
        }
        match (ge, le) {
            (true, true) => CausalOrder::Equal,
            (true, false) => CausalOrder::After,
            (false, true) => CausalOrder::Before,
            (false, false) => CausalOrder::Concurrent,
        }
    }

    /// Drops the oldest entries (by issue time, then by actor) until at most `max` remain.
    /// See the module docs for why this is risky and off by default.
    pub fn truncate(&mut self, max: usize) {
        while self.entries.len() > max {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.ts_ms, e.actor))
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }
}

/// Consecutive writes of one actor, counters `first..=last`, that a [`Context`] holds above a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DotRun {
    /// Whose writes.
    pub actor: ActorId,
    /// The lowest counter of the run; at least 1.
    pub first: u64,
    /// The highest counter of the run; at least `first`.
    pub last: u64,
    /// When `last` was issued (the time its clock entry takes if the run folds into the clock).
    pub ts_ms: u64,
}

impl DotRun {
    fn of(dot: &Dot) -> DotRun {
        DotRun { actor: dot.actor, first: dot.counter, last: dot.counter, ts_ms: dot.ts_ms }
    }

    fn contains(&self, dot: &Dot) -> bool {
        self.actor == dot.actor && self.first <= dot.counter && dot.counter <= self.last
    }
}

impl fmt::Display for DotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "[{}:{}]", self.actor, self.first)
        } else {
            write!(f, "[{}:{}..{}]", self.actor, self.first, self.last)
        }
    }
}

/// What a client has seen of a key: a gap-free [`VClock`] plus a *cloud* of dots above it.
///
/// Writes coordinated by the same node on the same context are concurrent but take consecutive
/// counters, so the history of one version can contain an actor's counter 4 without its counters
/// 2 and 3. A plain vector clock `{a:4}` would claim those too, and a put on it would silently
/// supersede writes its client never saw. The cloud keeps such dots exact; dots fold into the
/// clock as soon as the gap below them fills, so the cloud is empty in the common case and the
/// context is then exactly a vector clock.
///
/// The cloud holds runs of consecutive counters ([`DotRun`]), not single dots: a client that
/// wrote once without a context and then keeps writing on the context each write returns builds
/// a chain of its own dots above a gap that never fills (the versions it did not see are still
/// there). As single dots that chain grew by one entry per write until the context passed
/// `context_entries_max` and every further write was refused; as a run it stays one entry.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(try_from = "RawContext")]
pub struct Context {
    clock: VClock,
    /// Sorted by actor, then counter; runs of one actor are separated by at least one missing
    /// counter, and each starts at least two above the clock's entry for its actor.
    cloud: Vec<DotRun>,
}

/// The wire form of a [`Context`], checked when decoded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawContext {
    clock: VClock,
    #[serde(deserialize_with = "crate::wire::bounded_vec")]
    cloud: Vec<DotRun>,
}

impl TryFrom<RawContext> for Context {
    type Error = ClockError;
    fn try_from(raw: RawContext) -> Result<Self, ClockError> {
        if let Some(r) = raw.cloud.iter().find(|r| r.first == 0) {
            return Err(ClockError::ZeroCounter(r.actor));
        }
        if let Some(r) = raw.cloud.iter().find(|r| r.first > r.last) {
            return Err(ClockError::EmptyRun(r.actor));
        }
        let mut c = Context { clock: raw.clock, cloud: raw.cloud };
        c.normalize();
        Ok(c)
    }
}

impl From<Context> for RawContext {
    fn from(c: Context) -> Self {
        RawContext { clock: c.clock, cloud: c.cloud }
    }
}

/// [`RawContext`]'s shape, borrowed: a context encodes without being copied.
#[derive(Serialize)]
#[serde(rename = "RawContext")]
struct RawContextRef<'a> {
    clock: &'a VClock,
    cloud: &'a [DotRun],
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawContextRef { clock: &self.clock, cloud: &self.cloud }.serialize(serializer)
    }
}

impl From<VClock> for Context {
    fn from(clock: VClock) -> Self {
        Context { clock, cloud: Vec::new() }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.clock)?;
        if !self.cloud.is_empty() {
            f.write_str("+")?;
            for r in &self.cloud {
                write!(f, "{r}")?;
            }
        }
        Ok(())
    }
}

impl Context {
    /// The empty context: a blind write.
    pub fn new() -> Self {
        Context::default()
    }

    /// The gap-free part.
    pub fn clock(&self) -> &VClock {
        &self.clock
    }

    /// The runs of dots above the gap-free part, sorted.
    pub fn cloud(&self) -> &[DotRun] {
        &self.cloud
    }

    /// Entries in all: clock entries plus cloud runs.
    pub fn len(&self) -> usize {
        self.clock.len() + self.cloud.len()
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.clock.is_empty() && self.cloud.is_empty()
    }

    /// Whether the write `dot` was seen.
    pub fn contains(&self, dot: &Dot) -> bool {
        if self.clock.contains(dot) {
            return true;
        }
        // The cloud is sorted by actor, then first counter, and one actor's runs are disjoint:
        // only the last run starting at or below the counter can hold it.
        let after = self.cloud.partition_point(|r| (r.actor, r.first) <= (dot.actor, dot.counter));
        after > 0 && self.cloud[after - 1].contains(dot)
    }

    /// Everything any of `contexts` has seen, joined at once (a merge at a time sorts the growing
    /// cloud again each time). Of equal counters, the latest time stays.
    pub fn join_all<'a>(contexts: impl IntoIterator<Item = &'a Context>) -> Context {
        let (mut entries, mut cloud) = (Vec::new(), Vec::new());
        for c in contexts {
            entries.extend_from_slice(&c.clock.entries);
            cloud.extend_from_slice(&c.cloud);
        }
        entries.sort_unstable_by(|a, b| {
            a.actor.cmp(&b.actor).then(b.counter.cmp(&a.counter)).then(b.ts_ms.cmp(&a.ts_ms))
        });
        entries.dedup_by(|later, kept| later.actor == kept.actor);
        let mut joined = Context { clock: VClock { entries }, cloud };
        joined.normalize();
        joined
    }

    /// The highest counter of `actor` seen, gap or not.
    pub fn max_counter(&self, actor: ActorId) -> u64 {
        let in_cloud = self.cloud.iter().filter(|r| r.actor == actor).map(|r| r.last).max();
        self.clock.get(actor).max(in_cloud.unwrap_or(0))
    }

    /// Records every write of `dots` not yet seen, sorting the cloud once (adding them one at a
    /// time sorts it again each time).
    pub fn add_dots<'a>(&mut self, dots: impl IntoIterator<Item = &'a Dot>) {
        let new: Vec<DotRun> = dots
            .into_iter()
            .filter(|d| d.counter != 0 && !self.contains(d))
            .map(DotRun::of)
            .collect();
        if !new.is_empty() {
            self.cloud.extend(new);
            self.normalize();
        }
    }

    /// Records the write `dot`.
    pub fn add_dot(&mut self, dot: &Dot) {
        if dot.counter == 0 || self.contains(dot) {
            return;
        }
        self.cloud.push(DotRun::of(dot));
        self.normalize();
    }

    /// The union of both histories, in place.
    pub fn merge(&mut self, other: &Context) {
        self.clock.merge(&other.clock);
        self.cloud.extend_from_slice(&other.cloud);
        self.normalize();
    }

    /// Restores the cloud's invariant: sorts it, joins runs of one actor that overlap or touch,
    /// folds into the clock the runs that start at or below the counter after its entry, and
    /// drops what the clock covers.
    fn normalize(&mut self) {
        self.cloud.sort_unstable();
        let mut joined: Vec<DotRun> = Vec::with_capacity(self.cloud.len());
        for r in self.cloud.drain(..) {
            match joined.last_mut() {
                Some(p) if p.actor == r.actor && r.first <= p.last.saturating_add(1) => {
                    if r.last > p.last {
                        p.last = r.last;
                        p.ts_ms = r.ts_ms;
                    }
                }
                _ => joined.push(r),
            }
        }
        let clock = &self.clock;
        // Runs of one actor are now disjoint and apart, so at most the lowest one folds, and
        // whether a run folds depends on the clock as it was: the folds are gathered (sorted by
        // actor, like the runs) and merged in at once. (Witnessing each in turn shifted the
        // clock's entries once per fold: quadratic in a made-up context of many runs that each
        // fold under a new actor.)
        let mut folds: Vec<Entry> = Vec::new();
        joined.retain(|r| {
            let have = clock.get(r.actor);
            if r.last <= have {
                false
            } else if r.first <= have.saturating_add(1) {
                folds.push(Entry { actor: r.actor, counter: r.last, ts_ms: r.ts_ms });
                false
            } else {
                true
            }
        });
        if !folds.is_empty() {
            self.clock.merge(&VClock { entries: folds });
        }
        self.cloud = joined;
    }

    /// Cuts a context of more than `max` entries (clock entries and cloud runs together); one
    /// within it is left whole. One over it has its gap-free part truncated to `max` entries as
    /// [`VClock::truncate`] does, and loses the cloud runs of every actor left without a clock
    /// entry (those it dropped, and any that had only runs); the runs of actors that keep their
    /// entry stay, so it may still be over `max`. Risky; see the module docs.
    pub fn truncate(&mut self, max: usize) {
        if self.len() <= max {
            return;
        }
        self.clock.truncate(max);
        let clock = &self.clock;
        self.cloud.retain(|d| clock.get(d.actor) > 0);
    }

    /// The context to hand a client, who may send back at most `max` entries: this one if it
    /// fits; else a prefix of what it names, taken in order: first the dots of `keep` (the
    /// versions the client is answered about, so that a write on the result replaces them),
    /// newest first, then the rest of its entries, most recently issued first. The prefix is one
    /// that fits while one entry more would not: all of `keep` whenever that alone fits, else at
    /// least `max` of its dots (not always the longest that fits, as one entry can fold others
    /// together and shrink the whole). The result always fits and never claims a write this
    /// context does not (a dot of `keep` it does not hold is ignored), so a write on it can only
    /// replace less than a write on the whole: a version it leaves out survives as a sibling (a
    /// false conflict, as with truncation) and no write is lost; when even `keep` does not fit, a
    /// write on the result resolves the newest `max` of those versions and the rest stay
    /// siblings, `max - 1` fewer each round (the limit is at least 2).
    ///
    /// The cut has the cost of truncation: a write on a cut context can replace a version whose
    /// own past was the only one naming some older write, so a stale copy of that older write
    /// (a hint delivered late, say) comes back as a sibling of the new one rather than as
    /// superseded; and the key's versions can forget a counter of their coordinator's, which the
    /// coordinator then records apart (`Store::save_issued`) so that it never issues it again.
    /// Real contexts stay far below the limit (an entry per coordinator incarnation that wrote
    /// the key, and per run of writes above a gap); made-up ones, which also choose their own
    /// times, can reach it.
    ///
    /// Without the cut, versions whose pasts each fit could join into a read context no node
    /// takes back: a client that makes up contexts naming many actors, writing through several
    /// coordinators, could leave a key no one can resolve.
    pub fn capped(self, max: usize, keep: impl IntoIterator<Item = Dot>) -> Context {
        if self.len() <= max {
            return self;
        }
        let newest_first = |a: &DotRun, b: &DotRun| b.ts_ms.cmp(&a.ts_ms).then(a.cmp(b));
        let mut kept: Vec<DotRun> = keep
            .into_iter()
            .filter(|d| d.counter > 0 && self.contains(d))
            .map(|d| DotRun::of(&d))
            .collect();
        kept.sort_by(newest_first);
        let mut rest: Vec<DotRun> = self
            .clock
            .entries
            .iter()
            .map(|e| DotRun { actor: e.actor, first: 1, last: e.counter, ts_ms: e.ts_ms })
            .chain(self.cloud.iter().copied())
            .collect();
        rest.sort_by(newest_first);
        let kept_len = kept.len();
        let order: Vec<DotRun> = kept.into_iter().chain(rest).collect();
        let with = |k: usize| {
            let mut c = Context::new();
            c.cloud.extend_from_slice(&order[..k]);
            c.normalize();
            c
        };
        // A long prefix of `order` that fits, by bisection: normalising can fold runs together,
        // so the size only mostly grows with k. The search keeps `with(lo)` fitting (k = 0, the
        // empty context, always does), and starts above all of `keep` when that fits.
        let (mut lo, mut hi) =
            if with(kept_len).len() <= max { (kept_len, order.len()) } else { (0, kept_len - 1) };
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if with(mid).len() <= max {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        with(lo)
    }

    /// The context as opaque bytes, for clients to carry.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Whether this context is one a client may send: at most `entries_max` entries, and no
    /// counter above [`CONTEXT_COUNTER_MAX`]. Peers' versions are held to it too.
    pub fn check(&self, entries_max: usize) -> Result<(), ClockError> {
        if self.len() > entries_max {
            return Err(ClockError::TooManyEntries { entries: self.len(), max: entries_max });
        }
        let counters = self.clock.entries.iter().map(|e| (e.actor, e.counter));
        let runs = self.cloud.iter().map(|r| (r.actor, r.last));
        if let Some((actor, counter)) = counters.chain(runs).find(|&(_, n)| n > CONTEXT_COUNTER_MAX)
        {
            return Err(ClockError::CounterTooLarge { actor, counter, max: CONTEXT_COUNTER_MAX });
        }
        Ok(())
    }

    /// Decodes a context a client sent back; rejects malformed bytes, oversized contexts, and
    /// counters above [`CONTEXT_COUNTER_MAX`].
    pub fn from_bytes(bytes: &[u8], entries_max: usize) -> Result<Context, ClockError> {
        let (c, rest): (Context, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| ClockError::Undecodable(e.to_string()))?;
        if !rest.is_empty() {
            return Err(ClockError::Undecodable(format!("{} trailing bytes", rest.len())));
        }
        c.check(entries_max)?;
        Ok(c)
    }
}
