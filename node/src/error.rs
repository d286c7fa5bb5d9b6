//! The node's error type: what can stop a node from starting or running.
//!
//! Outcomes the protocol expects (a quorum not reached, a peer that went away) are data, not
//! errors; this enum is for configuration mistakes, unusable storage and sockets that cannot be
//! bound.

use thiserror::Error;

/// Why a node could not start or had to stop.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The configuration is invalid (flags, TOML file, or the protocol's own checks).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be opened or written.
    #[error("storage: {0}")]
    Storage(String),
    /// A socket or file operation failed.
    #[error("I/O: {0}")]
    Io(std::io::Error),
    /// The driver task stopped unexpectedly.
    #[error("driver stopped: {0}")]
    Driver(String),
}

// Not `#[from]`: that would also make the wrapped error the source, and printing the error with
// its causes (as the CLI does) would then say the same thing twice.
impl From<std::io::Error> for NodeError {
    fn from(e: std::io::Error) -> Self {
        NodeError::Io(e)
    }
}
