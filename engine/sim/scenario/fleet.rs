//! Topology presets: the seed homelab (three control planes) and a fleet (the same three
//! control planes plus N workers), for runbooks that must handle tens of nodes and batches.
//!
//! Workers are reached as the control planes are: each has its own label (a 192.168.3.x
//! address, never dialled), its own loopback Talos API port and a Kubernetes Node. They carry
//! `machine.type: worker`, so the model gives them no etcd member and no control-plane static
//! pods; kubelet, pods, drain, eviction and reboot behave as on any node. The fleet is built
//! by driving the model (power on, converge until every worker is Ready), like every scenario.

use std::fmt;

use super::{Scenario, converge};
use crate::sim::clock::{Speed, Timings};
use crate::sim::cluster::{Cluster, ConditionStatus, PodDisruptionBudget};
use crate::sim::error::{ApiError, Code};
use crate::sim::node::{Hardware, NodeSpec, Stage, VANILLA_IMAGE, worker_config};

/// The largest fleet: one label per address of 192.168.3.0/24.
pub const MAX_WORKERS: u16 = 254;
/// Workers of `--preset fleet` when `--workers` is not given (a 50-node cluster).
pub const DEFAULT_WORKERS: u16 = 47;
/// The Deployment spread over the workers (one pod each), guarded by a PodDisruptionBudget.
pub const FLEET_APP: &str = "web";
/// Its namespace.
pub const FLEET_NAMESPACE: &str = "apps";

/// A cluster topology.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "preset", rename_all = "kebab-case")]
pub enum Preset {
    /// The three-node homelab of the notes (.20 NUC with GPU, .223 and .49 Mac Minis).
    #[default]
    Seed,
    /// The seed's three control planes plus `workers` worker nodes.
    Fleet {
        /// Number of workers (1 to [`MAX_WORKERS`]).
        workers: u16,
    },
}

/// A preset that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    /// Not a preset name.
    #[error(
        "unknown preset {0:?}; known: seed (the three-node homelab), fleet (its three control planes plus --workers N workers)"
    )]
    Unknown(String),
    /// `--workers` out of range.
    #[error("--workers must be between 1 and {MAX_WORKERS}, got {0}")]
    Workers(u32),
    /// `--workers` without `--preset fleet`.
    #[error("--workers needs --preset fleet (the seed preset has no workers)")]
    WorkersWithoutFleet,
    /// A scenario that is defined on the seed's three nodes only.
    #[error(
        "scenario `{0}` is defined on the seed's three control planes and does not apply to the fleet preset; the fleet starts `healthy` or `pdb-blocks-drain`"
    )]
    Scenario(String),
}

impl Preset {
    /// The preset named `name` with `workers` (only for `fleet`; its default is
    /// [`DEFAULT_WORKERS`]).
    pub fn parse(name: &str, workers: Option<u32>) -> Result<Preset, PresetError> {
        match (name, workers) {
            ("seed", None) => Ok(Preset::Seed),
            ("seed", Some(_)) => Err(PresetError::WorkersWithoutFleet),
            ("fleet", None) => Ok(Preset::Fleet {
                workers: DEFAULT_WORKERS,
            }),
            ("fleet", Some(n)) => match u16::try_from(n) {
                Ok(w) if (1..=MAX_WORKERS).contains(&w) => Ok(Preset::Fleet { workers: w }),
                _ => Err(PresetError::Workers(n)),
            },
            (other, _) => Err(PresetError::Unknown(other.to_string())),
        }
    }

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Seed => "seed",
            Preset::Fleet { .. } => "fleet",
        }
    }

    /// Number of workers.
    pub fn workers(self) -> u16 {
        match self {
            Preset::Seed => 0,
            Preset::Fleet { workers } => workers,
        }
    }

    /// Whether this is the seed preset (serde: omitted when it is).
    pub fn is_seed(&self) -> bool {
        *self == Preset::Seed
    }

    /// Refuses scenarios that only make sense on the seed's three nodes.
    pub fn check(self, scenario: Scenario) -> Result<(), PresetError> {
        match (self, scenario) {
            (Preset::Seed, _) | (_, Scenario::Healthy | Scenario::PdbBlocksDrain) => Ok(()),
            (_, sc) => Err(PresetError::Scenario(sc.name().to_string())),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Seed => f.write_str("seed"),
            Preset::Fleet { workers } => write!(f, "fleet ({workers} workers)"),
        }
    }
}

/// The label of worker `i` (1-based).
pub fn worker_label(i: u16) -> String {
    format!("192.168.3.{i}")
}

/// The hostname (and Kubernetes node name) of worker `i` (1-based).
pub fn worker_hostname(i: u16) -> String {
    format!("worker-{i:02}")
}

fn worker_spec(i: u16) -> NodeSpec {
    let host = worker_hostname(i);
    NodeSpec {
        label: worker_label(i),
        hostname: host.clone(),
        hardware: Hardware::nuc(false, &format!("S4EWNX0W{i:06}")),
        image: Some(VANILLA_IMAGE.into()),
        config: Some(worker_config(&host, "/dev/nvme0n1", VANILLA_IMAGE)),
    }
}

impl Scenario {
    /// Builds the scenario on `preset` at `speed`.
    pub fn build_preset(self, preset: Preset, speed: Speed) -> Result<Cluster, ApiError> {
        preset
            .check(self)
            .map_err(|e| ApiError::new(Code::InvalidArgument, e.to_string()))?;
        let timings = Timings::at_speed(speed);
        let mut c = super::build(self, timings)?;
        if let Preset::Fleet { workers } = preset {
            add_workers(&mut c, workers)?;
        }
        Ok(c)
    }
}

/// Adds `n` workers to a built cluster, boots them until every one is Ready in Kubernetes,
/// and spreads the [`FLEET_APP`] Deployment over them (one pod each) under a
/// PodDisruptionBudget of half its replicas.
fn add_workers(c: &mut Cluster, n: u16) -> Result<(), ApiError> {
    let now = c.now();
    for i in 1..=n {
        c.add_node(worker_spec(i))?;
        c.power_on(&worker_label(i), now)?;
    }
    converge(c, |c| {
        let mut c = c.clone();
        let now = c.now();
        let Ok(k8s) = c.k8s_list_nodes(now) else {
            return false;
        };
        (1..=n).all(|i| {
            let host = worker_hostname(i);
            c.node(&worker_label(i))
                .is_some_and(|w| w.stage() == Stage::Running)
                && k8s
                    .iter()
                    .any(|k| k.name == host && k.ready == ConditionStatus::True)
        })
    })?;
    let hosts: Vec<String> = (1..=n).map(worker_hostname).collect();
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    c.add_deployment_pods(FLEET_NAMESPACE, FLEET_APP, "web-5d9c7b8f6", &refs);
    c.add_pdb(PodDisruptionBudget {
        namespace: FLEET_NAMESPACE.into(),
        name: FLEET_APP.into(),
        app: FLEET_APP.into(),
        min_available: usize::from(n).div_ceil(2),
    });
    c.clear_call_log();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::node::MachineType;

    fn fast() -> Speed {
        Speed::new(1000.0).unwrap()
    }

    #[test]
    fn preset_parse_refuses_nonsense() {
        assert_eq!(Preset::parse("seed", None), Ok(Preset::Seed));
        assert_eq!(
            Preset::parse("fleet", None),
            Ok(Preset::Fleet { workers: 47 })
        );
        assert_eq!(
            Preset::parse("fleet", Some(5)),
            Ok(Preset::Fleet { workers: 5 })
        );
        assert_eq!(
            Preset::parse("fleet", Some(0)),
            Err(PresetError::Workers(0))
        );
        assert_eq!(
            Preset::parse("fleet", Some(255)),
            Err(PresetError::Workers(255))
        );
        assert_eq!(
            Preset::parse("seed", Some(3)),
            Err(PresetError::WorkersWithoutFleet)
        );
        assert!(matches!(
            Preset::parse("big", None),
            Err(PresetError::Unknown(_))
        ));
        let fleet = Preset::Fleet { workers: 2 };
        assert!(fleet.check(Scenario::QuorumLost).is_err());
        assert!(fleet.check(Scenario::Healthy).is_ok());
        assert!(Preset::Seed.check(Scenario::QuorumLost).is_ok());
        let e = Scenario::NodeDead.build_preset(fleet, fast()).unwrap_err();
        assert!(e.message.contains("node-dead"), "{e:?}");
    }

    #[test]
    fn fleet_has_three_voters_and_ready_workers_without_etcd() {
        let mut c = Scenario::Healthy
            .build_preset(Preset::Fleet { workers: 4 }, fast())
            .unwrap();
        let now = c.now();
        assert_eq!(c.nodes().len(), 7);
        let members = c.etcd_member_list(super::super::NUC_20, true, now).unwrap();
        assert_eq!(members.len(), 3, "workers are not etcd members");
        let k8s = c.k8s_list_nodes(now).unwrap();
        assert_eq!(k8s.len(), 7);
        for i in 1..=4 {
            let l = worker_label(i);
            assert_eq!(c.machine_type(&l), Some(MachineType::Worker));
            let ms = c.machine_status(&l, now).unwrap();
            assert_eq!(ms.stage, Stage::Running, "{l}: {ms:?}");
            assert!(ms.ready, "{l}: {ms:?}");
            assert!(c.node(&l).unwrap().service("etcd").is_none());
            let pods = c.k8s_list_pods(Some(&worker_hostname(i)), now).unwrap();
            assert!(pods.iter().any(|p| p.app == FLEET_APP), "{pods:?}");
        }
        assert_eq!(c.k8s_list_pdbs(now).unwrap().len(), 1);
        assert!(c.call_log().is_empty());
        // A worker's etcd API is refused as on Talos.
        assert!(c.etcd_member_list(&worker_label(1), true, now).is_err());
    }
}
