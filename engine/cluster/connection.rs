//! Where a run's cluster is and how to open it: the [`Connection`] saved in a run directory
//! (talosconfig, context, kubeconfig, direct endpoints, nodes), so `resume` and `abort` reach
//! the same cluster the run started on, and the one place the Talos and Kubernetes clients are
//! built from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cluster::effects::ClusterEffects;
use crate::cluster::observe::{Failover, Observer};
use crate::cluster::talos::TalosClient;

/// Where a run's cluster is: saved in the run directory so `resume` reconnects.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// The talosconfig file.
    pub talosconfig: PathBuf,
    /// Its context (default: the current one).
    pub context: Option<String>,
    /// A kubeconfig, if any.
    pub kubeconfig: Option<PathBuf>,
    /// Label → direct endpoint (the simulator's `endpoints.json`); empty for real clusters.
    pub endpoints: BTreeMap<String, String>,
    /// The nodes to observe (default: the talosconfig context's nodes).
    pub nodes: Vec<String>,
    /// Label → SPKI fingerprint of the node's maintenance-mode certificate (from
    /// `--endpoints` or the simulator); see [`crate::cluster::pinning`].
    #[serde(default)]
    pub fingerprints: BTreeMap<String, String>,
    /// sha256 (hex) of the DER of the Talos CA of the context used, recorded at `run`: what
    /// tells this cluster from another one whose talosconfig is handed to `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
    /// sha256 (hex) of the kubeconfig's cluster CA (current context), recorded at `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_ca_sha256: Option<String>,
    /// The Talos cluster id (COSI `Infos.cluster.talos.dev`, id `current`, namespace
    /// `cluster`), recorded at `run` when the cluster offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// `-e/--endpoints`: replace the context's endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub talos_endpoints: Vec<String>,
    /// `--kube-context`: the kubeconfig context (default: its current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_context: Option<String>,
    /// No kubeconfig was found, so one is fetched with the Talos `Kubeconfig` call and kept
    /// in memory only; only this flag is recorded, so `resume` fetches it again (and checks
    /// its CA against [`Connection::kube_ca_sha256`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubeconfig_fetched: bool,
    /// The fetched kubeconfig's text, in memory only.
    #[serde(skip)]
    pub fetched: Option<std::sync::Arc<crate::secret::Secret<String>>>,
}

/// Connecting to a cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The talosconfig could not be read.
    #[error(transparent)]
    Talosconfig(#[from] crate::cluster::talosconfig::TalosconfigError),
    /// No endpoint accepted the connection.
    #[error(transparent)]
    Client(#[from] crate::cluster::talos::ClientError),
    /// The maintenance pins file could not be read.
    #[error(transparent)]
    Pins(#[from] crate::cluster::pinning::PinError),
    /// The cluster's identity (CA, cluster id) could not be read.
    #[error("{0}")]
    Identity(String),
    /// No endpoint answered: each with the node behind it and why.
    #[error("{}", unreachable_text(talosconfig, failures))]
    Unreachable {
        /// The talosconfig used.
        talosconfig: PathBuf,
        /// Endpoint, node, cause.
        failures: Vec<(String, String, crate::cluster::talos::Cause)>,
    },
    /// A call the connection needs failed.
    #[error("the Talos {call} call through endpoint {endpoint} failed: {cause}")]
    Call {
        /// The call.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// Why.
        cause: crate::cluster::talos::Cause,
    },
    /// The kubeconfig could not be used.
    #[error("cannot use kubeconfig `{path}`: {message}")]
    Kube {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn unreachable_text(
    talosconfig: &Path,
    failures: &[(String, String, crate::cluster::talos::Cause)],
) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|(ep, node, cause)| format!("node {node} at endpoint {ep}: {cause}"))
        .collect();
    format!(
        "the cluster of talosconfig `{}` does not answer: {}",
        talosconfig.display(),
        each.join("; ")
    )
}

impl Connection {
    /// The connection to a simulator started in this process: its talosconfig and kubeconfig,
    /// every node's direct endpoint and maintenance-mode certificate pin.
    pub fn for_simulator(handle: &crate::sim::SimHandle) -> Connection {
        let kubeconfig = handle.dir().join("kubeconfig");
        Connection {
            talosconfig: handle.talosconfig().to_path_buf(),
            context: None,
            kubeconfig: kubeconfig.exists().then_some(kubeconfig),
            endpoints: handle
                .nodes()
                .iter()
                .map(|(l, a)| (l.clone(), a.to_string()))
                .collect(),
            nodes: handle.nodes().keys().cloned().collect(),
            fingerprints: handle
                .nodes()
                .keys()
                .filter_map(|l| {
                    handle
                        .maintenance_fingerprint(l)
                        .map(|f| (l.clone(), f.to_string()))
                })
                .collect(),
            ca_sha256: None,
            kube_ca_sha256: None,
            cluster_id: None,
            talos_endpoints: Vec::new(),
            kube_context: None,
            kubeconfig_fetched: false,
            fetched: None,
        }
    }

    /// The talosconfig context this connection uses: the named (or current) one, with
    /// `-e/--endpoints` in place of its endpoints.
    pub fn context(&self) -> Result<crate::cluster::talosconfig::Context, ConnectError> {
        let cfg = crate::cluster::talosconfig::Talosconfig::load(&self.talosconfig)?;
        let (_, ctx) = cfg.context(self.context.as_deref(), &self.talosconfig)?;
        let mut ctx = ctx.clone();
        if !self.talos_endpoints.is_empty() {
            ctx.endpoints = self.talos_endpoints.clone();
        }
        Ok(ctx)
    }

    /// Opens the clients, with maintenance pins kept in memory only.
    pub async fn open(&self) -> Result<ClusterEffects, ConnectError> {
        self.open_in(None).await
    }

    /// Opens the clients; pins learned on first contact are kept in `run_dir` (so a resumed
    /// run checks the same certificates).
    pub async fn open_in(&self, run_dir: Option<&Path>) -> Result<ClusterEffects, ConnectError> {
        let ctx = self.context()?;
        // Lazily: a node in maintenance mode shows its own certificate, not one of the
        // talosconfig's CA, so a run whose nodes are all in maintenance (a full rebuild after
        // its last wipe) could not open at all if this dialled now. Each call still verifies
        // the CA; maintenance nodes are reached through their pinned connections.
        let talos = Failover::new(TalosClient::connect_lazy(&ctx)?, Some(ctx.clone()));
        let nodes = if self.nodes.is_empty() {
            ctx.nodes.clone()
        } else {
            self.nodes.clone()
        };
        let pins = crate::cluster::pinning::Pins::new(
            self.fingerprints.clone(),
            run_dir.map(|d| d.join(crate::cluster::pinning::PINS_FILE)),
        )?;
        let kube = self.kube_client().await?;
        Ok(ClusterEffects::new(Observer {
            talos,
            nodes,
            endpoints: self.endpoints.clone(),
            kube,
            pins,
        }))
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

impl Connection {
    /// sha256 (hex) of the Talos CA of the talosconfig context this connection names.
    pub fn talos_ca_sha256(&self) -> Result<String, ConnectError> {
        let ctx = self.context()?;
        let der = crate::cluster::talos::pem_block_der(&ctx.ca_pem).ok_or_else(|| {
            ConnectError::Identity(format!(
                "the CA of talosconfig `{}` is not PEM",
                self.talosconfig.display()
            ))
        })?;
        Ok(sha256_hex(&der))
    }

    /// sha256 (hex) of the kubeconfig's cluster CA (its `--kube-context`, else current
    /// context), if it has one: of the file, or of the kubeconfig fetched into memory.
    pub fn kube_ca_sha256_of(&self) -> Result<Option<String>, ConnectError> {
        let Some((kc, label)) = self.kubeconfig_doc()? else {
            return Ok(None);
        };
        let err = |message: String| ConnectError::Kube {
            path: label.clone(),
            message,
        };
        let current = self
            .kube_context
            .clone()
            .or_else(|| kc.current_context.clone())
            .unwrap_or_default();
        let cluster_name = kc
            .contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone());
        let Some(cluster) = kc
            .clusters
            .iter()
            .find(|c| Some(&c.name) == cluster_name.as_ref())
            .and_then(|c| c.cluster.as_ref())
        else {
            return Ok(None);
        };
        let pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| err(format!("certificate-authority-data: {e}")))?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| err(format!("certificate-authority `{file}`: {e}")))?,
            (None, None) => return Ok(None),
        };
        Ok(crate::cluster::talos::pem_block_der(&pem).map(|der| sha256_hex(&der)))
    }

    /// The kubeconfig document (from its file, or the fetched text) and a label for errors.
    fn kubeconfig_doc(&self) -> Result<Option<(kube::config::Kubeconfig, PathBuf)>, ConnectError> {
        if let Some(path) = &self.kubeconfig {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| ConnectError::Kube {
                path: path.clone(),
                message: e.to_string(),
            })?;
            return Ok(Some((kc, path.clone())));
        }
        let Some(text) = &self.fetched else {
            return Ok(None);
        };
        let label = PathBuf::from(FETCHED_LABEL);
        let kc =
            kube::config::Kubeconfig::from_yaml(text.expose()).map_err(|e| ConnectError::Kube {
                path: label.clone(),
                message: e.to_string(),
            })?;
        Ok(Some((kc, label)))
    }

    /// Records the CA fingerprints (`run` does, before the run directory is written).
    pub fn fingerprint(&mut self) -> Result<(), ConnectError> {
        self.ca_sha256 = Some(self.talos_ca_sha256()?);
        self.kube_ca_sha256 = self.kube_ca_sha256_of()?;
        Ok(())
    }

    /// The Talos cluster id, read from the cluster (COSI `Infos.cluster.talos.dev` `current`);
    /// None when the cluster does not offer it (older Talos).
    pub async fn read_cluster_id(&self) -> Result<Option<String>, ConnectError> {
        use runbook_proto::cosi::resource::GetRequest;
        let client = TalosClient::connect(&self.context()?).await?;
        let req = GetRequest {
            namespace: "cluster".into(),
            r#type: "Infos.cluster.talos.dev".into(),
            id: "current".into(),
            options: None,
        };
        let resp = match client.cosi().get(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::Unimplemented) => {
                return Ok(None);
            }
            Err(s) => {
                return Err(ConnectError::Identity(format!(
                    "cannot read the cluster id: {}",
                    s.message()
                )));
            }
        };
        let yaml = resp
            .resource
            .and_then(|r| r.spec)
            .map(|s| s.yaml_spec)
            .unwrap_or_default();
        Ok(yaml.lines().find_map(|l| {
            l.trim()
                .strip_prefix("clusterId:")
                .map(|v| v.trim().trim_matches('"').to_string())
                .filter(|v| !v.is_empty())
        }))
    }

    /// The Kubernetes client of the recorded kubeconfig (or the fetched one), if the run has
    /// one (the cluster lock lives in that API). A fetched kubeconfig not yet in memory is
    /// fetched now.
    pub async fn kube_client(&self) -> Result<Option<kube::Client>, ConnectError> {
        let fetched;
        let conn = if self.kubeconfig.is_none() && self.kubeconfig_fetched && self.fetched.is_none()
        {
            let mut c = self.clone();
            c.fetch_kubeconfig().await?;
            fetched = c;
            &fetched
        } else {
            self
        };
        let Some((kc, label)) = conn.kubeconfig_doc()? else {
            return Ok(None);
        };
        Ok(Some(
            kube_client(kc, &label, self.kube_context.clone()).await?,
        ))
    }

    /// Fetches a kubeconfig with the Talos `Kubeconfig` call (as `talosctl kubeconfig`), into
    /// memory only, and marks the connection as using a fetched kubeconfig.
    pub async fn fetch_kubeconfig(&mut self) -> Result<(), ConnectError> {
        let ctx = self.context()?;
        let client = TalosClient::connect(&ctx).await?;
        let endpoint = client.endpoint().to_owned();
        let fail = |cause: crate::cluster::talos::Cause| ConnectError::Call {
            call: "Kubeconfig",
            endpoint: endpoint.clone(),
            cause,
        };
        let stream = tokio::time::timeout(
            crate::cluster::observe::CALL_DEADLINE,
            client.machine().kubeconfig(()),
        )
        .await
        .map_err(|_| fail(crate::cluster::talos::Cause::TimedOut))?
        .map_err(|s| fail(crate::cluster::talos::Cause::of_status(&s)))?;
        let mut stream = stream.into_inner();
        let mut archive = Vec::new();
        loop {
            let next = tokio::time::timeout(
                crate::cluster::observe::CALL_DEADLINE,
                tokio_stream::StreamExt::next(&mut stream),
            )
            .await
            .map_err(|_| fail(crate::cluster::talos::Cause::TimedOut))?;
            match next {
                None => break,
                Some(Ok(chunk)) => {
                    archive.extend_from_slice(&chunk.bytes);
                    if archive.len() > MAX_KUBECONFIG {
                        return Err(fail(crate::cluster::talos::Cause::Other(
                            "the kubeconfig archive is larger than 1 MiB".into(),
                        )));
                    }
                }
                Some(Err(s)) => return Err(fail(crate::cluster::talos::Cause::of_status(&s))),
            }
        }
        let text = first_file_of_tar_gz(&archive).map_err(|m| {
            fail(crate::cluster::talos::Cause::Other(format!(
                "the Kubeconfig reply is not a .tar.gz holding a kubeconfig: {m}"
            )))
        })?;
        self.fetched = Some(std::sync::Arc::new(crate::secret::Secret::new(text)));
        self.kubeconfig_fetched = true;
        Ok(())
    }

    /// Checks the cluster answers before anything is written: `Version` on the first
    /// endpoint that accepts the connection, bounded by the connect and call deadlines.
    /// A PermissionDenied reply counts as an answer (the role is narrower than os:reader).
    /// When no endpoint answers with the talosconfig's CA, an endpoint whose certificate
    /// was not signed by it is asked again as a node in maintenance mode
    /// ([`maintenance_answer`]): one that answers so is [`Answer::Maintenance`]. Every
    /// endpoint's failure is reported with its cause.
    pub async fn probe(&self) -> Result<Answer, ConnectError> {
        let ctx = self.context()?;
        if ctx.endpoints.is_empty() {
            return Err(ConnectError::Client(
                crate::cluster::talos::ClientError::NoEndpoints,
            ));
        }
        let mut failures = Vec::new();
        for ep in &ctx.endpoints {
            let cause = match TalosClient::connect_endpoint(&ctx, ep).await {
                Err(crate::cluster::talos::ClientError::Connect { cause, .. })
                | Err(crate::cluster::talos::ClientError::ClientCert { cause, .. }) => cause,
                Err(e) => crate::cluster::talos::Cause::Other(e.to_string()),
                Ok(client) => match tokio::time::timeout(
                    crate::cluster::observe::CALL_DEADLINE,
                    client.machine().version(()),
                )
                .await
                {
                    Ok(Ok(_)) => return Ok(Answer::Authenticated),
                    // The cluster answered, authenticated us and refused this role the call
                    // (Version needs os:reader; os:etcd:backup may only snapshot and read etcd): it is
                    // reachable, and every later call says what the role may not do.
                    Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => {
                        return Ok(Answer::Authenticated);
                    }
                    Ok(Err(s)) => crate::cluster::talos::Cause::of_status(&s),
                    Err(_) => crate::cluster::talos::Cause::TimedOut,
                },
            };
            failures.push((ep.clone(), self.node_at(ep), cause));
        }
        // Only a certificate of another CA can be a maintenance node's (an expired client
        // certificate, a refused one, a wrong name, a closed port or silence cannot).
        for (ep, node, cause) in &failures {
            if *cause != crate::cluster::talos::Cause::UnknownCa {
                continue;
            }
            let pin = self.fingerprints.get(node).map(String::as_str);
            match maintenance_answer(ep, pin).await {
                Ok(()) => {
                    return Ok(Answer::Maintenance {
                        node: node.clone(),
                        endpoint: ep.clone(),
                    });
                }
                Err(why) => tracing::debug!(endpoint = %ep, "not in maintenance mode: {why}"),
            }
        }
        Err(ConnectError::Unreachable {
            talosconfig: self.talosconfig.clone(),
            failures,
        })
    }

    /// The node label whose direct endpoint is `endpoint` (`--node-endpoints`), else the
    /// endpoint's host: what an operator calls the machine behind it.
    pub fn node_at(&self, endpoint: &str) -> String {
        self.endpoints
            .iter()
            .find(|(_, e)| e.as_str() == endpoint)
            .map(|(l, _)| l.clone())
            .or_else(|| {
                crate::cluster::talos::parse_endpoint(endpoint)
                    .ok()
                    .map(|(h, _)| h)
            })
            .unwrap_or_else(|| endpoint.to_owned())
    }
}

/// How the cluster answered [`Connection::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An endpoint answered with a certificate of the talosconfig's CA and accepted ours.
    Authenticated,
    /// No endpoint did, and this one answered as a Talos node in maintenance mode: it was
    /// reset (a full rebuild's wipe) and has no cluster identity yet. It is reachable and
    /// nothing more: every guard needs its own evidence, and every call to it goes through
    /// a pinned maintenance connection (`cluster::pinning`).
    Maintenance {
        /// Its label (`--node-endpoints`), else the endpoint's host.
        node: String,
        /// The endpoint.
        endpoint: String,
    },
}

/// What the Talos maintenance service answers `Version` with when the caller is not admin
/// (Talos v1.11 to v1.14: `assertAdminRole` in `internal/app/maintenance/server.go`).
const MAINTENANCE_UNIMPLEMENTED: &str = "API is not implemented in maintenance mode";

/// Whether `endpoint` answers as a Talos node in maintenance mode, as `talosctl --insecure`
/// would reach it: a TLS connection *without* a client certificate (a configured node's apid
/// requires one, so a node of another cluster refuses the handshake), its certificate
/// checked against `pin` when the node has one (`--node-endpoints`, the simulator), and a
/// `Version` reply of the maintenance service's shape: a version with a tag (an admin or
/// the simulator), or `Unimplemented` with the maintenance service's own message (any other
/// role on a real node). A gRPC server that does not know the call says `Unimplemented`
/// too, but not that. The error says why not.
pub async fn maintenance_answer(endpoint: &str, pin: Option<&str>) -> Result<(), String> {
    use crate::cluster::talos::MaintenancePin;
    let client = match pin {
        Some(fp) => {
            TalosClient::connect_maintenance(endpoint, MaintenancePin::Expect(fp.to_owned())).await
        }
        // The check records nothing: a learned pin is only ever recorded by the connection
        // that sends the node something (`cluster::pinning`).
        None => TalosClient::connect_insecure(endpoint, None).await,
    }
    .map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(
        crate::cluster::observe::CALL_DEADLINE,
        client.machine().version(()),
    )
    .await
    .map_err(|_| "no Version reply in time".to_string())?;
    match reply {
        Ok(r) => {
            let tagged = r
                .into_inner()
                .messages
                .iter()
                .any(|m| m.version.as_ref().is_some_and(|v| !v.tag.is_empty()));
            if tagged {
                Ok(())
            } else {
                Err("a Version reply without a Talos version".into())
            }
        }
        Err(s)
            if s.code() == tonic::Code::Unimplemented
                && s.message().contains(MAINTENANCE_UNIMPLEMENTED) =>
        {
            Ok(())
        }
        Err(s) => Err(format!(
            "Version without a client certificate: {}",
            s.message()
        )),
    }
}

/// How a fetched kubeconfig is named in errors (it has no file).
pub const FETCHED_LABEL: &str = "<fetched with the Talos Kubeconfig call>";

const MAX_KUBECONFIG: usize = 1 << 20;

/// The first regular file of a `.tar.gz` (what the Talos `Kubeconfig` call streams).
fn first_file_of_tar_gz(archive: &[u8]) -> Result<String, String> {
    use std::io::Read as _;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(archive)
        .take(MAX_KUBECONFIG as u64 + 1)
        .read_to_end(&mut tar)
        .map_err(|e| format!("gzip: {e}"))?;
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let header = &tar[pos..pos + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let size_field = String::from_utf8_lossy(&header[124..136]);
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .map_err(|_| "bad tar size field".to_string())?;
        let start = pos + 512;
        let end = start
            .checked_add(size)
            .filter(|e| *e <= tar.len())
            .ok_or("truncated tar entry")?;
        if matches!(header[156], b'0' | 0) {
            return String::from_utf8(tar[start..end].to_vec())
                .map_err(|_| "the kubeconfig is not UTF-8".to_string());
        }
        pos = start + size.div_ceil(512) * 512;
    }
    Err("no file in the archive".into())
}

async fn kube_client(
    kc: kube::config::Kubeconfig,
    label: &Path,
    context: Option<String>,
) -> Result<kube::Client, ConnectError> {
    let err = |message: String| ConnectError::Kube {
        path: label.to_path_buf(),
        message,
    };
    let options = kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| err(e.to_string()))?;
    // The executor owns retries: a PDB-blocked eviction (429) or an API server without etcd
    // quorum (503) must come back to it at once, not after kube's own backoff.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::talos_api::kubeconfig::{tar, tar_gz};

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_kubeconfig_is_read_from_stored_and_compressed_archives() {
        let text = "apiVersion: v1\nkind: Config\n";
        assert_eq!(
            first_file_of_tar_gz(&tar_gz("kubeconfig", text.as_bytes())).unwrap(),
            text
        );
        // Talos compresses for real.
        let real = gzip(&tar("kubeconfig", text.as_bytes()));
        assert_eq!(first_file_of_tar_gz(&real).unwrap(), text);
    }

    #[test]
    fn a_hostile_archive_is_an_error_not_a_panic_or_a_huge_allocation() {
        assert!(first_file_of_tar_gz(b"not gzip").is_err());
        assert!(first_file_of_tar_gz(&gzip(b"")).is_err());
        // A size field far beyond the data.
        let mut t = tar("kubeconfig", b"abc");
        t[124..136].copy_from_slice(b"77777777777\0");
        assert!(
            first_file_of_tar_gz(&gzip(&t))
                .unwrap_err()
                .contains("truncated")
        );
        // A size field that is not octal.
        let mut t = tar("kubeconfig", b"abc");
        t[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
        assert!(first_file_of_tar_gz(&gzip(&t)).is_err());
        // A gzip bomb stops at the bound (1 MiB + 1 of tar read at most): zeros are "end of
        // archive", so nothing is found.
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(first_file_of_tar_gz(&bomb).is_err());
        // Not UTF-8.
        assert!(first_file_of_tar_gz(&gzip(&tar("kubeconfig", &[0xff, 0xfe]))).is_err());
    }

    #[test]
    fn endpoint_overrides_replace_the_context_and_name_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tc");
        let ctx = crate::cluster::talosconfig::Context {
            endpoints: vec!["10.0.0.1".into()],
            ..Default::default()
        };
        crate::cluster::talosconfig::Talosconfig::single("c", ctx)
            .save(&path)
            .unwrap();
        let mut conn = Connection {
            talosconfig: path,
            context: None,
            kubeconfig: None,
            endpoints: [("192.168.2.20".to_owned(), "127.0.0.1:7".to_owned())].into(),
            nodes: Vec::new(),
            fingerprints: BTreeMap::new(),
            ca_sha256: None,
            kube_ca_sha256: None,
            cluster_id: None,
            talos_endpoints: Vec::new(),
            kube_context: None,
            kubeconfig_fetched: false,
            fetched: None,
        };
        assert_eq!(conn.context().unwrap().endpoints, ["10.0.0.1"]);
        conn.talos_endpoints = vec!["127.0.0.1:7".into(), "10.0.0.2:5".into()];
        assert_eq!(conn.context().unwrap().endpoints, conn.talos_endpoints);
        assert_eq!(conn.node_at("127.0.0.1:7"), "192.168.2.20");
        assert_eq!(conn.node_at("10.0.0.2:5"), "10.0.0.2");
        // The fetched kubeconfig is never serialized.
        conn.fetched = Some(std::sync::Arc::new(crate::secret::Secret::new(
            "clusters: secret".into(),
        )));
        conn.kubeconfig_fetched = true;
        let json = serde_json::to_string(&conn).unwrap();
        assert!(!json.contains("clusters"), "{json}");
        assert!(json.contains("\"kubeconfig_fetched\":true"), "{json}");
    }
}
