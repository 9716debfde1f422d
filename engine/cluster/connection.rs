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
    /// Opens the clients.
    pub async fn open(&self) -> Result<ClusterEffects, ConnectError> {
        let cfg = crate::cluster::talosconfig::Talosconfig::load(&self.talosconfig)?;
        let (_, ctx) = cfg.context(self.context.as_deref(), &self.talosconfig)?;
        let talos = Failover::new(TalosClient::connect(ctx).await?, Some(ctx.clone()));
        let nodes = if self.nodes.is_empty() {
            ctx.nodes.clone()
        } else {
            self.nodes.clone()
        };
        let kube = match &self.kubeconfig {
            None => None,
            Some(path) => Some(kube_client(path).await?),
        };
        Ok(ClusterEffects::new(Observer {
            talos,
            nodes,
            endpoints: self.endpoints.clone(),
            kube,
        }))
    }
}

impl Connection {
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
