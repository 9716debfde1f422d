//! The simulated Talos gRPC API: `MachineService`, `StorageService` and COSI `State`, served
//! over the model, one loopback port per node.
//!
//! A real `talosctl` (or our own client in [`crate::cluster::talos`]) cannot tell these
//! servers from apid for the calls Runbook uses. The pieces, one idea per file:
//!
//! - [`listener`]: the accept loop. It picks the TLS mode per connection from the model
//!   (configured node: mTLS against the OS CA; maintenance: server-only TLS; down: the
//!   connection is dropped), does the handshake with tokio-rustls, and feeds tonic through
//!   `serve_with_incoming`, so handlers see the peer certificate.
//! - [`auth`]: roles from the client certificate Organization and the per-method role table.
//! - [`routing`]: `node`/`nodes` metadata (one-to-one proxying and one-to-many fan-out with
//!   reply wrapping), as apid's director does.
//! - [`machine`], [`events`], [`storage`], [`cosi`]: the services; [`resources`] builds the
//!   COSI resources (typed `proto_spec` plus `yaml_spec`) from the model.
//! - [`calls`]: the `calls.jsonl` log of mutating calls; [`status`]: model errors as gRPC
//!   statuses; [`kubeconfig`]: the `Kubeconfig` tarball.

pub mod auth;
pub mod calls;
pub mod cosi;
pub mod events;
pub mod kubeconfig;
pub mod listener;
pub mod machine;
pub mod resources;
pub mod routing;
pub mod status;
pub mod storage;

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::sim::{Cluster, SharedCluster, SimTime};

pub use calls::CallSink;
pub use resources::ResourceVersions;

/// The kubeconfig the Talos `Kubeconfig` call returns, set by whoever runs the simulated
/// Kubernetes API server (`None` until then).
pub type KubeconfigSlot = Arc<RwLock<Option<Vec<u8>>>>;

/// Maps model time to wall-clock timestamps (service events, resource metadata).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    start_wall: SystemTime,
    start_sim: SimTime,
}

impl WallClock {
    /// Model time `start_sim` happens at wall time "now".
    pub fn new(start_sim: SimTime) -> WallClock {
        WallClock {
            start_wall: SystemTime::now(),
            start_sim,
        }
    }

    /// The protobuf timestamp of model time `t`.
    pub fn timestamp(&self, t: SimTime) -> prost_types::Timestamp {
        let base = self
            .start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as i128;
        let delta =
            t.as_duration().as_nanos() as i128 - self.start_sim.as_duration().as_nanos() as i128;
        let nanos = (base + delta).max(0);
        prost_types::Timestamp {
            seconds: i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX),
            nanos: i32::try_from(nanos % 1_000_000_000).unwrap_or(0),
        }
    }
}

/// What every node's services share: the model, the call sink, the kubeconfig hook, the
/// resource version book and the shutdown signal.
pub struct ApiContext {
    /// The model.
    pub cluster: SharedCluster,
    /// Kubeconfig for `MachineService.Kubeconfig`.
    pub kubeconfig: KubeconfigSlot,
    /// COSI resource versions (bumped when a spec changes).
    pub versions: ResourceVersions,
    /// Flips to `true` when the simulator shuts down; long streams end then.
    pub shutdown: watch::Receiver<bool>,
    /// Model time to wall time.
    pub wall: WallClock,
    /// The Talos cluster id (`Infos.cluster.talos.dev` `current`), unique per simulator.
    pub cluster_id: String,
}

impl ApiContext {
    /// Runs `f` on the model; the calls it records reach `calls.jsonl` through the shared
    /// model's call hook (so Kubernetes API calls are logged there too).
    pub fn call<R>(&self, f: impl FnOnce(&mut Cluster, SimTime) -> R) -> R {
        self.cluster.with(f)
    }
}

/// The services of one node's port: which node the endpoint is, plus the shared context.
#[derive(Clone)]
pub struct NodeApi {
    /// Label of the node this port belongs to.
    pub endpoint: Arc<str>,
    /// Shared state.
    pub ctx: Arc<ApiContext>,
}
