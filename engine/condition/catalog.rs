//! The tables of guards and wait conditions.
//!
//! Definitions follow the shared guards and waits of `talos-procedures.md` §2 (G-* and W-*);
//! `docs/runbook-format.md` lists them for authors.

use std::time::Duration;

use super::{ConditionSpec, GuardSpec};
use crate::action::ArgType::{
    Duration as Dur, Enum, Int, Node, Nodes, Path, String as Str, Strings, Yaml,
};
use crate::action::Hazard::{MemberRemoval, QuorumOutage, SplitBrain, WorkloadEviction};
use crate::action::{ArgSpec as A, Lit};

const NODE: A = A::req("node", Node, "the node concerned");
const DOWN: A = A::opt(
    "down",
    Nodes,
    "nodes the operator confirmed powered off: their silence is excused (journaled with the verdict)",
);

const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Every guard a runbook can use.
pub static GUARDS: &[GuardSpec] = &[
    GuardSpec {
        name: "etcd.quorum",
        summary: "healthy voters H >= Q(V): etcd has quorum now (only members proven healthy count)",
        args: &[],
        protects: &[],
    },
    GuardSpec {
        name: "etcd.safe-down",
        summary: "no learner, V >= 3 (refused in the two-voter window), and quorum survives this node going down (G-safe-down)",
        args: &[NODE],
        protects: &[QuorumOutage, WorkloadEviction],
    },
    GuardSpec {
        name: "etcd.safe-remove",
        summary: "V != 2 (the two-voter window is held shut), quorum holds now and still holds with this node's member removed (G-safe-remove)",
        args: &[NODE],
        protects: &[MemberRemoval, QuorumOutage, WorkloadEviction],
    },
    GuardSpec {
        name: "etcd.consistent",
        summary: "member lists identical on every answering control-plane node, none of which may fail to list (G-consistent)",
        args: &[],
        protects: &[],
    },
    GuardSpec {
        name: "etcd.no-alarms",
        summary: "EtcdAlarmList read from every member node, and empty (no NOSPACE or CORRUPT)",
        args: &[],
        protects: &[],
    },
    GuardSpec {
        name: "etcd.quorum-lost",
        summary: "quorum is really lost: no node sees a leader, a member's EtcdStatus testifies no leader, every other node answered or is silent (never role-refused): recovery may wipe members",
        args: &[],
        protects: &[MemberRemoval],
    },
    GuardSpec {
        name: "etcd.bootstrap-safe",
        summary: "every node answers (or is named in `down`), none runs etcd or lists members, nothing was bootstrapped by this run, and the target's etcd waits in Preparing",
        args: &[NODE, DOWN],
        protects: &[SplitBrain],
    },
    GuardSpec {
        name: "talos.all-running",
        summary: "every node: stage running and ready, no service Waiting/Preparing/Failed, Kubernetes Ready (G-all-running)",
        args: &[],
        protects: &[WorkloadEviction],
    },
    GuardSpec {
        name: "talos.not-member",
        summary: "the node is in maintenance, or member lists from a quorum of healthy voters do not list it: wiping it cannot hurt quorum",
        args: &[NODE],
        protects: &[MemberRemoval, QuorumOutage],
    },
    GuardSpec {
        name: "talos.node-running",
        summary: "the node is stage running and ready with no service Waiting/Preparing/Failed",
        args: &[NODE],
        protects: &[],
    },
    GuardSpec {
        name: "etcd.no-learners",
        summary: "no etcd learner is pending (L == 0)",
        args: &[],
        protects: &[],
    },
    GuardSpec {
        name: "talos.node-down",
        summary: "two observations `confirm` apart: the node does not answer (unreachable or timed out, not role-refused) while another node answers with a healthy etcd member seeing a leader",
        args: &[
            NODE,
            A::def(
                "confirm",
                Dur,
                Lit::Str("5s"),
                "time between the two observations",
            ),
        ],
        protects: &[],
    },
    GuardSpec {
        name: "talos.no-init",
        summary: "every configured node's machine type was read and none is the deprecated init (silent nodes only if named in `down`)",
        args: &[DOWN],
        protects: &[],
    },
    GuardSpec {
        name: "talos.disk-unambiguous",
        summary: "the install disk resolves to exactly one non-USB, writable disk (lint L4)",
        args: &[
            NODE,
            A::opt("disk", Path, "configured install disk path"),
            A::opt("model", Str, "expected model"),
            A::opt("serial", Str, "expected serial"),
        ],
        protects: &[],
    },
    GuardSpec {
        name: "talos.image-matches-hardware",
        summary: "NVIDIA installer image only on nodes with an NVIDIA GPU (PCI vendor 0x10de), vanilla elsewhere (lint L1)",
        args: &[NODE, A::req("image", Str, "the installer image to check")],
        protects: &[],
    },
    GuardSpec {
        name: "talos.gpu-modules",
        summary: "a node with the NVIDIA image configures nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset (lint L2)",
        args: &[NODE],
        protects: &[],
    },
    GuardSpec {
        name: "backup.fresh",
        summary: "the newest snapshot in dir whose sidecar verifies (sha256, size) was taken less than max_age ago; with drilled, only snapshots whose sidecar records a passed restore drill count",
        args: &[
            A::req("dir", Path, "snapshot directory"),
            A::def("max_age", Dur, Lit::Str("24h"), "how old the newest may be"),
            A::def(
                "drilled",
                crate::action::ArgType::Bool,
                Lit::Bool(false),
                "require a passed restore drill (`backup.drill`) in the sidecar",
            ),
        ],
        protects: &[],
    },
    GuardSpec {
        name: "kube.batch-safe",
        summary: "a batch may go down together: every node in it read as a worker (no control plane), PodDisruptionBudgets read and the batch's pods within each one's allowed disruptions, and at most max_unavailable nodes not Ready across the cluster with the batch counted down (inherits both from `foreach … parallel: K`)",
        args: &[
            A::opt(
                "nodes",
                Nodes,
                "the batch (default: the elements of the `parallel` batch)",
            ),
            A::opt(
                "max_unavailable",
                Int,
                "K (default: the `parallel` batch size)",
            ),
        ],
        protects: &[QuorumOutage, WorkloadEviction],
    },
    GuardSpec {
        name: "talos.install-disk-ok",
        summary: "the install disk named by the config being applied (machine.install.disk or diskSelector model/serial) resolves to exactly one non-USB, writable disk of the node (lint L4 against the live disk list)",
        args: &[
            NODE,
            A::req(
                "config",
                Path,
                "the machine config about to be applied (SOPS files are decrypted in memory)",
            ),
        ],
        protects: &[],
    },
    GuardSpec {
        name: "etcd.member-of-node",
        summary: "the etcd member (hex id or hostname) is listed by every answering control plane and is the node's: by its etcd status, its hostname, or a peer URL on its address (a node that no longer answers)",
        args: &[
            NODE,
            A::req(
                "member",
                Str,
                "the member: its 16-digit hex id or its hostname",
            ),
        ],
        protects: &[],
    },
];

/// Every wait condition a runbook can use.
pub static CONDITIONS: &[ConditionSpec] = &[
    ConditionSpec {
        name: "talos.rebooted",
        summary: "the node's boot id differs from the one recorded before the action",
        args: &[
            NODE,
            A::opt(
                "boot_id",
                Str,
                "the boot id to differ from; default: recorded by the step",
            ),
        ],
        timeout: mins(20),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "talos.running",
        summary: "stage running and ready, and no service Waiting/Preparing/Failed; fails fast when booting is stuck on a Waiting service",
        args: &[
            NODE,
            A::def(
                "fast_fail",
                Dur,
                Lit::Str("10m"),
                "give up early when stuck in booting with a Waiting service this long",
            ),
        ],
        timeout: mins(30),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "talos.stage",
        summary: "the node's MachineStatus stage is the given one",
        args: &[
            NODE,
            A::req(
                "stage",
                Enum(&[
                    "maintenance",
                    "installing",
                    "booting",
                    "running",
                    "rebooting",
                    "resetting",
                    "upgrading",
                ]),
                "the stage",
            ),
        ],
        timeout: mins(20),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "talos.maintenance",
        summary: "the node answers the maintenance API (insecure, unconfigured)",
        args: &[NODE],
        timeout: mins(30),
        interval: Duration::from_secs(10),
    },
    ConditionSpec {
        name: "talos.service",
        summary: "a service on the node is in the given state",
        args: &[
            NODE,
            A::req("service", Str, "service id, e.g. etcd"),
            A::req(
                "state",
                Enum(&["Preparing", "Waiting", "Running", "Finished", "Failed"]),
                "the state",
            ),
        ],
        timeout: mins(20),
        interval: Duration::from_secs(10),
    },
    ConditionSpec {
        name: "etcd.member",
        summary: "the node is a voting etcd member, healthy, and member lists agree (W-etcd-member)",
        args: &[NODE],
        timeout: mins(40),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "etcd.healthy",
        summary: "etcd on the node is running and healthy",
        args: &[NODE],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "etcd.full",
        summary: "V == voters, every voter healthy, no learner, lists consistent (W-etcd-full)",
        args: &[A::def(
            "voters",
            Int,
            Lit::Int(3),
            "expected voting members",
        )],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "etcd.leader-not",
        summary: "the etcd leader is some other node",
        args: &[NODE],
        timeout: Duration::from_secs(30),
        interval: Duration::from_secs(2),
    },
    ConditionSpec {
        name: "etcd.member-absent",
        summary: "the member is gone from every reachable node's member list",
        args: &[A::req("member", Str, "hostname or hex id")],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.ready",
        summary: "the Kubernetes Node is Ready (not proof of a finished boot: pair with talos.running)",
        args: &[NODE],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.drained",
        summary: "no evictable pod is left on the node",
        args: &[NODE],
        timeout: mins(5),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "cluster.healthy",
        summary: "every node running and Ready, etcd full and consistent (W-health)",
        args: &[A::def(
            "voters",
            Int,
            Lit::Int(3),
            "expected voting members",
        )],
        timeout: mins(20),
        interval: Duration::from_secs(10),
    },
    ConditionSpec {
        name: "exec.succeeds",
        summary: "a local program exits 0 (argv list, no shell): for `verify:` of an `exec` step, or any check the catalog lacks",
        args: &[
            A::req("command", Strings, "the program and its arguments"),
            A::opt("env", Yaml, "extra environment variables (never journaled)"),
            A::opt("cwd", Path, "working directory"),
        ],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.rollout",
        summary: "a DaemonSet or Deployment rolled out: status.observedGeneration is current and every desired pod is updated and available (nothing desired is not a rollout)",
        args: &[
            A::req("kind", Str, "DaemonSet or Deployment"),
            A::req("name", Str, "the object's name"),
            A::opt("namespace", Str, "its namespace (default: `default`)"),
        ],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.present",
        summary: "a Kubernetes object exists, and with `field` has that field (equal to `value` when given)",
        args: &[
            A::req(
                "kind",
                Str,
                "the object's kind (RuntimeClass, DaemonSet, ConfigMap, …)",
            ),
            A::req("name", Str, "the object's name"),
            A::opt(
                "namespace",
                Str,
                "its namespace, for namespaced kinds (default: `default`)",
            ),
            A::opt(
                "api_version",
                Str,
                "its apiVersion, for kinds other than the common ones",
            ),
            A::opt(
                "field",
                Str,
                "a field that must be there: `.handler`, `.spec.replicas` or a JSON pointer",
            ),
            A::opt("value", Yaml, "the value the field must have"),
        ],
        timeout: mins(5),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.pod-running",
        summary: "a pod owned by DaemonSet `name` runs on the node: phase Running and Ready",
        args: &[
            A::req("name", Str, "the DaemonSet"),
            A::opt("namespace", Str, "its namespace (default: `default`)"),
            NODE,
        ],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
    ConditionSpec {
        name: "kube.allocatable",
        summary: "the Kubernetes node reports at least `min` of an extended resource allocatable (e.g. nvidia.com/gpu)",
        args: &[
            NODE,
            A::req("resource", Str, "the resource name, e.g. nvidia.com/gpu"),
            A::def("min", Int, Lit::Int(1), "how many at least"),
        ],
        timeout: mins(10),
        interval: Duration::from_secs(5),
    },
];
