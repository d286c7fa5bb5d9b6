//! Jepsen-style histories and the checkers that judge them.
//!
//! A cluster test records what its clients saw as a list of operations: each client process
//! *invokes* an operation and later learns that it completed (`ok`), definitely did not happen
//! (`fail`), or may or may not have happened (`info`, for example after a timeout). This module
//! holds that vocabulary ([`Op`], [`OpType`], [`Value`], [`History`]), pairs invocations with their
//! completions ([`History::pairs`]) and hosts the checkers:
//!
//! - [`linear`]: linearizability of registers and compare-and-set registers, per key;
//! - [`set_full`]: Jepsen's set-full analysis (lost, stale and never-read elements);
//! - [`convergence`]: after faults heal, every node's final read agrees and keeps every
//!   acknowledged write that nothing later superseded (Dynamo §4.4 eventual consistency);
//! - [`siblings`]: reads of a sibling register return only written values and, under a strict
//!   quorum (R + W > N, Dynamo §4.5), never go back past an acknowledged put.
//!
//! [`parse`] reads and writes JSON lines and Jepsen's EDN, [`report`] renders HTML timelines, and
//! [`gen`] makes synthetic histories for tests and benchmarks.

pub mod convergence;
pub mod gen;
pub mod linear;
pub mod parse;
pub mod report;
pub mod set_full;
pub mod siblings;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A data value as it appears in a history: the subset of EDN that Jepsen histories use.
///
/// JSON maps onto it as well: `null` is [`Value::Nil`], arrays are vectors, objects are maps.
/// Keywords have no JSON form and are written as plain strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// EDN `nil`, JSON `null`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A floating-point number, ordered and hashed by its bits so values stay comparable.
    Float(Float),
    /// A string.
    Str(String),
    /// An EDN keyword, stored without its leading colon.
    Keyword(String),
    /// A vector (EDN lists are read as vectors too).
    Vector(Vec<Value>),
    /// An EDN set, kept sorted and without duplicates.
    Set(Vec<Value>),
    /// A map, as key-value pairs in the order they were read.
    Map(Vec<(Value, Value)>),
}

/// An `f64` with a total order, so that [`Value`] can be a map key and a model state.
#[derive(Clone, Copy, Debug)]
pub struct Float(pub f64);

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Float {}
impl PartialOrd for Float {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Float {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl Hash for Float {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl Value {
    /// Build a set value: sorts and removes duplicates so equal sets compare equal.
    pub fn set(mut items: Vec<Value>) -> Value {
        items.sort();
        items.dedup();
        Value::Set(items)
    }

    /// The elements of a collection value (vector or set); `nil` has none; any other value is a
    /// collection of itself. Used by checkers whose reads return several values.
    pub fn elements(&self) -> Vec<Value> {
        match self {
            Value::Nil => Vec::new(),
            Value::Vector(items) | Value::Set(items) => items.clone(),
            other => vec![other.clone()],
        }
    }

    /// The integer inside, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text of a string or keyword.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Keyword(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Writes the value as EDN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        parse::write_edn_value(self, f)
    }
}

/// How an operation's record relates to its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpType {
    /// The client started the operation.
    Invoke,
    /// The operation completed and took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The outcome is unknown: it may take effect at any point after its invocation, or never.
    Info,
}

impl OpType {
    /// The name used in histories (`invoke`, `ok`, `fail`, `info`).
    pub fn name(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }

    /// Parse a type name; `None` if it is not one of the four.
    pub fn from_name(name: &str) -> Option<OpType> {
        match name {
            "invoke" => Some(OpType::Invoke),
            "ok" => Some(OpType::Ok),
            "fail" => Some(OpType::Fail),
            "info" => Some(OpType::Info),
            _ => None,
        }
    }
}

/// Who performed an operation: a numbered client process, or a named one such as `:nemesis`.
///
/// Named processes are bookkeeping (fault injection) and are ignored by the checkers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A client process.
    Client(i64),
    /// A named process such as the nemesis.
    Named(String),
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Named(n) => write!(f, ":{n}"),
        }
    }
}

/// One record of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The process that performed it.
    pub process: Process,
    /// Invocation or one of the three completions.
    pub kind: OpType,
    /// The function, e.g. `read`, `write`, `cas`, `add`.
    pub f: String,
    /// The key, for keyed workloads; see [`KeyMode`] for keys carried inside the value.
    pub key: Option<Value>,
    /// The argument (on invocation) or result (on completion).
    pub value: Value,
    /// Wall-clock time in nanoseconds since the test began.
    pub time_ns: i64,
    /// The position Jepsen assigned to the record.
    pub index: i64,
    /// For final reads: the node that answered.
    pub node: Option<Value>,
    /// An error description some clients attach to `fail` and `info` completions.
    pub error: Option<Value>,
}

impl Op {
    /// A client operation with no key, node or error; `index` and `time_ns` as given.
    pub fn new(process: i64, kind: OpType, f: &str, value: Value, time_ns: i64, index: i64) -> Op {
        Op {
            process: Process::Client(process),
            kind,
            f: f.to_string(),
            key: None,
            value,
            time_ns,
            index,
            node: None,
            error: None,
        }
    }

    /// The same operation with a key.
    pub fn with_key(mut self, key: Value) -> Op {
        self.key = Some(key);
        self
    }
}

/// A problem with the shape of a history, found while pairing invocations with completions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A completion arrived for a process with no open invocation.
    #[error("line {line}: {kind} completion for process {process} without an invocation")]
    CompletionWithoutInvocation {
        /// Source line (1-based).
        line: usize,
        /// The process.
        process: Process,
        /// Which completion type.
        kind: &'static str,
    },
    /// A process invoked again while its previous invocation was still open.
    #[error("line {line}: process {process} invoked while its invocation on line {open_line} is still open")]
    DoubleInvoke {
        /// Source line (1-based).
        line: usize,
        /// The process.
        process: Process,
        /// Line of the invocation still open.
        open_line: usize,
    },
    /// A process invoked again after an `info` completion; Jepsen retires such processes.
    #[error("line {line}: process {process} invoked after its info completion on line {info_line}; a process that crashed must not invoke again")]
    InvokeAfterInfo {
        /// Source line (1-based).
        line: usize,
        /// The process.
        process: Process,
        /// Line of the info completion.
        info_line: usize,
    },
    /// A completion's `f` differs from its invocation's.
    #[error("line {line}: completion f {got:?} does not match invocation f {expected:?}")]
    MismatchedF {
        /// Source line (1-based).
        line: usize,
        /// The invocation's function.
        expected: String,
        /// The completion's function.
        got: String,
    },
}

/// What finally became of an invoked operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Completed and took effect.
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// Unknown: an `info` completion, or no completion before the history ended.
    Info,
}

impl Outcome {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// An invocation joined with its completion: the unit every checker works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The client process.
    pub process: i64,
    /// The function.
    pub f: String,
    /// The key (from the invocation); `Nil` for unkeyed histories.
    pub key: Value,
    /// What the invocation carried.
    pub invoke_value: Value,
    /// What the completion carried, if there was a completion.
    pub complete_value: Option<Value>,
    /// The outcome.
    pub outcome: Outcome,
    /// Position of the invocation in the history (0-based).
    pub invoke_pos: usize,
    /// Position of the completion, or `None` when the history ended first.
    pub complete_pos: Option<usize>,
    /// Invocation time.
    pub invoke_time_ns: i64,
    /// Completion time, if any.
    pub complete_time_ns: Option<i64>,
    /// For final reads: the node that answered (from either record).
    pub node: Option<Value>,
}

impl Pair {
    /// The value that describes the operation's effect: the completion's value for an `ok`
    /// completion that carries one, otherwise the invocation's.
    pub fn effective_value(&self) -> &Value {
        match (&self.outcome, &self.complete_value) {
            (Outcome::Ok, Some(v)) if *v != Value::Nil || self.f == "read" => v,
            _ => &self.invoke_value,
        }
    }

    /// Short human description, e.g. `process 3 write 5 (ok)`.
    pub fn describe(&self) -> String {
        let value = match self.outcome {
            Outcome::Ok => self.effective_value().to_string(),
            _ => self.invoke_value.to_string(),
        };
        let key = match &self.key {
            Value::Nil => String::new(),
            k => format!(" key {k}"),
        };
        format!("process {} {} {}{} ({})", self.process, self.f, value, key, self.outcome.name())
    }
}

/// Where a keyed workload keeps its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// `Field` if any record has a `key`; else `Tuple` if every client invocation's value is a
    /// two-element vector (Jepsen's independent checker); else `None`.
    #[default]
    Auto,
    /// Keys are in the `key` field; records without one share the `nil` key.
    Field,
    /// Values are `[key value]` tuples.
    Tuple,
    /// The whole history is one key.
    None,
}

/// A sequence of operations, with the source line of each so errors can point at the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
    lines: Vec<usize>,
}

impl History {
    /// A history built in memory; op `i` is reported as line `i + 1`.
    pub fn new(ops: Vec<Op>) -> History {
        let lines = (1..=ops.len()).collect();
        History { ops, lines }
    }

    /// A history whose ops came from the given source lines (same length as `ops`).
    pub fn with_lines(ops: Vec<Op>, lines: Vec<usize>) -> History {
        debug_assert_eq!(ops.len(), lines.len());
        History { ops, lines }
    }

    /// The operations in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if there are no records.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Source line (1-based) of the record at `pos`.
    pub fn line(&self, pos: usize) -> usize {
        self.lines.get(pos).copied().unwrap_or(pos + 1)
    }

    /// Resolve where keys live and move tuple keys into the `key` field.
    pub fn keyed(mut self, mode: KeyMode) -> History {
        let mode = match mode {
            KeyMode::Auto => self.detect_key_mode(),
            m => m,
        };
        if mode == KeyMode::Tuple {
            for op in &mut self.ops {
                if let (Process::Client(_), Value::Vector(items)) = (&op.process, &op.value) {
                    if let [k, v] = items.as_slice() {
                        let (k, v) = (k.clone(), v.clone());
                        op.key = Some(k);
                        op.value = v;
                    }
                }
            }
        }
        if mode == KeyMode::None {
            for op in &mut self.ops {
                op.key = None;
            }
        }
        self
    }

    fn detect_key_mode(&self) -> KeyMode {
        if self.ops.iter().any(|op| op.key.is_some()) {
            return KeyMode::Field;
        }
        let mut invocations =
            self.ops.iter().filter(|op| op.kind == OpType::Invoke && is_client(op)).peekable();
        if invocations.peek().is_none() {
            return KeyMode::None;
        }
        let all_tuples =
            invocations.all(|op| matches!(&op.value, Value::Vector(items) if items.len() == 2));
        if all_tuples {
            KeyMode::Tuple
        } else {
            KeyMode::None
        }
    }

    /// Join every client invocation with its completion, checking the history's shape.
    ///
    /// Named processes (the nemesis) are skipped. An invocation with no completion before the
    /// end of the history is treated as `info`. Pairs come out in invocation order.
    pub fn pairs(&self) -> Result<Vec<Pair>, HistoryError> {
        let mut pairs: Vec<Pair> = Vec::new();
        let mut open: BTreeMap<i64, usize> = BTreeMap::new();
        let mut retired: BTreeMap<i64, usize> = BTreeMap::new();
        for (pos, op) in self.ops.iter().enumerate() {
            let Process::Client(process) = op.process else { continue };
            let line = self.line(pos);
            match op.kind {
                OpType::Invoke => {
                    if let Some(&info_pos) = retired.get(&process) {
                        let info_line = self.line(info_pos);
                        return Err(HistoryError::InvokeAfterInfo {
                            line,
                            process: op.process.clone(),
                            info_line,
                        });
                    }
                    if let Some(&open_idx) = open.get(&process) {
                        let open_line = pairs.get(open_idx).map_or(0, |p| self.line(p.invoke_pos));
                        return Err(HistoryError::DoubleInvoke {
                            line,
                            process: op.process.clone(),
                            open_line,
                        });
                    }
                    open.insert(process, pairs.len());
                    pairs.push(Pair {
                        process,
                        f: op.f.clone(),
                        key: op.key.clone().unwrap_or(Value::Nil),
                        invoke_value: op.value.clone(),
                        complete_value: None,
                        outcome: Outcome::Info,
                        invoke_pos: pos,
                        complete_pos: None,
                        invoke_time_ns: op.time_ns,
                        complete_time_ns: None,
                        node: op.node.clone(),
                    });
                }
                OpType::Ok | OpType::Fail | OpType::Info => {
                    let Some(idx) = open.remove(&process) else {
                        return Err(HistoryError::CompletionWithoutInvocation {
                            line,
                            process: op.process.clone(),
                            kind: op.kind.name(),
                        });
                    };
                    let Some(pair) = pairs.get_mut(idx) else { continue };
                    if pair.f != op.f {
                        return Err(HistoryError::MismatchedF {
                            line,
                            expected: pair.f.clone(),
                            got: op.f.clone(),
                        });
                    }
                    pair.outcome = match op.kind {
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        _ => Outcome::Info,
                    };
                    pair.complete_value = Some(op.value.clone());
                    pair.complete_pos = Some(pos);
                    pair.complete_time_ns = Some(op.time_ns);
                    if op.node.is_some() {
                        pair.node = op.node.clone();
                    }
                    if op.kind == OpType::Info {
                        retired.insert(process, pos);
                    }
                }
            }
        }
        Ok(pairs)
    }
}

fn is_client(op: &Op) -> bool {
    matches!(op.process, Process::Client(_))
}

/// The three answers a checker can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Validity {
    /// The history satisfies the property.
    Valid,
    /// The history violates it; the result says where.
    Invalid,
    /// The checker ran out of its time or memory budget before deciding.
    Unknown,
}

impl Validity {
    /// Combine per-key answers: any invalid wins, then any unknown.
    pub fn and(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::Invalid, _) | (_, Validity::Invalid) => Validity::Invalid,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::Valid,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unknown => "unknown",
        }
    }
}

/// A checker's answer in the form the CLI and the HTML report need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Valid, invalid or unknown.
    pub validity: Validity,
    /// A human explanation, one finding per line.
    pub explanation: String,
    /// History positions (of invocations) to highlight as failing.
    pub highlight: Vec<usize>,
    /// For linearizability: per key, the longest partial linearization as invocation positions.
    pub linearizations: Vec<(Value, Vec<usize>)>,
}
