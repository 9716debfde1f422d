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
        let path = cfg.install_disk.clone().unwrap_or_default();
        match n.resolve_install_disk(&path) {
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

    // ----------------------------------------------------------------------------------
    // Talos queries
    // ----------------------------------------------------------------------------------

    /// `MachineStatuses.runtime.talos.dev/machine`.
    pub fn machine_status(&mut self, label: &str, now: SimTime) -> Result<MachineStatus, ApiError> {
        self.query("MachineStatus", label, now, |c, i| {
            Ok(c.machine_status_of(i))
        })
    }

    /// `ServiceList`.
    pub fn service_list(&mut self, label: &str, now: SimTime) -> Result<Vec<Service>, ApiError> {
        self.query("ServiceList", label, now, |c, i| {
            Ok(c.nodes[i].services().cloned().collect())
        })
    }

    /// `Version`.
    pub fn version(&mut self, label: &str, now: SimTime) -> Result<VersionInfo, ApiError> {
        self.query("Version", label, now, |c, i| {
            Ok(VersionInfo {
                tag: super::node::TALOS_VERSION.into(),
                platform: "metal".into(),
                image: c.nodes[i].image.clone(),
            })
        })
    }

    /// `/proc/sys/kernel/random/boot_id`.
    pub fn boot_id(&mut self, label: &str, now: SimTime) -> Result<String, ApiError> {
        self.query("BootId", label, now, |c, i| Ok(c.nodes[i].boot_id.clone()))
    }

    /// `Disks.block.talos.dev`.
    pub fn disks(&mut self, label: &str, now: SimTime) -> Result<Vec<Disk>, ApiError> {
        self.query("Disks", label, now, |c, i| Ok(c.nodes[i].disks()))
    }

    /// `ExtensionStatuses.runtime.talos.dev`.
    pub fn extensions(&mut self, label: &str, now: SimTime) -> Result<Vec<Extension>, ApiError> {
        self.query("Extensions", label, now, |c, i| Ok(c.nodes[i].extensions()))
    }

    /// `KernelModuleSpecs.runtime.talos.dev` (module names).
    pub fn kernel_module_specs(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<String>, ApiError> {
        self.query("KernelModuleSpecs", label, now, |c, i| {
            Ok(c.nodes[i].kernel_module_specs())
        })
    }

    /// `LoadedKernelModules.runtime.talos.dev`.
    pub fn loaded_kernel_modules(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<LoadedModule>, ApiError> {
        self.query("LoadedKernelModules", label, now, |c, i| {
            Ok(c.nodes[i].loaded_modules())
        })
    }

    /// `MachineConfigs.config.talos.dev/v1alpha1` (raw YAML).
    pub fn machine_config(&mut self, label: &str, now: SimTime) -> Result<String, ApiError> {
        self.query("MachineConfig", label, now, |c, i| {
            c.nodes[i]
                .config
                .as_ref()
                .map(|m| m.raw().to_string())
                .ok_or_else(|| ApiError::new(Code::NotFound, "resource MachineConfigs.config.talos.dev(config/v1alpha1@undefined) doesn't exist"))
        })
    }

    /// `EtcdMemberList` (require-leader; `query_local` uses this node's member only).
    pub fn etcd_member_list(
        &mut self,
        label: &str,
        query_local: bool,
        now: SimTime,
    ) -> Result<Vec<MemberInfo>, ApiError> {
        self.query("EtcdMemberList", label, now, |c, i| {
            c.control_plane_only(i, "member list")?;
            let (ci, via) = if query_local {
                let (ci, m) = c.local_member(i)?;
                (ci, m)
            } else {
                c.cluster_client(i)?
            };
            c.etcd[ci]
                .member_list(via)
                .map_err(ApiError::via_etcd_client)
        })
    }

    /// `EtcdStatus` of this node's member: answers without leader, listing the error.
    pub fn etcd_status(&mut self, label: &str, now: SimTime) -> Result<MemberStatus, ApiError> {
        self.query("EtcdStatus", label, now, |c, i| {
            c.control_plane_only(i, "etcd status")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to query etcd status"))?;
            c.etcd[ci]
                .status(m)
                .map_err(|e| e.wrapped("failed to query etcd status"))
        })
    }

    /// `EtcdAlarmList` of this node's member.
    pub fn etcd_alarm_list(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<(MemberId, Alarm)>, ApiError> {
        self.query("EtcdAlarmList", label, now, |c, i| {
            c.control_plane_only(i, "etcd alarm list")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to list etcd alarms"))?;
            c.etcd[ci]
                .alarm_list(m)
                .map_err(|e| e.wrapped("failed to list etcd alarms"))
        })
    }

    // ----------------------------------------------------------------------------------
    // Talos mutations
    // ----------------------------------------------------------------------------------

    /// `Reboot`: no quorum check, no drain; answers at once, the node goes down afterwards.
    pub fn reboot(&mut self, label: &str, mode: RebootMode, now: SimTime) -> Result<(), ApiError> {
        let _ = mode; // kexec vs power cycle: same timeline in the model.
        self.mutate("Reboot", label, now, |c, i| {
            c.takeover_allowed(i)?;
            c.begin_reboot(i, Stage::Rebooting);
            Ok(())
        })
    }

    fn takeover_allowed(&self, i: usize) -> Result<(), ApiError> {
        match self.nodes[i].stage {
            Stage::Booting | Stage::Running | Stage::Maintenance => Ok(()),
            _ => Err(ApiError::new(Code::FailedPrecondition, "locked")),
        }
    }

    /// `Shutdown`: powers the node off after stopping services.
    pub fn shutdown(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.mutate("Shutdown", label, now, |c, i| {
            c.takeover_allowed(i)?;
            c.nodes[i].stage = Stage::ShuttingDown;
            c.nodes[i].epoch += 1;
            let d = c.timings.shutdown;
            c.schedule(i, d, TimerKind::ShutdownStopped);
            Ok(())
        })
    }

    /// `Upgrade`: on a control plane without `force`, refuses exactly as Talos'
    /// `ValidateForUpgrade` (2 members, an unstarted member, an unhealthy member). Then
    /// cordons, drains, installs the image and reboots; no etcd leave.
    pub fn upgrade(
        &mut self,
        label: &str,
        req: &UpgradeRequest,
        now: SimTime,
    ) -> Result<(), ApiError> {
        let req = req.clone();
        self.mutate("Upgrade", label, now, move |c, i| {
            c.takeover_allowed(i)?;
            if c.nodes[i].is_control_plane() && !req.force && c.nodes[i].service("etcd").is_some() {
                c.validate_for_upgrade(i)?;
            }
            c.drain(i);
            let n = &mut c.nodes[i];
            n.pending_image = Some(req.image.clone());
            n.stage = Stage::Upgrading;
            n.epoch += 1;
            let t = c.timings;
            c.schedule(
                i,
                t.shutdown + t.image_pull + t.install,
                TimerKind::UpgradeInstalled,
            );
            Ok(())
        })
    }

    fn validate_for_upgrade(&self, i: usize) -> Result<(), ApiError> {
        let mutex_err = |e: ApiError| {
            e.wrapped("error establishing etcd concurrency session")
                .wrapped("failed to acquire upgrade mutex")
        };
        let (ci, via) = self.cluster_client(i).map_err(mutex_err)?;
        let c = &self.etcd[ci];
        if c.leader().is_none() {
            return Err(mutex_err(ApiError::new(
                Code::DeadlineExceeded,
                msg::DEADLINE,
            )));
        }
        let members = c
            .member_list(via)
            .map_err(|e| e.wrapped("error validating etcd for upgrade"))?;
        let fail = |m: String| {
            Err(ApiError::new(
                Code::Unknown,
                format!("error validating etcd for upgrade: {m}"),
            ))
        };
        if members.len() == 2 {
            return fail(format!(
                "etcd member count({}) is insufficient to maintain quorum if upgrade commences",
                members.len()
            ));
        }
        for m in &members {
            if m.hostname.is_empty() {
                return fail(format!(
                    "etcd member {:016x} is not started, all members must be running to perform an upgrade",
                    m.id
                ));
            }
            if let Err(e) = c.quorum_read_ok(m.id) {
                return fail(format!(
                    "etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade: {}",
                    m.id,
                    if e.message == msg::SERVER_STOPPED {
                        msg::DEADLINE
                    } else {
                        e.message.as_str()
                    }
                ));
            }
        }
        Ok(())
    }

    /// Cordon + evict what can be evicted (as Talos does before upgrade and graceful reset).
    fn drain(&mut self, i: usize) {
        let host = self.nodes[i].hostname.clone();
        if !self.k8s_api_available() {
            return;
        }
        if self.unschedulable.insert(host.clone()) {
            self.nodes[i].cordoned_by_talos = true;
        }
        let victims: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|p| {
                p.node.as_deref() == Some(&host) && matches!(p.owner, PodOwner::ReplicaSet(_))
            })
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        for (ns, name) in victims {
            let _ = self.evict_inner(&ns, &name);
        }
    }

    /// `ApplyConfiguration`. Maintenance mode accepts REBOOT/AUTO/TRY and installs; otherwise
    /// AUTO picks NO_REBOOT when every changed section applies immediately.
    pub fn apply_configuration(
        &mut self,
        label: &str,
        data: &str,
        mode: ApplyMode,
        dry_run: bool,
        now: SimTime,
    ) -> Result<ApplyResult, ApiError> {
        self.mutate("ApplyConfiguration", label, now, |c, i| {
            let new = MachineConfig::parse(data)?;
            let t = c.timings;
            if c.nodes[i].stage == Stage::Maintenance {
                if !matches!(mode, ApplyMode::Reboot | ApplyMode::Auto | ApplyMode::Try) {
                    return Err(ApiError::new(
                        Code::Unimplemented,
                        format!("apply configuration --mode='{}' is not supported in maintenance mode", mode.cli_name()),
                    ));
                }
                if dry_run {
                    return Ok(ApplyResult { mode, mode_details: "Dry run: node would install and reboot".into(), warnings: Vec::new() });
                }
                let n = &mut c.nodes[i];
                if let Some(h) = &new.hostname {
                    n.hostname = h.clone();
                }
                n.config = Some(new);
                n.stage = Stage::Installing;
                n.epoch += 1;
                c.schedule(i, t.image_pull + t.install, TimerKind::InstallDone);
                return Ok(ApplyResult { mode: ApplyMode::Reboot, mode_details: "Applied configuration with a reboot".into(), warnings: Vec::new() });
            }
            let needs_reboot = c.nodes[i].config.as_ref().is_none_or(|old| old.needs_reboot_to_apply(&new));
            let effective = match mode {
                ApplyMode::Auto if needs_reboot => ApplyMode::Reboot,
                ApplyMode::Auto => ApplyMode::NoReboot,
                m => m,
            };
            if matches!(effective, ApplyMode::NoReboot | ApplyMode::Try) && needs_reboot {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    "apply configuration failed: the configuration change requires a reboot, use --mode=reboot or --mode=auto",
                ));
            }
            if dry_run {
                return Ok(ApplyResult { mode: effective, mode_details: "Dry run summary: config diff not rendered by the simulator".into(), warnings: Vec::new() });
            }
            let n = &mut c.nodes[i];
            let details = match effective {
                ApplyMode::Staged => {
                    n.staged_config = Some(new);
                    "Staged configuration to be applied after the next reboot"
                }
                ApplyMode::Reboot => {
                    n.config = Some(new);
                    c.begin_reboot(i, Stage::Rebooting);
                    "Applied configuration with a reboot"
                }
                ApplyMode::Try => {
                    n.try_rollback = n.config.replace(new);
                    n.load_configured_modules();
                    c.schedule(i, t.config_try_timeout, TimerKind::TryRollback);
                    "Applied configuration without a reboot (try mode)"
                }
                ApplyMode::NoReboot | ApplyMode::Auto => {
                    n.config = Some(new);
                    n.load_configured_modules();
                    "Applied configuration without a reboot"
                }
            };
            Ok(ApplyResult { mode: effective, mode_details: details.into(), warnings: Vec::new() })
        })
    }

    /// `Bootstrap`: refuses on workers, before etcd waits for it, and with `AlreadyExists`
    /// when `/var/lib/etcd` holds data. On a fresh node it always succeeds, even while another
    /// cluster lives (split brain). `recover_etcd` restores the uploaded snapshot.
    pub fn bootstrap(
        &mut self,
        label: &str,
        recover_etcd: bool,
        skip_hash_check: bool,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.mutate("Bootstrap", label, now, |c, i| {
            let id = c.next_id();
            let member = c.next_id();
            let n = &c.nodes[i];
            if !n.is_control_plane() {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::BOOTSTRAP_CONTROL_PLANE_ONLY,
                ));
            }
            if matches!(n.etcd_data, EtcdData::Member { .. }) {
                return Err(ApiError::new(Code::AlreadyExists, msg::DATA_DIR_NOT_EMPTY));
            }
            if n.service("etcd")
                .is_none_or(|s| s.state != ServiceState::Preparing)
            {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::BOOTSTRAP_NOT_AVAILABLE,
                ));
            }
            let now = c.now;
            let host = n.hostname.clone();
            let peer = peer_url(&n.label);
            let client = client_url(&n.label);
            let first = NewMember {
                id: member,
                name: &host,
                peer_url: &peer,
                client_url: &client,
            };
            let timings = EtcdTimings::from(&c.timings);
            let cluster = if recover_etcd {
                let restored = match c.nodes[i].etcd_snapshot_upload.take() {
                    Some(snap) => {
                        EtcdCluster::restore(&snap, skip_hash_check, id, first, now, timings)
                    }
                    None => Err(ApiError::new(
                        Code::Unknown,
                        "open /var/lib/etcd.snapshot: no such file or directory",
                    )),
                };
                match restored {
                    Ok(cl) => cl,
                    Err(e) => {
                        // The API call succeeds; the etcd service fails to recover.
                        let svc = c.nodes[i].service_mut("etcd", now);
                        svc.set(
                            ServiceState::Failed,
                            &format!("failed to recover etcd from snapshot: {}", e.message),
                            now,
                        );
                        return Ok(());
                    }
                }
            } else {
                EtcdCluster::bootstrap(id, first, KvStore::default(), now, timings)
            };
            c.etcd.push(cluster);
            let n = &mut c.nodes[i];
            n.etcd_data = EtcdData::Member {
                cluster: id,
                member,
            };
            n.etcd_started_at = Some(now);
            n.service_mut("etcd", now).set(
                ServiceState::Running,
                "Service started as goroutine",
                now,
            );
            let h = c.timings.etcd_health_interval;
            c.schedule(i, h, TimerKind::Wake);
            Ok(())
        })
    }

    /// `EtcdRecover`: uploads a snapshot for `bootstrap(recover_etcd = true)`.
    pub fn etcd_recover(
        &mut self,
        label: &str,
        snapshot: &[u8],
        now: SimTime,
    ) -> Result<(), ApiError> {
        let snapshot = snapshot.to_vec();
        self.mutate("EtcdRecover", label, now, move |c, i| {
            if !matches!(c.nodes[i].stage, Stage::Booting | Stage::Running) {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::RECOVER_NOT_READY,
                ));
            }
            c.control_plane_only(i, "etcd recover")?;
            c.nodes[i].etcd_snapshot_upload = Some(snapshot);
            Ok(())
        })
    }

    /// `Reset`: graceful = cordon/drain and leave etcd first (retrying `unhealthy cluster`
    /// for up to 5 min); then wipe the labels (all = whole system disk) and reboot or power off.
    /// No quorum check.
    pub fn reset(&mut self, label: &str, req: &ResetRequest, now: SimTime) -> Result<(), ApiError> {
        let req = req.clone();
        self.mutate("Reset", label, now, move |c, i| {
            c.takeover_allowed(i)?;
            for l in &req.system_labels_to_wipe {
                if !matches!(l.as_str(), "STATE" | "EPHEMERAL" | "META") {
                    return Err(ApiError::new(
                        Code::Unknown,
                        format!("failed to reset: volume {l:?} not found"),
                    ));
                }
            }
            let leave = req.graceful
                && c.nodes[i].is_control_plane()
                && matches!(c.nodes[i].etcd_data, EtcdData::Member { .. })
                && c.nodes[i].service("etcd").is_some_and(|s| {
                    matches!(s.state, ServiceState::Running | ServiceState::Failed)
                });
            if req.graceful {
                c.drain(i);
            }
            let n = &mut c.nodes[i];
            n.pending_reset = Some(req);
            n.stage = Stage::Resetting;
            n.epoch += 1;
            let t = c.timings;
            if leave {
                let deadline = c.now + t.shutdown + t.leave_retry_limit;
                let deadline_ms =
                    u64::try_from(deadline.as_duration().as_millis()).unwrap_or(u64::MAX);
                c.schedule(i, t.shutdown, TimerKind::ResetLeave { deadline_ms });
            } else {
                c.schedule(i, t.shutdown, TimerKind::ResetWipe);
            }
            Ok(())
        })
    }

    /// `EtcdRemoveMemberByID` (through the control-plane endpoints, require-leader).
    pub fn etcd_remove_member(
        &mut self,
        label: &str,
        member_id: MemberId,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.mutate("EtcdRemoveMemberByID", label, now, |c, i| {
            c.control_plane_only(i, "etcd remove member")?;
            let (ci, via) = c
                .cluster_client(i)
                .map_err(|e| e.wrapped("failed to remove member"))?;
            let now = c.now;
            c.etcd[ci].remove_member(via, member_id, now).map_err(|e| {
                if e.code == Code::NotFound {
                    e
                } else {
                    e.wrapped("failed to remove member")
                }
            })
        })
    }

    /// `EtcdLeaveCluster`: removes this node's member, then stops etcd and clears its data.
    pub fn etcd_leave_cluster(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.mutate("EtcdLeaveCluster", label, now, |c, i| {
            c.control_plane_only(i, "etcd leave")?;
            let wrap = |e: ApiError| e.wrapped("failed to leave cluster");
            let EtcdData::Member { member, .. } = c.nodes[i].etcd_data else {
                return Err(wrap(ApiError::new(
                    Code::Unknown,
                    "etcd member ID is not available",
                )));
            };
            let (ci, via) = c.cluster_client(i).map_err(wrap)?;
            let now = c.now;
            c.etcd[ci].remove_member(via, member, now).map_err(wrap)?;
            c.etcd[ci].stop_member(member, now);
            let n = &mut c.nodes[i];
            n.etcd_data = EtcdData::Empty;
            n.etcd_started_at = None;
            n.service_mut("etcd", now).set(
                ServiceState::Finished,
                "Service finished successfully",
                now,
            );
            Ok(())
        })
    }

    /// `EtcdForfeitLeadership`: moves leadership away if this node's member leads; answers
    /// the new leader (None if this member did not lead).
    pub fn etcd_forfeit_leadership(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Option<MemberId>, ApiError> {
        self.mutate("EtcdForfeitLeadership", label, now, |c, i| {
            c.control_plane_only(i, "etcd forfeit leadership")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to forfeit leadership"))?;
            let was_leader = c.etcd[ci].leader() == Some(m);
            let now = c.now;
            let leader = c.etcd[ci]
                .forfeit_leadership(m, now)
                .map_err(|e| e.wrapped("failed to forfeit leadership"))?;
            Ok(was_leader.then_some(leader))
        })
    }

    /// `EtcdSnapshot` from this node's member (works without quorum).
    pub fn etcd_snapshot(&mut self, label: &str, now: SimTime) -> Result<Vec<u8>, ApiError> {
        self.mutate("EtcdSnapshot", label, now, |c, i| {
            c.control_plane_only(i, "etcd snapshot")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed reading etcd snapshot"))?;
            c.etcd[ci]
                .snapshot(m)
                .map_err(|e| e.wrapped("failed reading etcd snapshot"))
        })
    }

    /// Writes a key through this node's member (test and scenario helper; needs quorum).
    pub fn etcd_put(
        &mut self,
        label: &str,
        key: &str,
        value: &str,
        now: SimTime,
    ) -> Result<i64, ApiError> {
        self.mutate("EtcdPut", label, now, |c, i| {
            let (ci, m) = c.local_member(i)?;
            c.etcd[ci].put(m, key, value)
        })
    }

    // ----------------------------------------------------------------------------------
    // Kubernetes
    // ----------------------------------------------------------------------------------

    fn k8s_enter(&mut self, now: SimTime) -> Result<(), KubeError> {
        self.advance_to(now);
        if self.k8s_api_available() {
            Ok(())
        } else {
            Err(KubeError::unavailable())
        }
    }

    fn kube_node(&self, i: usize) -> Option<KubeNode> {
        let n = &self.nodes[i];
        let ready = self.k8s_ready(i)?;
        Some(KubeNode {
            name: n.hostname.clone(),
            internal_ip: n.label.clone(),
            ready,
            unschedulable: self.unschedulable.contains(&n.hostname),
            labels: self
                .node_labels
                .get(&n.hostname)
                .cloned()
                .unwrap_or_default(),
            kubelet_version: "v1.34.1".into(),
        })
    }

    /// `GET /api/v1/nodes`.
    pub fn k8s_list_nodes(&mut self, now: SimTime) -> Result<Vec<KubeNode>, KubeError> {
        self.k8s_enter(now)?;
        Ok((0..self.nodes.len())
            .filter_map(|i| self.kube_node(i))
            .collect())
    }

    /// `GET /api/v1/nodes/{name}`.
    pub fn k8s_get_node(&mut self, name: &str, now: SimTime) -> Result<KubeNode, KubeError> {
        self.k8s_enter(now)?;
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].hostname == name)
            .find_map(|i| self.kube_node(i))
            .ok_or_else(|| KubeError::not_found("nodes", name))
    }

    /// `PATCH /api/v1/nodes/{name}` with `spec.unschedulable` (cordon / uncordon).
    pub fn k8s_set_unschedulable(
        &mut self,
        name: &str,
        unschedulable: bool,
        now: SimTime,
    ) -> Result<(), KubeError> {
        let res = self.k8s_get_node(name, now).map(|_| {
            if unschedulable {
                self.unschedulable.insert(name.to_string());
            } else {
                self.unschedulable.remove(name);
            }
        });
        self.record_k8s("PatchNode", name, &res);
        res
    }

    /// `DELETE /api/v1/nodes/{name}` (the kubelet re-registers on its next start).
    pub fn k8s_delete_node(&mut self, name: &str, now: SimTime) -> Result<(), KubeError> {
        let res = self.k8s_get_node(name, now).map(|_| {
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if n.hostname == name {
                    n.k8s_registered = false;
                    if let Some(k) = n.kubelet_started_at {
                        self.deleted_k8s_nodes.insert((i, k));
                    }
                }
            }
            self.pods.retain(|p| p.node.as_deref() != Some(name));
            self.unschedulable.remove(name);
        });
        self.record_k8s("DeleteNode", name, &res);
        res
    }

    fn record_k8s<T>(&mut self, method: &str, name: &str, res: &Result<T, KubeError>) {
        self.calls.push(CallRecord {
            method: method.into(),
            node: name.into(),
            at: self.now,
            result: res.as_ref().map(|_| ()).map_err(|_| Code::Unknown),
        });
    }

    fn pod_ready(&self, p: &PodState) -> bool {
        let Some(node) = &p.node else { return false };
        self.nodes
            .iter()
            .position(|n| &n.hostname == node)
            .is_some_and(|i| {
                self.kubelet_running(i) && self.k8s_ready(i) == Some(ConditionStatus::True)
            })
    }

    fn pod_view(&self, p: &PodState) -> Pod {
        Pod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            owner: p.owner.clone(),
            app: p.app.clone(),
            ready: self.pod_ready(p),
        }
    }

    /// `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>` (all pods when `node` is None).
    pub fn k8s_list_pods(
        &mut self,
        node: Option<&str>,
        now: SimTime,
    ) -> Result<Vec<Pod>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self
            .pods
            .iter()
            .filter(|p| node.is_none_or(|n| p.node.as_deref() == Some(n)))
            .map(|p| self.pod_view(p))
            .collect())
    }

    /// PodDisruptionBudgets.
    pub fn k8s_list_pdbs(&mut self, now: SimTime) -> Result<Vec<PodDisruptionBudget>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self.pdbs.clone())
    }

    /// `kube-node-lease` Leases.
    pub fn k8s_leases(&mut self, now: SimTime) -> Result<Vec<Lease>, KubeError> {
        self.k8s_enter(now)?;
        Ok((0..self.nodes.len())
            .filter(|i| self.nodes[*i].k8s_registered)
            .map(|i| {
                let n = &self.nodes[i];
                let renew = if self.kubelet_running(i) {
                    self.now
                } else {
                    n.kubelet_stopped_at.unwrap_or(SimTime::ZERO)
                };
                Lease {
                    name: n.hostname.clone(),
                    namespace: "kube-node-lease".into(),
                    holder: n.hostname.clone(),
                    renew_time: renew,
                }
            })
            .collect())
    }

    /// `POST .../pods/{name}/eviction`: honours PodDisruptionBudgets (429 when blocked).
    pub fn k8s_evict_pod(
        &mut self,
        namespace: &str,
        name: &str,
        now: SimTime,
    ) -> Result<(), KubeError> {
        let res = self
            .k8s_enter(now)
            .and_then(|()| self.evict_inner(namespace, name));
        self.record_k8s("EvictPod", name, &res);
        res
    }

    fn evict_inner(&mut self, namespace: &str, name: &str) -> Result<(), KubeError> {
        let Some(pos) = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
        else {
            return Err(KubeError::not_found("pods", name));
        };
        let pod = self.pods[pos].clone();
        match &pod.owner {
            PodOwner::Mirror => Ok(()),
            PodOwner::DaemonSet(ds) => {
                self.pods.remove(pos);
                let name = format!("{ds}-{}", self.pod_suffix());
                self.pods.push(PodState { name, ..pod });
                Ok(())
            }
            PodOwner::ReplicaSet(rs) => {
                if let Some(pdb) = self
                    .pdbs
                    .iter()
                    .find(|b| b.namespace == pod.namespace && b.app == pod.app)
                {
                    let healthy = self
                        .pods
                        .iter()
                        .filter(|p| p.app == pdb.app && self.pod_ready(p))
                        .count();
                    let after = healthy - usize::from(self.pod_ready(&pod));
                    if after < pdb.min_available {
                        return Err(KubeError::pdb_violation());
                    }
                }
                self.pods.remove(pos);
                let target = (0..self.nodes.len())
                    .filter(|i| {
                        let h = &self.nodes[*i].hostname;
                        Some(h) != pod.node.as_ref()
                            && !self.unschedulable.contains(h)
                            && self.k8s_ready(*i) == Some(ConditionStatus::True)
                    })
                    .map(|i| self.nodes[i].hostname.clone())
                    .next();
                let name = format!("{rs}-{}", self.pod_suffix());
                self.pods.push(PodState {
                    name,
                    node: target,
                    ..pod
                });
                Ok(())
            }
        }
    }

    /// Adds a Deployment's pods (ReplicaSet `rs`) on the given nodes.
    pub fn add_deployment_pods(&mut self, namespace: &str, app: &str, rs: &str, nodes: &[&str]) {
        for node in nodes {
            let name = format!("{rs}-{}", self.pod_suffix());
            self.pods.push(PodState {
                namespace: namespace.into(),
                name,
                node: Some((*node).to_string()),
                owner: PodOwner::ReplicaSet(rs.into()),
                app: app.into(),
            });
        }
    }

    /// Adds a PodDisruptionBudget.
    pub fn add_pdb(&mut self, pdb: PodDisruptionBudget) {
        self.pdbs.push(pdb);
    }

    // ----------------------------------------------------------------------------------
    // Fault injection
    // ----------------------------------------------------------------------------------

    /// The next `times` calls of `method` (on `node`, or any node) fail with Unavailable.
    pub fn fail_next(&mut self, method: &str, node: Option<&str>, times: u32) {
        self.faults.push(Fault {
            method: method.into(),
            node: node.map(str::to_string),
            remaining: times,
            lose_reply: false,
        });
    }

    /// The next `times` calls of `method` (on `node`, or any node) take effect, are logged as
    /// successful, and then answer Unavailable, as a connection reset after the request was
    /// applied: the client cannot tell whether its call went through.
    pub fn lose_next_reply(&mut self, method: &str, node: Option<&str>, times: u32) {
        self.faults.push(Fault {
            method: method.into(),
            node: node.map(str::to_string),
            remaining: times,
            lose_reply: true,
        });
    }

    /// Keeps a node from ever coming back: it stays off after its next power-down.
    pub fn keep_down(&mut self, label: &str, keep: bool) -> Result<(), ApiError> {
        let i = self.idx(label)?;
        self.nodes[i].keep_down = keep;
        Ok(())
    }

    /// Cuts power at once (no graceful stop).
    pub fn power_off(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.advance_to(now);
        let i = self.idx(label)?;
        if self.nodes[i].power == Power::On {
            self.power_down(i);
        }
        self.record("PowerOff", label, &Ok::<(), ApiError>(()));
        self.settle();
        Ok(())
    }

    /// Powers a node on (boots after the reboot delay).
    pub fn power_on(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.advance_to(now);
        let i = self.idx(label)?;
        if self.nodes[i].power == Power::Off {
            self.nodes[i].keep_down = false;
            self.begin_power_on(i);
        }
        self.record("PowerOn", label, &Ok::<(), ApiError>(()));
        Ok(())
    }

    /// Plugs the USB stick in (SCSI names shift on the next enumeration — at once here).
    pub fn attach_usb(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.set_usb(label, true, now)
    }

    /// Unplugs the USB stick.
    pub fn detach_usb(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.set_usb(label, false, now)
    }

    fn set_usb(&mut self, label: &str, attached: bool, now: SimTime) -> Result<(), ApiError> {
        self.advance_to(now);
        let i = self.idx(label)?;
        self.nodes[i].usb_attached = attached;
        let method = if attached { "AttachUsb" } else { "DetachUsb" };
        self.record(method, label, &Ok::<(), ApiError>(()));
        Ok(())
    }

    /// Raises an etcd alarm on the node's member (scenario hook).
    pub fn raise_etcd_alarm(&mut self, label: &str, alarm: Alarm) -> Result<(), ApiError> {
        let i = self.idx(label)?;
        let (ci, m) = self.local_member(i)?;
        self.etcd[ci].raise_alarm(m, alarm);
        Ok(())
    }

    /// Empties the call log (scenario setup calls are not part of a test's history).
    pub fn clear_call_log(&mut self) {
        self.calls.clear();
    }

    /// Machine type helper for scenario code.
    pub fn machine_type(&self, label: &str) -> Option<MachineType> {
        self.node(label)
            .and_then(|n| n.config.as_ref())
            .map(|c| c.machine_type)
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
