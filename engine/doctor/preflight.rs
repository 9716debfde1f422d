//! The preflight's decision: which of the doctor's findings (and which lints) concern this
//! runbook, and which of them refuse its start.
//!
//! `runbook doctor` reports; a preflight decides. Two things differ. First, a preflight looks
//! only at the checks its step declares (`checks: [etcd, talos, …]`) and the nodes it names:
//! gpu-enable must not refuse on the very `booting` it repairs, and etcd-quorum-recovery must
//! not refuse on the quorum loss it is for. Second, it fails closed: where the doctor says
//! "unknown" (a warning), a preflight cannot vouch for the cluster, so every fact a declared
//! check needs and could not read is a critical finding of its own. Only nodes the operator
//! confirmed down (`down:`) have their silence excused, and then as a warning.
//!
//! Pure: the effects body (`cluster/effects/preflight.rs`) observes, loads and lints, then
//! calls [`decide`].

use std::collections::BTreeSet;

use super::{Finding, NodeExtras, Report, Severity};
use crate::condition::talos::NVIDIA_VENDOR;
use crate::condition::view::{ClusterView, NodeView, Observed};

/// A family of checks a preflight step may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// etcd quorum margin, leader, learners, consistent member lists, alarms.
    Etcd,
    /// Like `etcd`, but a margin of 0 is a warning: quorum must hold now (for runbooks that
    /// repair a lost voter or back up before they do).
    Quorum,
    /// Every node reachable, configured, stage `running`, no stuck service, Talos versions.
    Talos,
    /// Time in sync on every node (a bootstrap precondition).
    Time,
    /// Kubernetes Ready for every node.
    Kube,
    /// Installer image and extensions against the PCI hardware.
    Gpu,
    /// Disks readable; removable media reported.
    Disks,
    /// A fresh verified etcd backup in `backup_dir`.
    Backup,
}

impl Check {
    /// Every check, with its name in `checks:`.
    pub const ALL: &'static [(Check, &'static str)] = &[
        (Check::Etcd, "etcd"),
        (Check::Quorum, "quorum"),
        (Check::Talos, "talos"),
        (Check::Time, "time"),
        (Check::Kube, "kube"),
        (Check::Gpu, "gpu"),
        (Check::Disks, "disks"),
        (Check::Backup, "backup"),
    ];

    /// Parses a name from `checks:`.
    pub fn parse(s: &str) -> Option<Check> {
        Check::ALL.iter().find(|(_, n)| *n == s).map(|(c, _)| *c)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Check::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, n)| n)
    }

    /// The check family of a doctor finding (by its `check` field).
    fn of(doctor_check: &str) -> Option<Check> {
        Some(match doctor_check {
            c if c.starts_with("etcd.") => Check::Etcd,
            "reachable" | "stage" | "services" | "ready" | "version" => Check::Talos,
            "time" => Check::Time,
            "kubernetes" => Check::Kube,
            "hardware" | "modules" => Check::Gpu,
            "disks" => Check::Disks,
            "backup" => Check::Backup,
            _ => return None,
        })
    }
}

/// What a preflight step declared.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The checks to make.
    pub checks: BTreeSet<Check>,
    /// Node-scoped checks look only at these nodes (all nodes when `None`). The gpu check
    /// always looks at every node: an NVIDIA image on a node without the GPU is a mismatch
    /// wherever it is.
    pub nodes: Option<Vec<String>>,
    /// Nodes confirmed powered off: their silence is a warning, not a refusal.
    pub down: Vec<String>,
    /// The node that must carry an NVIDIA GPU (gpu-enable's target).
    pub gpu_node: Option<String>,
}

/// The preflight's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Every finding that concerns this runbook, worst first (lint findings included, as
    /// `scope` = the file, `check` = the lint id).
    pub findings: Vec<Finding>,
    /// Whether any finding is critical: the run must not start.
    pub refused: bool,
}

impl Outcome {
    /// The critical findings.
    pub fn critical(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
    }

    /// The refusal message: every critical finding with its node and next action.
    pub fn refusal(&self) -> String {
        let crit: Vec<String> = self
            .critical()
            .map(|f| {
                format!(
                    "[{}] {}: {} (next: {})",
                    f.scope, f.check, f.message, f.next
                )
            })
            .collect();
        format!(
            "preflight refused the run: {} critical finding(s): {}; rerun with --override-preflight REASON only if you accept them (safety guards still apply)",
            crit.len(),
            crit.join("; ")
        )
    }
}

fn crit(scope: &str, check: &'static str, message: String, next: impl Into<String>) -> Finding {
    Finding {
        scope: scope.to_string(),
        check,
        severity: Severity::Critical,
        message,
        next: next.into(),
    }
}

fn in_scope(spec: &Spec, label: &str) -> bool {
    spec.nodes
        .as_ref()
        .is_none_or(|ns| ns.iter().any(|n| n == label))
}

fn is_down(spec: &Spec, n: &NodeView) -> bool {
    spec.down.iter().any(|d| n.is_named(d))
}

/// A needed fact that was not read: a critical "cannot check" finding.
fn need<T>(
    out: &mut Vec<Finding>,
    n: &NodeView,
    check: &'static str,
    what: &str,
    o: &Observed<T>,
) -> bool {
    match o {
        Observed::Answered(_) => true,
        Observed::Missing(g) => {
            out.push(crit(
                &n.label,
                check,
                format!("cannot check {what} on `{}`: {g}", n.label),
                "use a talosconfig whose role may read it (os:reader or more), or fix the node's API; a preflight that cannot look refuses",
            ));
            false
        }
        Observed::NotAsked => {
            out.push(crit(
                &n.label,
                check,
                format!("{what} of `{}` was not read", n.label),
                "run the preflight again; a preflight that cannot look refuses",
            ));
            false
        }
    }
}

/// The evidence each declared check needs, per node: what is missing is critical.
fn gaps(view: &ClusterView, extras: &[NodeExtras], spec: &Spec, out: &mut Vec<Finding>) {
    let empty = NodeExtras::default();
    for (i, n) in view.nodes.iter().enumerate() {
        let x = extras.get(i).unwrap_or(&empty);
        let scoped = in_scope(spec, &n.label);
        if !n.reachable() {
            // The doctor's `reachable` finding speaks for a silent node (or a refused contact).
            continue;
        }
        if n.maintenance() {
            continue;
        }
        let c = &spec.checks;
        if scoped && (c.contains(&Check::Talos) || c.contains(&Check::Time)) {
            need(out, n, "stage", "the stage", &n.stage);
        }
        if scoped && c.contains(&Check::Talos) {
            need(out, n, "services", "the services", &n.services);
        }
        if c.contains(&Check::Etcd) || c.contains(&Check::Quorum) {
            match &n.machine_type {
                // A worker runs no etcd (Talos answers Unimplemented there): nothing to check.
                crate::condition::view::Observed::Answered(t) if t == "worker" => {}
                crate::condition::view::Observed::Answered(_) => {
                    need(out, n, "etcd.alarms", "the etcd alarms", &n.alarms);
                }
                // Whether it should hold a member is unknown: that is missing evidence too.
                other => {
                    need(out, n, "etcd.alarms", "the machine type", other);
                }
            }
        }
        if scoped && c.contains(&Check::Kube) {
            need(out, n, "kubernetes", "Kubernetes readiness", &n.kube_ready);
        }
        if c.contains(&Check::Gpu) {
            need(out, n, "hardware", "the PCI devices", &n.pci_vendors);
            need(out, n, "hardware", "the extensions", &x.extensions);
        }
        if scoped && c.contains(&Check::Disks) {
            need(out, n, "disks", "the disks", &n.disks);
        }
    }
}

/// Whether the node runs (or waits on) the NVIDIA extensions.
fn nvidia_image(n: &NodeView, x: &NodeExtras) -> bool {
    x.extensions
        .get()
        .is_some_and(|e| e.iter().any(|n| n.contains("nvidia")))
        || n.services
            .get()
            .is_some_and(|s| s.iter().any(|s| s.id.contains("nvidia")))
}

fn gpu(view: &ClusterView, extras: &[NodeExtras], spec: &Spec, out: &mut Vec<Finding>) {
    let empty = NodeExtras::default();
    for (i, n) in view.nodes.iter().enumerate() {
        let x = extras.get(i).unwrap_or(&empty);
        let Some(vendors) = n.pci_vendors.get() else {
            continue;
        };
        let has_gpu = vendors.iter().any(|v| v == NVIDIA_VENDOR);
        if nvidia_image(n, x) && !has_gpu {
            out.push(crit(
                &n.label,
                "hardware",
                format!(
                    "`{}` runs the NVIDIA image but has no NVIDIA GPU (no PCI vendor {NVIDIA_VENDOR}): it waits for a driver that cannot load",
                    n.label
                ),
                format!(
                    "reinstall `{}` with the vanilla installer (talosctl upgrade --image ghcr.io/siderolabs/installer:{}); lint L1 catches this in the config",
                    n.label,
                    x.talos_version.get().map_or("<version>", String::as_str)
                ),
            ));
        }
    }
    if let Some(target) = &spec.gpu_node {
        match view.nodes.iter().find(|n| n.is_named(target)) {
            None => out.push(crit(
                target,
                "hardware",
                format!("`{target}` is not one of the cluster's nodes"),
                "name the node with the NVIDIA GPU (`--param node=…`)",
            )),
            Some(n) => {
                if let Some(v) = n.pci_vendors.get()
                    && !v.iter().any(|v| v == NVIDIA_VENDOR)
                {
                    out.push(crit(
                        &n.label,
                        "hardware",
                        format!(
                            "`{}` has no NVIDIA GPU (no PCI vendor {NVIDIA_VENDOR}): the NVIDIA image and modules do not belong on it",
                            n.label
                        ),
                        "run gpu-enable on the node that has the GPU (doctor lists the hardware)",
                    ));
                }
            }
        }
    }
}

/// Decides a preflight from one diagnosis (the doctor's [`Report`] of the same view) plus the
/// lint findings of the configs it was asked to lint.
pub fn decide(
    view: &ClusterView,
    extras: &[NodeExtras],
    report: &Report,
    lint: &[crate::lint::Finding],
    spec: &Spec,
) -> Outcome {
    let mut out = Vec::new();
    for f in &report.findings {
        let Some(check) = Check::of(f.check) else {
            continue;
        };
        // The gpu check is cluster-wide; its own rules below replace the doctor's warnings.
        if check == Check::Gpu {
            continue;
        }
        // A silent node stops every check that looks at it (etcd and gpu look at every node),
        // whether or not `talos` is declared: nothing it should have told is known.
        if f.check == "reachable" {
            let node = view.nodes.iter().find(|n| n.label == f.scope);
            let cluster_wide = [Check::Etcd, Check::Quorum, Check::Gpu]
                .iter()
                .any(|c| spec.checks.contains(c));
            let looked_at = node.is_some_and(|n| in_scope(spec, &n.label)) || cluster_wide;
            if spec.checks.is_empty() || !looked_at {
                continue;
            }
            let mut f = f.clone();
            // Under `quorum` alone, a node with positive evidence of silence is already an
            // unhealthy voter in the quorum figures; a role that may not read it is not.
            let only_quorum = spec.checks.contains(&Check::Quorum)
                && !spec.checks.contains(&Check::Etcd)
                && !spec.checks.contains(&Check::Gpu)
                && !node.is_some_and(|n| {
                    in_scope(spec, &n.label)
                        && [Check::Talos, Check::Time, Check::Kube, Check::Disks]
                            .iter()
                            .any(|c| spec.checks.contains(c))
                });
            if node.is_some_and(|n| is_down(spec, n)) {
                f.severity = Severity::Warning;
                f.message
                    .push_str(" (confirmed down by the operator: excused)");
            } else if only_quorum && node.is_some_and(|n| n.silent_evidence().is_some()) {
                f.severity = Severity::Warning;
                f.message
                    .push_str(" (silent: counted as an unhealthy voter in the quorum figures)");
            }
            out.push(f);
            continue;
        }
        let node = view.nodes.iter().find(|n| n.label == f.scope);
        if let Some(n) = node
            && !in_scope(spec, &n.label)
        {
            continue;
        }
        let quorum_only = check == Check::Etcd
            && !spec.checks.contains(&Check::Etcd)
            && spec.checks.contains(&Check::Quorum);
        if !spec.checks.contains(&check) && !quorum_only {
            continue;
        }
        let mut f = f.clone();
        // `quorum`: margin 0 (quorum holds, one more loss would break it) is a warning.
        if quorum_only
            && f.check == "etcd.quorum"
            && report.etcd.as_ref().is_some_and(|e| e.margin >= 0)
        {
            f.severity = Severity::Warning;
        }
        // What the doctor calls unknown or in maintenance (a warning), a preflight cannot
        // vouch for; time (a bootstrap precondition) and backup were declared as needed.
        if matches!(f.check, "stage" | "time" | "backup") {
            f.severity = Severity::Critical;
        }
        out.push(f);
    }
    gaps(view, extras, spec, &mut out);
    if spec.checks.contains(&Check::Gpu) {
        gpu(view, extras, spec, &mut out);
    }
    for l in lint {
        out.push(Finding {
            scope: format!("{}:{}:{}", l.file, l.line, l.column),
            check: l.id,
            severity: match l.severity {
                crate::lint::Severity::Error => Severity::Critical,
                crate::lint::Severity::Warning => Severity::Warning,
            },
            message: l.message.clone(),
            next: l.fix.clone(),
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out.dedup();
    let refused = out.iter().any(|f| f.severity == Severity::Critical);
    Outcome {
        findings: out,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::{down, three};
    use crate::condition::view::{Gap, GapKind};
    use crate::doctor::diagnose;

    fn spec(checks: &[Check]) -> Spec {
        Spec {
            checks: checks.iter().copied().collect(),
            ..Spec::default()
        }
    }

    fn run(view: &ClusterView, spec: &Spec) -> Outcome {
        let report = diagnose(view, &[], None, std::time::SystemTime::now());
        decide(view, &[], &report, &[], spec)
    }

    #[test]
    fn a_dead_node_refuses_with_the_quorum_margin_unless_it_is_confirmed_down_and_etcd_is_not_checked()
     {
        let mut v = three();
        down(&mut v, "c");
        let o = run(&v, &spec(&[Check::Etcd, Check::Talos]));
        assert!(o.refused);
        let r = o.refusal();
        assert!(r.contains("[c] reachable"), "{r}");
        assert!(r.contains("quorum margin 0"), "{r}");
        // etcd-quorum-recovery's shape: only talos, the dead node confirmed down.
        let mut s = spec(&[Check::Talos]);
        s.down = vec!["c".into()];
        let o = run(&v, &s);
        assert!(!o.refused, "{:?}", o.findings);
        assert_eq!(o.findings.len(), 1, "{:?}", o.findings);
        assert_eq!(o.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn quorum_tolerates_margin_zero_but_not_a_lost_quorum() {
        let mut v = three();
        down(&mut v, "c");
        let mut s = spec(&[Check::Quorum]);
        s.down = vec!["c".into()];
        let o = run(&v, &s);
        assert!(!o.refused, "{:?}", o.findings);
        assert!(o.findings.iter().any(|f| f.check == "etcd.quorum"));
        // Without `down`, the silent node is counted as an unhealthy voter: still a warning.
        let o = run(&v, &spec(&[Check::Quorum]));
        assert!(!o.refused, "{:?}", o.findings);
        // A role refusal is no silence: critical.
        let mut r = three();
        r.nodes[2].contact = Observed::Missing(Gap::new(
            "MachineStatus",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        assert!(run(&r, &spec(&[Check::Quorum])).refused);
        down(&mut v, "b");
        let o = run(&v, &s);
        assert!(o.refused, "{:?}", o.findings);
    }

    #[test]
    fn an_unreadable_fact_a_check_needs_is_critical_not_a_pass() {
        let mut v = three();
        v.nodes[1].alarms = Observed::Missing(Gap::new(
            "EtcdAlarmList",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        v.nodes[2].stage = Observed::Missing(Gap::new(
            "MachineStatus",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        let o = run(&v, &spec(&[Check::Etcd, Check::Talos]));
        assert!(o.refused);
        let crit: Vec<(&str, &str)> = o.critical().map(|f| (f.scope.as_str(), f.check)).collect();
        assert!(crit.contains(&("b", "etcd.alarms")), "{crit:?}");
        assert!(crit.contains(&("c", "stage")), "{crit:?}");
        // The same view with only the checks that do not need those facts passes.
        let o = run(&v, &spec(&[Check::Kube]));
        assert!(!o.refused, "{:?}", o.findings);
    }

    #[test]
    fn node_scope_leaves_other_nodes_out_but_gpu_looks_everywhere() {
        let mut v = three();
        v.nodes[2].stage = Observed::Answered("booting".into());
        let mut s = spec(&[Check::Talos]);
        s.nodes = Some(vec!["a".into()]);
        assert!(!run(&v, &s).refused);
        s.nodes = None;
        assert!(run(&v, &s).refused);
        // gpu: `b` has no NVIDIA device yet an nvidia service: refused, even scoped to `a`.
        v.nodes[1].pci_vendors = Observed::Answered(vec!["0x8086".into()]);
        v.nodes[0].pci_vendors = Observed::Answered(vec!["0x10de".into()]);
        v.nodes[2].pci_vendors = Observed::Answered(vec![]);
        let x = vec![
            NodeExtras {
                extensions: Observed::Answered(vec!["nonfree-kmod-nvidia-production".into()]),
                ..NodeExtras::default()
            },
            NodeExtras {
                extensions: Observed::Answered(vec!["nonfree-kmod-nvidia-production".into()]),
                ..NodeExtras::default()
            },
            NodeExtras {
                extensions: Observed::Answered(vec![]),
                ..NodeExtras::default()
            },
        ];
        let mut s = spec(&[Check::Gpu]);
        s.nodes = Some(vec!["a".into()]);
        s.gpu_node = Some("a".into());
        let report = diagnose(&v, &x, None, std::time::SystemTime::now());
        let o = decide(&v, &x, &report, &[], &s);
        let crit: Vec<&str> = o.critical().map(|f| f.scope.as_str()).collect();
        assert_eq!(crit, vec!["b"], "{:?}", o.findings);
        // The GPU node named wrongly: refused too.
        s.gpu_node = Some("c".into());
        let o = decide(&v, &x, &report, &[], &s);
        let crit: Vec<&str> = o.critical().map(|f| f.scope.as_str()).collect();
        assert!(crit.contains(&"c"), "{:?}", o.findings);
    }

    #[test]
    fn lint_errors_refuse_and_warnings_do_not() {
        let v = three();
        let report = diagnose(&v, &[], None, std::time::SystemTime::now());
        let lint = |sev| crate::lint::Finding {
            id: "L4",
            severity: sev,
            file: "cp1.yaml".into(),
            line: 3,
            column: 9,
            message: "bare /dev/sda".into(),
            fix: "use diskSelector".into(),
        };
        let o = decide(
            &v,
            &[],
            &report,
            &[lint(crate::lint::Severity::Warning)],
            &spec(&[]),
        );
        assert!(!o.refused);
        let o = decide(
            &v,
            &[],
            &report,
            &[lint(crate::lint::Severity::Error)],
            &spec(&[]),
        );
        assert!(o.refused);
        assert!(o.refusal().contains("[cp1.yaml:3:9] L4"), "{}", o.refusal());
    }
}
