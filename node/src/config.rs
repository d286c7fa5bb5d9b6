//! Node configuration: command-line flags, an optional TOML file, and the defaults.
//!
//! Precedence is flag > file > default. [`NodeConfig::protocol`] turns the result into the core's
//! validated [`dynamo_model::Config`], so every protocol bound is checked in one place.

use crate::connection::{frame_bytes_needed, FRAME_BYTES_CAP};
use crate::error::NodeError;
use clap::{Args, ValueEnum};
use dynamo_model::{Config, ConfigParams, Limits, NodeId, Timeouts, TIMEOUT_MS_MAX};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The cluster name peers must agree on unless configured otherwise.
pub const DEFAULT_CLUSTER: &str = "dynamo";

/// Longest cluster name: it travels in every handshake, whose first frame is bounded
/// (`connection::HELLO_BYTES_MAX`).
pub const CLUSTER_NAME_BYTES_MAX: usize = 256;

/// Default interval between syncs under [`SyncPolicy::Interval`].
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 100;
/// Default number of threads a node runs on (see [`NodeConfig::threads`]).
pub const DEFAULT_THREADS: usize = 1;
/// Most threads a node may be given.
pub const THREADS_MAX: usize = 256;
/// Default time an HTTP client has to send a request's head, and its body (see
/// [`NodeConfig::http_idle_timeout_ms`]).
pub const DEFAULT_HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;

/// When the driver makes store writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Group commit: every batch's writes are synced before any of its effects leave the process.
    /// A crash loses no acknowledged write.
    #[default]
    Always,
    /// Sync every `sync_interval_ms`; effects leave at once. A crash loses at most one interval.
    Interval,
    /// Leave syncing to the storage engine's own background flush.
    None,
}

impl std::fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Interval => "interval",
            SyncPolicy::None => "none",
        })
    }
}

/// A peer given as `ID=HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's node id.
    pub id: u16,
    /// Where its peer listener is.
    pub addr: SocketAddr,
}

impl std::str::FromStr for PeerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, addr) = s.split_once('=').ok_or_else(|| format!("peer {s:?} is not ID=ADDR"))?;
        let id = id.trim().parse().map_err(|e| format!("peer id {id:?}: {e}"))?;
        let addr = addr.trim().parse().map_err(|e| format!("peer address {addr:?}: {e}"))?;
        Ok(PeerSpec { id, addr })
    }
}

/// Flags of `dynamo serve`. Every field is optional so that a TOML file can supply it.
#[derive(Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Cluster name (1 to 256 bytes); peers with another name are refused.
    #[arg(long)]
    pub cluster: Option<String>,
    /// File holding the cluster's shared secret (at least 16 bytes; surrounding whitespace is
    /// ignored). Peers prove they know it in the handshake, and those that do not are refused.
    /// Without it any host that can reach the peer port can act as a peer.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// This node's id (a small integer, unique in the cluster).
    #[arg(long)]
    pub id: Option<u16>,
    /// Address the peer (node-to-node) listener binds.
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// Address the HTTP API binds.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Directory for this node's data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Another node of the cluster, as ID=HOST:PORT (repeat for each).
    #[arg(long = "peer")]
    pub peers: Vec<PeerSpec>,
    /// Replicas per key.
    #[arg(long)]
    pub n: Option<usize>,
    /// Default read quorum.
    #[arg(long)]
    pub r: Option<usize>,
    /// Default write quorum.
    #[arg(long)]
    pub w: Option<usize>,
    /// Number of partitions (a power of two).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// When writes are made durable.
    #[arg(long, value_enum)]
    pub sync: Option<SyncPolicy>,
    /// Sync period under `--sync interval`.
    #[arg(long)]
    pub sync_interval_ms: Option<u64>,
    /// Threads the node runs on (1: driver, transport and HTTP share one thread).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Time an HTTP client has to send a request's head (from when its connection opens or
    /// its previous answer was written) and, separately, its body; an idle keep-alive
    /// connection closes after it.
    #[arg(long)]
    pub http_idle_timeout_ms: Option<u64>,
    /// Default request timeout.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Sloppy-quorum retry delay.
    #[arg(long)]
    pub sloppy_retry_ms: Option<u64>,
    /// Background tick (hinted handoff, probes).
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Largest value accepted.
    #[arg(long)]
    pub value_bytes_max: Option<usize>,
    /// Largest key accepted.
    #[arg(long)]
    pub key_bytes_max: Option<usize>,
}

/// The TOML file's shape: the same settings as the flags, peers as a table `id = "addr"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    cluster: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    id: Option<u16>,
    peer_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    peers: BTreeMap<String, SocketAddr>,
    n: Option<usize>,
    r: Option<usize>,
    w: Option<usize>,
    partitions: Option<u32>,
    sync: Option<SyncPolicy>,
    sync_interval_ms: Option<u64>,
    threads: Option<usize>,
    http_idle_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    sloppy_retry_ms: Option<u64>,
    tick_ms: Option<u64>,
    value_bytes_max: Option<usize>,
    key_bytes_max: Option<usize>,
}

/// Fewest bytes a cluster secret may have.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

/// The secret the nodes of a cluster share: peers prove in the handshake that they know it
/// (see [`crate::connection`]). Never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClusterSecret(std::sync::Arc<[u8]>);

impl ClusterSecret {
    /// No secret: peers then prove only that they have none either.
    pub fn none() -> ClusterSecret {
        ClusterSecret::default()
    }

    /// A fresh random secret (for a cluster whose nodes share one process, as `dynamo dev`): 32
    /// random bytes in hex, so that written to a file it reads back the same.
    pub fn random() -> ClusterSecret {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterSecret(hex.as_bytes().into())
    }

    /// The secret in the file at `path`, without surrounding whitespace.
    pub fn read(path: &std::path::Path) -> Result<ClusterSecret, NodeError> {
        let bytes = std::fs::read(path).map_err(|e| {
            NodeError::Config(format!("cannot read the cluster secret {}: {e}", path.display()))
        })?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < CLUSTER_SECRET_BYTES_MIN {
            return Err(NodeError::Config(format!(
                "the cluster secret in {} has {} bytes; it needs at least {CLUSTER_SECRET_BYTES_MIN}",
                path.display(),
                trimmed.len()
            )));
        }
        Ok(ClusterSecret(trimmed.into()))
    }

    /// Whether there is no secret.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.len() {
            0 => f.write_str("ClusterSecret(none)"),
            n => write!(f, "ClusterSecret({n} bytes)"),
        }
    }
}

/// A node's complete, resolved settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Cluster name checked in the peer handshake.
    pub cluster: String,
    /// The secret peers prove they share in the handshake (empty: none).
    pub cluster_secret: ClusterSecret,
    /// This node.
    pub id: NodeId,
    /// Peer listener address.
    pub peer_listen: SocketAddr,
    /// HTTP listener address.
    pub http_listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The other nodes and their peer addresses.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// When writes are made durable.
    pub sync: SyncPolicy,
    /// Sync period under [`SyncPolicy::Interval`].
    pub sync_interval_ms: u64,
    /// Threads of the node's own runtime. With 1 (the default) the driver, the peer transport and
    /// the HTTP API are tasks of one thread and hand work to each other without waking another
    /// thread; more threads parse HTTP in parallel but pay a cross-thread wake-up per hand-off.
    pub threads: usize,
    /// Time an HTTP client has to send a request's head, and its body; an idle keep-alive
    /// connection closes after it.
    pub http_idle_timeout_ms: u64,
    /// The protocol parameters (node set, N/R/W, Q, timeouts, limits).
    pub params: ConfigParams,
}

impl NodeConfig {
    /// Resolves flags over the optional file over defaults.
    pub fn from_args(args: &ServeArgs) -> Result<NodeConfig, NodeError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    NodeError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let id = args
            .id
            .or(file.id)
            .ok_or_else(|| NodeError::Config("a node id is required (--id)".into()))?;
        let mut peers = BTreeMap::new();
        for (k, addr) in &file.peers {
            let pid: u16 =
                k.parse().map_err(|e| NodeError::Config(format!("peer id {k:?}: {e}")))?;
            peers.insert(NodeId(pid), *addr);
        }
        for p in &args.peers {
            peers.insert(NodeId(p.id), p.addr);
        }
        peers.remove(&NodeId(id));
        let nodes = peers.keys().copied().chain([NodeId(id)]);
        let mut params = ConfigParams::for_nodes(nodes);
        let pick = |a: Option<usize>, b: Option<usize>, d: usize| a.or(b).unwrap_or(d);
        params.n = pick(args.n, file.n, params.n);
        // Unset quorums are a majority of N, the N given or the default one.
        let majority = params.n / 2 + 1;
        params.r = pick(args.r, file.r, majority);
        params.w = pick(args.w, file.w, majority);
        params.partitions = args.partitions.or(file.partitions).unwrap_or(params.partitions);
        let t = Timeouts::default();
        params.timeouts = Timeouts {
            request_ms: args.request_timeout_ms.or(file.request_timeout_ms).unwrap_or(t.request_ms),
            sloppy_retry_ms: args
                .sloppy_retry_ms
                .or(file.sloppy_retry_ms)
                .unwrap_or(t.sloppy_retry_ms),
            tick_ms: args.tick_ms.or(file.tick_ms).unwrap_or(t.tick_ms),
        };
        let l = Limits::default();
        params.limits.value_bytes_max =
            pick(args.value_bytes_max, file.value_bytes_max, l.value_bytes_max);
        params.limits.key_bytes_max = pick(args.key_bytes_max, file.key_bytes_max, l.key_bytes_max);
        // The default ports are 9000 + id (peers) and 8000 + id (HTTP), for ids that leave room.
        let default_port = |base: u16, what: &str| {
            base.checked_add(id).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).ok_or_else(|| {
                NodeError::Config(format!("node id {id} leaves no default {what} port: set it"))
            })
        };
        let cfg = NodeConfig {
            cluster: args
                .cluster
                .clone()
                .or(file.cluster)
                .unwrap_or_else(|| DEFAULT_CLUSTER.to_string()),
            cluster_secret: match args
                .cluster_secret_file
                .as_ref()
                .or(file.cluster_secret_file.as_ref())
            {
                Some(path) => ClusterSecret::read(path)?,
                None => ClusterSecret::none(),
            },
            id: NodeId(id),
            peer_listen: match args.peer_listen.or(file.peer_listen) {
                Some(a) => a,
                None => default_port(9000, "peer")?,
            },
            http_listen: match args.http_listen.or(file.http_listen) {
                Some(a) => a,
                None => default_port(8000, "HTTP")?,
            },
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(format!("data-{id}"))),
            peers,
            sync: args.sync.or(file.sync).unwrap_or_default(),
            sync_interval_ms: args
                .sync_interval_ms
                .or(file.sync_interval_ms)
                .unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
            threads: args.threads.or(file.threads).unwrap_or(DEFAULT_THREADS),
            http_idle_timeout_ms: args
                .http_idle_timeout_ms
                .or(file.http_idle_timeout_ms)
                .unwrap_or(DEFAULT_HTTP_IDLE_TIMEOUT_MS),
            params,
        };
        if cfg.cluster.is_empty() || cfg.cluster.len() > CLUSTER_NAME_BYTES_MAX {
            return Err(NodeError::Config(format!(
                "the cluster name has {} bytes; it needs 1..={CLUSTER_NAME_BYTES_MAX}",
                cfg.cluster.len()
            )));
        }
        if !(1..=THREADS_MAX).contains(&cfg.threads) {
            return Err(NodeError::Config(format!("threads must be 1..={THREADS_MAX}")));
        }
        cfg.protocol()?;
        let l = &cfg.params.limits;
        if frame_bytes_needed(l) > FRAME_BYTES_CAP {
            return Err(NodeError::Config(format!(
                "siblings_max {} versions of value_bytes_max {} with pasts of \
                 context_entries_max {} do not fit in a peer frame ({FRAME_BYTES_CAP} bytes): \
                 a full sibling set could never be replicated",
                l.siblings_max, l.value_bytes_max, l.context_entries_max
            )));
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&cfg.http_idle_timeout_ms) {
            return Err(NodeError::Config(format!(
                "http_idle_timeout_ms must be 1..={TIMEOUT_MS_MAX}"
            )));
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&cfg.sync_interval_ms) {
            return Err(NodeError::Config(format!(
                "sync_interval_ms must be 1..={TIMEOUT_MS_MAX}"
            )));
        }
        Ok(cfg)
    }

    /// The validated protocol configuration. A refusal names the settings as the node's flags
    /// and file do: the core's `request_ms` is the node's `request_timeout_ms`.
    pub fn protocol(&self) -> Result<Config, NodeError> {
        Config::new(self.params.clone()).map_err(|e| {
            NodeError::Config(e.to_string().replace("request_ms", "request_timeout_ms"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret comes from its file without surrounding whitespace, from a flag or the TOML
    /// file; a short or unreadable one is refused; none is no secret.
    #[test]
    fn the_cluster_secret_is_read_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "  0123456789abcdef0123\n").expect("write");
        let toml = dir.path().join("node.toml");
        std::fs::write(&toml, format!("id = 1\ncluster_secret_file = {:?}\n", secret))
            .expect("write");
        let from_file = ServeArgs { config: Some(toml), ..ServeArgs::default() };
        let from_flag = ServeArgs {
            id: Some(1),
            cluster_secret_file: Some(secret.clone()),
            ..ServeArgs::default()
        };
        for args in [from_file, from_flag] {
            let cfg = NodeConfig::from_args(&args).expect("valid");
            assert_eq!(cfg.cluster_secret.bytes(), b"0123456789abcdef0123");
            assert_eq!(format!("{:?}", cfg.cluster_secret), "ClusterSecret(20 bytes)");
        }
        let none = NodeConfig::from_args(&ServeArgs { id: Some(1), ..ServeArgs::default() });
        assert!(none.expect("valid").cluster_secret.is_none());
        std::fs::write(&secret, "short\n").expect("write");
        let short =
            ServeArgs { id: Some(1), cluster_secret_file: Some(secret), ..ServeArgs::default() };
        let e = NodeConfig::from_args(&short).expect_err("too short").to_string();
        assert!(e.contains("has 5 bytes; it needs at least 16"), "{e}");
        let missing = dir.path().join("missing");
        let missing =
            ServeArgs { id: Some(1), cluster_secret_file: Some(missing), ..ServeArgs::default() };
        let e = NodeConfig::from_args(&missing).expect_err("unreadable").to_string();
        assert!(e.contains("cannot read the cluster secret"), "{e}");
    }

    #[test]
    fn flags_override_file_and_peers_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "id = 1\nn = 3\nr = 1\nsync = \"none\"\n[peers]\n2 = \"127.0.0.1:9002\"\n3 = \"127.0.0.1:9003\"\n",
        )
        .expect("write");
        let args = ServeArgs { config: Some(path), r: Some(2), ..ServeArgs::default() };
        let cfg = NodeConfig::from_args(&args).expect("valid");
        assert_eq!(cfg.id, NodeId(1));
        assert_eq!(cfg.params.r, 2);
        assert_eq!(cfg.sync, SyncPolicy::None);
        assert_eq!(cfg.peers.len(), 2);
        assert_eq!(cfg.params.nodes.len(), 3);
    }

    #[test]
    fn unknown_file_keys_and_bad_quorums_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "id = 1\nbogus = 3\n").expect("write");
        let args = ServeArgs { config: Some(path), ..ServeArgs::default() };
        assert!(NodeConfig::from_args(&args).is_err());
        let args = ServeArgs { id: Some(1), w: Some(2), ..ServeArgs::default() };
        assert!(NodeConfig::from_args(&args).is_err(), "w=2 with one node");
        let args = ServeArgs { id: Some(1), threads: Some(0), ..ServeArgs::default() };
        assert!(NodeConfig::from_args(&args).is_err(), "zero threads");
        let args = ServeArgs { id: Some(1), threads: Some(4), ..ServeArgs::default() };
        assert_eq!(NodeConfig::from_args(&args).map(|c| c.threads).ok(), Some(4));
    }

    fn five_nodes() -> ServeArgs {
        let peers = (2..=5)
            .map(|id| PeerSpec { id, addr: SocketAddr::from(([127, 0, 0, 1], 9000 + id)) })
            .collect();
        ServeArgs { id: Some(1), peers, ..ServeArgs::default() }
    }

    #[test]
    fn unset_quorums_are_a_majority_of_the_n_given() {
        let cfg = NodeConfig::from_args(&five_nodes()).expect("valid");
        assert_eq!((cfg.params.n, cfg.params.r, cfg.params.w), (3, 2, 2));
        let cfg = NodeConfig::from_args(&ServeArgs { n: Some(5), ..five_nodes() }).expect("valid");
        assert_eq!((cfg.params.n, cfg.params.r, cfg.params.w), (5, 3, 3));
        let cfg = NodeConfig::from_args(&ServeArgs { n: Some(1), ..five_nodes() }).expect("valid");
        assert_eq!((cfg.params.n, cfg.params.r, cfg.params.w), (1, 1, 1));
        let args = ServeArgs { n: Some(5), r: Some(1), ..five_nodes() };
        let cfg = NodeConfig::from_args(&args).expect("valid");
        assert_eq!((cfg.params.r, cfg.params.w), (1, 3), "a quorum given is kept");
    }

    #[test]
    fn out_of_range_settings_are_refused_with_the_reason() {
        let refused = |args: ServeArgs| match NodeConfig::from_args(&args) {
            Err(NodeError::Config(why)) => why,
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {args:?}"),
        };
        let why = refused(ServeArgs { id: Some(60_000), ..ServeArgs::default() });
        assert!(why.contains("no default peer port"), "{why}");
        let listen = |p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        let args = ServeArgs { id: Some(60_000), peer_listen: listen(1), ..ServeArgs::default() };
        assert!(refused(args).contains("no default HTTP port"));
        let args = ServeArgs {
            id: Some(60_000),
            peer_listen: listen(1),
            http_listen: listen(2),
            ..ServeArgs::default()
        };
        assert!(NodeConfig::from_args(&args).is_ok(), "an id past the default ports, ports given");
        let why = refused(ServeArgs { value_bytes_max: Some(8 << 20), ..five_nodes() });
        assert!(why.contains("do not fit in a peer frame"), "{why}");
        let why = refused(ServeArgs { sync_interval_ms: Some(u64::MAX), ..five_nodes() });
        assert!(why.contains("sync_interval_ms"), "{why}");
        let why = refused(ServeArgs { request_timeout_ms: Some(u64::MAX), ..five_nodes() });
        assert!(why.contains("request_timeout_ms = "), "{why}");
        let args = ServeArgs { sloppy_retry_ms: Some(2_000), ..five_nodes() };
        let why = refused(args);
        assert!(why.ends_with("must not exceed request_timeout_ms"), "{why}");
        let why = refused(ServeArgs { partitions: Some(1 << 31), ..five_nodes() });
        assert!(why.contains("partitions"), "{why}");
        for cluster in [String::new(), "c".repeat(CLUSTER_NAME_BYTES_MAX + 1)] {
            let why = refused(ServeArgs { cluster: Some(cluster), ..five_nodes() });
            assert!(why.contains("cluster name has"), "{why}");
        }
        let cluster = Some("c".repeat(CLUSTER_NAME_BYTES_MAX));
        assert!(NodeConfig::from_args(&ServeArgs { cluster, ..five_nodes() }).is_ok());
    }
}
