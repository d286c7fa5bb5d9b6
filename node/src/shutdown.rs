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

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
