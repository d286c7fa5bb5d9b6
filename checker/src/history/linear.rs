//! Linearizability of registers and compare-and-set registers.
//!
//! A history is linearizable when every operation can be given a single instant between its
//! invocation and its completion such that, taken in that order, the operations are a legal run
//! of a sequential register. Registers on different keys are independent, so the history is
//! split by key and each key is checked on its own (P-compositionality, Horn & Kroening 2015);
//! this is what keeps a many-key history cheap.
//!
//! Each key is checked with the Wing & Gong search as refined by Lowe (2017): the invocations
//! and completions form a doubly linked list in history order; the search repeatedly picks an
//! operation whose invocation precedes the first outstanding completion, applies it to the
//! model, removes it from the list, and backtracks when it meets a completion it cannot satisfy.
//! Every (set of linearized operations, model state) pair it reaches is remembered, so no
//! configuration is explored twice. The set is a bitset, stored compactly in the cache by
//! dropping its leading all-ones words and trailing all-zeros words.
//!
//! Outcomes follow Jepsen: `fail` operations never happened and are removed; `info`
//! operations may take effect at any point after their invocation or never, so they have no
//! completion event and the search succeeds once every `ok` operation is linearized. Reads whose
//! outcome is `info` say nothing and are dropped. The register starts as `nil`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use super::{History, HistoryError, Outcome, Pair, Validity, Value, Verdict};

/// How many search steps pass between two looks at the clock.
const STEPS_PER_CLOCK_CHECK: u64 = 4096;

/// Which sequential object the history is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// `read` and `write`.
    Register,
    /// `read`, `write` and `cas` with value `[old new]`, which succeeds only if the register
    /// holds `old` (as Knossos's cas-register). A `cas` that did not succeed must be `fail`.
    CasRegister,
}

impl Model {
    /// Name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Model::Register => "register",
            Model::CasRegister => "cas-register",
        }
    }
}

/// Limits after which the search gives up and answers [`Validity::Unknown`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    /// Stop when this instant has passed.
    pub deadline: Option<Instant>,
    /// Stop when one key's cache holds more configurations than this (a memory bound).
    pub cache_entries_max: Option<usize>,
}

/// Why a history could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum LinearError {
    /// The history's shape is wrong.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// An operation the model does not have.
    #[error("line {line}: operation {f:?} is not part of the {model} model")]
    UnsupportedOp {
        /// Source line of the invocation.
        line: usize,
        /// The function name.
        f: String,
        /// The model's name.
        model: &'static str,
    },
    /// A cas whose value is not `[old new]`.
    #[error("line {line}: cas value must be [old new], got {value}")]
    BadCasValue {
        /// Source line of the invocation.
        line: usize,
        /// The offending value.
        value: Value,
    },
}

/// The answer for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyResult {
    /// The key.
    pub key: Value,
    /// The answer.
    pub validity: Validity,
    /// Operations of this key that took part in the search.
    pub ops: usize,
    /// For an invalid key: the operation (index into [`LinearResult::pairs`]) whose completion
    /// could not be reached however the earlier operations were ordered.
    pub failing: Option<usize>,
    /// The longest sequence of operations the search managed to linearize (indices into
    /// [`LinearResult::pairs`]); for a valid key, a complete linearization.
    pub longest: Vec<usize>,
    /// The register's value after `longest`.
    pub longest_state: Value,
    /// Distinct configurations the search visited.
    pub configurations: usize,
}

/// The answer for a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearResult {
    /// Invalid if any key is, else unknown if any key is, else valid.
    pub validity: Validity,
    /// The model checked against.
    pub model: Model,
    /// The paired operations the key results point into.
    pub pairs: Vec<Pair>,
    /// One entry per key, in key order. Keys not reached before a budget ran out are absent.
    pub keys: Vec<KeyResult>,
}

impl LinearResult {
    /// The invalid key whose failing operation comes first in the history.
    pub fn first_failure(&self) -> Option<&KeyResult> {
        self.keys
            .iter()
            .filter(|k| k.validity == Validity::Invalid)
            .min_by_key(|k| k.failing.and_then(|i| self.pairs.get(i)).map(|p| p.invoke_pos))
    }

    /// Summarise for the CLI and the HTML report.
    pub fn verdict(&self, history: &History) -> Verdict {
        let checked: usize = self.keys.iter().map(|k| k.ops).sum();
        let mut explanation = format!(
            "{} linearizability: {} ({} keys, {} operations checked)\n",
            self.model.name(),
            self.validity.name(),
            self.keys.len(),
            checked
        );
        let mut highlight = Vec::new();
        let describe = |i: usize| {
            self.pairs.get(i).map_or_else(String::new, |p| {
                format!("{} [line {}]", p.describe(), history.line(p.invoke_pos))
            })
        };
        if let Some(k) = self.first_failure() {
            if let Some(p) = k.failing.and_then(|i| self.pairs.get(i)) {
                highlight.push(p.invoke_pos);
            }
            explanation.push_str(&format!(
                "key {}: no linearization reaches the completion of {}\n",
                k.key,
                k.failing.map(describe).unwrap_or_default()
            ));
            explanation.push_str(&format!(
                "longest partial linearization ({} ops, register then holds {}):\n",
                k.longest.len(),
                k.longest_state
            ));
            for &i in &k.longest {
                explanation.push_str(&format!("  {}\n", describe(i)));
            }
        }
        let invalid = self.keys.iter().filter(|k| k.validity == Validity::Invalid).count();
        if invalid > 1 {
            explanation.push_str(&format!("{invalid} keys are not linearizable in total\n"));
        }
        if self.validity == Validity::Unknown {
            explanation
                .push_str("the time or memory budget ran out before every key was decided\n");
        }
        let linearizations = self
            .keys
            .iter()
            .filter(|k| k.validity != Validity::Valid)
            .map(|k| {
                let positions = k
                    .longest
                    .iter()
                    .filter_map(|&i| self.pairs.get(i).map(|p| p.invoke_pos))
                    .collect();
                (k.key.clone(), positions)
            })
            .collect();
        Verdict { validity: self.validity, explanation, highlight, linearizations }
    }
}

/// Check a history against a register model, key by key.
///
/// ```
/// use dynamo_checker::history::linear::{check, Budget, Model};
/// use dynamo_checker::history::parse::read_history_str;
/// use dynamo_checker::history::Validity;
///
/// let text = "\
/// {:type :invoke, :f :write, :value 1, :process 0}
/// {:type :ok, :f :write, :value 1, :process 0}
/// {:type :invoke, :f :read, :value nil, :process 1}
/// {:type :ok, :f :read, :value nil, :process 1}";
/// let history = read_history_str(text).expect("valid EDN");
/// let result = check(&history, Model::Register, Budget::default()).expect("well formed");
/// // The read began after the write was acknowledged, so it cannot see nil.
/// assert_eq!(result.validity, Validity::Invalid);
/// ```
pub fn check(history: &History, model: Model, budget: Budget) -> Result<LinearResult, LinearError> {
    let pairs = history.pairs()?;
    let mut by_key: BTreeMap<Value, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        by_key.entry(p.key.clone()).or_default().push(i);
    }
    let mut keys = Vec::with_capacity(by_key.len());
    let mut validity = Validity::Valid;
    for (key, indices) in by_key {
        let prepared = prepare(history, &pairs, &indices, model)?;
        let result = search(&prepared, key, budget);
        validity = validity.and(result.validity);
        let out_of_time = result.validity == Validity::Unknown;
        keys.push(result);
        if out_of_time && budget.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    Ok(LinearResult { validity, model, pairs, keys })
}

/// Whether the model has operation `f` (unsupported ones are reported, not skipped).
fn model_has(model: Model, f: &str) -> bool {
    matches!((model, f), (_, "read" | "write") | (Model::CasRegister, "cas"))
}

/// A register operation with values replaced by small integers (0 is `nil`).
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Read(u32),
    Write(u32),
    Cas(u32, u32),
}

impl Cmd {
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Cmd::Read(v) => (v == state).then_some(state),
            Cmd::Write(v) => Some(v),
            Cmd::Cas(old, new) => (old == state).then_some(new),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct SearchOp {
    cmd: Cmd,
    /// Index into the history's pairs.
    pair: usize,
    ok: bool,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    op: u32,
    is_call: bool,
    /// For a call: the list node of its return, if it has one.
    ret: Option<u32>,
}

struct Prepared {
    ops: Vec<SearchOp>,
    events: Vec<Event>,
    values: Vec<Value>,
}

fn prepare(
    history: &History,
    pairs: &[Pair],
    indices: &[usize],
    model: Model,
) -> Result<Prepared, LinearError> {
    let mut interned: HashMap<Value, u32> = HashMap::new();
    let mut values = vec![Value::Nil];
    interned.insert(Value::Nil, 0);
    let mut intern = |v: &Value| -> u32 {
        if let Some(&id) = interned.get(v) {
            return id;
        }
        let id = u32::try_from(values.len()).unwrap_or(u32::MAX);
        values.push(v.clone());
        interned.insert(v.clone(), id);
        id
    };
    // Values some operation depends on: returned by an ok read, or expected by a cas that may
    // have happened. An info write (or cas) of a value nothing depends on can be left out:
    // wherever it might be linearized, no operation before the next write observes it.
    let mut observed: HashSet<Value> = HashSet::new();
    for p in indices.iter().filter_map(|&i| pairs.get(i)) {
        match (p.f.as_str(), p.outcome) {
            ("read", Outcome::Ok) => {
                observed.insert(p.complete_value.clone().unwrap_or(Value::Nil));
            }
            ("cas", Outcome::Ok | Outcome::Info) => {
                if let Value::Vector(items) = p.effective_value() {
                    observed.extend(items.first().cloned());
                }
            }
            _ => {}
        }
    }
    let unobserved_info = |p: &Pair| -> bool {
        if p.outcome != Outcome::Info {
            return false;
        }
        match (p.f.as_str(), p.effective_value()) {
            ("write", v) => !observed.contains(v),
            ("cas", Value::Vector(items)) => items.get(1).is_some_and(|v| !observed.contains(v)),
            _ => false,
        }
    };
    let mut ops = Vec::with_capacity(indices.len());
    // (history position, op, is_call)
    let mut raw_events: Vec<(usize, u32, bool)> = Vec::with_capacity(indices.len() * 2);
    for &i in indices {
        let Some(p) = pairs.get(i) else { continue };
        let line = history.line(p.invoke_pos);
        if p.outcome == Outcome::Fail || (model_has(model, &p.f) && unobserved_info(p)) {
            continue;
        }
        let cmd = match p.f.as_str() {
            "read" if p.outcome == Outcome::Info => continue,
            "read" => Cmd::Read(intern(p.complete_value.as_ref().unwrap_or(&Value::Nil))),
            "write" => Cmd::Write(intern(p.effective_value())),
            "cas" if model == Model::CasRegister => match p.effective_value() {
                Value::Vector(items) if items.len() == 2 => {
                    Cmd::Cas(intern(&items[0]), intern(&items[1]))
                }
                other => return Err(LinearError::BadCasValue { line, value: other.clone() }),
            },
            f => {
                return Err(LinearError::UnsupportedOp {
                    line,
                    f: f.to_string(),
                    model: model.name(),
                })
            }
        };
        let id = u32::try_from(ops.len()).unwrap_or(u32::MAX);
        let ok = p.outcome == Outcome::Ok;
        ops.push(SearchOp { cmd, pair: i, ok });
        raw_events.push((p.invoke_pos, id, true));
        if let (true, Some(pos)) = (ok, p.complete_pos) {
            raw_events.push((pos, id, false));
        }
    }
    raw_events.sort_unstable_by_key(|e| e.0);
    let mut ret_node = vec![None; ops.len()];
    for (node, e) in raw_events.iter().enumerate() {
        if !e.2 {
            if let Some(slot) = ret_node.get_mut(e.1 as usize) {
                *slot = u32::try_from(node).ok();
            }
        }
    }
    let events = raw_events
        .iter()
        .map(|&(_, op, is_call)| Event {
            op,
            is_call,
            ret: if is_call { ret_node.get(op as usize).copied().flatten() } else { None },
        })
        .collect();
    Ok(Prepared { ops, events, values })
}

/// A circular doubly linked list over event nodes `0..n` with sentinel `n`, supporting removal
/// and restoration in reverse order (dancing links).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(n: usize) -> Links {
        let next = (0..=n).map(|i| if i == n { 0 } else { i + 1 }).collect();
        let prev = (0..=n).map(|i| if i == 0 { n } else { i - 1 }).collect();
        let mut links = Links { next, prev };
        if n == 0 {
            links.next[0] = 0;
            links.prev[0] = 0;
        }
        links
    }

    fn remove(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn restore(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[n] = x;
    }
}

/// The linearized-set part of a cache entry: words below `skip` are all ones and words past the
/// stored ones are all zeros, so only the middle is kept.
#[derive(PartialEq, Eq, Hash)]
struct CacheKey {
    skip: u32,
    words: Box<[u64]>,
    state: u32,
}

fn cache_key(bits: &[u64], state: u32) -> CacheKey {
    let skip = bits.iter().position(|&w| w != u64::MAX).unwrap_or(bits.len());
    let end = bits.iter().rposition(|&w| w != 0).map_or(0, |j| j + 1).max(skip);
    CacheKey {
        skip: u32::try_from(skip).unwrap_or(u32::MAX),
        words: bits.get(skip..end).unwrap_or_default().into(),
        state,
    }
}

/// A fast multiplicative hasher; cache keys are not attacker-chosen in a way that matters here.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type FxSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

struct Frame {
    op: u32,
    prev_state: u32,
    node: usize,
    /// Taken without choice: an enabled read that matches the state. If the configuration
    /// with it fails, so does the one without it (a read changes nothing, and taking it
    /// earlier only relaxes real-time constraints), so backtracking skips past it.
    forced: bool,
}

/// The search's mutable state for one key.
struct Search<'a> {
    prep: &'a Prepared,
    links: Links,
    bits: Vec<u64>,
    cache: FxSet<CacheKey>,
    stack: Vec<Frame>,
    state: u32,
    remaining_ok: usize,
}

impl Search<'_> {
    fn head(&self) -> usize {
        self.prep.events.len()
    }

    /// Try to linearize the call at list node `node`; true if it led somewhere new.
    fn take(&mut self, node: usize, forced: bool) -> bool {
        let Some(ev) = self.prep.events.get(node).copied() else { return false };
        let op = ev.op as usize;
        let Some(next_state) = self.prep.ops.get(op).and_then(|o| o.cmd.step(self.state)) else {
            return false;
        };
        let (word, bit) = (op / 64, 1u64 << (op % 64));
        self.bits[word] |= bit;
        if !self.cache.insert(cache_key(&self.bits, next_state)) {
            self.bits[word] &= !bit;
            return false;
        }
        self.stack.push(Frame { op: ev.op, prev_state: self.state, node, forced });
        self.state = next_state;
        self.links.remove(node);
        if let Some(r) = ev.ret {
            self.links.remove(r as usize);
        }
        if self.prep.ops[op].ok {
            self.remaining_ok -= 1;
        }
        true
    }

    /// Undo the top frame; returns it.
    fn undo(&mut self) -> Option<Frame> {
        let frame = self.stack.pop()?;
        let op = frame.op as usize;
        self.bits[op / 64] &= !(1u64 << (op % 64));
        self.state = frame.prev_state;
        if let Some(r) = self.prep.events.get(frame.node).and_then(|e| e.ret) {
            self.links.restore(r as usize);
        }
        self.links.restore(frame.node);
        if self.prep.ops[op].ok {
            self.remaining_ok += 1;
        }
        Some(frame)
    }

    /// An enabled read (its call precedes every outstanding completion) matching the state.
    fn matching_read(&self) -> Option<usize> {
        let mut node = self.links.next[self.head()];
        while let Some(ev) = self.prep.events.get(node) {
            if !ev.is_call {
                return None;
            }
            if let Some(Cmd::Read(v)) = self.prep.ops.get(ev.op as usize).map(|o| o.cmd) {
                if v == self.state {
                    return Some(node);
                }
            }
            node = self.links.next[node];
        }
        None
    }
}

fn search(prep: &Prepared, key: Value, budget: Budget) -> KeyResult {
    let mut s = Search {
        prep,
        links: Links::new(prep.events.len()),
        bits: vec![0u64; prep.ops.len().div_ceil(64)],
        cache: FxSet::default(),
        stack: Vec::new(),
        state: 0,
        remaining_ok: prep.ops.iter().filter(|o| o.ok).count(),
    };
    let head = s.head();
    let mut best: Option<(Vec<u32>, u32, u32)> = None; // (ops, state after, stuck op)
    let mut steps = 0u64;
    let mut node = s.links.next[head];
    let mut fresh = true; // `node` is the head of a configuration not yet scanned
    let validity = loop {
        if s.remaining_ok == 0 {
            break Validity::Valid;
        }
        steps += 1;
        if steps.is_multiple_of(STEPS_PER_CLOCK_CHECK)
            && budget.deadline.is_some_and(|d| Instant::now() >= d)
        {
            break Validity::Unknown;
        }
        if budget.cache_entries_max.is_some_and(|m| s.cache.len() > m) {
            break Validity::Unknown;
        }
        let mut stuck = false;
        if fresh {
            fresh = false;
            if let Some(read) = s.matching_read() {
                if s.take(read, true) {
                    node = s.links.next[head];
                    fresh = true;
                    continue;
                }
                // Already explored with this read taken, and that failed: so does this one.
                stuck = true;
            }
        }
        let event = prep.events.get(node).copied();
        if !stuck {
            if event.is_some_and(|e| e.is_call) {
                if s.take(node, false) {
                    node = s.links.next[head];
                    fresh = true;
                } else {
                    node = s.links.next[node];
                }
                continue;
            }
            // A completion (or the end of the list) that nothing linearized so far allows.
            if best.as_ref().is_none_or(|b| s.stack.len() > b.0.len()) {
                let stuck_op = event.map_or(u32::MAX, |e| e.op);
                best = Some((s.stack.iter().map(|f| f.op).collect(), s.state, stuck_op));
            }
        }
        // Backtrack past forced frames to the latest real choice.
        let resumed = loop {
            match s.undo() {
                None => break None,
                Some(frame) if frame.forced => continue,
                Some(frame) => break Some(frame.node),
            }
        };
        let Some(resume) = resumed else { break Validity::Invalid };
        node = s.links.next[resume];
    };
    let stack = &s.stack;
    let state = s.state;
    let cache_len = s.cache.len();
    let (longest, longest_state, failing) = match (validity, best) {
        (Validity::Valid, _) | (_, None) => (stack.iter().map(|f| f.op).collect(), state, None),
        (_, Some((ops, st, stuck))) => {
            let failing = prep.ops.get(stuck as usize).map(|o| o.pair);
            (ops, st, if validity == Validity::Invalid { failing } else { None })
        }
    };
    KeyResult {
        key,
        validity,
        ops: prep.ops.len(),
        failing,
        longest: longest.iter().filter_map(|&o| prep.ops.get(o as usize).map(|x| x.pair)).collect(),
        longest_state: prep.values.get(longest_state as usize).cloned().unwrap_or(Value::Nil),
        configurations: cache_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};

    fn inv(p: i64, f: &str, v: Value) -> Op {
        Op::new(p, OpType::Invoke, f, v, 0, 0)
    }
    fn done(p: i64, kind: OpType, f: &str, v: Value) -> Op {
        Op::new(p, kind, f, v, 0, 0)
    }
    fn int(i: i64) -> Value {
        Value::Int(i)
    }
    fn pair(a: i64, b: i64) -> Value {
        Value::Vector(vec![int(a), int(b)])
    }
    fn run(ops: Vec<Op>, model: Model) -> LinearResult {
        check(&History::new(ops), model, Budget::default()).expect("well-formed history")
    }

    #[test]
    fn empty_history_is_valid() {
        assert_eq!(run(vec![], Model::Register).validity, Validity::Valid);
    }

    #[test]
    fn read_of_initial_nil_is_valid() {
        let h = vec![inv(0, "read", Value::Nil), done(0, OpType::Ok, "read", Value::Nil)];
        assert_eq!(run(h, Model::Register).validity, Validity::Valid);
    }

    #[test]
    fn sequential_stale_read_is_invalid() {
        use OpType::Ok;
        let h = vec![
            inv(0, "write", int(1)),
            done(0, Ok, "write", int(1)),
            inv(0, "write", int(2)),
            done(0, Ok, "write", int(2)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
        ];
        let r = run(h, Model::Register);
        assert_eq!(r.validity, Validity::Invalid);
        let k = r.first_failure().expect("one invalid key");
        assert_eq!(k.failing.map(|i| r.pairs[i].f.as_str()), Some("read"));
        assert_eq!(k.longest.len(), 2);
        assert_eq!(k.longest_state, int(2));
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        use OpType::Ok;
        let h = vec![
            inv(0, "write", int(1)),
            inv(1, "read", Value::Nil),
            inv(2, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
            done(2, Ok, "read", Value::Nil),
            done(0, Ok, "write", int(1)),
        ];
        assert_eq!(run(h, Model::Register).validity, Validity::Valid);
    }

    #[test]
    fn reads_cannot_flip_back() {
        use OpType::Ok;
        // The write is concurrent with both reads, but once a read has seen 1 a later read
        // cannot see nil again.
        let h = vec![
            inv(0, "write", int(1)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
            inv(2, "read", Value::Nil),
            done(2, Ok, "read", Value::Nil),
            done(0, Ok, "write", int(1)),
        ];
        assert_eq!(run(h, Model::Register).validity, Validity::Invalid);
    }

    #[test]
    fn info_write_may_take_effect_late() {
        use OpType::{Info, Ok};
        let h = vec![
            inv(0, "write", int(1)),
            done(0, Info, "write", int(1)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", Value::Nil),
            inv(1, "write", int(2)),
            done(1, Ok, "write", int(2)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
        ];
        assert_eq!(run(h.clone(), Model::Register).validity, Validity::Valid);
        // ...or never.
        let mut never = h;
        never.truncate(6);
        never.push(inv(1, "read", Value::Nil));
        never.push(done(1, Ok, "read", int(2)));
        assert_eq!(run(never, Model::Register).validity, Validity::Valid);
    }

    #[test]
    fn failed_write_never_happened() {
        use OpType::{Fail, Ok};
        let h = vec![
            inv(0, "write", int(1)),
            done(0, Fail, "write", int(1)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
        ];
        assert_eq!(run(h, Model::Register).validity, Validity::Invalid);
    }

    #[test]
    fn cas_chain_is_valid_and_broken_chain_is_not() {
        use OpType::{Fail, Ok};
        let h = vec![
            inv(0, "write", int(0)),
            done(0, Ok, "write", int(0)),
            inv(1, "cas", pair(0, 1)),
            done(1, Ok, "cas", pair(0, 1)),
            inv(2, "cas", pair(0, 5)),
            done(2, Fail, "cas", pair(0, 5)),
            inv(0, "cas", pair(1, 2)),
            done(0, Ok, "cas", pair(1, 2)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(2)),
        ];
        assert_eq!(run(h.clone(), Model::CasRegister).validity, Validity::Valid);
        let mut broken = h;
        broken[6] = inv(0, "cas", pair(0, 2));
        broken[7] = done(0, Ok, "cas", pair(0, 2));
        let r = run(broken, Model::CasRegister);
        assert_eq!(r.validity, Validity::Invalid);
        let k = r.first_failure().expect("invalid key");
        assert_eq!(k.failing.map(|i| r.pairs[i].f.as_str()), Some("cas"));
    }

    #[test]
    fn info_cas_takes_effect_late() {
        use OpType::{Info, Ok};
        let h = vec![
            inv(0, "cas", pair(0, 1)), // nil -> would need 0 first
            inv(1, "write", int(0)),
            done(1, Ok, "write", int(0)),
            done(0, Info, "cas", Value::Nil),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(0)),
            inv(1, "read", Value::Nil),
            done(1, Ok, "read", int(1)),
        ];
        assert_eq!(run(h, Model::CasRegister).validity, Validity::Valid);
    }

    #[test]
    fn keys_are_independent() {
        use OpType::Ok;
        let k = |s: &str| Value::Str(s.into());
        let h = vec![
            inv(0, "write", int(1)).with_key(k("a")),
            done(0, Ok, "write", int(1)).with_key(k("a")),
            inv(1, "read", Value::Nil).with_key(k("b")),
            done(1, Ok, "read", Value::Nil).with_key(k("b")),
        ];
        assert_eq!(run(h.clone(), Model::Register).validity, Validity::Valid);
        let mut bad = h;
        bad[3] = done(1, Ok, "read", int(1)).with_key(k("b"));
        let r = run(bad, Model::Register);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.first_failure().map(|k| k.key.clone()), Some(k("b")));
    }

    #[test]
    fn cas_is_rejected_by_plain_register() {
        let h = vec![inv(0, "cas", pair(0, 1)), done(0, OpType::Ok, "cas", pair(0, 1))];
        let err = check(&History::new(h), Model::Register, Budget::default());
        assert!(matches!(err, Err(LinearError::UnsupportedOp { line: 1, .. })));
    }

    #[test]
    fn memory_budget_gives_unknown() {
        use OpType::Ok;
        let mut h = Vec::new();
        for p in 0..6 {
            h.push(inv(p, "write", int(p)));
        }
        for p in 0..6 {
            h.push(done(p, Ok, "write", int(p)));
        }
        h.push(inv(0, "read", Value::Nil));
        h.push(done(0, Ok, "read", int(99)));
        let budget = Budget { deadline: None, cache_entries_max: Some(3) };
        let r = check(&History::new(h), Model::Register, budget).expect("well-formed");
        assert_eq!(r.validity, Validity::Unknown);
    }
}
