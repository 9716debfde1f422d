//! What the guards and waits look at: one consistent snapshot of the cluster.
//!
//! Guards must be evaluated from *fresh* observations, per node, failing closed when a node
//! does not answer. The cluster client fills a [`ClusterView`] (one `EtcdMemberList`,
//! `EtcdStatus`, `ServiceList`, `MachineStatus`… per control-plane node, plus the Kubernetes
//! nodes), and the checks in [`crate::condition::etcd`], [`crate::condition::talos`] and
//! [`crate::condition::kube`] are plain functions over it: easy to test, identical in a live run
//! and in a rehearsal.

use serde::Serialize;

/// An etcd member as one node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Member name (the node's hostname; empty for an added but unstarted member).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Learner (non-voting).
    pub is_learner: bool,
}

/// `EtcdStatus` of the member on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdStatus {
    /// This member's id.
    pub member_id: u64,
    /// The leader's id as this member sees it (0: no leader).
    pub leader: u64,
    /// Raft index.
    pub raft_index: u64,
    /// Errors etcd reports (e.g. `etcdserver: no leader`).
    pub errors: Vec<String>,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// A service as `ServiceList` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Service id (`etcd`, `kubelet`, `ext-nvidia-persistenced`, …).
    pub id: String,
    /// State (`Running`, `Waiting`, `Preparing`, `Failed`, …).
    pub state: String,
    /// Health check result, when the service has one.
    pub healthy: bool,
}

/// A disk as `Disks.block.talos.dev` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// `/dev/sda`.
    pub dev_path: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// `usb`, `sata`, `nvme`, …
    pub transport: String,
    /// Read-only.
    pub readonly: bool,
    /// Optical drive.
    pub cdrom: bool,
    /// Size in bytes.
    pub size: u64,
}

/// Everything observed about one node. `None` means "not asked"; an `Err` string means the
/// node was asked and failed to answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeView {
    /// The node's label (address or hostname as the runbook names it).
    pub label: String,
    /// Its hostname (etcd member name, Kubernetes node name).
    pub hostname: String,
    /// Whether its Talos API answered at all.
    pub reachable: bool,
    /// Whether it answers only the maintenance (insecure) API.
    pub maintenance: bool,
    /// MachineStatus stage (`running`, `booting`, …).
    pub stage: Option<String>,
    /// MachineStatus ready.
    pub ready: Option<bool>,
    /// Unmet readiness conditions, as `name: reason`.
    pub unmet: Vec<String>,
    /// ServiceList.
    pub services: Vec<Service>,
    /// The current boot id.
    pub boot_id: Option<String>,
    /// The etcd member list as this node sees it.
    pub members: Option<Result<Vec<Member>, String>>,
    /// This node's etcd member status.
    pub etcd: Option<Result<EtcdStatus, String>>,
    /// Active etcd alarms.
    pub alarms: Vec<String>,
    /// `controlplane`, `worker`, `init`.
    pub machine_type: Option<String>,
    /// Kubernetes Ready condition of its Node object.
    pub kube_ready: Option<bool>,
    /// Pods on it that a drain would evict.
    pub evictable_pods: Option<usize>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// PCI vendor ids present (`0x10de` = NVIDIA).
    pub pci_vendors: Vec<String>,
    /// Kernel modules the machine config asks for.
    pub kernel_modules: Vec<String>,
    /// The installer image it runs.
    pub image: Option<String>,
}

impl NodeView {
    /// A service's state, if listed.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Services stuck in a state that keeps the node from `running`.
    pub fn stuck_services(&self) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| matches!(s.state.as_str(), "Waiting" | "Preparing" | "Failed"))
            .collect()
    }
}

/// One snapshot of every node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterView {
    /// The nodes, in the order the runbook or talosconfig names them.
    pub nodes: Vec<NodeView>,
}

impl ClusterView {
    /// A node by label or hostname.
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes
            .iter()
            .find(|n| n.label == name || (!n.hostname.is_empty() && n.hostname == name))
    }
}

/// What a guard or wait concluded, with the figures it saw (journaled and shown in `status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Whether the check holds.
    pub holds: bool,
    /// One sentence: why it holds or not.
    pub reason: String,
    /// The numbers behind it (V, L, H, Q, …).
    pub figures: serde_json::Map<String, serde_json::Value>,
}

impl Verdict {
    /// A holding verdict.
    pub fn pass(reason: impl Into<String>) -> Verdict {
        Verdict {
            holds: true,
            reason: reason.into(),
            figures: serde_json::Map::new(),
        }
    }

    /// A refusing verdict.
    pub fn fail(reason: impl Into<String>) -> Verdict {
        Verdict {
            holds: false,
            reason: reason.into(),
            figures: serde_json::Map::new(),
        }
    }

    /// Holds or not, by a boolean.
    pub fn from_bool(holds: bool, reason: impl Into<String>) -> Verdict {
        Verdict {
            holds,
            reason: reason.into(),
            figures: serde_json::Map::new(),
        }
    }

    /// Adds a figure.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Verdict {
        self.figures.insert(key.to_string(), value.into());
        self
    }
}
