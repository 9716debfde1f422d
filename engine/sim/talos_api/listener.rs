//! One node's port: accept, choose the TLS mode from the model, handshake, hand to tonic.
//!
//! The simulator binds only `127.0.0.1`. For every accepted connection the model decides:
//! a node that is down (powered off, rebooting before its API is up) answers nothing, so
//! the socket is closed at once and the client's handshake fails; a node in maintenance
//! mode gets server-only TLS with the maintenance certificate (an `--insecure` client
//! connects, no client certificate is asked for); any other node requires a client
//! certificate signed by the OS CA (no certificate: the handshake is refused). ALPN is `h2`
//! in both modes, as grpc-go requires. The TLS streams are fed to tonic with
//! `serve_with_incoming_shutdown`, and tonic attaches the peer certificates to every request,
//! which is how handlers read the caller's role.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::NodeApi;
use crate::sim::node::Stage;
use crate::sim::pki::{CertAndKey, PkiError, SimPki};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Setting up a node's TLS failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Certificate generation failed.
    #[error("cannot issue the certificates of node {node}")]
    Pki {
        /// Node label.
        node: String,
        /// Cause.
        #[source]
        source: PkiError,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration of node {node}")]
    Rustls {
        /// Node label.
        node: String,
        /// Cause.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("cannot build the client certificate verifier of node {node}")]
    Verifier {
        /// Node label.
        node: String,
        /// Cause.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// The two TLS configurations of a node's port.
#[derive(Clone)]
pub struct NodeTls {
    secure: Arc<ServerConfig>,
    maintenance: Arc<ServerConfig>,
    /// SPKI fingerprint of the maintenance certificate (talosctl `--cert-fingerprint`).
    pub maintenance_fingerprint: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_and_key(c: &CertAndKey) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from(c.cert_der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.expose().clone())),
    )
}

impl NodeTls {
    /// Issues the node's server certificates (SANs: 127.0.0.1, the label, the hostname) and
    /// builds both configurations.
    pub fn new(pki: &SimPki, label: &str, hostname: &str) -> Result<NodeTls, TlsSetupError> {
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        if let Ok(ip) = label.parse::<IpAddr>() {
            ips.push(ip);
        }
        let dns: Vec<&str> = [hostname]
            .into_iter()
            .chain(label.parse::<IpAddr>().is_err().then_some(label))
            .collect();
        let pki_err = |source| TlsSetupError::Pki {
            node: label.to_string(),
            source,
        };
        let rustls_err = |source| TlsSetupError::Rustls {
            node: label.to_string(),
            source,
        };
        let server = pki.os_ca.server_cert(&ips, &dns).map_err(pki_err)?;
        let maint = pki
            .maintenance_ca
            .server_cert(&ips, &dns)
            .map_err(pki_err)?;

        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(pki.os_ca.cert_der().to_vec()))
            .map_err(rustls_err)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|source| TlsSetupError::Verifier {
                node: label.to_string(),
                source,
            })?;
        let (chain, key) = chain_and_key(&server);
        let mut secure = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(rustls_err)?;
        secure.alpn_protocols = vec![b"h2".to_vec()];

        let (chain, key) = chain_and_key(&maint);
        let mut maintenance = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rustls_err)?;
        maintenance.alpn_protocols = vec![b"h2".to_vec()];
        Ok(NodeTls {
            secure: Arc::new(secure),
            maintenance: Arc::new(maintenance),
            maintenance_fingerprint: maint.spki_fingerprint,
        })
    }
}

type Incoming = Result<TlsStream<TcpStream>, std::io::Error>;

async fn accept_loop(
    listener: TcpListener,
    api: NodeApi,
    tls: NodeTls,
    tx: mpsc::Sender<Incoming>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => r,
        };
        let Ok((sock, _peer)) = accepted else {
            continue;
        };
        // Small gRPC frames must not wait for Nagle and the client's delayed ACK (~40 ms a
        // round trip on loopback); Talos' apid (Go) sets TCP_NODELAY on every connection too.
        let _ = sock.set_nodelay(true);
        let mode = api.ctx.cluster.with(|c, _| {
            c.node(&api.endpoint)
                .filter(|n| n.api_up())
                .map(|n| n.stage() == Stage::Maintenance)
        });
        let config = match mode {
            None => {
                // The node is down: it answers nothing.
                drop(sock);
                continue;
            }
            Some(true) => tls.maintenance.clone(),
            Some(false) => tls.secure.clone(),
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let acceptor = TlsAcceptor::from(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake refused"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// Serves one node's port until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    api: NodeApi,
    tls: NodeTls,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Incoming>(16);
    let machine = runbook_proto::machine_server(api.clone());
    let storage = runbook_proto::storage_server(api.clone());
    let state = runbook_proto::state_server(api.clone());
    tokio::spawn(accept_loop(listener, api, tls, tx, shutdown.clone()));
    let mut stop = shutdown;
    tonic::transport::Server::builder()
        .add_service(machine)
        .add_service(storage)
        .add_service(state)
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .await
}
