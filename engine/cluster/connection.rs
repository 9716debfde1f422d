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
    /// The kubeconfig could not be used.
    #[error("cannot use kubeconfig `{path}`: {message}")]
    Kube {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
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
        }
    }

    /// Opens the clients, with maintenance pins kept in memory only.
    pub async fn open(&self) -> Result<ClusterEffects, ConnectError> {
        self.open_in(None).await
    }

    /// Opens the clients; pins learned on first contact are kept in `run_dir` (so a resumed
    /// run checks the same certificates).
    pub async fn open_in(&self, run_dir: Option<&Path>) -> Result<ClusterEffects, ConnectError> {
        let cfg = crate::cluster::talosconfig::Talosconfig::load(&self.talosconfig)?;
        let (_, ctx) = cfg.context(self.context.as_deref(), &self.talosconfig)?;
        let talos = Failover::new(TalosClient::connect(ctx).await?, Some(ctx.clone()));
        let nodes = if self.nodes.is_empty() {
            ctx.nodes.clone()
        } else {
            self.nodes.clone()
        };
        let pins = crate::cluster::pinning::Pins::new(
            self.fingerprints.clone(),
            run_dir.map(|d| d.join(crate::cluster::pinning::PINS_FILE)),
        )?;
        let kube = match &self.kubeconfig {
            None => None,
            Some(path) => Some(kube_client(path).await?),
        };
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
        let cfg = crate::cluster::talosconfig::Talosconfig::load(&self.talosconfig)?;
        let (_, ctx) = cfg.context(self.context.as_deref(), &self.talosconfig)?;
        let der = crate::cluster::talos::pem_block_der(&ctx.ca_pem).ok_or_else(|| {
            ConnectError::Identity(format!(
                "the CA of talosconfig `{}` is not PEM",
                self.talosconfig.display()
            ))
        })?;
        Ok(sha256_hex(&der))
    }

    /// sha256 (hex) of the kubeconfig's cluster CA (its current context), if it has one.
    pub fn kube_ca_sha256_of(&self) -> Result<Option<String>, ConnectError> {
        let Some(path) = &self.kubeconfig else {
            return Ok(None);
        };
        let err = |message: String| ConnectError::Kube {
            path: path.clone(),
            message,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let current = kc.current_context.clone().unwrap_or_default();
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
        let cfg = crate::cluster::talosconfig::Talosconfig::load(&self.talosconfig)?;
        let (_, ctx) = cfg.context(self.context.as_deref(), &self.talosconfig)?;
        let client = TalosClient::connect(ctx).await?;
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

    /// The Kubernetes client of the recorded kubeconfig, if the run has one (the cluster lock
    /// lives in that API).
    pub async fn kube_client(&self) -> Result<Option<kube::Client>, ConnectError> {
        match &self.kubeconfig {
            None => Ok(None),
            Some(path) => Ok(Some(kube_client(path).await?)),
        }
    }
}

async fn kube_client(path: &Path) -> Result<kube::Client, ConnectError> {
    let err = |message: String| ConnectError::Kube {
        path: path.to_path_buf(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))?;
    // The executor owns retries: a PDB-blocked eviction (429) or an API server without etcd
    // quorum (503) must come back to it at once, not after kube's own backoff.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}
