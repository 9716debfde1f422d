//! `runbook doctor`: one read-only look at the cluster, per node and as a whole, with a verdict
//! and the next action for every finding.
//!
//! The seed's operator learned each of these the hard way: Kubernetes said Ready while Talos
//! was still `booting` (an NVIDIA service waiting for modules nobody configured); a non-GPU node
//! ran the NVIDIA image; the disk behind `/dev/sda` moved with a USB stick; etcd had two voters
//! and no margin. The checks here are plain functions over the same fail-closed
//! [`ClusterView`] the guards read, plus a few facts only a diagnosis needs ([`NodeExtras`]:
//! Talos version, extensions, loaded modules, system disk, etcd database size) and the backup
//! directory. Nothing here changes the cluster: `probe.rs` only lists and gets.

pub mod preflight;
pub mod probe;

use std::path::Path;
use std::time::SystemTime;

use crate::condition::etcd;
use crate::condition::talos::{self, NVIDIA_VENDOR};
use crate::condition::view::{ClusterView, NodeView, Observed};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// All is well (shown in the table, not as a finding).
    Ok,
    /// Not broken, but risky, or a fact that could not be read.
    Warning,
    /// Broken now, or one failure away from losing the cluster.
    Critical,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `cluster`, or the node's label.
    pub scope: String,
    /// What was checked, e.g. `stage`, `etcd.quorum`.
    pub check: &'static str,
    /// How serious.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// What to do next.
    pub next: String,
}

/// Facts a diagnosis needs beyond what guards read; each may be missing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct NodeExtras {
    /// `Versions.runtime.talos.dev`.
    pub talos_version: Observed<String>,
    /// Extension names (`ExtensionStatuses.runtime.talos.dev`).
    pub extensions: Observed<Vec<String>>,
    /// Loaded kernel modules (`LoadedKernelModules.runtime.talos.dev` ids).
    pub loaded_modules: Observed<Vec<String>>,
    /// The disk Talos runs from (`SystemDisks.block.talos.dev`).
    pub system_disk: Observed<String>,
    /// The etcd database size in bytes (`EtcdStatus.db_size`).
    pub etcd_db_size: Observed<i64>,
}

/// One node's row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    /// Label.
    pub node: String,
    /// Hostname, when read.
    pub hostname: Option<String>,
    /// Stage, or why it is unknown.
    pub stage: String,
    /// MachineStatus ready.
    pub ready: Option<bool>,
    /// Kubernetes Ready (`None`: unknown or no Node object).
    pub kubernetes_ready: Option<bool>,
    /// `voter`, `learner`, `none` or `unknown`.
    pub etcd: String,
    /// Services not Running, as `name State`.
    pub services_not_running: Vec<String>,
    /// Talos version.
    pub talos_version: Option<String>,
    /// The worst finding about this node.
    pub severity: Severity,
}

/// The etcd summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EtcdSummary {
    /// V.
    pub voters: usize,
    /// L.
    pub learners: usize,
    /// H.
    pub healthy: usize,
    /// Q(V).
    pub quorum: usize,
    /// H − Q(V): how many more healthy voters may be lost (negative: quorum is lost).
    pub margin: i64,
    /// The leader's member name (or id), if one is seen.
    pub leader: Option<String>,
    /// Whether every answering node lists the same members.
    pub consistent: bool,
    /// Active alarms.
    pub alarms: Vec<String>,
    /// The largest database size reported, in bytes.
    pub db_size: Option<i64>,
}

/// The newest verified snapshot in the backup directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupSummary {
    /// The directory.
    pub dir: String,
    /// The newest verified snapshot.
    pub newest: Option<String>,
    /// Its age in seconds.
    pub age_s: Option<u64>,
    /// Snapshots that did not verify.
    pub problems: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// One row per node.
    pub nodes: Vec<NodeRow>,
    /// etcd as a whole, when the member list could be read.
    pub etcd: Option<EtcdSummary>,
    /// The backup directory, when given.
    pub backup: Option<BackupSummary>,
    /// Every warning and critical finding, worst first.
    pub findings: Vec<Finding>,
    /// The worst severity.
    pub verdict: Severity,
}

/// How old the newest backup may be before it is a warning.
pub const BACKUP_MAX_AGE_S: u64 = 24 * 3600;

fn finding(
    scope: &str,
    check: &'static str,
    severity: Severity,
    message: String,
    next: impl Into<String>,
) -> Finding {
    Finding {
        scope: scope.to_string(),
        check,
        severity,
        message,
        next: next.into(),
    }
}

fn has_nvidia_extension(x: &NodeExtras) -> Option<bool> {
    x.extensions
        .get()
        .map(|e| e.iter().any(|n| n.contains("nvidia")))
}

/// Why an NVIDIA service waits, from the evidence (the one diagnosis the `talos.running`
/// fast-fail gives too: [`talos::nvidia_wait_cause`]), with what to do next; `None` when the
/// evidence does not say.
fn nvidia_cause(n: &NodeView, x: &NodeExtras) -> Option<(String, String)> {
    let cause = talos::nvidia_wait_cause(n);
    let next = match &cause {
        talos::NvidiaCause::ImageWithoutGpu => format!(
            "reinstall `{}` with the vanilla installer (talosctl upgrade --image ghcr.io/siderolabs/installer:{}); lint L1 catches this in the config",
            n.label,
            x.talos_version.get().map_or("<version>", String::as_str)
        ),
        talos::NvidiaCause::ModulesMissing(_) => {
            format!("runbook run gpu-enable --param node={}", n.label)
        }
        talos::NvidiaCause::NeitherKnown | talos::NvidiaCause::Unknown(_) => return None,
    };
    Some((cause.describe(), next))
}

fn node_findings(n: &NodeView, x: &NodeExtras, out: &mut Vec<Finding>) {
    let l = n.label.as_str();
    if let Some(gap) = n.contact.gap() {
        out.push(finding(
            l,
            "reachable",
            Severity::Critical,
            format!("`{l}` {gap}"),
            "check its power and network; if the machine is gone, run node-replace",
        ));
        return;
    }
    if n.maintenance() {
        out.push(finding(
            l,
            "stage",
            Severity::Warning,
            format!("`{l}` is in maintenance mode: it has no config and holds no etcd member"),
            "apply its config (node-replace or full-rebuild)",
        ));
        return;
    }
    let stage = n.stage.get().map(String::as_str);
    let stuck: Vec<String> = n
        .stuck_services()
        .iter()
        .map(|s| format!("{} is {}", s.id, s.state))
        .collect();
    let kube_ready = n.kube_ready.get().copied().flatten();
    match stage {
        Some("running") => {}
        Some(stage) => {
            let nvidia_waiting = n
                .stuck_services()
                .iter()
                .any(|s| s.id.contains("nvidia") && s.state == "Waiting");
            let cause = nvidia_waiting.then(|| nvidia_cause(n, x)).flatten();
            let mut message = if kube_ready == Some(true) {
                format!("Ready in Kubernetes but Talos is still {stage}")
            } else {
                format!("`{l}` is in stage {stage}")
            };
            if !stuck.is_empty() {
                message.push_str(&format!(": {}", stuck.join(", ")));
            }
            let next = match cause {
                Some((why, next)) => {
                    message.push_str(&format!("; {why}"));
                    next
                }
                None if stage == "booting" => format!(
                    "watch `talosctl -n {l} get machinestatus` and `talosctl -n {l} services`; a Waiting service names what is missing"
                ),
                None => format!("wait for `{l}` to finish ({stage}), then run doctor again"),
            };
            out.push(finding(l, "stage", Severity::Critical, message, next));
        }
        None => out.push(finding(
            l,
            "stage",
            Severity::Warning,
            format!(
                "stage of `{l}` unknown: {}",
                n.stage
                    .gap()
                    .map_or("not read".to_string(), |g| g.to_string())
            ),
            "use a talosconfig whose role may read COSI (os:reader or more)",
        )),
    }
    if stage == Some("running") && !stuck.is_empty() {
        out.push(finding(
            l,
            "services",
            Severity::Critical,
            format!("`{l}`: {}", stuck.join(", ")),
            format!("talosctl -n {l} logs <service>"),
        ));
    }
    if stage == Some("running") && n.ready.get() == Some(&false) {
        out.push(finding(
            l,
            "ready",
            Severity::Warning,
            format!("`{l}` is running but not ready: {}", n.unmet.join("; ")),
            format!("talosctl -n {l} get machinestatus -o yaml"),
        ));
    }
    if n.unmet.iter().any(|u| u.starts_with("time")) {
        out.push(finding(
            l,
            "time",
            Severity::Warning,
            format!("time is not in sync on `{l}` (bootstrap refuses without it)"),
            "check machine.time servers and the network path to them",
        ));
    }
    match n.kube_ready.get() {
        Some(Some(false)) => out.push(finding(
            l,
            "kubernetes",
            Severity::Critical,
            format!("Kubernetes reports `{l}` NotReady"),
            format!("kubectl describe node {}", n.host().unwrap_or(l)),
        )),
        Some(None) => out.push(finding(
            l,
            "kubernetes",
            Severity::Warning,
            format!("Kubernetes has no Node for `{l}`"),
            "check the kubelet: talosctl -n <node> logs kubelet",
        )),
        _ => {}
    }
    // Image and extensions against the hardware.
    let gpu = n
        .pci_vendors
        .get()
        .map(|v| v.iter().any(|v| v == NVIDIA_VENDOR));
    match (gpu, has_nvidia_extension(x)) {
        (Some(false), Some(true)) if stage == Some("running") => out.push(finding(
            l,
            "hardware",
            Severity::Warning,
            format!("`{l}` has the NVIDIA extensions but no NVIDIA GPU"),
            "reinstall with the vanilla installer (lint L1)",
        )),
        (Some(true), Some(false)) => out.push(finding(
            l,
            "hardware",
            Severity::Warning,
            format!("`{l}` has an NVIDIA GPU but runs an image without the NVIDIA extensions"),
            format!("runbook run gpu-enable --param node={l}"),
        )),
        _ => {}
    }
    if gpu == Some(true)
        && has_nvidia_extension(x) == Some(true)
        && stage == Some("running")
        && let Some(loaded) = x.loaded_modules.get()
        && !loaded.iter().any(|m| m == "nvidia")
    {
        out.push(finding(
            l,
            "modules",
            Severity::Warning,
            format!("the nvidia kernel module is not loaded on `{l}`"),
            format!("runbook run gpu-enable --param node={l}"),
        ));
    }
    // Disks: a USB stick moves the kernel names of the other disks.
    if let Some(disks) = n.disks.get() {
        let usb: Vec<&str> = disks
            .iter()
            .filter(|d| d.transport == "usb")
            .map(|d| d.dev_path.as_str())
            .collect();
        if !usb.is_empty() {
            out.push(finding(
                l,
                "disks",
                Severity::Warning,
                format!(
                    "removable media attached to `{l}` ({}): kernel disk names have moved{}",
                    usb.join(", "),
                    x.system_disk
                        .get()
                        .map(|d| format!("; Talos runs from {d}"))
                        .unwrap_or_default()
                ),
                "unplug it, or pin machine.install.disk with diskSelector (lint L4)",
            ));
        }
    }
}

fn etcd_summary(
    view: &ClusterView,
    x: &[NodeExtras],
    out: &mut Vec<Finding>,
) -> Option<EtcdSummary> {
    let qu = match etcd::quorum(view) {
        Ok(qu) => qu,
        Err(v) => {
            out.push(finding(
                "cluster",
                "etcd.quorum",
                Severity::Critical,
                format!("etcd: {}", v.reason),
                "if quorum is lost, run etcd-quorum-recovery; if the role may not read, use another talosconfig",
            ));
            return None;
        }
    };
    let quorum = etcd::q(qu.voters);
    let margin = i64::try_from(qu.h()).unwrap_or(0) - i64::try_from(quorum).unwrap_or(0);
    let leader_id = view.nodes.iter().find_map(|n| match n.etcd.get() {
        Some(st) if n.reachable() && st.leader != 0 => Some(st.leader),
        _ => None,
    });
    let leader = leader_id.map(|id| {
        qu.members
            .iter()
            .find(|m| m.id == id)
            .map_or(format!("{id:016x}"), |m| m.name.clone())
    });
    let alarms: Vec<String> = view
        .nodes
        .iter()
        .filter_map(|n| n.alarms.get().map(|a| (n, a)))
        .flat_map(|(n, a)| a.iter().map(move |x| format!("{}: {x}", n.label)))
        .collect();
    let db_size = x.iter().filter_map(|e| e.etcd_db_size.get().copied()).max();
    let s = EtcdSummary {
        voters: qu.voters,
        learners: qu.learners,
        healthy: qu.h(),
        quorum,
        margin,
        leader,
        consistent: qu.consistent,
        alarms: alarms.clone(),
        db_size,
    };
    if margin < 0 {
        out.push(finding(
            "cluster",
            "etcd.quorum",
            Severity::Critical,
            format!(
                "etcd quorum is lost: {} of {} voters healthy, {} needed",
                qu.h(),
                qu.voters,
                quorum
            ),
            "runbook run etcd-quorum-recovery",
        ));
    } else if qu.voters == 2 {
        out.push(finding(
            "cluster",
            "etcd.quorum",
            Severity::Critical,
            format!("quorum margin 0: {}", etcd::TWO_VOTERS),
            "join the third control plane (node-replace); reboot nothing until then",
        ));
    } else if margin == 0 {
        out.push(finding(
            "cluster",
            "etcd.quorum",
            Severity::Critical,
            format!(
                "quorum margin 0: {} of {} voters healthy, {quorum} needed: one more failure loses quorum",
                qu.h(),
                qu.voters
            ),
            "bring the unhealthy voter back, or replace it (node-replace); take no node down",
        ));
    }
    if qu.learners > 0 {
        out.push(finding(
            "cluster",
            "etcd.learners",
            Severity::Warning,
            format!("{} learner(s) waiting for promotion", qu.learners),
            "wait for the join to finish before any disruption",
        ));
    }
    if !qu.consistent {
        out.push(finding(
            "cluster",
            "etcd.consistent",
            Severity::Critical,
            "nodes report different etcd member lists (a stale or half-added member?)".into(),
            "compare `talosctl -n <node> etcd members` on each node; remove the stale member with node-replace",
        ));
    }
    if !alarms.is_empty() {
        out.push(finding(
            "cluster",
            "etcd.alarms",
            Severity::Critical,
            format!("etcd alarms: {}", alarms.join(", ")),
            "talosctl etcd alarm list; defragment and disarm once the cause is fixed",
        ));
    }
    if leader_id.is_none() && margin >= 0 {
        out.push(finding(
            "cluster",
            "etcd.leader",
            Severity::Critical,
            "no etcd leader is seen".into(),
            "check etcd on every control plane: talosctl -n <node> service etcd",
        ));
    }
    Some(s)
}

fn backup_summary(dir: &Path, now: SystemTime, out: &mut Vec<Finding>) -> BackupSummary {
    let shown = dir.display().to_string();
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    match crate::cluster::backup::newest_verified(dir) {
        Err(e) => {
            out.push(finding(
                "cluster",
                "backup",
                Severity::Warning,
                format!("cannot read the backup directory `{shown}`: {e}"),
                "runbook run etcd-backup",
            ));
            BackupSummary {
                dir: shown,
                newest: None,
                age_s: None,
                problems: vec![e.to_string()],
            }
        }
        Ok((best, problems)) => {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let age_s = best
                .as_ref()
                .map(|(_, _, at)| now_ms.saturating_sub(*at) / 1000);
            match age_s {
                None => out.push(finding(
                    "cluster",
                    "backup",
                    Severity::Warning,
                    format!("no verified etcd snapshot in `{shown}`"),
                    "runbook run etcd-backup",
                )),
                Some(age) if age > BACKUP_MAX_AGE_S => out.push(finding(
                    "cluster",
                    "backup",
                    Severity::Warning,
                    format!("the newest verified etcd snapshot is {} h old", age / 3600),
                    "runbook run etcd-backup",
                )),
                Some(_) => {}
            }
            BackupSummary {
                dir: shown,
                newest: best.map(|(p, _, _)| p.display().to_string()),
                age_s,
                problems,
            }
        }
    }
}

/// Diagnoses one observation. `extras` is parallel to `view.nodes`.
pub fn diagnose(
    view: &ClusterView,
    extras: &[NodeExtras],
    backup_dir: Option<&Path>,
    now: SystemTime,
) -> Report {
    let empty = NodeExtras::default();
    let mut findings = Vec::new();
    let mut rows = Vec::new();
    for (i, n) in view.nodes.iter().enumerate() {
        let x = extras.get(i).unwrap_or(&empty);
        let before = findings.len();
        node_findings(n, x, &mut findings);
        let severity = findings[before..]
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok);
        let etcd_role = match (n.members.get(), n.etcd.get()) {
            (_, Some(st)) if st.is_learner => "learner",
            (_, Some(_)) => "voter",
            (Some(_), None) => "none",
            (None, None) => "unknown",
        };
        rows.push(NodeRow {
            node: n.label.clone(),
            hostname: n.host().map(str::to_string),
            stage: match (&n.stage, n.contact.gap()) {
                (_, Some(_)) => "unreachable".into(),
                (Observed::Answered(s), _) => s.clone(),
                _ => "unknown".into(),
            },
            ready: n.ready.get().copied(),
            kubernetes_ready: n.kube_ready.get().copied().flatten(),
            etcd: etcd_role.into(),
            services_not_running: n
                .services
                .get()
                .map(|l| {
                    l.iter()
                        .filter(|s| s.state != "Running" && s.state != "Finished")
                        .map(|s| format!("{} {}", s.id, s.state))
                        .collect()
                })
                .unwrap_or_default(),
            talos_version: x.talos_version.get().cloned(),
            severity,
        });
    }
    let etcd = etcd_summary(view, extras, &mut findings);
    let versions: std::collections::BTreeSet<&str> = extras
        .iter()
        .filter_map(|x| x.talos_version.get().map(String::as_str))
        .collect();
    if versions.len() > 1 {
        findings.push(finding(
            "cluster",
            "version",
            Severity::Warning,
            format!(
                "Talos version skew: {}",
                versions.into_iter().collect::<Vec<_>>().join(", ")
            ),
            "upgrade the older nodes one at a time (the runbook engine's client speaks v1.11)",
        ));
    }
    let backup = backup_dir.map(|d| backup_summary(d, now, &mut findings));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let verdict = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok);
    Report {
        nodes: rows,
        etcd,
        backup,
        findings,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::{down, member, node, three};
    use crate::condition::view::{Gap, GapKind};

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn checks(r: &Report) -> Vec<(&str, &'static str, Severity)> {
        r.findings
            .iter()
            .map(|f| (f.scope.as_str(), f.check, f.severity))
            .collect()
    }

    #[test]
    fn a_healthy_cluster_has_no_finding_and_a_margin_of_one() {
        let r = diagnose(&three(), &[], None, now());
        assert_eq!(r.verdict, Severity::Ok, "{:?}", r.findings);
        let e = r.etcd.unwrap();
        assert_eq!((e.voters, e.healthy, e.quorum, e.margin), (3, 3, 2, 1));
        assert_eq!(e.leader.as_deref(), Some("host-1"));
    }

    #[test]
    fn two_voters_and_a_dead_node_are_critical_with_margin_zero() {
        let ms = [member(1, false), member(2, false)];
        let two = ClusterView {
            nodes: vec![node("a", 1, &ms, 1), node("b", 2, &ms, 1)],
        };
        let r = diagnose(&two, &[], None, now());
        assert_eq!(
            checks(&r),
            vec![("cluster", "etcd.quorum", Severity::Critical)]
        );
        assert!(r.findings[0].message.contains("exactly two voters"));
        let mut v = three();
        down(&mut v, "c");
        let r = diagnose(&v, &[], None, now());
        assert_eq!(r.etcd.as_ref().unwrap().margin, 0);
        assert!(checks(&r).contains(&("c", "reachable", Severity::Critical)));
        assert!(checks(&r).contains(&("cluster", "etcd.quorum", Severity::Critical)));
    }

    #[test]
    fn time_learners_alarms_and_version_skew_are_reported() {
        let ms = [
            member(1, false),
            member(2, false),
            member(3, false),
            member(4, true),
        ];
        let mut v = ClusterView {
            nodes: vec![
                node("a", 1, &ms, 1),
                node("b", 2, &ms, 1),
                node("c", 3, &ms, 1),
            ],
        };
        v.nodes[0].unmet = vec!["time: time is not in sync".into()];
        v.nodes[1].alarms = Observed::Answered(vec!["0000000000000002: alarm 1".into()]);
        let extras = vec![
            NodeExtras {
                talos_version: Observed::Answered("v1.11.5".into()),
                ..NodeExtras::default()
            },
            NodeExtras {
                talos_version: Observed::Answered("v1.12.0".into()),
                ..NodeExtras::default()
            },
            NodeExtras::default(),
        ];
        let r = diagnose(&v, &extras, None, now());
        let c = checks(&r);
        assert!(c.contains(&("a", "time", Severity::Warning)), "{c:?}");
        assert!(
            c.contains(&("cluster", "etcd.learners", Severity::Warning)),
            "{c:?}"
        );
        assert!(
            c.contains(&("cluster", "etcd.alarms", Severity::Critical)),
            "{c:?}"
        );
        assert!(
            c.contains(&("cluster", "version", Severity::Warning)),
            "{c:?}"
        );
        assert_eq!(r.verdict, Severity::Critical);
        // Worst first.
        assert_eq!(r.findings[0].severity, Severity::Critical);
    }

    #[test]
    fn an_unreadable_stage_is_a_warning_naming_the_call_not_a_pass() {
        let mut v = three();
        v.nodes[2].stage = Observed::Missing(Gap::new(
            "MachineStatus",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        let r = diagnose(&v, &[], None, now());
        let f = r.findings.iter().find(|f| f.scope == "c").unwrap();
        assert_eq!((f.check, f.severity), ("stage", Severity::Warning));
        assert!(
            f.message
                .contains("refused MachineStatus (PermissionDenied)"),
            "{}",
            f.message
        );
    }

    #[test]
    fn an_empty_backup_directory_is_a_warning() {
        let dir = std::env::temp_dir().join(format!("runbook-doctor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = diagnose(&three(), &[], Some(&dir), now());
        assert_eq!(checks(&r), vec![("cluster", "backup", Severity::Warning)]);
        assert_eq!(r.backup.unwrap().newest, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
