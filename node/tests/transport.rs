//! The peer transport refuses what it must: a wrong cluster name, a wrong protocol version, an
//! unknown node id, another ring (N, partitions or members), a peer that cannot prove it knows
//! the cluster secret, an oversized or undecodable frame, a sequence longer than peers send. Each
//! is counted and none disturbs the node.

mod common;

use bytes::Bytes;
use common::{configs, eventually, Cluster};
use dynamo_model::{ActorId, Context, Dot, Key, Msg, NodeId, Payload, Siblings, Version};
use dynamo_node::connection::{proof_of, Hello, RingShape, NONCE_BYTES, PROTOCOL_VERSION};
use dynamo_node::ClusterSecret;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Node 1 of a two-node cluster whose node 2 is not running, so that a test can speak as node 2;
/// values up to `value_bytes_max`, which sets the bound on frames after the handshake.
async fn lone_node_1(value_bytes_max: usize) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfgs = configs(2, dir.path(), dynamo_node::config::SyncPolicy::Always);
    for cfg in &mut cfgs {
        cfg.params.limits.value_bytes_max = value_bytes_max;
    }
    Cluster::launch(cfgs, dir, 1).await
}

async fn connect(c: &Cluster) -> Framed<TcpStream, LengthDelimitedCodec> {
    let s = TcpStream::connect(c.cfgs[0].peer_listen).await.expect("connect");
    Framed::new(s, LengthDelimitedCodec::new())
}

async fn hello(f: &mut Framed<TcpStream, LengthDelimitedCodec>, h: &Hello) {
    let bytes = postcard::to_stdvec(h).expect("encode");
    f.send(Bytes::from(bytes)).await.expect("send hello");
}

/// Completes the handshake as the sender of `mine`, proving `secret`: sends the hello, reads the
/// node's, sends the proof, and reads the node's proof. True if the node accepted ours (it then
/// answers with its own, which must be right); false if it closed instead.
async fn handshake(
    f: &mut Framed<TcpStream, LengthDelimitedCodec>,
    mine: &Hello,
    secret: &ClusterSecret,
) -> bool {
    hello(f, mine).await;
    let back = f.next().await.expect("a hello back").expect("a frame");
    let back: Hello = postcard::from_bytes(&back).expect("its hello");
    let proof = proof_of(secret, &mine.cluster, mine, &back);
    f.send(Bytes::copy_from_slice(&proof)).await.expect("send proof");
    let wait = std::time::Duration::from_secs(5);
    match tokio::time::timeout(wait, f.next()).await.expect("answered in time") {
        Some(Ok(theirs)) => {
            assert_eq!(&theirs[..], &proof_of(secret, &mine.cluster, &back, mine)[..]);
            true
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_mismatches_and_bad_frames_are_refused_and_counted() {
    let c = lone_node_1(1024).await;
    let ring = RingShape::of(&c.cfgs[0].protocol().expect("config"));
    let hello_as = |cluster: &str, version, node| Hello {
        cluster: cluster.into(),
        version,
        node: NodeId(node),
        ring: ring.clone(),
        nonce: [7; NONCE_BYTES],
    };
    let other_ring = |change: fn(&mut RingShape)| {
        let mut h = hello_as("test", PROTOCOL_VERSION, 2);
        change(&mut h.ring);
        h
    };
    let bad = [
        hello_as("other", PROTOCOL_VERSION, 2),
        hello_as("test", PROTOCOL_VERSION + 1, 2),
        hello_as("test", PROTOCOL_VERSION, 99),
        other_ring(|r| r.partitions *= 2),
        other_ring(|r| r.n += 1),
        other_ring(|r| r.nodes.push(NodeId(3))),
        other_ring(|r| r.limits.0[0] *= 2),
    ];
    for h in &bad {
        let mut f = connect(&c).await;
        hello(&mut f, h).await;
        // The node answers with its own hello (so that the dialler can tell why) and closes.
        let wait = std::time::Duration::from_secs(5);
        let answer = tokio::time::timeout(wait, f.next()).await.expect("answered in time");
        let answer = answer.expect("a hello back").expect("a frame");
        let back: Hello = postcard::from_bytes(&answer).expect("its hello");
        assert_eq!(back.node, NodeId(1));
        let next = tokio::time::timeout(wait, f.next()).await;
        assert!(matches!(next, Ok(None) | Ok(Some(Err(_)))), "{h:?} must be refused");
    }
    // A good hello, but a proof made with another secret: the node closes without sending its
    // own proof (nothing to test guesses of the secret against).
    let good = hello_as("test", PROTOCOL_VERSION, 2);
    let mut f = connect(&c).await;
    assert!(!handshake(&mut f, &good, &ClusterSecret::random()).await, "a wrong proof is refused");
    eventually("refusals counted", || async {
        (c.metric(1, "dynamo_peer_handshakes_refused_total").await? >= 8).then_some(())
    })
    .await;

    // A good handshake, then garbage: the connection is dropped and counted.
    let secret = &c.cfgs[0].cluster_secret;
    let mut f = connect(&c).await;
    assert!(handshake(&mut f, &good, secret).await);
    f.send(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff])).await.expect("send");
    eventually("the undecodable frame counted", || async {
        (c.metric(1, "dynamo_peer_bad_frames_total").await? >= 1).then_some(())
    })
    .await;
    // And an oversized frame on another connection (after the first has ended: a newer
    // connection from the same peer would replace it).
    let mut g = connect(&c).await;
    assert!(handshake(&mut g, &good, secret).await);
    let _ = g.send(Bytes::from(vec![0u8; 4 << 20])).await;
    eventually("bad frames counted", || async {
        (c.metric(1, "dynamo_peer_bad_frames_total").await? >= 2).then_some(())
    })
    .await;
    // And a frame well within the byte bound whose sibling set holds more versions than peers
    // take (each tombstone a few bytes on the wire, ten times that decoded): refused before its
    // versions are decoded, as undecodable.
    let params = &c.cfgs[0].params;
    let versions =
        (1..=params.limits.peer_sequence_max(params.n) as u64 + 1).map(|counter| Version {
            dot: Dot { actor: ActorId::new(NodeId(2), 0), counter, ts_ms: 0 },
            past: Context::new(),
            payload: Payload::Tombstone,
        });
    let siblings = Siblings::from_versions(versions);
    let msg = Msg::Store { op: None, key: Key::from("k"), siblings, intended: None };
    let mut h = connect(&c).await;
    assert!(handshake(&mut h, &good, secret).await);
    h.send(Bytes::from(postcard::to_stdvec(&msg).expect("encodes"))).await.expect("send");
    eventually("the long set counted", || async {
        (c.metric(1, "dynamo_peer_bad_frames_total").await? >= 3).then_some(())
    })
    .await;
    let wait = std::time::Duration::from_secs(5);
    let next = tokio::time::timeout(wait, h.next()).await.expect("closed in time");
    assert!(matches!(next, None | Some(Err(_))), "the connection is dropped");
    // The node still serves (with W = 1: its one peer is not running).
    let one = dynamo_node::client::Overrides { w: Some(1), ..Default::default() };
    let w = c.client.put(&c.url(1), b"still", None, Bytes::from("ok"), one).await.expect("put");
    assert_eq!(w.status, 204);
    c.shutdown().await;
}

/// The dialling side refuses, counts and logs a peer that answers as another node (or from
/// another cluster), and keeps redialling with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialled_peer_that_answers_as_another_node_is_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfgs = configs(2, dir.path(), dynamo_node::config::SyncPolicy::None);
    let impostor = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    cfgs[0].peers.insert(NodeId(2), impostor.local_addr().expect("addr"));
    let ring = RingShape::of(&cfgs[0].protocol().expect("config"));
    let answers = tokio::spawn(async move {
        // Answer every dial (bounded) as node 3 of this cluster.
        for _ in 0..50 {
            let Ok((s, _)) = impostor.accept().await else { return };
            let mut f = Framed::new(s, LengthDelimitedCodec::new());
            let _ = f.next().await;
            let (cluster, node, ring) = ("test".into(), NodeId(3), ring.clone());
            let nonce = [3; NONCE_BYTES];
            let h = Hello { cluster, version: PROTOCOL_VERSION, node, ring, nonce };
            hello(&mut f, &h).await;
            let _ = f.next().await;
        }
    });
    let c = Cluster::launch(cfgs, dir, 1).await;
    eventually("the impostor refused and counted", || async {
        (c.metric(1, "dynamo_peer_handshakes_refused_total").await? >= 2).then_some(())
    })
    .await;
    assert_eq!(c.metric(1, "dynamo_peer_connects_total").await, Some(0));
    answers.abort();
    c.shutdown().await;
}

/// Starts a two-node cluster with node 2 configured by `change`, and checks that both nodes
/// refuse each other, each counting the refusals: neither takes the other for a peer.
async fn nodes_refuse_each_other(change: impl FnOnce(&mut dynamo_node::NodeConfig)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfgs = configs(2, dir.path(), dynamo_node::config::SyncPolicy::None);
    change(&mut cfgs[1]);
    let c = Cluster::launch(cfgs, dir, 2).await;
    for i in 1..=2 {
        eventually("both sides refuse", || async {
            (c.metric(i, "dynamo_peer_handshakes_refused_total").await? >= 2).then_some(())
        })
        .await;
        assert_eq!(c.metric(i, "dynamo_peer_connects_total").await, Some(0), "node {i}");
    }
    c.shutdown().await;
}

/// Two nodes configured with different rings (here, partition counts) refuse each other (and
/// name both rings in their logs): neither places keys on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_different_rings_refuse_each_other() {
    nodes_refuse_each_other(|cfg| cfg.params.partitions *= 2).await;
}

/// Two nodes with different cluster secrets refuse each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_different_secrets_refuse_each_other() {
    nodes_refuse_each_other(|cfg| cfg.cluster_secret = ClusterSecret::random()).await;
}

/// One inbound connection per peer: a newer connection from a node replaces its older one, which
/// the node closes (so what inbound connections may hold is bounded by one frame per peer, and a
/// connection whose peer vanished without closing it is let go when the peer dials again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_connection_from_a_peer_replaces_the_older() {
    let c = lone_node_1(1024).await;
    let ring = RingShape::of(&c.cfgs[0].protocol().expect("config"));
    let nonce = [5; NONCE_BYTES];
    let as_node_2 =
        Hello { cluster: "test".into(), version: PROTOCOL_VERSION, node: NodeId(2), ring, nonce };
    let wait = std::time::Duration::from_secs(5);
    let secret = &c.cfgs[0].cluster_secret;
    let mut older = connect(&c).await;
    assert!(handshake(&mut older, &as_node_2, secret).await);
    let mut newer = connect(&c).await;
    assert!(handshake(&mut newer, &as_node_2, secret).await);
    let ended = tokio::time::timeout(wait, older.next()).await.expect("the older one closed");
    assert!(matches!(ended, None | Some(Err(_))), "{ended:?}");
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), newer.next()).await;
    assert!(quiet.is_err(), "the newer connection stays open: {quiet:?}");

    c.shutdown().await;
}

/// One address cannot hold every inbound slot with connections that never finish a handshake:
/// while `HANDSHAKES_PER_ADDRESS_MAX` of them from one IP are open, a peer from another address
/// still completes its handshake, and a further one from that IP is closed unheard and counted
/// as such (a handshake that times out instead, after 2 s, is counted elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_the_handshake_slots() {
    use dynamo_node::connection::HANDSHAKES_PER_ADDRESS_MAX;
    let c = lone_node_1(1024).await;
    // Another loopback address as the source: the silent host.
    let from_silent_host = || async {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        s.connect(c.cfgs[0].peer_listen).await.expect("connect")
    };
    let mut held = Vec::new();
    for _ in 0..HANDSHAKES_PER_ADDRESS_MAX {
        held.push(from_silent_host().await);
    }
    // A peer from 127.0.0.1 meanwhile.
    let ring = RingShape::of(&c.cfgs[0].protocol().expect("config"));
    let nonce = [9; NONCE_BYTES];
    let as_node_2 =
        Hello { cluster: "test".into(), version: PROTOCOL_VERSION, node: NodeId(2), ring, nonce };
    let mut f = connect(&c).await;
    assert!(handshake(&mut f, &as_node_2, &c.cfgs[0].cluster_secret).await);
    // One more from the silent host is closed, and for its address, not for a timeout.
    let mut over = from_silent_host().await;
    let mut buf = [0u8; 16];
    let wait = std::time::Duration::from_secs(10);
    let read = tokio::time::timeout(wait, tokio::io::AsyncReadExt::read(&mut over, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    assert!(c.metric(1, "dynamo_peer_connections_busy_address_total").await >= Some(1));
    drop(held);
    c.shutdown().await;
}
