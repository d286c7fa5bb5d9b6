//! Convergence: once faults have healed and the cluster is quiet, every replica agrees and has
//! kept every acknowledged write that nothing later superseded (Dynamo §4.4: eventual
//! consistency through reconciliation, read repair and anti-entropy).
//!
//! The history holds ordinary writes (`write` / `put`, which supersede earlier values, or `add`,
//! which never does) and, at the end, one `final-read` per node, each with the node in its
//! `node` field (the process stands in for the node when there is none). A final read's value is
//! the collection of sibling values the node holds (a scalar is one sibling, `nil` none).
//!
//! For each key the checker requires that all final reads completed `ok`, that they are
//! identical as sets, and that they contain every value of an acknowledged write unless an
//! acknowledged `write`/`put` to the same key began after that write had completed. Concurrent
//! writes do not supersede each other: Dynamo keeps both as siblings.

use std::collections::{BTreeMap, BTreeSet};

use super::{History, HistoryError, Outcome, Pair, Validity, Value, Verdict};

/// The `f` of a final read.
pub const FINAL_READ: &str = "final-read";

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// There are writes but no final reads at all.
    NoFinalReads,
    /// A node's final read did not complete `ok`.
    FinalReadIncomplete {
        /// The key.
        key: Value,
        /// The node.
        node: Value,
        /// Position of the read's invocation.
        pos: usize,
    },
    /// Two nodes disagree.
    Diverged {
        /// The key.
        key: Value,
        /// The node used as reference and its siblings.
        reference: (Value, Vec<Value>),
        /// A node that differs and its siblings.
        other: (Value, Vec<Value>),
        /// Position of the differing read.
        pos: usize,
    },
    /// A node's final read misses required values.
    Missing {
        /// The key.
        key: Value,
        /// The node.
        node: Value,
        /// The acknowledged, unsuperseded values it lacks.
        values: Vec<Value>,
        /// Position of the read.
        pos: usize,
    },
}

/// The answer for a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvergenceResult {
    /// Valid iff there are no problems.
    pub validity: Validity,
    /// Keys that had final reads.
    pub keys: usize,
    /// Nodes that answered final reads.
    pub nodes: BTreeSet<Value>,
    /// What went wrong.
    pub problems: Vec<Problem>,
}

impl ConvergenceResult {
    /// Summarise for the CLI and the HTML report.
    pub fn verdict(&self, history: &History) -> Verdict {
        let nodes: Vec<String> = self.nodes.iter().map(Value::to_string).collect();
        let mut explanation = format!(
            "convergence: {} ({} keys, final reads from nodes [{}])\n",
            self.validity.name(),
            self.keys,
            nodes.join(" ")
        );
        let mut highlight = Vec::new();
        for problem in &self.problems {
            let line = match problem {
                Problem::NoFinalReads => "the history has writes but no final reads".to_string(),
                Problem::FinalReadIncomplete { key, node, pos } => {
                    highlight.push(*pos);
                    format!(
                        "key {key}: final read on node {node} (line {}) did not complete ok",
                        history.line(*pos)
                    )
                }
                Problem::Diverged { key, reference, other, pos } => {
                    highlight.push(*pos);
                    format!(
                        "key {key}: node {} holds {} but node {} holds {} (line {})",
                        reference.0,
                        Value::Vector(reference.1.clone()),
                        other.0,
                        Value::Vector(other.1.clone()),
                        history.line(*pos)
                    )
                }
                Problem::Missing { key, node, values, pos } => {
                    highlight.push(*pos);
                    format!(
                        "key {key}: node {node} lost acknowledged {} (final read on line {})",
                        Value::Vector(values.clone()),
                        history.line(*pos)
                    )
                }
            };
            explanation.push_str(&line);
            explanation.push('\n');
        }
        Verdict { validity: self.validity, explanation, highlight, linearizations: Vec::new() }
    }
}

fn is_write(p: &Pair) -> bool {
    matches!(p.f.as_str(), "write" | "put" | "add")
}

fn supersedes(f: &str) -> bool {
    matches!(f, "write" | "put")
}

/// Check a history's final reads.
pub fn check(history: &History) -> Result<ConvergenceResult, HistoryError> {
    let pairs = history.pairs()?;
    let mut by_key: BTreeMap<Value, Vec<&Pair>> = BTreeMap::new();
    for p in &pairs {
        by_key.entry(p.key.clone()).or_default().push(p);
    }
    let mut problems = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut keys = 0;
    let any_final = pairs.iter().any(|p| p.f == FINAL_READ);
    if !any_final && pairs.iter().any(is_write) {
        problems.push(Problem::NoFinalReads);
    }
    for (key, ops) in by_key {
        let finals: Vec<&Pair> = ops.iter().copied().filter(|p| p.f == FINAL_READ).collect();
        if finals.is_empty() {
            continue;
        }
        keys += 1;
        let required = required_values(&ops);
        let mut reference: Option<(Value, Vec<Value>)> = None;
        for read in finals {
            let node = read.node.clone().unwrap_or(Value::Int(read.process));
            nodes.insert(node.clone());
            if read.outcome != Outcome::Ok {
                problems.push(Problem::FinalReadIncomplete {
                    key: key.clone(),
                    node,
                    pos: read.invoke_pos,
                });
                continue;
            }
            let held: BTreeSet<Value> = read
                .complete_value
                .as_ref()
                .map(Value::elements)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let missing: Vec<Value> = required.difference(&held).cloned().collect();
            let pos = read.complete_pos.unwrap_or(read.invoke_pos);
            if !missing.is_empty() {
                problems.push(Problem::Missing {
                    key: key.clone(),
                    node: node.clone(),
                    values: missing,
                    pos,
                });
            }
            let held: Vec<Value> = held.into_iter().collect();
            match &reference {
                None => reference = Some((node, held)),
                Some(r) if r.1 != held => problems.push(Problem::Diverged {
                    key: key.clone(),
                    reference: r.clone(),
                    other: (node, held),
                    pos,
                }),
                Some(_) => {}
            }
        }
    }
    let validity = if problems.is_empty() { Validity::Valid } else { Validity::Invalid };
    Ok(ConvergenceResult { validity, keys, nodes, problems })
}

/// Values of acknowledged writes that no acknowledged superseding write began after.
fn required_values(ops: &[&Pair]) -> BTreeSet<Value> {
    let acked: Vec<&Pair> =
        ops.iter().copied().filter(|p| is_write(p) && p.outcome == Outcome::Ok).collect();
    // The latest invocation of an acknowledged superseding write.
    let last_superseding_invoke =
        acked.iter().filter(|p| supersedes(&p.f)).map(|p| p.invoke_pos).max();
    acked
        .iter()
        .filter(|w| match (last_superseding_invoke, w.complete_pos) {
            (Some(last), Some(done)) => !supersedes(&w.f) || last < done,
            _ => true,
        })
        .map(|w| w.effective_value().clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};

    fn write(p: i64, v: i64) -> [Op; 2] {
        [
            Op::new(p, OpType::Invoke, "put", Value::Int(v), 0, 0),
            Op::new(p, OpType::Ok, "put", Value::Int(v), 0, 0),
        ]
    }

    fn final_read(p: i64, node: &str, values: &[i64]) -> [Op; 2] {
        let mut inv = Op::new(p, OpType::Invoke, FINAL_READ, Value::Nil, 0, 0);
        inv.node = Some(Value::Str(node.into()));
        let done = Op::new(
            p,
            OpType::Ok,
            FINAL_READ,
            Value::Vector(values.iter().map(|&v| Value::Int(v)).collect()),
            0,
            0,
        );
        [inv, done]
    }

    fn run(ops: Vec<Op>) -> ConvergenceResult {
        check(&History::new(ops)).expect("well formed")
    }

    #[test]
    fn sequential_writes_converge_to_the_last() {
        let mut h = Vec::new();
        h.extend(write(0, 1));
        h.extend(write(0, 2));
        h.extend(final_read(5, "n1", &[2]));
        h.extend(final_read(6, "n2", &[2]));
        let r = run(h);
        assert_eq!(r.validity, Validity::Valid, "{:?}", r.problems);
        assert_eq!(r.nodes.len(), 2);
    }

    #[test]
    fn concurrent_writes_must_both_survive() {
        let h = vec![
            Op::new(0, OpType::Invoke, "put", Value::Int(1), 0, 0),
            Op::new(1, OpType::Invoke, "put", Value::Int(2), 0, 0),
            Op::new(0, OpType::Ok, "put", Value::Int(1), 0, 0),
            Op::new(1, OpType::Ok, "put", Value::Int(2), 0, 0),
        ];
        let mut ok = h.clone();
        ok.extend(final_read(5, "n1", &[1, 2]));
        ok.extend(final_read(6, "n2", &[2, 1]));
        assert_eq!(run(ok).validity, Validity::Valid);
        let mut lost = h;
        lost.extend(final_read(5, "n1", &[2]));
        lost.extend(final_read(6, "n2", &[2]));
        let r = run(lost);
        assert_eq!(r.validity, Validity::Invalid);
        assert!(matches!(r.problems.first(), Some(Problem::Missing { .. })));
    }

    #[test]
    fn divergent_nodes_are_reported() {
        let mut h = Vec::new();
        h.extend(write(0, 1));
        h.extend(final_read(5, "n1", &[1]));
        h.extend(final_read(6, "n2", &[1, 7]));
        let r = run(h);
        assert_eq!(r.validity, Validity::Invalid);
        assert!(matches!(r.problems.first(), Some(Problem::Diverged { .. })));
    }

    #[test]
    fn missing_final_reads_are_invalid() {
        let r = run(write(0, 1).to_vec());
        assert_eq!(r.problems, vec![Problem::NoFinalReads]);
    }
}
