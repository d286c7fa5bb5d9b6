//! Validity of a sibling register: what a Dynamo `get` may return (Dynamo §4.4, §4.5).
//!
//! Clients `put` (or `write`) unique values and `get` (or `read`) the set of siblings the store
//! holds for a key: a vector or set of values, a scalar for a single value, `nil` when absent.
//!
//! Two rules are checked:
//!
//! 1. **No phantoms.** Every value a read returns was written by a put to the same key that was
//!    invoked before the read completed and did not fail.
//! 2. **No stale reads under a strict quorum.** When the run is declared strict-quorum with
//!    R + W > N, every read quorum intersects every write quorum, so a read that begins after an
//!    acknowledged put `p` must return `p`'s value or a value whose put was not over before `p`
//!    began. For sloppy runs, which the paper shows may return older versions, such reads are
//!    reported but do not make the history invalid.

use std::collections::{BTreeMap, HashMap};

use super::{History, HistoryError, Outcome, Pair, Validity, Value, Verdict};

/// How many findings of each kind the explanation lists.
const FINDINGS_LISTED_MAX: usize = 20;

/// The replication parameters a run declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Replicas per key.
    pub n: u32,
    /// Read quorum.
    pub r: u32,
    /// Write quorum.
    pub w: u32,
    /// Whether fallback nodes may stand in for unreachable replicas (sloppy quorum).
    pub sloppy: bool,
}

impl Quorum {
    /// Strict quorums with R + W > N intersect, which makes stale reads violations.
    pub fn is_strict(&self) -> bool {
        !self.sloppy && self.r + self.w > self.n
    }
}

/// A read that returned a value nobody wrote (or only a failed put wrote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phantom {
    /// The key.
    pub key: Value,
    /// The value.
    pub value: Value,
    /// Position of the read's invocation.
    pub read_pos: usize,
    /// Whether a failed put wrote it.
    pub from_failed_put: bool,
}

/// A read that went back past an acknowledged put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleRead {
    /// The key.
    pub key: Value,
    /// Position of the read's invocation.
    pub read_pos: usize,
    /// What it returned.
    pub returned: Vec<Value>,
    /// Position of the acknowledged put it should have reflected.
    pub put_pos: usize,
    /// That put's value.
    pub put_value: Value,
}

/// The answer for a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiblingsResult {
    /// Invalid on any phantom, or on a stale read in a strict-quorum run.
    pub validity: Validity,
    /// Whether stale reads count as violations.
    pub strict: bool,
    /// Reads checked.
    pub reads: usize,
    /// Phantom values.
    pub phantoms: Vec<Phantom>,
    /// Stale reads.
    pub stale: Vec<StaleRead>,
}

impl SiblingsResult {
    /// Summarise for the CLI and the HTML report.
    pub fn verdict(&self, history: &History) -> Verdict {
        let mode = if self.strict { "strict quorum" } else { "sloppy or undeclared quorum" };
        let mut explanation = format!(
            "sibling register ({mode}): {} ({} reads, {} phantom values, {} stale reads{})\n",
            self.validity.name(),
            self.reads,
            self.phantoms.len(),
            self.stale.len(),
            if self.strict || self.stale.is_empty() { "" } else { ", allowed" }
        );
        let mut highlight = Vec::new();
        for p in self.phantoms.iter().take(FINDINGS_LISTED_MAX) {
            highlight.push(p.read_pos);
            let why =
                if p.from_failed_put { "only a failed put wrote it" } else { "no put wrote it" };
            explanation.push_str(&format!(
                "phantom: read on line {} of key {} returned {} but {why}\n",
                history.line(p.read_pos),
                p.key,
                p.value
            ));
        }
        for s in self.stale.iter().take(FINDINGS_LISTED_MAX) {
            if self.strict {
                highlight.push(s.read_pos);
            }
            explanation.push_str(&format!(
                "stale: read on line {} of key {} returned {}, although the put of {} acknowledged on line {} had completed before it began\n",
                history.line(s.read_pos),
                s.key,
                Value::Vector(s.returned.clone()),
                s.put_value,
                history.line(s.put_pos)
            ));
        }
        Verdict { validity: self.validity, explanation, highlight, linearizations: Vec::new() }
    }
}

fn is_put(p: &Pair) -> bool {
    matches!(p.f.as_str(), "put" | "write")
}

fn is_get(p: &Pair) -> bool {
    matches!(p.f.as_str(), "get" | "read")
}

/// Check a history; `quorum` is what the run declared, if anything.
pub fn check(history: &History, quorum: Option<Quorum>) -> Result<SiblingsResult, HistoryError> {
    let pairs = history.pairs()?;
    let strict = quorum.is_some_and(|q| q.is_strict());
    let mut by_key: BTreeMap<Value, Vec<&Pair>> = BTreeMap::new();
    for p in &pairs {
        by_key.entry(p.key.clone()).or_default().push(p);
    }
    let mut result = SiblingsResult {
        validity: Validity::Valid,
        strict,
        reads: 0,
        phantoms: Vec::new(),
        stale: Vec::new(),
    };
    for (key, ops) in by_key {
        check_key(&key, &ops, &mut result);
    }
    let violated = !result.phantoms.is_empty() || (strict && !result.stale.is_empty());
    result.validity = if violated { Validity::Invalid } else { Validity::Valid };
    Ok(result)
}

fn check_key(key: &Value, ops: &[&Pair], result: &mut SiblingsResult) {
    // For every value: the earliest invocation of a put of it that did not fail, whether a failed
    // put wrote it, and the latest point at which one of its puts may still have been in flight
    // (`usize::MAX` for puts with unknown outcome).
    #[derive(Default)]
    struct Written {
        first_invoke: Option<usize>,
        failed: bool,
        last_done: Option<usize>,
    }
    let mut written: HashMap<&Value, Written> = HashMap::new();
    for p in ops.iter().filter(|p| is_put(p)) {
        let w = written.entry(&p.invoke_value).or_default();
        match p.outcome {
            Outcome::Fail => w.failed = true,
            Outcome::Ok | Outcome::Info => {
                w.first_invoke = Some(w.first_invoke.map_or(p.invoke_pos, |f| f.min(p.invoke_pos)));
                let done = match p.outcome {
                    Outcome::Ok => p.complete_pos.unwrap_or(usize::MAX),
                    _ => usize::MAX,
                };
                w.last_done = Some(w.last_done.map_or(done, |d| d.max(done)));
            }
        }
    }
    // Acknowledged puts by completion, with the running latest invocation among them.
    let mut acked: Vec<&Pair> = ops
        .iter()
        .copied()
        .filter(|p| is_put(p) && p.outcome == Outcome::Ok && p.complete_pos.is_some())
        .collect();
    acked.sort_by_key(|p| p.complete_pos);
    let mut latest_start: Vec<&Pair> = Vec::with_capacity(acked.len());
    for p in &acked {
        let best = match latest_start.last() {
            Some(prev) if prev.invoke_pos > p.invoke_pos => prev,
            _ => p,
        };
        latest_start.push(best);
    }
    for read in ops.iter().filter(|p| is_get(p) && p.outcome == Outcome::Ok) {
        result.reads += 1;
        let returned = read.complete_value.as_ref().map(Value::elements).unwrap_or_default();
        let read_done = read.complete_pos.unwrap_or(usize::MAX);
        let mut newest: Option<usize> = None;
        for v in &returned {
            let w = written.get(v);
            match w.and_then(|w| w.first_invoke) {
                Some(first) if first < read_done => {
                    let done = w.and_then(|w| w.last_done).unwrap_or(usize::MAX);
                    newest = Some(newest.map_or(done, |n| n.max(done)));
                }
                _ => result.phantoms.push(Phantom {
                    key: key.clone(),
                    value: v.clone(),
                    read_pos: read.invoke_pos,
                    from_failed_put: w.is_some_and(|w| w.failed),
                }),
            }
        }
        // The acknowledged put, completed before the read began, that began last: the read
        // must return something not over before it began.
        let before = acked.partition_point(|p| p.complete_pos.is_some_and(|c| c < read.invoke_pos));
        let Some(put) = before.checked_sub(1).and_then(|i| latest_start.get(i)) else { continue };
        if newest.is_none_or(|n| n < put.invoke_pos) {
            result.stale.push(StaleRead {
                key: key.clone(),
                read_pos: read.invoke_pos,
                returned,
                put_pos: put.invoke_pos,
                put_value: put.invoke_value.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};

    const STRICT: Quorum = Quorum { n: 3, r: 2, w: 2, sloppy: false };

    fn put(p: i64, v: i64, kind: OpType) -> [Op; 2] {
        [
            Op::new(p, OpType::Invoke, "put", Value::Int(v), 0, 0),
            Op::new(p, kind, "put", Value::Int(v), 0, 0),
        ]
    }

    fn get(p: i64, values: &[i64]) -> [Op; 2] {
        let v = Value::Vector(values.iter().map(|&v| Value::Int(v)).collect());
        [
            Op::new(p, OpType::Invoke, "get", Value::Nil, 0, 0),
            Op::new(p, OpType::Ok, "get", v, 0, 0),
        ]
    }

    fn run(ops: Vec<Op>, q: Option<Quorum>) -> SiblingsResult {
        check(&History::new(ops), q).expect("well formed")
    }

    #[test]
    fn fresh_reads_and_siblings_are_valid() {
        let mut h = Vec::new();
        h.extend(put(0, 1, OpType::Ok));
        h.extend(get(1, &[1]));
        h.extend(put(0, 2, OpType::Ok));
        h.extend(get(1, &[2]));
        let r = run(h, Some(STRICT));
        assert_eq!(r.validity, Validity::Valid, "{r:?}");
    }

    #[test]
    fn phantom_and_failed_put_values_are_invalid() {
        let mut h = Vec::new();
        h.extend(put(0, 1, OpType::Fail));
        h.extend(get(1, &[1, 9]));
        let r = run(h, None);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.phantoms.len(), 2);
        assert!(r.phantoms.iter().any(|p| p.from_failed_put));
    }

    #[test]
    fn stale_read_is_invalid_only_under_strict_quorum() {
        let mut h = Vec::new();
        h.extend(put(0, 1, OpType::Ok));
        h.extend(put(0, 2, OpType::Ok));
        h.extend(get(1, &[1]));
        let strict = run(h.clone(), Some(STRICT));
        assert_eq!(strict.validity, Validity::Invalid);
        assert_eq!(strict.stale.len(), 1);
        let sloppy = run(h.clone(), Some(Quorum { sloppy: true, ..STRICT }));
        assert_eq!(sloppy.validity, Validity::Valid);
        assert_eq!(sloppy.stale.len(), 1);
        let weak = run(h, Some(Quorum { n: 3, r: 1, w: 1, sloppy: false }));
        assert_eq!(weak.validity, Validity::Valid);
    }

    #[test]
    fn info_put_may_be_the_newest() {
        let mut h = Vec::new();
        h.extend(put(0, 1, OpType::Info));
        h.extend(put(1, 2, OpType::Ok));
        h.extend(get(2, &[1]));
        assert_eq!(run(h, Some(STRICT)).validity, Validity::Valid);
    }

    #[test]
    fn empty_read_after_put_is_stale() {
        let mut h = Vec::new();
        h.extend(put(0, 1, OpType::Ok));
        h.extend(get(1, &[]));
        assert_eq!(run(h, Some(STRICT)).validity, Validity::Invalid);
    }
}
