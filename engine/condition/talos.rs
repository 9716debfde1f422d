//! Talos guards and waits: machine stage, services, boot ids, disks, images and modules.
//!
//! The seed's hardest lesson lives here: Kubernetes `Ready` (and even MachineStatus
//! `ready=true`) does not mean the node finished booting. A node is *running* only when its
//! stage is `running`, it is ready, and no service sits in `Waiting`, `Preparing` or `Failed`
//! (a Waiting extension service, such as `ext-nvidia-persistenced` without its kernel modules,
//! holds the stage at `booting` without appearing in the unmet conditions).

use std::time::Duration;

use crate::condition::view::{ClusterView, NodeView, Verdict};

/// NVIDIA kernel modules a node with the NVIDIA image must configure (lint L2).
pub const NVIDIA_MODULES: &[&str] = &["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"];

/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR: &str = "0x10de";

/// Schematic ids known to carry the NVIDIA extensions (the seed cluster's factory image).
pub const NVIDIA_SCHEMATICS: &[&str] =
    &["86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0"];

fn observed<'a>(view: &'a ClusterView, x: &str) -> Result<&'a NodeView, Verdict> {
    view.node(x)
        .ok_or_else(|| Verdict::fail(format!("`{x}` was not observed")))
}

/// The node is fully booted: stage running, ready, no stuck service.
pub fn node_running(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    running_verdict(n)
}

fn running_verdict(n: &NodeView) -> Verdict {
    let x = &n.label;
    if !n.reachable {
        return Verdict::fail(format!("`{x}` does not answer"));
    }
    let stage = n.stage.as_deref().unwrap_or("unknown");
    let stuck: Vec<String> = n
        .stuck_services()
        .iter()
        .map(|s| format!("{} is {}", s.id, s.state))
        .collect();
    let v = if stage != "running" {
        let mut why = format!("`{x}` is in stage {stage}");
        if !stuck.is_empty() {
            why.push_str(&format!(" ({})", stuck.join(", ")));
        }
        Verdict::fail(why)
    } else if n.ready != Some(true) {
        Verdict::fail(format!(
            "`{x}` is running but not ready: {}",
            if n.unmet.is_empty() {
                "unknown".to_string()
            } else {
                n.unmet.join("; ")
            }
        ))
    } else if !stuck.is_empty() {
        Verdict::fail(format!("`{x}`: {}", stuck.join(", ")))
    } else {
        Verdict::pass(format!("`{x}` is running and ready, no service waiting"))
    };
    v.with("stage", stage).with("stuck_services", stuck)
}

/// G-all-running: every node running (as above) and Kubernetes Ready.
pub fn all_running(view: &ClusterView) -> Verdict {
    if view.nodes.is_empty() {
        return Verdict::fail("no node observed");
    }
    for n in &view.nodes {
        let v = running_verdict(n);
        if !v.holds {
            return v;
        }
        if n.kube_ready != Some(true) {
            return Verdict::fail(format!("Kubernetes does not report `{}` Ready", n.label));
        }
    }
    Verdict::pass(format!(
        "all {} nodes running, ready and Kubernetes Ready",
        view.nodes.len()
    ))
}

/// How a wait poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// The condition holds.
    Holds(Verdict),
    /// Not yet; keep polling.
    NotYet(Verdict),
    /// It will not hold: stop waiting (fast-fail).
    GiveUp(Verdict),
}

impl Poll {
    /// The verdict inside.
    pub fn verdict(&self) -> &Verdict {
        match self {
            Poll::Holds(v) | Poll::NotYet(v) | Poll::GiveUp(v) => v,
        }
    }

    /// Holds or not yet, by the verdict.
    pub fn of(v: Verdict) -> Poll {
        if v.holds {
            Poll::Holds(v)
        } else {
            Poll::NotYet(v)
        }
    }
}

/// W-running(x) with fast-fail: stuck in `booting` with a Waiting service for `fast_fail`
/// (measured from when the wait began) gives up with a diagnostic naming the service.
pub fn running(view: &ClusterView, x: &str, waited: Duration, fast_fail: Duration) -> Poll {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return Poll::NotYet(v),
    };
    let v = running_verdict(n);
    if v.holds {
        return Poll::Holds(v);
    }
    let waiting: Vec<&str> = n
        .services
        .iter()
        .filter(|s| s.state == "Waiting")
        .map(|s| s.id.as_str())
        .collect();
    if n.stage.as_deref() == Some("booting") && !waiting.is_empty() && waited >= fast_fail {
        let mut hint = String::new();
        if waiting.iter().any(|s| s.contains("nvidia")) {
            hint = " (an NVIDIA service waiting usually means the nvidia kernel modules are not configured, or a non-GPU node runs the NVIDIA image: see gpu-enable)".into();
        }
        return Poll::GiveUp(Verdict::fail(format!(
            "`{x}` is stuck in booting: {} waiting{hint}",
            waiting.join(", ")
        )));
    }
    Poll::NotYet(v)
}

/// W-rebooted(x): the boot id differs from the one recorded before the action.
pub fn rebooted(view: &ClusterView, x: &str, before: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    match &n.boot_id {
        Some(now) if now != before => {
            Verdict::pass(format!("`{x}` booted again (boot id changed)"))
                .with("boot_id", now.as_str())
        }
        Some(_) => Verdict::fail(format!("`{x}` has not rebooted yet (same boot id)")),
        None => Verdict::fail(format!("`{x}` does not answer yet")),
    }
}

/// The node's stage is `stage`.
pub fn stage_is(view: &ClusterView, x: &str, stage: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => {
            let now = n.stage.as_deref().unwrap_or("unknown");
            Verdict::from_bool(now == stage, format!("`{x}` is in stage {now}"))
        }
    }
}

/// The node answers the maintenance API.
pub fn maintenance(view: &ClusterView, x: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => Verdict::from_bool(
            n.reachable && n.maintenance,
            if n.reachable && n.maintenance {
                format!("`{x}` is in maintenance mode")
            } else if n.reachable {
                format!("`{x}` answers, but not in maintenance mode")
            } else {
                format!("`{x}` does not answer")
            },
        ),
    }
}

/// A service on the node is in `state`.
pub fn service_in(view: &ClusterView, x: &str, service: &str, state: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => {
            let now = n.service(service).map(|s| s.state.as_str());
            Verdict::from_bool(
                now == Some(state),
                format!("{service} on `{x}` is {}", now.unwrap_or("absent")),
            )
        }
    }
}

/// The node holds no etcd member (so wiping it cannot lower quorum).
pub fn not_member(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    if n.maintenance {
        return Verdict::pass(format!("`{x}` is in maintenance mode: no etcd member"));
    }
    let listed: Vec<&str> = view
        .nodes
        .iter()
        .filter(|o| o.reachable)
        .filter(|o| {
            matches!(&o.members, Some(Ok(list)) if list.iter().any(|m| !m.name.is_empty() && (m.name == n.hostname || m.name == n.label)))
        })
        .map(|o| o.label.as_str())
        .collect();
    if listed.is_empty() {
        Verdict::pass(format!("no node lists `{x}` as an etcd member"))
    } else {
        Verdict::fail(format!(
            "`{x}` is an etcd member (listed by {})",
            listed.join(", ")
        ))
    }
}

/// The node's API does not answer.
pub fn node_down(view: &ClusterView, x: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => Verdict::from_bool(
            !n.reachable,
            if n.reachable {
                format!("`{x}` still answers: it is not dead")
            } else {
                format!("`{x}` does not answer")
            },
        ),
    }
}

/// G-no-init: every node's machine type is `controlplane`.
pub fn no_init(view: &ClusterView) -> Verdict {
    let bad: Vec<String> = view
        .nodes
        .iter()
        .filter(|n| n.reachable && n.machine_type.as_deref().is_some_and(|t| t == "init"))
        .map(|n| n.label.clone())
        .collect();
    Verdict::from_bool(
        bad.is_empty(),
        if bad.is_empty() {
            "no node uses the deprecated init type".to_string()
        } else {
            format!("{} use the deprecated `init` machine type", bad.join(", "))
        },
    )
}

/// Lint L4: the install disk resolves to exactly one writable, non-USB, non-optical disk.
pub fn disk_unambiguous(
    view: &ClusterView,
    x: &str,
    disk: Option<&str>,
    model: Option<&str>,
    serial: Option<&str>,
) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    if n.disks.is_empty() {
        return Verdict::fail(format!("`{x}` reported no disks"));
    }
    let matches: Vec<_> = n
        .disks
        .iter()
        .filter(|d| disk.is_none_or(|p| d.dev_path == p))
        .filter(|d| model.is_none_or(|m| d.model == m))
        .filter(|d| serial.is_none_or(|s| d.serial == s))
        .collect();
    let usb: Vec<&str> = n
        .disks
        .iter()
        .filter(|d| d.transport == "usb")
        .map(|d| d.dev_path.as_str())
        .collect();
    let v = match matches.as_slice() {
        [] => Verdict::fail(format!(
            "no disk on `{x}` matches {}",
            disk.unwrap_or("the selector")
        )),
        [d] if d.transport == "usb" => Verdict::fail(format!(
            "{} on `{x}` is the USB stick ({}), not the install disk: disk paths move when USB media is attached",
            d.dev_path, d.model
        )),
        [d] if d.readonly || d.cdrom => {
            Verdict::fail(format!("{} on `{x}` is read-only or optical", d.dev_path))
        }
        [d] => Verdict::pass(format!(
            "{} on `{x}` is {} (serial {})",
            d.dev_path, d.model, d.serial
        ))
        .with("model", d.model.as_str())
        .with("serial", d.serial.as_str()),
        many => Verdict::fail(format!(
            "{} disks on `{x}` match; pin the disk by serial or model",
            many.len()
        )),
    };
    v.with("usb_disks", usb)
}

fn is_nvidia_image(image: &str) -> bool {
    image.contains("nvidia") || NVIDIA_SCHEMATICS.iter().any(|s| image.contains(s))
}

/// Lint L1: the NVIDIA image only on a node with an NVIDIA GPU, the vanilla one elsewhere.
pub fn image_matches_hardware(view: &ClusterView, x: &str, image: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let gpu = n.pci_vendors.iter().any(|v| v == NVIDIA_VENDOR);
    let nvidia = is_nvidia_image(image);
    let v = match (gpu, nvidia) {
        (true, true) => Verdict::pass(format!("`{x}` has an NVIDIA GPU and gets the NVIDIA image")),
        (false, false) => {
            Verdict::pass(format!("`{x}` has no NVIDIA GPU and gets a vanilla image"))
        }
        (false, true) => Verdict::fail(format!(
            "`{x}` has no NVIDIA GPU but would get the NVIDIA image: it would hang in booting waiting for a driver"
        )),
        (true, false) => Verdict::fail(format!(
            "`{x}` has an NVIDIA GPU but would get an image without the NVIDIA extensions"
        )),
    };
    v.with("gpu", gpu).with("nvidia_image", nvidia)
}

/// Lint L2: a node with the NVIDIA image configures the NVIDIA kernel modules.
pub fn gpu_modules(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let missing: Vec<&str> = NVIDIA_MODULES
        .iter()
        .copied()
        .filter(|m| !n.kernel_modules.iter().any(|k| k == m))
        .collect();
    if missing.is_empty() {
        Verdict::pass(format!("`{x}` configures all NVIDIA kernel modules"))
    } else {
        Verdict::fail(format!(
            "`{x}` does not configure {}: ext-nvidia-persistenced would wait forever and the node hang in booting",
            missing.join(", ")
        ))
        .with("missing_modules", missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;
    use crate::condition::view::{Disk, Service};

    #[test]
    fn ready_is_not_running() {
        let mut v = three();
        let a = &mut v.nodes[0];
        a.stage = Some("booting".into());
        a.ready = Some(true);
        a.kube_ready = Some(true);
        a.services.push(Service {
            id: "ext-nvidia-persistenced".into(),
            state: "Waiting".into(),
            healthy: false,
        });
        let r = node_running(&v, "a");
        assert!(!r.holds);
        assert_eq!(
            r.reason,
            "`a` is in stage booting (ext-nvidia-persistenced is Waiting)"
        );
        assert!(!all_running(&v).holds);
        // Fast-fail only after the configured time.
        assert!(matches!(
            running(&v, "a", Duration::from_secs(60), Duration::from_secs(600)),
            Poll::NotYet(_)
        ));
        let Poll::GiveUp(g) = running(&v, "a", Duration::from_secs(600), Duration::from_secs(600))
        else {
            panic!("expected a fast-fail");
        };
        assert!(
            g.reason.contains("ext-nvidia-persistenced waiting"),
            "{}",
            g.reason
        );
        assert!(g.reason.contains("kernel modules"), "{}", g.reason);
    }

    #[test]
    fn healthy_cluster_is_all_running() {
        assert!(all_running(&three()).holds);
        assert!(matches!(
            running(&three(), "b", Duration::ZERO, Duration::ZERO),
            Poll::Holds(_)
        ));
    }

    #[test]
    fn reboot_is_proven_by_a_new_boot_id() {
        let mut v = three();
        v.nodes[0].boot_id = Some("one".into());
        assert!(!rebooted(&v, "a", "one").holds);
        v.nodes[0].boot_id = Some("two".into());
        assert!(rebooted(&v, "a", "one").holds);
    }

    fn disk(path: &str, model: &str, transport: &str) -> Disk {
        Disk {
            dev_path: path.into(),
            model: model.into(),
            serial: format!("S-{model}"),
            transport: transport.into(),
            readonly: false,
            cdrom: false,
            size: 1 << 40,
        }
    }

    #[test]
    fn usb_disk_shift_is_caught() {
        let mut v = three();
        v.nodes[2].disks = vec![disk("/dev/sda", "APPLE SSD", "sata")];
        assert!(disk_unambiguous(&v, "c", Some("/dev/sda"), None, None).holds);
        // With the USB stick plugged in, /dev/sda is the stick and the SSD moved to /dev/sdc.
        v.nodes[2].disks = vec![
            disk("/dev/sda", "USB Flash", "usb"),
            disk("/dev/sdc", "APPLE SSD", "sata"),
        ];
        let d = disk_unambiguous(&v, "c", Some("/dev/sda"), None, None);
        assert!(!d.holds);
        assert!(d.reason.contains("USB stick"), "{}", d.reason);
        assert!(disk_unambiguous(&v, "c", None, Some("APPLE SSD"), None).holds);
    }

    #[test]
    fn nvidia_image_only_on_gpu_nodes_and_modules_required() {
        let mut v = three();
        v.nodes[0].pci_vendors = vec![NVIDIA_VENDOR.into()];
        let nv = format!(
            "factory.talos.dev/installer/{}:v1.11.5",
            NVIDIA_SCHEMATICS[0]
        );
        assert!(image_matches_hardware(&v, "a", &nv).holds);
        assert!(!image_matches_hardware(&v, "b", &nv).holds);
        assert!(image_matches_hardware(&v, "b", "ghcr.io/siderolabs/installer:v1.11.5").holds);
        assert!(!image_matches_hardware(&v, "a", "ghcr.io/siderolabs/installer:v1.11.5").holds);
        assert!(!gpu_modules(&v, "a").holds);
        v.nodes[0].kernel_modules = NVIDIA_MODULES.iter().map(|s| s.to_string()).collect();
        assert!(gpu_modules(&v, "a").holds);
    }

    #[test]
    fn not_member_and_node_down() {
        let mut v = three();
        assert!(!not_member(&v, "a").holds);
        v.nodes[0].maintenance = true;
        assert!(not_member(&v, "a").holds);
        assert!(!node_down(&v, "b").holds);
        v.nodes[1].reachable = false;
        assert!(node_down(&v, "b").holds);
    }
}
