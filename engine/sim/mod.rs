//! The simulated Talos cluster that tests and operators rehearse runbooks against.
//!
//! This module is the pure model: nodes, their Talos stage machine and services, the etcd
//! cluster(s), and the Kubernetes view, all running on a virtual clock. The gRPC (Talos API)
//! and Kubernetes API layers call into [`Cluster`]; node addresses such as `192.168.2.20` are
//! labels only and are never dialled. [`Simulator::start`] ([`server`]) serves the model
//! over the Talos gRPC API ([`talos_api`]) with a throwaway PKI ([`pki`]).

pub mod clock;
pub mod cluster;
pub mod error;
pub mod etcd;
pub mod kube_api;
pub mod node;
pub mod pki;
pub mod scenario;
pub mod server;
pub mod shared;
pub mod talos_api;

pub use clock::{SimTime, Speed, Timings};
pub use cluster::Cluster;
pub use error::{ApiError, Code, KubeError};
pub use etcd::{EtcdCluster, MemberId};
pub use node::{Node, Stage};
pub use scenario::{Preset, Scenario};
pub use server::{SimConfig, SimError, SimHandle, Simulator};
pub use shared::SharedCluster;
