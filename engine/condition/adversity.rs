//! Every guard of the catalog against views where evidence is missing: nothing reachable,
//! every call refused by role (at the node's first call, or after it), and one node that does
//! not answer.
//!
//! The table [`RULES`] says, per guard, what it may conclude with node `c` silent, for a target
//! that answers (`a`) and for the silent one (`c`); with nothing reachable or everything
//! refused, every cluster guard must refuse. A guard added to the catalog without a row here
//! fails [`every_guard_has_a_fail_closed_rule`], so no guard escapes the adversity checks.

use std::path::Path;

use crate::action::{ArgSpec, ArgType};
use crate::condition::GUARDS;
use crate::condition::check::{Args, guard_with};
use crate::condition::etcd::tests::{down, three};
use crate::condition::talos::NVIDIA_MODULES;
use crate::condition::view::{
    ClusterView, Contact, Disk, Gap, GapKind, NodeView, Observed, Verdict,
};

/// What a guard may conclude in the one-node-down view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// It cannot be sure: it must refuse.
    Refuse,
    /// It is sure from the evidence that answered: it passes (asserted, so the rule is not
    /// vacuous).
    Pass,
    /// It does not look at the cluster (`backup.fresh`): it decides the same in every view.
    Independent,
}

use Expect::{Independent, Pass, Refuse};

/// One row: the guard, then the expectation with `c` silent for target `a`, and for target
/// `c` (guards without a node take the first), and why.
struct Rule {
    guard: &'static str,
    target_answers: Expect,
    target_silent: Expect,
    why: &'static str,
}

const fn rule(guard: &'static str, a: Expect, c: Expect, why: &'static str) -> Rule {
    Rule {
        guard,
        target_answers: a,
        target_silent: c,
        why,
    }
}

static RULES: &[Rule] = &[
    rule(
        "etcd.quorum",
        Pass,
        Pass,
        "2 of 3 voters proven healthy is quorum; silence only lowers H",
    ),
    rule(
        "etcd.safe-down",
        Refuse,
        Pass,
        "with c down, a going down leaves 1 of 3; c is already down",
    ),
    rule(
        "etcd.safe-remove",
        Refuse,
        Pass,
        "removing a leaves 1 healthy of 2; removing the dead c leaves 2 of 2",
    ),
    rule(
        "etcd.consistent",
        Pass,
        Pass,
        "the lists of the nodes that answer agree; a silent node is not a reachable one",
    ),
    rule(
        "etcd.no-alarms",
        Refuse,
        Refuse,
        "c's alarm list was not read",
    ),
    rule(
        "etcd.no-learners",
        Pass,
        Pass,
        "the member list of a voter with a leader is complete",
    ),
    rule("etcd.quorum-lost", Refuse, Refuse, "a and b see a leader"),
    rule(
        "etcd.bootstrap-safe",
        Refuse,
        Refuse,
        "etcd runs, and silent c could hide one behind a split",
    ),
    rule(
        "talos.all-running",
        Refuse,
        Refuse,
        "c's stage was not read",
    ),
    rule(
        "talos.not-member",
        Refuse,
        Refuse,
        "a is listed; c's hostname could not be read (and it is listed)",
    ),
    rule(
        "talos.node-running",
        Pass,
        Refuse,
        "a answered running; c did not answer",
    ),
    rule(
        "talos.node-down",
        Refuse,
        Pass,
        "a answers; c is silent twice while a and b answer with a leader",
    ),
    rule(
        "talos.no-init",
        Refuse,
        Refuse,
        "c's machine type was not read and no one said it is powered off",
    ),
    rule(
        "talos.disk-unambiguous",
        Pass,
        Refuse,
        "a's disks were read; c's were not",
    ),
    rule(
        "talos.image-matches-hardware",
        Pass,
        Refuse,
        "a's PCI devices were read; c's were not",
    ),
    rule(
        "talos.gpu-modules",
        Pass,
        Refuse,
        "a's kernel modules were read; c's were not",
    ),
    rule(
        "backup.fresh",
        Independent,
        Independent,
        "reads the backup directory, not the cluster",
    ),
    rule(
        "kube.batch-safe",
        Refuse,
        Refuse,
        "no batch given, PodDisruptionBudgets not read, and a, b, c are control planes",
    ),
    rule(
        "talos.install-disk-ok",
        Pass,
        Refuse,
        "the config names /dev/sda; a's disks were read, c's were not",
    ),
    rule(
        "etcd.member-of-node",
        Refuse,
        Pass,
        "the member is host-3: not a's; silent c is tied to it by the peer URL on its address",
    ),
];

/// The healthy three-node view, with disks and kernel modules to decide on.
fn healthy() -> ClusterView {
    let mut v = three();
    for n in &mut v.nodes {
        n.disks = Observed::Answered(vec![Disk {
            dev_path: "/dev/sda".into(),
            model: "APPLE SSD".into(),
            serial: format!("S-{}", n.label),
            transport: "sata".into(),
            readonly: false,
            cdrom: false,
            size: 1 << 40,
        }]);
        n.kernel_modules =
            Observed::Answered(NVIDIA_MODULES.iter().map(|m| m.to_string()).collect());
    }
    v
}

fn nothing_reachable() -> ClusterView {
    let mut v = healthy();
    for l in ["a", "b", "c"] {
        down(&mut v, l);
    }
    v
}

fn denied() -> Gap {
    Gap::new("call", GapKind::PermissionDenied, "not authorized")
}

/// The role may not even read MachineStatus.
fn denied_at_contact() -> ClusterView {
    let mut v = healthy();
    for n in &mut v.nodes {
        let label = n.label.clone();
        *n = NodeView::silent(&label, denied());
    }
    v
}

/// The node answers MachineStatus, every other call is refused by role.
fn denied_after_contact() -> ClusterView {
    let mut v = healthy();
    for n in &mut v.nodes {
        *n = NodeView {
            label: n.label.clone(),
            contact: Observed::Answered(Contact::Secure),
            hostname: Observed::Missing(denied()),
            stage: Observed::Missing(denied()),
            ready: Observed::Missing(denied()),
            unmet: vec![],
            services: Observed::Missing(denied()),
            boot_id: Observed::Missing(denied()),
            members: Observed::Missing(denied()),
            etcd: Observed::Missing(denied()),
            alarms: Observed::Missing(denied()),
            machine_type: Observed::Missing(denied()),
            kube_ready: Observed::Missing(denied()),
            evictable_pods: Observed::Missing(denied()),
            disks: Observed::Missing(denied()),
            pci_vendors: Observed::Missing(denied()),
            kernel_modules: Observed::Missing(denied()),
            uptime: Observed::Missing(denied()),
            image: Observed::Missing(denied()),
        };
    }
    v
}

fn one_down() -> ClusterView {
    let mut v = healthy();
    down(&mut v, "c");
    v
}

fn args_for(specs: &[ArgSpec], target: &str, dir: &Path) -> Args {
    let mut args = Args::new();
    for s in specs {
        let v: serde_json::Value = match (s.name, s.ty) {
            ("node", _) => target.into(),
            ("image", _) => "ghcr.io/siderolabs/installer:v1.11.5".into(),
            ("disk", _) => "/dev/sda".into(),
            ("dir", _) => dir.display().to_string().into(),
            ("max_age", _) => "24h".into(),
            ("confirm", _) => "1s".into(),
            ("member", _) => "host-3".into(),
            ("config", _) => dir.join("install-config.yaml").display().to_string().into(),
            _ if !s.required || s.default.is_some() => continue,
            (name, ArgType::Nodes) => panic!("no test value for list argument `{name}`"),
            (name, _) => panic!("no test value for required argument `{name}`: add one"),
        };
        args.insert(s.name.to_string(), v);
    }
    args
}

/// Decides a guard, giving it the same view twice when it wants two observations.
fn decide(name: &str, args: &Args, view: &ClusterView) -> Verdict {
    guard_with(name, args, view, Some(view)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fresh_backup_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("snap.db");
    let now = crate::journal::time::now_ms();
    crate::cluster::backup::store(
        &p,
        b"etcd",
        &crate::cluster::backup::describe("a", b"etcd", Some(1), None, now),
    )
    .unwrap();
    // The machine config `talos.install-disk-ok` reads its install disk from.
    std::fs::write(
        dir.path().join("install-config.yaml"),
        "version: v1alpha1\nmachine:\n  install:\n    disk: /dev/sda\n",
    )
    .unwrap();
    dir
}

fn rule_of(name: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.guard == name)
        .unwrap_or_else(|| panic!("guard `{name}` has no fail-closed rule in RULES: add one"))
}

#[test]
fn every_guard_has_a_fail_closed_rule() {
    for g in GUARDS {
        let r = rule_of(g.name);
        assert!(!r.why.is_empty());
    }
    for r in RULES {
        assert!(
            GUARDS.iter().any(|g| g.name == r.guard),
            "RULES names `{}`, which is not in the catalog",
            r.guard
        );
    }
}

#[test]
fn with_nothing_reachable_or_everything_refused_every_cluster_guard_refuses() {
    let dir = fresh_backup_dir();
    let views = [
        ("nothing reachable", nothing_reachable()),
        ("PermissionDenied at MachineStatus", denied_at_contact()),
        (
            "PermissionDenied after MachineStatus",
            denied_after_contact(),
        ),
        ("no node observed", ClusterView::default()),
    ];
    for g in GUARDS {
        let rule = rule_of(g.name);
        for target in ["a", "c"] {
            let args = args_for(g.args, target, dir.path());
            for (what, view) in &views {
                let v = decide(g.name, &args, view);
                if rule.target_answers == Independent {
                    assert!(v.holds, "{} ({what}): {}", g.name, v.reason);
                } else {
                    assert!(
                        !v.holds,
                        "{} on `{target}` passed with {what}: {}",
                        g.name, v.reason
                    );
                }
            }
        }
    }
}

#[test]
fn refusals_for_missing_evidence_say_what_could_not_be_read() {
    let dir = fresh_backup_dir();
    let view = denied_at_contact();
    for g in GUARDS {
        if rule_of(g.name).target_answers == Independent {
            continue;
        }
        let v = decide(g.name, &args_for(g.args, "a", dir.path()), &view);
        assert!(
            v.reason.contains("(PermissionDenied)") || v.reason.contains("not authorized"),
            "{}: the refusal does not name the role refusal: {}",
            g.name,
            v.reason
        );
    }
}

#[test]
fn with_one_node_silent_each_guard_refuses_exactly_where_it_cannot_be_sure() {
    let dir = fresh_backup_dir();
    let view = one_down();
    for g in GUARDS {
        let rule = rule_of(g.name);
        for (target, expect) in [("a", rule.target_answers), ("c", rule.target_silent)] {
            let v = decide(g.name, &args_for(g.args, target, dir.path()), &view);
            match expect {
                Refuse => assert!(
                    !v.holds,
                    "{} on `{target}` with c silent passed ({}): {}",
                    g.name, rule.why, v.reason
                ),
                Pass | Independent => assert!(
                    v.holds,
                    "{} on `{target}` with c silent refused, but the rule says it can be sure ({}): {}",
                    g.name, rule.why, v.reason
                ),
            }
        }
    }
}

#[test]
fn backup_fresh_refuses_without_a_verified_snapshot_whatever_the_cluster() {
    let empty = tempfile::tempdir().unwrap();
    for view in [healthy(), nothing_reachable()] {
        let g = crate::condition::guard("backup.fresh").unwrap();
        let v = decide(g.name, &args_for(g.args, "a", empty.path()), &view);
        assert!(!v.holds);
        assert!(v.reason.starts_with("no snapshot in"), "{}", v.reason);
    }
}
