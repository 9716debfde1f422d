//! The live lints of `talos-procedures.md` §5: what the configs say, held against what the
//! cluster runs (`runbook lint --live`).
//!
//! Each is a plain function over the same fail-closed [`ClusterView`] the guards read, the
//! doctor's [`NodeExtras`], and the configs paired with their nodes through the inventory.
//! Findings have the static lints' shape; a finding about a config points at the offending key
//! in it, one about a node alone names the node as `live:<node>` at line 0. A fact a live lint
//! needs and could not read is an error finding (the lint could not be made), never a pass.

use super::config::Seg::Key;
use super::config::{ConfigFile, Seg};
use super::{Finding, Severity};
use crate::condition::talos::{NVIDIA_MODULES, NVIDIA_SCHEMATICS, NVIDIA_VENDOR};
use crate::condition::view::{ClusterView, NodeView, Observed};
use crate::doctor::NodeExtras;

const IMAGE: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("image")];
const DISK: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("disk")];
const SELECTOR: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("diskSelector")];
const MODULES: &[Seg<'static>] = &[Key("machine"), Key("kernel"), Key("modules")];

/// The Talos minor version this engine's client speaks (L17).
pub const CLIENT_MINOR: &str = "v1.11";

/// One node as a live lint sees it: its view, its extras, its config (when the inventory
/// names one).
#[derive(Debug, Clone, Copy)]
pub struct LiveNode<'a> {
    /// What was observed.
    pub view: &'a NodeView,
    /// The doctor's extras.
    pub extras: &'a NodeExtras,
    /// Its machine config.
    pub config: Option<&'a ConfigFile>,
}

fn at_node(
    n: &NodeView,
    id: &'static str,
    severity: Severity,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        id,
        severity,
        file: format!("live:{}", n.label),
        line: 0,
        column: 0,
        message,
        fix: fix.into(),
    }
}

fn at_config(
    c: &ConfigFile,
    path: &[Seg<'_>],
    id: &'static str,
    severity: Severity,
    message: String,
    fix: &str,
) -> Finding {
    let pos = c.pos(path);
    Finding {
        id,
        severity,
        file: c.path.display().to_string(),
        line: pos.line,
        column: pos.column,
        message,
        fix: fix.into(),
    }
}

fn gap<T>(
    n: &NodeView,
    id: &'static str,
    what: &str,
    o: &Observed<T>,
    out: &mut Vec<Finding>,
) -> bool {
    match o.gap() {
        None if o.get().is_some() => true,
        g => {
            out.push(at_node(
                n,
                id,
                Severity::Error,
                format!(
                    "cannot check {what} on `{}`: {}",
                    n.label,
                    g.map_or("not read".to_string(), ToString::to_string)
                ),
                "use a talosconfig whose role may read it (os:reader or more)",
            ));
            false
        }
    }
}

fn config_is_nvidia(c: &ConfigFile) -> bool {
    let image = c.str(IMAGE).unwrap_or_default();
    image.contains("nvidia") || NVIDIA_SCHEMATICS.iter().any(|s| image.contains(s))
}

fn configured_modules(c: &ConfigFile) -> Vec<String> {
    match c.get(MODULES).map(|n| &n.value) {
        Some(crate::dsl::doc::Value::Seq(items)) => items
            .iter()
            .filter_map(|m| super::config::lookup(m, &[Key("name")]).and_then(|n| n.as_str()))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn one(n: &LiveNode<'_>, out: &mut Vec<Finding>) {
    let v = n.view;
    let x = n.extras;
    let l = v.label.as_str();
    if !v.reachable() {
        out.push(at_node(
            v,
            "L0",
            Severity::Error,
            format!(
                "cannot check `{l}` at all: {}; no live lint could be made",
                v.contact
                    .gap()
                    .map_or("no contact".to_string(), ToString::to_string)
            ),
            "check its power and network, or use a talosconfig whose role may read (os:reader or more), then lint again",
        ));
        return;
    }
    if v.maintenance() {
        return;
    }
    // L1: the running extensions against the hardware, and against the config's image.
    if gap(v, "L1", "the PCI devices", &v.pci_vendors, out)
        && gap(v, "L1", "the extensions", &x.extensions, out)
    {
        let gpu = v
            .pci_vendors
            .get()
            .is_some_and(|p| p.iter().any(|p| p == NVIDIA_VENDOR));
        let running_nvidia = x
            .extensions
            .get()
            .is_some_and(|e| e.iter().any(|e| e.contains("nvidia")));
        if running_nvidia && !gpu {
            out.push(at_node(
                v,
                "L1",
                Severity::Error,
                format!("`{l}` runs the NVIDIA extensions but has no NVIDIA GPU (no PCI vendor {NVIDIA_VENDOR}): it stays `booting`"),
                "reinstall it with the vanilla installer (talosctl upgrade --image ghcr.io/siderolabs/installer:<version>)",
            ));
        }
        if let Some(c) = n.config {
            let want = config_is_nvidia(c);
            if want != running_nvidia {
                out.push(at_config(
                    c,
                    IMAGE,
                    "L1",
                    Severity::Warning,
                    format!(
                        "`{l}` runs {} but its config's installer image is {}: the running image is not the config's",
                        if running_nvidia { "the NVIDIA extensions" } else { "no NVIDIA extensions" },
                        if want { "an NVIDIA one" } else { "a vanilla one" }
                    ),
                    "upgrade the node to the config's image (always with --image), or fix the config",
                ));
            }
        }
    }
    // L2: modules configured against the running image, and loaded.
    if gap(
        v,
        "L2",
        "the configured kernel modules",
        &v.kernel_modules,
        out,
    ) {
        let configured = v.kernel_modules.get().cloned().unwrap_or_default();
        let running_nvidia = x
            .extensions
            .get()
            .is_some_and(|e| e.iter().any(|e| e.contains("nvidia")));
        let missing: Vec<&str> = NVIDIA_MODULES
            .iter()
            .copied()
            .filter(|m| !configured.iter().any(|c| c == m))
            .collect();
        if running_nvidia && !missing.is_empty() {
            let message = format!(
                "`{l}` runs the NVIDIA image but its active config lacks the kernel modules {}: ext-nvidia-persistenced waits forever",
                missing.join(", ")
            );
            out.push(match n.config {
                Some(c) => at_config(
                    c,
                    MODULES,
                    "L2",
                    Severity::Error,
                    message,
                    "runbook run gpu-enable",
                ),
                None => at_node(v, "L2", Severity::Error, message, "runbook run gpu-enable"),
            });
        }
        if running_nvidia
            && missing.is_empty()
            && let Some(loaded) = x.loaded_modules.get()
            && !loaded.iter().any(|m| m == "nvidia")
        {
            out.push(at_node(
                v,
                "L2",
                Severity::Warning,
                format!("the nvidia modules are configured on `{l}` but not loaded"),
                "talosctl -n <node> dmesg | grep -i nvidia; reboot-verify the node",
            ));
        }
        if let Some(c) = n.config {
            let in_file = configured_modules(c);
            let differ = NVIDIA_MODULES
                .iter()
                .any(|m| in_file.iter().any(|f| f == m) != configured.iter().any(|f| f == m));
            if differ {
                out.push(at_config(
                    c,
                    MODULES,
                    "L2",
                    Severity::Warning,
                    format!(
                        "the nvidia kernel modules in this config differ from those `{l}` runs with"
                    ),
                    "apply the config (or update the file from the node) so both agree",
                ));
            }
        }
    }
    // L4: the install disk with removable media attached.
    if gap(v, "L4", "the disks", &v.disks, out) {
        let disks = v.disks.get().cloned().unwrap_or_default();
        let usb: Vec<&str> = disks
            .iter()
            .filter(|d| d.transport == "usb")
            .map(|d| d.dev_path.as_str())
            .collect();
        if let Some(c) = n.config
            && !usb.is_empty()
            && c.get(SELECTOR).is_none()
            && let Some(disk) = c.str(DISK)
        {
            let bare = disk.starts_with("/dev/sd") && !disk.contains("/by-");
            let on_usb = usb.contains(&disk);
            if bare || on_usb {
                out.push(at_config(
                    c,
                    DISK,
                    "L4",
                    Severity::Error,
                    format!(
                        "install disk `{disk}` is a bare kernel name and removable media is attached to `{l}` ({}){}: the name may point at another disk",
                        usb.join(", "),
                        if on_usb { "; it IS the USB stick now" } else { "" }
                    ),
                    "use machine.install.diskSelector (serial or model+size) or a /dev/disk/by-id path",
                ));
            }
        }
    }
    // L15: no `init` node.
    if let Some(t) = v.machine_type.get()
        && t == "init"
    {
        out.push(at_node(
            v,
            "L15",
            Severity::Error,
            format!("`{l}` has machine type `init` (deprecated; breaks disaster recovery)"),
            "reapply its config with machine.type: controlplane",
        ));
    }
    // L18: time in sync.
    if v.unmet.iter().any(|u| u.starts_with("time")) {
        out.push(at_node(
            v,
            "L18",
            Severity::Error,
            format!("time is not in sync on `{l}` (bootstrap refuses without it)"),
            "check machine.time servers and the network path to them",
        ));
    }
    // L19: no etcd alarm.
    if let Some(a) = v.alarms.get()
        && !a.is_empty()
    {
        out.push(at_node(
            v,
            "L19",
            Severity::Error,
            format!("etcd alarms on `{l}`: {}", a.join(", ")),
            "talosctl etcd alarm list; defragment and disarm once the cause is fixed",
        ));
    }
}

/// Every live lint over every node; findings sorted like the static ones.
pub fn lint(view: &ClusterView, nodes: &[LiveNode<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in nodes {
        one(n, &mut out);
    }
    // L17: version skew between nodes, and against this engine's client.
    let versions: std::collections::BTreeMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| {
            n.extras
                .talos_version
                .get()
                .map(|v| (n.view.label.as_str(), v.as_str()))
        })
        .collect();
    let distinct: std::collections::BTreeSet<&str> = versions.values().copied().collect();
    if distinct.len() > 1 {
        out.push(Finding {
            id: "L17",
            severity: Severity::Warning,
            file: "live:cluster".into(),
            line: 0,
            column: 0,
            message: format!(
                "Talos version skew: {}",
                versions
                    .iter()
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            fix: "upgrade the older nodes one at a time".into(),
        });
    }
    for (node, v) in &versions {
        if !(v.starts_with(CLIENT_MINOR)
            && v[CLIENT_MINOR.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == '.'))
        {
            out.push(Finding {
                id: "L17",
                severity: Severity::Warning,
                file: format!("live:{node}"),
                line: 0,
                column: 0,
                message: format!(
                    "`{node}` runs Talos {v}; this engine's client speaks {CLIENT_MINOR}.x"
                ),
                fix: "check docs/design/talos-versions.md for what changed".into(),
            });
        }
    }
    let _ = view;
    out.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.id).cmp(&(b.file.as_str(), b.line, b.column, b.id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;
    use crate::condition::view::{Gap, GapKind};

    fn extras(ext: &[&str], version: &str) -> NodeExtras {
        NodeExtras {
            extensions: Observed::Answered(ext.iter().map(|s| s.to_string()).collect()),
            talos_version: Observed::Answered(version.into()),
            loaded_modules: Observed::Answered(vec![]),
            ..NodeExtras::default()
        }
    }

    fn ready(v: &mut ClusterView) {
        for n in &mut v.nodes {
            n.pci_vendors = Observed::Answered(vec![]);
            n.kernel_modules = Observed::Answered(vec![]);
            n.disks = Observed::Answered(vec![]);
        }
    }

    fn ids(f: &[Finding]) -> Vec<(&str, &str, Severity)> {
        f.iter()
            .map(|f| (f.id, f.file.as_str(), f.severity))
            .collect()
    }

    #[test]
    fn nvidia_image_without_gpu_modules_missing_and_skew_are_found() {
        let mut v = three();
        ready(&mut v);
        v.nodes[0].pci_vendors = Observed::Answered(vec![NVIDIA_VENDOR.into()]);
        let x = [
            extras(&["nonfree-kmod-nvidia-production"], "v1.11.5"),
            extras(&["nonfree-kmod-nvidia-production"], "v1.11.5"),
            extras(&[], "v1.12.0"),
        ];
        let nodes: Vec<LiveNode<'_>> = v
            .nodes
            .iter()
            .zip(&x)
            .map(|(view, extras)| LiveNode {
                view,
                extras,
                config: None,
            })
            .collect();
        let f = lint(&v, &nodes);
        let got = ids(&f);
        assert!(got.contains(&("L1", "live:b", Severity::Error)), "{got:?}");
        assert!(got.contains(&("L2", "live:a", Severity::Error)), "{got:?}");
        assert!(
            got.contains(&("L17", "live:cluster", Severity::Warning)),
            "{got:?}"
        );
        assert!(
            got.contains(&("L17", "live:c", Severity::Warning)),
            "{got:?}"
        );
        assert!(
            !got.iter().any(|g| g.1 == "live:a" && g.0 == "L1"),
            "{got:?}"
        );
    }

    #[test]
    fn a_fact_that_could_not_be_read_is_an_error_and_a_silent_node_is_one_finding() {
        let mut v = three();
        ready(&mut v);
        v.nodes[1].disks = Observed::Missing(Gap::new("Disks", GapKind::PermissionDenied, "no"));
        v.nodes[2] = NodeView::silent(
            "c",
            Gap::new("MachineStatus", GapKind::Unreachable, "refused"),
        );
        let x = [
            extras(&[], "v1.11.5"),
            extras(&[], "v1.11.5"),
            NodeExtras::default(),
        ];
        let nodes: Vec<LiveNode<'_>> = v
            .nodes
            .iter()
            .zip(&x)
            .map(|(view, extras)| LiveNode {
                view,
                extras,
                config: None,
            })
            .collect();
        let got = ids(&lint(&v, &nodes))
            .into_iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c))
            .collect::<Vec<_>>();
        assert!(
            got.contains(&("L4".into(), "live:b".into(), Severity::Error)),
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|g| g.1 == "live:c").count(), 1, "{got:?}");
    }
}
