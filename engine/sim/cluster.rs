//! The whole simulated cluster: nodes, etcd cluster(s), the Kubernetes view, fault injection
//! and a call log.
//!
//! The API layers (Talos gRPC, Kubernetes) call the methods here, one per real API method,
//! each with the current [`SimTime`]. Every call first advances the model to that time, firing
//! scheduled transitions in order (reboots finishing, elections, join and promote retries,
//! boot timeouts), so the answers depend only on the sequence of calls and times. Talos
//! behaviour that involves more than one node lives here: joining etcd as a learner, the
//! upgrade guard, bootstrap creating a second cluster, graceful reset leaving etcd, and the
//! Kubernetes API being up only while some API server has an etcd with a leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::clock::{SimTime, Timings};
use super::error::{ApiError, Code, KubeError, msg};
use super::etcd::{
    Alarm, ClusterId, EtcdCluster, EtcdTimings, KvStore, MemberId, MemberInfo, MemberStatus,
    NewMember, StartError,
};
use super::node::{
    ApplyMode, Disk, EtcdData, Extension, LoadedModule, MachineConfig, MachineType, Node, NodeSpec,
    Phase, Power, RebootMode, ResetRequest, Service, ServiceState, Stage, UpgradeRequest,
    VANILLA_IMAGE, splitmix,
};

pub mod copy;
mod derived;
mod faults;
mod kube_calls;
mod kube_objects;
mod lifecycle;
mod talos_calls;

pub use kube_objects::{
    DaemonSetStatus, FieldManager, NVIDIA_GPU_RESOURCE, NVIDIA_HANDLER, ObjectKey, ObjectKind,
    StoredObject,
};

/// Talos API port (used in connection error messages only).
pub const APID_PORT: u16 = 50000;

/// One recorded mutating call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// API method name (`Reboot`, `EtcdRemoveMemberByID`, `EvictPod`, ...).
    pub method: String,
    /// Node label (or Kubernetes object name for Kubernetes calls).
    pub node: String,
    /// Simulated time of the call.
    pub at: SimTime,
    /// Outcome: `Ok` or the error code.
    pub result: Result<(), Code>,
}

/// `MachineStatus` (stage + readiness).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineStatus {
    /// Stage.
    pub stage: Stage,
    /// Ready flag (true outside booting/running, where no checks run).
    pub ready: bool,
    /// Unmet conditions `(name, reason)`.
    pub unmet_conditions: Vec<(String, String)>,
}

/// Answer of `ApplyConfiguration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyResult {
    /// The mode actually used (AUTO resolves to REBOOT or NO_REBOOT).
    pub mode: ApplyMode,
    /// Human details.
    pub mode_details: String,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// `Version` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Talos tag.
    pub tag: String,
    /// Platform name.
    pub platform: String,
    /// Installed image.
    pub image: Option<String>,
}

/// Kubernetes condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown` (node controller lost contact).
    Unknown,
}

/// A Kubernetes Node object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeNode {
    /// Node name (Talos hostname).
    pub name: String,
    /// InternalIP (the label).
    pub internal_ip: String,
    /// Ready condition.
    pub ready: ConditionStatus,
    /// `spec.unschedulable` (cordon).
    pub unschedulable: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Kubelet version.
    pub kubelet_version: String,
}

/// Who owns a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodOwner {
    /// A DaemonSet: recreated on the same node when evicted.
    DaemonSet(String),
    /// A ReplicaSet (Deployment): rescheduled elsewhere when evicted; PDBs apply.
    ReplicaSet(String),
    /// A static pod's mirror: the kubelet recreates it at once.
    Mirror,
}

/// A Kubernetes pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it is bound to (None = Pending).
    pub node: Option<String>,
    /// Owner.
    pub owner: PodOwner,
    /// `app` label (PDB selector).
    pub app: String,
    /// Ready (derived from the node).
    pub ready: bool,
    /// Its containers could be created: false while the RuntimeClass handler it needs is
    /// missing on its node (`ContainerCreating`, phase Pending).
    pub runtime_ok: bool,
}

/// A PodDisruptionBudget with `minAvailable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDisruptionBudget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Selects pods with this `app` label.
    pub app: String,
    /// minAvailable.
    pub min_available: usize,
}

/// A `kube-node-lease` Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Lease name (node name).
    pub name: String,
    /// Namespace (`kube-node-lease`).
    pub namespace: String,
    /// Holder identity.
    pub holder: String,
    /// Last renewal.
    pub renew_time: SimTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    BootStart,
    Wake,
    EtcdStart,
    EtcdJoin,
    EtcdPromote,
    BootTimeout,
    RebootStopped,
    ShutdownStopped,
    InstallDone,
    UpgradeInstalled,
    ResetLeave { deadline_ms: u64 },
    ResetWipe,
    TryRollback,
}

#[derive(Clone, Debug)]
struct Timer {
    node: usize,
    epoch: u64,
    kind: TimerKind,
}

#[derive(Clone, Debug)]
struct Fault {
    method: String,
    node: Option<String>,
    remaining: u32,
    /// The call takes effect, but its reply is lost (the client sees `Unavailable`).
    lose_reply: bool,
}

#[derive(Clone, Debug)]
struct PodState {
    namespace: String,
    name: String,
    node: Option<String>,
    owner: PodOwner,
    app: String,
}

/// The simulated cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    timings: Timings,
    now: SimTime,
    nodes: Vec<Node>,
    etcd: Vec<EtcdCluster>,
    timers: BTreeMap<(SimTime, u64), Timer>,
    seq: u64,
    rng: u64,
    calls: Vec<CallRecord>,
    faults: Vec<Fault>,
    pods: Vec<PodState>,
    pdbs: Vec<PodDisruptionBudget>,
    unschedulable: BTreeSet<String>,
    node_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Nodes whose Node object was deleted while their kubelet ran, with that kubelet's
    /// start time: a running kubelet does not re-register, the next start does.
    deleted_k8s_nodes: BTreeSet<(usize, SimTime)>,
    /// Bumped whenever the model may have changed (a recorded call, a scheduled or fired
    /// transition), so the API servers can push changes instead of polling.
    revision: u64,
    /// Objects clients created through the Kubernetes API (RuntimeClasses, DaemonSets).
    kube_objects: BTreeMap<ObjectKey, StoredObject>,
    /// The time and revision of the last [`Cluster::settle`], and the earliest later time at
    /// which settling could change something by time alone (a service, kubelet or etcd health
    /// threshold): until then, and while the revision stands, settling again is a no-op and
    /// is skipped (see `derived.rs`).
    settled: Option<Settled>,
    /// Settle on every access, as before the skip (tests compare both).
    eager_settle: bool,
}

/// See [`Cluster::settled`].
#[derive(Clone, Copy, Debug)]
struct Settled {
    revision: u64,
    due: Option<SimTime>,
}

impl Cluster {
    /// An empty cluster with `timings` and a seed for ids.
    pub fn new(timings: Timings, seed: u64) -> Cluster {
        Cluster {
            timings,
            now: SimTime::ZERO,
            nodes: Vec::new(),
            etcd: Vec::new(),
            timers: BTreeMap::new(),
            seq: 0,
            rng: seed,
            calls: Vec::new(),
            faults: Vec::new(),
            pods: Vec::new(),
            pdbs: Vec::new(),
            unschedulable: BTreeSet::new(),
            node_labels: BTreeMap::new(),
            deleted_k8s_nodes: BTreeSet::new(),
            kube_objects: BTreeMap::new(),
            revision: 0,
            settled: None,
            eager_settle: false,
        }
    }

    /// A counter that changes whenever the model may have changed: a recorded call, a
    /// transition scheduled or fired. Equal revisions mean nothing changed in between, except
    /// through a fault injected directly on the model (watchers re-check now and then).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// When the model next changes by itself: its earliest scheduled transition or etcd
    /// deadline.
    pub fn next_deadline(&self) -> Option<SimTime> {
        let next_timer = self.timers.keys().next().map(|k| k.0);
        let next_etcd = self
            .etcd
            .iter()
            .filter_map(EtcdCluster::next_deadline)
            .min();
        match (next_timer, next_etcd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timings in use.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The model's current time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Adds a node (powered off); returns its index.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<usize, ApiError> {
        self.touch();
        let seed = self.next_id();
        self.nodes.push(Node::new(spec, seed)?);
        Ok(self.nodes.len() - 1)
    }

    /// All nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A node by label.
    pub fn node(&self, label: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.label == label)
    }

    /// The etcd clusters that exist (more than one = split brain).
    pub fn etcd_clusters(&self) -> &[EtcdCluster] {
        &self.etcd
    }

    /// The call log of mutating calls.
    pub fn call_log(&self) -> &[CallRecord] {
        &self.calls
    }

    fn next_id(&mut self) -> u64 {
        self.rng = splitmix(self.rng);
        self.rng.max(1)
    }

    fn idx(&self, label: &str) -> Result<usize, ApiError> {
        self.nodes
            .iter()
            .position(|n| n.label == label)
            .ok_or_else(|| ApiError::unreachable(label, APID_PORT))
    }

    fn after(&self, d: Duration) -> SimTime {
        self.now + d.max(Duration::from_millis(1))
    }

    fn schedule(&mut self, node: usize, d: Duration, kind: TimerKind) {
        let at = self.after(d);
        let epoch = self.nodes[node].epoch;
        self.seq += 1;
        self.revision += 1;
        self.timers
            .insert((at, self.seq), Timer { node, epoch, kind });
    }

    // ----------------------------------------------------------------------------------
    // Time
    // ----------------------------------------------------------------------------------

    /// Advances the model to `now`, firing every scheduled transition up to it in order.
    /// Times earlier than the model's current time are treated as the current time.
    pub fn advance_to(&mut self, now: SimTime) {
        loop {
            let next_timer = self.timers.keys().next().map(|k| k.0);
            let next_etcd = self
                .etcd
                .iter()
                .filter_map(EtcdCluster::next_deadline)
                .min();
            let next = match (next_timer, next_etcd) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > now {
                break;
            }
            self.revision += 1;
            self.now = self.now.max(next);
            let t = self.now;
            for c in &mut self.etcd {
                if c.next_deadline().is_some_and(|d| d <= t) {
                    c.tick(t);
                }
            }
            if next_timer.is_some_and(|x| x <= t)
                && let Some((_, timer)) = self.timers.pop_first()
                && self.nodes[timer.node].epoch == timer.epoch
            {
                self.fire(timer.node, timer.kind);
            }
            self.settle();
        }
        self.now = self.now.max(now);
        for c in &mut self.etcd {
            c.tick(self.now);
        }
        self.settle_if_due();
    }

    /// Settles every access (`true`), or only when the revision moved or a threshold was
    /// reached (`false`, the default). Both give the same answers; tests compare them.
    pub fn set_eager_settle(&mut self, eager: bool) {
        self.eager_settle = eager;
    }

    /// Marks the model changed by a direct access (fault injection, scenario setup): the next
    /// access settles, and watchers look again.
    fn touch(&mut self) {
        self.revision += 1;
    }

    // ----------------------------------------------------------------------------------
    // Call plumbing
    // ----------------------------------------------------------------------------------

    fn check_fault(&mut self, method: &str, label: &str) -> Result<(), ApiError> {
        if let Some(f) = self.faults.iter_mut().find(|f| {
            !f.lose_reply
                && f.remaining > 0
                && f.method == method
                && f.node.as_deref().is_none_or(|n| n == label)
        }) {
            f.remaining -= 1;
            return Err(ApiError::unreachable(label, APID_PORT));
        }
        Ok(())
    }

    fn lost_reply(&mut self, method: &str, label: &str) -> bool {
        if let Some(f) = self.faults.iter_mut().find(|f| {
            f.lose_reply
                && f.remaining > 0
                && f.method == method
                && f.node.as_deref().is_none_or(|n| n == label)
        }) {
            f.remaining -= 1;
            return true;
        }
        false
    }

    fn enter(&mut self, method: &str, label: &str, now: SimTime) -> Result<usize, ApiError> {
        self.advance_to(now);
        self.check_fault(method, label)?;
        let i = self.idx(label)?;
        if !self.nodes[i].api_up() {
            return Err(ApiError::unreachable(label, APID_PORT));
        }
        if self.nodes[i].stage == Stage::Maintenance
            && !matches!(
                method,
                "ApplyConfiguration"
                    | "Version"
                    | "Disks"
                    | "MachineStatus"
                    | "Reboot"
                    | "Shutdown"
                    | "BootId"
            )
        {
            return Err(ApiError::new(
                Code::Unimplemented,
                "API is not implemented in maintenance mode",
            ));
        }
        Ok(i)
    }

    fn record<T>(&mut self, method: &str, label: &str, res: &Result<T, ApiError>) {
        self.revision += 1;
        self.calls.push(CallRecord {
            method: method.to_string(),
            node: label.to_string(),
            at: self.now,
            result: res.as_ref().map(|_| ()).map_err(|e| e.code),
        });
    }

    fn mutate<T>(
        &mut self,
        method: &str,
        label: &str,
        now: SimTime,
        f: impl FnOnce(&mut Cluster, usize) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let res = self.enter(method, label, now).and_then(|i| f(self, i));
        self.record(method, label, &res);
        self.reap_removed_members();
        self.settle();
        if res.is_ok() && self.lost_reply(method, label) {
            // Recorded as done (it is): only the answer is lost on the way back.
            return Err(ApiError::new(
                Code::Unavailable,
                "error reading from server: connection reset by peer (the request was applied)",
            ));
        }
        res
    }

    fn query<T>(
        &mut self,
        method: &str,
        label: &str,
        now: SimTime,
        f: impl FnOnce(&Cluster, usize) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let i = self.enter(method, label, now)?;
        f(self, i)
    }

    fn control_plane_only(&self, i: usize, api: &str) -> Result<(), ApiError> {
        if self.nodes[i].is_control_plane() {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::Unimplemented,
                format!("{api} is only available on control plane nodes"),
            ))
        }
    }
}

/// The etcd peer URL of a node label.
pub fn peer_url(label: &str) -> String {
    format!("https://{label}:2380")
}

/// The etcd client URL of a node label.
pub fn client_url(label: &str) -> String {
    format!("https://{label}:2379")
}
