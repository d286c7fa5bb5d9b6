//! Hinted handoff and liveness probes (paper §4.6), driven by the background tick.
//!
//! Each tick, a node pings the nodes it suspects (any answer clears the suspicion) and sends up to
//! `handoff_batch_max` hints to intended nodes it does not suspect. The intended node merges the
//! hint into its primary data and acknowledges with exactly the siblings it made durable. The
//! holder deletes the hint only if it still holds exactly those siblings; a hint that grew in the
//! meantime stays and goes out again on a later tick.
//!
//! A hint can outlive its intended node's membership: a node that stays down is taken out of the
//! cluster (every node restarts with it gone from the configuration), and the hints the others
//! kept for it are then the only copies beside the key's remaining replicas. Such a hint is
//! rehomed when a tick comes to it: merged into this node's primary data if this node is now in
//! the key's preference list, and into a hint for each other node of the list, and only then
//! removed. So the key gets back its replication, and nothing waits for a node that will not
//! come back.

use crate::ids::{Key, NodeId};
use crate::msg::Msg;
use crate::node::{Effect, Node, Timer};
use crate::store::Store;
use crate::versioned::Siblings;

impl<S: Store> Node<S> {
    pub(crate) fn on_tick(&mut self, effects: &mut Vec<Effect>) {
        for &to in &self.state.suspected {
            effects.push(Effect::Send { to, msg: Msg::Ping });
        }
        let batch = self.config.limits().handoff_batch_max;
        match self.store.hints(&self.state.suspected, batch) {
            Ok(hints) => {
                for (to, key, siblings) in hints {
                    if !self.config.nodes().contains(&to) {
                        self.rehome(to, &key, &siblings);
                        continue;
                    }
                    #[cfg(feature = "mutants")]
                    crate::mutant::on_handoff_sent(&self.config, &mut self.store, to, &key);
                    effects.push(Effect::Send { to, msg: Msg::Handoff { key, siblings } });
                }
            }
            Err(_) => self.stats.store_errors += 1,
        }
        effects.push(Effect::SetTimer {
            timer: Timer::Tick,
            after_ms: self.config.timeouts().tick_ms,
        });
    }

    /// Hands the hint kept under `key` for `gone`, a node no longer in the cluster, to the key's
    /// preference list (see the module's notes). The hint is removed once every copy is durable
    /// in this node's store ([`Store::remove_hint_once_durable`]); if a copy fails, it stays and
    /// is tried again on a later tick (merging is idempotent), as it is if a tick comes to it
    /// before its removal.
    fn rehome(&mut self, gone: NodeId, key: &Key, siblings: &Siblings) {
        let prefs = self.ring.preference_list(key, self.config.n()).to_vec();
        let mut copied = true;
        for p in prefs {
            copied &= if p == self.id {
                self.merge_local(key, siblings)
            } else {
                self.merge_hint(p, key, siblings)
            };
        }
        if !copied {
            return;
        }
        match self.store.remove_hint_once_durable(gone, key) {
            Ok(()) => self.stats.hints_rehomed += 1,
            Err(_) => self.stats.store_errors += 1,
        }
    }

    pub(crate) fn on_handoff(
        &mut self,
        from: NodeId,
        key: Key,
        siblings: Siblings,
        effects: &mut Vec<Effect>,
    ) {
        if self.merge_local(&key, &siblings) {
            effects.push(Effect::Send { to: from, msg: Msg::HandoffAck { key, siblings } });
        }
    }

    pub(crate) fn on_handoff_ack(&mut self, from: NodeId, key: Key, siblings: Siblings) {
        match self.store.load_hint(from, &key) {
            Ok(held) if held == siblings => {
                if self.store.remove_hint(from, &key).is_ok() {
                    self.stats.hints_delivered += 1;
                } else {
                    self.stats.store_errors += 1;
                }
            }
            Ok(_) => self.stats.stale_responses_dropped += 1,
            Err(_) => self.stats.store_errors += 1,
        }
    }
}
