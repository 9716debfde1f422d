//! The parts of a v1alpha1 machine config the simulated node acts on (type, hostname, install
//! disk and image, kernel modules), what an apply changes, and the configs the scenarios start
//! from.

use super::*;

/// `machine.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineType {
    /// `controlplane` (or the legacy `init`).
    ControlPlane,
    /// `worker`.
    Worker,
}

/// The parts of a v1alpha1 machine config the model needs, plus the raw text.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    raw: String,
    doc: YamlOwned,
    /// `machine.type`.
    pub machine_type: MachineType,
    /// `machine.network.hostname`, if set.
    pub hostname: Option<String>,
    /// `machine.install.disk`.
    pub install_disk: Option<String>,
    /// `machine.install.diskSelector.serial` (used when `disk` is absent).
    pub install_disk_serial: Option<String>,
    /// `machine.install.image`.
    pub install_image: Option<String>,
    /// `machine.kernel.modules[].name`.
    pub kernel_modules: Vec<String>,
    /// `cluster.allowSchedulingOnControlPlanes`.
    pub allow_scheduling_on_control_planes: bool,
}

fn get<'a>(y: &'a YamlOwned, path: &[&str]) -> Option<&'a YamlOwned> {
    path.iter()
        .try_fold(y, |node, key| node.as_mapping_get(key))
}

fn get_str(y: &YamlOwned, path: &[&str]) -> Option<String> {
    get(y, path).and_then(|v| v.as_str()).map(str::to_string)
}

/// Sections that apply without a reboot (`CanApplyImmediate`), as paths from the root.
const IMMEDIATE: &[&[&str]] = &[
    &["debug"],
    &["cluster"],
    &["machine", "ca"],
    &["machine", "acceptedCAs"],
    &["machine", "time"],
    &["machine", "certSANs"],
    &["machine", "install"],
    &["machine", "network"],
    &["machine", "sysfs"],
    &["machine", "sysctls"],
    &["machine", "logging"],
    &["machine", "controlplane"],
    &["machine", "kubelet"],
    &["machine", "kernel"],
    &["machine", "registries"],
    &["machine", "pods"],
    &["machine", "seccompProfiles"],
    &["machine", "nodeAnnotations"],
    &["machine", "nodeLabels"],
    &["machine", "nodeTaints"],
    &["machine", "features", "kubernetesTalosAPIAccess"],
    &["machine", "features", "kubePrism"],
    &["machine", "features", "hostDNS"],
    &["machine", "features", "imageCache"],
    &["machine", "features", "nodeAddressSortAlgorithm"],
];

impl MachineConfig {
    /// Parses a machine config; invalid YAML or a missing v1alpha1 document gives
    /// `InvalidArgument`, as Talos answers `ApplyConfiguration`.
    pub fn parse(text: &str) -> Result<MachineConfig, ApiError> {
        let docs = YamlOwned::load_from_str(text).map_err(|e| {
            ApiError::new(
                Code::InvalidArgument,
                format!("failed to parse config: {e}"),
            )
        })?;
        let doc = docs
            .into_iter()
            .find(|d| d.as_mapping_get("version").and_then(|v| v.as_str()) == Some("v1alpha1"))
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidArgument,
                    "the config is missing v1alpha1 document, use `talosctl patch mc` to apply changes",
                )
            })?;
        let machine_type = match get_str(&doc, &["machine", "type"]).as_deref() {
            Some("controlplane") | Some("init") => MachineType::ControlPlane,
            Some("worker") => MachineType::Worker,
            other => {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    format!(
                        "1 error occurred:\n\t* unknown machine type {:?}\n\n",
                        other.unwrap_or("")
                    ),
                ));
            }
        };
        let kernel_modules = get(&doc, &["machine", "kernel", "modules"])
            .and_then(|m| m.as_vec())
            .map(|v| {
                v.iter()
                    .filter_map(|m| m.as_mapping_get("name").and_then(|n| n.as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(MachineConfig {
            raw: text.to_string(),
            machine_type,
            hostname: get_str(&doc, &["machine", "network", "hostname"]),
            install_disk: get_str(&doc, &["machine", "install", "disk"]),
            install_disk_serial: get_str(&doc, &["machine", "install", "diskSelector", "serial"]),
            install_image: get_str(&doc, &["machine", "install", "image"]),
            kernel_modules,
            allow_scheduling_on_control_planes: get(
                &doc,
                &["cluster", "allowSchedulingOnControlPlanes"],
            )
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
            doc,
        })
    }

    /// The config text as submitted.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed v1alpha1 document (parsed once, when the config was applied).
    pub(crate) fn document(&self) -> &YamlOwned {
        &self.doc
    }

    /// True if going from `self` to `new` touches a section that needs a reboot.
    pub fn needs_reboot_to_apply(&self, new: &MachineConfig) -> bool {
        let mut changed = Vec::new();
        diff_paths(&self.doc, &new.doc, &mut Vec::new(), &mut changed);
        changed.iter().any(|path| {
            !IMMEDIATE
                .iter()
                .any(|imm| path.len() >= imm.len() && path[..imm.len()] == **imm)
        })
    }

    /// Module names removed by `new` (unloading needs a reboot).
    pub fn removed_modules(&self, new: &MachineConfig) -> Vec<String> {
        self.kernel_modules
            .iter()
            .filter(|m| !new.kernel_modules.contains(m))
            .cloned()
            .collect()
    }
}

/// Collects the paths (mapping keys) whose subtrees differ.
fn diff_paths(a: &YamlOwned, b: &YamlOwned, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match (a.as_mapping(), b.as_mapping()) {
        (Some(ma), Some(mb)) => {
            let mut keys: Vec<&YamlOwned> = ma.keys().collect();
            keys.extend(mb.keys().filter(|k| !ma.contains_key(*k)));
            for k in keys {
                let name = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                path.push(name);
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => diff_paths(x, y, path, out),
                    _ => out.push(path.clone()),
                }
                path.pop();
            }
        }
        _ => {
            if a != b {
                out.push(path.clone());
            }
        }
    }
}

/// A minimal control-plane config for `hostname`, optionally with the NVIDIA modules.
pub fn control_plane_config(
    hostname: &str,
    install_disk: &str,
    image: &str,
    nvidia_modules: bool,
) -> String {
    let mut s = format!(
        "version: v1alpha1\nmachine:\n  type: controlplane\n  token: simtoken.0123456789abcdef\n  network:\n    hostname: {hostname}\n  install:\n    disk: {install_disk}\n    image: {image}\n    wipe: true\n"
    );
    if nvidia_modules {
        s.push_str("  kernel:\n    modules:\n");
        for m in NVIDIA_MODULES {
            s.push_str(&format!("      - name: {m}\n"));
        }
        s.push_str("  sysctls:\n    net.core.bpf_jit_harden: 1\n");
    }
    s.push_str(&format!(
        "cluster:\n{SIM_IDENTITY}  clusterName: homelab\n  controlPlane:\n    endpoint: https://192.168.2.20:6443\n  allowSchedulingOnControlPlanes: true\n",
    ));
    s
}

/// The simulated cluster's identity (one secrets bundle, as `talosctl gen secrets` makes it):
/// `cluster.id` and the cluster CA certificate, the same in every node's config (no
/// `cluster.secret`: tests plant secrets of their own there). Fixed values: the simulator's configs are not secret, and a rebuild with new
/// secrets (full-rebuild `fresh`) must be able to tell them apart from new ones.
pub const SIM_IDENTITY: &str = "  id: c2ltLWhvbWVsYWItY2x1c3Rlci1pZGVudGl0eS0wMDAwMDAwMQ==\n  ca:\n    crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tIHNpbS1ob21lbGFiLWNh\n";

/// `config` with its `machine.install.disk` line replaced by a `diskSelector` on `serial`: a
/// disk that stays the same disk when a USB stick renames `/dev/sdX` (lint L4).
pub fn pin_install_disk(config: &str, serial: &str) -> String {
    config
        .lines()
        .map(|l| match l.strip_prefix("    disk: ") {
            Some(_) => format!("    diskSelector:\n      serial: {serial}\n"),
            None => format!("{l}\n"),
        })
        .collect()
}

/// A minimal worker config for `hostname` (`machine.type: worker`: no etcd member, no
/// control-plane static pods; kubelet, pods, drain and reboot like any node).
pub fn worker_config(hostname: &str, install_disk: &str, image: &str) -> String {
    format!(
        "version: v1alpha1\nmachine:\n  type: worker\n  token: simtoken.0123456789abcdef\n  network:\n    hostname: {hostname}\n  install:\n    disk: {install_disk}\n    image: {image}\n    wipe: true\ncluster:\n{SIM_IDENTITY}  clusterName: homelab\n  controlPlane:\n    endpoint: https://192.168.2.20:6443\n"
    )
}
