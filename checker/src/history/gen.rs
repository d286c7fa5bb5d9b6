//! Synthetic histories for tests and benchmarks.
//!
//! Each generator runs concurrent client processes against a simulated correct object: every
//! operation is invoked, takes effect at one instant inside its invocation window (or, for some
//! `info` outcomes, later or never), and completes. The resulting histories are valid by
//! construction, which is what the soundness tests need; tests then break them on purpose.
//!
//! Written values are unique integers (a global counter), so a test can tell exactly which write
//! a read observed. Generation is deterministic given the seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::{Op, OpType, Process, Value};

/// SplitMix64: a tiny, fast, seedable generator, so histories do not depend on an RNG crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent / 100`.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// What the register workload generator produces.
#[derive(Clone, Debug)]
pub struct RegisterGen {
    /// Seed for the generator.
    pub seed: u64,
    /// Number of operations (invocations) to generate.
    pub ops: usize,
    /// Number of keys, chosen uniformly per operation.
    pub keys: usize,
    /// Number of concurrent client processes.
    pub processes: usize,
    /// Percentage of operations whose outcome is `info`.
    pub info_percent: u32,
    /// Whether to generate compare-and-set operations besides reads and writes.
    pub cas: bool,
}

impl Default for RegisterGen {
    fn default() -> Self {
        RegisterGen { seed: 0, ops: 100, keys: 1, processes: 5, info_percent: 5, cas: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Invoke,
    Apply,
    Complete,
}

#[derive(Clone, Debug)]
struct Pending {
    f: &'static str,
    key: i64,
    arg: Value,
    info: bool,
    takes_effect: bool,
    result: Value,
    succeeded: bool,
}

/// A time-ordered event queue of (time, tie-breaker, phase, slot, operation id).
type Queue = BinaryHeap<Reverse<(i64, u64, Phase, usize, usize)>>;

/// Generate a linearizable register (or cas-register) history with keys in the `key` field.
pub fn register_history(cfg: &RegisterGen) -> Vec<Op> {
    let mut rng = Rng::new(cfg.seed);
    let slots = cfg.processes.max(1);
    let keys = cfg.keys.max(1) as u64;
    let mut registers: BTreeMap<i64, Value> = BTreeMap::new();
    let mut process: Vec<i64> = (0..slots as i64).collect();
    let mut arena: Vec<Pending> = Vec::with_capacity(cfg.ops);
    let mut queue = Queue::new();
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(cfg.ops * 2);
    let mut counter = 0i64;
    for slot in 0..slots {
        queue.push(Reverse((rng.below(100) as i64, seq, Phase::Invoke, slot, 0)));
        seq += 1;
    }
    while let Some(Reverse((t, _, phase, slot, id))) = queue.pop() {
        let index = out.len() as i64;
        let p = process[slot];
        match phase {
            Phase::Invoke => {
                if arena.len() >= cfg.ops {
                    continue;
                }
                let key = rng.below(keys) as i64;
                let roll = rng.below(100);
                let (f, arg) = if roll < 40 {
                    ("read", Value::Nil)
                } else if roll < 70 || !cfg.cas {
                    counter += 1;
                    ("write", Value::Int(counter))
                } else {
                    counter += 1;
                    let current = registers.get(&key).cloned().unwrap_or(Value::Nil);
                    let old = match rng.below(3) {
                        0 | 1 => current,
                        _ => Value::Int(counter - 1 - rng.below(5) as i64),
                    };
                    ("cas", Value::Vector(vec![old, Value::Int(counter)]))
                };
                let info = rng.chance(cfg.info_percent);
                let takes_effect = !info || rng.chance(50);
                let late = info && takes_effect && rng.chance(50);
                out.push(
                    Op::new(p, OpType::Invoke, f, arg.clone(), t * 1000, index)
                        .with_key(Value::Int(key)),
                );
                let id = arena.len();
                arena.push(Pending {
                    f,
                    key,
                    arg,
                    info,
                    takes_effect,
                    result: Value::Nil,
                    succeeded: false,
                });
                let apply_at = t + 1 + rng.below(50) as i64;
                let complete_at = apply_at + 1 + rng.below(50) as i64;
                let apply_at =
                    if late { complete_at + 1 + rng.below(200) as i64 } else { apply_at };
                queue.push(Reverse((apply_at, seq, Phase::Apply, slot, id)));
                queue.push(Reverse((complete_at, seq + 1, Phase::Complete, slot, id)));
                seq += 2;
            }
            Phase::Apply => {
                let Some(op) = arena.get_mut(id) else { continue };
                if !op.takes_effect {
                    continue;
                }
                let reg = registers.entry(op.key).or_insert(Value::Nil);
                match (op.f, &op.arg) {
                    ("read", _) => op.result = reg.clone(),
                    ("write", v) => *reg = v.clone(),
                    ("cas", Value::Vector(ov)) => {
                        if let [old, new] = ov.as_slice() {
                            if reg == old {
                                *reg = new.clone();
                                op.succeeded = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Phase::Complete => {
                let Some(op) = arena.get(id) else { continue };
                let (kind, value) = if op.info {
                    let v = if op.f == "read" { Value::Nil } else { op.arg.clone() };
                    (OpType::Info, v)
                } else {
                    match op.f {
                        "read" => (OpType::Ok, op.result.clone()),
                        "cas" if !op.succeeded => (OpType::Fail, op.arg.clone()),
                        _ => (OpType::Ok, op.arg.clone()),
                    }
                };
                out.push(
                    Op::new(p, kind, op.f, value, t * 1000, index).with_key(Value::Int(op.key)),
                );
                if op.info {
                    // Jepsen retires a process whose operation crashed and starts a fresh one.
                    process[slot] += slots as i64;
                }
                queue.push(Reverse((t + 1 + rng.below(20) as i64, seq, Phase::Invoke, slot, 0)));
                seq += 1;
            }
        }
    }
    out
}

/// Shape of the set, sibling and convergence workloads.
#[derive(Clone, Debug)]
pub struct WorkloadGen {
    /// Seed for the generator.
    pub seed: u64,
    /// Number of operations (invocations) to generate.
    pub ops: usize,
    /// Number of keys.
    pub keys: usize,
    /// Number of concurrent client processes.
    pub processes: usize,
    /// Percentage of operations whose outcome is `info`.
    pub info_percent: u32,
    /// Percentage of operations that are reads.
    pub read_percent: u32,
}

impl Default for WorkloadGen {
    fn default() -> Self {
        WorkloadGen { seed: 0, ops: 100, keys: 1, processes: 5, info_percent: 5, read_percent: 30 }
    }
}

/// The per-key object a workload simulates.
trait Object {
    /// Apply a write of `v`; `concurrent` says whether it should keep earlier values as siblings.
    fn write(&mut self, v: i64, concurrent: bool);
    /// What a read returns now.
    fn read(&self) -> Value;
}

/// A grow-only set.
#[derive(Default)]
struct GrowSet(BTreeSet<i64>);

impl Object for GrowSet {
    fn write(&mut self, v: i64, _: bool) {
        self.0.insert(v);
    }
    fn read(&self) -> Value {
        Value::Set(self.0.iter().map(|&v| Value::Int(v)).collect())
    }
}

/// A register holding siblings: a write either replaces everything or joins as a sibling.
#[derive(Default)]
struct SiblingRegister(BTreeSet<i64>);

impl Object for SiblingRegister {
    fn write(&mut self, v: i64, concurrent: bool) {
        if !concurrent {
            self.0.clear();
        }
        self.0.insert(v);
    }
    fn read(&self) -> Value {
        Value::Vector(self.0.iter().map(|&v| Value::Int(v)).collect())
    }
}

/// Run clients against one object per key. Returns the history and, per key, each write's
/// (value, invoke position, completion position or `None` if its outcome was info).
fn run_workload<O: Object + Default>(
    cfg: &WorkloadGen,
    write_f: &'static str,
    read_f: &'static str,
) -> Vec<Op> {
    let mut rng = Rng::new(cfg.seed);
    let slots = cfg.processes.max(1);
    let keys = cfg.keys.max(1) as u64;
    let mut objects: BTreeMap<i64, O> = BTreeMap::new();
    let mut process: Vec<i64> = (0..slots as i64).collect();
    // (f, key, value, info, takes effect, read result)
    let mut arena: Vec<(&'static str, i64, i64, bool, bool, Value)> = Vec::new();
    let mut queue = Queue::new();
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(cfg.ops * 2);
    for slot in 0..slots {
        queue.push(Reverse((rng.below(100) as i64, seq, Phase::Invoke, slot, 0)));
        seq += 1;
    }
    while let Some(Reverse((t, _, phase, slot, id))) = queue.pop() {
        let index = out.len() as i64;
        let p = process[slot];
        match phase {
            Phase::Invoke => {
                if arena.len() >= cfg.ops {
                    continue;
                }
                let key = rng.below(keys) as i64;
                let is_read = rng.chance(cfg.read_percent);
                let value = arena.len() as i64 + 1;
                let (f, arg) =
                    if is_read { (read_f, Value::Nil) } else { (write_f, Value::Int(value)) };
                let info = !is_read && rng.chance(cfg.info_percent);
                let takes_effect = !info || rng.chance(50);
                out.push(
                    Op::new(p, OpType::Invoke, f, arg, t * 1000, index).with_key(Value::Int(key)),
                );
                arena.push((f, key, value, info, takes_effect, Value::Nil));
                let id = arena.len() - 1;
                let apply_at = t + 1 + rng.below(50) as i64;
                queue.push(Reverse((apply_at, seq, Phase::Apply, slot, id)));
                queue.push(Reverse((
                    apply_at + 1 + rng.below(50) as i64,
                    seq + 1,
                    Phase::Complete,
                    slot,
                    id,
                )));
                seq += 2;
            }
            Phase::Apply => {
                let concurrent = rng.chance(20);
                let Some(op) = arena.get_mut(id) else { continue };
                let obj = objects.entry(op.1).or_default();
                if op.0 == read_f {
                    op.5 = obj.read();
                } else if op.4 {
                    obj.write(op.2, concurrent);
                }
            }
            Phase::Complete => {
                let Some(op) = arena.get(id) else { continue };
                let (kind, value) = match (op.0 == read_f, op.3) {
                    (true, _) => (OpType::Ok, op.5.clone()),
                    (false, true) => (OpType::Info, Value::Int(op.2)),
                    (false, false) => (OpType::Ok, Value::Int(op.2)),
                };
                out.push(Op::new(p, kind, op.0, value, t * 1000, index).with_key(Value::Int(op.1)));
                if op.3 {
                    process[slot] += slots as i64;
                }
                queue.push(Reverse((t + 1 + rng.below(20) as i64, seq, Phase::Invoke, slot, 0)));
                seq += 1;
            }
        }
    }
    out
}

/// A set-full history: `add` unique elements and `read` the whole set, per key.
pub fn set_history(cfg: &WorkloadGen) -> Vec<Op> {
    run_workload::<GrowSet>(cfg, "add", "read")
}

/// A sibling-register history: `put` unique values and `get` the siblings, per key.
pub fn sibling_history(cfg: &WorkloadGen) -> Vec<Op> {
    run_workload::<SiblingRegister>(cfg, "put", "get")
}

/// A convergence history: `put`s to a sibling register, then one `final-read` per node per key
/// returning what a converged store keeps (the values no later put superseded).
pub fn convergence_history(cfg: &WorkloadGen, nodes: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = run_workload::<SiblingRegister>(
        &WorkloadGen { read_percent: 0, ..cfg.clone() },
        "put",
        "get",
    );
    let history = super::History::new(ops.clone());
    let pairs = history.pairs().unwrap_or_default();
    let mut by_key: BTreeMap<Value, Vec<&super::Pair>> = BTreeMap::new();
    for p in &pairs {
        by_key.entry(p.key.clone()).or_default().push(p);
    }
    let mut t = ops.last().map_or(0, |op| op.time_ns) + 1000;
    let first_process = process_after(&ops);
    for (key, puts) in by_key {
        // Keep every put that took effect or may have, unless an acknowledged put began after it
        // completed: info puts are kept too (a converged store may hold them).
        let last_acked_invoke =
            puts.iter().filter(|p| p.outcome == super::Outcome::Ok).map(|p| p.invoke_pos).max();
        let kept: BTreeSet<Value> = puts
            .iter()
            .filter(|p| match (p.outcome, last_acked_invoke, p.complete_pos) {
                (super::Outcome::Ok, Some(last), Some(done)) => last < done,
                _ => true,
            })
            .map(|p| p.invoke_value.clone())
            .collect();
        let siblings = Value::Vector(kept.into_iter().collect());
        for node in 0..nodes.max(1) {
            let p = first_process + node as i64;
            let index = ops.len() as i64;
            let mut invoke = Op::new(p, OpType::Invoke, "final-read", Value::Nil, t, index)
                .with_key(key.clone());
            invoke.node = Some(Value::Str(format!("n{}", node + 1)));
            ops.push(invoke);
            ops.push(
                Op::new(p, OpType::Ok, "final-read", siblings.clone(), t + 500, index + 1)
                    .with_key(key.clone()),
            );
            t += 1000;
        }
    }
    ops
}

fn process_after(ops: &[Op]) -> i64 {
    ops.iter()
        .filter_map(|op| match op.process {
            Process::Client(p) => Some(p),
            Process::Named(_) => None,
        })
        .max()
        .map_or(0, |p| p + 1)
}
