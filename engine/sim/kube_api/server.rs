//! The HTTPS server: a loopback listener, TLS with client certificates, HTTP/1.1 and HTTP/2,
//! one task per connection, and a shutdown that ends watches and drains connections.
//!
//! [`serve`] is the mini-redis-style core (listener, TLS config, model, shutdown future in;
//! runs until the future completes); [`start`] is the convenience a test or rehearsal uses:
//! it makes the PKI, binds `127.0.0.1:0`, writes `dir/kubeconfig` and returns a
//! [`KubeApiHandle`] whose `shutdown().await` stops everything. The server refuses any
//! non-loopback listener: node addresses in the model are labels, and the simulator must never
//! be reachable from the network. Requests from a connection that presented no client
//! certificate get `401 Unauthorized`; a certificate not signed by the run's CA fails the TLS
//! handshake.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::Error;
use super::kubeconfig;
use super::pki::Pki;
use super::routes::{self, AppState};
use super::status::Failure;
use super::store::Store;
use crate::sim::SharedCluster;

/// How often the store re-reads the model so watches see changes nobody asked about.
const POLL: Duration = Duration::from_millis(250);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections before cutting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running simulated Kubernetes API server started by [`start`].
#[derive(Debug)]
pub struct KubeApiHandle {
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: SocketAddr,
    /// `dir/kubeconfig`.
    pub kubeconfig_path: PathBuf,
    /// The kubeconfig's contents (YAML), for `kube::config::Kubeconfig::from_yaml`.
    pub kubeconfig_bytes: Vec<u8>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
}

impl KubeApiHandle {
    /// The server URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops accepting, ends every watch, waits (bounded) for open connections to finish,
    /// and returns the server task's result. Dropping the handle also stops the server.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.send_replace(true);
        self.task.await?
    }
}

/// Generates a throwaway PKI, binds `127.0.0.1:0`, writes `dir/kubeconfig` and serves the
/// model in a background task.
pub async fn start(shared: SharedCluster, dir: &Path) -> Result<KubeApiHandle, Error> {
    let pki = Pki::generate()?;
    let tls = pki.server_config()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(Error::Bind)?;
    let addr = listener.local_addr().map_err(Error::Bind)?;
    let text = kubeconfig::render(addr, &pki);
    let path = dir.join("kubeconfig");
    write_private(&path, text.as_bytes())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.clone(),
            source,
        })?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, tls, shared, async move {
        // Completes on shutdown() and also when the handle (the sender) is dropped.
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(KubeApiHandle {
        addr,
        kubeconfig_path: path,
        kubeconfig_bytes: text.into_bytes(),
        stop,
        task,
    })
}

/// Writes a file readable by its owner only (it holds the admin key).
async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::write(path, bytes).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).await?;
    }
    Ok(())
}

/// Serves the Kubernetes API for `shared` on `listener` (which must be loopback) with `tls`
/// until `shutdown` completes, then ends watches and drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: SharedCluster,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Bind)?;
    if !addr.ip().is_loopback() {
        return Err(Error::NotLoopback(addr));
    }
    let (stop, stopped) = watch::channel(false);
    let store = Arc::new(Store::new(shared));
    let app = routes::router(AppState {
        store: store.clone(),
        shutdown: stopped.clone(),
        server: addr.to_string(),
    });
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = JoinSet::new();
    tasks.spawn(poll(store, stopped.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    // As kube-apiserver (Go) does: no Nagle delay on small responses.
                    let _ = tcp.set_nodelay(true);
                    tasks.spawn(connection(tcp, acceptor.clone(), app.clone(), stopped.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("kube api: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    stop.send_replace(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// Re-reads the model whenever it may have changed (an API call or a due transition, see
/// `SharedCluster::changed`), and at least every [`POLL`], until shutdown.
async fn poll(store: Arc<Store>, mut stopped: watch::Receiver<bool>) {
    let shared = store.shared().clone();
    let mut changes = shared.subscribe();
    loop {
        // 503 while the model has no API server; watchers are told through the store.
        let _ = store.sync();
        tokio::select! {
            () = shared.changed(&mut changes, POLL) => {}
            _ = async { stopped.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
    }
}

/// The authenticated user of a connection: the client certificate's CN and O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Common name (user).
    pub user: String,
    /// Organizations (groups).
    pub groups: Vec<String>,
}

fn identity(certs: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Option<Identity> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = certs?.first()?;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { user, groups })
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!("kube api: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let who = identity(tls.get_ref().1.peer_certificates());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let app = app.clone();
        let who = who.clone();
        async move {
            let Some(who) = who else {
                return Ok::<_, Infallible>(Failure::unauthorized().into_response());
            };
            req.extensions_mut().insert(who);
            app.oneshot(req).await
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { stopped.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
        }
    }
}
