//! Starting and stopping a node: open storage, bind the listeners, start the driver task, the
//! peer transport and the HTTP API, and tear them down in order on shutdown.
//!
//! Shutdown order: stop accepting HTTP connections and let the requests in flight finish within
//! [`crate::shutdown::GRACE_MS`], with the peer transport still up (their replicas answer on
//! it; the node goes on serving its peers meanwhile); then stop the transport, then the driver,
//! which syncs the store before it exits.

use crate::api::{self, ApiState};
use crate::config::{NodeConfig, SyncPolicy};
use crate::connection::{self, PeerContext, PeerLink};
use crate::driver::{Driver, DriverHandle, Outbound};
use crate::error::NodeError;
use crate::metrics::{Metrics, NetStats};
use crate::shutdown::{Shutdown, ShutdownRx, GRACE_MS};
use crate::storage::SledStore;
use dynamo_model::{ActorId, Node, NodeId, Ring, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

/// A node that is running.
#[derive(Debug)]
pub struct RunningNode {
    /// Its id.
    pub id: NodeId,
    /// Its incarnation.
    pub incarnation: u32,
    /// Where its HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where its peer listener listens.
    pub peer_addr: SocketAddr,
    shutdown: Shutdown,
    done: oneshot::Receiver<Result<(), NodeError>>,
}

impl RunningNode {
    /// Starts shutting down (returns at once).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// Waits until the node has stopped.
    pub async fn wait(self) -> Result<(), NodeError> {
        self.done.await.map_err(|_| NodeError::Driver("the node's thread ended early".into()))?
    }

    /// Resolves once the node starts shutting down, whoever asked.
    pub async fn stopping(&self) {
        self.shutdown.subscribe().wait().await;
    }

    /// Stops the node and waits for it.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.stop();
        self.wait().await
    }
}

/// Starts a node on threads of its own ([`NodeConfig::threads`] of them, with a tokio runtime of
/// its own). Listeners are bound before this returns, so clients may connect at once. The caller
/// may be on any runtime: the node shares nothing with it but channels.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let threads = cfg.threads;
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder.enable_all().thread_name(format!("node-{}", cfg.id)).build()?;
    std::thread::Builder::new().name(format!("node-{}", cfg.id)).spawn(move || {
        rt.block_on(async move {
            let (done_tx, done) = oneshot::channel();
            match start_here(cfg, done).await {
                Ok((node, task)) => {
                    let _ = ready_tx.send(Ok(node));
                    report_end(task, done_tx).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    })?;
    ready_rx.await.map_err(|_| NodeError::Driver("the node's thread ended early".into()))?
}

/// Starts a node on the caller's tokio runtime, sharing its threads with whatever else runs
/// there (`dynamo dev` runs all its nodes so: on 2 cores, one pool of workers for three nodes
/// measured faster than a thread per node). [`NodeConfig::threads`] is not used.
pub async fn start_shared(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    let (done_tx, done) = oneshot::channel();
    let (node, task) = start_here(cfg, done).await?;
    tokio::spawn(report_end(task, done_tx));
    Ok(node)
}

/// Waits for a node's task and hands its outcome to [`RunningNode::wait`].
async fn report_end(
    task: JoinHandle<Result<(), NodeError>>,
    done: oneshot::Sender<Result<(), NodeError>>,
) {
    let ended = task.await.unwrap_or_else(|e| Err(NodeError::Driver(e.to_string())));
    let _ = done.send(ended);
}

/// The error of a listener that could not be bound: the address, what it was for (`peers`,
/// `HTTP`), the cause, and `hint`.
pub(crate) fn cannot_listen(
    addr: SocketAddr,
    what: &str,
    e: &std::io::Error,
    hint: &str,
) -> NodeError {
    let why = format!("cannot listen on {addr} ({what}): {e}{hint}");
    NodeError::Io(std::io::Error::new(e.kind(), why))
}

/// Starts a node's tasks on the current runtime; the returned task ends when the node has stopped.
async fn start_here(
    cfg: NodeConfig,
    done: oneshot::Receiver<Result<(), NodeError>>,
) -> Result<(RunningNode, JoinHandle<Result<(), NodeError>>), NodeError> {
    let config = Arc::new(cfg.protocol()?);
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    // The ports first: a node that cannot listen leaves no data directory behind (a new one
    // would also have made an incarnation for nothing). Connections that come while the store
    // opens (its recovery, or a lock a node stopped in this process has not yet let go of)
    // wait in the backlog.
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| cannot_listen(addr, what, &e, ""))
    };
    let peer_listener = bind(cfg.peer_listen, "peers").await?;
    let http_listener = bind(cfg.http_listen, "HTTP").await?;
    let (store, incarnation) = SledStore::open(
        &cfg.data_dir,
        cfg.id,
        cfg.sync == SyncPolicy::None,
        cfg.sync == SyncPolicy::Always,
    )
    .map_err(|e| NodeError::Storage(e.to_string()))?;
    let peer_addr = peer_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let (shutdown, _) = Shutdown::new();
    // The peer transport stops only once the HTTP requests in flight have their answers (or the
    // grace period is over): the replicas' acknowledgements travel on it.
    let (transport, _) = Shutdown::new();
    let net = Arc::new(NetStats::default());
    let limits = config.limits();
    let ctx = Arc::new(PeerContext {
        cluster: cfg.cluster.clone(),
        me: cfg.id,
        peers: cfg.peers.keys().copied().collect(),
        ring: connection::RingShape::of(&config),
        frame_bytes_max: connection::frame_bytes_max(limits),
        sequence_max: limits.peer_sequence_max(config.n()),
        secret: cfg.cluster_secret.clone(),
        net: net.clone(),
        inbound: Default::default(),
        refusals_logged: connection::RefusalLogs::new(&cfg.peers.keys().copied().collect()),
    });

    let mut outbound = Outbound::new();
    let mut peer_tasks = Vec::new();
    for (&peer, &addr) in &cfg.peers {
        let link = Arc::new(PeerLink::new(ctx.clone(), peer));
        outbound.insert(peer, link.clone());
        let task = connection::run_link(link, addr, transport.subscribe());
        peer_tasks.push(tokio::spawn(task));
    }

    let actor = ActorId::new(cfg.id, incarnation);
    let node = Node::new(actor, config.clone(), ring.clone(), store);
    let (driver, handle) = Driver::new(node, outbound, net.clone(), cfg.sync, cfg.sync_interval_ms);
    let driver_task = tokio::spawn(driver.run());

    let accept = tokio::spawn(accept_peers(
        peer_listener,
        ctx.clone(),
        handle.clone(),
        transport.subscribe(),
    ));
    let bodies = api::body_budget(config.limits());
    let state = ApiState {
        bodies,
        driver: handle.clone(),
        metrics: Arc::new(Metrics::default()),
        net,
        config,
        ring,
        peers: Arc::new(cfg.peers.clone()),
        peer_secret: !cfg.cluster_secret.is_none(),
        body_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
        stopping: shutdown.subscribe(),
    };
    let app = api::router(state);
    let http_down = shutdown.subscribe();
    let idle = Duration::from_millis(cfg.http_idle_timeout_ms);
    let http = tokio::spawn(serve_http(http_listener, app, idle, http_down));
    tracing::info!(
        node = %cfg.id, incarnation, %http_addr, %peer_addr, sync = %cfg.sync,
        data_dir = %cfg.data_dir.display(), "node started"
    );
    if cfg.cluster_secret.is_none() && !cfg.peers.is_empty() {
        tracing::warn!(
            node = %cfg.id, %peer_addr,
            "no cluster secret (--cluster-secret-file): any host that can reach the peer port can act as a peer"
        );
    }

    let mut down = shutdown.subscribe();
    let id = cfg.id;
    let trigger = shutdown.clone();
    let task = tokio::spawn(async move {
        let mut driver_task = driver_task;
        // The driver ends only when told to, unless an fsync failed under `always` (fail-stop)
        // or a bug in the core made it panic: then the node stops rather than linger without a
        // brain, and exits non-zero.
        let crashed = tokio::select! {
            _ = down.wait() => None,
            ended = &mut driver_task => Some(ended),
        };
        if let Some(ended) = crashed {
            tracing::error!(node = %id, "driver stopped unexpectedly: {ended:?}; shutting down");
            trigger.trigger();
            finish(http, transport, accept, peer_tasks, handle, None).await?;
            return Err(NodeError::Driver(format!("driver stopped unexpectedly: {ended:?}")));
        }
        tracing::info!(node = %id, "shutting down");
        finish(http, transport, accept, peer_tasks, handle, Some(driver_task)).await
    });
    Ok((RunningNode { id: cfg.id, incarnation, http_addr, peer_addr, shutdown, done }, task))
}

/// Stops a node whose shutdown was triggered, in order: the HTTP server answers what is in
/// flight (bounded by [`GRACE_MS`]) while the peer transport still runs, then the transport
/// stops, then the driver syncs and ends.
async fn finish(
    http: JoinHandle<()>,
    transport: Shutdown,
    accept: JoinHandle<()>,
    peer_tasks: Vec<JoinHandle<()>>,
    driver: DriverHandle,
    driver_task: Option<JoinHandle<Result<(), StoreError>>>,
) -> Result<(), NodeError> {
    let grace = Duration::from_millis(GRACE_MS);
    let mut http = http;
    match tokio::time::timeout(grace, &mut http).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("HTTP task failed: {e}"),
        Err(_) => {
            // Its connections would otherwise outlive the node (on a shared runtime, the process).
            http.abort();
            let _ = http.await;
            tracing::warn!("in-flight HTTP requests did not finish within {GRACE_MS} ms");
        }
    }
    transport.trigger();
    accept.abort();
    // Awaited, so that the listener is closed when the node has stopped: a node started again
    // in the same process binds its ports before anything else.
    let _ = accept.await;
    for t in peer_tasks {
        t.abort();
    }
    if let Some(task) = driver_task {
        driver.shutdown().await;
        // A final sync that failed fails the stop (a non-zero exit): under `none` and `interval`
        // acknowledged writes may not be durable, and the operator must hear of it.
        task.await
            .map_err(|e| NodeError::Driver(e.to_string()))?
            .map_err(|e| NodeError::Storage(e.to_string()))?;
    }
    Ok(())
}

/// Peer connections accepted at once; further ones wait in the kernel backlog.
pub const INBOUND_CONNECTIONS_MAX: usize = 256;

async fn accept_peers(
    listener: TcpListener,
    ctx: Arc<PeerContext>,
    driver: DriverHandle,
    mut shutdown: ShutdownRx,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(INBOUND_CONNECTIONS_MAX));
    let handshaking = connection::Handshaking::default();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Some(slot) = handshaking.slot(addr.ip()) else {
                    ctx.refuse_busy_address(addr);
                    drop(stream);
                    continue;
                };
                let (ctx, driver, sd) = (ctx.clone(), driver.clone(), shutdown.clone());
                tokio::spawn(async move {
                    connection::serve_inbound(ctx, stream, addr, driver, sd, slot).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("peer accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(connection::BACKOFF_MIN_MS)).await;
            }
        }
    }
}

/// HTTP connections open at once; further clients wait in the kernel backlog until one closes.
pub const HTTP_CONNECTIONS_MAX: usize = 4096;

/// Serves the HTTP API on `listener` until `down`: at most [`HTTP_CONNECTIONS_MAX`] connections,
/// each with `TCP_NODELAY` (small request/response exchanges: Nagle must never hold a reply back)
/// and each given `idle` to send a request's head, counted from when the connection opens or
/// its previous answer was written. So a connection that sends nothing, or half a head, closes
/// instead of holding its slot for good; the body has the same bound (see `api::read_body`), and
/// so has writing the answer, on Linux (`TCP_USER_TIMEOUT`: a client that reads none of it for
/// that long is cut off). On
/// shutdown: stops accepting, lets the requests in flight finish, closes idle connections, and
/// returns once every connection has ended.
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    idle: Duration,
    mut shutdown: ShutdownRx,
) {
    let permits = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(idle);
    // The connections' tasks: aborting this task (the grace period is over) aborts them too.
    let mut conns = tokio::task::JoinSet::new();
    let down = shutdown.wait();
    tokio::pin!(down);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
            _ = &mut down => break,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(connection::BACKOFF_MIN_MS)).await;
                    continue;
                }
            },
            _ = &mut down => break,
        };
        let _ = stream.set_nodelay(true);
        // The answer's side of the bound: a client that stops reading (its window stays shut)
        // or vanishes while an answer is unacknowledged is cut off after `idle` by the kernel,
        // instead of holding its slot and the unsent answer for good.
        // (At least a second: below that, one retransmission on a real network would do.)
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&stream)
            .set_tcp_user_timeout(Some(idle.max(Duration::from_secs(1))));
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            // Errors here are the client's (it closed, sent garbage, or was too slow): hyper
            // has answered or closed already.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
