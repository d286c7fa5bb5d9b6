//! `dynamo dev`: a local three-node cluster in one process, for trying the store out.
//!
//! Nodes 1..=3 listen on 127.0.0.1: HTTP on 8081-8083, peers on 9081-9083 (both configurable),
//! with data under `./dev-data/node-{id}`. Ctrl-C (or SIGTERM) stops every node cleanly.

use crate::config::{ClusterSecret, NodeConfig, SyncPolicy};
use crate::error::NodeError;
use crate::server::{self, RunningNode};
use clap::Args;
use dynamo_model::{ConfigParams, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Most nodes `dynamo dev` starts.
pub const DEV_NODES_MAX: u16 = 9;

/// Flags of `dynamo dev`.
#[derive(Args, Clone, Debug)]
pub struct DevArgs {
    /// Where the nodes keep their data.
    #[arg(long, default_value = "dev-data")]
    pub data_dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// HTTP port of node 1 (node i uses this + i - 1).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
    /// Peer port of node 1 (node i uses this + i - 1).
    #[arg(long, default_value_t = 9081)]
    pub peer_port: u16,
    /// When writes are made durable.
    #[arg(long, value_enum, default_value_t = SyncPolicy::Always)]
    pub sync: SyncPolicy,
    /// Threads per node: 0 runs every node on one shared pool of workers (one per core), N gives
    /// each node a runtime of its own with N threads.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Delete the data directory first.
    #[arg(long)]
    pub fresh: bool,
}

/// The configuration of node `id` of a dev cluster.
pub fn node_config(args: &DevArgs, id: u16, secret: &ClusterSecret) -> NodeConfig {
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let ids: Vec<u16> = (1..=args.nodes).collect();
    let peers: BTreeMap<NodeId, SocketAddr> = ids
        .iter()
        .filter(|&&p| p != id)
        .map(|&p| (NodeId(p), local(args.peer_port + p - 1)))
        .collect();
    NodeConfig {
        cluster: "dev".into(),
        cluster_secret: secret.clone(),
        id: NodeId(id),
        peer_listen: local(args.peer_port + id - 1),
        http_listen: local(args.http_port + id - 1),
        data_dir: args.data_dir.join(format!("node-{id}")),
        peers,
        sync: args.sync,
        sync_interval_ms: crate::config::DEFAULT_SYNC_INTERVAL_MS,
        threads: args.threads.max(1),
        http_idle_timeout_ms: crate::config::DEFAULT_HTTP_IDLE_TIMEOUT_MS,
        params: ConfigParams::for_nodes(ids.iter().map(|&i| NodeId(i))),
    }
}

/// Runs the dev cluster until SIGINT or SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), NodeError> {
    if args.threads > crate::config::THREADS_MAX {
        return Err(NodeError::Config(format!(
            "--threads must be 0..={}",
            crate::config::THREADS_MAX
        )));
    }
    if args.nodes == 0 || args.nodes > DEV_NODES_MAX {
        return Err(NodeError::Config(format!("--nodes must be 1..={DEV_NODES_MAX}")));
    }
    for (what, first) in [("--http-port", args.http_port), ("--peer-port", args.peer_port)] {
        if first.checked_add(args.nodes - 1).is_none() {
            return Err(NodeError::Config(format!(
                "{what} {first}: {} nodes need ports up to {}, past 65535",
                args.nodes,
                u32::from(first) + u32::from(args.nodes) - 1
            )));
        }
    }
    // Every port is tried before anything is deleted or made: a busy one (another `dev` still
    // running, say) fails the start here, not after `--fresh` has removed the data or the first
    // nodes have started. (Released again at once: each node binds its own.)
    let probe: Result<Vec<std::net::TcpListener>, NodeError> = (1..=args.nodes)
        .flat_map(|id| {
            let cfg = node_config(&args, id, &ClusterSecret::none());
            [(cfg.peer_listen, "peers"), (cfg.http_listen, "HTTP")]
        })
        .map(|(addr, what)| {
            std::net::TcpListener::bind(addr).map_err(|e| {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => {
                        " (another `dynamo dev` running? --http-port and --peer-port pick others)"
                    }
                    _ => "",
                };
                server::cannot_listen(addr, what, &e, hint)
            })
        })
        .collect();
    drop(probe?);
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)?;
    }
    // Caught from here on, so that a signal while the nodes start stops them cleanly.
    let mut signals = crate::shutdown::Signals::install();
    let mut nodes: Vec<RunningNode> = Vec::new();
    // The nodes share one process, and so a secret made for this run: nothing else can join.
    let secret = ClusterSecret::random();
    for id in 1..=args.nodes {
        let cfg = node_config(&args, id, &secret);
        let started = if args.threads == 0 {
            server::start_shared(cfg).await
        } else {
            server::start(cfg).await
        };
        match started {
            Ok(n) => nodes.push(n),
            Err(e) => {
                for n in nodes {
                    let _ = n.shutdown().await;
                }
                return Err(e);
            }
        }
    }
    let first = nodes.first().map(|n| n.http_addr.to_string()).unwrap_or_default();
    let c = ConfigParams::for_nodes((1..=args.nodes).map(NodeId));
    println!("dynamo dev: {} nodes, N={} R={} W={}, sync={}", args.nodes, c.n, c.r, c.w, args.sync);
    for n in &nodes {
        println!("  node {}  http://{}  peer {}", n.id.0, n.http_addr, n.peer_addr);
    }
    println!("data under {}/", args.data_dir.display());
    println!();
    println!("Try:");
    println!("  curl -i -X PUT --data-binary hello http://{first}/kv/greeting");
    println!("  curl -i http://{first}/kv/greeting");
    println!("  curl -s http://{first}/status");
    if first != "127.0.0.1:8081" {
        println!("  export DYNAMO_NODE={first}   # the CLI's default node is 127.0.0.1:8081");
    }
    println!("  dynamo put greeting hello   # or: cargo run --release -p dynamo-node -- put ...");
    println!("  dynamo get greeting         # every sibling, and the context (remembered)");
    println!("  dynamo put greeting world   # sends the remembered context: supersedes the get");
    println!("  dynamo put greeting x --blind  # no context: becomes a sibling");
    println!("  dynamo delete greeting      # removes what the context covers");
    println!("Ctrl-C stops the cluster.");
    let any_stopping = futures::future::select_all(nodes.iter().map(|n| Box::pin(n.stopping())));
    tokio::select! {
        _ = signals.recv() => {}
        _ = any_stopping => {}
    }
    println!("stopping... (a second Ctrl-C exits at once)");
    for n in &nodes {
        n.stop();
    }
    let result = crate::shutdown::unless_signalled_again(&mut signals, async {
        let mut result = Ok(());
        for n in nodes {
            if let Err(e) = n.wait().await {
                result = Err(e);
            }
        }
        result
    })
    .await;
    println!("stopped.");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DevArgs {
        DevArgs {
            data_dir: PathBuf::from("never-created"),
            nodes: 3,
            http_port: 8081,
            peer_port: 9081,
            sync: SyncPolicy::None,
            threads: 0,
            fresh: false,
        }
    }

    /// Ports past 65535 are refused before anything starts (they would overflow).
    #[tokio::test]
    async fn ports_past_the_range_are_refused() {
        for a in
            [DevArgs { http_port: 65_534, ..args() }, DevArgs { peer_port: u16::MAX, ..args() }]
        {
            match run(a).await {
                Err(NodeError::Config(why)) => assert!(why.contains("past 65535"), "{why}"),
                other => panic!("not refused: {other:?}"),
            }
        }
        assert!(!PathBuf::from("never-created").exists());
    }

    /// A busy port fails the start before `--fresh` deletes anything or any node starts.
    #[tokio::test]
    async fn a_busy_port_is_found_before_anything_is_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("dev-data");
        std::fs::create_dir_all(data.join("node-1")).expect("old data");
        // The peer port is tried first, and found busy: no other port is involved.
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer_port = held.local_addr().expect("addr").port();
        let a = DevArgs { data_dir: data.clone(), peer_port, nodes: 1, fresh: true, ..args() };
        let busy = format!("cannot listen on 127.0.0.1:{peer_port} (peers)");
        let hint = "another `dynamo dev` running? --http-port and --peer-port pick others";
        match run(a).await {
            Err(e) => assert!(e.to_string().contains(&busy) && e.to_string().contains(hint), "{e}"),
            Ok(()) => panic!("started on a busy port"),
        }
        assert!(data.join("node-1").exists(), "--fresh deleted nothing");
    }
}
