//! Why starting or running the simulated Kubernetes API server can fail.
//!
//! Request-level failures are answered to the client as Kubernetes `Status` objects (see
//! `status.rs`) and never surface here; this error is for the operator or test that starts the
//! server: generating the throwaway PKI, binding the loopback listener, writing the
//! kubeconfig, or a refusal to listen anywhere but loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure to start, run or stop the simulated Kubernetes API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Generating the throwaway CA or a certificate failed.
    #[error("generating the simulator's Kubernetes certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS server configuration was rejected by rustls.
    #[error("building the TLS server configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("building the client-certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Binding or inspecting the listener failed.
    #[error("binding the Kubernetes API listener on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The listener is not on a loopback address; the simulator never serves anything else.
    #[error("refusing to serve the simulated Kubernetes API on non-loopback address {0}")]
    NotLoopback(SocketAddr),
    /// Writing the kubeconfig failed.
    #[error("writing {path}: {source}")]
    Kubeconfig {
        /// The file that could not be written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server task panicked or was cancelled.
    #[error("the Kubernetes API server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
