//! What each guard and wait condition reads, so the observer asks only for that.
//!
//! A full observation asks every node for about a dozen facts (services, etcd members and
//! status, alarms, machine type, disks, PCI devices, kernel modules) and the Kubernetes API for
//! Nodes and every node's pods. Most checks look at two or three of them: a `kube.ready` wait
//! needs no disk or PCI device. [`for_check`] is the table from a catalog name to the facts it
//! needs; the observer (`cluster::observe`) reads exactly those and leaves every other fact
//! [`Observed::NotAsked`], which a check that looks
//! at it must treat as a refusal (`Observed::need`). A name missing from the table reads
//! everything: other checks are added in parallel, and reading too much is only slower.
//! The MachineStatus (contact, stage, readiness) and the hostname are always read: they say
//! whether a node answers at all and which node a name means.
//!
//! A test evaluates every catalog check on full views and on their declared-reads views, with
//! each fact of each node in turn made unreadable: a declaration that leaves out a fact the
//! check uses changes a verdict there and fails the test.

use crate::condition::view::{ClusterView, NodeView, Observed};

/// One kind of fact the observer can read (besides MachineStatus and hostname, always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u16)]
pub enum Fact {
    /// `/proc/sys/kernel/random/boot_id`.
    BootId = 1 << 0,
    /// `ServiceList`.
    Services = 1 << 1,
    /// `EtcdMemberList`.
    Members = 1 << 2,
    /// `EtcdStatus`.
    EtcdStatus = 1 << 3,
    /// `EtcdAlarmList`.
    Alarms = 1 << 4,
    /// `MachineTypes.config.talos.dev`.
    MachineType = 1 << 5,
    /// Kubernetes Nodes (Ready).
    KubeNodes = 1 << 6,
    /// Kubernetes Pods per node (evictable count; the observer lists Nodes to find them).
    Pods = 1 << 7,
    /// `Disks.block.talos.dev`.
    Disks = 1 << 8,
    /// `PCIDevices.hardware.talos.dev`.
    Pci = 1 << 9,
    /// `KernelModuleSpecs.runtime.talos.dev`.
    KernelModules = 1 << 10,
    /// `/proc/uptime` (the node's own clock, for a wait's fast-fail window).
    Uptime = 1 << 11,
}

impl Fact {
    /// Every fact.
    pub const ALL: [Fact; 12] = [
        Fact::BootId,
        Fact::Services,
        Fact::Members,
        Fact::EtcdStatus,
        Fact::Alarms,
        Fact::MachineType,
        Fact::KubeNodes,
        Fact::Pods,
        Fact::Disks,
        Fact::Pci,
        Fact::KernelModules,
        Fact::Uptime,
    ];
}

/// A set of facts to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads(u16);

impl Reads {
    /// Everything (the conservative default).
    pub const ALL: Reads = Reads(0x0fff);
    /// Nothing beyond MachineStatus and hostname.
    pub const NONE: Reads = Reads(0);

    /// These facts.
    pub const fn of(facts: &[Fact]) -> Reads {
        let mut bits = 0u16;
        let mut i = 0;
        while i < facts.len() {
            bits |= facts[i] as u16;
            i += 1;
        }
        Reads(bits)
    }

    /// Whether `fact` is read.
    pub const fn has(self, fact: Fact) -> bool {
        self.0 & fact as u16 != 0
    }

    /// Both sets.
    pub const fn union(self, other: Reads) -> Reads {
        Reads(self.0 | other.0)
    }

    /// The facts in this set.
    pub fn facts(self) -> Vec<Fact> {
        Fact::ALL.into_iter().filter(|f| self.has(*f)).collect()
    }
}

use Fact::{
    Alarms, BootId, Disks, EtcdStatus, KernelModules, KubeNodes, MachineType, Members, Pci, Pods,
    Services, Uptime,
};

/// What every etcd check reads: member lists and statuses, the etcd service (a member whose
/// service is not running is not healthy), and the machine type (workers hold no member).
const ETCD: Reads = Reads::of(&[Members, EtcdStatus, Services, MachineType]);

/// The declared reads of each guard and condition, by catalog name.
const TABLE: &[(&str, Reads)] = &[
    // Guards.
    ("etcd.quorum", ETCD),
    ("etcd.safe-down", ETCD),
    ("etcd.safe-remove", ETCD),
    ("etcd.consistent", ETCD),
    ("etcd.no-alarms", ETCD.union(Reads::of(&[Alarms]))),
    ("etcd.no-learners", ETCD),
    ("etcd.quorum-lost", ETCD),
    ("etcd.bootstrap-safe", ETCD),
    ("talos.all-running", Reads::of(&[Services, KubeNodes])),
    ("talos.node-running", Reads::of(&[Services])),
    ("talos.not-member", ETCD),
    ("talos.node-down", ETCD),
    ("talos.no-init", Reads::of(&[MachineType])),
    ("talos.disk-unambiguous", Reads::of(&[Disks])),
    ("talos.image-matches-hardware", Reads::of(&[Pci])),
    ("talos.gpu-modules", Reads::of(&[Pci, KernelModules])),
    ("backup.fresh", Reads::NONE),
    // Wait conditions.
    ("talos.rebooted", Reads::of(&[BootId])),
    // The stuck-booting diagnosis reads the PCI devices and the configured modules, and the
    // fast-fail window is measured on the node's uptime (condition/talos.rs `running`).
    (
        "talos.running",
        Reads::of(&[Services, Pci, KernelModules, Uptime]),
    ),
    ("talos.stage", Reads::NONE),
    ("talos.maintenance", Reads::NONE),
    ("talos.service", Reads::of(&[Services])),
    ("etcd.member", ETCD),
    ("etcd.healthy", ETCD),
    ("etcd.full", ETCD),
    ("etcd.leader-not", ETCD),
    ("etcd.member-absent", ETCD),
    ("kube.ready", Reads::of(&[KubeNodes])),
    ("kube.drained", Reads::of(&[Pods])),
    ("cluster.healthy", ETCD.union(Reads::of(&[KubeNodes]))),
    // The batch guard takes a full view itself (effects/batch.rs), with the budgets and pods.
    ("kube.batch-safe", Reads::ALL),
    // Kubernetes object waits read their object, never the cluster view (effects.rs `poll`).
    ("kube.rollout", Reads::NONE),
    ("kube.present", Reads::NONE),
    ("kube.pod-running", Reads::NONE),
    ("kube.allocatable", Reads::NONE),
    ("talos.install-disk-ok", Reads::of(&[Disks])),
    ("etcd.member-of-node", ETCD),
];

/// What the guard or condition `name` reads; everything for a name not in the table.
pub fn for_check(name: &str) -> Reads {
    TABLE
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Reads::ALL, |(_, r)| *r)
}

/// Whether `name` has a declaration (else it reads everything).
pub fn declared(name: &str) -> bool {
    TABLE.iter().any(|(n, _)| *n == name)
}

fn keep<T>(o: &mut Observed<T>, read: bool) {
    if !read {
        *o = Observed::NotAsked;
    }
}

/// `view` as an observer reading only `reads` would have filled it: every other fact
/// `NotAsked`. (The observer never reads them; this is for tests and for reasoning.)
pub fn restrict(view: &ClusterView, reads: Reads) -> ClusterView {
    ClusterView {
        nodes: view.nodes.iter().map(|n| restrict_node(n, reads)).collect(),
    }
}

fn restrict_node(n: &NodeView, r: Reads) -> NodeView {
    let mut n = n.clone();
    keep(&mut n.boot_id, r.has(BootId));
    keep(&mut n.services, r.has(Services));
    keep(&mut n.members, r.has(Members));
    keep(&mut n.etcd, r.has(EtcdStatus));
    keep(&mut n.alarms, r.has(Alarms));
    keep(&mut n.machine_type, r.has(MachineType));
    keep(&mut n.kube_ready, r.has(KubeNodes));
    keep(&mut n.evictable_pods, r.has(Pods));
    keep(&mut n.disks, r.has(Disks));
    keep(&mut n.pci_vendors, r.has(Pci));
    keep(&mut n.kernel_modules, r.has(KernelModules));
    keep(&mut n.uptime, r.has(Uptime));
    // Never read by the observer today; kept only when everything is read.
    keep(&mut n.image, r == Reads::ALL);
    n
}

#[cfg(test)]
mod tests;
