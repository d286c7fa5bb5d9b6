//! The model's auxiliary history: a register view of the client operations for stateright's
//! linearizability tester.
//!
//! A put of value `v` is a register write of `v`; a get is a register read that returns its first
//! sibling in dot order (or 0 when nothing was found). Indeterminate, unavailable and rejected
//! operations never return, so the tester may place them anywhere or nowhere, as Jepsen would.
//! The history only observes the messages clients send and receive.

use crate::actors::Wire;
use crate::setup::ModelInfo;
use crate::symmetry::Symmetry;
use dynamo_model::{Action, ClientReply, Payload};
use stateright::actor::{Envelope, Id};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The register tester over client ids.
pub type Tester = LinearizabilityTester<Id, Register<u8>>;

/// Auxiliary state recorded from client traffic. Empty when linearizability is not tested, so it
/// then adds nothing to the state space.
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
}

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.lin == other.lin
    }
}

impl Hash for History {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.lin.hash(h);
    }
}

impl History {
    /// A fresh history; `linearizability` switches the tester on.
    pub fn new(linearizability: bool, symmetry: Option<Arc<Symmetry>>) -> History {
        let lin = linearizability.then(|| (Tester::new(Register(0)), BTreeMap::new()));
        History { lin, symmetry }
    }

    /// Whether the recorded history is linearizable (true when not tested).
    pub fn linearizable(&self) -> bool {
        match &self.lin {
            Some((t, _)) => t.serialized_history().is_some(),
            None => true,
        }
    }

    /// Records a client's invocation.
    pub fn record_out(_: &Arc<ModelInfo>, h: &History, env: Envelope<&Wire>) -> Option<History> {
        let Wire::Request { seq, op } = env.msg else { return None };
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
        Some(History { lin: Some((tester, open)), symmetry: h.symmetry.clone() })
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
        Some(History { lin: Some((tester, open)), symmetry: h.symmetry.clone() })
    }
}
