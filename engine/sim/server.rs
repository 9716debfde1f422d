//! Starting and stopping a simulator: the model, one Talos API port per node, and the
//! files a client needs (talosconfigs, call log).
//!
//! [`Simulator::start`] builds the scenario's model, generates a throwaway PKI, binds one
//! `127.0.0.1:0` listener per node (nothing else is ever bound or dialled), writes
//! `talosconfig` (admin) plus `talosconfig-operator` and `talosconfig-reader` into the run
//! directory, truncates `calls.jsonl`, and serves until [`SimHandle::shutdown`]. The
//! Kubernetes API server is built separately: [`start_kubernetes_api`] is the one place it
//! gets started, and whatever kubeconfig it returns is written to `<dir>/kubeconfig` and
//! served by the Talos `Kubeconfig` call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pki::{PkiError, Role, SimPki};
use super::talos_api::listener::{NodeTls, TlsSetupError, serve};
use super::talos_api::{
    ApiContext, CallSink, KubeconfigSlot, NodeApi, ResourceVersions, WallClock,
};
use super::{ApiError, Preset, Scenario, SharedCluster, Speed};
use crate::cluster::talosconfig::{Context, Talosconfig, TalosconfigError};
use crate::secret::Secret;

/// The talosconfig context name the simulator writes.
pub const CONTEXT_NAME: &str = "simulator";
/// File name of the call log in the run directory.
pub const CALLS_FILE: &str = "calls.jsonl";
/// How long shutdown waits for a node's server before aborting it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Starting state.
    pub scenario: Scenario,
    /// Time acceleration (60 = a reboot takes one second).
    pub speed: Speed,
    /// Run directory for talosconfigs, kubeconfig and `calls.jsonl` (created if missing).
    pub dir: PathBuf,
}

/// Starting a simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario could not be built.
    #[error("cannot build scenario {scenario}")]
    Scenario {
        /// Scenario name.
        scenario: String,
        /// Cause.
        #[source]
        source: ApiError,
    },
    /// Certificates could not be generated.
    #[error("cannot generate the simulator PKI")]
    Pki(#[from] PkiError),
    /// A node's TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// Binding a node's port failed.
    #[error("cannot bind 127.0.0.1:0 for node {node}")]
    Bind {
        /// Node label.
        node: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The run directory or a file in it cannot be written.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A talosconfig cannot be written.
    #[error(transparent)]
    Talosconfig(#[from] TalosconfigError),
    /// The Kubernetes API server failed to start.
    #[error("cannot start the simulated Kubernetes API server: {0}")]
    Kubernetes(String),
}

/// What [`start_kubernetes_api`] gets.
pub struct KubeApiStart<'a> {
    /// The model (the Kubernetes view lives in it).
    pub cluster: SharedCluster,
    /// The run's PKI (to issue a serving certificate if wanted).
    pub pki: &'a SimPki,
    /// The run directory.
    pub dir: &'a Path,
    /// Flips to `true` at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// A running Kubernetes API server.
pub struct KubeApi {
    /// Kubeconfig pointing at it (written to `<dir>/kubeconfig`, served by Talos `Kubeconfig`).
    pub kubeconfig: Vec<u8>,
    /// Its server task (awaited at shutdown).
    pub task: JoinHandle<()>,
}

/// Starts the simulated Kubernetes API server over the same model (its own throwaway CA,
/// `127.0.0.1:0`), writes `<dir>/kubeconfig`, and stops it when `start.shutdown` flips.
pub async fn start_kubernetes_api(start: KubeApiStart<'_>) -> Result<Option<KubeApi>, SimError> {
    let handle = crate::sim::kube_api::start(start.cluster.clone(), start.dir)
        .await
        .map_err(|e| SimError::Kubernetes(e.to_string()))?;
    let kubeconfig = handle.kubeconfig_bytes.clone();
    let mut shutdown = start.shutdown.clone();
    let task = tokio::spawn(async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        if let Err(e) = handle.shutdown().await {
            tracing::warn!(error = %e, "simulated Kubernetes API server did not stop cleanly");
        }
    });
    Ok(Some(KubeApi { kubeconfig, task }))
}

/// Starts simulators.
pub struct Simulator;

/// A running simulator.
pub struct SimHandle {
    nodes: BTreeMap<String, SocketAddr>,
    dir: PathBuf,
    talosconfigs: BTreeMap<Role, PathBuf>,
    cluster: SharedCluster,
    kubeconfig: KubeconfigSlot,
    maintenance_fingerprints: BTreeMap<String, String>,
    calls_path: PathBuf,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("nodes", &self.nodes)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Creates a directory (and parents) owner-only: it holds machine configs and client keys.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a file readable by its owner only (machine configs carry the cluster's keys).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

fn talosconfig_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "talosconfig",
        Role::Operator => "talosconfig-operator",
        Role::Reader => "talosconfig-reader",
        Role::EtcdBackup => "talosconfig-etcd-backup",
    }
}

impl Simulator {
    /// Builds the model and serves every node; see the module docs.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        Self::start_with(config, Preset::Seed).await
    }

    /// As [`Simulator::start`], on a topology preset (`--preset fleet --workers N`: the
    /// seed's control planes plus N workers, each with its own port).
    pub async fn start_with(config: SimConfig, preset: Preset) -> Result<SimHandle, SimError> {
        let model = config
            .scenario
            .build_preset(preset, config.speed)
            .map_err(|source| SimError::Scenario {
                scenario: config.scenario.name().into(),
                source,
            })?;
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Write { path, source }
        };
        private_dir(&config.dir).map_err(write_err(&config.dir))?;
        let calls_path = config.dir.join(CALLS_FILE);
        let _ = std::fs::remove_file(&calls_path);
        let calls = CallSink::to_file(&calls_path).map_err(write_err(&calls_path))?;

        let pki = SimPki::generate()?;
        // Talos clients use control planes as endpoints (workers do not forward requests).
        let nodes: Vec<(String, String, bool)> = model
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.label().to_string(),
                    n.hostname().to_string(),
                    n.config().is_some() && n.is_control_plane(),
                )
            })
            .collect();
        let wall = WallClock::new(model.now());
        let calls = Arc::new(calls);
        let hook_calls = calls.clone();
        let cluster = SharedCluster::new(model)
            .with_call_hook(Arc::new(move |records| hook_calls.write(records)));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let kubeconfig: KubeconfigSlot = Arc::new(RwLock::new(None));
        let ctx = Arc::new(ApiContext {
            cluster: cluster.clone(),
            kubeconfig: kubeconfig.clone(),
            versions: ResourceVersions::default(),
            shutdown: shutdown_rx.clone(),
            wall,
            cluster_id: {
                // Like Talos' 32 random bytes: this simulator's CA is fresh at every start.
                use base64::Engine as _;
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(b"runbook-sim cluster id\0");
                h.update(pki.os_ca.cert_der());
                let digest = h.finalize();
                base64::engine::general_purpose::STANDARD.encode(digest)
            },
        });

        let mut addrs = BTreeMap::new();
        let mut fingerprints = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut endpoints = Vec::new();
        for (label, hostname, configured) in &nodes {
            let tls = NodeTls::new(&pki, label, hostname)?;
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|source| SimError::Bind {
                    node: label.clone(),
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| SimError::Bind {
                node: label.clone(),
                source,
            })?;
            addrs.insert(label.clone(), addr);
            fingerprints.insert(label.clone(), tls.maintenance_fingerprint.clone());
            if *configured {
                endpoints.push(addr.to_string());
            }
            let api = NodeApi {
                endpoint: Arc::from(label.as_str()),
                ctx: ctx.clone(),
            };
            let node = label.clone();
            let rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = serve(listener, api, tls, rx).await {
                    tracing::error!(node = %node, error = %e, "simulated Talos API server failed");
                }
            }));
        }

        let mut talosconfigs = BTreeMap::new();
        for (role, cert) in &pki.clients {
            let ctx = Context {
                endpoints: endpoints.clone(),
                nodes: nodes.iter().map(|(l, _, _)| l.clone()).collect(),
                ca_pem: pki.os_ca.cert_pem().to_string(),
                crt_pem: cert.cert_pem.clone(),
                key_pem: Secret::new(cert.key_pem.expose().clone()),
                cluster: None,
            };
            let path = config.dir.join(talosconfig_name(*role));
            Talosconfig::single(CONTEXT_NAME, ctx).save(&path)?;
            talosconfigs.insert(*role, path);
        }

        // The machine configs an operator keeps (decrypted here: the simulator's are not
        // secret): every configured node's, plus the scenario's prepared ones for spare
        // machines, for runbooks such as node-replace and full-rebuild: `configs/<label>.yaml`.
        let mut configs: Vec<(String, String)> = cluster.with(|c, now| {
            let labels: Vec<String> = c.nodes().iter().map(|n| n.label().to_string()).collect();
            labels
                .into_iter()
                .filter_map(|l| c.machine_config(&l, now).ok().map(|y| (l, y)))
                .collect()
        });
        configs.extend(config.scenario.prepared_configs());
        for (label, yaml) in &configs {
            let dir = config.dir.join("configs");
            private_dir(&dir).map_err(write_err(&dir))?;
            let path = dir.join(format!("{label}.yaml"));
            write_private(&path, yaml.as_bytes()).map_err(write_err(&path))?;
        }
        // The inventory an operator keeps beside them (docs/inventory.md): which config is
        // whose, the GPU, and whether a USB stick may be plugged in (the Mac Minis).
        let inventory = cluster.with(|c, _| inventory_yaml(c, &configs));
        let inventory_path = config.dir.join("cluster.yaml");
        write_private(&inventory_path, inventory.as_bytes()).map_err(write_err(&inventory_path))?;

        // Label → loopback endpoint, for clients that must reach a node directly (maintenance
        // mode has no routing): `runbook run --talosconfig DIR/talosconfig --node-endpoints
        // DIR/endpoints.json`.
        let endpoints_path = config.dir.join("endpoints.json");
        // Each with the SPKI fingerprint of the node's maintenance certificate, so clients pin
        // it (`--cert-fingerprint`) instead of trusting whatever answers.
        let endpoint_map: BTreeMap<&String, serde_json::Value> = addrs
            .iter()
            .map(|(l, a)| {
                (
                    l,
                    serde_json::json!({
                        "endpoint": a.to_string(),
                        "fingerprint": fingerprints.get(l),
                    }),
                )
            })
            .collect();
        let json = serde_json::to_vec_pretty(&endpoint_map).unwrap_or_default();
        write_private(&endpoints_path, &json).map_err(write_err(&endpoints_path))?;

        let kube = start_kubernetes_api(KubeApiStart {
            cluster: cluster.clone(),
            pki: &pki,
            dir: &config.dir,
            shutdown: shutdown_rx.clone(),
        })
        .await?;
        if let Some(kube) = kube {
            let path = config.dir.join("kubeconfig");
            write_private(&path, &kube.kubeconfig).map_err(write_err(&path))?;
            *kubeconfig.write().unwrap_or_else(|p| p.into_inner()) = Some(kube.kubeconfig);
            tasks.push(kube.task);
        }

        Ok(SimHandle {
            nodes: addrs,
            dir: config.dir,
            talosconfigs,
            cluster,
            kubeconfig,
            maintenance_fingerprints: fingerprints,
            calls_path,
            shutdown_tx,
            tasks,
        })
    }
}

impl SimHandle {
    /// Node label → the loopback address serving its Talos API.
    pub fn nodes(&self) -> &BTreeMap<String, SocketAddr> {
        &self.nodes
    }

    /// The address of one node's Talos API.
    pub fn addr(&self, label: &str) -> Option<SocketAddr> {
        self.nodes.get(label).copied()
    }

    /// The endpoint string (`127.0.0.1:port`) of one node.
    pub fn endpoint(&self, label: &str) -> Option<String> {
        self.addr(label).map(|a| a.to_string())
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin talosconfig.
    pub fn talosconfig(&self) -> &Path {
        self.talosconfig_for(Role::Admin)
    }

    /// The talosconfig holding a client certificate for `role`.
    pub fn talosconfig_for(&self, role: Role) -> &Path {
        self.talosconfigs
            .get(&role)
            .map_or_else(|| self.dir.as_path(), PathBuf::as_path)
    }

    /// `<dir>/calls.jsonl`.
    pub fn calls_path(&self) -> &Path {
        &self.calls_path
    }

    /// The model: call log, fault injection, direct inspection.
    pub fn cluster(&self) -> &SharedCluster {
        &self.cluster
    }

    /// The SPKI fingerprint of a node's maintenance certificate (`--cert-fingerprint`).
    pub fn maintenance_fingerprint(&self, label: &str) -> Option<&str> {
        self.maintenance_fingerprints.get(label).map(String::as_str)
    }

    /// Sets the kubeconfig the Talos `Kubeconfig` call returns.
    pub fn set_kubeconfig(&self, kubeconfig: Vec<u8>) {
        *self.kubeconfig.write().unwrap_or_else(|p| p.into_inner()) = Some(kubeconfig);
    }

    /// Stops every server: open streams end, listeners close. Waits up to
    /// [`SHUTDOWN_GRACE`] per server, then aborts it.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// `cluster.yaml` for the simulated nodes (and the scenario's spare machines, which have
/// prepared configs but no model node yet: their hardware is a Mac Mini's, like the seed's).
fn inventory_yaml(c: &crate::sim::cluster::Cluster, configs: &[(String, String)]) -> String {
    use crate::sim::node::HardwareModel;
    let mut out = String::from(
        "# Written by `runbook sim up`: the facts no API tells (docs/inventory.md).\napiVersion: runbook/v1\nkind: Inventory\nnodes:\n",
    );
    for (label, _) in configs {
        let node = c.nodes().iter().find(|n| n.label() == label);
        let gpu = node.is_some_and(|n| n.hardware().has_nvidia_gpu());
        let removable = node.is_none_or(|n| n.hardware().model == HardwareModel::MacMini);
        out.push_str(&format!(
            "  - name: {label}\n    config: configs/{label}.yaml\n    gpu: {}\n    removable_media: {removable}\n",
            if gpu { "nvidia" } else { "none" }
        ));
    }
    out
}
