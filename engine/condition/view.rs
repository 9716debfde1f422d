//! What the guards and waits look at: one consistent snapshot of the cluster, each fact with
//! its evidence.
//!
//! Guards must be evaluated from *fresh* observations, per node, failing closed when a node
//! does not answer. The cluster client fills a [`ClusterView`] (one `EtcdMemberList`,
//! `EtcdStatus`, `ServiceList`, `MachineStatus`… per control-plane node, plus the Kubernetes
//! nodes), and the checks in [`crate::condition::etcd`], [`crate::condition::talos`] and
//! [`crate::condition::kube`] are plain functions over it: easy to test, identical in a live run
//! and in a rehearsal. Every fact is an [`Observed`]: answered with a value, not asked, or
//! missing with the [`Gap`] that says which call failed and how (unreachable, timed out,
//! permission denied, failed). Nothing is defaulted: an empty list that was never read is not
//! "nothing wrong", and a guard that needs a missing fact refuses, naming it.

use serde::Serialize;

/// Why a fact could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// The node (or the endpoint routing to it) did not answer: connection refused,
    /// `Unavailable`.
    Unreachable,
    /// The call ran out of its deadline.
    TimedOut,
    /// The caller's role may not make the call (`PermissionDenied`).
    PermissionDenied,
    /// Anything else: an error status, an undecodable or empty answer.
    Failed,
}

impl GapKind {
    /// Whether this gap is evidence that the node is not answering (as opposed to a role
    /// refusal or a broken answer, which prove nothing about the node).
    pub fn is_silence(self) -> bool {
        matches!(self, GapKind::Unreachable | GapKind::TimedOut)
    }
}

/// A fact that could not be read: which call, how it failed, the error as the API gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The API call (`EtcdAlarmList`, `MachineStatus`, …).
    pub call: String,
    /// How it failed.
    pub kind: GapKind,
    /// The error message.
    pub message: String,
}

impl Gap {
    /// A gap.
    pub fn new(call: impl Into<String>, kind: GapKind, message: impl Into<String>) -> Gap {
        Gap {
            call: call.into(),
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            GapKind::PermissionDenied => write!(f, "refused {} (PermissionDenied)", self.call),
            GapKind::Unreachable => write!(f, "did not answer {} ({})", self.call, self.message),
            GapKind::TimedOut => write!(f, "did not answer {} (timed out)", self.call),
            GapKind::Failed => write!(f, "failed {} ({})", self.call, self.message),
        }
    }
}

/// One observed fact.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed<T> {
    /// The observer did not ask (no Kubernetes API, node unreachable before this call).
    #[default]
    NotAsked,
    /// The API answered with this.
    Answered(T),
    /// Asked, and it could not be read.
    Missing(Gap),
}

impl<T> Observed<T> {
    /// The value, if answered.
    pub fn get(&self) -> Option<&T> {
        match self {
            Observed::Answered(v) => Some(v),
            _ => None,
        }
    }

    /// The gap, if asked and missing.
    pub fn gap(&self) -> Option<&Gap> {
        match self {
            Observed::Missing(g) => Some(g),
            _ => None,
        }
    }

    /// From a call's result.
    pub fn from_result(r: Result<T, Gap>) -> Observed<T> {
        match r {
            Ok(v) => Observed::Answered(v),
            Err(g) => Observed::Missing(g),
        }
    }

    /// The value, or a refusal naming `node` and what could not be read about it (`what`
    /// names the fact for a fact that was not asked).
    pub fn need(&self, node: &str, what: &str) -> Result<&T, Verdict> {
        match self {
            Observed::Answered(v) => Ok(v),
            Observed::Missing(g) => Err(cannot_decide(node, g)),
            Observed::NotAsked => Err(Verdict::fail(format!(
                "cannot decide: {what} of {node} was not observed"
            ))
            .with("unobserved", format!("{node}: {what}"))),
        }
    }

    /// Maps the answered value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Observed<U> {
        match self {
            Observed::Answered(v) => Observed::Answered(f(v)),
            Observed::NotAsked => Observed::NotAsked,
            Observed::Missing(g) => Observed::Missing(g),
        }
    }
}

/// The refusal for a fact that could not be read: "cannot decide: 192.168.2.20 refused
/// EtcdAlarmList (PermissionDenied)".
pub fn cannot_decide(node: &str, gap: &Gap) -> Verdict {
    Verdict::fail(format!("cannot decide: {node} {gap}"))
        .with("unreadable", format!("{node}: {}", gap.call))
        .with("gap", gap.kind.to_string_lossy())
}

impl GapKind {
    fn to_string_lossy(self) -> &'static str {
        match self {
            GapKind::Unreachable => "unreachable",
            GapKind::TimedOut => "timed out",
            GapKind::PermissionDenied => "permission denied",
            GapKind::Failed => "failed",
        }
    }
}

/// How a node answered its Talos API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Contact {
    /// It answered the authenticated (mTLS) API: it is configured.
    Secure,
    /// It answered only the insecure maintenance API: unconfigured, holds no etcd member.
    Maintenance,
}

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

/// Everything observed about one node, each fact with its evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeView {
    /// The node's label (address or hostname as the runbook names it).
    pub label: String,
    /// Whether and how its Talos API answered (`MachineStatus`, else the maintenance API).
    pub contact: Observed<Contact>,
    /// Its hostname (etcd member name, Kubernetes node name); an empty answer is a gap.
    pub hostname: Observed<String>,
    /// MachineStatus stage (`running`, `booting`, …).
    pub stage: Observed<String>,
    /// MachineStatus ready.
    pub ready: Observed<bool>,
    /// Unmet readiness conditions, as `name: reason` (read with the stage).
    pub unmet: Vec<String>,
    /// ServiceList.
    pub services: Observed<Vec<Service>>,
    /// The current boot id.
    pub boot_id: Observed<String>,
    /// The etcd member list as this node sees it.
    pub members: Observed<Vec<Member>>,
    /// This node's etcd member status.
    pub etcd: Observed<EtcdStatus>,
    /// Active etcd alarms (an answered empty list is "no alarm").
    pub alarms: Observed<Vec<String>>,
    /// `controlplane`, `worker`, `init`.
    pub machine_type: Observed<String>,
    /// Kubernetes Ready condition of its Node object (`None`: no such Node).
    pub kube_ready: Observed<Option<bool>>,
    /// Pods on it that a drain would evict.
    pub evictable_pods: Observed<usize>,
    /// Disks.
    pub disks: Observed<Vec<Disk>>,
    /// PCI vendor ids present (`0x10de` = NVIDIA).
    pub pci_vendors: Observed<Vec<String>>,
    /// Kernel modules the machine config asks for.
    pub kernel_modules: Observed<Vec<String>>,
    /// The installer image it runs.
    pub image: Observed<String>,
    /// Time since the node booted, on its own clock (`/proc/uptime`): the clock a wait's
    /// fast-fail is measured on, so a simulator at high speed fails within its own minutes.
    pub uptime: Observed<std::time::Duration>,
}

impl NodeView {
    /// A node that did not answer at all, with why.
    pub fn silent(label: &str, gap: Gap) -> NodeView {
        NodeView {
            label: label.into(),
            contact: Observed::Missing(gap),
            ..NodeView::default()
        }
    }

    /// Whether its Talos API answered (authenticated or maintenance).
    pub fn reachable(&self) -> bool {
        matches!(self.contact, Observed::Answered(_))
    }

    /// Whether it answered only the maintenance API.
    pub fn maintenance(&self) -> bool {
        matches!(self.contact, Observed::Answered(Contact::Maintenance))
    }

    /// Whether there is positive evidence it does not answer (unreachable or timed out; a
    /// role refusal is no such evidence).
    pub fn silent_evidence(&self) -> Option<&Gap> {
        self.contact.gap().filter(|g| g.kind.is_silence())
    }

    /// Its hostname, when read.
    pub fn host(&self) -> Option<&str> {
        self.hostname.get().map(String::as_str)
    }

    /// Whether an etcd member name is this node (by hostname, else by label).
    pub fn is_named(&self, name: &str) -> bool {
        !name.is_empty() && (self.host() == Some(name) || self.label == name)
    }

    /// A service's state, if the service list was read and lists it.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.get()?.iter().find(|s| s.id == id)
    }

    /// Services stuck in a state that keeps the node from `running` (none if unread).
    pub fn stuck_services(&self) -> Vec<&Service> {
        self.services
            .get()
            .map(|l| {
                l.iter()
                    .filter(|s| matches!(s.state.as_str(), "Waiting" | "Preparing" | "Failed"))
                    .collect()
            })
            .unwrap_or_default()
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
    /// A label always wins over a hostname, and a hostname only counts when exactly one node
    /// reports it: a node that claims another's name (or two that share one) cannot stand in
    /// for it.
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        if let Some(n) = self.nodes.iter().find(|n| n.label == name) {
            return Some(n);
        }
        let mut by_host = self
            .nodes
            .iter()
            .filter(|n| n.host().is_some_and(|h| !h.is_empty() && h == name));
        match (by_host.next(), by_host.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_beats_a_hostname_and_a_shared_hostname_names_nobody() {
        let node = |label: &str, host: &str| NodeView {
            label: label.into(),
            hostname: Observed::Answered(host.into()),
            ..NodeView::default()
        };
        let v = ClusterView {
            nodes: vec![
                node("10.0.0.9", "10.0.0.1"),
                node("10.0.0.1", "nuc"),
                node("10.0.0.2", "mac"),
                node("10.0.0.3", "mac"),
            ],
        };
        assert_eq!(v.node("10.0.0.1").unwrap().label, "10.0.0.1");
        assert_eq!(v.node("nuc").unwrap().label, "10.0.0.1");
        assert!(v.node("mac").is_none());
        assert!(v.node("").is_none());
    }

    #[test]
    fn gaps_read_as_an_operator_needs_them() {
        let g = Gap::new("EtcdAlarmList", GapKind::PermissionDenied, "not authorized");
        assert_eq!(
            cannot_decide("192.168.2.20", &g).reason,
            "cannot decide: 192.168.2.20 refused EtcdAlarmList (PermissionDenied)"
        );
        let t = Gap::new("EtcdStatus", GapKind::TimedOut, "timed out");
        assert_eq!(t.to_string(), "did not answer EtcdStatus (timed out)");
        assert!(t.kind.is_silence() && !g.kind.is_silence());
        let o: Observed<u8> = Observed::NotAsked;
        assert!(
            o.need("a", "the thing")
                .unwrap_err()
                .reason
                .contains("was not observed")
        );
    }
}
