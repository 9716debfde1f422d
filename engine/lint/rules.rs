//! The lint rules, one function each (ids from `talos-procedures.md` §5). Per-node rules read
//! one config and its inventory entry; [`across`] compares the configs of one cluster.

use super::config::Seg::{Index, Key};
use super::config::{ConfigFile, Seg};
use super::{Finding, Severity, Target};
use crate::condition::talos::{NVIDIA_MODULES, NVIDIA_SCHEMATICS};
use crate::dsl::doc::Value;
use crate::inventory::Gpu;

const IMAGE: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("image")];
const DISK: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("disk")];
const SELECTOR: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("diskSelector")];
const WIPE: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("wipe")];
const EXTENSIONS: &[Seg<'static>] = &[Key("machine"), Key("install"), Key("extensions")];
const MODULES: &[Seg<'static>] = &[Key("machine"), Key("kernel"), Key("modules")];
const TYPE: &[Seg<'static>] = &[Key("machine"), Key("type")];
const ENDPOINT: &[Seg<'static>] = &[Key("cluster"), Key("controlPlane"), Key("endpoint")];
const SCHEDULING: &[Seg<'static>] = &[Key("cluster"), Key("allowSchedulingOnControlPlanes")];

fn finding(
    c: &ConfigFile,
    path: &[Seg<'_>],
    id: &'static str,
    severity: Severity,
    message: String,
    fix: impl Into<String>,
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

fn extension_images(c: &ConfigFile) -> Vec<(usize, String)> {
    match c.get(EXTENSIONS).map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| {
                super::config::lookup(it, &[Key("image")])
                    .and_then(|n| n.as_str())
                    .map(|s| (i, s.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an installer image (or the config's extensions) carries the NVIDIA drivers.
fn is_nvidia(c: &ConfigFile) -> bool {
    let image = c.str(IMAGE).unwrap_or_default();
    image.contains("nvidia")
        || NVIDIA_SCHEMATICS.iter().any(|s| image.contains(s))
        || extension_images(c)
            .iter()
            .any(|(_, i)| i.contains("nvidia") && i.contains("kmod"))
}

/// The Talos version in an installer image tag (`…installer:v1.11.5` → `v1.11.5`).
fn talos_version(image: &str) -> Option<&str> {
    let tag = image.rsplit_once(':')?.1;
    tag.starts_with('v').then_some(tag)
}

fn modules(c: &ConfigFile) -> Vec<String> {
    match c.get(MODULES).map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|m| super::config::lookup(m, &[Key("name")]).and_then(|n| n.as_str()))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn node_name(t: &Target<'_>) -> String {
    t.node
        .map(|n| n.name.clone())
        .unwrap_or_else(|| t.config.path.display().to_string())
}

/// The rules that look at one node's config.
pub(super) fn per_node(t: &Target<'_>, out: &mut Vec<Finding>) {
    l1_image_matches_hardware(t, out);
    l2_modules(t, out);
    l3_driver_versions(t, out);
    l4_stable_disk(t, out);
    l5_wipe(t, out);
    l15_no_init(t, out);
}

fn l1_image_matches_hardware(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    let Some(node) = t.node else {
        out.push(finding(
            c,
            IMAGE,
            "L1",
            Severity::Warning,
            "cannot check the installer image against the hardware: the node is not in an inventory (give --inventory with `gpu: nvidia|none`)".into(),
            "list the node in cluster.yaml and lint with --inventory",
        ));
        return;
    };
    let nvidia = is_nvidia(c);
    let image = c.str(IMAGE);
    match (node.gpu, nvidia, image) {
        (Gpu::Nvidia, false, None) => out.push(finding(
            c,
            IMAGE,
            "L1",
            Severity::Error,
            format!("`{}` has an NVIDIA GPU but its config names no installer image: talosctl upgrade defaults to the vanilla installer, which strips the NVIDIA extensions", node.name),
            "set machine.install.image to the NVIDIA Image Factory installer",
        )),
        (Gpu::Nvidia, false, Some(image)) => out.push(finding(
            c,
            IMAGE,
            "L1",
            Severity::Error,
            format!("`{}` has an NVIDIA GPU but gets `{image}`, an image without the NVIDIA extensions", node.name),
            "use the NVIDIA Image Factory installer (factory.talos.dev/installer/<schematic>:<version>)",
        )),
        (Gpu::None, true, image) => out.push(finding(
            c,
            IMAGE,
            "L1",
            Severity::Error,
            format!(
                "`{}` has no NVIDIA GPU but gets the NVIDIA image{}: it would hang in `booting` waiting for a driver that never loads (seed: node .223)",
                node.name,
                image.map(|i| format!(" `{i}`")).unwrap_or_default()
            ),
            format!(
                "use the vanilla installer ghcr.io/siderolabs/installer:{}",
                image.and_then(talos_version).unwrap_or("<version>")
            ),
        )),
        _ => {}
    }
}

fn l2_modules(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    let have = modules(c);
    let nvidia_loaded: Vec<&String> = have.iter().filter(|m| m.starts_with("nvidia")).collect();
    if is_nvidia(c) {
        let missing: Vec<&str> = NVIDIA_MODULES
            .iter()
            .copied()
            .filter(|m| !have.iter().any(|h| h == m))
            .collect();
        if !missing.is_empty() {
            let at = if c.get(MODULES).is_some() {
                MODULES
            } else {
                IMAGE
            };
            out.push(finding(
                c,
                at,
                "L2",
                Severity::Error,
                format!(
                    "`{}` runs the NVIDIA image but does not load {}: ext-nvidia-persistenced waits for /sys/bus/pci/drivers/nvidia and the node hangs in `booting` (the seed's node .20)",
                    node_name(t),
                    missing.join(", ")
                ),
                "add machine.kernel.modules: [{name: nvidia}, {name: nvidia_uvm}, {name: nvidia_drm}, {name: nvidia_modeset}]",
            ));
        }
    } else if !nvidia_loaded.is_empty() {
        out.push(finding(
            c,
            MODULES,
            "L2",
            Severity::Error,
            format!(
                "`{}` loads {} without the NVIDIA image: the modules do not exist there",
                node_name(t),
                nvidia_loaded
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "remove the nvidia modules, or give this node the NVIDIA image if it has the GPU",
        ));
    }
}

/// `…/nonfree-kmod-nvidia-production:550.90.07-v1.11.5` → ("550.90.07", "v1.11.5").
fn split_tag(image: &str) -> Option<(&str, &str)> {
    let tag = image.rsplit_once(':')?.1;
    tag.split_once('-')
}

fn l3_driver_versions(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    let exts = extension_images(c);
    let kmod = exts.iter().find(|(_, i)| {
        i.contains("nonfree-kmod-nvidia") || i.contains("nvidia-open-gpu-kernel-modules")
    });
    let toolkit = exts
        .iter()
        .find(|(_, i)| i.contains("nvidia-container-toolkit"));
    let at = |i: usize| [EXTENSIONS, &[Index(i), Key("image")]].concat();
    match (kmod, toolkit) {
        (None, None) => {}
        (Some((i, _)), None) => out.push(finding(
            c,
            &at(*i),
            "L3",
            Severity::Error,
            "the NVIDIA kernel module extension has no nvidia-container-toolkit beside it".into(),
            "add the nvidia-container-toolkit extension with the same driver version",
        )),
        (None, Some((i, _))) => out.push(finding(
            c,
            &at(*i),
            "L3",
            Severity::Error,
            "nvidia-container-toolkit without an NVIDIA kernel module extension".into(),
            "add nonfree-kmod-nvidia (or nvidia-open-gpu-kernel-modules) with the same driver version",
        )),
        (Some((ki, k)), Some((ti, tk))) => {
            let (kd, kv) = split_tag(k).unwrap_or(("", ""));
            let (td, _) = split_tag(tk).unwrap_or(("", ""));
            if kd != td {
                out.push(finding(
                    c,
                    &at(*ti),
                    "L3",
                    Severity::Error,
                    format!("driver versions disagree: kmod {kd:?}, toolkit {td:?}"),
                    "use the same driver version (and the same production/lts branch) for both",
                ));
            }
            if let Some(talos) = c.str(IMAGE).and_then(talos_version)
                && kv != talos
            {
                out.push(finding(
                    c,
                    &at(*ki),
                    "L3",
                    Severity::Error,
                    format!("the NVIDIA kmod is built for Talos {kv:?} but the installer is {talos}"),
                    format!("use the kmod tag built for {talos}"),
                ));
            }
        }
    }
}

/// A bare kernel name (`/dev/sda`, `/dev/nvme0n1`, `/dev/mmcblk0`): it moves when disks come
/// and go.
fn is_bare_device(disk: &str) -> bool {
    disk.starts_with("/dev/") && !disk.starts_with("/dev/disk/")
}

fn l4_stable_disk(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    if c.get(SELECTOR).is_some() {
        return;
    }
    let Some(disk) = c.str(DISK) else {
        return;
    };
    if !is_bare_device(disk) {
        return;
    }
    match t.node {
        None => out.push(finding(
            c,
            DISK,
            "L4",
            Severity::Warning,
            format!("install disk `{disk}` is a kernel name that moves when removable media is attached; whether this node has any is in the inventory (`removable_media`), which was not given"),
            "give --inventory, or pin the disk with machine.install.diskSelector (serial, wwid or model) or a /dev/disk/by-id path",
        )),
        Some(n) if n.removable_media => out.push(finding(
            c,
            DISK,
            "L4",
            Severity::Error,
            format!("install disk `{disk}` on `{}`, which may have a USB stick attached: the disk behind `{disk}` moves (seed: the Mac's SSD is /dev/sda without the stick, /dev/sdc with it)", n.name),
            "pin the disk with machine.install.diskSelector (serial, wwid or model) or a /dev/disk/by-id path",
        )),
        Some(_) => {}
    }
}

fn l5_wipe(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    if matches!(c.get(WIPE).map(|n| &n.value), Some(Value::Bool(true))) {
        out.push(finding(
            c,
            WIPE,
            "L5",
            Severity::Warning,
            "`wipe: true` erases the install disk when this config installs".into(),
            "keep it only for a first install in full-rebuild or node-replace; set `wipe: false` in the config you keep",
        ));
    }
}

fn l15_no_init(t: &Target<'_>, out: &mut Vec<Finding>) {
    let c = t.config;
    if c.str(TYPE) == Some("init") {
        out.push(finding(
            c,
            TYPE,
            "L15",
            Severity::Error,
            "`machine.type: init` is deprecated: such a node bootstraps etcd on its own, which breaks disaster recovery".into(),
            "use `type: controlplane` and bootstrap exactly once with `talosctl bootstrap` (or a runbook)",
        ));
    }
}

/// Identity and secrets every node of one cluster must share (the secrets bundle).
const SHARED: &[&[Seg<'static>]] = &[
    &[Key("cluster"), Key("id")],
    &[Key("cluster"), Key("secret")],
    &[Key("cluster"), Key("token")],
    &[Key("cluster"), Key("ca"), Key("crt")],
    &[Key("cluster"), Key("aggregatorCA"), Key("crt")],
    &[Key("cluster"), Key("serviceAccount"), Key("key")],
    &[Key("cluster"), Key("etcd"), Key("ca"), Key("crt")],
    &[Key("cluster"), Key("secretboxEncryptionSecret")],
    &[Key("machine"), Key("ca"), Key("crt")],
    &[Key("machine"), Key("token")],
];

fn dotted(path: &[Seg<'_>]) -> String {
    path.iter()
        .map(|s| match s {
            Key(k) => (*k).to_string(),
            Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The rules that compare configs.
pub(super) fn across(targets: &[Target<'_>], out: &mut Vec<Finding>) {
    let configs: Vec<&ConfigFile> = targets
        .iter()
        .map(|t| t.config)
        .filter(|c| c.has_machine_doc())
        .collect();
    l13_shared_identity(&configs, out);
    l14_endpoint(targets, out);
    l16_scheduling(&configs, out);
}

fn l13_shared_identity(configs: &[&ConfigFile], out: &mut Vec<Finding>) {
    if configs.len() < 2 {
        return;
    }
    for path in SHARED {
        let values: Vec<(&ConfigFile, &str)> = configs
            .iter()
            .filter_map(|c| c.str(path).map(|v| (*c, v)))
            .collect();
        let Some((first, reference)) = values.first() else {
            continue;
        };
        for (c, v) in values.iter().skip(1) {
            if v != reference {
                out.push(finding(
                    c,
                    path,
                    "L13",
                    Severity::Error,
                    format!(
                        "`{}` differs from `{}`: these configs come from different secrets bundles (value not shown)",
                        dotted(path),
                        first.path.display()
                    ),
                    "generate every node's config from one secrets bundle (talosctl gen secrets, then gen config --with-secrets)",
                ));
            }
        }
    }
}

fn endpoint_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    if let Some(stripped) = hostport.strip_prefix('[') {
        return stripped.split_once(']').map(|(h, _)| h);
    }
    Some(hostport.rsplit_once(':').map_or(hostport, |(h, _)| h))
}

fn vips(c: &ConfigFile) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Value::Seq(ifaces)) = c
        .get(&[Key("machine"), Key("network"), Key("interfaces")])
        .map(|n| &n.value)
    {
        for i in ifaces {
            if let Some(ip) =
                super::config::lookup(i, &[Key("vip"), Key("ip")]).and_then(|n| n.as_str())
            {
                out.push(ip.to_string());
            }
        }
    }
    out
}

fn l14_endpoint(targets: &[Target<'_>], out: &mut Vec<Finding>) {
    let vips: Vec<String> = targets.iter().flat_map(|t| vips(t.config)).collect();
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t.node.map(|n| n.name.as_str()))
        .collect();
    for t in targets {
        let c = t.config;
        let Some(url) = c.str(ENDPOINT) else { continue };
        let Some(host) = endpoint_host(url) else {
            continue;
        };
        if vips.iter().any(|v| v == host) {
            continue;
        }
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        if names.contains(&host) || (is_ip && names.is_empty()) {
            out.push(finding(
                c,
                ENDPOINT,
                "L14",
                Severity::Warning,
                format!("the control-plane endpoint `{url}` is one node's address: when that node reboots or is rebuilt, every kubelet and client loses the API"),
                "use a VIP (machine.network.interfaces[].vip), a DNS name or a load balancer covering every control plane",
            ));
        }
    }
}

fn l16_scheduling(configs: &[&ConfigFile], out: &mut Vec<Finding>) {
    if configs.is_empty() {
        return;
    }
    let all_cp = configs
        .iter()
        .all(|c| matches!(c.str(TYPE), Some("controlplane" | "init")));
    if !all_cp {
        return;
    }
    for c in configs {
        let on = matches!(c.get(SCHEDULING).map(|n| &n.value), Some(Value::Bool(true)));
        if !on {
            out.push(finding(
                c,
                SCHEDULING,
                "L16",
                Severity::Warning,
                "every node is a control plane but allowSchedulingOnControlPlanes is off: workloads, and the NVIDIA device plugin, get no node".into(),
                "set cluster.allowSchedulingOnControlPlanes: true",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::InventoryNode;
    use std::path::{Path, PathBuf};

    fn cfg(name: &str, text: &str) -> ConfigFile {
        ConfigFile::from_parts(Path::new(name), text, None).unwrap()
    }

    fn node(name: &str, gpu: Gpu, removable: bool) -> InventoryNode {
        InventoryNode {
            name: name.into(),
            config: Some(PathBuf::from(name)),
            gpu,
            removable_media: removable,
        }
    }

    fn ids(f: &[Finding]) -> Vec<(&str, Severity, usize)> {
        f.iter().map(|f| (f.id, f.severity, f.line)).collect()
    }

    const NV: &str = "factory.talos.dev/installer/86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0:v1.11.5";

    #[test]
    fn nvidia_image_without_modules_and_on_a_node_without_gpu() {
        let text = format!(
            "version: v1alpha1\nmachine:\n  type: controlplane\n  install:\n    image: {NV}\n"
        );
        let c = cfg("a.yaml", &text);
        let gpu = node("a", Gpu::Nvidia, false);
        let mut out = Vec::new();
        per_node(
            &Target {
                config: &c,
                node: Some(&gpu),
            },
            &mut out,
        );
        assert_eq!(ids(&out), vec![("L2", Severity::Error, 5)]);
        assert!(
            out[0]
                .message
                .contains("nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset")
        );
        let plain = node("a", Gpu::None, false);
        let mut out = Vec::new();
        per_node(
            &Target {
                config: &c,
                node: Some(&plain),
            },
            &mut out,
        );
        assert_eq!(out[0].id, "L1");
        assert!(
            out[0].fix.contains("ghcr.io/siderolabs/installer:v1.11.5"),
            "{}",
            out[0].fix
        );
    }

    #[test]
    fn driver_versions_must_agree() {
        let text = "version: v1alpha1\nmachine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.11.5\n    extensions:\n      - image: ghcr.io/siderolabs/nonfree-kmod-nvidia-production:550.90.07-v1.11.4\n      - image: ghcr.io/siderolabs/nvidia-container-toolkit-production:550.54.15-v1.17.3\n  kernel:\n    modules: [{name: nvidia}, {name: nvidia_uvm}, {name: nvidia_drm}, {name: nvidia_modeset}]\n";
        let c = cfg("a.yaml", text);
        let mut out = Vec::new();
        l3_driver_versions(
            &Target {
                config: &c,
                node: None,
            },
            &mut out,
        );
        assert_eq!(
            ids(&out),
            vec![("L3", Severity::Error, 7), ("L3", Severity::Error, 6)]
        );
    }

    #[test]
    fn identity_must_be_shared_and_values_are_not_shown() {
        let a = cfg(
            "a.yaml",
            "version: v1alpha1\nmachine: {type: controlplane}\ncluster:\n  id: AAA\n  secret: s1\n",
        );
        let b = cfg(
            "b.yaml",
            "version: v1alpha1\nmachine: {type: controlplane}\ncluster:\n  id: AAA\n  secret: s2\n",
        );
        let mut out = Vec::new();
        l13_shared_identity(&[&a, &b], &mut out);
        assert_eq!(ids(&out), vec![("L13", Severity::Error, 5)]);
        assert_eq!(out[0].file, "b.yaml");
        assert!(!out[0].message.contains("s1") && !out[0].message.contains("s2"));
    }

    #[test]
    fn init_type_and_scheduling_and_wipe() {
        let c = cfg(
            "a.yaml",
            "version: v1alpha1\nmachine:\n  type: init\n  install:\n    wipe: true\ncluster:\n  allowSchedulingOnControlPlanes: false\n",
        );
        let t = Target {
            config: &c,
            node: None,
        };
        let mut out = Vec::new();
        l15_no_init(&t, &mut out);
        l5_wipe(&t, &mut out);
        l16_scheduling(&[&c], &mut out);
        assert_eq!(
            ids(&out),
            vec![
                ("L15", Severity::Error, 3),
                ("L5", Severity::Warning, 5),
                ("L16", Severity::Warning, 7)
            ]
        );
        // A worker in the set: scheduling on control planes is not needed.
        let w = cfg("w.yaml", "version: v1alpha1\nmachine:\n  type: worker\n");
        let mut out = Vec::new();
        l16_scheduling(&[&c, &w], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn endpoint_host_parsing() {
        assert_eq!(
            endpoint_host("https://192.168.2.20:6443"),
            Some("192.168.2.20")
        );
        assert_eq!(endpoint_host("https://[fd00::1]:6443/"), Some("fd00::1"));
        assert_eq!(endpoint_host("https://k8s.lan:6443"), Some("k8s.lan"));
    }
}
