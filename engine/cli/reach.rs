//! Reaching a run's target before anything is written: the connection check, the kubeconfig
//! fetched into memory, the cluster's identity, the embedded simulator, and reading the
//! params the cluster knows.
//!
//! `run` must know the cluster answers before it creates a run directory (a run that could
//! never start leaves nothing behind), and must read the cluster to default params before it
//! compiles the plan (the plan, its hash and `params.json` hold the resolved values). So the
//! target is reached first, into a [`Reached`] that then drives the session. An embedded
//! simulator (`--sim`) is started in a staging directory and moved into the run directory
//! once that exists (its files are opened once, so the move is safe while it runs).

use std::path::{Path, PathBuf};

use crate::cli::Error;
use crate::cli::session::{Session, Target};
use crate::cluster::connection::{ConnectError, Connection};
use crate::cluster::defaults::{self, Resolved};
use crate::dsl::ast::ClusterDefault;
use crate::journal::RunDir;

/// Why the target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new run (or doctor): record the identity (CA fingerprints, cluster id).
    Run,
    /// Continuing a recorded run: check the identity against the record.
    Resume,
}

// One per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Live {
    Local,
    Cluster(Connection),
    Sim {
        handle: crate::sim::SimHandle,
        conn: Connection,
        dir: PathBuf,
        adopted: bool,
    },
}

/// A target that answered: the runtime, and the cluster (or simulator) connection.
pub struct Reached {
    runtime: tokio::runtime::Runtime,
    target: Target,
    live: Live,
}

/// The connection error as the operator reads it.
pub fn unreachable(e: ConnectError) -> Error {
    match e {
        e @ (ConnectError::Unreachable { .. } | ConnectError::Client(_)) => {
            Error::Unreachable(format!("{e}; nothing was written (no run directory)"))
        }
        other => Error::Usage(format!("cannot reach the cluster: {other}")),
    }
}

impl Reached {
    /// Reaches `target`: checks a cluster answers (exit 12 if not), fetches a kubeconfig into
    /// memory when the connection has none, and records (run) or checks (resume) the
    /// cluster's identity; starts an embedded simulator in `sim_dir`.
    pub fn reach(target: &Target, sim_dir: &Path, purpose: Purpose) -> Result<Reached, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let live = match target {
            Target::Local => Live::Local,
            Target::Cluster(conn) => {
                let mut conn = conn.clone();
                runtime.block_on(prepare(&mut conn, purpose))?;
                Live::Cluster(conn)
            }
            Target::Sim {
                scenario,
                speed,
                preset,
                workers,
            } => {
                let scenario: crate::sim::Scenario = scenario.parse().map_err(|e| {
                    Error::Usage(format!(
                        "unknown scenario `{scenario}`: {e} (see `runbook sim scenarios`)"
                    ))
                })?;
                let speed = crate::sim::Speed::new(*speed)
                    .ok_or_else(|| Error::Usage(format!("invalid speed `{speed}`")))?;
                let preset = super::sim::preset(preset, *workers, scenario)?;
                let handle = runtime
                    .block_on(crate::sim::Simulator::start_with(
                        crate::sim::SimConfig {
                            scenario,
                            speed,
                            dir: sim_dir.to_path_buf(),
                        },
                        preset,
                    ))
                    .map_err(|e| Error::Usage(format!("cannot start the simulator: {e}")))?;
                let conn = Connection::for_simulator(&handle);
                Live::Sim {
                    handle,
                    conn,
                    dir: sim_dir.to_path_buf(),
                    adopted: false,
                }
            }
        };
        Ok(Reached {
            runtime,
            target: target.clone(),
            live,
        })
    }

    /// What `target.json` records: the connection with its identity (never the fetched
    /// kubeconfig itself, only that it was fetched).
    pub fn target(&self) -> Target {
        match &self.live {
            Live::Cluster(conn) => Target::Cluster(conn.clone()),
            _ => self.target.clone(),
        }
    }

    fn conn(&self) -> Option<&Connection> {
        match &self.live {
            Live::Local => None,
            Live::Cluster(c) | Live::Sim { conn: c, .. } => Some(c),
        }
    }

    /// Reads the params that default from the cluster, from one fresh observation.
    pub fn resolve(&self, wanted: &[(String, ClusterDefault)]) -> Result<Vec<Resolved>, Error> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let Some(conn) = self.conn() else {
            return Err(Error::Usage(format!(
                "parameter `{}` defaults from the cluster ({}), and the run has none: give it with `--param {}=…`, or a cluster",
                wanted[0].0,
                wanted[0].1.name(),
                wanted[0].0
            )));
        };
        let view = self.runtime.block_on(async {
            let effects = conn.open().await.map_err(unreachable)?;
            Ok::<_, Error>(effects.observer().view().await)
        })?;
        defaults::resolve(&view, wanted).map_err(|e| Error::Usage(e.to_string()))
    }

    /// Opens the effects (for doctor: no run directory, pins in memory).
    pub fn observe<T>(
        &self,
        f: impl AsyncFnOnce(&crate::cluster::observe::Observer) -> T,
    ) -> Result<T, Error> {
        let Some(conn) = self.conn() else {
            return Err(Error::Usage("no cluster to observe".into()));
        };
        self.runtime.block_on(async {
            let effects = conn.open().await.map_err(unreachable)?;
            Ok(f(effects.observer()).await)
        })
    }

    /// Moves an embedded simulator's directory into the run directory (`<run>/sim`), now that
    /// it exists.
    pub fn adopt(&mut self, run: &RunDir) -> Result<(), Error> {
        if let Live::Sim {
            conn, dir, adopted, ..
        } = &mut self.live
        {
            let to = run.path().join("sim");
            std::fs::rename(&*dir, &to).map_err(|e| {
                Error::Usage(format!(
                    "cannot move the simulator's directory `{}` into the run: {e}",
                    dir.display()
                ))
            })?;
            conn.talosconfig = moved(&conn.talosconfig, dir, &to);
            conn.kubeconfig = conn.kubeconfig.as_deref().map(|k| moved(k, dir, &to));
            // The staging parent, if no other run is starting beside this one.
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
            *dir = to;
            *adopted = true;
        }
        Ok(())
    }

    /// Drives the session to its stop, then stops an embedded simulator.
    pub fn drive(self, s: Session<'_>, run_dir: &RunDir) -> Result<(), Error> {
        let Reached { runtime, live, .. } = self;
        let (conn, handle) = match live {
            Live::Local => {
                let report = runtime.block_on(crate::cli::session::go_local(s))?;
                return crate::cli::session::stop(report.stop);
            }
            Live::Cluster(conn) => (conn, None),
            Live::Sim { handle, conn, .. } => (conn, Some(handle)),
        };
        let report = runtime.block_on(async {
            let result = async {
                let effects = conn
                    .open_in(Some(run_dir.path()))
                    .await
                    .map_err(unreachable)?;
                let kube = conn.kube_client().await.map_err(unreachable)?;
                crate::cli::session::go_cluster(&effects, kube, s, run_dir).await
            }
            .await;
            if let Some(handle) = handle {
                handle.shutdown().await;
            }
            result
        })?;
        crate::cli::session::stop(report.stop)
    }

    /// Stops an embedded simulator that drove nothing, and removes its staging directory.
    pub fn close(self) {
        let Reached { runtime, live, .. } = self;
        if let Live::Sim {
            handle,
            dir,
            adopted,
            ..
        } = live
        {
            runtime.block_on(handle.shutdown());
            if !adopted {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// `p` under `to` instead of `from`.
fn moved(p: &Path, from: &Path, to: &Path) -> PathBuf {
    p.strip_prefix(from)
        .map_or_else(|_| p.to_path_buf(), |rest| to.join(rest))
}

/// Checks the cluster answers (a node in maintenance mode counts: see
/// [`Connection::probe`]), fetches a kubeconfig into memory when none was found, and records
/// (run) or checks (resume) the identity.
async fn prepare(conn: &mut Connection, purpose: Purpose) -> Result<(), Error> {
    let answer = conn.probe().await.map_err(unreachable)?;
    if let crate::cluster::connection::Answer::Maintenance { node, endpoint } = &answer {
        // Reachable and nothing more: the authenticated client stays lazy (and keeps checking
        // the CA on every call), maintenance nodes are reached through their pins, and
        // every guard needs its own evidence.
        eprintln!(
            "warning: no node answers with the talosconfig's CA; node {node} at endpoint {endpoint} answers in maintenance mode (reset, no cluster identity yet): continuing, maintenance nodes are reached through their pinned certificates"
        );
    }
    let fetch = match purpose {
        Purpose::Run => conn.kubeconfig.is_none(),
        Purpose::Resume => conn.kubeconfig.is_none() && conn.kubeconfig_fetched,
    };
    if fetch {
        match conn.fetch_kubeconfig().await {
            Ok(()) => {}
            Err(e) if purpose == Purpose::Run => {
                // Without a kubeconfig the run has no Kubernetes API: the cluster lock then
                // refuses a disruptive plan (or `--no-cluster-lock` is journaled).
                eprintln!(
                    "warning: no kubeconfig found, and none could be fetched from the cluster: {e}"
                );
            }
            Err(e) => {
                return Err(Error::Usage(format!(
                    "the run used a kubeconfig fetched from the cluster, and fetching it again failed: {e}"
                )));
            }
        }
    }
    // A kubeconfig (or its context) that cannot be used is refused now, not after the run
    // directory exists.
    conn.kube_client()
        .await
        .map_err(|e| Error::Usage(format!("cannot use the kubeconfig: {e}")))?;
    match purpose {
        Purpose::Run => {
            conn.fingerprint()
                .map_err(|e| Error::Usage(format!("cannot read the cluster's identity: {e}")))?;
            conn.cluster_id = conn.read_cluster_id().await.ok().flatten();
        }
        Purpose::Resume => check_identity(conn, fetch)?,
    }
    Ok(())
}

/// On resume: the files the run recorded must still name the cluster it recorded (a
/// talosconfig or kubeconfig overwritten since, e.g. by a new `sim up` or another cluster's
/// `talosctl config`, is refused), and a refetched kubeconfig must trust the recorded CA.
fn check_identity(conn: &Connection, fetched: bool) -> Result<(), Error> {
    let refuse = |what: &str| {
        Error::Usage(format!(
            "{what} than the one the run recorded; refusing to continue the run there"
        ))
    };
    if let Some(ca) = &conn.ca_sha256 {
        let now = conn
            .talos_ca_sha256()
            .map_err(|e| Error::Usage(format!("cannot read the cluster's identity: {e}")))?;
        if now != *ca {
            return Err(refuse(&format!(
                "the talosconfig `{}` now trusts another Talos CA",
                conn.talosconfig.display()
            )));
        }
    }
    if conn.kube_ca_sha256.is_some() || fetched {
        let now = conn
            .kube_ca_sha256_of()
            .map_err(|e| Error::Usage(format!("cannot read the kubeconfig: {e}")))?;
        if now != conn.kube_ca_sha256 {
            return Err(refuse(if fetched {
                "the kubeconfig fetched from the cluster now trusts another Kubernetes CA"
            } else {
                "the kubeconfig now trusts another Kubernetes CA"
            }));
        }
    }
    Ok(())
}
