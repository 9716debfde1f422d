//! Preset clusters: the seed cluster of the operator's notes and named failure scenarios.
//!
//! Each scenario is reached by driving the model itself (power on, bootstrap, joins,
//! promotions, faults), not by writing state directly, so every scenario is a state the
//! simulated Talos and etcd can really be in. Scenarios are what runbook tests and operator
//! rehearsals start from; their names are stable (`FromStr`/`name`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

mod fleet;

pub use fleet::{
    DEFAULT_WORKERS, FLEET_APP, FLEET_NAMESPACE, MAX_WORKERS, Preset, PresetError, worker_hostname,
    worker_label,
};

use super::clock::{SimTime, Speed, Timings};
use super::cluster::{Cluster, ConditionStatus, PodDisruptionBudget};
use super::error::{ApiError, Code};
use super::node::{
    Hardware, NVIDIA_IMAGE, NodeSpec, Service, Stage, VANILLA_IMAGE, control_plane_config,
};

/// Label of the NUC with the GTX 1650.
pub const NUC_20: &str = "192.168.2.20";
/// Label of the first Mac Mini.
pub const MAC_223: &str = "192.168.2.223";
/// Label of the second Mac Mini.
pub const MAC_49: &str = "192.168.2.49";
/// Old address of the Mac that the `stale-member` scenario replaced.
pub const OLD_MAC_48: &str = "192.168.2.48";
/// The spare Mac Mini of the `node-dead-with-spare` scenario (in maintenance mode).
pub const SPARE_MAC_50: &str = "192.168.2.50";

/// A named starting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// The seed cluster, all healthy.
    Healthy,
    /// `.20` without the nvidia kernel modules: stuck booting, K8s Ready.
    GpuModulesMissing,
    /// `.223` on the NVIDIA image without a GPU: stuck booting.
    NvidiaImageOnNonGpuNode,
    /// `.49` with the USB stick in: its Apple SSD is `/dev/sdc`, not `/dev/sda`.
    UsbDiskShift,
    /// `.223` and `.49` down: etcd has no quorum.
    QuorumLost,
    /// Mid-migration: two voters (`.20`, `.49`), `.223` fresh in maintenance.
    TwoVoterWindow,
    /// The Mac moved from `.48` to `.49` under a new hostname; the old member is left behind.
    StaleMember,
    /// `.49` powered off for good.
    NodeDead,
    /// `.49` is dead and a spare Mac Mini (`.50`, `mac-50`) waits in maintenance mode to
    /// replace it; its machine config is written to `configs/192.168.2.50.yaml`.
    NodeDeadWithSpare,
    /// Plex on `.20` is guarded by a PodDisruptionBudget it cannot satisfy: draining `.20`
    /// is refused (429), as it would be on a real cluster.
    PdbBlocksDrain,
    /// `.223` and `.49` run but lost `/var/lib/etcd` (an EPHEMERAL wipe without leaving etcd):
    /// one of three voters keeps its data, quorum is lost, and the two wait in Preparing.
    EtcdDataLost,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 11] = [
        Scenario::Healthy,
        Scenario::GpuModulesMissing,
        Scenario::NvidiaImageOnNonGpuNode,
        Scenario::UsbDiskShift,
        Scenario::QuorumLost,
        Scenario::TwoVoterWindow,
        Scenario::StaleMember,
        Scenario::NodeDead,
        Scenario::NodeDeadWithSpare,
        Scenario::PdbBlocksDrain,
        Scenario::EtcdDataLost,
    ];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::GpuModulesMissing => "gpu-modules-missing",
            Scenario::NvidiaImageOnNonGpuNode => "nvidia-image-on-non-gpu-node",
            Scenario::UsbDiskShift => "usb-disk-shift",
            Scenario::QuorumLost => "quorum-lost",
            Scenario::TwoVoterWindow => "two-voter-window",
            Scenario::StaleMember => "stale-member",
            Scenario::NodeDead => "node-dead",
            Scenario::NodeDeadWithSpare => "node-dead-with-spare",
            Scenario::PdbBlocksDrain => "pdb-blocks-drain",
            Scenario::EtcdDataLost => "etcd-data-lost",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Healthy => "3 control planes running, 3 etcd voters, all Ready",
            Scenario::GpuModulesMissing => {
                ".20 lacks machine.kernel.modules for nvidia: stage booting, ext-nvidia-persistenced Waiting, Kubernetes Ready"
            }
            Scenario::NvidiaImageOnNonGpuNode => {
                ".223 runs the NVIDIA factory image without a GPU: stuck in booting"
            }
            Scenario::UsbDiskShift => {
                "USB stick in .49: the Apple SSD moved from /dev/sda to /dev/sdc, install.disk points at the stick"
            }
            Scenario::QuorumLost => ".223 and .49 are down: 1 of 3 etcd voters left, no leader",
            Scenario::TwoVoterWindow => {
                "migration half done: 2 etcd voters (.20, .49), .223 fresh in maintenance mode"
            }
            Scenario::StaleMember => {
                "the Mac moved from .48 to .49 with a new hostname; its old etcd member blocks the join"
            }
            Scenario::NodeDead => ".49 is powered off and will not come back",
            Scenario::NodeDeadWithSpare => {
                ".49 is dead; a spare Mac Mini (.50) waits in maintenance mode to replace it (config in configs/)"
            }
            Scenario::PdbBlocksDrain => {
                "plex on .20 has a PodDisruptionBudget (minAvailable 1, one replica): draining .20 is refused"
            }
            Scenario::EtcdDataLost => {
                ".223 and .49 are up but lost their etcd data: 1 of 3 etcd voters left, no leader"
            }
        }
    }

    /// Builds the scenario at `speed`; the returned cluster's `now()` is the start time.
    pub fn build(self, speed: Speed) -> Result<Cluster, ApiError> {
        build(self, Timings::at_speed(speed))
    }
}

impl Scenario {
    /// Machine configs the operator would have prepared for this scenario's spare machines,
    /// as (node label, config YAML); the simulator writes them to `configs/<label>.yaml`.
    pub fn prepared_configs(self) -> Vec<(String, String)> {
        match self {
            Scenario::NodeDeadWithSpare => vec![(
                SPARE_MAC_50.to_string(),
                crate::sim::node::control_plane_config("mac-50", "/dev/sda", VANILLA_IMAGE, false),
            )],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown scenario name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario {0:?}; known: healthy, gpu-modules-missing, nvidia-image-on-non-gpu-node, usb-disk-shift, quorum-lost, two-voter-window, stale-member, node-dead, node-dead-with-spare, pdb-blocks-drain, etcd-data-lost"
)]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_string()))
    }
}

/// The seed cluster of the notes, healthy.
pub fn seed(speed: Speed) -> Result<Cluster, ApiError> {
    Scenario::Healthy.build(speed)
}

fn nuc_spec(modules: bool) -> NodeSpec {
    NodeSpec {
        label: NUC_20.into(),
        hostname: "nuc-20".into(),
        hardware: Hardware::nuc(true, "S4EWNX0N123456"),
        image: Some(NVIDIA_IMAGE.into()),
        config: Some(control_plane_config(
            "nuc-20",
            "/dev/nvme0n1",
            NVIDIA_IMAGE,
            modules,
        )),
    }
}

fn mac_spec(label: &str, hostname: &str, serial: &str, image: &str) -> NodeSpec {
    NodeSpec {
        label: label.into(),
        hostname: hostname.into(),
        hardware: Hardware::mac_mini(serial),
        image: Some(image.into()),
        // Pinned by serial (lint L4): the Mac's SSD is /dev/sda only without the USB stick.
        config: Some(super::node::pin_install_disk(
            &control_plane_config(hostname, "/dev/sda", image, false),
            serial,
        )),
    }
}

fn fresh(spec: NodeSpec) -> NodeSpec {
    NodeSpec {
        image: None,
        config: None,
        ..spec
    }
}

/// Advances in election-timeout steps until `done` holds (at most 2 h of simulated time).
fn converge(c: &mut Cluster, done: impl Fn(&Cluster) -> bool) -> Result<(), ApiError> {
    let step = c.timings().election_timeout.max(Duration::from_millis(1));
    let limit = c.now() + c.timings().boot_timeout.min(Duration::from_secs(7200));
    while !done(c) {
        if c.now() >= limit {
            return Err(ApiError::new(Code::Internal, "scenario did not converge"));
        }
        let next = c.now() + step;
        c.advance_to(next);
    }
    Ok(())
}

fn voters(c: &Cluster) -> usize {
    c.etcd_clusters().first().map_or(0, |e| {
        e.members().filter(|m| !m.is_learner && m.running).count()
    })
}

fn learners(c: &Cluster) -> usize {
    c.etcd_clusters()
        .first()
        .map_or(0, |e| e.members().filter(|m| m.is_learner).count())
}

/// Every powered node that can be healthy is: etcd up, kubelet Ready in Kubernetes.
fn settled(c: &mut Cluster, expect_voters: usize) -> bool {
    if voters(c) != expect_voters || learners(c) != 0 {
        return false;
    }
    let now = c.now();
    let labels: Vec<String> = c
        .nodes()
        .iter()
        .filter(|n| n.api_up() && n.stage() != Stage::Maintenance)
        .map(|n| n.label().to_string())
        .collect();
    let Ok(k8s) = c.k8s_list_nodes(now) else {
        return false;
    };
    labels.iter().all(|l| {
        let Some(n) = c.node(l) else { return false };
        n.service("etcd").is_some_and(Service::is_up)
            && k8s
                .iter()
                .any(|k| k.name == n.hostname() && k.ready == ConditionStatus::True)
    })
}

fn build(sc: Scenario, timings: Timings) -> Result<Cluster, ApiError> {
    let mut c = Cluster::new(timings, 0x5eed_0000_0000_0001);
    let (nuc_modules, mac223_image) = match sc {
        Scenario::GpuModulesMissing => (false, NVIDIA_IMAGE),
        Scenario::NvidiaImageOnNonGpuNode => (true, NVIDIA_IMAGE),
        _ => (true, VANILLA_IMAGE),
    };
    c.add_node(nuc_spec(nuc_modules))?;
    let mac223 = mac_spec(MAC_223, "mac-223", "C07XK0AAJ1GN", mac223_image);
    let mut expect = 3;
    match sc {
        Scenario::TwoVoterWindow => {
            c.add_node(fresh(mac223))?;
            expect = 2;
        }
        Scenario::GpuModulesMissing => {
            // Only .20 is misconfigured in this scenario.
            c.add_node(mac_spec(MAC_223, "mac-223", "C07XK0AAJ1GN", VANILLA_IMAGE))?;
        }
        _ => {
            c.add_node(mac223)?;
        }
    }
    let (mac_label, mac_host) = if sc == Scenario::StaleMember {
        (OLD_MAC_48, "mac-48")
    } else {
        (MAC_49, "mac-49")
    };
    let mut last_mac = mac_spec(mac_label, mac_host, "C07YM1BBJ1GQ", VANILLA_IMAGE);
    if sc == Scenario::UsbDiskShift {
        // The seed's mistake: .49's config names the SSD by its kernel name, which the USB
        // stick (attached below) moves to /dev/sdc.
        last_mac.config = Some(control_plane_config(
            mac_host,
            "/dev/sda",
            VANILLA_IMAGE,
            false,
        ));
    }
    c.add_node(last_mac)?;

    c.power_on_all(SimTime::ZERO);
    converge(&mut c, |c| {
        c.node(NUC_20).is_some_and(|n| {
            n.service("etcd")
                .is_some_and(|s| s.state == super::node::ServiceState::Preparing)
        })
    })?;
    let now = c.now();
    c.bootstrap(NUC_20, false, false, now)?;
    converge(&mut c, |c| {
        let mut c = c.clone();
        settled(&mut c, expect)
    })?;

    let now = c.now();
    c.etcd_put(
        NUC_20,
        "/registry/namespaces/default",
        "{\"kind\":\"Namespace\"}",
        now,
    )?;
    c.add_deployment_pods(
        "kube-system",
        "coredns",
        "coredns-6d8b9f9c4b",
        &["nuc-20", mac_host],
    );
    c.add_deployment_pods("media", "plex", "plex-7f9c6d5b8", &["nuc-20"]);
    if sc == Scenario::PdbBlocksDrain {
        c.add_pdb(PodDisruptionBudget {
            namespace: "media".into(),
            name: "plex".into(),
            app: "plex".into(),
            min_available: 1,
        });
    }

    match sc {
        Scenario::UsbDiskShift => {
            c.attach_usb(MAC_49, now)?;
        }
        Scenario::QuorumLost => {
            c.keep_down(MAC_223, true)?;
            c.keep_down(MAC_49, true)?;
            c.power_off(MAC_223, now)?;
            c.power_off(MAC_49, now)?;
            let t = now + timings.election_timeout * 3;
            c.advance_to(t);
        }
        Scenario::NodeDead | Scenario::NodeDeadWithSpare => {
            c.keep_down(MAC_49, true)?;
            c.power_off(MAC_49, now)?;
            if sc == Scenario::NodeDeadWithSpare {
                c.add_node(fresh(mac_spec(
                    SPARE_MAC_50,
                    "mac-50",
                    "C07ZN2CCJ1GR",
                    VANILLA_IMAGE,
                )))?;
                c.power_on(SPARE_MAC_50, now)?;
            }
            let t = now + timings.node_monitor_grace * 2;
            c.advance_to(t);
        }
        Scenario::StaleMember => {
            // The Mac's old incarnation dies; it comes back reinstalled at .49 with a new
            // hostname and an empty etcd data directory, and cannot join.
            c.keep_down(OLD_MAC_48, true)?;
            c.power_off(OLD_MAC_48, now)?;
            c.add_node(mac_spec(MAC_49, "mac-49", "C07YM1BBJ1GQ-R", VANILLA_IMAGE))?;
            c.power_on(MAC_49, now)?;
            let t = now + timings.reboot + timings.etcd_health_interval * 2;
            c.advance_to(t);
        }
        Scenario::EtcdDataLost => {
            // Both Macs are reset at once without leaving etcd (EPHEMERAL wiped, reboot): their
            // members stay in the list, stopped, and come back empty, unable to join a
            // cluster that has no leader.
            let req = super::node::ResetRequest {
                graceful: false,
                reboot: true,
                system_labels_to_wipe: vec!["EPHEMERAL".into()],
            };
            c.reset(MAC_223, &req, now)?;
            c.reset(MAC_49, &req, now)?;
            converge(&mut c, |c| {
                [MAC_223, MAC_49].iter().all(|l| {
                    c.node(l).is_some_and(|n| {
                        n.api_up()
                            && n.etcd_data() == super::node::EtcdData::Empty
                            && n.service("etcd")
                                .is_some_and(|s| s.state == super::node::ServiceState::Preparing)
                    })
                })
            })?;
            let t = c.now() + timings.election_timeout * 3;
            c.advance_to(t);
        }
        _ => {}
    }
    c.clear_call_log();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::cluster::PodOwner;
    use crate::sim::node::EtcdData;
    use crate::sim::node::{
        ApplyMode, NVIDIA_MODULES, RebootMode, ResetRequest, ServiceState, UpgradeRequest,
    };

    fn fast() -> Speed {
        Speed::new(1.0).unwrap()
    }

    fn secs(c: &Cluster, s: u64) -> SimTime {
        c.now() + Duration::from_secs(s)
    }

    #[test]
    fn scenario_names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.name().parse::<Scenario>().unwrap(), sc);
            assert!(!sc.description().is_empty());
        }
        assert!("nope".parse::<Scenario>().is_err());
    }

    #[test]
    fn healthy_seed_cluster() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        for l in [NUC_20, MAC_223, MAC_49] {
            let ms = c.machine_status(l, now).unwrap();
            assert_eq!(ms.stage, Stage::Running, "{l}: {ms:?}");
            assert!(ms.ready, "{l}: {ms:?}");
        }
        let members = c.etcd_member_list(NUC_20, true, now).unwrap();
        assert_eq!(members.len(), 3);
        assert!(
            members
                .iter()
                .all(|m| !m.is_learner && !m.hostname.is_empty())
        );
        assert_eq!(c.k8s_list_nodes(now).unwrap().len(), 3);
        assert!(
            c.loaded_kernel_modules(NUC_20, now)
                .unwrap()
                .iter()
                .any(|m| m.name == "nvidia")
        );
        let svc = c.service_list(NUC_20, now).unwrap();
        assert!(
            svc.iter()
                .any(|s| s.id == "ext-nvidia-persistenced" && s.state == ServiceState::Running)
        );
        assert!(c.etcd_alarm_list(MAC_49, now).unwrap().is_empty());
        assert_eq!(c.etcd_clusters().len(), 1);
        assert!(c.call_log().is_empty());
    }

    #[test]
    fn scenarios_are_deterministic() {
        let a = Scenario::Healthy.build(fast()).unwrap();
        let b = Scenario::Healthy.build(fast()).unwrap();
        assert_eq!(a.now(), b.now());
        let ids = |c: &Cluster| {
            c.nodes()
                .iter()
                .map(|n| n.boot_id().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.etcd_clusters()[0].id(), b.etcd_clusters()[0].id());
    }

    #[test]
    fn boot_id_changes_on_every_boot_and_reboot_does_not_check_quorum() {
        let mut c = Scenario::QuorumLost.build(fast()).unwrap();
        let now = c.now();
        let before = c.boot_id(NUC_20, now).unwrap();
        // Quorum is already gone; Talos still accepts the reboot.
        c.reboot(NUC_20, RebootMode::Default, now).unwrap();
        assert_eq!(
            c.machine_status(NUC_20, now).unwrap().stage,
            Stage::Rebooting
        );
        let mid = secs(&c, 30);
        assert_eq!(
            c.machine_status(NUC_20, mid).unwrap_err().code,
            Code::Unavailable
        );
        let later = secs(&c, 120);
        let after = c.boot_id(NUC_20, later).unwrap();
        assert_ne!(before, after);
        assert_eq!(c.call_log().last().unwrap().method, "Reboot");
    }

    #[test]
    fn kubelet_and_k8s_ready_come_before_running() {
        let mut c = seed(fast()).unwrap();
        let start = c.now();
        c.reboot(MAC_223, RebootMode::Default, start).unwrap();
        let (mut k8s_ready_at, mut running_at, mut kubelet_at) = (None, None, None);
        for s in 71..400 {
            let t = start + Duration::from_secs(s);
            c.advance_to(t);
            let Ok(ms) = c.machine_status(MAC_223, t) else {
                continue;
            };
            let n = c.node(MAC_223).unwrap();
            if kubelet_at.is_none()
                && n.service("kubelet")
                    .is_some_and(|s| s.state == ServiceState::Running)
            {
                kubelet_at = Some(t);
            }
            if k8s_ready_at.is_none()
                && kubelet_at.is_some()
                && c.k8s_get_node("mac-223", t).unwrap().ready == ConditionStatus::True
            {
                k8s_ready_at = Some(t);
            }
            if running_at.is_none() && ms.stage == Stage::Running {
                running_at = Some(t);
            }
        }
        let (k, r, kl) = (
            k8s_ready_at.unwrap(),
            running_at.unwrap(),
            kubelet_at.unwrap(),
        );
        assert!(kl < k && k < r, "kubelet {kl} k8s {k} running {r}");
    }

    #[test]
    fn gpu_modules_missing_symptoms_and_fix() {
        let mut c = Scenario::GpuModulesMissing.build(fast()).unwrap();
        let now = c.now();
        let ms = c.machine_status(NUC_20, now).unwrap();
        assert_eq!(ms.stage, Stage::Booting);
        // The waiting service is invisible to readiness.
        assert!(ms.ready, "{ms:?}");
        let svc = c.service_list(NUC_20, now).unwrap();
        let ext = svc
            .iter()
            .find(|s| s.id == "ext-nvidia-persistenced")
            .unwrap();
        assert_eq!(ext.state, ServiceState::Waiting);
        assert!(
            ext.events
                .last()
                .unwrap()
                .msg
                .contains("/sys/bus/pci/drivers/nvidia")
        );
        assert_eq!(
            c.k8s_get_node("nuc-20", now).unwrap().ready,
            ConditionStatus::True
        );
        assert_eq!(c.etcd_member_list(NUC_20, false, now).unwrap().len(), 3);
        // Fix: patch the modules in (applies without reboot), then reboot to verify.
        let cfg = c.machine_config(NUC_20, now).unwrap();
        let modules: String = NVIDIA_MODULES
            .iter()
            .map(|m| format!("      - name: {m}\n"))
            .collect();
        let patched = cfg.replacen(
            "  install:\n",
            &format!("  kernel:\n    modules:\n{modules}  install:\n"),
            1,
        );
        let res = c
            .apply_configuration(NUC_20, &patched, ApplyMode::Auto, false, now)
            .unwrap();
        assert_eq!(res.mode, ApplyMode::NoReboot);
        c.reboot(NUC_20, RebootMode::Default, now).unwrap();
        let later = secs(&c, 400);
        let ms = c.machine_status(NUC_20, later).unwrap();
        assert_eq!(ms.stage, Stage::Running, "{ms:?}");
        assert!(ms.ready);
        assert!(
            c.loaded_kernel_modules(NUC_20, later)
                .unwrap()
                .iter()
                .any(|m| m.name == "nvidia")
        );
    }

    #[test]
    fn gpu_node_reboot_loops_after_boot_timeout() {
        let mut c = Scenario::GpuModulesMissing.build(fast()).unwrap();
        let now = c.now();
        let boot = c.boot_id(NUC_20, now).unwrap();
        let later = c.now() + Duration::from_secs(75 * 60);
        c.advance_to(later);
        assert_ne!(c.boot_id(NUC_20, later).unwrap(), boot);
    }

    #[test]
    fn nvidia_image_on_non_gpu_node_stuck_booting_until_vanilla_upgrade() {
        let mut c = Scenario::NvidiaImageOnNonGpuNode.build(fast()).unwrap();
        let now = c.now();
        assert_eq!(
            c.machine_status(MAC_223, now).unwrap().stage,
            Stage::Booting
        );
        assert_eq!(c.machine_status(NUC_20, now).unwrap().stage, Stage::Running);
        let svc = c.service_list(MAC_223, now).unwrap();
        assert!(
            svc.iter()
                .any(|s| s.id == "ext-nvidia-persistenced" && s.state == ServiceState::Waiting)
        );
        // `talosctl upgrade --image vanilla` is allowed: 3 healthy members.
        c.upgrade(MAC_223, &UpgradeRequest::to_image(VANILLA_IMAGE), now)
            .unwrap();
        assert_eq!(
            c.machine_status(MAC_223, now).unwrap().stage,
            Stage::Upgrading
        );
        let later = secs(&c, 600);
        let ms = c.machine_status(MAC_223, later).unwrap();
        assert_eq!(
            ms.stage,
            Stage::Running,
            "{ms:?} {:?}",
            c.service_list(MAC_223, later)
        );
        assert!(c.extensions(MAC_223, later).unwrap().is_empty());
        assert!(
            c.service_list(MAC_223, later)
                .unwrap()
                .iter()
                .all(|s| !s.id.starts_with("ext-"))
        );
    }

    #[test]
    fn usb_disk_shift_changes_dev_paths() {
        let mut c = Scenario::UsbDiskShift.build(fast()).unwrap();
        let now = c.now();
        let ssd = |d: Vec<crate::sim::node::Disk>| {
            d.into_iter()
                .find(|d| d.model.starts_with("APPLE"))
                .unwrap()
        };
        assert_eq!(ssd(c.disks(MAC_49, now).unwrap()).dev_path, "/dev/sdc");
        let sda = c
            .disks(MAC_49, now)
            .unwrap()
            .into_iter()
            .find(|d| d.dev_path == "/dev/sda")
            .unwrap();
        assert_eq!(sda.transport, "usb");
        c.detach_usb(MAC_49, now).unwrap();
        assert_eq!(ssd(c.disks(MAC_49, now).unwrap()).dev_path, "/dev/sda");
        assert!(ssd(c.disks(MAC_49, now).unwrap()).system_disk);
    }

    #[test]
    fn quorum_lost_symptoms() {
        let mut c = Scenario::QuorumLost.build(fast()).unwrap();
        let now = c.now();
        let err = c.etcd_member_list(NUC_20, true, now).unwrap_err();
        assert_eq!(err.message, "etcdserver: no leader");
        let st = c.etcd_status(NUC_20, now).unwrap();
        assert_eq!(st.leader, 0);
        assert!(st.errors.iter().any(|e| e == "etcdserver: no leader"));
        let snap = c.etcd_snapshot(NUC_20, now).unwrap();
        assert_eq!(snap.len() % 512, 32);
        assert!(c.k8s_list_nodes(now).is_err());
        assert_eq!(
            c.machine_status(MAC_49, now).unwrap_err().code,
            Code::Unavailable
        );
        let ids: Vec<u64> = c.etcd_clusters()[0].member_ids();
        let err = c.etcd_remove_member(NUC_20, ids[0], now).unwrap_err();
        assert!(err.message.contains("etcdserver: no leader"), "{err:?}");
    }

    #[test]
    fn quorum_lost_recovery_via_snapshot_and_bootstrap_recover() {
        let mut c = Scenario::QuorumLost.build(fast()).unwrap();
        let now = c.now();
        let old_cluster = c.etcd_clusters()[0].id();
        let snap = c.etcd_snapshot(NUC_20, now).unwrap();
        // Wipe EPHEMERAL on the survivor, reboot, upload, bootstrap --recover-from.
        let req = ResetRequest {
            graceful: false,
            reboot: true,
            system_labels_to_wipe: vec!["EPHEMERAL".into()],
        };
        c.reset(NUC_20, &req, now).unwrap();
        let t = secs(&c, 100);
        c.advance_to(t);
        assert_eq!(c.node(NUC_20).unwrap().etcd_data(), EtcdData::Empty);
        c.etcd_recover(NUC_20, &snap, t).unwrap();
        c.bootstrap(NUC_20, true, false, t).unwrap();
        let t2 = secs(&c, 60);
        let members = c.etcd_member_list(NUC_20, true, t2).unwrap();
        assert_eq!(members.len(), 1);
        let new = c.etcd_clusters().last().unwrap();
        assert_ne!(new.id(), old_cluster);
        assert_eq!(
            new.kv()
                .entries
                .get("/registry/namespaces/default")
                .map(String::as_str),
            Some("{\"kind\":\"Namespace\"}")
        );
    }

    #[test]
    fn upgrade_refused_at_two_members_unless_forced() {
        let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
        let now = c.now();
        let err = c
            .upgrade(NUC_20, &UpgradeRequest::to_image(NVIDIA_IMAGE), now)
            .unwrap_err();
        assert_eq!(err.code, Code::Unknown);
        assert_eq!(
            err.message,
            "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences"
        );
        let forced = UpgradeRequest {
            force: true,
            ..UpgradeRequest::to_image(NVIDIA_IMAGE)
        };
        c.upgrade(NUC_20, &forced, now).unwrap();
    }

    #[test]
    fn upgrade_refused_with_a_member_down() {
        let mut c = Scenario::NodeDead.build(fast()).unwrap();
        let now = c.now();
        let err = c
            .upgrade(NUC_20, &UpgradeRequest::to_image(NVIDIA_IMAGE), now)
            .unwrap_err();
        assert!(
            err.message
                .contains("is not healthy; all members must be healthy to perform an upgrade"),
            "{err:?}"
        );
    }

    #[test]
    fn two_voter_window_reboot_loses_quorum_and_maintenance_join() {
        let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
        let now = c.now();
        assert_eq!(
            c.machine_status(MAC_223, now).unwrap().stage,
            Stage::Maintenance
        );
        assert_eq!(c.etcd_member_list(NUC_20, true, now).unwrap().len(), 2);
        assert_eq!(
            c.etcd_member_list(MAC_223, true, now).unwrap_err().code,
            Code::Unimplemented
        );
        // Maintenance accepts only reboot/auto/try.
        let cfg = control_plane_config("mac-223", "/dev/sda", VANILLA_IMAGE, false);
        let err = c
            .apply_configuration(MAC_223, &cfg, ApplyMode::NoReboot, false, now)
            .unwrap_err();
        assert_eq!(err.code, Code::Unimplemented);
        assert_eq!(
            err.message,
            "apply configuration --mode='no-reboot' is not supported in maintenance mode"
        );
        // Rebooting a voter in the window is accepted (no guard) and loses quorum.
        c.reboot(MAC_49, RebootMode::Default, now).unwrap();
        let t = secs(&c, 20);
        assert!(
            c.etcd_member_list(NUC_20, true, t)
                .unwrap_err()
                .message
                .contains("no leader")
        );
        // It comes back with data intact: quorum returns.
        let t = secs(&c, 120);
        assert_eq!(c.etcd_member_list(NUC_20, true, t).unwrap().len(), 2);
        // Installing .223: installing -> rebooting -> booting -> running as a promoted voter.
        c.apply_configuration(MAC_223, &cfg, ApplyMode::Auto, false, t)
            .unwrap();
        assert_eq!(
            c.machine_status(MAC_223, t).unwrap().stage,
            Stage::Installing
        );
        let t = secs(&c, 600);
        let ms = c.machine_status(MAC_223, t).unwrap();
        assert_eq!(ms.stage, Stage::Running, "{ms:?}");
        let members = c.etcd_member_list(NUC_20, true, t).unwrap();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| !m.is_learner));
    }

    #[test]
    fn empty_data_dir_cannot_rejoin_two_voter_cluster_without_leader() {
        let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
        let now = c.now();
        // Wipe .49's etcd data (reinstall-like) without leaving: it can never rejoin.
        let req = ResetRequest {
            graceful: false,
            reboot: true,
            system_labels_to_wipe: vec!["EPHEMERAL".into()],
        };
        c.reset(MAC_49, &req, now).unwrap();
        let t = secs(&c, 900);
        c.advance_to(t);
        let n = c.node(MAC_49).unwrap();
        assert_eq!(n.stage(), Stage::Booting);
        assert_eq!(n.etcd_data(), EtcdData::Empty);
        let etcd = n.service("etcd").unwrap();
        assert_eq!(etcd.state, ServiceState::Preparing);
        assert!(
            etcd.events.last().unwrap().msg.contains("no leader"),
            "{etcd:?}"
        );
    }

    #[test]
    fn second_bootstrap_already_exists() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        let err = c.bootstrap(NUC_20, false, false, now).unwrap_err();
        assert_eq!(err.code, Code::AlreadyExists);
        assert_eq!(err.message, "etcd data directory is not empty");
        let err = c.bootstrap(MAC_223, false, false, now).unwrap_err();
        assert_eq!(err.code, Code::AlreadyExists);
    }

    #[test]
    fn bootstrap_on_fresh_node_makes_split_brain() {
        let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
        let now = c.now();
        let cfg = control_plane_config("mac-223", "/dev/sda", VANILLA_IMAGE, false);
        c.apply_configuration(MAC_223, &cfg, ApplyMode::Auto, false, now)
            .unwrap();
        // Take the existing cluster's quorum away so .223 cannot join, then bootstrap it.
        c.keep_down(MAC_49, true).unwrap();
        c.power_off(MAC_49, now).unwrap();
        let t = secs(&c, 300);
        c.advance_to(t);
        assert_eq!(c.node(MAC_223).unwrap().etcd_data(), EtcdData::Empty);
        c.bootstrap(MAC_223, false, false, t).unwrap();
        assert_eq!(c.etcd_clusters().len(), 2);
        let ids: Vec<u64> = c.etcd_clusters().iter().map(|e| e.id()).collect();
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn stale_member_blocks_join_until_removed() {
        let mut c = Scenario::StaleMember.build(fast()).unwrap();
        let now = c.now();
        let n = c.node(MAC_49).unwrap();
        assert_eq!(n.stage(), Stage::Booting);
        assert!(
            n.service("etcd")
                .unwrap()
                .events
                .last()
                .unwrap()
                .msg
                .contains("unhealthy cluster")
        );
        let members = c.etcd_member_list(NUC_20, false, now).unwrap();
        let stale = members.iter().find(|m| m.hostname == "mac-48").unwrap().id;
        c.etcd_remove_member(NUC_20, stale, now).unwrap();
        let t = secs(&c, 300);
        let ms = c.machine_status(MAC_49, t).unwrap();
        assert_eq!(ms.stage, Stage::Running, "{ms:?}");
        let members = c.etcd_member_list(NUC_20, false, t).unwrap();
        assert_eq!(members.len(), 3);
        assert!(
            members
                .iter()
                .any(|m| m.hostname == "mac-49" && !m.is_learner)
        );
        assert_eq!(
            c.call_log()
                .iter()
                .filter(|r| r.method == "EtcdRemoveMemberByID")
                .count(),
            1
        );
    }

    #[test]
    fn node_dead_remove_then_replace() {
        let mut c = Scenario::NodeDead.build(fast()).unwrap();
        let now = c.now();
        assert_eq!(
            c.k8s_get_node("mac-49", now).unwrap().ready,
            ConditionStatus::Unknown
        );
        let members = c.etcd_member_list(NUC_20, false, now).unwrap();
        let dead = members.iter().find(|m| m.hostname == "mac-49").unwrap().id;
        let alive = members.iter().find(|m| m.hostname == "mac-223").unwrap().id;
        let err = c.etcd_remove_member(NUC_20, alive, now).unwrap_err();
        assert!(err.message.contains("etcdserver: unhealthy cluster"));
        c.etcd_remove_member(NUC_20, dead, now).unwrap();
        let err = c.etcd_remove_member(NUC_20, dead, now).unwrap_err();
        assert_eq!(err.code, Code::NotFound);
        assert_eq!(c.etcd_member_list(MAC_223, true, now).unwrap().len(), 2);
    }

    #[test]
    fn graceful_reset_leaves_etcd_first_and_lands_in_maintenance() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        c.reset(
            MAC_49,
            &ResetRequest {
                reboot: true,
                ..ResetRequest::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(
            c.machine_status(MAC_49, now).unwrap().stage,
            Stage::Resetting
        );
        let t = secs(&c, 200);
        assert_eq!(c.etcd_member_list(NUC_20, true, t).unwrap().len(), 2);
        assert_eq!(
            c.machine_status(MAC_49, t).unwrap().stage,
            Stage::Maintenance
        );
    }

    #[test]
    fn last_member_cannot_leave_through_talos() {
        let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
        let now = c.now();
        c.etcd_leave_cluster(MAC_49, now).unwrap();
        let err = c.etcd_leave_cluster(NUC_20, now).unwrap_err();
        assert_eq!(err.code, Code::Unknown);
        assert_eq!(
            err.message,
            "failed to leave cluster: etcdserver: re-configuration failed due to not enough started members"
        );
    }

    #[test]
    fn removed_member_restart_fails() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        let id = c.etcd_status(MAC_49, now).unwrap().member_id;
        c.etcd_remove_member(NUC_20, id, now).unwrap();
        let svc = c.node(MAC_49).unwrap().service("etcd").unwrap().clone();
        assert_eq!(svc.state, ServiceState::Failed);
        assert!(
            svc.events
                .last()
                .unwrap()
                .msg
                .contains("the member has been permanently removed from the cluster")
        );
        c.reboot(MAC_49, RebootMode::Default, now).unwrap();
        let t = secs(&c, 200);
        c.advance_to(t);
        let svc = c.node(MAC_49).unwrap().service("etcd").unwrap().clone();
        assert_eq!(svc.state, ServiceState::Failed);
        assert!(
            svc.events
                .last()
                .unwrap()
                .msg
                .contains("data-dir used by this member must be removed")
        );
    }

    #[test]
    fn pdb_blocks_eviction_and_cordon_roundtrip() {
        let mut c = Scenario::PdbBlocksDrain.build(fast()).unwrap();
        let now = c.now();
        let pods = c.k8s_list_pods(Some("nuc-20"), now).unwrap();
        let plex = pods.iter().find(|p| p.app == "plex").unwrap();
        let err = c.k8s_evict_pod("media", &plex.name, now).unwrap_err();
        assert_eq!(err.status, 429);
        assert!(pods.iter().any(|p| p.owner == PodOwner::Mirror));
        let ds = pods
            .iter()
            .find(|p| matches!(p.owner, PodOwner::DaemonSet(_)))
            .unwrap();
        c.k8s_evict_pod("kube-system", &ds.name, now).unwrap();
        c.k8s_set_unschedulable("nuc-20", true, now).unwrap();
        assert!(c.k8s_get_node("nuc-20", now).unwrap().unschedulable);
        let dns = pods.iter().find(|p| p.app == "coredns").unwrap();
        c.k8s_evict_pod("kube-system", &dns.name, now).unwrap();
        let moved = c.k8s_list_pods(None, now).unwrap();
        assert!(
            moved
                .iter()
                .filter(|p| p.app == "coredns")
                .all(|p| p.node.as_deref() != Some("nuc-20"))
        );
        assert_eq!(c.k8s_leases(now).unwrap().len(), 3);
    }

    #[test]
    fn injected_faults_fail_n_times() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        c.fail_next("EtcdMemberList", Some(NUC_20), 2);
        assert_eq!(
            c.etcd_member_list(NUC_20, true, now).unwrap_err().code,
            Code::Unavailable
        );
        assert_eq!(
            c.etcd_member_list(NUC_20, true, now).unwrap_err().code,
            Code::Unavailable
        );
        assert!(c.etcd_member_list(NUC_20, true, now).is_ok());
        c.fail_next("Reboot", None, 1);
        assert!(c.reboot(MAC_223, RebootMode::Default, now).is_err());
        assert_eq!(c.call_log().last().unwrap().result, Err(Code::Unavailable));
    }

    #[test]
    fn five_second_window_after_reboot_through_talos() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        c.reboot(MAC_223, RebootMode::Default, now).unwrap();
        // Find the moment .223's etcd started and try to remove .49 within 5 s.
        let boot = c.node(MAC_223).unwrap().boot_id().to_string();
        let mut t = now;
        loop {
            t += Duration::from_millis(500);
            c.advance_to(t);
            let n = c.node(MAC_223).unwrap();
            if n.boot_id() != boot && n.etcd_started_at.is_some() {
                break;
            }
        }
        let id49 = c.etcd_status(MAC_49, t).unwrap().member_id;
        let err = c
            .etcd_remove_member(NUC_20, id49, t + Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(
            err.message,
            "failed to remove member: etcdserver: unhealthy cluster"
        );
    }

    #[test]
    fn apply_invalid_yaml_is_invalid_argument_and_staged_waits_for_reboot() {
        let mut c = seed(fast()).unwrap();
        let now = c.now();
        let err = c
            .apply_configuration(MAC_49, "machine: [", ApplyMode::Auto, false, now)
            .unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        let cfg = c.machine_config(MAC_49, now).unwrap();
        let changed = cfg.replace("token: simtoken", "token: othertoken");
        let err = c
            .apply_configuration(MAC_49, &changed, ApplyMode::NoReboot, false, now)
            .unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        let res = c
            .apply_configuration(MAC_49, &changed, ApplyMode::Staged, false, now)
            .unwrap();
        assert_eq!(res.mode, ApplyMode::Staged);
        assert_eq!(c.machine_config(MAC_49, now).unwrap(), cfg);
        let res = c
            .apply_configuration(MAC_49, &changed, ApplyMode::Auto, false, now)
            .unwrap();
        assert_eq!(res.mode, ApplyMode::Reboot);
        assert_eq!(
            c.machine_status(MAC_49, now).unwrap().stage,
            Stage::Rebooting
        );
    }
}
