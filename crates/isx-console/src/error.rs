//! Why the console could not start.

use std::net::SocketAddr;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Neither a gateway nor a policy directory was given.
    #[error(
        "nothing to show: give the auditor's identity (--as auditor --pki DIR --gateway ADDR --officer NAME, or --node-config FILE) and/or a policy directory (--policy DIR)"
    )]
    Nothing,
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gateway could not be reached.
    #[error("{0}")]
    Gateway(String),
    /// The reason the console gives for its reads is not usable (an empty
    /// or overlong case reference).
    #[error("the console's reason for its reads (--purpose, --case): {0}")]
    Reason(isx_core::read_reason::ReasonError),
    /// The policy directory does not load.
    #[error("{0}")]
    Policy(String),
    /// A template does not compile.
    #[error("template {name}: {message}")]
    Template {
        /// The template file.
        name: String,
        /// The error, with its line.
        message: String,
    },
}
