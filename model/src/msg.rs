//! What crosses the wire: client operations and replies, and the peer protocol.
//!
//! Every type here is serde-derived; the node sends [`Msg`] as length-delimited postcard frames.
//! Decoding re-establishes each type's invariants (clocks sorted and zero-free, sibling sets
//! antichains), so nothing malformed reaches the core.

use crate::clock::{Context, Dot};
use crate::ids::{Key, NodeId, OpId, RequestId};
use crate::versioned::{Payload, PutError, Siblings};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// Read every current version.
    Get,
    /// Write `payload` (a value, or a tombstone for a delete) superseding what `context` covers.
    Put {
        /// The context from an earlier get; empty for a blind write.
        context: Context,
        /// What to write.
        payload: Payload,
    },
}

/// A client operation with its per-request overrides.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientOp {
    /// The key.
    pub key: Key,
    /// Get or put.
    pub action: Action,
    /// Replies a get waits for, instead of the configured R.
    pub r: Option<usize>,
    /// Acknowledgements a put waits for, instead of the configured W.
    pub w: Option<usize>,
    /// How long to wait, instead of the configured request timeout.
    pub timeout_ms: Option<u64>,
}

impl ClientOp {
    /// A get with the configured quorum and timeout.
    pub fn get(key: Key) -> Self {
        ClientOp { key, action: Action::Get, r: None, w: None, timeout_ms: None }
    }

    /// A put of `value` on `context` with the configured quorum and timeout.
    pub fn put(key: Key, context: Context, value: Vec<u8>) -> Self {
        let action = Action::Put { context, payload: Payload::Value(value) };
        ClientOp { key, action, r: None, w: None, timeout_ms: None }
    }

    /// A delete (a tombstone put) on `context`.
    pub fn delete(key: Key, context: Context) -> Self {
        let action = Action::Put { context, payload: Payload::Tombstone };
        ClientOp { key, action, r: None, w: None, timeout_ms: None }
    }

    /// Whether the operation writes.
    pub fn is_write(&self) -> bool {
        matches!(self.action, Action::Put { .. })
    }
}

/// Why a request was refused before anything was written. A refused put did not happen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Error, Serialize, Deserialize)]
pub enum RequestError {
    /// The put itself is invalid (value too large, too many siblings).
    #[error(transparent)]
    Put(#[from] PutError),
    /// The key is larger than allowed.
    #[error("key of {bytes} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// A per-request R or W outside 1..=N.
    #[error("{which} = {value} must be between 1 and n = {n}")]
    BadQuorum {
        /// "r" or "w".
        which: String,
        /// The value asked for.
        value: usize,
        /// N.
        n: usize,
    },
    /// A per-request timeout of zero or above the bound.
    #[error("timeout_ms = {value_ms} must be between 1 and {max_ms}")]
    BadTimeout {
        /// The timeout asked for.
        value_ms: u64,
        /// The bound.
        max_ms: u64,
    },
    /// The context has more entries than allowed.
    #[error("context has {entries} entries, more than the limit {max}")]
    ContextTooLarge {
        /// Entries sent.
        entries: usize,
        /// The limit.
        max: usize,
    },
    /// Too many requests are in progress on this node.
    #[error("node is overloaded: {pending} requests in progress")]
    Overloaded {
        /// Requests in progress.
        pending: usize,
    },
    /// The node asked to coordinate is not in the key's preference list (rings disagree).
    #[error("{node} is not a coordinator for this key")]
    NotCoordinator {
        /// The node that refused.
        node: NodeId,
    },
    /// The coordinator could not read its own storage; nothing was written. (A put whose own
    /// write fails is answered `Indeterminate`: a failed write may still have been applied.)
    #[error("storage error on the coordinator: {0}")]
    Storage(String),
}

/// The outcome of a client operation, in Jepsen's terms: `Read` and `Written` are ok, `Rejected`
/// is a definite failure, `Indeterminate` may or may not have taken effect, `Unavailable` is a read
/// that could not gather R replies (reads change nothing, so this is a failure).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ClientReply {
    /// A get gathered R replies. No values means not found (or deleted).
    Read {
        /// Pass this back with the next put or delete to supersede what was read.
        context: Context,
        /// The current values: one, or several siblings.
        #[serde(deserialize_with = "crate::wire::bounded_vec")]
        values: Vec<Vec<u8>>,
    },
    /// A put or delete reached W replicas.
    Written {
        /// The new version's identity.
        dot: Dot,
        /// The new version's clock: a context that supersedes exactly what this write did.
        context: Context,
    },
    /// A put or delete timed out with fewer than W acknowledgements; it may or may not survive.
    Indeterminate {
        /// Acknowledgements received, counting the coordinator.
        acks: usize,
        /// Acknowledgements needed.
        needed: usize,
    },
    /// A get timed out with fewer than R replies.
    Unavailable {
        /// Replies received, counting the coordinator.
        replies: usize,
        /// Replies needed.
        needed: usize,
    },
    /// The request was refused and changed nothing.
    Rejected(RequestError),
}

/// The peer protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Msg {
    /// A client request sent on to a node of the key's preference list.
    Forward {
        /// The origin's request id.
        req: RequestId,
        /// The request.
        op: ClientOp,
    },
    /// The coordinator's answer to a forwarded request.
    ForwardReply {
        /// The origin's request id.
        req: RequestId,
        /// The answer.
        reply: ClientReply,
    },
    /// Merge `siblings` into primary data, or, when `intended` names another node, into the hint
    /// kept for it. With an `op`, acknowledge once durable; without, it is a read repair.
    Store {
        /// The operation to acknowledge, if any.
        op: Option<OpId>,
        /// The key.
        key: Key,
        /// The coordinator's whole sibling set for the key.
        siblings: Siblings,
        /// The primary this copy stands in for, when the receiver is a fallback.
        intended: Option<NodeId>,
    },
    /// The `Store` for `op` is durable.
    StoreAck {
        /// The operation.
        op: OpId,
    },
    /// Send back what you hold for `key` (the hint for `intended`, when given).
    Fetch {
        /// The operation.
        op: OpId,
        /// The key.
        key: Key,
        /// The primary this node stands in for, when it is a fallback.
        intended: Option<NodeId>,
    },
    /// Answer to `Fetch`.
    FetchReply {
        /// The operation.
        op: OpId,
        /// What the replica holds.
        siblings: Siblings,
    },
    /// Hinted handoff: a fallback delivers what it kept for the receiver.
    Handoff {
        /// The key.
        key: Key,
        /// The hint's siblings.
        siblings: Siblings,
    },
    /// The receiver made exactly these siblings durable; the hint may go if it is still the same.
    HandoffAck {
        /// The key.
        key: Key,
        /// The siblings made durable.
        siblings: Siblings,
    },
    /// Liveness probe to a suspected node.
    Ping,
    /// Answer to `Ping`.
    Pong,
}

impl Msg {
    /// The message's variant name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Forward { .. } => "Forward",
            Msg::ForwardReply { .. } => "ForwardReply",
            Msg::Store { .. } => "Store",
            Msg::StoreAck { .. } => "StoreAck",
            Msg::Fetch { .. } => "Fetch",
            Msg::FetchReply { .. } => "FetchReply",
            Msg::Handoff { .. } => "Handoff",
            Msg::HandoffAck { .. } => "HandoffAck",
            Msg::Ping => "Ping",
            Msg::Pong => "Pong",
        }
    }
    /// The key the message is about, if it names one.
    pub fn key(&self) -> Option<&Key> {
        match self {
            Msg::Forward { op, .. } => Some(&op.key),
            Msg::Store { key, .. }
            | Msg::Fetch { key, .. }
            | Msg::Handoff { key, .. }
            | Msg::HandoffAck { key, .. } => Some(key),
            Msg::ForwardReply { .. }
            | Msg::StoreAck { .. }
            | Msg::FetchReply { .. }
            | Msg::Ping
            | Msg::Pong => None,
        }
    }

    /// At least the most items any one sequence of the message holds (see [`crate::wire`]): a
    /// set's versions, a read's values, a context's entries (counted whole: its clock and its
    /// runs). A message whose longest sequence is within [`crate::Limits::peer_sequence_max`]
    /// decodes under that bound.
    pub fn longest_sequence(&self) -> usize {
        let set = |s: &Siblings| {
            let pasts = s.versions().iter().map(|v| v.past.len());
            pasts.max().unwrap_or(0).max(s.len())
        };
        match self {
            Msg::Forward { op, .. } => match &op.action {
                Action::Put { context, .. } => context.len(),
                Action::Get => 0,
            },
            Msg::ForwardReply { reply, .. } => match reply {
                ClientReply::Read { context, values } => context.len().max(values.len()),
                ClientReply::Written { context, .. } => context.len(),
                _ => 0,
            },
            Msg::Store { siblings, .. }
            | Msg::FetchReply { siblings, .. }
            | Msg::Handoff { siblings, .. }
            | Msg::HandoffAck { siblings, .. } => set(siblings),
            Msg::StoreAck { .. } | Msg::Fetch { .. } | Msg::Ping | Msg::Pong => 0,
        }
    }
}
