//! Jepsen's set-full analysis: what became of every element added to a set.
//!
//! Clients `add` elements and `read` the whole set. For each element (per key) the checker
//! decides, from the reads that began after the element was known to exist (its add was
//! acknowledged, or a read already returned it):
//!
//! - **stable**: the last such reads all contain it; it is **stale** as well if some read after
//!   it was known missed it first. Its stable latency is how long after its add was invoked it
//!   became visible to every later read.
//! - **lost**: it was known, yet the latest reads no longer contain it. Its lost latency is how
//!   long after it was known the first read that missed it for good began.
//! - **never read**: no read began after it was known.
//!
//! Elements whose add was not acknowledged and that no read returned are only counted as
//! attempted. The history is valid iff no element with an acknowledged add is lost.

use std::collections::{BTreeMap, HashSet};

use super::{History, HistoryError, Outcome, Pair, Validity, Value, Verdict};

/// Quantiles reported for latencies.
pub const QUANTILES: [f64; 5] = [0.0, 0.5, 0.95, 0.99, 1.0];

/// How many lost elements the explanation lists by name.
const LOST_LISTED_MAX: usize = 20;

/// What became of one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Every read since some point contains it.
    Stable,
    /// Known to exist, then missing from the latest reads.
    Lost,
    /// Known to exist, but no read began afterwards.
    NeverRead,
    /// Its add was not acknowledged and no read returned it: nothing to judge.
    Unobserved,
}

/// The analysis of one element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Its key (`nil` for a single set).
    pub key: Value,
    /// The element.
    pub value: Value,
    /// Whether an add of it was acknowledged.
    pub acknowledged: bool,
    /// What became of it.
    pub fate: Fate,
    /// Whether some read missed it after it was known, before it became stable.
    pub stale: bool,
    /// Stable latency for stable elements, lost latency for lost ones.
    pub latency_ns: Option<i64>,
    /// History position of its add invocation, if it was added.
    pub add_pos: Option<usize>,
    /// For lost elements: the position of the read that first missed it for good.
    pub lost_read_pos: Option<usize>,
}

/// The analysis of a whole history.
#[derive(Clone, Debug, PartialEq)]
pub struct SetFullResult {
    /// Invalid iff an acknowledged element is lost.
    pub validity: Validity,
    /// Every element, ordered by key then element.
    pub elements: Vec<Element>,
    /// Elements that were added (any outcome).
    pub attempted: usize,
    /// Elements whose add was acknowledged.
    pub acknowledged: usize,
    /// Counts per fate.
    pub stable: usize,
    /// Lost elements (acknowledged or only observed).
    pub lost: usize,
    /// Stable elements that some read missed first.
    pub stale: usize,
    /// Known elements no read could judge.
    pub never_read: usize,
    /// Elements read that were never added: a read returned something nobody wrote.
    pub unexpected: Vec<(Value, Value)>,
    /// Stable latency quantiles in nanoseconds, as (quantile, latency).
    pub stable_latency_ns: Vec<(f64, i64)>,
    /// Lost latency quantiles in nanoseconds.
    pub lost_latency_ns: Vec<(f64, i64)>,
}

impl SetFullResult {
    /// Summarise for the CLI and the HTML report.
    pub fn verdict(&self, history: &History) -> Verdict {
        let mut explanation = format!(
            "set-full: {}\nattempted {}, acknowledged {}, stable {}, stale {}, lost {}, never read {}\n",
            self.validity.name(),
            self.attempted,
            self.acknowledged,
            self.stable,
            self.stale,
            self.lost,
            self.never_read
        );
        explanation.push_str(&format!(
            "stable latency (ms): {}\n",
            fmt_quantiles(&self.stable_latency_ns)
        ));
        explanation
            .push_str(&format!("lost latency (ms): {}\n", fmt_quantiles(&self.lost_latency_ns)));
        let mut highlight = Vec::new();
        let lost: Vec<&Element> = self.elements.iter().filter(|e| e.fate == Fate::Lost).collect();
        for e in lost.iter().take(LOST_LISTED_MAX) {
            let ack = if e.acknowledged { "acknowledged" } else { "unacknowledged but read" };
            let add_line =
                e.add_pos.map_or_else(|| "-".to_string(), |p| history.line(p).to_string());
            let read_line =
                e.lost_read_pos.map_or_else(|| "-".to_string(), |p| history.line(p).to_string());
            explanation.push_str(&format!(
                "lost {ack} element {} of key {} (added on line {add_line}, missing from the read on line {read_line} onwards)\n",
                e.value, e.key
            ));
            highlight.extend(e.add_pos);
            highlight.extend(e.lost_read_pos);
        }
        if lost.len() > LOST_LISTED_MAX {
            explanation.push_str(&format!("... and {} more lost\n", lost.len() - LOST_LISTED_MAX));
        }
        for (key, value) in self.unexpected.iter().take(LOST_LISTED_MAX) {
            explanation
                .push_str(&format!("read returned {value} for key {key}, which was never added\n"));
        }
        Verdict { validity: self.validity, explanation, highlight, linearizations: Vec::new() }
    }
}

fn fmt_quantiles(q: &[(f64, i64)]) -> String {
    if q.is_empty() {
        return "none".into();
    }
    q.iter()
        .map(|(p, ns)| format!("p{}={:.1}", p * 100.0, *ns as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quantiles of a list of latencies (nearest rank); empty when there are none.
pub fn quantiles(mut values: Vec<i64>) -> Vec<(f64, i64)> {
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_unstable();
    let last = values.len() - 1;
    QUANTILES
        .iter()
        .map(|&q| {
            let rank = ((last as f64) * q).round() as usize;
            (q, values.get(rank.min(last)).copied().unwrap_or(0))
        })
        .collect()
}

struct Read<'a> {
    pair: &'a Pair,
    elements: HashSet<Value>,
}

/// Run the analysis. Operations other than `add` and `read` are ignored.
pub fn check(history: &History) -> Result<SetFullResult, HistoryError> {
    let pairs = history.pairs()?;
    let mut by_key: BTreeMap<Value, Vec<&Pair>> = BTreeMap::new();
    for p in &pairs {
        by_key.entry(p.key.clone()).or_default().push(p);
    }
    let mut elements = Vec::new();
    let mut unexpected = Vec::new();
    for (key, ops) in by_key {
        check_key(key, &ops, &mut elements, &mut unexpected);
    }
    let count = |f: Fate| elements.iter().filter(|e| e.fate == f).count();
    let latencies = |f: Fate| {
        quantiles(elements.iter().filter(|e| e.fate == f).filter_map(|e| e.latency_ns).collect())
    };
    let lost_acknowledged = elements.iter().any(|e| e.fate == Fate::Lost && e.acknowledged);
    Ok(SetFullResult {
        validity: if lost_acknowledged { Validity::Invalid } else { Validity::Valid },
        attempted: elements.iter().filter(|e| e.add_pos.is_some()).count(),
        acknowledged: elements.iter().filter(|e| e.acknowledged).count(),
        stable: count(Fate::Stable),
        lost: count(Fate::Lost),
        stale: elements.iter().filter(|e| e.stale).count(),
        never_read: count(Fate::NeverRead),
        stable_latency_ns: latencies(Fate::Stable),
        lost_latency_ns: latencies(Fate::Lost),
        unexpected,
        elements,
    })
}

fn check_key(
    key: Value,
    ops: &[&Pair],
    elements: &mut Vec<Element>,
    unexpected: &mut Vec<(Value, Value)>,
) {
    let mut reads: Vec<Read> = ops
        .iter()
        .filter(|p| p.f == "read" && p.outcome == Outcome::Ok)
        .map(|p| Read {
            pair: p,
            elements: p
                .complete_value
                .as_ref()
                .map(Value::elements)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
        .collect();
    reads.sort_by_key(|r| r.pair.invoke_pos);
    // Earliest add of each element; an element added twice is judged from its first add.
    let mut adds: BTreeMap<Value, Vec<&Pair>> = BTreeMap::new();
    for p in ops.iter().filter(|p| p.f == "add") {
        adds.entry(p.invoke_value.clone()).or_default().push(p);
    }
    // When an element was first seen by a read (completion position, time).
    let mut first_seen: BTreeMap<Value, (usize, i64)> = BTreeMap::new();
    for r in &reads {
        let at = (
            r.pair.complete_pos.unwrap_or(usize::MAX),
            r.pair.complete_time_ns.unwrap_or(i64::MAX),
        );
        for e in &r.elements {
            let slot = first_seen.entry(e.clone()).or_insert(at);
            if at.0 < slot.0 {
                *slot = at;
            }
            if !adds.contains_key(e) {
                unexpected.push((key.clone(), e.clone()));
            }
        }
    }
    unexpected.sort();
    unexpected.dedup();
    for (value, add_ops) in adds {
        let add = add_ops.iter().min_by_key(|p| p.invoke_pos).copied();
        let acked =
            add_ops.iter().filter(|p| p.outcome == Outcome::Ok).min_by_key(|p| p.complete_pos);
        let acknowledged = acked.is_some();
        let ack_at = acked.and_then(|p| Some((p.complete_pos?, p.complete_time_ns?)));
        let known = match (ack_at, first_seen.get(&value).copied()) {
            (Some(a), Some(s)) => Some(if a.0 <= s.0 { a } else { s }),
            (a, s) => a.or(s),
        };
        let mut element = Element {
            key: key.clone(),
            value: value.clone(),
            acknowledged,
            fate: Fate::Unobserved,
            stale: false,
            latency_ns: None,
            add_pos: add.map(|p| p.invoke_pos),
            lost_read_pos: None,
        };
        if let Some((known_pos, known_time)) = known {
            judge(&mut element, &reads, known_pos, known_time, add.map(|p| p.invoke_time_ns));
        }
        elements.push(element);
    }
}

fn judge(
    element: &mut Element,
    reads: &[Read],
    known_pos: usize,
    known_time: i64,
    add_time: Option<i64>,
) {
    let start = reads.partition_point(|r| r.pair.invoke_pos <= known_pos);
    let after = reads.get(start..).unwrap_or_default();
    if after.is_empty() {
        element.fate = Fate::NeverRead;
        return;
    }
    let present: Vec<bool> = after.iter().map(|r| r.elements.contains(&element.value)).collect();
    let last_present = present.iter().rposition(|&p| p);
    let last_absent = present.iter().rposition(|&p| !p);
    match (last_present, last_absent) {
        (Some(lp), la) if la.is_none_or(|la| la < lp) => {
            element.fate = Fate::Stable;
            element.stale = la.is_some();
            // Visible to every read from the first present one after the last miss.
            let from = la.map_or(0, |la| la + 1);
            let stable_time = after.get(from).map_or(known_time, |r| r.pair.invoke_time_ns);
            let origin = add_time.unwrap_or(known_time);
            element.latency_ns = Some((stable_time - origin).max(0));
        }
        (lp, _) => {
            element.fate = Fate::Lost;
            let first_missing = lp.map_or(0, |lp| lp + 1);
            if let Some(r) = after.get(first_missing) {
                element.lost_read_pos = Some(r.pair.invoke_pos);
                element.latency_ns = Some((r.pair.invoke_time_ns - known_time).max(0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};

    fn set(items: &[i64]) -> Value {
        Value::set(items.iter().map(|&i| Value::Int(i)).collect())
    }

    fn run(ops: Vec<Op>) -> SetFullResult {
        check(&History::new(ops)).expect("well formed")
    }

    fn add(p: i64, e: i64, kind: OpType, t: i64) -> [Op; 2] {
        [
            Op::new(p, OpType::Invoke, "add", Value::Int(e), t, 0),
            Op::new(p, kind, "add", Value::Int(e), t + 1, 0),
        ]
    }

    fn read(p: i64, items: &[i64], t: i64) -> [Op; 2] {
        [
            Op::new(p, OpType::Invoke, "read", Value::Nil, t, 0),
            Op::new(p, OpType::Ok, "read", set(items), t + 1, 0),
        ]
    }

    #[test]
    fn stable_stale_lost_and_never_read() {
        let mut h = Vec::new();
        h.extend(add(0, 1, OpType::Ok, 0));
        h.extend(add(0, 2, OpType::Ok, 10));
        h.extend(read(1, &[2], 20)); // 1 missing: stale for now
        h.extend(read(1, &[1], 30)); // 1 back, 2 missing
        h.extend(read(1, &[1], 40)); // 2 lost
        h.extend(add(0, 3, OpType::Ok, 50)); // never read
        h.extend(add(2, 4, OpType::Info, 60)); // unobserved
        let r = run(h);
        assert_eq!(r.validity, Validity::Invalid);
        let fate = |v: i64| {
            r.elements.iter().find(|e| e.value == Value::Int(v)).map(|e| (e.fate, e.stale))
        };
        assert_eq!(fate(1), Some((Fate::Stable, true)));
        assert_eq!(fate(2), Some((Fate::Lost, false)));
        assert_eq!(fate(3), Some((Fate::NeverRead, false)));
        assert_eq!(fate(4), Some((Fate::Unobserved, false)));
        assert_eq!((r.attempted, r.acknowledged, r.lost, r.stale), (4, 3, 1, 1));
        let one = r.elements.iter().find(|e| e.value == Value::Int(1)).and_then(|e| e.latency_ns);
        assert_eq!(one, Some(30));
        assert_eq!(r.lost_latency_ns.first().map(|q| q.1), Some(19));
    }

    #[test]
    fn info_add_that_appears_is_fine_and_lost_unacked_does_not_invalidate() {
        let mut h = Vec::new();
        h.extend(add(0, 1, OpType::Info, 0));
        h.extend(read(1, &[1], 10));
        h.extend(read(1, &[], 20));
        let r = run(h);
        assert_eq!(r.lost, 1);
        assert_eq!(r.validity, Validity::Valid);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let q = quantiles((1..=100).collect());
        assert_eq!(q.first(), Some(&(0.0, 1)));
        assert_eq!(q.get(1), Some(&(0.5, 51)));
        assert_eq!(q.last(), Some(&(1.0, 100)));
    }
}
