//! Helpers for cluster tests: free loopback ports, temp data dirs, in-process clusters, polling.
#![allow(dead_code)]

use dynamo_model::{ConfigParams, NodeId};
use dynamo_node::client::HttpClient;
use dynamo_node::{ClusterSecret, NodeConfig, RunningNode, SyncPolicy};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest any polling helper waits.
pub const WAIT_MS_MAX: u64 = 20_000;
/// Tries of [`Cluster::metric`] before it gives up on a missing metric.
const METRIC_TRIES: usize = 20;
/// How long a test cluster's coordinators wait for replies when a request names no timeout: long
/// enough that a busy machine does not turn a slow write into a 503 (tests of timeouts set their
/// own).
pub const TEST_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Pause between polls.
pub const POLL_MS: u64 = 50;

/// Ports for test nodes come from below the kernel's ephemeral range (32768 and up on Linux), so
/// that no outgoing connection can take a node's port while the node is down for a restart.
const PORT_LOW: u16 = 20_000;
const PORT_HIGH: u16 = 32_000;
/// Attempts at finding a free port.
const PORT_TRIES_MAX: usize = 1_000;

/// Where test ports are chosen: [`PORT_LOW`]..[`PORT_HIGH`], or below the kernel's ephemeral range
/// where a host starts it lower than usual.
fn port_range() -> std::ops::Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(PORT_HIGH);
    let high = PORT_HIGH.min(ephemeral_low);
    let low = PORT_LOW.min(high / 2).max(1_024);
    if high > low.saturating_add(1_000) {
        low..high
    } else {
        PORT_LOW..PORT_HIGH
    }
}

/// Binds a free loopback port below the ephemeral range and keeps it bound.
pub fn hold_free_port() -> std::net::TcpListener {
    let range = port_range();
    for _ in 0..PORT_TRIES_MAX {
        let port = rand::random_range(range.clone());
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
    panic!("no free port in {range:?}");
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    hold_free_port().local_addr().expect("local addr").port()
}

/// Polls `f` until it returns `Some`, for at most `WAIT_MS_MAX`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Configurations of an `n`-node cluster on free loopback ports under `dir`.
pub fn configs(n: u16, dir: &std::path::Path, sync: SyncPolicy) -> Vec<NodeConfig> {
    let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    // Hold every listener until all ports are chosen, so that no two nodes get the same one.
    let held: Vec<std::net::TcpListener> = (0..2 * n).map(|_| hold_free_port()).collect();
    let ports: Vec<u16> = held.iter().map(|l| l.local_addr().expect("local addr").port()).collect();
    drop(held);
    let (peer_ports, http_ports) = ports.split_at(n as usize);
    let secret = ClusterSecret::random();
    let ids: Vec<u16> = (1..=n).collect();
    ids.iter()
        .map(|&id| {
            let peers: BTreeMap<NodeId, SocketAddr> = ids
                .iter()
                .filter(|&&p| p != id)
                .map(|&p| (NodeId(p), local(peer_ports[(p - 1) as usize])))
                .collect();
            NodeConfig {
                cluster: "test".into(),
                cluster_secret: secret.clone(),
                id: NodeId(id),
                peer_listen: local(peer_ports[(id - 1) as usize]),
                http_listen: local(http_ports[(id - 1) as usize]),
                data_dir: dir.join(format!("node-{id}")),
                peers,
                sync,
                sync_interval_ms: 50,
                threads: 1,
                http_idle_timeout_ms: dynamo_node::config::DEFAULT_HTTP_IDLE_TIMEOUT_MS,
                params: {
                    let mut p = ConfigParams::for_nodes(ids.iter().map(|&i| NodeId(i)));
                    p.timeouts.request_ms = TEST_REQUEST_TIMEOUT_MS;
                    p
                },
            }
        })
        .collect()
}

/// An in-process cluster.
pub struct Cluster {
    pub cfgs: Vec<NodeConfig>,
    pub nodes: Vec<Option<RunningNode>>,
    pub client: HttpClient,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes; `tweak` may edit the configurations first.
    pub async fn start(n: u16, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfgs = configs(n, dir.path(), SyncPolicy::Always);
        for c in &mut cfgs {
            tweak(c);
        }
        let up = cfgs.len();
        let cluster = Cluster::launch(cfgs, dir, up).await;
        cluster.wait_connected().await;
        cluster
    }

    /// Starts the first `up` of `cfgs` (data under `dir`) without waiting for their peer links:
    /// for configurations whose nodes are meant not to connect.
    pub async fn launch(cfgs: Vec<NodeConfig>, dir: tempfile::TempDir, up: usize) -> Cluster {
        let mut nodes = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            if i >= up {
                nodes.push(None);
                continue;
            }
            // threads 0: on the test's runtime, as `dynamo dev` runs its nodes.
            let started = if c.threads == 0 {
                dynamo_node::server::start_shared(c.clone()).await
            } else {
                dynamo_node::start(c.clone()).await
            };
            nodes.push(Some(started.expect("node starts")));
        }
        Cluster { cfgs, nodes, client: HttpClient::new(), dir }
    }

    /// Base URL of node `i` (1-based).
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.cfgs[i - 1].http_listen)
    }

    /// Waits until every running node has an outbound connection to every running peer.
    pub async fn wait_connected(&self) {
        let running: Vec<usize> =
            (1..=self.nodes.len()).filter(|&i| self.nodes[i - 1].is_some()).collect();
        for &i in &running {
            let want = running.len() as u64 - 1;
            eventually("peer connections", || async {
                let m = self.metric(i, "dynamo_peer_connects_total").await?;
                (m >= want).then_some(())
            })
            .await;
        }
    }

    /// A metric's value on node `i`; `None` if it is still missing after a few tries over a
    /// second (a node whose driver is slow to answer leaves the driver's own metrics out).
    pub async fn metric(&self, i: usize, name: &str) -> Option<u64> {
        for _ in 0..METRIC_TRIES {
            let url = format!("{}/metrics", self.url(i));
            let r = self.client.send(hyper::Method::GET, &url, &[], Default::default()).await;
            let value = r.ok().and_then(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            });
            if value.is_some() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        None
    }

    /// Stops node `i` cleanly.
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i - 1].take() {
            n.shutdown().await.expect("clean shutdown");
        }
    }

    /// Restarts node `i` on the same ports and data dir.
    pub async fn restart(&mut self, i: usize) {
        let node = dynamo_node::start(self.cfgs[i - 1].clone()).await.expect("restart");
        self.nodes[i - 1] = Some(node);
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 1..=self.nodes.len() {
            self.stop(i).await;
        }
    }
}
