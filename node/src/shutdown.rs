//! Graceful shutdown: one signal that every task of a node watches.
//!
//! SIGINT or SIGTERM (or a test calling [`Shutdown::trigger`]) flips the signal; the HTTP server
//! stops taking connections and lets in-flight requests finish (bounded by [`GRACE_MS`]), then
//! the peer transport stops (on a second signal: see `server`), and the driver syncs the store
//! before it exits.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long in-flight HTTP requests get to finish once shutdown starts.
pub const GRACE_MS: u64 = 5_000;
/// How long after shutdown starts a request still waiting for the core (or for its body) is
/// answered 503 instead: inside [`GRACE_MS`], so that the answer is written before the server
/// closes the connections that are left.
pub const ANSWER_BY_MS: u64 = GRACE_MS - 1_000;

/// The sending side: trigger once, every [`ShutdownRx`] sees it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// When it was first triggered.
    tx: watch::Sender<Option<Instant>>,
}

/// The watching side.
#[derive(Clone, Debug)]
pub struct ShutdownRx {
    rx: watch::Receiver<Option<Instant>>,
}

impl Shutdown {
    /// A signal not yet triggered, and a receiver for it.
    pub fn new() -> (Shutdown, ShutdownRx) {
        let (tx, rx) = watch::channel(None);
        (Shutdown { tx }, ShutdownRx { rx })
    }

    /// Starts shutting down (a later call changes nothing: the first one's time counts).
    pub fn trigger(&self) {
        self.tx.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(Instant::now);
            first
        });
    }

    /// Another receiver.
    pub fn subscribe(&self) -> ShutdownRx {
        ShutdownRx { rx: self.tx.subscribe() }
    }
}

impl ShutdownRx {
    /// Resolves once shutdown has been triggered (or every sender is gone).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(Option::is_some).await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Resolves [`ANSWER_BY_MS`] after shutdown was triggered, however late it is first polled:
    /// when a request still in flight must be answered without waiting any longer. (Never, if
    /// every sender is gone untriggered.)
    pub async fn answer_by(mut self) {
        let at = match self.rx.wait_for(Option::is_some).await {
            Ok(at) => *at,
            Err(_) => None,
        };
        match at {
            Some(at) => tokio::time::sleep_until(at + Duration::from_millis(ANSWER_BY_MS)).await,
            None => std::future::pending().await,
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment [`Signals::install`] returns: a signal that
/// arrives while a node is still starting (waiting for its store's lock, or while sled recovers a
/// large log) is kept, and [`Signals::recv`] returns at once afterwards, so that the node stops
/// cleanly instead of being killed by the signal's default action.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    caught: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts catching the signals (on a tokio runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let caught = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            Signals { caught }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Resolves on the first SIGINT or SIGTERM since [`Signals::install`].
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            match &mut self.caught {
                Some((int, term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `stop`, a node's (or the dev cluster's) orderly shutdown after a first signal, unless
/// another signal comes first: an operator who signals again does not want to wait for in-flight
/// requests or the final sync, so the process exits at once, with status 130. That is a crash
/// as far as the data directory knows: under `always` it loses nothing acknowledged, and the next
/// start takes a new incarnation.
pub async fn unless_signalled_again<T>(signals: &mut Signals, stop: impl Future<Output = T>) -> T {
    tokio::select! {
        done = stop => done,
        _ = signals.recv() => {
            tracing::warn!("a second signal: exiting at once, without waiting for the shutdown");
            std::process::exit(130)
        }
    }
}
