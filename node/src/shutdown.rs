//! Graceful shutdown: one signal that every task of a node watches.
//!
//! SIGINT or SIGTERM (or a test calling [`Shutdown::trigger`]) flips the signal; the HTTP server
//! stops taking connections and lets in-flight requests finish (bounded by [`GRACE_MS`]), then
//! the peer transport stops (on a second signal: see `server`), and the driver syncs the store
//! before it exits.

use tokio::sync::watch;

/// How long in-flight HTTP requests get to finish once shutdown starts.
pub const GRACE_MS: u64 = 5_000;

/// The sending side: trigger once, every [`ShutdownRx`] sees it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// The watching side.
#[derive(Clone, Debug)]
pub struct ShutdownRx {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A signal not yet triggered, and a receiver for it.
    pub fn new() -> (Shutdown, ShutdownRx) {
        let (tx, rx) = watch::channel(false);
        (Shutdown { tx }, ShutdownRx { rx })
    }

    /// Starts shutting down.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Another receiver.
    pub fn subscribe(&self) -> ShutdownRx {
        ShutdownRx { rx: self.tx.subscribe() }
    }
}

impl ShutdownRx {
    /// Resolves once shutdown has been triggered (or every sender is gone).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|down| *down).await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
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
