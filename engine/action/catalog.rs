//! The table of actions (Talos, etcd, Kubernetes and local), with their schemas.
//!
//! `runbook actions` prints this table; each entry follows the reference notes on Talos
//! behaviour (`talos-procedures.md` §2 and §4). Keep the table sorted by family.

use super::ArgType::{Bool, Duration, Enum, Int, Node, Path, Strings, Yaml};
use super::Disruption::{Always, Computed, Never, UnlessArg};
use super::Hazard::{MemberRemoval, QuorumOutage, SplitBrain, WorkloadEviction};
use super::Idempotency::{Confirm, Idempotent, Verify};
use super::{ActionSpec, ArgSpec as A, ArgType, Lit};

const NODE: A = A::req(
    "node",
    Node,
    "the node to act on (address label or hostname)",
);

/// How long, after an interruption, a node must show no sign of the call before it counts as
/// not done (`docs/design/exactly-once.md`).
const GRACE: A = A::def(
    "effect_grace",
    Duration,
    Lit::Str("30s"),
    "after an interruption: how long the node must show no sign of the call before it is sent again",
);

/// Every action a runbook can use.
pub static ACTIONS: &[ActionSpec] = &[
    // --- Talos machine API -------------------------------------------------------------
    ActionSpec {
        name: "talos.reboot",
        summary: "reboot a node (MachineService/Reboot); records its boot id first",
        args: &[
            NODE,
            GRACE,
            A::def(
                "mode",
                Enum(&["default", "powercycle"]),
                Lit::Str("default"),
                "`powercycle` goes through firmware and boot order; `default` may kexec",
            ),
        ],
        idempotency: Verify,
        disruption: Always(QuorumOutage),
        outputs: &["boot_id_before"],
        probe: true,
    },
    ActionSpec {
        name: "talos.shutdown",
        summary: "power a node off (MachineService/Shutdown)",
        args: &[
            NODE,
            GRACE,
            A::def(
                "force",
                Bool,
                Lit::Bool(false),
                "skip graceful stop of services",
            ),
        ],
        idempotency: Verify,
        disruption: Always(QuorumOutage),
        outputs: &[],
        probe: true,
    },
    ActionSpec {
        name: "talos.upgrade",
        summary: "install another Talos image on a node and reboot into it (MachineService/Upgrade)",
        args: &[
            NODE,
            GRACE,
            A::req(
                "image",
                ArgType::String,
                "installer image, always explicit (never the vanilla default)",
            ),
            A::def(
                "stage",
                Bool,
                Lit::Bool(false),
                "stage the upgrade and apply it on the next boot",
            ),
            A::def(
                "reboot_mode",
                Enum(&["default", "powercycle"]),
                Lit::Str("default"),
                "how to reboot",
            ),
        ],
        idempotency: Verify,
        disruption: Always(QuorumOutage),
        outputs: &["boot_id_before"],
        probe: true,
    },
    ActionSpec {
        name: "talos.apply-config",
        summary: "apply a machine config or patch (MachineService/ApplyConfiguration)",
        args: &[
            NODE,
            GRACE,
            A::opt(
                "config",
                Path,
                "a machine config file; a SOPS-encrypted one is decrypted in memory by `sops` (never written, logged or journaled)",
            ),
            A::opt(
                "patch",
                Yaml,
                "a strategic-merge patch applied to the running config",
            ),
            A::def(
                "mode",
                Enum(&["auto", "no-reboot", "reboot", "staged", "try"]),
                Lit::Str("auto"),
                "apply mode; `auto` reboots when a section needs it",
            ),
            A::def(
                "insecure",
                Bool,
                Lit::Bool(false),
                "maintenance mode: server-only TLS, no client certificate",
            ),
            A::def(
                "dry_run",
                Bool,
                Lit::Bool(false),
                "only report what would change",
            ),
        ],
        idempotency: Verify,
        disruption: UnlessArg {
            arg: "mode",
            safe: &["no-reboot", "staged", "try"],
            hazard: QuorumOutage,
        },
        outputs: &["mode", "mode_details"],
        probe: true,
    },
    ActionSpec {
        name: "talos.reset",
        summary: "wipe a node (MachineService/Reset); graceful leaves etcd first",
        args: &[
            NODE,
            GRACE,
            A::def(
                "graceful",
                Bool,
                Lit::Bool(true),
                "cordon, drain and leave etcd before wiping",
            ),
            A::def(
                "reboot",
                Bool,
                Lit::Bool(true),
                "reboot after the wipe instead of powering off",
            ),
            A::opt(
                "wipe",
                Strings,
                "system volume labels to wipe (e.g. EPHEMERAL); all of the system disk if absent",
            ),
        ],
        idempotency: Verify,
        disruption: Always(MemberRemoval),
        outputs: &[],
        probe: true,
    },
    ActionSpec {
        name: "talos.bootstrap",
        summary: "bootstrap etcd on exactly one node (MachineService/Bootstrap), optionally from a snapshot",
        args: &[
            NODE,
            GRACE,
            A::opt(
                "recover_from",
                Path,
                "upload this snapshot with EtcdRecover, then bootstrap with recover_etcd",
            ),
            A::def(
                "skip_hash_check",
                Bool,
                Lit::Bool(false),
                "for raw `db` copies without the sha256 trailer",
            ),
        ],
        idempotency: Verify,
        disruption: Always(SplitBrain),
        outputs: &[],
        probe: true,
    },
    ActionSpec {
        name: "talos.read-boot-id",
        summary: "read /proc/sys/kernel/random/boot_id (MachineService/Read)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["boot_id"],
        probe: false,
    },
    ActionSpec {
        name: "talos.machine-status",
        summary: "read the MachineStatus resource (stage, ready, unmet conditions)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["stage", "ready", "unmet_conditions"],
        probe: false,
    },
    ActionSpec {
        name: "talos.services",
        summary: "list services and their states (MachineService/ServiceList)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["services", "not_running"],
        probe: false,
    },
    ActionSpec {
        name: "talos.disks",
        summary: "list disks (Disks.block.talos.dev) to resolve the install disk",
        args: &[
            NODE,
            A::def("insecure", Bool, Lit::Bool(false), "maintenance mode"),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["disks"],
        probe: false,
    },
    ActionSpec {
        name: "talos.kubeconfig",
        summary: "fetch the admin kubeconfig (MachineService/Kubeconfig) into a file",
        args: &[NODE, A::req("path", Path, "where to write it")],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["path"],
        probe: false,
    },
    // --- etcd ----------------------------------------------------------------------------
    ActionSpec {
        name: "etcd.members",
        summary: "list etcd members as one node sees them (MachineService/EtcdMemberList)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["members", "voters", "learners"],
        probe: false,
    },
    ActionSpec {
        name: "etcd.status",
        summary: "etcd member status: leader, raft index, errors (MachineService/EtcdStatus)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["member_id", "leader", "raft_index", "errors", "is_learner"],
        probe: false,
    },
    ActionSpec {
        name: "etcd.snapshot",
        summary: "stream an etcd snapshot from one node into a directory, verified (MachineService/EtcdSnapshot)",
        args: &[
            NODE,
            A::req("dir", Path, "destination directory off the cluster"),
            A::opt(
                "age_recipient",
                ArgType::String,
                "an age x25519 recipient (age1…): the snapshot is encrypted as it streams, no plaintext file ever exists",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[
            "path",
            "sidecar",
            "sha256",
            "size",
            "encrypted",
            "cluster_id",
        ],
        probe: false,
    },
    ActionSpec {
        name: "etcd.remove-member",
        summary: "remove another node's etcd member by id, via a healthy node (MachineService/EtcdRemoveMemberByID)",
        args: &[
            NODE,
            GRACE,
            A::req(
                "member",
                ArgType::String,
                "the member to remove: its hostname or 16-digit hex id",
            ),
        ],
        idempotency: Verify,
        disruption: Always(MemberRemoval),
        outputs: &["member_id"],
        probe: true,
    },
    ActionSpec {
        name: "etcd.leave",
        summary: "make a node leave etcd and wipe its etcd data (MachineService/EtcdLeaveCluster)",
        args: &[NODE, GRACE],
        idempotency: Verify,
        disruption: Always(MemberRemoval),
        outputs: &[],
        probe: true,
    },
    ActionSpec {
        name: "etcd.forfeit-leadership",
        summary: "move etcd leadership away from a node (MachineService/EtcdForfeitLeadership)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["leader"],
        probe: false,
    },
    // --- Kubernetes ----------------------------------------------------------------------
    ActionSpec {
        name: "kube.cordon",
        summary: "mark a Kubernetes node unschedulable",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "kube.uncordon",
        summary: "mark a Kubernetes node schedulable again",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "kube.drain",
        summary: "evict a node's pods through the Eviction API (honours PodDisruptionBudgets; skips DaemonSet and mirror pods)",
        args: &[
            NODE,
            A::def(
                "grace",
                Duration,
                Lit::Str("5m"),
                "give up evicting after this long",
            ),
        ],
        idempotency: Idempotent,
        disruption: Always(WorkloadEviction),
        outputs: &["evicted"],
        probe: false,
    },
    ActionSpec {
        name: "kube.delete-node",
        summary: "delete a Kubernetes Node object (404 counts as done)",
        args: &[NODE],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    // --- local ---------------------------------------------------------------------------
    ActionSpec {
        name: "noop",
        summary: "do nothing (a checkpoint, or a placeholder while authoring)",
        args: &[],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "sleep",
        summary: "wait a fixed time",
        args: &[A::req("duration", Duration, "how long")],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "log",
        summary: "write a message to the run's output",
        args: &[A::req("message", ArgType::String, "the text")],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "fail",
        summary: "fail the first N attempts, then succeed (for rehearsing retries and rollbacks)",
        args: &[
            A::def(
                "attempts",
                Int,
                Lit::Int(1),
                "how many attempts fail; a large number fails always",
            ),
            A::def(
                "message",
                ArgType::String,
                Lit::Str("failed on purpose"),
                "the error text",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[],
        probe: false,
    },
    ActionSpec {
        name: "marker",
        summary: "append a line to a file: a side effect tests can count",
        args: &[
            A::req("path", Path, "the file"),
            A::req(
                "text",
                ArgType::String,
                "the line (also how an interrupted attempt is verified)",
            ),
        ],
        idempotency: Verify,
        disruption: Never,
        outputs: &[],
        probe: true,
    },
    ActionSpec {
        name: "exec",
        summary: "run a local program as an argv list (no shell unless you write sh -c); stdout, stderr (64 KiB each) and exit_code are outputs; a non-zero exit fails the step; idempotency is yours to declare (default confirm)",
        args: &[
            A::req(
                "command",
                Strings,
                "the program and its arguments, e.g. [talosctl, version]; [sh, -c, '…'] for a shell",
            ),
            A::opt(
                "env",
                Yaml,
                "extra environment variables, a map of name to value (never journaled)",
            ),
            A::opt("cwd", Path, "working directory"),
            A::opt("timeout", Duration, "kill the program after this long"),
            A::def(
                "retryable",
                Bool,
                Lit::Bool(false),
                "whether a non-zero exit or a timeout may be retried under the step's retry policy",
            ),
        ],
        idempotency: Confirm,
        disruption: Never,
        outputs: &["stdout", "stderr", "exit_code"],
        probe: false,
    },
    // --- Backups (local: no cluster connection needed) -----------------------------------
    ActionSpec {
        name: "backup.prune",
        summary: "keep the newest N verified snapshots of this cluster in dir and delete older ones with their sidecars; prunes nothing when any file fails to verify",
        args: &[
            A::req("dir", Path, "the backup directory"),
            A::req(
                "keep",
                Int,
                "how many verified snapshots of this cluster to keep (at least 1)",
            ),
            A::req(
                "after",
                Path,
                "the snapshot this run just took: it must verify, or nothing is pruned",
            ),
            A::opt(
                "cluster_id",
                ArgType::String,
                "the Talos cluster id (`etcd.snapshot`'s `cluster_id`); unknown = nothing is pruned",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[
            "pruned",
            "deleted",
            "orphan_sidecars",
            "kept",
            "unverified",
            "skipped",
        ],
        probe: false,
    },
    ActionSpec {
        name: "backup.drill",
        summary: "restore a snapshot into a throwaway simulated cluster (EtcdRecover + Bootstrap recover), check it serves the data, record the result in the sidecar",
        args: &[
            A::req(
                "snapshot",
                Path,
                "the snapshot file (its sidecar must be beside it)",
            ),
            A::opt(
                "age_identity",
                Path,
                "an age key file to decrypt an encrypted snapshot in memory (never journaled)",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["ok", "detail", "revision", "keys", "at"],
        probe: false,
    },
    // --- Preflight ---------------------------------------------------------------------
    ActionSpec {
        name: "preflight",
        summary: "read-only: the doctor checks and lints that concern this runbook; a critical finding (or a fact a check needs and could not read) refuses the run like a guard (exit 4) unless `run --override-preflight REASON`; warnings are reported; outputs are the findings",
        args: &[
            A::opt(
                "checks",
                Strings,
                "check families: etcd (quorum margin, leader, learners, member lists, alarms), quorum (as etcd, but margin 0 and a silent voter only warn), talos (reachable, configured, running, no stuck service), time, kube (Ready), gpu (image and extensions vs PCI hardware, every node), disks, backup",
            ),
            A::opt(
                "lint",
                Strings,
                "lint rules to run on `configs` (e.g. [L1, L2, L4]); an error finding refuses",
            ),
            A::opt(
                "configs",
                Strings,
                "machine configs to lint: files or directories of *.yaml (SOPS files decrypted in memory); default: the inventory's",
            ),
            A::opt(
                "inventory",
                Path,
                "cluster.yaml: which config belongs to which node, with its hardware",
            ),
            A::opt(
                "nodes",
                ArgType::Nodes,
                "node-scoped checks look only at these (default: every node); etcd, quorum and gpu always look at every node",
            ),
            A::opt(
                "down",
                ArgType::Nodes,
                "nodes confirmed powered off: their silence is a warning, not a refusal",
            ),
            A::opt(
                "gpu_node",
                Node,
                "the node that must have an NVIDIA GPU (checked with `gpu`)",
            ),
            A::opt(
                "backup_dir",
                Path,
                "the directory of verified etcd snapshots (for `backup`)",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["verdict", "critical", "warnings", "checked", "etcd"],
        probe: false,
    },
    // --- machine config patches ---------------------------------------
    ActionSpec {
        name: "talos.patch",
        summary: "patch a node's running machine config client-side (strategic merge or RFC 6902) and send it with ApplyConfiguration only if it changes; disruptive when the change needs a reboot",
        args: &[
            NODE,
            GRACE,
            A::opt(
                "patch",
                Yaml,
                "the patch inline: a map (or a list of documents) for strategic, a list of operations for json6902",
            ),
            A::opt(
                "patch_file",
                Path,
                "the patch in a file (YAML documents; SOPS-encrypted files are decrypted in memory); give `patch` or `patch_file`",
            ),
            A::def(
                "format",
                Enum(&["strategic", "json6902"]),
                Lit::Str("strategic"),
                "strategic merge as Talos's configpatcher, or RFC 6902 operations on the v1alpha1 document",
            ),
            A::def(
                "mode",
                Enum(&["auto", "no-reboot", "reboot", "staged", "try"]),
                Lit::Str("auto"),
                "ApplyConfiguration mode; `auto` reboots when a changed section needs it",
            ),
            A::def(
                "dry_run",
                Bool,
                Lit::Bool(false),
                "read the running config and show the redacted diff; send nothing",
            ),
        ],
        idempotency: Verify,
        disruption: Computed {
            disruptive: crate::machine_config::plan_needs_reboot,
            hazard: QuorumOutage,
        },
        outputs: &[
            "changed",
            "paths",
            "reboot_required",
            "mode",
            "mode_details",
        ],
        probe: true,
    },
    ActionSpec {
        name: "kube.apply",
        summary: "server-side apply of Kubernetes manifests (a multi-document YAML `file` and/or inline `manifests`) under one field manager; kinds resolved by discovery; a repeat changes nothing; `dry_run` shows what would change (Secret values redacted); outputs the objects, names and resourceVersions",
        args: &[
            A::opt(
                "file",
                Path,
                "a YAML file of one or more manifests (`---` separated)",
            ),
            A::opt(
                "manifests",
                Yaml,
                "inline manifests: one object, a list of objects, or YAML text",
            ),
            A::opt(
                "namespace",
                ArgType::String,
                "the namespace of namespaced objects that name none (default: `default`)",
            ),
            A::def(
                "field_manager",
                ArgType::String,
                Lit::Str("runbook"),
                "the server-side apply field manager",
            ),
            A::def(
                "force",
                Bool,
                Lit::Bool(false),
                "take fields another field manager owns (conflicts fail the step otherwise)",
            ),
            A::def(
                "dry_run",
                Bool,
                Lit::Bool(false),
                "apply with dryRun=All and report the changes against the live objects",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["objects", "names", "resource_versions"],
        probe: false,
    },
    // --- full rebuild (runbooks/full-rebuild.yaml) ------------------------------------
    ActionSpec {
        name: "rebuild.plan",
        summary: "read-only, before any wipe: lint the inventory's configs (L0, L1, L2, L4, L13, L15 errors refuse), take each node's image and install disk from its config, check the configs' identity for the variant (fresh: new secrets; restore: the old ones and a snapshot verified by its sidecar), and check each install disk is exactly one writable non-USB disk on the live node and each image fits its PCI devices; every problem refuses (exit 4); outputs per node: config, digest, image, install disk",
        args: &[
            A::req(
                "inventory",
                Path,
                "cluster.yaml: the nodes, their (SOPS-encrypted) configs and hardware",
            ),
            A::req(
                "nodes",
                ArgType::Nodes,
                "the nodes to rebuild: must be the inventory's, in its order",
            ),
            A::req(
                "variant",
                Enum(&["fresh", "restore"]),
                "fresh: new secrets, checked new; restore: the old secrets, checked old, and `snapshot`",
            ),
            A::opt(
                "snapshot",
                Path,
                "restore: the etcd snapshot to bootstrap from, verified by its sidecar and taken from this cluster",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &[
            "variant",
            "configs",
            "digests",
            "images",
            "install_disks",
            "disks",
            "snapshot",
            "warnings",
        ],
        probe: false,
    },
    ActionSpec {
        name: "rebuild.check-node",
        summary: "read-only, in maintenance mode right before the apply: the node answers only the maintenance API, the config is unchanged since `rebuild.plan` (sha256), its install disk matches exactly one writable non-USB disk and its image fits the PCI devices; refuses otherwise (exit 4)",
        args: &[
            NODE,
            A::req("config", Path, "the node's config, as planned"),
            A::req(
                "digest",
                ArgType::String,
                "the sha256 `rebuild.plan` recorded for it",
            ),
        ],
        idempotency: Idempotent,
        disruption: Never,
        outputs: &["dev_path", "serial", "image", "install_disk"],
        probe: false,
    },
];
