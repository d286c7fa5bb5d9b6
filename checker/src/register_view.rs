//! The model's auxiliary history: a register view of the client operations for stateright's
//! linearizability tester, and the lineage of every version nodes sent.
//!
//! A put of value `v` is a register write of `v`; a get is a register read that returns its first
//! sibling in dot order (or 0 when nothing was found). Indeterminate, unavailable and rejected
//! operations never return, so the tester may place them anywhere or nowhere, as Jepsen would.
//! The history only observes the messages clients send and receive.
//!
//! **Lineage.** When contexts can be cut (see [`crate::setup::Setup::cuts_contexts`]), a write on
//! a cut context names the versions it replaces but not always what those named: an acknowledged
//! write can then be superseded only through a chain of pasts, and the version that held the
//! middle of the chain may be gone from every store. So the history keeps the past and payload of
//! every version a node sent to another ([`Sent`], over the core's [`Lineage`]), and the
//! properties follow chains through it. It also notes a dot sent with two different versions: a
//! counter issued twice.

use crate::actors::Wire;
use crate::setup::ModelInfo;
use crate::symmetry::Symmetry;
use dynamo_model::lineage::Lineage;
use dynamo_model::{Action, ClientReply, Context, Dot, Msg, Payload, Siblings};
use stateright::actor::{Envelope, Id};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The register tester over client ids.
pub type Tester = LinearizabilityTester<Id, Register<u8>>;

/// Auxiliary state recorded from client and peer traffic. Empty when linearizability is not
/// tested and contexts are not cut, so it then adds nothing to the state space.
///
/// It also carries the model's client symmetry, if any, which is fixed for a run: stateright
/// hands the representative function nothing but the state (see [`crate::symmetry`]). Equality
/// and hashing leave it out.
#[derive(Clone, Debug)]
pub struct History {
    /// The tester, with the script position each client has in flight.
    pub lin: Option<(Tester, BTreeMap<Id, u8>)>,
    /// The run's interchangeable clients.
    pub symmetry: Option<Arc<Symmetry>>,
    /// Every version sent so far, when the run follows lineage.
    pub lineage: Option<Arc<Sent>>,
}

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.lin == other.lin && self.lineage == other.lineage
    }
}

impl Hash for History {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.lin.hash(h);
        self.lineage.hash(h);
    }
}

/// The versions nodes sent (see [`dynamo_model::lineage`]), and the first dot sent with two
/// different versions, if any: a counter issued twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sent {
    /// Every version sent, as first sent under its dot.
    pub lineage: Lineage,
    /// A dot that was later sent with another time, past or payload.
    pub reused: Option<Dot>,
}

impl Sent {
    /// With `siblings`' versions added, or `None` when it already had them all.
    fn with(&self, siblings: &Siblings) -> Option<Sent> {
        let mut next: Option<Sent> = None;
        for v in siblings.versions() {
            if next.as_ref().unwrap_or(self).lineage.get(&v.dot) == Some(v) {
                continue;
            }
            let n = next.get_or_insert_with(|| self.clone());
            if n.lineage.record(v).is_some() {
                n.reused.get_or_insert(v.dot);
            }
        }
        next
    }
}

impl History {
    /// A fresh history; `linearizability` switches the tester on, `lineage` the record of sent
    /// versions.
    pub fn new(linearizability: bool, symmetry: Option<Arc<Symmetry>>, lineage: bool) -> History {
        let lin = linearizability.then(|| (Tester::new(Register(0)), BTreeMap::new()));
        let lineage = lineage.then(|| Arc::new(Sent::default()));
        History { lin, symmetry, lineage }
    }

    /// Whether `context` names `target`, following the lineage when the run keeps one.
    pub fn names(&self, context: &Context, target: &Dot) -> bool {
        match &self.lineage {
            Some(sent) => sent.lineage.names([context], target),
            None => context.contains(target),
        }
    }

    /// Whether the recorded history is linearizable (true when not tested).
    pub fn linearizable(&self) -> bool {
        match &self.lin {
            Some((t, _)) => t.serialized_history().is_some(),
            None => true,
        }
    }

    /// Records a client's invocation, or the versions a peer message carries.
    pub fn record_out(_: &Arc<ModelInfo>, h: &History, env: Envelope<&Wire>) -> Option<History> {
        let (seq, op) = match env.msg {
            Wire::Request { seq, op } => (seq, op),
            Wire::Peer(msg) => return h.record_sent(msg),
            Wire::Reply { .. } => return None,
        };
        let (tester, open) = h.lin.as_ref()?;
        let reg_op = match &op.action {
            Action::Get => RegisterOp::Read,
            Action::Put { payload: Payload::Value(v), .. } => {
                RegisterOp::Write(v.first().copied().unwrap_or(0))
            }
            Action::Put { payload: Payload::Tombstone, .. } => RegisterOp::Write(0),
        };
        let mut tester = tester.clone();
        let _ = tester.on_invoke(env.src, reg_op);
        let mut open = open.clone();
        open.insert(env.src, *seq);
        Some(History { lin: Some((tester, open)), ..h.clone() })
    }

    /// Adds the versions of a message that carries some to the lineage, if the run keeps one.
    fn record_sent(&self, msg: &Msg) -> Option<History> {
        let lineage = self.lineage.as_ref()?;
        let siblings = match msg {
            Msg::Store { siblings, .. }
            | Msg::FetchReply { siblings, .. }
            | Msg::Handoff { siblings, .. }
            | Msg::HandoffAck { siblings, .. } => siblings,
            _ => return None,
        };
        let next = lineage.with(siblings)?;
        Some(History { lineage: Some(Arc::new(next)), ..self.clone() })
    }

    /// Records a client's return (the first delivery of an ok answer only).
    pub fn record_in(_: &Arc<ModelInfo>, h: &History, env: Envelope<&Wire>) -> Option<History> {
        let Wire::Reply { seq, reply } = env.msg else { return None };
        let (tester, open) = h.lin.as_ref()?;
        if open.get(&env.dst) != Some(seq) {
            return None;
        }
        let ret = match reply {
            ClientReply::Written { .. } => RegisterRet::WriteOk,
            ClientReply::Read { values, .. } => {
                RegisterRet::ReadOk(values.first().and_then(|v| v.first()).copied().unwrap_or(0))
            }
            _ => return None,
        };
        let mut tester = tester.clone();
        let _ = tester.on_return(env.dst, ret);
        let mut open = open.clone();
        open.remove(&env.dst);
        Some(History { lin: Some((tester, open)), ..h.clone() })
    }
}
