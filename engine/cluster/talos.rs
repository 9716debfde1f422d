//! Our Talos API client: a tonic channel over rustls (ring) with the mTLS identity of a
//! talosconfig context, or an insecure maintenance-mode connection.
//!
//! Like talosctl: the server certificate is verified against the context's CA with the
//! endpoint host as server name (an IP ServerName for IP endpoints), ALPN is `h2`, the client
//! presents the context's certificate, and replies may be 32 MiB. Talos writes Ed25519 keys
//! with the PEM label `ED25519 PRIVATE KEY` over a PKCS#8 body; rustls only knows
//! `PRIVATE KEY`, so the key is decoded as PKCS#8 whatever its label. Endpoints without a port
//! get `:50000`. For maintenance mode ([`TalosClient::connect_insecure`]) no client
//! certificate is sent and the server certificate is either not verified (`--insecure`) or
//! pinned by its SPKI fingerprint (`--cert-fingerprint`). Routing metadata helpers:
//! [`with_node`] (one-to-one, replies unwrapped) and [`with_nodes`] (fan-out, one metadata
//! entry per node). Keys never appear in `Debug` output or logs.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use hyper_util::rt::TokioIo;
use runbook_proto::cosi::resource::state_client::StateClient;
use runbook_proto::machine::machine_service_client::MachineServiceClient;
use runbook_proto::storage::storage_service_client::StorageServiceClient;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::talosconfig::Context;

/// The apid port added to endpoints without one.
pub const DEFAULT_PORT: u16 = 50000;

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The context has no endpoints.
    #[error("the talosconfig context has no endpoints")]
    NoEndpoints,
    /// An endpoint cannot be parsed.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// A PEM field of the context is unusable.
    #[error("talosconfig field {field}: {message}")]
    Pem {
        /// `ca`, `crt` or `key`.
        field: &'static str,
        /// What is wrong (never the key material).
        message: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration")]
    Tls(#[source] rustls::Error),
    /// Connecting failed.
    #[error("cannot connect to the Talos API at {endpoint}: {cause}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What the error chain says went wrong, for people.
        cause: Cause,
        /// The error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The context's client certificate is outside its validity period (checked before any
    /// connection: the server would refuse it anyway, with a less telling alert).
    #[error("cannot connect to the Talos API at {endpoint}: {cause}")]
    ClientCert {
        /// The endpoint.
        endpoint: String,
        /// [`Cause::ClientCertExpired`] or [`Cause::ClientCertNotYetValid`].
        cause: Cause,
    },
    /// A maintenance-mode node showed a certificate other than the pinned one: a machine in
    /// the middle, or a node that was wiped again (its maintenance certificate is new).
    #[error(
        "the maintenance-mode certificate of {endpoint} does not match its pin: got {got}, want {want}"
    )]
    FingerprintMismatch {
        /// The endpoint.
        endpoint: String,
        /// The SPKI fingerprint shown.
        got: String,
        /// The pinned one.
        want: String,
    },
}

pub use super::cause::{Cause, client_cert_validity, connect_timeout};

/// A connected Talos API client (or, from [`TalosClient::connect_lazy`], one that connects on
/// its first call).
#[derive(Clone, Debug)]
pub struct TalosClient {
    channel: Channel,
    /// The endpoint connected to (a lazy client: the last one it connected to, else its
    /// first).
    endpoint: Arc<std::sync::RwLock<String>>,
}

fn shared(endpoint: &str) -> Arc<std::sync::RwLock<String>> {
    Arc::new(std::sync::RwLock::new(endpoint.to_string()))
}

/// Splits an endpoint (`host`, `host:port`, `[v6]:port`, `https://host[:port]`) into host and
/// port, as the Go client does (`:50000` by default, `:443` for a URL without a port).
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), ClientError> {
    let bad = |m: &str| ClientError::Endpoint {
        endpoint: endpoint.to_string(),
        message: m.to_string(),
    };
    let (rest, default) = match endpoint.split_once("://") {
        Some((_, rest)) => (rest.trim_end_matches('/'), 443),
        None => (endpoint, DEFAULT_PORT),
    };
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None => default,
        };
        return Ok((host.to_string(), port));
    }
    if rest.parse::<IpAddr>().is_ok() {
        return Ok((rest.to_string(), default));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| bad("invalid port"))?)),
        None if rest.is_empty() => Err(bad("empty host")),
        None => Ok((rest.to_string(), default)),
    }
}

/// The DER of the first PEM block in `pem`, whatever its label (Talos labels Ed25519 PKCS#8
/// keys `ED25519 PRIVATE KEY`).
pub fn pem_block_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN ")?;
    let body_start = start + pem[start..].find('\n')? + 1;
    let end = body_start + pem[body_start..].find("-----END ")?;
    let b64: String = pem[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn certs(pem: &str, field: &'static str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(i) = rest.find("-----BEGIN CERTIFICATE-----") {
        let block = &rest[i..];
        let der = pem_block_der(block).ok_or_else(|| ClientError::Pem {
            field,
            message: "malformed PEM certificate".into(),
        })?;
        out.push(CertificateDer::from(der));
        rest = &block["-----BEGIN CERTIFICATE-----".len()..];
    }
    if out.is_empty() {
        return Err(ClientError::Pem {
            field,
            message: "no PEM certificate found".into(),
        });
    }
    Ok(out)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The mTLS client configuration of a context.
pub fn tls_config(ctx: &Context) -> Result<ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    for c in certs(&ctx.ca_pem, "ca")? {
        roots.add(c).map_err(ClientError::Tls)?;
    }
    let chain = certs(&ctx.crt_pem, "crt")?;
    let key_der = pem_block_der(ctx.key_pem.expose()).ok_or_else(|| ClientError::Pem {
        field: "key",
        message: "no PEM private key found".into(),
    })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(ClientError::Tls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// `base64(std)(sha256(SubjectPublicKeyInfo))` of a DER certificate: what talosctl's
/// `--cert-fingerprint` pins and what a Talos node in maintenance mode shows on its console.
pub fn spki_fingerprint(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(
        base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(cert.tbs_certificate.subject_pki.raw)),
    )
}

/// How a maintenance-mode connection checks the server certificate.
#[derive(Debug, Clone)]
pub enum MaintenancePin {
    /// Only a certificate with this SPKI fingerprint (`--cert-fingerprint`).
    Expect(String),
    /// Trust on first use: accept the certificate and record its fingerprint in the slot, so
    /// the caller can pin it (with a warning) once the node has answered. A reconnection
    /// that shows a different certificate is refused.
    Learn(Arc<std::sync::Mutex<Option<String>>>),
}

/// Checks a maintenance node's certificate by SPKI fingerprint (there is no CA to check
/// against), or accepts any (`--insecure` without a pin: only [`TalosClient::connect_insecure`]
/// with `None`, which the engine never uses). Every fingerprint seen is written to `seen`, so
/// a refused handshake can be reported as the mismatch it was.
#[derive(Debug)]
struct MaintenanceVerifier {
    expect: Option<String>,
    accept_unpinned: bool,
    seen: Arc<std::sync::Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for MaintenanceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = spki_fingerprint(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
        )?;
        let previous = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.replace(got.clone())
        };
        let want = self
            .expect
            .clone()
            .or(if self.accept_unpinned { None } else { previous });
        match want {
            Some(want) if want != got => Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: got {got}, want {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The maintenance-mode client configuration (no client certificate): any server certificate
/// if `fingerprint` is `None` (talosctl `--insecure`), else only the pinned one.
pub fn insecure_tls_config(fingerprint: Option<&str>) -> Result<ClientConfig, ClientError> {
    maintenance_tls_config(
        fingerprint.map(str::to_string),
        fingerprint.is_none(),
        Arc::default(),
    )
}

fn maintenance_tls_config(
    expect: Option<String>,
    accept_unpinned: bool,
    seen: Arc<std::sync::Mutex<Option<String>>>,
) -> Result<ClientConfig, ClientError> {
    let verifier = MaintenanceVerifier {
        expect,
        accept_unpinned,
        seen,
        provider: provider(),
    };
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Where one endpoint dials: host, port and the TLS server name (an IP ServerName for IP
/// endpoints).
#[derive(Clone)]
struct Dial {
    endpoint: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Dial {
    fn of(endpoint: &str) -> Result<Dial, ClientError> {
        let (host, port) = parse_endpoint(endpoint)?;
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone()).map_err(|_| ClientError::Endpoint {
                endpoint: endpoint.to_string(),
                message: "invalid host name".into(),
            })?,
        };
        Ok(Dial {
            endpoint: endpoint.to_string(),
            host,
            port,
            server_name,
        })
    }

    /// The URI tonic is given (the connector dials, the URI only names the authority).
    fn uri(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// TCP and the TLS handshake under one deadline: a listener that accepts and never
    /// answers must not hang the run.
    async fn dial(
        &self,
        connector: &TlsConnector,
    ) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error> {
        let deadline = connect_timeout();
        let dial = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            connector.connect(self.server_name.clone(), tcp).await
        };
        let tls = tokio::time::timeout(deadline, dial).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TLS handshake within {deadline:?}"),
            )
        })??;
        Ok(TokioIo::new(tls))
    }
}

fn tonic_endpoint(dial: &Dial) -> Result<Endpoint, ClientError> {
    Endpoint::from_shared(dial.uri()).map_err(|e| ClientError::Connect {
        endpoint: dial.endpoint.clone(),
        cause: Cause::of(&e),
        source: e,
    })
}

async fn open(endpoint: &str, cfg: ClientConfig) -> Result<Channel, ClientError> {
    let target = Dial::of(endpoint)?;
    let connector = TlsConnector::from(Arc::new(cfg));
    let ep = tonic_endpoint(&target)?;
    ep.connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let target = target.clone();
        async move { target.dial(&connector).await }
    }))
    .await
    .map_err(|source| ClientError::Connect {
        endpoint: endpoint.to_string(),
        cause: Cause::of(&source),
        source,
    })
}

impl TalosClient {
    /// Connects to the first endpoint of `ctx` that accepts the connection.
    pub async fn connect(ctx: &Context) -> Result<TalosClient, ClientError> {
        let mut last = ClientError::NoEndpoints;
        for ep in &ctx.endpoints {
            match TalosClient::connect_endpoint(ctx, ep).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(endpoint = %ep, error = %e, "endpoint refused");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// A client of `ctx` that connects on its first call, and again after a lost connection,
    /// to the first endpoint of `ctx` that accepts it (as [`TalosClient::connect`], but at
    /// each (re)connection). Nothing is dialled here: a run whose nodes are all in
    /// maintenance mode (none shows a certificate of the talosconfig's CA) can still open
    /// its effects and reach them through pinned maintenance connections; each call through
    /// this client verifies the server against the context's CA as always, and fails (an
    /// `Unavailable` status naming the cause) while no endpoint passes. What cannot work at
    /// all (no endpoints, an unparsable endpoint or PEM, a client certificate outside its
    /// validity) is refused now.
    pub fn connect_lazy(ctx: &Context) -> Result<TalosClient, ClientError> {
        let first = ctx.endpoints.first().ok_or(ClientError::NoEndpoints)?;
        if let Some(cause) = client_cert_validity(&ctx.crt_pem, std::time::SystemTime::now()) {
            return Err(ClientError::ClientCert {
                endpoint: first.clone(),
                cause,
            });
        }
        let dials = ctx
            .endpoints
            .iter()
            .map(|e| Dial::of(e))
            .collect::<Result<Vec<_>, _>>()?;
        let connector = TlsConnector::from(Arc::new(tls_config(ctx)?));
        let ep = tonic_endpoint(&dials[0])?;
        let endpoint = shared(first);
        let connected = endpoint.clone();
        let dials = Arc::new(dials);
        let channel = ep.connect_with_connector_lazy(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let dials = dials.clone();
            let connected = connected.clone();
            async move {
                let mut last = None;
                for d in dials.iter() {
                    match d.dial(&connector).await {
                        Ok(io) => {
                            *connected.write().unwrap_or_else(|p| p.into_inner()) =
                                d.endpoint.clone();
                            return Ok(io);
                        }
                        Err(e) => {
                            tracing::debug!(endpoint = %d.endpoint, error = %e, "endpoint refused");
                            last = Some(e);
                        }
                    }
                }
                Err(last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotConnected, "no endpoints")
                }))
            }
        }));
        Ok(TalosClient { channel, endpoint })
    }

    /// Connects to `endpoint` with the identity of `ctx`.
    pub async fn connect_endpoint(
        ctx: &Context,
        endpoint: &str,
    ) -> Result<TalosClient, ClientError> {
        if let Some(cause) = client_cert_validity(&ctx.crt_pem, std::time::SystemTime::now()) {
            return Err(ClientError::ClientCert {
                endpoint: endpoint.to_string(),
                cause,
            });
        }
        let channel = open(endpoint, tls_config(ctx)?).await?;
        Ok(TalosClient {
            channel,
            endpoint: shared(endpoint),
        })
    }

    /// Connects to a node in maintenance mode (`talosctl --insecure`), optionally pinning the
    /// server certificate by SPKI fingerprint (`--cert-fingerprint`).
    pub async fn connect_insecure(
        endpoint: &str,
        fingerprint: Option<&str>,
    ) -> Result<TalosClient, ClientError> {
        let channel = open(endpoint, insecure_tls_config(fingerprint)?).await?;
        Ok(TalosClient {
            channel,
            endpoint: shared(endpoint),
        })
    }

    /// Connects to a node in maintenance mode with its certificate pinned or learned (see
    /// [`MaintenancePin`]). With [`MaintenancePin::Expect`], a refused handshake whose
    /// certificate was seen is [`ClientError::FingerprintMismatch`].
    pub async fn connect_maintenance(
        endpoint: &str,
        pin: MaintenancePin,
    ) -> Result<TalosClient, ClientError> {
        let (expect, seen) = match pin {
            MaintenancePin::Expect(fp) => (Some(fp), Arc::default()),
            MaintenancePin::Learn(slot) => (None, slot),
        };
        let cfg = maintenance_tls_config(expect.clone(), false, seen.clone())?;
        match open(endpoint, cfg).await {
            Ok(channel) => Ok(TalosClient {
                channel,
                endpoint: shared(endpoint),
            }),
            Err(e) => {
                let got = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match (expect, got) {
                    (Some(want), Some(got)) if want != got => {
                        Err(ClientError::FingerprintMismatch {
                            endpoint: endpoint.to_string(),
                            got,
                            want,
                        })
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// The endpoint this client is connected to (a lazy client not connected yet: the first
    /// it will try).
    pub fn endpoint(&self) -> String {
        self.endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `MachineService` (32 MiB limits).
    pub fn machine(&self) -> MachineServiceClient<Channel> {
        runbook_proto::machine_client(self.channel.clone())
    }

    /// `StorageService` (32 MiB limits).
    pub fn storage(&self) -> StorageServiceClient<Channel> {
        runbook_proto::storage_client(self.channel.clone())
    }

    /// COSI `State` (32 MiB limits).
    pub fn cosi(&self) -> StateClient<Channel> {
        runbook_proto::state_client(self.channel.clone())
    }
}

/// A request proxied one-to-one to `node` (metadata `node`): the reply is not wrapped and
/// the node's error is the call's status.
pub fn with_node<T>(message: T, node: &str) -> Request<T> {
    let mut req = Request::new(message);
    if let Ok(v) = MetadataValue::try_from(node) {
        req.metadata_mut().insert("node", v);
    }
    req
}

/// A request fanned out to `nodes` (one `nodes` metadata entry per node): each reply entry
/// carries `metadata.hostname`, failures are entries with `metadata.error`.
pub fn with_nodes<T, S: AsRef<str>>(message: T, nodes: &[S]) -> Request<T> {
    let mut req = Request::new(message);
    for n in nodes {
        if let Ok(v) = MetadataValue::try_from(n.as_ref()) {
            req.metadata_mut().append("nodes", v);
        }
    }
    req
}

/// The etcd database file inside a control-plane node (what `Copy` fetches for a raw rescue
/// copy when the member cannot serve a snapshot).
pub const ETCD_DB_PATH: &str = "/var/lib/etcd/member/snap/db";

/// How a `MachineService/Copy` of one file failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The node answered an error (in the status, or in a reply's `metadata.error` as Talos
    /// sends archiver failures); `missing` when the file does not exist.
    #[error("{message}")]
    Node {
        /// The message.
        message: String,
        /// The file does not exist (`no such file or directory`, NotFound).
        missing: bool,
        /// The gRPC code, when it came as a status.
        code: Option<tonic::Code>,
    },
    /// The archive is not the one regular file asked for, or is cut short.
    #[error("the copy of {path} is not a complete archive of one file: {why}")]
    Archive {
        /// The path asked for.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The local file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// `MachineService/Copy` of `path` on `node`: Talos answers a gzipped tar stream
/// (`archiver.TarGz`); the stream is spooled to `spool`, then the archive's one regular file
/// is written to `out` (its size checked against the tar header), and the spool removed.
/// Returns the file's size. Neither file is world-readable.
pub async fn copy_file(
    mut machine: MachineServiceClient<Channel>,
    node: &str,
    path: &str,
    spool: &std::path::Path,
    out: &mut impl std::io::Write,
) -> Result<u64, CopyError> {
    use std::io::Write as _;
    let node_err = |s: tonic::Status| CopyError::Node {
        missing: s.code() == tonic::Code::NotFound || s.message().contains("no such file"),
        message: s.message().to_owned(),
        code: Some(s.code()),
    };
    let io = |p: &std::path::Path, e| CopyError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let req = runbook_proto::machine::CopyRequest {
        root_path: path.to_owned(),
    };
    let mut stream = machine
        .copy(with_node(req, node))
        .await
        .map_err(node_err)?
        .into_inner();
    let result = async {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let mut file = crate::journal::durable::private(&mut opts)
            .open(spool)
            .map_err(|e| io(spool, e))?;
        while let Some(msg) = stream.message().await.map_err(node_err)? {
            if let Some(e) = msg
                .metadata
                .as_ref()
                .map(|m| m.error.as_str())
                .filter(|e| !e.is_empty())
            {
                return Err(CopyError::Node {
                    missing: e.contains("no such file"),
                    message: e.to_owned(),
                    code: None,
                });
            }
            file.write_all(&msg.bytes).map_err(|e| io(spool, e))?;
        }
        file.flush().map_err(|e| io(spool, e))?;
        drop(file);
        let gz = std::fs::File::open(spool).map_err(|e| io(spool, e))?;
        untar_one(
            flate2::read::GzDecoder::new(std::io::BufReader::new(gz)),
            path,
            out,
        )
    }
    .await;
    let _ = std::fs::remove_file(spool);
    result
}

/// Writes the first entry of a tar archive to `out`; it must be a regular file, complete, and
/// the header checksum must match.
pub fn untar_one(
    mut tar: impl std::io::Read,
    path: &str,
    out: &mut impl std::io::Write,
) -> Result<u64, CopyError> {
    let bad = |why: String| CopyError::Archive {
        path: path.to_owned(),
        why,
    };
    let mut header = [0u8; 512];
    tar.read_exact(&mut header)
        .map_err(|e| bad(format!("no tar header ({e})")))?;
    let field = |r: std::ops::Range<usize>| {
        String::from_utf8_lossy(&header[r])
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_owned()
    };
    let stored = u32::from_str_radix(&field(148..156), 8)
        .map_err(|_| bad("unreadable header checksum".into()))?;
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    if stored != sum {
        return Err(bad(format!("header checksum {stored} != {sum}")));
    }
    if !matches!(header[156], b'0' | 0) {
        return Err(bad(format!(
            "first entry `{}` is not a regular file",
            field(0..100)
        )));
    }
    let size =
        u64::from_str_radix(&field(124..136), 8).map_err(|_| bad("unreadable size".into()))?;
    let copied = std::io::copy(&mut std::io::Read::take(&mut tar, size), out).map_err(|e| {
        CopyError::Io {
            path: path.to_owned(),
            source: e,
        }
    })?;
    if copied != size {
        return Err(bad(format!("cut short: {copied} of {size} bytes")));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_apid_port() {
        assert_eq!(
            parse_endpoint("10.0.0.1").unwrap(),
            ("10.0.0.1".into(), 50000)
        );
        assert_eq!(
            parse_endpoint("127.0.0.1:4000").unwrap(),
            ("127.0.0.1".into(), 4000)
        );
        assert_eq!(
            parse_endpoint("https://talos.example").unwrap(),
            ("talos.example".into(), 443)
        );
        assert_eq!(parse_endpoint("[::1]:5").unwrap(), ("::1".into(), 5));
        assert_eq!(parse_endpoint("::1").unwrap(), ("::1".into(), 50000));
        assert!(parse_endpoint("h:x").is_err());
    }

    #[test]
    fn pem_label_does_not_matter() {
        let der = pem_block_der(
            "-----BEGIN ED25519 PRIVATE KEY-----\nAAEC\n-----END ED25519 PRIVATE KEY-----\n",
        );
        assert_eq!(der.unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn untar_one_takes_one_complete_regular_file_and_refuses_damage() {
        let gz = crate::sim::cluster::copy::tar_gz("db", b"hello", 7).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
        let mut out = Vec::new();
        assert_eq!(untar_one(&tar[..], "/x", &mut out).unwrap(), 5);
        assert_eq!(out, b"hello");
        let mut broken = tar.clone();
        broken[0] = b'x';
        assert!(untar_one(&broken[..], "/x", &mut Vec::new()).is_err());
        assert!(untar_one(&tar[..515], "/x", &mut Vec::new()).is_err());
        assert!(untar_one(&tar[..100], "/x", &mut Vec::new()).is_err());
    }
}
