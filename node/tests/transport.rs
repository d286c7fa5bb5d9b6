//! The peer transport refuses what it must: a wrong cluster name, a wrong protocol version, an
//! unknown node id, an oversized or undecodable frame. Each is counted and none disturbs the node.

mod common;

use bytes::Bytes;
use common::{eventually, Cluster};
use dynamo_model::NodeId;
use dynamo_node::connection::{Hello, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

async fn connect(c: &Cluster) -> Framed<TcpStream, LengthDelimitedCodec> {
    let s = TcpStream::connect(c.cfgs[0].peer_listen).await.expect("connect");
    Framed::new(s, LengthDelimitedCodec::new())
}

async fn hello(f: &mut Framed<TcpStream, LengthDelimitedCodec>, h: &Hello) {
    let bytes = postcard::to_stdvec(h).expect("encode");
    f.send(Bytes::from(bytes)).await.expect("send hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_mismatches_and_bad_frames_are_refused_and_counted() {
    let c = Cluster::start(2, |cfg| cfg.params.limits.value_bytes_max = 1024).await;
    let bad = [
        Hello { cluster: "other".into(), version: PROTOCOL_VERSION, node: NodeId(2) },
        Hello { cluster: "test".into(), version: PROTOCOL_VERSION + 1, node: NodeId(2) },
        Hello { cluster: "test".into(), version: PROTOCOL_VERSION, node: NodeId(99) },
    ];
    for h in &bad {
        let mut f = connect(&c).await;
        hello(&mut f, h).await;
        // The node closes without answering.
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), f.next()).await;
        assert!(matches!(next, Ok(None) | Ok(Some(Err(_)))), "{h:?} must be refused");
    }
    eventually("refusals counted", || async {
        (c.metric(1, "dynamo_peer_handshakes_refused_total").await? >= 3).then_some(())
    })
    .await;

    // A good handshake, then garbage: the connection is dropped and counted.
    let good = Hello { cluster: "test".into(), version: PROTOCOL_VERSION, node: NodeId(2) };
    let mut f = connect(&c).await;
    hello(&mut f, &good).await;
    let answer = f.next().await.expect("answer").expect("frame");
    let back: Hello = postcard::from_bytes(&answer).expect("hello back");
    assert_eq!(back.node, NodeId(1));
    f.send(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff])).await.expect("send");
    // And an oversized frame on another connection.
    let mut g = connect(&c).await;
    hello(&mut g, &good).await;
    let _ = g.next().await;
    let _ = g.send(Bytes::from(vec![0u8; 4 << 20])).await;
    eventually("bad frames counted", || async {
        (c.metric(1, "dynamo_peer_bad_frames_total").await? >= 2).then_some(())
    })
    .await;
    // The node still serves.
    let w = c
        .client
        .put(&c.url(1), b"still", None, Bytes::from("ok"), Default::default())
        .await
        .expect("put");
    assert_eq!(w.status, 204);
    c.shutdown().await;
}
