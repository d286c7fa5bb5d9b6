//! Coordinating gets and puts (paper §4.5, with §4.6's sloppy quorum and §5's read repair).
//!
//! The coordinator is a node of the key's preference list. It does its own part locally (a put is
//! applied to its store first, which is where the new version's dot is issued), then sends the
//! request to the other targets and counts answers until R or W, counting itself as one.
//!
//! Targets are the other first-N nodes. Under sloppy quorum a suspected primary is replaced by the
//! next unsuspected fallback of the key's walk, which stores the copy as a hint naming the primary.
//! Under sloppy quorum the first deadline (`sloppy_retry_ms`) also suspects silent targets and sends
//! to further fallbacks in their place; the final deadline answers with what has arrived: a put with
//! fewer than W acknowledgements is *indeterminate* (it may survive), never failed.
//!
//! After a get has heard from every target (or at its deadline), replicas whose answers differ from
//! the reconciled set receive that set: read repair.

use crate::clock::{Context, Dot};
use crate::ids::{Key, NodeId, OpId};
use crate::msg::{Action, ClientOp, ClientReply, Msg, RequestError};
use crate::node::{reply_from, Effect, Node, Timer};
use crate::store::Store;
use crate::versioned::{Siblings, Writer};
use std::collections::{BTreeMap, BTreeSet};

/// What kind of operation is coordinated, with its own progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoordKind {
    /// A put: the new version and the sibling set sent to replicas.
    Put {
        /// The new version's dot.
        dot: Dot,
        /// The new version's clock, returned to the client.
        clock: Context,
        /// The coordinator's sibling set after the put, as sent.
        siblings: Siblings,
    },
    /// A get: the answers so far, the coordinator's own included.
    Get {
        /// Answers by node.
        replies: BTreeMap<NodeId, Siblings>,
    },
}

/// One operation in progress on its coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coord {
    /// The key.
    pub key: Key,
    /// Put or get, with progress.
    pub kind: CoordKind,
    /// The other nodes asked, each with the primary it stands in for when it is a fallback.
    pub targets: BTreeMap<NodeId, Option<NodeId>>,
    /// Targets that answered.
    pub answered: BTreeSet<NodeId>,
    /// Answers needed, the coordinator's own included (R or W).
    pub needed: usize,
    /// Whether the client has its answer.
    pub replied: bool,
    /// Time left after the first deadline; zero once the final deadline is armed.
    pub rest_ms: u64,
    /// How long the operation stays after the client's deadline, when that came before this
    /// node's own first deadline (`sloppy_retry_ms`): the targets still silent are suspected
    /// only once they had that long. A client's short timeout says nothing of their health, but
    /// a node that never answers must still be suspected, whatever timeouts clients choose.
    /// Zero once armed (and for every request that allows `sloppy_retry_ms`).
    pub linger_ms: u64,
}

impl Coord {
    fn count(&self) -> usize {
        1 + self.answered.len()
    }
    fn all_answered(&self) -> bool {
        self.targets.keys().all(|t| self.answered.contains(t))
    }
}

impl<S: Store> Node<S> {
    /// Starts coordinating a validated operation.
    pub(crate) fn coordinate(
        &mut self,
        now_ms: u64,
        id: OpId,
        op: ClientOp,
        effects: &mut Vec<Effect>,
    ) {
        let local = match self.store.load(&op.key) {
            Ok(s) => s,
            Err(e) => return self.refuse(id, RequestError::Storage(e.to_string()), effects),
        };
        let timeout_ms = op.timeout_ms.unwrap_or(self.config.timeouts().request_ms);
        let linger_ms = self.config.timeouts().sloppy_retry_ms.saturating_sub(timeout_ms);
        let (first_ms, rest_ms) = if self.config.sloppy_quorum() {
            let first = self.config.timeouts().sloppy_retry_ms.min(timeout_ms);
            (first, timeout_ms - first)
        } else {
            (timeout_ms, 0)
        };
        let targets = self.choose_targets(&op.key);
        let needed = self.config.needed(&op);
        let kind = match op.action {
            Action::Get => CoordKind::Get { replies: BTreeMap::from([(self.id, local)]) },
            Action::Put { context, payload } => {
                // The counter the key's versions forgot, if they forgot one of this node's (see
                // `Store::issued`): the next counter goes above it too.
                let issued = match self.store.issued(&op.key) {
                    Ok(issued) => issued,
                    Err(e) => {
                        self.stats.store_errors += 1;
                        return self.refuse(id, RequestError::Storage(e.to_string()), effects);
                    }
                };
                #[cfg(feature = "mutants")]
                let issued = crate::mutant::issued(&self.config, issued);
                let mut siblings = local;
                let dot = match siblings.apply_put(
                    Writer { actor: self.actor, issued },
                    &context,
                    payload,
                    now_ms,
                    self.config.limits(),
                    self.config.clock_entries_max(),
                ) {
                    Ok(dot) => dot,
                    Err(e) => return self.refuse(id, e.into(), effects),
                };
                #[cfg(feature = "mutants")]
                let dot = crate::mutant::issued_dot(&self.config, &mut siblings, dot);
                // The new version names the counter it took, the highest: nothing to record.
                if self.store.save(&op.key, &siblings).is_err() {
                    // A failed write may still have been applied (and be read, repaired and
                    // replicated later): the put may or may not have happened.
                    self.stats.store_errors += 1;
                    self.remember_done(id);
                    let reply = ClientReply::Indeterminate { acks: 0, needed };
                    return self.reply(id, reply, effects);
                }
                let clock = siblings
                    .versions()
                    .iter()
                    .find(|v| v.dot == dot)
                    .map(|v| v.clock().capped(self.config.limits().context_entries_max, [dot]))
                    .unwrap_or_default();
                CoordKind::Put { dot, clock, siblings }
            }
        };
        #[cfg(feature = "mutants")]
        let needed = crate::mutant::needed(&self.config, &kind, needed);
        let coord = Coord {
            key: op.key,
            kind,
            targets,
            answered: BTreeSet::new(),
            needed,
            replied: false,
            rest_ms,
            linger_ms,
        };
        for (&to, &intended) in &coord.targets {
            effects.push(Effect::Send { to, msg: request_msg(id, &coord, intended) });
        }
        effects.push(Effect::SetTimer { timer: Timer::Op(id), after_ms: first_ms });
        self.state.ops.insert(id, coord);
        self.progress(id, effects);
    }

    pub(crate) fn refuse(&mut self, id: OpId, e: RequestError, effects: &mut Vec<Effect>) {
        self.remember_done(id);
        self.stats.rejected += 1;
        self.reply(id, ClientReply::Rejected(e), effects);
    }

    /// The other nodes to ask for `key`: the preference list without this node, with suspected
    /// primaries replaced by fallbacks under sloppy quorum.
    fn choose_targets(&self, key: &Key) -> BTreeMap<NodeId, Option<NodeId>> {
        let walk = self.ring.walk(key);
        let n = self.config.n().min(walk.len());
        let suspected = &self.state.suspected;
        let mut fallbacks = walk[n..].iter().copied().filter(|f| !suspected.contains(f));
        let mut targets = BTreeMap::new();
        for &p in &walk[..n] {
            if p == self.id {
                continue;
            }
            if self.config.sloppy_quorum() && suspected.contains(&p) {
                if let Some(f) = fallbacks.next() {
                    targets.insert(f, Some(p));
                    continue;
                }
            }
            targets.insert(p, None);
        }
        targets
    }

    pub(crate) fn on_store_ack(&mut self, from: NodeId, op: OpId, effects: &mut Vec<Effect>) {
        match self.state.ops.get_mut(&op) {
            Some(c) if c.targets.contains_key(&from) && matches!(c.kind, CoordKind::Put { .. }) => {
                c.answered.insert(from);
                self.progress(op, effects);
            }
            _ => self.stats.stale_responses_dropped += 1,
        }
    }

    pub(crate) fn on_fetch_reply(
        &mut self,
        from: NodeId,
        op: OpId,
        siblings: Siblings,
        effects: &mut Vec<Effect>,
    ) {
        match self.state.ops.get_mut(&op) {
            Some(c) if c.targets.contains_key(&from) => match &mut c.kind {
                CoordKind::Get { replies } => {
                    replies.insert(from, siblings);
                    c.answered.insert(from);
                    self.progress(op, effects);
                }
                CoordKind::Put { .. } => self.stats.stale_responses_dropped += 1,
            },
            _ => self.stats.stale_responses_dropped += 1,
        }
    }

    /// Answers the client once enough answers arrived; finishes once every target answered.
    fn progress(&mut self, id: OpId, effects: &mut Vec<Effect>) {
        let me = self.id;
        let Some(c) = self.state.ops.get_mut(&id) else { return };
        if !c.replied && c.count() >= c.needed {
            c.replied = true;
            let reply = match &c.kind {
                CoordKind::Put { dot, clock, .. } => {
                    ClientReply::Written { dot: *dot, context: clock.clone() }
                }
                CoordKind::Get { replies } => {
                    let max = self.config.limits().context_entries_max;
                    #[cfg(feature = "mutants")]
                    let max = crate::mutant::read_context_max(&self.config, max);
                    read_reply(&merge_all(replies), max)
                }
            };
            reply_from(me, id, reply, effects);
        }
        let done = c.all_answered();
        if done {
            effects.push(Effect::CancelTimer(Timer::Op(id)));
            self.finish(id, effects);
        }
    }

    pub(crate) fn on_op_timer(&mut self, id: OpId, effects: &mut Vec<Effect>) {
        let Some(c) = self.state.ops.get(&id) else { return };
        if c.linger_ms > 0 {
            // The client's deadline, before the targets had this node's own patience: answer it,
            // and judge the targets once they have had it.
            let linger_ms = c.linger_ms;
            self.answer_at_deadline(id, effects);
            if let Some(c) = self.state.ops.get_mut(&id) {
                c.linger_ms = 0;
            }
            effects.push(Effect::SetTimer { timer: Timer::Op(id), after_ms: linger_ms });
            return;
        }
        let silent: Vec<NodeId> =
            c.targets.keys().copied().filter(|t| !c.answered.contains(t)).collect();
        self.state.suspected.extend(silent.iter().copied());
        if c.rest_ms > 0 {
            let rest_ms = c.rest_ms;
            self.send_to_fallbacks(id, &silent, effects);
            if let Some(c) = self.state.ops.get_mut(&id) {
                c.rest_ms = 0;
            }
            effects.push(Effect::SetTimer { timer: Timer::Op(id), after_ms: rest_ms });
            return;
        }
        self.answer_at_deadline(id, effects);
        self.finish(id, effects);
    }

    /// At the client's deadline, answers an operation that has not had its R or W.
    fn answer_at_deadline(&mut self, id: OpId, effects: &mut Vec<Effect>) {
        let Some(c) = self.state.ops.get_mut(&id) else { return };
        if c.replied {
            return;
        }
        c.replied = true;
        let reply = match &c.kind {
            CoordKind::Put { .. } => {
                ClientReply::Indeterminate { acks: c.count(), needed: c.needed }
            }
            CoordKind::Get { .. } => {
                ClientReply::Unavailable { replies: c.count(), needed: c.needed }
            }
        };
        self.reply(id, reply, effects);
    }

    /// Under sloppy quorum, asks a further fallback in place of each silent target.
    fn send_to_fallbacks(&mut self, id: OpId, silent: &[NodeId], effects: &mut Vec<Effect>) {
        let Some(c) = self.state.ops.get(&id) else { return };
        let walk = self.ring.walk(&c.key);
        let n = self.config.n().min(walk.len());
        let mut spare = walk[n..].iter().copied().filter(|f| {
            *f != self.id && !c.targets.contains_key(f) && !self.state.suspected.contains(f)
        });
        let mut added = Vec::new();
        for t in silent {
            let intended = c.targets.get(t).copied().flatten().unwrap_or(*t);
            match spare.next() {
                Some(f) => added.push((f, intended)),
                None => break,
            }
        }
        let Some(c) = self.state.ops.get_mut(&id) else { return };
        for (f, intended) in added {
            c.targets.insert(f, Some(intended));
            effects.push(Effect::Send { to: f, msg: request_msg(id, c, Some(intended)) });
        }
    }

    /// Drops a finished operation; a get first repairs replicas whose answers were behind.
    fn finish(&mut self, id: OpId, effects: &mut Vec<Effect>) {
        let Some(c) = self.state.ops.remove(&id) else { return };
        self.remember_done(id);
        let CoordKind::Get { replies } = &c.kind else { return };
        let merged = merge_all(replies);
        for (&node, held) in replies {
            if *held == merged {
                continue;
            }
            self.stats.read_repairs += 1;
            if node == self.id {
                self.merge_local(&c.key, &merged);
            } else {
                let intended = c.targets.get(&node).copied().flatten();
                let msg =
                    Msg::Store { op: None, key: c.key.clone(), siblings: merged.clone(), intended };
                effects.push(Effect::Send { to: node, msg });
            }
        }
    }
}

impl<S> Node<S> {
    /// Remembers that operation `id` is done, so a duplicate of its request (a redelivered client
    /// request or `Forward`) is ignored instead of applied a second time: a refused put must
    /// never take effect later. The memory is volatile and bounded.
    fn remember_done(&mut self, id: OpId) {
        let max = self.config.limits().finished_ops_remembered;
        if max == 0 {
            return;
        }
        let done = &mut self.state.done;
        if done.len() >= max {
            // Request ids grow per origin, so the smallest ids are (mostly) the oldest.
            done.pop_first();
        }
        done.insert(id);
    }
}

/// The request a target of `coord` receives.
fn request_msg(id: OpId, coord: &Coord, intended: Option<NodeId>) -> Msg {
    match &coord.kind {
        CoordKind::Put { siblings, .. } => Msg::Store {
            op: Some(id),
            key: coord.key.clone(),
            siblings: siblings.clone(),
            intended,
        },
        CoordKind::Get { .. } => Msg::Fetch { op: id, key: coord.key.clone(), intended },
    }
}

fn merge_all(replies: &BTreeMap<NodeId, Siblings>) -> Siblings {
    let mut merged = Siblings::new();
    for s in replies.values() {
        merged.reconcile(s);
    }
    merged
}

/// A get's answer. Its context is one the node takes back (see [`Context::capped`]).
fn read_reply(merged: &Siblings, context_entries_max: usize) -> ClientReply {
    let dots = merged.versions().iter().map(|v| v.dot);
    ClientReply::Read {
        context: merged.context().capped(context_entries_max, dots),
        values: merged.values().map(<[u8]>::to_vec).collect(),
    }
}
