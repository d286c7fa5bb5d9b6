//! Cluster configuration, validated once when it is built (paper §4.5: N, R, W).
//!
//! [`ConfigParams`] is the plain, editable form; [`Config::new`] checks it and yields a [`Config`]
//! that the rest of the core can trust without re-checking.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// Timers of the protocol, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timeouts {
    /// How long a coordinator waits for R or W replies before it answers without them.
    pub request_ms: u64,
    /// Under sloppy quorum, how long a coordinator waits before it suspects silent targets and
    /// sends the request on to the next fallbacks. Must not exceed `request_ms`.
    pub sloppy_retry_ms: u64,
    /// Period of the background tick: hinted handoff and probes of suspected nodes.
    pub tick_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { request_ms: 1_000, sloppy_retry_ms: 300, tick_ms: 500 }
    }
}

/// Bounds on what one request or one key may hold. Each bound names what it limits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Limits {
    /// Largest value a put may carry.
    pub value_bytes_max: usize,
    /// Largest key.
    pub key_bytes_max: usize,
    /// Most siblings a key may hold after a put; a put that would exceed it is rejected.
    pub siblings_max: usize,
    /// Most entries a context a client sends back may have; every context a node hands out fits
    /// (see `Context::capped`).
    pub context_entries_max: usize,
    /// Most hints delivered per tick.
    pub handoff_batch_max: usize,
    /// Most client operations a node coordinates or forwards at once.
    pub pending_ops_max: usize,
    /// How many finished operations a coordinator remembers, so that a duplicate of a request
    /// it already answered is ignored instead of applied again. 0 remembers none: only for a
    /// transport that never delivers a request twice (the model checker's non-duplicating
    /// networks, where the memory would split states without ever deciding anything).
    pub finished_ops_remembered: usize,
}

/// The limits every node of a cluster must share: those a node holds its peers' messages to (a
/// key or version outside them is dropped as malformed, see `Node::handle`), and `siblings_max`,
/// which with them sizes the largest message a sibling set needs. A node configured with other
/// values would drop its peers' copies, or they its. [`Limits::shared_with_peers`] gives their
/// values in this order.
pub const LIMITS_SHARED_WITH_PEERS: [&str; 4] =
    ["value_bytes_max", "key_bytes_max", "siblings_max", "context_entries_max"];

/// The fewest times `siblings_max` versions a sibling set in a peer's message may hold (see
/// [`Limits::peer_sequence_max`]).
pub const PEER_SETS_OVER_SIBLINGS_MAX: usize = 4;

impl Limits {
    /// The values of [`LIMITS_SHARED_WITH_PEERS`], in that order.
    pub fn shared_with_peers(&self) -> [usize; 4] {
        [self.value_bytes_max, self.key_bytes_max, self.siblings_max, self.context_entries_max]
    }

    /// The most items a sequence of a peer's message may hold in a cluster of `n` replicas per
    /// key (see [`crate::wire`]): a sibling set (and a read of as many values) of `siblings_max`
    /// versions times `n` or [`PEER_SETS_OVER_SIBLINGS_MAX`], whichever is more, or a context of
    /// `context_entries_max` entries if that is more. A put keeps a key within `siblings_max` at
    /// its coordinator, but each of a key's `n` coordinators may add that many versions the
    /// others have not seen (a partition), and a coordinator that lost its own latest versions
    /// in a crash (under a policy that does not sync each write) may add more; a larger set is
    /// neither sent nor taken from a peer. Made of what peers compare at the handshake (N and
    /// the limits), so every node of a cluster holds the others to the same bound.
    pub fn peer_sequence_max(&self, n: usize) -> usize {
        let sets = self.siblings_max.saturating_mul(n.max(PEER_SETS_OVER_SIBLINGS_MAX));
        sets.max(self.context_entries_max)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            value_bytes_max: 1 << 20,
            key_bytes_max: 1 << 10,
            siblings_max: 64,
            context_entries_max: 256,
            handoff_batch_max: 64,
            pending_ops_max: 10_000,
            finished_ops_remembered: 1024,
        }
    }
}

/// The editable form of a configuration; turn it into a [`Config`] with [`Config::new`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConfigParams {
    /// The storage nodes of the cluster.
    pub nodes: BTreeSet<NodeId>,
    /// Replicas per key.
    pub n: usize,
    /// Replies a get waits for.
    pub r: usize,
    /// Acknowledgements a put waits for.
    pub w: usize,
    /// Q, the number of equal partitions of the hash space: a power of two, at least the node count.
    pub partitions: u32,
    /// Whether writes and reads may use fallback nodes past the first N (paper §4.6).
    pub sloppy_quorum: bool,
    /// Vector-clock truncation (paper §4.4): keep at most this many entries per clock, dropping the
    /// oldest by timestamp. `None` (the default) never truncates. Truncation can make a descendant
    /// look concurrent (spurious siblings) or, worse, a stale version look newer. A coordinator
    /// takes its next counter for a key from the key's versions, and once every version naming a
    /// dropped actor is replaced they name none of its counters: so a node records its highest
    /// counter for a key apart (`Store::issued`) before it saves a merge that would forget it,
    /// and never issues one twice. Use it only with a size far above the number of coordinators
    /// a key ever sees.
    pub clock_entries_max: Option<usize>,
    /// Protocol timers.
    pub timeouts: Timeouts,
    /// Request and storage bounds.
    pub limits: Limits,
}

impl ConfigParams {
    /// Defaults for a cluster of `nodes`: N=3 (or fewer nodes), R=W=majority, Q=64 (or the next
    /// power of two above the node count), sloppy quorum on.
    pub fn for_nodes(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        let n = nodes.len().clamp(1, 3);
        let q = (nodes.len().max(1) as u32).next_power_of_two().max(64);
        ConfigParams {
            nodes,
            n,
            r: n / 2 + 1,
            w: n / 2 + 1,
            partitions: q,
            sloppy_quorum: true,
            clock_entries_max: None,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// There must be at least one node.
    #[error("the cluster needs at least one node")]
    NoNodes,
    /// N must be between 1 and the number of nodes.
    #[error("n = {n} must be between 1 and the node count {nodes}")]
    BadN {
        /// The N asked for.
        n: usize,
        /// The node count.
        nodes: usize,
    },
    /// R and W must be between 1 and N.
    #[error("{which} = {value} must be between 1 and n = {n}")]
    BadQuorum {
        /// "r" or "w".
        which: &'static str,
        /// The value asked for.
        value: usize,
        /// N.
        n: usize,
    },
    /// Q must be a power of two, at least the node count and at most [`PARTITIONS_MAX`].
    #[error(
        "partitions = {partitions} must be a power of two, at least the node count {nodes} \
         and at most {max}",
        max = PARTITIONS_MAX
    )]
    BadPartitions {
        /// The Q asked for.
        partitions: u32,
        /// The node count.
        nodes: usize,
    },
    /// Every timeout must be in 1..=[`TIMEOUT_MS_MAX`] ms, and the sloppy retry no longer than the
    /// request timeout.
    #[error("timeout {which} = {value_ms} ms is invalid: {why}")]
    BadTimeout {
        /// Which timeout.
        which: &'static str,
        /// Its value.
        value_ms: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Every limit must be positive, and `context_entries_max` at least 2.
    #[error("limit {which} must be at least {min}")]
    BadLimit {
        /// Which limit.
        which: &'static str,
        /// Its least value.
        min: usize,
    },
}

/// The most partitions (Q) a ring may have: the ring keeps a preference list per partition.
pub const PARTITIONS_MAX: u32 = 1 << 16;
/// The longest configured timeout: the longest a single request may ask for.
pub const TIMEOUT_MS_MAX: u64 = crate::node::REQUEST_TIMEOUT_MS_MAX;

/// A validated configuration. Construct with [`Config::new`]; read through the accessors.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Config {
    params: ConfigParams,
    #[cfg(feature = "mutants")]
    mutant: Option<crate::mutant::Mutant>,
}

impl Config {
    /// Checks `params`: 1 ≤ R, W ≤ N ≤ nodes; Q a power of two, nodes ≤ Q ≤ [`PARTITIONS_MAX`];
    /// timeouts in 1..=[`TIMEOUT_MS_MAX`] ms; limits > 0 (`context_entries_max` at least 2).
    pub fn new(params: ConfigParams) -> Result<Config, ConfigError> {
        let nodes = params.nodes.len();
        if nodes == 0 {
            return Err(ConfigError::NoNodes);
        }
        if params.n == 0 || params.n > nodes {
            return Err(ConfigError::BadN { n: params.n, nodes });
        }
        for (which, value) in [("r", params.r), ("w", params.w)] {
            if value == 0 || value > params.n {
                return Err(ConfigError::BadQuorum { which, value, n: params.n });
            }
        }
        if !params.partitions.is_power_of_two()
            || (params.partitions as usize) < nodes
            || params.partitions > PARTITIONS_MAX
        {
            return Err(ConfigError::BadPartitions { partitions: params.partitions, nodes });
        }
        let t = &params.timeouts;
        for (which, value_ms) in [
            ("request_ms", t.request_ms),
            ("sloppy_retry_ms", t.sloppy_retry_ms),
            ("tick_ms", t.tick_ms),
        ] {
            if value_ms == 0 {
                return Err(ConfigError::BadTimeout { which, value_ms, why: "must be > 0" });
            }
            if value_ms > TIMEOUT_MS_MAX {
                return Err(ConfigError::BadTimeout {
                    which,
                    value_ms,
                    why: "must not exceed TIMEOUT_MS_MAX = 60000 ms",
                });
            }
        }
        if t.sloppy_retry_ms > t.request_ms {
            return Err(ConfigError::BadTimeout {
                which: "sloppy_retry_ms",
                value_ms: t.sloppy_retry_ms,
                why: "must not exceed request_ms",
            });
        }
        let l = &params.limits;
        for (which, value) in [
            ("value_bytes_max", l.value_bytes_max),
            ("key_bytes_max", l.key_bytes_max),
            ("siblings_max", l.siblings_max),
            ("context_entries_max", l.context_entries_max),
            ("handoff_batch_max", l.handoff_batch_max),
            ("pending_ops_max", l.pending_ops_max),
        ] {
            if value == 0 {
                return Err(ConfigError::BadLimit { which, min: 1 });
            }
        }
        // A read's context of one entry names one sibling, so writing it back replaces one and
        // adds one: siblings from two coordinators could never be resolved.
        if l.context_entries_max < 2 {
            return Err(ConfigError::BadLimit { which: "context_entries_max", min: 2 });
        }
        if params.clock_entries_max == Some(0) {
            return Err(ConfigError::BadLimit { which: "clock_entries_max", min: 1 });
        }
        Ok(Config {
            params,
            #[cfg(feature = "mutants")]
            mutant: None,
        })
    }

    /// The parameters this configuration was built from.
    pub fn params(&self) -> &ConfigParams {
        &self.params
    }
    /// The storage nodes.
    pub fn nodes(&self) -> &BTreeSet<NodeId> {
        &self.params.nodes
    }
    /// Replicas per key.
    pub fn n(&self) -> usize {
        self.params.n
    }
    /// Default read quorum.
    pub fn r(&self) -> usize {
        self.params.r
    }
    /// Default write quorum.
    pub fn w(&self) -> usize {
        self.params.w
    }
    /// The answers `op` needs, the coordinator's own included: the R (for a get) or W (for a put
    /// or delete) it asks for, else the configured one.
    pub fn needed(&self, op: &crate::msg::ClientOp) -> usize {
        if op.is_write() {
            op.w.unwrap_or(self.w())
        } else {
            op.r.unwrap_or(self.r())
        }
    }
    /// Q.
    pub fn partitions(&self) -> u32 {
        self.params.partitions
    }
    /// Whether sloppy quorum is on.
    pub fn sloppy_quorum(&self) -> bool {
        self.params.sloppy_quorum
    }
    /// Clock truncation bound, if any.
    pub fn clock_entries_max(&self) -> Option<usize> {
        self.params.clock_entries_max
    }
    /// Protocol timers.
    pub fn timeouts(&self) -> &Timeouts {
        &self.params.timeouts
    }
    /// Request and storage bounds.
    pub fn limits(&self) -> &Limits {
        &self.params.limits
    }
    /// This configuration running the seeded bug `mutant` (model checking only).
    #[cfg(feature = "mutants")]
    pub fn with_mutant(mut self, mutant: Option<crate::mutant::Mutant>) -> Self {
        self.mutant = mutant;
        self
    }
    /// The seeded bug this configuration runs, if any.
    #[cfg(feature = "mutants")]
    pub fn mutant(&self) -> Option<crate::mutant::Mutant> {
        self.mutant
    }
}
