//! A simulated Talos node: hardware, image, machine config, stage, services and disks.
//!
//! The failure modes in the operator's notes live here: a GPU node whose NVIDIA extension
//! service waits forever because the kernel modules are not configured, a non-GPU node on the
//! NVIDIA image, Mac disks whose `/dev/sdX` names shift with a USB stick, and the fact that
//! Kubernetes can say Ready while Talos is still `booting`. This file holds the per-node state
//! and the rules that depend on the node alone; [`super::cluster::Cluster`] drives the timed
//! sequences and the parts that need etcd or other nodes. The node address is a label only.

use std::collections::BTreeMap;
use std::fmt;

use saphyr::{LoadableYamlNode, YamlOwned};

use super::clock::SimTime;
use super::error::{ApiError, Code};
use super::etcd::{ClusterId, MemberId};

mod hardware;
mod machine_config;

pub use hardware::*;
pub use machine_config::*;

/// The vanilla Talos v1.11.5 installer.
pub const VANILLA_IMAGE: &str = "ghcr.io/siderolabs/installer:v1.11.5";
/// The Image Factory schematic with the NVIDIA extensions used on `.20`.
pub const NVIDIA_SCHEMATIC: &str =
    "86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0";
/// The NVIDIA factory installer v1.11.5.
pub const NVIDIA_IMAGE: &str = "factory.talos.dev/installer/86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0:v1.11.5";
/// The kernel modules the NVIDIA extensions need (`machine.kernel.modules`).
pub const NVIDIA_MODULES: [&str; 4] = ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"];
/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR_ID: u16 = 0x10de;
/// The path `ext-nvidia-persistenced` waits for.
pub const NVIDIA_DRIVER_PATH: &str = "/sys/bus/pci/drivers/nvidia";
/// The Talos version every simulated node runs.
pub const TALOS_VERSION: &str = "v1.11.5";

/// The machine's stage (`RuntimeMachineStage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// 0.
    Unknown,
    /// 1: the Boot sequence runs (services starting or waiting).
    Booting,
    /// 2: installing to disk from maintenance mode.
    Installing,
    /// 3: no configuration; only the maintenance API answers.
    Maintenance,
    /// 4: the Boot sequence finished without error.
    Running,
    /// 5.
    Rebooting,
    /// 6.
    ShuttingDown,
    /// 7.
    Resetting,
    /// 8.
    Upgrading,
}

impl Stage {
    /// Proto enum value.
    pub fn as_i32(self) -> i32 {
        match self {
            Stage::Unknown => 0,
            Stage::Booting => 1,
            Stage::Installing => 2,
            Stage::Maintenance => 3,
            Stage::Running => 4,
            Stage::Rebooting => 5,
            Stage::ShuttingDown => 6,
            Stage::Resetting => 7,
            Stage::Upgrading => 8,
        }
    }

    /// YAML text as `talosctl get machinestatus` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unknown => "unknown",
            Stage::Booting => "booting",
            Stage::Installing => "installing",
            Stage::Maintenance => "maintenance",
            Stage::Running => "running",
            Stage::Rebooting => "rebooting",
            Stage::ShuttingDown => "shutting down",
            Stage::Resetting => "resetting",
            Stage::Upgrading => "upgrading",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Talos service state (`events.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Loaded, not started.
    Initialized,
    /// Running its pre-start step (etcd: waiting to join or for bootstrap).
    Preparing,
    /// Waiting for a dependency (service, path).
    Waiting,
    /// Running.
    Running,
    /// Stopping.
    Stopping,
    /// Exited successfully.
    Finished,
    /// Exited with an error.
    Failed,
    /// Skipped by a condition.
    Skipped,
    /// Starting.
    Starting,
}

impl ServiceState {
    /// The state string of `ServiceInfo.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Initialized => "Initialized",
            ServiceState::Preparing => "Preparing",
            ServiceState::Waiting => "Waiting",
            ServiceState::Running => "Running",
            ServiceState::Stopping => "Stopping",
            ServiceState::Finished => "Finished",
            ServiceState::Failed => "Failed",
            ServiceState::Skipped => "Skipped",
            ServiceState::Starting => "Starting",
        }
    }
}

/// One service event (`ServiceEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    /// Message.
    pub msg: String,
    /// State entered.
    pub state: ServiceState,
    /// When.
    pub at: SimTime,
}

/// A service as `ServiceList` reports it (`ServiceInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Service id (`etcd`, `ext-nvidia-persistenced`, ...).
    pub id: String,
    /// Current state.
    pub state: ServiceState,
    /// Health: `None` = unknown (no check yet or none defined).
    pub healthy: Option<bool>,
    /// Last health message.
    pub health_message: String,
    /// Events, oldest first.
    pub events: Vec<ServiceEvent>,
}

impl Service {
    fn new(id: &str, at: SimTime) -> Service {
        Service {
            id: id.to_string(),
            state: ServiceState::Initialized,
            healthy: None,
            health_message: String::new(),
            events: vec![ServiceEvent {
                msg: "Service initialized".into(),
                state: ServiceState::Initialized,
                at,
            }],
        }
    }

    /// Moves to `state` with an event, if it differs from the current state or message.
    pub fn set(&mut self, state: ServiceState, msg: &str, at: SimTime) {
        let same = self.state == state && self.events.last().is_some_and(|e| e.msg == msg);
        if !same {
            self.state = state;
            self.events.push(ServiceEvent {
                msg: msg.to_string(),
                state,
                at,
            });
        }
    }

    /// "Up" as the Boot sequence waits for it: running and, if checked, healthy.
    pub fn is_up(&self) -> bool {
        self.state == ServiceState::Running
            && match self.healthy {
                Some(h) => h,
                // etcd has a health check: it is not up before the first successful one.
                None => self.id != "etcd",
            }
    }
}

/// An extension carried by the installed image (`ExtensionStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Layer image name.
    pub image: String,
    /// Extension name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Description.
    pub description: String,
}

/// Extensions derived from an installer image reference.
pub fn extensions_for_image(image: &str) -> Vec<Extension> {
    if !image.contains(NVIDIA_SCHEMATIC) {
        return Vec::new();
    }
    let ext = |i: usize, name: &str, version: &str, description: &str| Extension {
        image: format!("{i:03}.sqsh"),
        name: name.into(),
        version: version.into(),
        description: description.into(),
    };
    vec![
        ext(
            0,
            "nonfree-kmod-nvidia-production",
            "570.172.08-v1.11.5",
            "NVIDIA proprietary kernel modules",
        ),
        ext(
            1,
            "nvidia-container-toolkit-production",
            "570.172.08-v1.17.8",
            "NVIDIA container toolkit and persistence daemon",
        ),
        ext(2, "schematic", NVIDIA_SCHEMATIC, "Image Factory schematic"),
    ]
}

/// A `LoadedKernelModule` resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedModule {
    /// Module name.
    pub name: String,
    /// State (`Live`).
    pub state: String,
}

/// `ApplyConfigurationRequest.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// 0.
    Reboot,
    /// 1.
    Auto,
    /// 2.
    NoReboot,
    /// 3.
    Staged,
    /// 4.
    Try,
}

impl ApplyMode {
    /// From the proto value.
    pub fn from_i32(v: i32) -> Option<ApplyMode> {
        Some(match v {
            0 => ApplyMode::Reboot,
            1 => ApplyMode::Auto,
            2 => ApplyMode::NoReboot,
            3 => ApplyMode::Staged,
            4 => ApplyMode::Try,
            _ => return None,
        })
    }

    /// Proto value.
    pub fn as_i32(self) -> i32 {
        match self {
            ApplyMode::Reboot => 0,
            ApplyMode::Auto => 1,
            ApplyMode::NoReboot => 2,
            ApplyMode::Staged => 3,
            ApplyMode::Try => 4,
        }
    }

    /// CLI name (`no-reboot`).
    pub fn cli_name(self) -> &'static str {
        match self {
            ApplyMode::Reboot => "reboot",
            ApplyMode::Auto => "auto",
            ApplyMode::NoReboot => "no-reboot",
            ApplyMode::Staged => "staged",
            ApplyMode::Try => "try",
        }
    }
}

/// `RebootRequest.Mode` / `UpgradeRequest.RebootMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RebootMode {
    /// kexec into the kernel; skips the firmware.
    #[default]
    Default,
    /// Full power cycle through the firmware and its boot order.
    Powercycle,
}

/// Power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Powered on.
    On,
    /// Powered off: the node answers nothing.
    Off,
}

/// The contents of `/var/lib/etcd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdData {
    /// Empty: the node joins as a learner, or waits for bootstrap.
    Empty,
    /// Holds the data of `member` in `cluster`.
    Member {
        /// Cluster id.
        cluster: ClusterId,
        /// Member id.
        member: MemberId,
    },
}

/// What a node is doing besides its stage (internal sequencing phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Powered off.
    Off,
    /// Between power-on/reboot and the start of boot: the API does not answer.
    Down,
    /// The API answers; the stage tells the rest.
    Up,
}

/// Parameters of a `Reset` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetRequest {
    /// Cordon/drain and leave etcd first (talosctl default: true).
    pub graceful: bool,
    /// Reboot after the wipe (talosctl default: false = power off).
    pub reboot: bool,
    /// Volume labels to wipe (`EPHEMERAL`, `STATE`, `META`); empty = whole system disk.
    pub system_labels_to_wipe: Vec<String>,
}

impl Default for ResetRequest {
    fn default() -> Self {
        ResetRequest {
            graceful: true,
            reboot: false,
            system_labels_to_wipe: Vec::new(),
        }
    }
}

/// Parameters of an `Upgrade` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Installer image.
    pub image: String,
    /// Ignored since Talos 1.8.
    pub preserve: bool,
    /// Stage the upgrade for the next boot.
    pub stage: bool,
    /// Skip the etcd checks.
    pub force: bool,
    /// Reboot mode.
    pub reboot_mode: RebootMode,
}

impl UpgradeRequest {
    /// A plain upgrade to `image`.
    pub fn to_image(image: &str) -> UpgradeRequest {
        UpgradeRequest {
            image: image.into(),
            preserve: false,
            stage: false,
            force: false,
            reboot_mode: RebootMode::Default,
        }
    }
}

/// Everything needed to create a node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Address label (e.g. `192.168.2.20`), never dialled.
    pub label: String,
    /// Hostname (also the Kubernetes node name and etcd member name).
    pub hostname: String,
    /// Hardware.
    pub hardware: Hardware,
    /// Installed image; `None` for a fresh machine that has never been installed.
    pub image: Option<String>,
    /// Machine config; `None` for a fresh machine (maintenance mode).
    pub config: Option<String>,
}

/// A simulated Talos node.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) label: String,
    pub(crate) hostname: String,
    pub(crate) hardware: Hardware,
    /// Image the node runs (None = nothing installed: boots into maintenance).
    pub(crate) image: Option<String>,
    /// Image to fall back to if the first boot after an upgrade fails.
    pub(crate) previous_image: Option<String>,
    pub(crate) first_boot_after_upgrade: bool,
    pub(crate) config: Option<MachineConfig>,
    pub(crate) staged_config: Option<MachineConfig>,
    /// Config to restore when a TRY apply times out.
    pub(crate) try_rollback: Option<MachineConfig>,
    pub(crate) system_disk_serial: Option<String>,
    pub(crate) power: Power,
    pub(crate) phase: Phase,
    pub(crate) stage: Stage,
    pub(crate) boot_id: String,
    pub(crate) boot_count: u64,
    pub(crate) boot_started_at: SimTime,
    /// Bumped on every power transition or sequence; timers of older epochs are ignored.
    pub(crate) epoch: u64,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) loaded_modules: Vec<String>,
    pub(crate) etcd_data: EtcdData,
    /// etcd process start time (health needs one check interval).
    pub(crate) etcd_started_at: Option<SimTime>,
    pub(crate) etcd_snapshot_upload: Option<Vec<u8>>,
    pub(crate) usb_attached: bool,
    pub(crate) keep_down: bool,
    pub(crate) kubelet_started_at: Option<SimTime>,
    pub(crate) kubelet_stopped_at: Option<SimTime>,
    pub(crate) k8s_registered: bool,
    pub(crate) cordoned_by_talos: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) pending_reset: Option<ResetRequest>,
    pub(crate) pending_image: Option<String>,
    pub(crate) seed: u64,
}

impl Node {
    /// A node from its spec, powered off at time zero (the cluster powers it on).
    pub fn new(spec: NodeSpec, seed: u64) -> Result<Node, ApiError> {
        let config = spec
            .config
            .as_deref()
            .map(MachineConfig::parse)
            .transpose()?;
        let system_disk_serial = spec
            .image
            .as_ref()
            .and_then(|_| spec.hardware.disks.first().map(|d| d.serial.clone()));
        Ok(Node {
            label: spec.label,
            hostname: spec.hostname,
            hardware: spec.hardware,
            image: spec.image,
            previous_image: None,
            first_boot_after_upgrade: false,
            config,
            staged_config: None,
            try_rollback: None,
            system_disk_serial,
            power: Power::Off,
            phase: Phase::Off,
            stage: Stage::Unknown,
            boot_id: String::new(),
            boot_count: 0,
            boot_started_at: SimTime::ZERO,
            epoch: 0,
            services: BTreeMap::new(),
            loaded_modules: Vec::new(),
            etcd_data: EtcdData::Empty,
            etcd_started_at: None,
            etcd_snapshot_upload: None,
            usb_attached: false,
            keep_down: false,
            kubelet_started_at: None,
            kubelet_stopped_at: None,
            k8s_registered: false,
            cordoned_by_talos: false,
            last_error: None,
            pending_reset: None,
            pending_image: None,
            seed,
        })
    }

    /// Address label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Hardware.
    pub fn hardware(&self) -> &Hardware {
        &self.hardware
    }

    /// Installed image, if any.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// Active machine config, if any.
    pub fn config(&self) -> Option<&MachineConfig> {
        self.config.as_ref()
    }

    /// Current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Power state.
    pub fn power(&self) -> Power {
        self.power
    }

    /// Boot id of the current boot (`/proc/sys/kernel/random/boot_id`).
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// `/var/lib/etcd` contents.
    pub fn etcd_data(&self) -> EtcdData {
        self.etcd_data
    }

    /// True if a USB stick is plugged in.
    pub fn usb_attached(&self) -> bool {
        self.usb_attached
    }

    /// The last sequence error (install, reset, boot), if any.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// True if the node is a control-plane node (per its config).
    pub fn is_control_plane(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.machine_type == MachineType::ControlPlane)
    }

    /// True if the API answers (powered, booted far enough).
    pub fn api_up(&self) -> bool {
        self.power == Power::On && self.phase == Phase::Up
    }

    /// Services, by id.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// One service.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.get(id)
    }

    pub(crate) fn service_mut(&mut self, id: &str, now: SimTime) -> &mut Service {
        // The model settles on every API call: look up without allocating the key, and
        // allocate it only the first time.
        if !self.services.contains_key(id) {
            self.services.insert(id.to_string(), Service::new(id, now));
        }
        match self.services.get_mut(id) {
            Some(s) => s,
            None => unreachable!("service `{id}` was inserted above"),
        }
    }

    /// Extensions of the installed image.
    pub fn extensions(&self) -> Vec<Extension> {
        self.image
            .as_deref()
            .map(extensions_for_image)
            .unwrap_or_default()
    }

    /// True if the image carries the NVIDIA kernel modules.
    pub fn image_has_nvidia(&self) -> bool {
        self.extensions()
            .iter()
            .any(|e| e.name.starts_with("nonfree-kmod-nvidia"))
    }

    /// `KernelModuleSpecs` (from `machine.kernel.modules`).
    pub fn kernel_module_specs(&self) -> Vec<String> {
        self.config
            .as_ref()
            .map(|c| c.kernel_modules.clone())
            .unwrap_or_default()
    }

    /// `LoadedKernelModules` for the configured modules that actually loaded.
    pub fn loaded_modules(&self) -> Vec<LoadedModule> {
        self.loaded_modules
            .iter()
            .map(|m| LoadedModule {
                name: m.clone(),
                state: "Live".into(),
            })
            .collect()
    }

    /// Loads the configured modules that can load: NVIDIA modules need the kmod extension
    /// in the image and an NVIDIA GPU (nvidia.ko fails to probe without one). Modules are
    /// never unloaded live.
    pub(crate) fn load_configured_modules(&mut self) {
        let can_nvidia = self.image_has_nvidia() && self.hardware.has_nvidia_gpu();
        for m in self.kernel_module_specs() {
            let ok = if NVIDIA_MODULES.contains(&m.as_str()) {
                can_nvidia
            } else {
                true
            };
            if ok && !self.loaded_modules.contains(&m) {
                self.loaded_modules.push(m);
            }
        }
    }

    /// True if `path` exists on the node (only the NVIDIA driver path is modelled).
    pub fn path_exists(&self, path: &str) -> bool {
        path == NVIDIA_DRIVER_PATH && self.loaded_modules.iter().any(|m| m == "nvidia")
    }

    /// Extension services of the image and the paths they wait for.
    pub fn extension_services(&self) -> Vec<(&'static str, &'static str)> {
        if self
            .extensions()
            .iter()
            .any(|e| e.name.starts_with("nvidia-container-toolkit"))
        {
            vec![("ext-nvidia-persistenced", NVIDIA_DRIVER_PATH)]
        } else {
            Vec::new()
        }
    }

    /// Disks as the kernel names them now: the USB stick's LUNs enumerate first and push
    /// the SATA SSD from `/dev/sda` to `/dev/sdc`; NVMe names do not move.
    pub fn disks(&self) -> Vec<Disk> {
        let mut physical: Vec<PhysicalDisk> = Vec::new();
        if self.usb_attached {
            physical.extend(usb_stick_luns());
        }
        physical.extend(self.hardware.disks.iter().cloned());
        let mut scsi = 0u8;
        let mut nvme = 0u8;
        // Names are given in enumeration order, including empty card-reader slots, which
        // Talos then does not list (size 0).
        physical
            .into_iter()
            .map(|d| {
                let id = if d.nvme {
                    nvme += 1;
                    format!("nvme{}n1", nvme - 1)
                } else {
                    scsi += 1;
                    format!("sd{}", char::from(b'a' + scsi - 1))
                };
                (d, id)
            })
            .filter(|(d, _)| d.size > 0)
            .map(|(d, id)| self.disk_view(d, id))
            .collect()
    }

    fn disk_view(&self, d: PhysicalDisk, id: String) -> Disk {
        let gb = d.size / 1_000_000_000;
        Disk {
            dev_path: format!("/dev/{id}"),
            pretty_size: format!("{gb} GB"),
            size: d.size,
            io_size: 512,
            sector_size: 512,
            readonly: d.readonly,
            cdrom: d.cdrom,
            modalias: if d.nvme {
                "nvme:v144DdA80A".into()
            } else {
                "scsi:t-0x00".into()
            },
            symlinks: vec![format!(
                "/dev/disk/by-id/{}-{}",
                d.transport,
                d.model.replace(' ', "_")
            )],
            system_disk: self.system_disk_serial.as_deref() == Some(d.serial.as_str()),
            sub_system: "/sys/class/block".into(),
            model: d.model,
            serial: d.serial,
            wwid: d.wwid,
            bus_path: d.bus_path,
            transport: d.transport,
            rotational: d.rotational,
            id,
        }
    }

    /// Resolves `machine.install.disk` against the current disk names.
    pub fn resolve_install_disk(&self, path: &str) -> Option<Disk> {
        self.disks().into_iter().find(|d| d.dev_path == path)
    }

    /// The disk a config installs to: `machine.install.disk` by its current kernel name, else
    /// the first disk whose serial is `diskSelector.serial` (Talos takes the first match).
    pub fn install_target(&self, cfg: &MachineConfig) -> Option<Disk> {
        match (&cfg.install_disk, &cfg.install_disk_serial) {
            (Some(path), _) => self.resolve_install_disk(path),
            (None, Some(serial)) => self.disks().into_iter().find(|d| &d.serial == serial),
            (None, None) => None,
        }
    }

    /// A new deterministic boot id (uuid format).
    pub(crate) fn new_boot_id(&mut self) {
        self.boot_count += 1;
        let a = splitmix(self.seed ^ self.boot_count.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let b = splitmix(a);
        self.boot_id = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        );
    }
}

/// splitmix64, the model's deterministic "random" source.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> Node {
        Node::new(
            NodeSpec {
                label: "192.168.2.49".into(),
                hostname: "mac".into(),
                hardware: Hardware::mac_mini("S1"),
                image: Some(VANILLA_IMAGE.into()),
                config: Some(control_plane_config(
                    "mac",
                    "/dev/sda",
                    VANILLA_IMAGE,
                    false,
                )),
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn usb_stick_shifts_the_apple_ssd_from_sda_to_sdc() {
        let mut n = mac();
        let ssd = |n: &Node| {
            n.disks()
                .into_iter()
                .find(|d| d.model.starts_with("APPLE"))
                .unwrap()
        };
        assert_eq!(ssd(&n).dev_path, "/dev/sda");
        assert!(ssd(&n).system_disk);
        n.usb_attached = true;
        assert_eq!(ssd(&n).dev_path, "/dev/sdc");
        assert_eq!(n.resolve_install_disk("/dev/sda").unwrap().transport, "usb");
    }

    #[test]
    fn config_parse_extracts_fields_and_rejects_garbage() {
        let c = MachineConfig::parse(&control_plane_config("n", "/dev/sda", NVIDIA_IMAGE, true))
            .unwrap();
        assert_eq!(c.machine_type, MachineType::ControlPlane);
        assert_eq!(c.install_disk.as_deref(), Some("/dev/sda"));
        assert_eq!(c.install_image.as_deref(), Some(NVIDIA_IMAGE));
        assert_eq!(c.kernel_modules, NVIDIA_MODULES.map(String::from).to_vec());
        assert!(c.allow_scheduling_on_control_planes);
        assert_eq!(
            MachineConfig::parse("machine: [unclosed").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            MachineConfig::parse("foo: bar").unwrap_err().code,
            Code::InvalidArgument
        );
    }

    #[test]
    fn kernel_and_install_apply_immediately_but_type_needs_reboot() {
        let a = MachineConfig::parse(&control_plane_config("n", "/dev/sda", VANILLA_IMAGE, false))
            .unwrap();
        let b = MachineConfig::parse(&control_plane_config("n", "/dev/sdc", VANILLA_IMAGE, true))
            .unwrap();
        assert!(!a.needs_reboot_to_apply(&b));
        let c = MachineConfig::parse(&a.raw().replace("token: simtoken", "token: other")).unwrap();
        assert!(a.needs_reboot_to_apply(&c));
    }

    #[test]
    fn nvidia_path_needs_modules_gpu_and_image() {
        let mk = |gpu: bool, image: &str, modules: bool| {
            let mut n = Node::new(
                NodeSpec {
                    label: "x".into(),
                    hostname: "x".into(),
                    hardware: Hardware::nuc(gpu, "N1"),
                    image: Some(image.into()),
                    config: Some(control_plane_config("x", "/dev/nvme0n1", image, modules)),
                },
                2,
            )
            .unwrap();
            n.load_configured_modules();
            n.path_exists(NVIDIA_DRIVER_PATH)
        };
        assert!(mk(true, NVIDIA_IMAGE, true));
        assert!(!mk(true, NVIDIA_IMAGE, false));
        assert!(!mk(false, NVIDIA_IMAGE, true));
        assert!(!mk(true, VANILLA_IMAGE, true));
    }

    #[test]
    fn boot_ids_differ_per_boot() {
        let mut n = mac();
        n.new_boot_id();
        let a = n.boot_id().to_string();
        n.new_boot_id();
        assert_ne!(a, n.boot_id());
        assert_eq!(a.len(), 36);
    }
}
