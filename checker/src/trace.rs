//! Counterexamples as readable message-sequence traces.
//!
//! Each step names what happened (a delivery with its sender, receiver and message, a timer, a
//! crash or recovery, a drop), then shows every node's durable siblings and hints for the key after
//! the step, and what the clients have learned so far.

use crate::actors::{node_id, ModelTimer, Outcome, RoleState, Wire};
use crate::run::Trace;
use crate::setup::{DynamoAction, DynamoModel, DynamoState};
use dynamo_model::Msg;
use stateright::actor::{ActorModelAction, Id};
use std::fmt::Write;

/// The name of actor `id`: `n<i>` for nodes, `c<j>` for clients.
pub fn actor_name(model: &DynamoModel, id: Id) -> String {
    let i = usize::from(id);
    if i < model.cfg.node_count {
        format!("{}", node_id(id))
    } else {
        format!("c{}", i - model.cfg.node_count)
    }
}

fn wire(msg: &Wire) -> String {
    match msg {
        Wire::Peer(Msg::Store { op, siblings, intended, .. }) => {
            let kind = if op.is_some() { "Store" } else { "Repair" };
            let hint = intended.map(|i| format!(" (hint for {i})")).unwrap_or_default();
            format!("{kind}{hint} {siblings:?}")
        }
        Wire::Peer(Msg::Fetch { intended, .. }) => {
            let hint = intended.map(|i| format!(" (hint for {i})")).unwrap_or_default();
            format!("Fetch{hint}")
        }
        Wire::Peer(Msg::FetchReply { siblings, .. }) => format!("FetchReply {siblings:?}"),
        Wire::Peer(Msg::StoreAck { op }) => format!("StoreAck {op}"),
        Wire::Peer(Msg::Handoff { siblings, .. }) => format!("Handoff {siblings:?}"),
        Wire::Peer(Msg::HandoffAck { siblings, .. }) => format!("HandoffAck {siblings:?}"),
        Wire::Peer(m) => format!("{m:?}"),
        Wire::Request { seq, op } => format!("request #{seq}: {:?}", op.action),
        Wire::Reply { seq, reply } => format!("reply #{seq}: {reply:?}"),
    }
}

fn action(model: &DynamoModel, a: &DynamoAction) -> String {
    let name = |id: &Id| actor_name(model, *id);
    match a {
        ActorModelAction::Deliver { src, dst, msg } => {
            format!("{} -> {}: {}", name(src), name(dst), wire(msg))
        }
        ActorModelAction::Drop(env) => {
            format!("DROP {} -> {}: {}", name(&env.src), name(&env.dst), wire(&env.msg))
        }
        ActorModelAction::Timeout(id, ModelTimer::Node(t)) => {
            format!("{}: timer {t:?} fires", name(id))
        }
        ActorModelAction::Timeout(id, ModelTimer::Probe(peer)) => {
            format!("{}: probe of suspected {peer} answered (Pong)", name(id))
        }
        ActorModelAction::Timeout(id, ModelTimer::Sync) => {
            format!("{}: sync (its writes durable, held effects leave)", name(id))
        }
        ActorModelAction::Crash(id) => {
            format!("{} CRASHES (volatile state and unsynced writes lost)", name(id))
        }
        ActorModelAction::Recover(id) => format!("{} RECOVERS from its durable store", name(id)),
        ActorModelAction::SelectRandom { actor, .. } => format!("{}: random choice", name(actor)),
    }
}

/// The state after a step: nodes' durable siblings and hints, and client outcomes; under syncs
/// also a node's incarnation once it restarted, and what it wrote that no sync covered yet.
pub fn describe_state(model: &DynamoModel, s: &DynamoState) -> String {
    let mut out = String::new();
    let info = &model.cfg;
    for i in 0..info.node_count {
        let id = Id::from(i);
        let store = s.actor_storages.get(i).and_then(|d| d.as_ref().map(|d| &d.store));
        let data = store.and_then(|st| st.data.get(&info.key)).map(|d| format!("{d:?}"));
        let hints: Vec<String> = store
            .map(|st| st.hints.iter().map(|((n, _), h)| format!("for {n}: {h:?}")).collect())
            .unwrap_or_default();
        let role = if info.primaries.contains(&node_id(id)) { "primary " } else { "fallback" };
        let down = if s.crashed.get(i).copied().unwrap_or(false) { " DOWN" } else { "" };
        let _ = write!(
            out,
            "      {} {role}{down}: {}",
            actor_name(model, id),
            data.unwrap_or_else(|| "-".into())
        );
        if !hints.is_empty() {
            let _ = write!(out, "  hints [{}]", hints.join(", "));
        }
        if let Some(RoleState::Node(ns)) = s.actor_states.get(i).map(|a| &**a) {
            let incarnation = ns.node.actor().incarnation;
            if incarnation > 0 {
                let _ = write!(out, "  (incarnation {incarnation})");
            }
            if ns.marks.unsynced() {
                let unsaved = ns.node.store().data.get(&info.key);
                let _ = write!(out, "  unsynced {unsaved:?}, {} held", ns.held.len());
            }
        }
        out.push('\n');
    }
    for (j, st) in s.actor_states.iter().skip(info.node_count).enumerate() {
        if let RoleState::Client(cs) = &**st {
            let outcomes: Vec<String> = cs
                .outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Written { dot, value } => format!("put {:?} ok {dot}", *value as char),
                    Outcome::Read { values, context } => format!(
                        "get {:?} ctx {context}",
                        values.iter().map(|v| *v as char).collect::<String>()
                    ),
                    Outcome::Failed => "failed/indeterminate".into(),
                })
                .collect();
            let wait = if cs.waiting { " (waiting)" } else { "" };
            let _ = writeln!(out, "      c{j}: [{}]{wait}", outcomes.join(", "));
        }
    }
    out
}

/// Renders a discovery path.
pub fn render(model: &DynamoModel, path: &Trace) -> String {
    let mut out = String::new();
    let steps = path.clone().into_vec();
    let mut n = 0;
    for (i, (state, act)) in steps.iter().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "  initial state:");
            out.push_str(&describe_state(model, state));
        }
        if let Some(a) = act {
            n += 1;
            let _ = writeln!(out, "  {n:>3}. {}", action(model, a));
            for also in model.expand(state, a.clone()).iter().skip(1) {
                let _ = writeln!(out, "       and at once {}", action(model, also));
            }
            if let Some((next, _)) = steps.get(i + 1) {
                out.push_str(&describe_state(model, next));
            }
        }
    }
    out
}
