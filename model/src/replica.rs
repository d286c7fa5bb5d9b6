//! What a node does when asked to hold or return a replica (paper §4.5 replica side, §4.6 hints).
//!
//! A `Store` merges the coordinator's sibling set into primary data, or into the hint kept for the
//! intended node when this node stands in as a fallback; hints stay apart from primary data so they
//! are never served as this node's own. The acknowledgement is an effect, so it leaves only after
//! the write is durable (see [`crate::node`]).

use crate::ids::{Key, NodeId, OpId};
use crate::msg::Msg;
use crate::node::{Effect, Node, Record};
use crate::store::{Store, StoreError};
use crate::versioned::Siblings;

impl<S: Store> Node<S> {
    pub(crate) fn on_store(
        &mut self,
        from: NodeId,
        op: Option<OpId>,
        key: Key,
        siblings: Siblings,
        intended: Option<NodeId>,
        effects: &mut Vec<Effect>,
    ) {
        #[cfg(feature = "mutants")]
        let intended = crate::mutant::intended(&self.config, intended);
        #[cfg(feature = "mutants")]
        if crate::mutant::overwrite_repair(
            &self.config,
            &mut self.store,
            op.is_none() && intended.is_none(),
            &key,
            &siblings,
        ) {
            return;
        }
        let stored = match self.record(&key, intended) {
            Record::Hint(i, key) => self.merge_hint(i, key, &siblings),
            Record::Data(key) => self.merge_local(key, &siblings),
        };
        if stored {
            if let Some(op) = op {
                effects.push(Effect::Send { to: from, msg: Msg::StoreAck { op } });
            }
        }
    }

    pub(crate) fn on_fetch(
        &mut self,
        from: NodeId,
        op: OpId,
        key: Key,
        intended: Option<NodeId>,
        effects: &mut Vec<Effect>,
    ) {
        let held = match self.record(&key, intended) {
            Record::Hint(i, key) => self.store.load_hint(i, key),
            Record::Data(key) => self.store.load(key),
        };
        match held {
            Ok(siblings) => {
                effects.push(Effect::Send { to: from, msg: Msg::FetchReply { op, siblings } })
            }
            Err(_) => self.stats.store_errors += 1,
        }
    }

    /// Reconciles `incoming` into primary data for `key`. Returns whether it is durable now.
    ///
    /// A merge may replace this node's versions of the key with ones whose pasts, cut (capped for
    /// a client or truncated), name none of its counters; the key's versions then forget the
    /// highest counter it issued, and it would issue that counter again. So before saving such a
    /// merge it records that counter apart ([`crate::store::Store::save_issued`]). The record is
    /// rarely written; the check costs two scans of the set per merge that changes it.
    pub(crate) fn merge_local(&mut self, key: &Key, incoming: &Siblings) -> bool {
        let me = self.actor;
        let result = self.store.load(key).and_then(|mut held| {
            let before = held.clone();
            if held.reconcile(incoming) {
                #[cfg(feature = "mutants")]
                crate::mutant::after_reconcile(&self.config, &mut held);
                if let Some(counter) = before.forgotten_in(&held, me) {
                    self.store.save_issued(key, counter)?;
                }
                self.store.save(key, &held)?;
            }
            Ok(())
        });
        self.count_store_result(result)
    }

    /// Reconciles `incoming` into the hint kept for `intended`. Returns whether it is durable now.
    pub(crate) fn merge_hint(&mut self, intended: NodeId, key: &Key, incoming: &Siblings) -> bool {
        let result = self.store.load_hint(intended, key).and_then(|mut held| {
            if held.reconcile(incoming) {
                self.stats.hints_stored += 1;
                self.store.save_hint(intended, key, &held)?;
            }
            Ok(())
        });
        self.count_store_result(result)
    }

    fn count_store_result(&mut self, result: Result<(), StoreError>) -> bool {
        match result {
            Ok(()) => true,
            Err(_) => {
                self.stats.store_errors += 1;
                false
            }
        }
    }
}
