//! Invariants of a node's state, checked by the simulator after every step, by the model checker,
//! and by the property tests: one function each, so all three check the same thing.

use crate::coordinator::CoordKind;
use crate::node::Node;
use crate::store::MemStore;

/// Checks one node: every sibling set (primary and hint) is a sorted antichain, no operation
/// targets the node itself, and every operation in progress counts sensibly.
pub fn check_node(node: &Node<MemStore>) -> Result<(), String> {
    let id = node.id();
    for (key, siblings) in node.store().data.iter() {
        siblings.check().map_err(|e| format!("{id} data {key}: {e}"))?;
    }
    for ((intended, key), siblings) in node.store().hints.iter() {
        if *intended == id {
            return Err(format!("{id} holds a hint for itself under {key}"));
        }
        siblings.check().map_err(|e| format!("{id} hint for {intended} {key}: {e}"))?;
    }
    for (op, c) in &node.volatile().ops {
        if c.targets.contains_key(&id) {
            return Err(format!("{id} op {op} targets its own node"));
        }
        if !c.answered.is_subset(&c.targets.keys().copied().collect()) {
            return Err(format!("{id} op {op} counts an answer from a node it did not ask"));
        }
        if let CoordKind::Put { siblings, .. } = &c.kind {
            siblings.check().map_err(|e| format!("{id} op {op}: {e}"))?;
        }
    }
    Ok(())
}
