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
mod faults;
mod kube_calls;
mod kube_objects;
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
        self.settle();
    }

    // ----------------------------------------------------------------------------------
    // Node sequences
    // ----------------------------------------------------------------------------------

    /// Powers on all nodes that are off (scenario setup).
    pub fn power_on_all(&mut self, now: SimTime) {
        self.advance_to(now);
        for i in 0..self.nodes.len() {
            if self.nodes[i].power == Power::Off && !self.nodes[i].keep_down {
                self.begin_power_on(i);
            }
        }
    }

    fn begin_power_on(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.power = Power::On;
        n.phase = Phase::Down;
        n.epoch += 1;
        let d = self.timings.reboot;
        self.schedule(i, d, TimerKind::BootStart);
    }

    /// Stops everything on the node (process level): etcd member, kubelet, services.
    fn go_down(&mut self, i: usize) {
        let now = self.now;
        if let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data
            && let Some(c) = self.etcd.iter_mut().find(|c| c.id() == cluster)
        {
            c.stop_member(member, now);
        }
        let n = &mut self.nodes[i];
        if n.kubelet_started_at.is_some() {
            n.kubelet_stopped_at = Some(now);
        }
        n.kubelet_started_at = None;
        n.etcd_started_at = None;
        n.services.clear();
        n.loaded_modules.clear();
        n.phase = Phase::Down;
        n.epoch += 1;
    }

    fn power_down(&mut self, i: usize) {
        self.go_down(i);
        let n = &mut self.nodes[i];
        n.power = Power::Off;
        n.phase = Phase::Off;
        n.stage = Stage::Unknown;
    }

    /// Starts a reboot-like sequence: stage `stage`, services stop after the shutdown delay.
    fn begin_reboot(&mut self, i: usize, stage: Stage) {
        self.nodes[i].stage = stage;
        self.nodes[i].epoch += 1;
        let d = self.timings.shutdown;
        self.schedule(i, d, TimerKind::RebootStopped);
    }

    fn fire(&mut self, i: usize, kind: TimerKind) {
        match kind {
            TimerKind::BootStart => self.boot_start(i),
            TimerKind::Wake => {}
            TimerKind::EtcdStart => self.etcd_start(i),
            TimerKind::EtcdJoin => self.etcd_join(i),
            TimerKind::EtcdPromote => self.etcd_promote(i),
            TimerKind::BootTimeout => {
                if self.nodes[i].stage == Stage::Booting {
                    let n = &mut self.nodes[i];
                    n.last_error = Some(
                        "boot sequence failed: error running phase 18 in boot sequence: task 1/1: failed, context deadline exceeded"
                            .into(),
                    );
                    if n.first_boot_after_upgrade {
                        if let Some(prev) = n.previous_image.take() {
                            n.image = Some(prev);
                        }
                        n.first_boot_after_upgrade = false;
                    }
                    self.begin_reboot(i, Stage::Rebooting);
                }
            }
            TimerKind::RebootStopped => {
                self.go_down(i);
                if self.nodes[i].keep_down {
                    self.power_down(i);
                } else {
                    let d = self.timings.reboot;
                    self.schedule(i, d, TimerKind::BootStart);
                }
            }
            TimerKind::ShutdownStopped => self.power_down(i),
            TimerKind::InstallDone => self.install_done(i),
            TimerKind::UpgradeInstalled => {
                let n = &mut self.nodes[i];
                if let Some(img) = n.pending_image.take() {
                    n.previous_image = n.image.replace(img);
                    n.first_boot_after_upgrade = true;
                }
                self.go_down(i);
                if self.nodes[i].keep_down {
                    self.power_down(i);
                } else {
                    let d = self.timings.reboot;
                    self.schedule(i, d, TimerKind::BootStart);
                }
            }
            TimerKind::ResetLeave { deadline_ms } => self.reset_leave(i, deadline_ms),
            TimerKind::ResetWipe => self.reset_wipe(i),
            TimerKind::TryRollback => {
                let n = &mut self.nodes[i];
                if let Some(old) = n.try_rollback.take() {
                    n.config = Some(old);
                }
            }
        }
    }

    fn boot_start(&mut self, i: usize) {
        let now = self.now;
        let t = self.timings;
        let n = &mut self.nodes[i];
        n.phase = Phase::Up;
        n.epoch += 1;
        n.new_boot_id();
        n.boot_started_at = now;
        n.services.clear();
        n.loaded_modules.clear();
        if let Some(staged) = n.staged_config.take() {
            n.config = Some(staged);
        }
        n.try_rollback = None;
        let installed = n.image.is_some()
            && n.system_disk_serial
                .as_ref()
                .is_some_and(|s| n.hardware.disks.iter().any(|d| &d.serial == s));
        if !installed || n.config.is_none() {
            n.stage = Stage::Maintenance;
            for s in ["apid", "machined"] {
                n.service_mut(s, now)
                    .set(ServiceState::Running, "Service started", now);
            }
            return;
        }
        n.stage = Stage::Booting;
        n.load_configured_modules();
        let cp = n.is_control_plane();
        let mut core = vec!["machined", "apid", "containerd", "udevd"];
        if cp {
            core.push("trustd");
        }
        for s in core {
            let svc = n.service_mut(s, now);
            svc.set(ServiceState::Running, "Health check successful", now);
            svc.healthy = Some(true);
        }
        n.service_mut("cri", now).set(
            ServiceState::Waiting,
            "Waiting for service \"containerd\" to be \"up\"",
            now,
        );
        n.service_mut("kubelet", now).set(
            ServiceState::Waiting,
            "Waiting for service \"cri\" to be \"up\"",
            now,
        );
        for (svc, _) in n.extension_services() {
            n.service_mut(svc, now).set(
                ServiceState::Waiting,
                "Waiting for service \"cri\" to be \"up\"",
                now,
            );
        }
        let data = n.etcd_data;
        if cp {
            n.service_mut("etcd", now)
                .set(ServiceState::Preparing, "Running pre state", now);
        }
        self.schedule(i, t.service_start, TimerKind::Wake);
        self.schedule(i, t.kubelet_start, TimerKind::Wake);
        self.schedule(i, t.kubelet_start + t.kubelet_ready, TimerKind::Wake);
        self.schedule(i, t.boot_timeout, TimerKind::BootTimeout);
        if cp {
            match data {
                EtcdData::Member { .. } => self.schedule(i, t.service_start, TimerKind::EtcdStart),
                EtcdData::Empty => self.schedule(i, t.service_start, TimerKind::EtcdJoin),
            }
        }
    }

    fn etcd_start(&mut self, i: usize) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            return;
        };
        let host = self.nodes[i].hostname.clone();
        let client = client_url(&self.nodes[i].label);
        let res = match self.etcd.iter_mut().find(|c| c.id() == cluster) {
            Some(c) => c.start_member(member, &host, &client, now),
            None => Err(StartError::NoMatch),
        };
        match res {
            Ok(()) => {
                let n = &mut self.nodes[i];
                n.etcd_started_at = Some(now);
                n.service_mut("etcd", now).set(
                    ServiceState::Running,
                    "Service started as goroutine",
                    now,
                );
                let h = self.timings.etcd_health_interval;
                self.schedule(i, h, TimerKind::Wake);
                if self.is_learner(cluster, member) {
                    let d = self.timings.learner_promotion;
                    self.schedule(i, d, TimerKind::EtcdPromote);
                }
            }
            Err(e) => {
                let text = match e {
                    StartError::Removed => format!(
                        "Error running Containerd(etcd), going to restart forever: {}; {}",
                        msg::PERMANENTLY_REMOVED,
                        e.message()
                    ),
                    StartError::NoMatch => format!(
                        "Error running Containerd(etcd), going to restart forever: {}",
                        e.message()
                    ),
                };
                let svc = self.nodes[i].service_mut("etcd", now);
                svc.set(ServiceState::Failed, &text, now);
                svc.healthy = Some(false);
            }
        }
    }

    fn is_learner(&self, cluster: ClusterId, member: MemberId) -> bool {
        self.etcd
            .iter()
            .find(|c| c.id() == cluster)
            .and_then(|c| c.member(member))
            .is_some_and(|m| m.is_learner)
    }

    /// A running voter endpoint among control-plane nodes other than `except` (in node order).
    fn remote_endpoint(&self, except: Option<usize>) -> Option<(usize, MemberId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != except)
            .find_map(|(_, n)| self.running_voter_of(n))
    }

    fn running_voter_of(&self, n: &Node) -> Option<(usize, MemberId)> {
        if !n.api_up() || !n.is_control_plane() {
            return None;
        }
        let EtcdData::Member { cluster, member } = n.etcd_data else {
            return None;
        };
        let ci = self.etcd.iter().position(|c| c.id() == cluster)?;
        let m = self.etcd[ci].member(member)?;
        (m.running && !m.is_learner).then_some((ci, member))
    }

    /// Talos `NewClientFromControlPlaneIPs`: this node first, then the other control planes.
    fn cluster_client(&self, i: usize) -> Result<(usize, MemberId), ApiError> {
        self.running_voter_of(&self.nodes[i])
            .or_else(|| self.remote_endpoint(Some(i)))
            .ok_or_else(|| ApiError::new(Code::DeadlineExceeded, msg::DEADLINE))
    }

    /// Talos `NewLocalClient`: this node's member (learner or voter).
    fn local_member(&self, i: usize) -> Result<(usize, MemberId), ApiError> {
        let n = &self.nodes[i];
        if let EtcdData::Member { cluster, member } = n.etcd_data
            && let Some(ci) = self.etcd.iter().position(|c| c.id() == cluster)
            && self.etcd[ci].member(member).is_some_and(|m| m.running)
        {
            return Ok((ci, member));
        }
        Err(ApiError::new(Code::DeadlineExceeded, msg::DEADLINE))
    }

    fn etcd_join(&mut self, i: usize) {
        let now = self.now;
        let n = &self.nodes[i];
        if n.etcd_data != EtcdData::Empty
            || !matches!(n.stage, Stage::Booting | Stage::Running)
            || n.service("etcd")
                .is_none_or(|s| s.state != ServiceState::Preparing)
        {
            return;
        }
        let retry = self.timings.etcd_join_retry;
        let Some((ci, via)) = self.remote_endpoint(Some(i)) else {
            let ips: Vec<String> = self
                .nodes
                .iter()
                .filter(|m| m.is_control_plane())
                .map(|m| m.label.clone())
                .collect();
            let text = format!(
                "etcd is waiting to join the cluster, if this node is the first node in the cluster, please run `talosctl bootstrap` against one of the following IPs:\n{ips:?}"
            );
            self.nodes[i]
                .service_mut("etcd", now)
                .set(ServiceState::Preparing, &text, now);
            self.schedule(i, retry, TimerKind::EtcdJoin);
            return;
        };
        let host = self.nodes[i].hostname.clone();
        let peer = peer_url(&self.nodes[i].label);
        let attempt = (|| -> Result<MemberId, ApiError> {
            let list = self.etcd[ci].member_list(via)?;
            for stale in list.iter().filter(|m| m.hostname == host) {
                self.etcd[ci].remove_member(via, stale.id, now)?;
            }
            let id = self.next_id();
            self.etcd[ci].add_member(via, id, std::slice::from_ref(&peer), true, now)?;
            Ok(id)
        })();
        match attempt {
            Ok(id) => {
                let cluster = self.etcd[ci].id();
                self.nodes[i].etcd_data = EtcdData::Member {
                    cluster,
                    member: id,
                };
                self.etcd_start(i);
            }
            Err(e) => {
                let text = format!("error adding member: {}", e.message);
                self.nodes[i]
                    .service_mut("etcd", now)
                    .set(ServiceState::Preparing, &text, now);
                self.schedule(i, retry, TimerKind::EtcdJoin);
            }
        }
    }

    fn etcd_promote(&mut self, i: usize) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            return;
        };
        if !self.is_learner(cluster, member) || !self.nodes[i].api_up() {
            return;
        }
        let via = self
            .remote_endpoint(Some(i))
            .filter(|(ci, _)| self.etcd[*ci].id() == cluster);
        let ok = match via {
            Some((ci, via)) => self.etcd[ci].promote_member(via, member, now).is_ok(),
            None => false,
        };
        if !ok {
            let d = self.timings.learner_promotion;
            self.schedule(i, d, TimerKind::EtcdPromote);
        }
    }

    fn install_done(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(cfg) = n.config.clone() else {
            n.stage = Stage::Maintenance;
            return;
        };
        let path = cfg
            .install_disk
            .clone()
            .or_else(|| {
                cfg.install_disk_serial
                    .as_ref()
                    .map(|s| format!("serial {s}"))
            })
            .unwrap_or_default();
        match n.install_target(&cfg) {
            Some(disk) => {
                n.image = Some(
                    cfg.install_image
                        .clone()
                        .unwrap_or_else(|| VANILLA_IMAGE.to_string()),
                );
                n.previous_image = None;
                n.system_disk_serial = Some(disk.serial);
                n.etcd_data = EtcdData::Empty;
                n.last_error = None;
                self.begin_reboot(i, Stage::Rebooting);
            }
            None => {
                n.last_error = Some(format!("failed to install: disk {path:?} not found"));
                n.config = None;
                n.stage = Stage::Maintenance;
            }
        }
    }

    fn reset_leave(&mut self, i: usize, deadline_ms: u64) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            self.reset_wipe(i);
            return;
        };
        let present = self
            .etcd
            .iter()
            .any(|c| c.id() == cluster && c.member(member).is_some());
        if !present {
            self.reset_wipe(i);
            return;
        }
        let res = self
            .cluster_client(i)
            .and_then(|(ci, via)| self.etcd[ci].remove_member(via, member, now));
        match res {
            Ok(()) => self.reset_wipe(i),
            Err(e) => {
                let retryable =
                    e.message == msg::UNHEALTHY_CLUSTER || e.message == msg::SERVER_STOPPED;
                if retryable && (now.as_duration().as_millis() as u64) < deadline_ms {
                    self.schedule(
                        i,
                        Duration::from_secs(1).min(self.timings.etcd_reconfig_window),
                        TimerKind::ResetLeave { deadline_ms },
                    );
                } else {
                    // The reset sequence fails; machined reboots without wiping.
                    self.nodes[i].last_error = Some(format!("failed to leave etcd: {}", e.message));
                    self.begin_reboot(i, Stage::Rebooting);
                }
            }
        }
    }

    fn reset_wipe(&mut self, i: usize) {
        let req = self.nodes[i].pending_reset.take().unwrap_or_default();
        self.go_down(i);
        let n = &mut self.nodes[i];
        let full = req.system_labels_to_wipe.is_empty();
        let wipe = |l: &str| full || req.system_labels_to_wipe.iter().any(|x| x == l);
        if wipe("EPHEMERAL") {
            n.etcd_data = EtcdData::Empty;
            n.etcd_snapshot_upload = None;
        }
        if wipe("STATE") {
            n.config = None;
            n.staged_config = None;
        }
        if full {
            n.image = None;
            n.previous_image = None;
            n.system_disk_serial = None;
        }
        if req.reboot && !n.keep_down {
            let d = self.timings.reboot;
            self.schedule(i, d, TimerKind::BootStart);
        } else {
            self.power_down(i);
        }
    }

    // ----------------------------------------------------------------------------------
    // Derived state
    // ----------------------------------------------------------------------------------

    /// Re-evaluates services, stages and Kubernetes registration at the current time.
    fn settle(&mut self) {
        let now = self.now;
        let t = self.timings;
        for i in 0..self.nodes.len() {
            let (up, stage) = (self.nodes[i].api_up(), self.nodes[i].stage);
            if !up || !matches!(stage, Stage::Booting | Stage::Running) {
                continue;
            }
            let etcd_health = self
                .local_member(i)
                .and_then(|(ci, m)| self.etcd[ci].quorum_read_ok(m));
            let n = &mut self.nodes[i];
            let boot = n.boot_started_at;
            if now >= boot + t.service_start {
                let svc = n.service_mut("cri", now);
                svc.set(ServiceState::Running, "Health check successful", now);
                svc.healthy = Some(true);
            }
            if now >= boot + t.kubelet_start {
                let svc = n.service_mut("kubelet", now);
                svc.set(ServiceState::Running, "Health check successful", now);
                svc.healthy = Some(true);
                n.kubelet_started_at.get_or_insert(boot + t.kubelet_start);
            }
            if let Some(st) = n.etcd_started_at
                && now >= st + t.etcd_health_interval
            {
                let svc = n.service_mut("etcd", now);
                match &etcd_health {
                    Ok(()) => {
                        svc.healthy = Some(true);
                        svc.health_message = String::new();
                    }
                    Err(e) => {
                        svc.healthy = Some(false);
                        svc.health_message = e.message.clone();
                    }
                }
            }
            let cri_up = n.service("cri").is_some_and(Service::is_up);
            for (svc, path) in n.extension_services() {
                let ok = cri_up && n.path_exists(path);
                let s = n.service_mut(svc, now);
                if ok {
                    s.set(
                        ServiceState::Running,
                        "Started task ext (PID 2817) for container ext",
                        now,
                    );
                    s.healthy = Some(true);
                } else if cri_up {
                    s.set(
                        ServiceState::Waiting,
                        &format!("Waiting for path {path:?} to exist"),
                        now,
                    );
                }
            }
            if n.stage == Stage::Booting && n.services.values().all(Service::is_up) {
                n.stage = Stage::Running;
                n.first_boot_after_upgrade = false;
                n.last_error = None;
            }
        }
        // Kubernetes: kubelets register and Talos uncordons what it cordoned.
        if self.k8s_api_available() {
            for i in 0..self.nodes.len() {
                let n = &self.nodes[i];
                let deleted = n
                    .kubelet_started_at
                    .is_some_and(|k| self.deleted_k8s_nodes.contains(&(i, k)));
                if n.api_up()
                    && n.kubelet_started_at.is_some_and(|k| now >= k)
                    && !n.k8s_registered
                    && !deleted
                {
                    self.register_k8s_node(i);
                }
                let n = &mut self.nodes[i];
                if n.cordoned_by_talos
                    && n.kubelet_started_at
                        .is_some_and(|k| now >= k + t.kubelet_ready)
                {
                    n.cordoned_by_talos = false;
                    self.unschedulable.remove(&n.hostname);
                }
            }
        }
    }

    fn register_k8s_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.k8s_registered = true;
        let host = n.hostname.clone();
        let cp = n.is_control_plane();
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), host.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        if cp {
            labels.insert(
                "node-role.kubernetes.io/control-plane".into(),
                String::new(),
            );
        }
        self.node_labels.entry(host.clone()).or_insert(labels);
        if cp {
            for comp in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                let name = format!("{comp}-{host}");
                if !self.pods.iter().any(|p| p.name == name) {
                    self.pods.push(PodState {
                        namespace: "kube-system".into(),
                        name,
                        node: Some(host.clone()),
                        owner: PodOwner::Mirror,
                        app: comp.into(),
                    });
                }
            }
        }
        for ds in ["kube-flannel", "kube-proxy"] {
            let present = self.pods.iter().any(|p| {
                p.owner == PodOwner::DaemonSet(ds.into()) && p.node.as_deref() == Some(&host)
            });
            if !present {
                let name = format!("{ds}-{}", self.pod_suffix());
                self.pods.push(PodState {
                    namespace: "kube-system".into(),
                    name,
                    node: Some(host.clone()),
                    owner: PodOwner::DaemonSet(ds.into()),
                    app: ds.into(),
                });
            }
        }
    }

    fn pod_suffix(&mut self) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = self.next_id();
        (0..5)
            .map(|_| {
                let c = ALPHA[(x % ALPHA.len() as u64) as usize];
                x /= ALPHA.len() as u64;
                char::from(c)
            })
            .collect()
    }

    /// True if the node's kube-apiserver static pod serves (kubelet up long enough and the
    /// local etcd member has a leader).
    fn apiserver_up(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.api_up()
            && n.is_control_plane()
            && matches!(n.stage, Stage::Booting | Stage::Running)
            && n.kubelet_started_at
                .is_some_and(|k| self.now >= k + self.timings.kubelet_ready)
            && self
                .local_member(i)
                .is_ok_and(|(ci, _)| self.etcd[ci].leader().is_some())
    }

    /// True if some API server can answer Kubernetes requests.
    pub fn k8s_api_available(&self) -> bool {
        (0..self.nodes.len()).any(|i| self.apiserver_up(i))
    }

    fn kubelet_running(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.api_up()
            && matches!(
                n.stage,
                Stage::Booting
                    | Stage::Running
                    | Stage::Upgrading
                    | Stage::Resetting
                    | Stage::Rebooting
                    | Stage::ShuttingDown
            )
            && n.kubelet_started_at.is_some_and(|k| self.now >= k)
    }

    /// The Ready condition of the node's Kubernetes object (None = no object).
    fn k8s_ready(&self, i: usize) -> Option<ConditionStatus> {
        let n = &self.nodes[i];
        if !n.k8s_registered {
            return None;
        }
        let t = &self.timings;
        if self.kubelet_running(i) {
            let ready = n
                .kubelet_started_at
                .is_some_and(|k| self.now >= k + t.kubelet_ready);
            return Some(if ready {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            });
        }
        match n.kubelet_stopped_at {
            Some(s) if self.now < s + t.node_monitor_grace => Some(ConditionStatus::True),
            _ => Some(ConditionStatus::Unknown),
        }
    }

    fn machine_status_of(&self, i: usize) -> MachineStatus {
        let n = &self.nodes[i];
        let stage = n.stage;
        if !matches!(stage, Stage::Booting | Stage::Running) {
            return MachineStatus {
                stage,
                ready: true,
                unmet_conditions: Vec::new(),
            };
        }
        let mut unmet = Vec::new();
        let mut required = vec!["apid", "machined", "kubelet"];
        if n.is_control_plane() {
            required.extend(["etcd", "trustd"]);
        }
        let bad: Vec<&str> = required
            .into_iter()
            .filter(|s| {
                n.service(s).is_none_or(|svc| {
                    svc.state != ServiceState::Running || svc.healthy == Some(false)
                })
            })
            .collect();
        if !bad.is_empty() {
            unmet.push((
                "services".to_string(),
                format!("some services are not healthy: {}", bad.join(", ")),
            ));
        }
        if n.is_control_plane() && !self.apiserver_up(i) {
            unmet.push((
                "staticPods".to_string(),
                "static pods kube-system/kube-apiserver, kube-system/kube-controller-manager, kube-system/kube-scheduler are not ready".to_string(),
            ));
        }
        match self.k8s_ready(i) {
            Some(ConditionStatus::True) if self.kubelet_running(i) => {}
            Some(_) => unmet.push((
                "nodeReady".to_string(),
                format!("node {:?} is not ready", n.hostname),
            )),
            None => unmet.push((
                "nodeReady".to_string(),
                format!("node {:?} status is not available yet", n.hostname),
            )),
        }
        MachineStatus {
            stage,
            ready: unmet.is_empty(),
            unmet_conditions: unmet,
        }
    }

    /// After a membership change: running members that were removed exit by themselves.
    fn reap_removed_members(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
                continue;
            };
            let Some(c) = self.etcd.iter().find(|c| c.id() == cluster) else {
                continue;
            };
            if c.member(member).is_none() && self.nodes[i].etcd_started_at.is_some() {
                let n = &mut self.nodes[i];
                n.etcd_started_at = None;
                let svc = n.service_mut("etcd", now);
                svc.set(
                    ServiceState::Failed,
                    &format!(
                        "Error running Containerd(etcd), going to restart forever: {}",
                        msg::PERMANENTLY_REMOVED
                    ),
                    now,
                );
                svc.healthy = Some(false);
            }
        }
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
