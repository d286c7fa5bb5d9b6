//! Peer connections: length-delimited postcard frames over TCP, with a handshake.
//!
//! Each node dials one outbound connection to every peer and sends its messages on it; it reads
//! peers' messages from the connections they dialled in. A connection starts with a [`Hello`] each
//! way carrying the cluster name, the protocol version, the sender's node id and its
//! [`RingShape`] (N, partitions, members and the [`PeerLimits`]); the accepting side refuses
//! (closes, logging why, at most every [`REFUSALS_LOG_EVERY`]) any mismatch, or a node id that is
//! not a peer, and the dialling side refuses an answer from a node other than the one it meant to
//! reach.
//! Each hello also carries a fresh random nonce, and then each side sends a [`Proof`] that it
//! knows the cluster's secret (an HMAC-SHA256, under the secret, of the cluster name, both node
//! ids in the direction of the proof and both nonces), the dialler first and the accepting side
//! only once the dialler's proof checked out, and each refuses a peer whose proof does not
//! match. So only a host that knows the secret can act as a peer, a proof cannot be replayed on
//! another connection or reflected back, and the secret never crosses the wire. Nodes without a
//! secret prove only that they have none either. This authenticates the connection's start, not
//! its frames: the secret keeps out hosts that can reach the peer port, not a network that can
//! rewrite traffic (that needs a private network or a tunnel).
//!
//! Frames larger than the configured bound, or that do not decode, end the connection; nothing a
//! peer sends can make the node panic. Until the handshake is done the bound is that of a hello
//! ([`HELLO_BYTES_MAX`]). A node keeps one inbound connection per peer: a newer one from the same
//! peer replaces the older, so inbound connections hold at most one frame per peer. A lost
//! connection is redialled with exponential backoff between [`BACKOFF_MIN_MS`] and
//! [`BACKOFF_MAX_MS`]; one the peer closed (it stopped or restarted) is given up as soon as its
//! close arrives, not at the next write.
//!
//! The sending side of each peer is a [`PeerLink`]: the driver encodes its messages for that peer
//! into the link's buffer and, when it runs out of input, writes them to the socket itself with
//! one non-blocking call. The link's connection task ([`run_link`]) dials
//! and redials, and writes only what the socket would not take at once (rare on a healthy link).
//! So a message leaves without a hand-off to another task. The buffer is bounded
//! ([`OUTBOUND_QUEUE_MAX`] frames, [`OUTBOUND_BYTES_MAX`] bytes); past that the driver drops and
//! counts messages, as it does while the peer is unreachable for long: the protocol tolerates
//! loss. Frames still unwritten when a connection breaks are dropped and counted too. The buffer
//! and the writing under its lock are [`crate::outbox`], which the loom tests model-check.

use crate::config::ClusterSecret;
use crate::driver::DriverHandle;
use crate::metrics::NetStats;
use crate::outbox::{Bounds, Flushed, Outbox, Over};
pub use crate::outbox::{OUTBOUND_BYTES_MAX, OUTBOUND_QUEUE_MAX};
use crate::shutdown::ShutdownRx;
use bytes::Bytes;
use dynamo_model::config::LIMITS_SHARED_WITH_PEERS;
use dynamo_model::wire::with_sequence_max;
use dynamo_model::{Config, Limits, Msg, NodeId};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Version of the peer protocol; peers with another version are refused. (3: the hello carries
/// the ring's shape; 4: and a nonce, and proofs of the cluster secret follow the hellos; 5: the
/// contexts a node hands out are cut to the client limit, which is safe only among nodes that
/// record the counters a merge makes them forget; 6: the ring's shape carries the limits peers
/// must share; 7: a message's sequences are bounded, `Limits::peer_sequence_max`.)
pub const PROTOCOL_VERSION: u32 = 7;
/// Room for a message's envelope around its values.
pub const FRAME_SLACK_BYTES: usize = 64 * 1024;
/// The frame bound never exceeds this, whatever the limits say.
pub const FRAME_BYTES_CAP: usize = 256 << 20;
/// Largest hello accepted or sent. A hello is a few hundred bytes in practice; its ring's member
/// list, its only part that grows, takes at most three bytes a node, so this fits every one of
/// the 65,536 node ids with room for the cluster's name. Frames of the full size are allowed
/// only once the handshake has shown a peer of this cluster: an unknown dialler cannot make the
/// node hold a frame of up to [`FRAME_BYTES_CAP`] for it.
pub const HELLO_BYTES_MAX: usize = 256 * 1024;
/// Time allowed to connect and exchange hellos and proofs.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Inbound connections from one IP address that may be in their handshake at once. Connections
/// take a slot of the node's inbound bound from the moment they are accepted, and a handshake may
/// last [`HANDSHAKE_TIMEOUT_MS`]: without this, one host that opens connections and sends nothing
/// could hold every slot and keep the real peers out. A peer needs one at a time (two while it
/// replaces a broken connection); nodes sharing an address (a dev cluster on 127.0.0.1) a few.
pub const HANDSHAKES_PER_ADDRESS_MAX: usize = 16;

/// The inbound connections in their handshake, counted by the IP address they come from.
#[derive(Clone, Debug, Default)]
pub struct Handshaking(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One connection's place among [`Handshaking`]'s; given back when dropped.
#[derive(Debug)]
pub struct HandshakeSlot {
    of: Handshaking,
    ip: std::net::IpAddr,
}

impl Handshaking {
    /// A place for a connection from `ip`, unless [`HANDSHAKES_PER_ADDRESS_MAX`] from its
    /// address are in their handshake already. IPv6 addresses count by their /64 prefix (what
    /// one host is usually given), and an IPv4 address mapped into IPv6 as itself.
    pub fn slot(&self, ip: std::net::IpAddr) -> Option<HandshakeSlot> {
        let ip = match ip.to_canonical() {
            std::net::IpAddr::V6(v6) => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128)))
            }
            v4 => v4,
        };
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= HANDSHAKES_PER_ADDRESS_MAX {
            return None;
        }
        *n += 1;
        Some(HandshakeSlot { of: self.clone(), ip })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self.of.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
/// First redial delay.
pub const BACKOFF_MIN_MS: u64 = 50;
/// Longest redial delay.
pub const BACKOFF_MAX_MS: u64 = 2_000;
/// A connection that lasted this long before it broke was a working one: the link redials at
/// once and from the shortest delay. One that broke sooner (a peer that takes the connection and
/// then drops it, as two processes started under one node id make each other do) is redialled
/// after the delay, growing, as a failed dial is; not in a loop of full handshakes.
pub const CONNECTION_SETTLED_MS: u64 = 1_000;

/// The first frame each way. Its first three fields keep their place in every version, so that
/// a peer of another version is refused for its version, whatever follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster's name.
    pub cluster: String,
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The sender.
    pub node: NodeId,
    /// The sender's ring and limits: nodes that disagree on them place keys differently or drop
    /// each other's copies, so they are refused.
    pub ring: RingShape,
    /// Fresh for each connection: the other side's proof covers it, so no proof is good twice.
    pub nonce: [u8; NONCE_BYTES],
}

/// Bytes of a hello's nonce.
pub const NONCE_BYTES: usize = 16;

/// What a hello of this version carries after its leading fields.
#[derive(Deserialize)]
struct HelloTail {
    ring: RingShape,
    nonce: [u8; NONCE_BYTES],
}

/// The frame each side sends after the hellos: proof that it knows the cluster secret.
pub type Proof = [u8; 32];

/// The proof that the sender of `mine` knows `secret`, on the connection where the hellos were
/// `mine` and `theirs` (what a node sends after the hellos; public for tests that act as a peer).
pub fn proof_of(secret: &ClusterSecret, cluster: &str, mine: &Hello, theirs: &Hello) -> Proof {
    let me = (mine.node, &mine.nonce);
    proof(secret, cluster, me, (theirs.node, &theirs.nonce)).finalize().into_bytes().into()
}

/// The proof that `from` knows `secret`, for its connection with `to` on which `from` sent
/// `from_nonce` and `to` sent `to_nonce`.
fn proof(
    secret: &ClusterSecret,
    cluster: &str,
    (from, from_nonce): (NodeId, &[u8; NONCE_BYTES]),
    (to, to_nonce): (NodeId, &[u8; NONCE_BYTES]),
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"dynamo peer proof v4\0");
    mac.update(&(cluster.len() as u64).to_be_bytes());
    mac.update(cluster.as_bytes());
    mac.update(&from.0.to_be_bytes());
    mac.update(&to.0.to_be_bytes());
    mac.update(from_nonce);
    mac.update(to_nonce);
    mac
}

/// The leading fields of any version's [`Hello`].
#[derive(Deserialize)]
struct HelloHead {
    cluster: String,
    version: u32,
    node: NodeId,
}

/// What two nodes must agree on to place every key on the same preference list (N, the partition
/// count and the member set) and to take each other's copies (the [`PeerLimits`]). R and W may
/// differ: they are each coordinator's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingShape {
    /// Replicas per key.
    pub n: u32,
    /// Partitions of the ring.
    pub partitions: u32,
    /// The cluster's nodes, in order.
    pub nodes: Vec<NodeId>,
    /// The limits a node holds what its peers send to.
    pub limits: PeerLimits,
}

/// The values of the limits nodes must share ([`LIMITS_SHARED_WITH_PEERS`]), in that order:
/// nodes configured with others would drop each other's copies or frames, so they refuse each
/// other at the handshake instead, naming the setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLimits(pub Vec<u64>);

impl PeerLimits {
    /// The shared part of `limits`.
    pub fn of(limits: &Limits) -> PeerLimits {
        let wide = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        PeerLimits(limits.shared_with_peers().into_iter().map(wide).collect())
    }

    /// The settings in which `theirs` differs from these, as `name = theirs (this node: ours)`.
    fn differences(&self, theirs: &PeerLimits) -> Vec<String> {
        if theirs.0.len() != self.0.len() {
            return vec![format!("{} of them (this node: {})", theirs.0.len(), self.0.len())];
        }
        let named = LIMITS_SHARED_WITH_PEERS.iter().zip(self.0.iter().zip(&theirs.0));
        let differ = named.filter(|(_, (ours, theirs))| ours != theirs);
        differ
            .map(|(name, (ours, theirs))| format!("{name} = {theirs} (this node: {ours})"))
            .collect()
    }
}

impl RingShape {
    /// The shape of `config`'s ring.
    pub fn of(config: &Config) -> RingShape {
        RingShape {
            n: u32::try_from(config.n()).unwrap_or(u32::MAX),
            partitions: config.partitions(),
            nodes: config.nodes().iter().copied().collect(),
            limits: PeerLimits::of(config.limits()),
        }
    }
}

/// Nodes of a ring shown in a log line: a peer's hello may name thousands.
const RING_NODES_SHOWN: usize = 16;

impl std::fmt::Display for RingShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.nodes.iter().take(RING_NODES_SHOWN);
        let nodes: Vec<String> = shown.map(|n| n.0.to_string()).collect();
        write!(f, "n = {}, {} partitions, nodes {}", self.n, self.partitions, nodes.join(","))?;
        match self.nodes.len().checked_sub(RING_NODES_SHOWN) {
            Some(more) if more > 0 => write!(f, " and {more} more"),
            _ => Ok(()),
        }
    }
}

/// Characters of a peer's cluster name shown in a log line.
const CLUSTER_NAME_SHOWN: usize = 64;

/// A cluster name a peer sent, quoted for a log line: cut to [`CLUSTER_NAME_SHOWN`] characters,
/// with its length when longer (a hello may carry a quarter of a megabyte of it).
fn quoted_cluster(name: &str) -> String {
    match name.char_indices().nth(CLUSTER_NAME_SHOWN) {
        None => format!("{name:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &name[..cut], name.len()),
    }
}

/// What both directions of the transport need to know.
#[derive(Debug)]
pub struct PeerContext {
    /// Cluster name.
    pub cluster: String,
    /// This node.
    pub me: NodeId,
    /// The other nodes of the cluster.
    pub peers: BTreeSet<NodeId>,
    /// This node's ring, which peers must share.
    pub ring: RingShape,
    /// Largest frame accepted or sent.
    pub frame_bytes_max: usize,
    /// Most items of any one sequence of a message accepted or sent
    /// (`Limits::peer_sequence_max`, see `dynamo_model::wire`).
    pub sequence_max: usize,
    /// The secret peers must prove they know.
    pub secret: ClusterSecret,
    /// Counters.
    pub net: Arc<NetStats>,
    /// The inbound connection serving each peer, as the signal that ends it: a newer connection
    /// from the same peer replaces it (see [`serve_inbound`]).
    pub inbound: std::sync::Mutex<BTreeMap<NodeId, Arc<Notify>>>,
    /// Refused handshakes are logged at most once per [`REFUSALS_LOG_EVERY`] for each peer this
    /// node dials, and as often for all inbound ones together.
    pub refusals_logged: RefusalLogs,
}

/// Most bytes one context entry takes encoded (a cloud run: an actor and three varint `u64`s).
const CONTEXT_ENTRY_WIRE_BYTES_MAX: usize = 3 + 5 + 3 * 10;
/// Most bytes a version takes encoded besides its value and its past's entries (its dot, the
/// payload's tag and length, the past's two lengths).
const VERSION_WIRE_BYTES_MAX: usize = 64;

/// The frame a whole sibling set needs, unbounded (see [`frame_bytes_max`]): `siblings_max`
/// versions, each with a value and a past as large as the limits allow, and the key.
pub fn frame_bytes_needed(limits: &Limits) -> usize {
    let past = limits.context_entries_max.saturating_mul(CONTEXT_ENTRY_WIRE_BYTES_MAX);
    let version =
        limits.value_bytes_max.saturating_add(past).saturating_add(VERSION_WIRE_BYTES_MAX);
    version
        .saturating_mul(limits.siblings_max)
        .saturating_add(limits.key_bytes_max)
        .saturating_add(FRAME_SLACK_BYTES)
}

/// The largest frame a message can legitimately need, bounded by [`FRAME_BYTES_CAP`] (the
/// configuration is refused when it needs more: see `config`).
pub fn frame_bytes_max(limits: &Limits) -> usize {
    frame_bytes_needed(limits).min(FRAME_BYTES_CAP)
}

type PeerFramed = Framed<TcpStream, LengthDelimitedCodec>;

/// A connection's frames, bounded by [`HELLO_BYTES_MAX`] until the handshake is done.
fn framed(stream: TcpStream) -> PeerFramed {
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder().max_frame_length(HELLO_BYTES_MAX).new_codec();
    Framed::new(stream, codec)
}

#[cfg(test)]
impl PeerContext {
    /// Node `me`'s context in a cluster `test` with one other node, `peer`, for unit tests.
    pub(crate) fn for_test(me: u16, peer: u16, secret: &ClusterSecret) -> PeerContext {
        PeerContext {
            cluster: "test".into(),
            me: NodeId(me),
            peers: [NodeId(peer)].into(),
            ring: RingShape::default(),
            frame_bytes_max: 1 << 20,
            sequence_max: Limits::default().peer_sequence_max(3),
            secret: secret.clone(),
            inbound: Default::default(),
            refusals_logged: RefusalLogs::new(&[NodeId(peer)].into()),
            net: Arc::new(NetStats::default()),
        }
    }
}

impl PeerContext {
    /// This node's hello, with a fresh nonce.
    fn hello(&self) -> Hello {
        Hello {
            cluster: self.cluster.clone(),
            version: PROTOCOL_VERSION,
            node: self.me,
            ring: self.ring.clone(),
            nonce: rand::random(),
        }
    }

    /// Exchanges proofs of the cluster secret on a connection whose hellos were `mine` and
    /// `theirs`. The dialler proves first; the accepting side checks that proof before it sends
    /// its own, so a host that merely connects gets no proof to test guesses of the secret
    /// against. (The dialler reaches only the addresses it is configured with.)
    async fn prove(
        &self,
        f: &mut PeerFramed,
        mine: &Hello,
        theirs: &Hello,
        dialled: bool,
    ) -> Result<(), String> {
        let own = Bytes::copy_from_slice(&proof_of(&self.secret, &self.cluster, mine, theirs));
        if dialled {
            f.send(own.clone()).await.map_err(|e| format!("writing proof: {e}"))?;
        }
        let got = match f.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(format!("reading proof: {e}")),
            None => {
                return Err("closed before its proof of the cluster secret (the secrets differ, \
                            or it stopped)"
                    .into())
            }
        };
        let (me, them) = ((self.me, &mine.nonce), (theirs.node, &theirs.nonce));
        proof(&self.secret, &self.cluster, them, me).verify_slice(&got).map_err(|_| {
            "its proof of the cluster secret does not match this node's (the secrets differ, or \
             only one side has one)"
                .to_string()
        })?;
        if !dialled {
            f.send(own).await.map_err(|e| format!("writing proof: {e}"))?;
        }
        Ok(())
    }

    /// Why `hello` is unacceptable, if it is. `expected` is the node we dialled, if we dialled.
    fn check(&self, hello: &Hello, expected: Option<NodeId>) -> Result<(), String> {
        if hello.cluster != self.cluster {
            return Err(format!(
                "cluster {}, expected {:?}",
                quoted_cluster(&hello.cluster),
                self.cluster
            ));
        }
        if hello.version != PROTOCOL_VERSION {
            return Err(format!("protocol version {}, expected {PROTOCOL_VERSION}", hello.version));
        }
        match expected {
            Some(e) if e != hello.node => Err(format!("node {}, expected {e}", hello.node)),
            _ if !self.peers.contains(&hello.node) => {
                Err(format!("node {} is not a peer of this cluster", hello.node))
            }
            _ if hello.ring.limits != self.ring.limits => Err(format!(
                "limits {}: every node of a cluster needs the same",
                self.ring.limits.differences(&hello.ring.limits).join(", ")
            )),
            _ if hello.ring != self.ring => {
                Err(format!("a ring of {}, against this node's {}", hello.ring, self.ring))
            }
            _ => Ok(()),
        }
    }

    /// [`PeerContext::inbound`], locked (its entries are whole at every step, so a panic
    /// elsewhere while it was held leaves nothing to repair).
    fn inbound_by_peer(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Arc<Notify>>> {
        self.inbound.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a connection closed unheard because its address has
    /// [`HANDSHAKES_PER_ADDRESS_MAX`] in their handshake already (logged at debug level only: a
    /// host flooding the port would flood the log).
    pub fn refuse_busy_address(&self, addr: SocketAddr) {
        self.net.handshakes_busy_address.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(node = %self.me, %addr, "peer connection closed: too many handshakes from its address");
    }

    /// Counts a refused handshake and logs why, at most once per [`REFUSALS_LOG_EVERY`] for a
    /// dial to the peer `dialled`, or for inbound handshakes (`None`: a host that keeps dialling
    /// with a bad hello would otherwise fill the log); the line says how many were refused
    /// unlogged before it.
    fn refuse(&self, addr: SocketAddr, dialled: Option<NodeId>, why: &str) {
        self.net.handshakes_refused.fetch_add(1, Ordering::Relaxed);
        let Some(before) = self.refusals_logged.of(dialled).due() else { return };
        if before > 0 {
            tracing::warn!(node = %self.me, %addr, "peer handshake refused: {why} ({before} more refused since the last one logged)");
        } else {
            tracing::warn!(node = %self.me, %addr, "peer handshake refused: {why}");
        }
    }
}

async fn read_hello(f: &mut PeerFramed) -> Result<Hello, String> {
    match f.next().await {
        Some(Ok(frame)) => decode_hello(&frame),
        Some(Err(e)) => Err(format!("reading hello: {e}")),
        None => Err("closed before hello".into()),
    }
}

/// A hello of any version: its leading fields, and the rest only if it is of this version (of
/// another, [`PeerContext::check`] refuses it for its version number).
fn decode_hello(frame: &[u8]) -> Result<Hello, String> {
    let bad = |e: postcard::Error| format!("bad hello: {e}");
    let (head, rest) = postcard::take_from_bytes::<HelloHead>(frame).map_err(bad)?;
    let tail = match head.version {
        PROTOCOL_VERSION => postcard::from_bytes(rest).map_err(bad)?,
        _ => HelloTail { ring: RingShape::default(), nonce: [0; NONCE_BYTES] },
    };
    Ok(Hello {
        cluster: head.cluster,
        version: head.version,
        node: head.node,
        ring: tail.ring,
        nonce: tail.nonce,
    })
}

async fn write_hello(f: &mut PeerFramed, hello: &Hello) -> Result<(), String> {
    let bytes = postcard::to_stdvec(hello).map_err(|e| e.to_string())?;
    f.send(Bytes::from(bytes)).await.map_err(|e| format!("writing hello: {e}"))
}

/// Serves one inbound connection: handshake (holding `slot` meanwhile), then feed every message
/// to the driver until the connection ends, a frame is bad, or shutdown.
pub async fn serve_inbound(
    ctx: Arc<PeerContext>,
    stream: TcpStream,
    addr: SocketAddr,
    driver: DriverHandle,
    mut shutdown: ShutdownRx,
    slot: HandshakeSlot,
) {
    let mut f = framed(stream);
    let handshake = async {
        let hello = read_hello(&mut f).await?;
        // Our hello goes back even to a peer we refuse, so that the dialler can tell why too
        // (and log it) rather than only see the connection close.
        let mine = ctx.hello();
        let answered = write_hello(&mut f, &mine).await;
        ctx.check(&hello, None).and(answered)?;
        ctx.prove(&mut f, &mine, &hello, false).await?;
        Ok::<_, String>(hello)
    };
    let hello =
        match tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => return ctx.refuse(addr, None, &why),
            Err(_) => return ctx.refuse(addr, None, "handshake timed out"),
        };
    drop(slot);
    let from = hello.node;
    f.codec_mut().set_max_frame_length(ctx.frame_bytes_max);
    tracing::debug!(node = %ctx.me, peer = %from, "inbound peer connected");
    // One connection per peer: a newer one from the same node replaces this one. A peer redials
    // only when its connection broke, so the older one is dead or about to be; replacing it
    // also bounds what inbound connections hold to one frame per peer, and frees the slot of a
    // connection whose peer vanished without closing it.
    let replaced = Arc::new(Notify::new());
    if let Some(older) = ctx.inbound_by_peer().insert(from, replaced.clone()) {
        older.notify_one();
    }
    let _forget = ForgetInbound { ctx: &ctx, from, mine: replaced.clone() };
    let replaced = replaced.notified();
    tokio::pin!(replaced);
    // One wait for the whole connection, polled only when no frame is ready: a fresh wait per
    // frame registered with (and deregistered from) the shutdown signal's shared waiter list,
    // under its lock, for every frame. Frames first cannot hold shutdown off: once the driver
    // has stopped, `driver.peer` refuses the next frame and the loop ends.
    let down = shutdown.wait();
    tokio::pin!(down);
    loop {
        let frame = tokio::select! {
            biased;
            f = f.next() => f,
            _ = &mut replaced => {
                tracing::debug!(node = %ctx.me, peer = %from, "inbound connection replaced by a newer one");
                return;
            }
            _ = &mut down => return,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            // The codec's own refusal: a length over this node's bound.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                ctx.net.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node = %ctx.me,
                    peer = %from,
                    "dropping connection: {e} (over this node's {} bytes, which a peer with \
                     this node's limits never sends: a damaged frame)",
                    ctx.frame_bytes_max
                );
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(node = %ctx.me, peer = %from, "inbound peer connection broke: {e}");
                return;
            }
            None => return,
        };
        ctx.net.frames_received.fetch_add(1, Ordering::Relaxed);
        let decoded = with_sequence_max(ctx.sequence_max, || postcard::from_bytes::<Msg>(&frame));
        match decoded {
            Ok(msg) => {
                if !driver.peer(from, msg, frame.len()) {
                    return;
                }
            }
            Err(e) => {
                ctx.net.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node = %ctx.me,
                    peer = %from,
                    "dropping connection: undecodable frame: {e} (a damaged frame, or a sequence \
                     of over {} items, which a peer with this node's limits never sends)",
                    ctx.sequence_max
                );
                return;
            }
        }
    }
}

/// Takes an inbound connection out of [`PeerContext::inbound`] when it ends, unless a newer
/// one has taken its place.
struct ForgetInbound<'a> {
    ctx: &'a PeerContext,
    from: NodeId,
    mine: Arc<Notify>,
}

impl Drop for ForgetInbound<'_> {
    fn drop(&mut self) {
        let mut by_peer = self.ctx.inbound_by_peer();
        if by_peer.get(&self.from).is_some_and(|n| Arc::ptr_eq(n, &self.mine)) {
            by_peer.remove(&self.from);
        }
    }
}

/// Why a dial did not give a connection.
enum DialError {
    /// No connection, or no hello in time (the peer is down or not a node).
    Unreachable(String),
    /// The peer answered with a hello this node refuses (cluster, version, node id or ring), or
    /// its proof of the cluster secret failed or never came. A peer that refuses our hello
    /// answers with its own first, so either side's mismatch of hellos ends here; one that
    /// refuses our proof closes before its own.
    Refused(String),
}

async fn dial(ctx: &PeerContext, peer: NodeId, addr: SocketAddr) -> Result<PeerFramed, DialError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| DialError::Unreachable(format!("connect {addr}: {e}")))?;
    let mut f = framed(stream);
    let mine = ctx.hello();
    write_hello(&mut f, &mine).await.map_err(DialError::Unreachable)?;
    let hello = read_hello(&mut f).await.map_err(DialError::Unreachable)?;
    ctx.check(&hello, Some(peer)).map_err(DialError::Refused)?;
    ctx.prove(&mut f, &mine, &hello, true).await.map_err(DialError::Refused)?;
    Ok(f)
}

/// The sending side of the link to one peer, shared by the driver and the link's connection task
/// (see the module's introduction): its [`Outbox`], and the wake-up the driver gives the
/// connection task when it leaves bytes behind.
#[derive(Debug)]
pub struct PeerLink {
    ctx: Arc<PeerContext>,
    peer: NodeId,
    outbox: Outbox<TcpStream>,
    /// Signalled when the driver left bytes unwritten or found the connection broken.
    wake: Notify,
    /// When an oversized message was last logged.
    oversized_logged: LogEvery,
}

/// How often, at most, a link logs a message dropped for its size.
pub const OVERSIZED_LOG_EVERY: Duration = Duration::from_secs(10);

/// A log line allowed at most once per a period: [`LogEvery::due`] says whether one may be
/// written now, and how many were held back since the last.
#[derive(Debug)]
pub struct LogEvery {
    every: Duration,
    /// When a line was last written, and how many were held back since.
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> LogEvery {
        LogEvery { every, state: Default::default() }
    }

    /// `Some(held back since the last line)` when a line may be written now, else `None` (and
    /// this one is counted as held back).
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < self.every) {
            *held_back += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(held_back))
    }
}

/// A refused peer handshake is logged at most this often for each peer a node dials, and as often
/// for all the inbound ones; every one is counted (`dynamo_peer_handshakes_refused_total`).
pub const REFUSALS_LOG_EVERY: Duration = Duration::from_secs(10);

/// The log limiters of refused handshakes: one for each peer a node dials, one for every inbound
/// handshake. Inbound ones can come from any host, which could otherwise keep the log from ever
/// saying why a configured peer refuses this node.
#[derive(Debug)]
pub struct RefusalLogs {
    dialled: BTreeMap<NodeId, LogEvery>,
    inbound: LogEvery,
}

impl RefusalLogs {
    /// Limiters for a node whose peers are `peers`.
    pub fn new(peers: &BTreeSet<NodeId>) -> RefusalLogs {
        let dialled = peers.iter().map(|&p| (p, LogEvery::new(REFUSALS_LOG_EVERY))).collect();
        RefusalLogs { dialled, inbound: LogEvery::new(REFUSALS_LOG_EVERY) }
    }

    /// The limiter of refusals of a dial to `dialled`, or of inbound handshakes (`None`, or a
    /// node that is not a peer).
    pub fn of(&self, dialled: Option<NodeId>) -> &LogEvery {
        dialled.and_then(|p| self.dialled.get(&p)).unwrap_or(&self.inbound)
    }
}

impl PeerLink {
    /// A link to `peer`, not connected yet: [`run_link`] connects it.
    pub fn new(ctx: Arc<PeerContext>, peer: NodeId) -> PeerLink {
        let bounds = Bounds::new(ctx.frame_bytes_max, ctx.sequence_max);
        let outbox = Outbox::new(bounds, ctx.net.clone());
        PeerLink {
            ctx,
            peer,
            outbox,
            wake: Notify::new(),
            oversized_logged: LogEvery::new(OVERSIZED_LOG_EVERY),
        }
    }

    /// Queues `msgs` in order behind what is buffered, encoded; [`PeerLink::flush`] writes them.
    /// Messages over the frame bound, or that find the buffer full, are dropped and counted; one
    /// dropped for its size is also logged, at most once per [`OVERSIZED_LOG_EVERY`] per link.
    pub fn push(&self, msgs: impl IntoIterator<Item = Msg>) {
        let Some(o) = self.outbox.push(msgs) else { return };
        if self.oversized_logged.due().is_none() {
            return;
        }
        let key = o.key.map(|k| k.to_string()).unwrap_or_default();
        let (size, bound) = match o.over {
            Over::Bytes(b) => (format!("{b} bytes"), format!("{} bytes", self.ctx.frame_bytes_max)),
            Over::Items(n) => (format!("{n} items"), format!("{} items", self.ctx.sequence_max)),
        };
        tracing::warn!(
            node = %self.ctx.me,
            peer = %self.peer,
            message = o.kind,
            key,
            size,
            bound,
            "a peer message is larger than peers take and was dropped: the key's siblings \
             outgrew what one message may carry; a get with r=1 through this node and a put on \
             its context resolve them (dynamo_peer_outbound_oversized_total counts every one)"
        );
    }

    /// Writes what is queued as far as the socket takes it without blocking; the connection task
    /// writes the rest when the socket has room (or once connected, if it is not).
    pub fn flush(&self) {
        if self.outbox.flush() {
            self.wake.notify_one();
        }
    }

    /// Messages waiting for the connection.
    pub fn queued(&self) -> usize {
        self.outbox.queued()
    }

    /// Serves `stream` (connected and past its handshake) until it breaks or shutdown: writes
    /// what the driver left over whenever the socket can take it.
    async fn serve(
        &self,
        stream: Arc<TcpStream>,
        down: &mut (impl Future<Output = ()> + Unpin),
    ) -> WriteEnd {
        self.outbox.attach(stream.clone());
        loop {
            // `notify_one` keeps a permit when nobody waits, so a wake-up the driver gives
            // between this write and the wait below is not lost.
            match self.outbox.serve() {
                // The peer sends nothing after its proof, so the socket turns readable only when
                // the peer has gone (its end closed): give the connection up at once rather than
                // at the next write, which the kernel would take and the peer never read.
                Flushed::Done => tokio::select! {
                    biased;
                    _ = self.wake.notified() => {}
                    r = stream.readable() => {
                        if let Some(end) = closed_by_peer(&stream, r) {
                            return end;
                        }
                    }
                    _ = &mut *down => return WriteEnd::Stop,
                },
                // The driver's wake-up counts here too: it may have found the connection
                // broken, which a socket need not signal as writable.
                Flushed::Blocked => tokio::select! {
                    biased;
                    r = stream.writable() => {
                        if let Err(e) = r {
                            return WriteEnd::Broken(e.to_string());
                        }
                    }
                    _ = self.wake.notified() => {}
                    _ = &mut *down => return WriteEnd::Stop,
                },
                Flushed::Failed(why) => return WriteEnd::Broken(why),
            }
        }
    }

    /// Forgets the connection and the frames that were meant for it.
    fn disconnect(&self) {
        self.outbox.detach();
    }
}

/// What a readable outbound connection means: the peer closed it, or broke the protocol by
/// sending after its proof (either ends the connection); `None` for a spurious wake-up.
fn closed_by_peer(stream: &TcpStream, readable: std::io::Result<()>) -> Option<WriteEnd> {
    if let Err(e) = readable {
        return Some(WriteEnd::Broken(e.to_string()));
    }
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => Some(WriteEnd::Broken("closed by the peer".into())),
        Ok(n) => Some(WriteEnd::Broken(format!("the peer sent {n} bytes after its proof"))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(WriteEnd::Broken(e.to_string())),
    }
}

/// Forgets the link's connection when the connection task ends, however it ends (aborted too).
struct Disconnect<'a>(&'a PeerLink);

impl Drop for Disconnect<'_> {
    fn drop(&mut self) {
        self.0.disconnect();
    }
}

enum WriteEnd {
    Stop,
    Broken(String),
}

/// Keeps `link` connected to its peer at `addr`, redialling with backoff, and writes what the
/// driver could not. Ends on shutdown.
pub async fn run_link(link: Arc<PeerLink>, addr: SocketAddr, mut shutdown: ShutdownRx) {
    let ctx = link.ctx.clone();
    let peer = link.peer;
    let _disconnect = Disconnect(&link);
    let down = shutdown.wait();
    tokio::pin!(down);
    let mut backoff_ms = BACKOFF_MIN_MS;
    let mut logged_down = false;
    // Dials that failed since the last connection. A peer missed by the first dial only is not
    // logged: the nodes of a cluster started together (`dynamo dev`) dial each other before all
    // of them listen, and the redial BACKOFF_MIN_MS later reaches them.
    let mut failed_dials = 0u32;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            dial(&ctx, peer, addr),
        );
        let conn = tokio::select! {
            c = attempt => c,
            _ = &mut down => return,
        };
        let conn =
            conn.unwrap_or_else(|_| Err(DialError::Unreachable("handshake timed out".into())));
        let f = match conn {
            Ok(f) => f,
            Err(failed) => {
                ctx.net.connect_failures.fetch_add(1, Ordering::Relaxed);
                failed_dials = failed_dials.saturating_add(1);
                match failed {
                    // Counted on every try and logged as the accepting side logs (see `refuse`).
                    DialError::Refused(why) => {
                        ctx.refuse(addr, Some(peer), &format!("node {peer} answered with {why}"));
                    }
                    DialError::Unreachable(why) if !logged_down && failed_dials > 1 => {
                        tracing::info!(node = %ctx.me, %peer, "peer unreachable: {why}; retrying");
                        logged_down = true;
                    }
                    DialError::Unreachable(_) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    _ = &mut down => return,
                }
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
                continue;
            }
        };
        ctx.net.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(node = %ctx.me, %peer, "outbound peer connected");
        logged_down = false;
        failed_dials = 0;
        let connected = tokio::time::Instant::now();
        // The accepting side sends nothing after its proof, so the codec holds no bytes of ours.
        let stream = Arc::new(f.into_inner());
        let end = link.serve(stream, &mut down).await;
        link.disconnect();
        match end {
            WriteEnd::Stop => return,
            WriteEnd::Broken(e) => {
                tracing::info!(node = %ctx.me, %peer, "peer connection lost: {e}");
            }
        }
        if connected.elapsed() >= Duration::from_millis(CONNECTION_SETTLED_MS) {
            backoff_ms = BACKOFF_MIN_MS;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            _ = &mut down => return,
        }
        backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handshake places count per address: IPv6 by its /64, an IPv4-mapped address as the IPv4
    /// one; a place given back is free again.
    #[test]
    fn handshake_places_count_per_address() {
        let h = Handshaking::default();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
        let host: Vec<HandshakeSlot> = (0..HANDSHAKES_PER_ADDRESS_MAX)
            .map(|i| h.slot(ip(&format!("2001:db8::{:x}", i + 1))).expect("a place"))
            .collect();
        assert!(h.slot(ip("2001:db8::ffff:1")).is_none(), "the same /64");
        assert!(h.slot(ip("2001:db8:0:1::1")).is_some(), "another /64");
        let v4: Vec<HandshakeSlot> = (0..HANDSHAKES_PER_ADDRESS_MAX)
            .map(|_| h.slot(ip("192.0.2.7")).expect("a place"))
            .collect();
        assert!(h.slot(ip("::ffff:192.0.2.7")).is_none(), "mapped counts as the IPv4 address");
        drop(v4);
        assert!(h.slot(ip("::ffff:192.0.2.7")).is_some(), "given back");
        drop(host);
        assert!(h.0.lock().expect("lock").is_empty(), "every place given back");
    }

    /// A refusal's reason quotes what the peer sent cut short, or names the limit that differs,
    /// and refusals are all counted but logged at most once per [`REFUSALS_LOG_EVERY`]: a host
    /// dialling again and again with a quarter megabyte of cluster name or a ring of every node
    /// id cannot fill the log.
    #[test]
    fn refusals_are_counted_each_and_logged_short_and_seldom() {
        let mut ctx = PeerContext::for_test(1, 2, &ClusterSecret::none());
        ctx.ring.limits = PeerLimits::of(&Limits::default());
        let mut hello = ctx.hello();
        hello.cluster = "é".repeat(100_000);
        let why = ctx.check(&hello, None).expect_err("another cluster");
        assert!(why.len() < 300 && why.contains("(200000 bytes)"), "{why}");
        let mut hello = ctx.hello();
        hello.node = NodeId(2);
        hello.ring.nodes = (0..=u16::MAX).map(NodeId).collect();
        let why = ctx.check(&hello, None).expect_err("another ring");
        assert!(why.len() < 300 && why.contains("and 65520 more"), "{why}");
        let mut hello = ctx.hello();
        hello.node = NodeId(2);
        hello.ring.limits.0[2] = 9;
        let why = ctx.check(&hello, None).expect_err("other limits");
        assert!(why.contains("siblings_max = 9 (this node: 64)"), "{why}");
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..3 {
            ctx.refuse(addr, None, &why);
        }
        assert_eq!(ctx.net.handshakes_refused.load(Ordering::Relaxed), 3);
        let state = |dialled| *ctx.refusals_logged.of(dialled).state.lock().expect("lock");
        let (logged, held_back) = state(None);
        assert!(logged.is_some());
        assert_eq!(held_back, 2, "the first logged, the next two counted only");
        // Inbound refusals do not use up what a dialled peer's refusal may log.
        assert_eq!(state(Some(NodeId(2))), (None, 0));
        ctx.refuse(addr, Some(NodeId(2)), &why);
        let (logged, held_back) = state(Some(NodeId(2)));
        assert_eq!((logged.is_some(), held_back), (true, 0), "logged at once");
        // An unknown id (never dialled) shares the inbound limiter.
        assert!(std::ptr::eq(
            ctx.refusals_logged.of(Some(NodeId(7))),
            ctx.refusals_logged.of(None)
        ));
    }
    use crate::shutdown::Shutdown;
    use dynamo_model::{
        ActorId, ClientOp, Context, Dot, Key, OpId, Payload, RequestId, Siblings, Version,
    };
    use tokio::net::{TcpListener, TcpSocket};

    /// The frame bound holds the largest messages the limits allow: `siblings_max` versions of
    /// maximal values, each with a past of `context_entries_max` entries of the widest encoding
    /// (before s26 it left only 64 KiB for all pasts, and such a set could not be sent).
    #[test]
    fn the_frame_bound_holds_a_full_sibling_set_with_full_pasts() {
        use dynamo_model::{ActorId, ClientReply, Context, Dot, Payload, Siblings, Version};
        let limits = Limits {
            value_bytes_max: 1_000,
            key_bytes_max: 100,
            siblings_max: 8,
            context_entries_max: 32,
            ..Limits::default()
        };
        let top = dynamo_model::clock::CONTEXT_COUNTER_MAX;
        let versions = (0..limits.siblings_max as u32).map(|v| {
            // Widest entries: the largest ids, counters and times, each a run of its own.
            let actor = ActorId::new(NodeId(u16::MAX), u32::MAX - v);
            let mut past = Context::new();
            for k in 0..limits.context_entries_max as u64 {
                let d = Dot { actor, counter: top - 2 * k, ts_ms: u64::MAX };
                past.add_dot(&d);
            }
            assert_eq!(past.len(), limits.context_entries_max);
            let dot =
                Dot { actor: ActorId::new(NodeId(u16::MAX - 1), v), counter: top, ts_ms: u64::MAX };
            Version { dot, past, payload: Payload::Value(vec![0xff; limits.value_bytes_max]) }
        });
        let siblings = Siblings::from_versions(versions);
        assert_eq!(siblings.len(), limits.siblings_max);
        let key = Key(vec![0xff; limits.key_bytes_max]);
        let op = OpId { origin: NodeId(u16::MAX), req: RequestId(u64::MAX) };
        let reply = ClientReply::Read {
            context: siblings.context(),
            values: siblings.values().map(<[u8]>::to_vec).collect(),
        };
        let largest = [
            Msg::Store {
                op: Some(op),
                key: key.clone(),
                siblings: siblings.clone(),
                intended: Some(NodeId(u16::MAX)),
            },
            Msg::Handoff { key: key.clone(), siblings: siblings.clone() },
            Msg::FetchReply { op, siblings },
            Msg::ForwardReply { req: op.req, reply },
        ];
        for msg in largest {
            let bytes = postcard::to_stdvec(&msg).expect("encodes").len();
            assert!(bytes <= frame_bytes_needed(&limits) - FRAME_SLACK_BYTES, "{bytes} bytes");
        }
    }

    fn ack(i: u64) -> Msg {
        Msg::StoreAck { op: OpId { origin: NodeId(1), req: RequestId(i) } }
    }

    fn link(frame_bytes_max: usize) -> Arc<PeerLink> {
        let ctx = Arc::new(PeerContext {
            cluster: "test".into(),
            me: NodeId(1),
            peers: [NodeId(2)].into(),
            ring: RingShape::default(),
            frame_bytes_max,
            sequence_max: Limits::default().peer_sequence_max(3),
            secret: ClusterSecret::none(),
            inbound: Default::default(),
            refusals_logged: RefusalLogs::new(&[NodeId(2)].into()),
            net: Arc::new(NetStats::default()),
        });
        Arc::new(PeerLink::new(ctx, NodeId(2)))
    }

    /// A connected pair with small kernel buffers, so that a few hundred kilobytes fill them.
    async fn pair() -> (TcpStream, TcpStream) {
        let server = TcpSocket::new_v4().expect("socket");
        server.set_recv_buffer_size(4096).expect("rcvbuf");
        server.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let listener: TcpListener = server.listen(1).expect("listen");
        let client = TcpSocket::new_v4().expect("socket");
        client.set_send_buffer_size(4096).expect("sndbuf");
        let addr = listener.local_addr().expect("addr");
        let (c, s) = tokio::join!(client.connect(addr), listener.accept());
        (c.expect("connect"), s.expect("accept").0)
    }

    /// What the driver does: queue, then write.
    fn send(link: &PeerLink, msgs: impl IntoIterator<Item = Msg>) {
        link.push(msgs);
        link.flush();
    }

    /// Runs the connection task's part on `client` until `Shutdown` is triggered, and returns once
    /// the link has the connection.
    async fn serve(
        link: &Arc<PeerLink>,
        client: TcpStream,
    ) -> (Shutdown, tokio::task::JoinHandle<WriteEnd>) {
        let (shutdown, _) = Shutdown::new();
        let mut rx = shutdown.subscribe();
        let task = {
            let link = link.clone();
            tokio::spawn(async move {
                let down = rx.wait();
                tokio::pin!(down);
                link.serve(Arc::new(client), &mut down).await
            })
        };
        for _ in 0..10_000 {
            if link.outbox.is_attached() {
                return (shutdown, task);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the connection task never took the connection");
    }

    fn count(link: &PeerLink) -> (u64, u64) {
        let net = &link.ctx.net;
        (net.frames_sent.load(Ordering::Relaxed), net.outbound_dropped.load(Ordering::Relaxed))
    }

    /// Frames the socket would not take wait in the link, in order, up to its bound; the rest are
    /// dropped and counted, and every frame the link counts as sent arrives whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_socket_buffers_in_order_then_drops_and_counts() {
        let (client, server) = pair().await;
        let link = link(1 << 20);
        let (shutdown, serving) = serve(&link, client).await;
        let total = 3 * OUTBOUND_QUEUE_MAX as u64;
        for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
            send(&link, chunk.iter().map(|&i| ack(i)));
        }
        let (_, dropped) = count(&link);
        assert!(dropped > 0, "nobody reads: the bound must have been reached");
        assert!(link.queued() <= OUTBOUND_QUEUE_MAX);

        let mut frames = Framed::new(server, LengthDelimitedCodec::new());
        let mut last = None;
        let mut received = 0u64;
        while received + dropped < total {
            let frame = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .expect("frames keep coming")
                .expect("open")
                .expect("frame");
            let Msg::StoreAck { op } = postcard::from_bytes::<Msg>(&frame).expect("decodes") else {
                panic!("another message arrived");
            };
            assert!(last < Some(op.req.0), "frames in order: {:?} after {last:?}", op.req.0);
            last = Some(op.req.0);
            received += 1;
        }
        assert_eq!(received + dropped, total);
        assert_eq!(count(&link), (received, dropped));
        assert_eq!(link.queued(), 0);
        shutdown.trigger();
        assert!(matches!(serving.await.expect("task"), WriteEnd::Stop));
    }

    /// A message over the frame bound is dropped and counted (as oversized too); the ones around
    /// it go.
    #[tokio::test]
    async fn an_oversized_message_is_dropped_and_the_rest_go() {
        let (client, server) = pair().await;
        let link = link(64);
        link.outbox.attach(Arc::new(client));
        let big = Msg::Forward { req: RequestId(7), op: ClientOp::get(Key(vec![b'k'; 100])) };
        send(&link, [ack(1), big, ack(2)]);
        let mut frames = Framed::new(server, LengthDelimitedCodec::new());
        for want in [1, 2] {
            let frame = frames.next().await.expect("open").expect("frame");
            assert_eq!(postcard::from_bytes::<Msg>(&frame).expect("decodes"), ack(want));
        }
        assert_eq!(count(&link), (2, 1));
        assert_eq!(link.ctx.net.outbound_oversized.load(Ordering::Relaxed), 1);
        // What the link logs: the first oversized message of a push, with its key and size.
        let big = Msg::Forward { req: RequestId(8), op: ClientOp::get(Key(vec![b'k'; 100])) };
        let o = link.outbox.push([ack(3), big.clone(), big]).expect("described");
        assert_eq!((o.kind, o.key), ("Forward", Some(Key(vec![b'k'; 100]))));
        assert!(matches!(o.over, Over::Bytes(b) if b > 64), "{:?}", o.over);
        assert_eq!(link.ctx.net.outbound_oversized.load(Ordering::Relaxed), 3);
    }

    /// A message with a sequence longer than peers decode (here a set of more versions than
    /// `Limits::peer_sequence_max`, each a few bytes) is dropped and counted as oversized too,
    /// rather than sent to a peer that would drop the connection for it.
    #[tokio::test]
    async fn a_message_with_a_sequence_over_the_bound_is_dropped_and_the_rest_go() {
        let (client, server) = pair().await;
        let link = link(1 << 20);
        link.outbox.attach(Arc::new(client));
        let max = link.ctx.sequence_max;
        let store = |versions: usize| {
            let versions: Vec<Version> = (1..=versions as u64)
                .map(|counter| Version {
                    dot: Dot { actor: ActorId::new(NodeId(1), 0), counter, ts_ms: 0 },
                    past: Context::new(),
                    payload: Payload::Tombstone,
                })
                .collect();
            let siblings = Siblings::from_versions(versions);
            Msg::Store { op: None, key: Key(b"k".to_vec()), siblings, intended: None }
        };
        let (fits, long) = (store(max), store(max + 1));
        let o = link.outbox.push([ack(1), long, fits.clone(), ack(2)]).expect("described");
        assert_eq!((o.kind, o.over), ("Store", Over::Items(max + 1)));
        link.flush();
        let mut frames = Framed::new(server, LengthDelimitedCodec::new());
        let bound = link.ctx.sequence_max;
        for want in [ack(1), fits, ack(2)] {
            let frame = frames.next().await.expect("open").expect("frame");
            let got = with_sequence_max(bound, || postcard::from_bytes::<Msg>(&frame));
            assert_eq!(got.expect("decodes under the bound"), want);
        }
        assert_eq!(count(&link), (3, 1));
        assert_eq!(link.ctx.net.outbound_oversized.load(Ordering::Relaxed), 1);
    }

    /// A hello of an older version, which has no ring, is refused for its version; one of this
    /// version without its ring is refused as unreadable.
    #[test]
    fn an_older_hello_is_refused_for_its_version() {
        #[derive(Serialize)]
        struct OldHello {
            cluster: String,
            version: u32,
            node: NodeId,
        }
        let ctx = link(1 << 20).ctx.clone();
        let old = |version| {
            let h = OldHello { cluster: "test".into(), version, node: NodeId(2) };
            postcard::to_stdvec(&h).expect("encode")
        };
        for version in [2, PROTOCOL_VERSION - 1] {
            let hello = decode_hello(&old(version)).expect("an old hello decodes");
            let why = format!("protocol version {version}, expected {PROTOCOL_VERSION}");
            assert_eq!(ctx.check(&hello, None), Err(why));
        }
        let cut = decode_hello(&old(PROTOCOL_VERSION)).expect_err("no ring");
        assert!(cut.starts_with("bad hello"), "{cut}");
        let now = postcard::to_stdvec(&ctx.hello()).expect("encode");
        let mut mine = decode_hello(&now).expect("this version's hello decodes");
        mine.node = NodeId(2);
        assert_eq!(ctx.check(&mine, Some(NodeId(2))), Ok(()));
    }

    /// Before the handshake a frame may be no larger than a hello, whatever the bound on values:
    /// a dialler not yet known to be a peer cannot make the node hold a large frame for it. The
    /// frame is refused on its length alone, before any of it arrives.
    #[tokio::test]
    async fn a_first_frame_larger_than_a_hello_is_refused_on_its_length() {
        let (mut a, b) = pair().await;
        let announced = (HELLO_BYTES_MAX as u32 + 1).to_be_bytes();
        tokio::io::AsyncWriteExt::write_all(&mut a, &announced).await.expect("write");
        let mut f = framed(b);
        let read = tokio::time::timeout(Duration::from_secs(5), read_hello(&mut f)).await;
        let why = read.expect("refused at once, not left waiting for the frame");
        let why = why.expect_err("a frame too large for a hello");
        assert!(why.contains("frame"), "{why}");
        // The largest hello there can be (every node id, the longest cluster name, limits) fits.
        let nodes = (0..=u16::MAX).map(NodeId).collect();
        let hello = Hello {
            cluster: "c".repeat(crate::config::CLUSTER_NAME_BYTES_MAX),
            version: PROTOCOL_VERSION,
            node: NodeId(1),
            ring: RingShape {
                n: 3,
                partitions: 1 << 16,
                nodes,
                limits: PeerLimits::of(&Limits::default()),
            },
            nonce: [0xff; NONCE_BYTES],
        };
        let bytes = postcard::to_stdvec(&hello).expect("encode").len();
        assert!(bytes <= HELLO_BYTES_MAX, "{bytes} bytes");
    }

    /// The handshake between node 1 (dialling) and node 2, each with its own secret: what each
    /// side's `prove` returned. Each side closes its end when it is done, as a node does.
    async fn handshake(one: &ClusterSecret, two: &ClusterSecret) -> [Result<(), String>; 2] {
        let (a, b) = pair().await;
        let (ctx1, ctx2) = (PeerContext::for_test(1, 2, one), PeerContext::for_test(2, 1, two));
        let (mut f1, mut f2) = (framed(a), framed(b));
        let (h1, h2) = (ctx1.hello(), ctx2.hello());
        let (h1, h2) = (&h1, &h2);
        let dialler = async move { ctx1.prove(&mut f1, h1, h2, true).await };
        let accepting = async move {
            let r = ctx2.prove(&mut f2, h2, h1, false).await;
            drop(f2);
            r
        };
        let (r1, r2) = tokio::join!(dialler, accepting);
        [r1, r2]
    }

    /// Peers with the same secret (or both without one) connect; any other pair is refused: the
    /// accepting side finds the dialler's proof wrong and closes without sending its own.
    #[tokio::test]
    async fn peers_prove_they_share_the_cluster_secret() {
        let (s, t) = (ClusterSecret::random(), ClusterSecret::random());
        for (one, two) in [(&s, &s), (&ClusterSecret::none(), &ClusterSecret::none())] {
            assert_eq!(handshake(one, two).await, [Ok(()), Ok(())], "{one:?} and {two:?}");
        }
        for (one, two) in [(&s, &t), (&s, &ClusterSecret::none()), (&ClusterSecret::none(), &t)] {
            let [dialler, accepting] = handshake(one, two).await;
            let why = accepting.expect_err("refused by the accepting side");
            assert!(why.contains("cluster secret does not match"), "{one:?}, {two:?}: {why}");
            let why = dialler.expect_err("refused by the dialler");
            assert!(why.contains("closed before its proof"), "{one:?}, {two:?}: {why}");
        }
    }

    /// A proof holds for one connection's nonces and one direction only: it cannot be replayed
    /// on another connection, or reflected back to the node that sent it.
    #[test]
    fn a_proof_is_good_for_one_connection_and_direction_only() {
        let s = ClusterSecret::random();
        let (n1, n2, n3) = ([1; NONCE_BYTES], [2; NONCE_BYTES], [3; NONCE_BYTES]);
        let sent = proof(&s, "test", (NodeId(1), &n1), (NodeId(2), &n2)).finalize().into_bytes();
        let check = |from, from_nonce, to, to_nonce| {
            proof(&s, "test", (NodeId(from), from_nonce), (NodeId(to), to_nonce))
                .verify_slice(&sent)
                .is_ok()
        };
        assert!(check(1, &n1, 2, &n2));
        assert!(!check(1, &n1, 2, &n3), "replayed on a connection with another nonce");
        assert!(!check(1, &n3, 2, &n2), "replayed by a dialler with another nonce");
        assert!(!check(2, &n2, 1, &n1), "reflected back");
        let other = proof(&s, "other", (NodeId(1), &n1), (NodeId(2), &n2));
        assert!(other.verify_slice(&sent).is_err(), "another cluster's name");
    }

    /// A peer that completes each handshake and then drops the connection (as two processes
    /// started under one node id make each other's connections do) is redialled after a delay
    /// that grows, as after a failed dial: not in a loop of full handshakes. (Before, the link
    /// redialled at once after any connection: thousands of handshakes a second.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_that_break_at_once_are_redialled_after_a_growing_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = Arc::new(PeerContext::for_test(2, 1, &ClusterSecret::none()));
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut f = framed(stream);
                let Ok(hello) = read_hello(&mut f).await else { continue };
                let mine = peer.hello();
                if write_hello(&mut f, &mine).await.is_ok() {
                    let _ = peer.prove(&mut f, &mine, &hello, false).await;
                }
                // Dropped here: the connection closes right after the handshake.
            }
        });
        let link = Arc::new(PeerLink::new(
            Arc::new(PeerContext::for_test(1, 2, &ClusterSecret::none())),
            NodeId(2),
        ));
        let (shutdown, _) = Shutdown::new();
        let task = tokio::spawn(run_link(link.clone(), addr, shutdown.subscribe()));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the link stops on shutdown")
            .expect("task");
        acceptor.abort();
        let connects = link.ctx.net.connects.load(Ordering::Relaxed);
        // Delays of 50, 100, 200, 400 and 800 ms: at most six connections fit in 1.5 s (fewer
        // on a slow machine).
        assert!((1..=6).contains(&connects), "{connects} connections in 1.5 s");
    }

    /// When the peer closes its end, the connection task gives the connection up at once, with
    /// nothing sent: no frame is handed to a socket that nobody reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_the_peer_closed_is_given_up_before_the_next_send() {
        let (client, server) = pair().await;
        let link = link(1 << 20);
        let (_shutdown, serving) = serve(&link, client).await;
        drop(server);
        let end = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the closed connection was noticed without a send")
            .expect("task");
        assert!(matches!(end, WriteEnd::Broken(ref why) if why.contains("closed by the peer")));
        link.disconnect();
        assert!(!link.outbox.is_attached());
        assert_eq!(count(&link), (0, 0));
    }

    /// When the peer goes away the driver's next writes fail; the connection task gives the
    /// connection up (to redial) and the frames meant for it are dropped and counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_connection_ends_the_connection_task() {
        let (client, server) = pair().await;
        let link = link(1 << 20);
        let (_shutdown, serving) = serve(&link, client).await;
        drop(server);
        // Bounded in time, not in sends: once the driver has found the connection broken its
        // sends cost nothing, and a busy machine may leave the connection task unscheduled for
        // many of them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut i = 0;
        let end = loop {
            send(&link, [ack(i)]);
            i += 1;
            if serving.is_finished() {
                break serving.await.expect("task");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broken connection was never noticed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert!(matches!(end, WriteEnd::Broken(_)));
        link.disconnect();
        let (sent, dropped) = count(&link);
        assert_eq!(link.queued(), 0);
        assert_eq!(sent + dropped, i, "every frame is either sent or counted as dropped");
    }
}
