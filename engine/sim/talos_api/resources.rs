//! COSI resources built from the model: namespace, type, id, the typed spec encoded as
//! `proto_spec`, and the same spec as `yaml_spec` (`talos-api.md` §4).
//!
//! [`KINDS`] is the type table (with the `ResourceDefinitions` talosctl lists in namespace
//! `meta` to resolve words such as `machinestatus`). [`build`] produces the resources of one
//! type on one node; it fails like the node does (down: `Unavailable`). A node in maintenance
//! mode only exposes what the maintenance API shows; other types are empty there.
//! [`ResourceVersions`] gives every resource a version that increases whenever its spec
//! changes, so Get, List and Watch agree, and Watch can tell UPDATED from nothing.
//! YAML is written by hand with 4-space indents, as Go's yaml.v3 prints it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use prost::Message;
use runbook_proto::common::NetIp;
use runbook_proto::cosi::resource::meta::{ResourceDefinitionSpec, resource_definition_spec};
use runbook_proto::cosi::resource::{Metadata, Resource, Spec};
use runbook_proto::resource::config as cfg;
use runbook_proto::talos::resource::definitions::{
    block, cluster, enums, etcd, extensions, hardware, runtime, v1alpha1,
};

use super::WallClock;
use crate::sim::node::{EtcdData, MachineType, Power};
use crate::sim::{ApiError, Cluster, Code, SimTime};

/// One resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Full type name (`MachineStatuses.runtime.talos.dev`).
    pub ty: &'static str,
    /// Namespace.
    pub ns: &'static str,
    /// Display type (singular).
    pub display: &'static str,
    /// Aliases (lower-case words talosctl accepts).
    pub aliases: &'static [&'static str],
    /// Sensitive types need `os:admin`.
    pub sensitive: bool,
    /// Controller that owns the resources.
    pub owner: &'static str,
}

const fn kind(
    ty: &'static str,
    ns: &'static str,
    display: &'static str,
    aliases: &'static [&'static str],
    owner: &'static str,
) -> Kind {
    Kind {
        ty,
        ns,
        display,
        aliases,
        sensitive: false,
        owner,
    }
}

/// Type name of machine configs (sensitive).
pub const MACHINE_CONFIGS: &str = "MachineConfigs.config.talos.dev";
/// Type name of resource definitions.
pub const RESOURCE_DEFINITIONS: &str = "ResourceDefinitions.meta.cosi.dev";

/// Type name of the cluster info (cluster id and name).
pub const INFOS: &str = "Infos.cluster.talos.dev";

/// `InfoSpec` of Talos' `cluster` resources (`clusterId` = 1, `clusterName` = 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoSpec {
    /// The cluster id.
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    /// The cluster name.
    #[prost(string, tag = "2")]
    pub cluster_name: String,
}

/// The `Infos.cluster.talos.dev` resource `current` of a simulator whose id is `cluster_id`.
pub fn info(cluster_id: &str) -> Option<Res> {
    let kind = kind_of(INFOS)?;
    let spec = InfoSpec {
        cluster_id: cluster_id.to_string(),
        cluster_name: "homelab".into(),
    };
    Some(res(
        kind,
        "current",
        &spec,
        format!("clusterId: {}\nclusterName: homelab\n", q(cluster_id)),
    ))
}

/// Every type the simulator serves.
pub const KINDS: &[Kind] = &[
    kind(
        "MachineStatuses.runtime.talos.dev",
        "runtime",
        "MachineStatus",
        &["machinestatus", "machinestatuses", "ms"],
        "runtime.MachineStatusController",
    ),
    kind(
        "Members.cluster.talos.dev",
        "cluster",
        "Member",
        &["member", "members"],
        "cluster.MemberController",
    ),
    kind(
        "ExtensionStatuses.runtime.talos.dev",
        "runtime",
        "ExtensionStatus",
        &["extensionstatus", "extensionstatuses", "extensions", "es"],
        "runtime.ExtensionStatusController",
    ),
    kind(
        "KernelModuleSpecs.runtime.talos.dev",
        "runtime",
        "KernelModuleSpec",
        &["kernelmodulespec", "kernelmodulespecs", "kms"],
        "runtime.KernelModuleConfigController",
    ),
    kind(
        "LoadedKernelModules.runtime.talos.dev",
        "runtime",
        "LoadedKernelModule",
        &[
            "loadedkernelmodule",
            "loadedkernelmodules",
            "modules",
            "lkm",
        ],
        "runtime.LoadedKernelModuleController",
    ),
    kind(
        "Disks.block.talos.dev",
        "runtime",
        "Disk",
        &["disk", "disks"],
        "block.DisksController",
    ),
    kind(
        "SystemDisks.block.talos.dev",
        "runtime",
        "SystemDisk",
        &["systemdisk", "systemdisks"],
        "block.SystemDiskController",
    ),
    Kind {
        ty: MACHINE_CONFIGS,
        ns: "config",
        display: "MachineConfig",
        aliases: &["machineconfig", "machineconfigs", "mc"],
        sensitive: true,
        owner: "",
    },
    kind(
        "Services.v1alpha1.talos.dev",
        "runtime",
        "Service",
        &["service", "services", "svc"],
        "v1alpha1.ServiceController",
    ),
    kind(
        "EtcdMembers.etcd.talos.dev",
        "etcd",
        "EtcdMember",
        &["etcdmember", "etcdmembers"],
        "etcd.MemberController",
    ),
    kind(
        "PCIDevices.hardware.talos.dev",
        "hardware",
        "PCIDevice",
        &["pcidevice", "pcidevices"],
        "hardware.PCIDevicesController",
    ),
    kind(
        "Versions.runtime.talos.dev",
        "runtime",
        "Version",
        &["version", "versions"],
        "runtime.VersionController",
    ),
    kind(
        "MachineTypes.config.talos.dev",
        "config",
        "MachineType",
        &["machinetype", "machinetypes"],
        "config.MachineTypeController",
    ),
    kind(
        INFOS,
        "cluster",
        "Info",
        &["info", "infos"],
        "cluster.InfoController",
    ),
    kind(
        RESOURCE_DEFINITIONS,
        "meta",
        "ResourceDefinition",
        &["resourcedefinition", "resourcedefinitions", "rd", "rds"],
        "",
    ),
];

/// The kind of a type name.
pub fn kind_of(ty: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.ty == ty)
}

/// A resource before versioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Res {
    /// Kind.
    pub kind: &'static Kind,
    /// Id.
    pub id: String,
    /// Encoded typed spec.
    pub proto: Vec<u8>,
    /// YAML spec.
    pub yaml: String,
}

/// A YAML scalar: plain when unambiguous, else double-quoted (JSON strings are valid YAML).
pub fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/')
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._/-+@:".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn list(indent: &str, items: &[String]) -> String {
    if items.is_empty() {
        return " []\n".into();
    }
    let mut s = String::from("\n");
    for i in items {
        s.push_str(&format!("{indent}- {}\n", q(i)));
    }
    s
}

fn res(kind: &'static Kind, id: impl Into<String>, proto: &impl Message, yaml: String) -> Res {
    Res {
        kind,
        id: id.into(),
        proto: proto.encode_to_vec(),
        yaml,
    }
}

fn kind_or_err(ty: &str) -> Result<&'static Kind, ApiError> {
    kind_of(ty).ok_or_else(|| ApiError::new(Code::Internal, format!("unknown kind {ty}")))
}

/// Resources of type `ty` on node `label` (the node must answer).
pub fn build(c: &mut Cluster, label: &str, ty: &str, now: SimTime) -> Result<Vec<Res>, ApiError> {
    let kind = kind_or_err(ty)?;
    // Every node answers Version (maintenance included): the reachability check.
    c.version(label, now)?;
    // COSI lists are sorted by id.
    match build_inner(c, label, kind, now) {
        Err(e) if e.code == Code::Unimplemented => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(mut rs) => {
            rs.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(rs)
        }
    }
}

fn build_inner(
    c: &mut Cluster,
    label: &str,
    kind: &'static Kind,
    now: SimTime,
) -> Result<Vec<Res>, ApiError> {
    let out = match kind.ty {
        "MachineStatuses.runtime.talos.dev" => {
            let ms = c.machine_status(label, now)?;
            let spec = runtime::MachineStatusSpec {
                stage: ms.stage.as_i32(),
                status: Some(runtime::MachineStatusStatus {
                    ready: ms.ready,
                    unmet_conditions: ms
                        .unmet_conditions
                        .iter()
                        .map(|(n, r)| runtime::UnmetCondition {
                            name: n.clone(),
                            reason: r.clone(),
                        })
                        .collect(),
                }),
            };
            let mut y = format!("stage: {}\nstatus:\n    ready: {}\n", q(ms.stage.as_str()), ms.ready);
            if ms.unmet_conditions.is_empty() {
                y.push_str("    unmetConditions: []\n");
            } else {
                y.push_str("    unmetConditions:\n");
                for (n, r) in &ms.unmet_conditions {
                    y.push_str(&format!("        - name: {}\n          reason: {}\n", q(n), q(r)));
                }
            }
            vec![res(kind, "machine", &spec, y)]
        }
        "Members.cluster.talos.dev" => {
            let mut out = Vec::new();
            for n in c.nodes() {
                let Some(config) = n.config() else { continue };
                if n.power() != Power::On {
                    continue;
                }
                let cp = config.machine_type == MachineType::ControlPlane;
                let node_id = format!("{:016x}", crate::sim::node::splitmix(
                    n.label().bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b))),
                ));
                let ip: Vec<u8> = n
                    .label()
                    .parse::<std::net::IpAddr>()
                    .map(|ip| match ip {
                        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                    })
                    .unwrap_or_default();
                let spec = cluster::MemberSpec {
                    node_id: node_id.clone(),
                    addresses: vec![NetIp { ip }],
                    hostname: n.hostname().to_string(),
                    machine_type: if cp {
                        enums::MachineType::TypeControlPlane as i32
                    } else {
                        enums::MachineType::TypeWorker as i32
                    },
                    operating_system: format!("Talos ({})", crate::sim::node::TALOS_VERSION),
                    control_plane: cp.then_some(cluster::ControlPlane { api_server_port: 6443 }),
                };
                let mut y = format!(
                    "nodeId: {}\naddresses:\n    - {}\nhostname: {}\nmachineType: {}\noperatingSystem: {}\n",
                    q(&node_id),
                    q(n.label()),
                    q(n.hostname()),
                    if cp { "controlplane" } else { "worker" },
                    q(&spec.operating_system),
                );
                if cp {
                    y.push_str("controlPlane:\n    port: 6443\n");
                }
                out.push(res(kind, n.hostname(), &spec, y));
            }
            out
        }
        "ExtensionStatuses.runtime.talos.dev" => c
            .extensions(label, now)?
            .into_iter()
            .map(|e| {
                let spec = extensions::Layer {
                    image: e.image.clone(),
                    metadata: Some(extensions::Metadata {
                        name: e.name.clone(),
                        version: e.version.clone(),
                        author: "Sidero Labs".into(),
                        description: e.description.clone(),
                        compatibility: Some(extensions::Compatibility {
                            talos: Some(extensions::Constraint {
                                version: ">= v1.11.0".into(),
                            }),
                        }),
                        extra_info: String::new(),
                    }),
                };
                let y = format!(
                    "image: {}\nmetadata:\n    name: {}\n    version: {}\n    author: Sidero Labs\n    description: {}\n    compatibility:\n        talos:\n            version: {}\n",
                    q(&e.image),
                    q(&e.name),
                    q(&e.version),
                    q(&e.description),
                    q(">= v1.11.0"),
                );
                let id = e.image.trim_end_matches(".sqsh").to_string();
                res(kind, id, &spec, y)
            })
            .collect(),
        "KernelModuleSpecs.runtime.talos.dev" => c
            .kernel_module_specs(label, now)?
            .into_iter()
            .map(|m| {
                let spec = runtime::KernelModuleSpecSpec {
                    name: m.clone(),
                    parameters: Vec::new(),
                };
                // Talos' YAML key for the name really is `string`.
                res(kind, m.clone(), &spec, format!("string: {}\nparameters: []\n", q(&m)))
            })
            .collect(),
        "LoadedKernelModules.runtime.talos.dev" => c
            .loaded_kernel_modules(label, now)?
            .into_iter()
            .map(|m| {
                let spec = runtime::LoadedKernelModuleSpec {
                    size: 16384,
                    reference_count: 0,
                    dependencies: Vec::new(),
                    state: m.state.clone(),
                    address: "0x0000000000000000".into(),
                };
                let y = format!(
                    "size: 16384\nreferenceCount: 0\ndependencies: []\nstate: {}\naddress: \"0x0000000000000000\"\n",
                    q(&m.state)
                );
                res(kind, m.name.clone(), &spec, y)
            })
            .collect(),
        "Disks.block.talos.dev" => c
            .disks(label, now)?
            .into_iter()
            .map(|d| {
                let spec = block::DiskSpec {
                    size: d.size,
                    io_size: d.io_size,
                    sector_size: d.sector_size,
                    readonly: d.readonly,
                    model: d.model.clone(),
                    serial: d.serial.clone(),
                    modalias: d.modalias.clone(),
                    wwid: d.wwid.clone(),
                    bus_path: d.bus_path.clone(),
                    sub_system: d.sub_system.clone(),
                    transport: d.transport.clone(),
                    rotational: d.rotational,
                    cdrom: d.cdrom,
                    dev_path: d.dev_path.clone(),
                    pretty_size: d.pretty_size.clone(),
                    secondary_disks: Vec::new(),
                    uuid: String::new(),
                    symlinks: d.symlinks.clone(),
                };
                let mut y = format!(
                    "dev_path: {}\nsize: {}\npretty_size: {}\nio_size: {}\nsector_size: {}\nreadonly: {}\ncdrom: {}\n",
                    q(&d.dev_path), d.size, q(&d.pretty_size), d.io_size, d.sector_size, d.readonly, d.cdrom
                );
                for (key, v) in [
                    ("model", &d.model),
                    ("serial", &d.serial),
                    ("modalias", &d.modalias),
                    ("wwid", &d.wwid),
                    ("bus_path", &d.bus_path),
                    ("sub_system", &d.sub_system),
                    ("transport", &d.transport),
                ] {
                    if !v.is_empty() {
                        y.push_str(&format!("{key}: {}\n", q(v)));
                    }
                }
                y.push_str(&format!("rotational: {}\nsymlinks:{}", d.rotational, list("    ", &d.symlinks)));
                res(kind, d.id.clone(), &spec, y)
            })
            .collect(),
        "SystemDisks.block.talos.dev" => c
            .disks(label, now)?
            .into_iter()
            .filter(|d| d.system_disk)
            .map(|d| {
                let spec = block::SystemDiskSpec {
                    disk_id: d.id.clone(),
                    dev_path: d.dev_path.clone(),
                };
                let y = format!("diskID: {}\ndevPath: {}\n", q(&d.id), q(&d.dev_path));
                res(kind, "system-disk", &spec, y)
            })
            .collect(),
        MACHINE_CONFIGS => match c.machine_config(label, now) {
            Ok(raw) => {
                let spec = cfg::MachineConfigSpec {
                    yaml_marshalled: raw.clone().into_bytes(),
                };
                vec![res(kind, "v1alpha1", &spec, raw)]
            }
            Err(e) if e.code == Code::NotFound => Vec::new(),
            Err(e) => return Err(e),
        },
        "Services.v1alpha1.talos.dev" => c
            .service_list(label, now)?
            .into_iter()
            .map(|s| {
                let spec = v1alpha1::ServiceSpec {
                    running: s.state == crate::sim::node::ServiceState::Running,
                    healthy: s.healthy == Some(true),
                    unknown: s.healthy.is_none(),
                };
                let y = format!(
                    "running: {}\nhealthy: {}\nunknown: {}\n",
                    spec.running, spec.healthy, spec.unknown
                );
                res(kind, s.id.clone(), &spec, y)
            })
            .collect(),
        "EtcdMembers.etcd.talos.dev" => {
            let node = c.node(label);
            match node.map(|n| (n.is_control_plane(), n.etcd_data())) {
                Some((true, EtcdData::Member { member, .. })) => {
                    let id = crate::sim::etcd::format_id(member);
                    let spec = etcd::MemberSpec {
                        member_id: id.clone(),
                    };
                    vec![res(kind, "local", &spec, format!("memberID: {}\n", q(&id)))]
                }
                _ => Vec::new(),
            }
        }
        "PCIDevices.hardware.talos.dev" => {
            let Some(node) = c.node(label) else {
                return Ok(Vec::new());
            };
            let nvidia_loaded = node.loaded_modules().iter().any(|m| m.name == "nvidia");
            let mut devices = vec![(
                "0000:00:00.0",
                hardware::PciDeviceSpec {
                    class: "Bridge".into(),
                    subclass: "Host bridge".into(),
                    vendor: "Intel Corporation".into(),
                    product: "Host Bridge/DRAM Registers".into(),
                    class_id: "0x06".into(),
                    subclass_id: "0x00".into(),
                    vendor_id: "0x8086".into(),
                    product_id: "0x3e34".into(),
                    driver: String::new(),
                },
            )];
            if let Some(gpu) = &node.hardware().gpu {
                devices.push((
                    "0000:01:00.0",
                    hardware::PciDeviceSpec {
                        class: "Display controller".into(),
                        subclass: "VGA compatible controller".into(),
                        vendor: if gpu.vendor_id == crate::sim::node::NVIDIA_VENDOR_ID {
                            "NVIDIA Corporation".into()
                        } else {
                            "Unknown".into()
                        },
                        product: gpu.product.clone(),
                        class_id: "0x03".into(),
                        subclass_id: "0x00".into(),
                        vendor_id: format!("0x{:04x}", gpu.vendor_id),
                        product_id: format!("0x{:04x}", gpu.device_id),
                        driver: if nvidia_loaded { "nvidia".into() } else { String::new() },
                    },
                ));
            }
            devices
                .into_iter()
                .map(|(id, d)| {
                    let mut y = format!(
                        "class: {}\nsubclass: {}\nvendor: {}\nproduct: {}\nclass_id: {}\nsubclass_id: {}\nvendor_id: {}\nproduct_id: {}\n",
                        q(&d.class), q(&d.subclass), q(&d.vendor), q(&d.product),
                        q(&d.class_id), q(&d.subclass_id), q(&d.vendor_id), q(&d.product_id)
                    );
                    if !d.driver.is_empty() {
                        y.push_str(&format!("driver: {}\n", q(&d.driver)));
                    }
                    res(kind, id, &d, y)
                })
                .collect()
        }
        "Versions.runtime.talos.dev" => {
            let v = c.version(label, now)?;
            let spec = runtime::VersionSpec { version: v.tag.clone() };
            vec![res(kind, "version", &spec, format!("version: {}\n", q(&v.tag)))]
        }
        "MachineTypes.config.talos.dev" => {
            let (t, name) = match c.machine_type(label) {
                Some(MachineType::ControlPlane) => (cfg::MachineType::ControlPlane, "controlplane"),
                Some(MachineType::Worker) => (cfg::MachineType::Worker, "worker"),
                None => (cfg::MachineType::Unknown, "unknown"),
            };
            let spec = cfg::MachineTypeSpec {
                machine_type: t as i32,
            };
            vec![res(kind, "machine-type", &spec, format!("{name}\n"))]
        }
        RESOURCE_DEFINITIONS => KINDS.iter().map(resource_definition).collect(),
        // Built from the server's cluster id (see `cosi.rs`), not from the model.
        INFOS => return Err(ApiError::new(Code::Unimplemented, "served by the COSI service")),
        other => {
            return Err(ApiError::new(Code::Internal, format!("no builder for {other}")));
        }
    };
    Ok(out)
}

fn resource_definition(k: &'static Kind) -> Res {
    let own = kind_of(RESOURCE_DEFINITIONS).unwrap_or(&KINDS[KINDS.len() - 1]);
    let aliases: Vec<String> = k.aliases.iter().map(|s| s.to_string()).collect();
    let mut all = vec![k.ty.to_ascii_lowercase()];
    all.extend(aliases.iter().cloned());
    let spec = ResourceDefinitionSpec {
        resource_type: k.ty.into(),
        display_type: k.display.into(),
        default_namespace: k.ns.into(),
        aliases: aliases.clone(),
        all_aliases: all.clone(),
        print_columns: Vec::new(),
        sensitivity: if k.sensitive {
            resource_definition_spec::Sensitivity::Sensitive as i32
        } else {
            resource_definition_spec::Sensitivity::NonSensitive as i32
        },
    };
    let mut y = format!(
        "type: {}\ndisplayType: {}\naliases:{}allAliases:{}defaultNamespace: {}\nprintColumns: []\n",
        q(k.ty),
        q(k.display),
        list("    ", &aliases),
        list("    ", &all),
        q(k.ns)
    );
    if k.sensitive {
        y.push_str("sensitivity: 1\n");
    }
    res(own, k.ty.to_ascii_lowercase(), &spec, y)
}

#[derive(Clone, Debug)]
struct Book {
    hash: u64,
    version: u64,
    created: prost_types::Timestamp,
    updated: prost_types::Timestamp,
}

/// Resource versions per `(node, type, id)`, bumped whenever the spec changes.
#[derive(Debug, Default)]
pub struct ResourceVersions {
    books: Mutex<HashMap<(String, &'static str, String), Book>>,
}

impl ResourceVersions {
    /// The wire form of `r` on node `label`, versioned.
    pub fn stamp(&self, label: &str, r: &Res, wall: &WallClock, now: SimTime) -> Resource {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.proto.hash(&mut h);
        r.yaml.hash(&mut h);
        let hash = h.finish();
        let ts = wall.timestamp(now);
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let book = books
            .entry((label.to_string(), r.kind.ty, r.id.clone()))
            .or_insert_with(|| Book {
                hash,
                version: 1,
                created: ts,
                updated: ts,
            });
        if book.hash != hash {
            book.hash = hash;
            book.version += 1;
            book.updated = ts;
        }
        Resource {
            metadata: Some(Metadata {
                namespace: r.kind.ns.into(),
                r#type: r.kind.ty.into(),
                id: r.id.clone(),
                version: book.version.to_string(),
                owner: r.kind.owner.into(),
                phase: "running".into(),
                created: Some(book.created),
                updated: Some(book.updated),
                finalizers: Vec::new(),
                annotations: HashMap::new(),
                labels: HashMap::new(),
            }),
            spec: Some(Spec {
                proto_spec: r.proto.clone(),
                yaml_spec: r.yaml.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_quote_when_needed() {
        assert_eq!(q("running"), "running");
        assert_eq!(q("shutting down"), "shutting down");
        assert_eq!(q("/dev/sda"), "/dev/sda");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("true"), "\"true\"");
        assert_eq!(q("0x10de"), "\"0x10de\"");
        assert_eq!(q("1.5"), "\"1.5\"");
        assert_eq!(q(">= v1.11.0"), "\">= v1.11.0\"");
        assert_eq!(q("a: b"), "\"a: b\"");
    }
}
