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
mod tests;
