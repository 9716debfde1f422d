//! Observing the cluster: one fresh [`ClusterView`] per guard check or wait poll.
//!
//! Guards must be decided from fresh observations, per node, and fail closed: this module asks
//! every node (through the talosconfig endpoint, routed with `node` metadata, or directly over
//! the insecure maintenance API) for its machine status, services, boot id, etcd member list,
//! status and alarms, machine type, disks, PCI devices and kernel module specs, and asks the
//! Kubernetes API for Node readiness and evictable pods. Each call has a short deadline so a
//! dead node makes its view "unreachable" instead of hanging the run.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;

use runbook_proto::cosi::resource::{GetRequest, ListRequest};
use runbook_proto::machine::{EtcdMemberListRequest, ReadRequest};
use runbook_proto::talos::resource::definitions::{block, enums, hardware, runtime};

use crate::cluster::talos::{TalosClient, with_node};
use crate::condition::view::{ClusterView, Disk, EtcdStatus, Member, NodeView, Service};

/// How long one observation call may take.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// The Talos connection, moved to another endpoint when the one in use stops answering (its
/// node was just wiped, rebooted or powered off), as talosctl's round-robin over the
/// talosconfig's endpoints does.
pub struct Failover {
    current: std::sync::RwLock<TalosClient>,
    context: Option<crate::cluster::talosconfig::Context>,
}

impl Failover {
    /// A connection; with a talosconfig context it can fail over to the context's other
    /// endpoints.
    pub fn new(client: TalosClient, context: Option<crate::cluster::talosconfig::Context>) -> Self {
        Failover {
            current: std::sync::RwLock::new(client),
            context,
        }
    }

    fn current(&self) -> TalosClient {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `MachineService` on the endpoint in use.
    pub fn machine(
        &self,
    ) -> runbook_proto::machine::machine_service_client::MachineServiceClient<
        tonic::transport::Channel,
    > {
        self.current().machine()
    }

    /// COSI `State` on the endpoint in use.
    pub fn cosi(
        &self,
    ) -> runbook_proto::cosi::resource::state_client::StateClient<tonic::transport::Channel> {
        self.current().cosi()
    }

    /// Checks that the endpoint in use answers (as itself, without routing); if not, connects
    /// to the first other endpoint that does. Keeps the old one if none answers.
    pub async fn ensure_healthy(&self) {
        if within(self.current().machine().version(())).await.is_ok() {
            return;
        }
        let Some(ctx) = &self.context else {
            return;
        };
        let in_use = self.current().endpoint().to_string();
        for ep in ctx.endpoints.iter().filter(|e| **e != in_use) {
            let Ok(client) = within(TalosClient::connect_endpoint(ctx, ep)).await else {
                continue;
            };
            if within(client.machine().version(())).await.is_ok() {
                tracing::info!(from = %in_use, to = %ep, "Talos endpoint failed over");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = client;
                return;
            }
        }
    }
}

/// Where and how to observe.
pub struct Observer {
    /// Connected to a control-plane endpoint with the talosconfig identity.
    pub talos: Failover,
    /// The nodes to observe, by label.
    pub nodes: Vec<String>,
    /// Direct endpoints per label, for maintenance-mode nodes (default: the label itself).
    pub endpoints: BTreeMap<String, String>,
    /// The Kubernetes API, if a kubeconfig is available.
    pub kube: Option<kube::Client>,
    /// Certificate pins for maintenance-mode nodes (see [`crate::cluster::pinning`]).
    pub pins: crate::cluster::pinning::Pins,
}

/// An error as an operator should read it: a gRPC status by its message and code, anything
/// else by its display.
pub trait Brief {
    /// The short text.
    fn brief(&self) -> String;
}

impl Brief for tonic::Status {
    fn brief(&self) -> String {
        format!("{} ({:?})", self.message(), self.code())
    }
}

impl Brief for kube::Error {
    fn brief(&self) -> String {
        self.to_string()
    }
}

impl Brief for crate::cluster::talos::ClientError {
    fn brief(&self) -> String {
        self.to_string()
    }
}

async fn within<T, E: Brief>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.brief()),
        Err(_) => Err("timed out".into()),
    }
}

fn stage_name(stage: i32) -> String {
    use enums::RuntimeMachineStage as S;
    match S::try_from(stage).unwrap_or(S::MachineStageUnknown) {
        S::MachineStageUnknown => "unknown",
        S::MachineStageBooting => "booting",
        S::MachineStageInstalling => "installing",
        S::MachineStageMaintenance => "maintenance",
        S::MachineStageRunning => "running",
        S::MachineStageRebooting => "rebooting",
        S::MachineStageShuttingDown => "shutting down",
        S::MachineStageResetting => "resetting",
        S::MachineStageUpgrading => "upgrading",
    }
    .to_string()
}

impl Observer {
    /// Observes every node.
    pub async fn view(&self) -> ClusterView {
        self.talos.ensure_healthy().await;
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for label in &self.nodes {
            nodes.push(self.node(label).await);
        }
        if let Some(kube) = &self.kube {
            observe_kube(kube, &mut nodes).await;
        }
        ClusterView { nodes }
    }

    async fn get(
        &self,
        label: &str,
        namespace: &str,
        ty: &str,
        id: &str,
    ) -> Result<Vec<u8>, tonic::Status> {
        let req = GetRequest {
            namespace: namespace.into(),
            r#type: ty.into(),
            id: id.into(),
            options: None,
        };
        let resp = self
            .talos
            .cosi()
            .get(with_node(req, label))
            .await?
            .into_inner();
        Ok(resp
            .resource
            .and_then(|r| r.spec)
            .map(|s| s.proto_spec)
            .unwrap_or_default())
    }

    async fn list(
        &self,
        label: &str,
        namespace: &str,
        ty: &str,
    ) -> Result<Vec<Vec<u8>>, tonic::Status> {
        let req = ListRequest {
            namespace: namespace.into(),
            r#type: ty.into(),
            options: None,
        };
        let mut stream = self
            .talos
            .cosi()
            .list(with_node(req, label))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            if let Some(spec) = item?.resource.and_then(|r| r.spec) {
                out.push(spec.proto_spec);
            }
        }
        Ok(out)
    }

    /// Reads a small file from a node (`MachineService/Read`), trimmed.
    pub async fn read(&self, label: &str, path: &str) -> Result<String, tonic::Status> {
        let req = ReadRequest { path: path.into() };
        let mut stream = self
            .talos
            .machine()
            .read(with_node(req, label))
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend(chunk?.bytes);
        }
        Ok(String::from_utf8_lossy(&bytes).trim().to_string())
    }

    /// Observes one node.
    pub async fn node(&self, label: &str) -> NodeView {
        let mut v = NodeView {
            label: label.to_string(),
            ..NodeView::default()
        };
        let status = within(self.get(
            label,
            "runtime",
            "MachineStatuses.runtime.talos.dev",
            "machine",
        ))
        .await;
        match status {
            Ok(bytes) => {
                v.reachable = true;
                if let Ok(spec) = runtime::MachineStatusSpec::decode(bytes.as_slice()) {
                    v.stage = Some(stage_name(spec.stage));
                    if let Some(st) = spec.status {
                        v.ready = Some(st.ready);
                        v.unmet = st
                            .unmet_conditions
                            .into_iter()
                            .map(|c| format!("{}: {}", c.name, c.reason))
                            .collect();
                    }
                }
            }
            Err(_) => {
                self.maintenance_probe(&mut v).await;
                return v;
            }
        }
        if let Ok(h) = within(self.read(label, "/proc/sys/kernel/hostname")).await {
            v.hostname = h;
        }
        v.boot_id = within(self.read(label, "/proc/sys/kernel/random/boot_id"))
            .await
            .ok();
        if let Ok(resp) = within(self.talos.machine().service_list(with_node((), label))).await {
            v.services = resp
                .into_inner()
                .messages
                .into_iter()
                .flat_map(|m| m.services)
                .map(|s| Service {
                    healthy: s.health.as_ref().is_some_and(|h| h.healthy),
                    id: s.id,
                    state: s.state,
                })
                .collect();
        }
        let members = within(self.talos.machine().etcd_member_list(with_node(
            EtcdMemberListRequest { query_local: false },
            label,
        )))
        .await;
        v.members = Some(members.map(|r| {
            r.into_inner()
                .messages
                .into_iter()
                .flat_map(|m| m.members)
                .map(|m| Member {
                    id: m.id,
                    name: m.hostname,
                    peer_urls: m.peer_urls,
                    is_learner: m.is_learner,
                })
                .collect()
        }));
        v.etcd = Some(
            within(self.talos.machine().etcd_status(with_node((), label)))
                .await
                .and_then(|r| {
                    r.into_inner()
                        .messages
                        .into_iter()
                        .find_map(|m| m.member_status)
                        .ok_or_else(|| "no etcd status".to_string())
                })
                .map(|s| EtcdStatus {
                    member_id: s.member_id,
                    leader: s.leader,
                    raft_index: s.raft_index,
                    errors: s.errors,
                    is_learner: s.is_learner,
                }),
        );
        if let Ok(r) = within(self.talos.machine().etcd_alarm_list(with_node((), label))).await {
            v.alarms = r
                .into_inner()
                .messages
                .into_iter()
                .flat_map(|m| m.member_alarms)
                .filter(|a| a.alarm != 0)
                .map(|a| format!("{:016x}: alarm {}", a.member_id, a.alarm))
                .collect();
        }
        if let Ok(bytes) = within(self.get(
            label,
            "config",
            "MachineTypes.config.talos.dev",
            "machine-type",
        ))
        .await
            && let Ok(spec) =
                runbook_proto::resource::config::MachineTypeSpec::decode(bytes.as_slice())
        {
            v.machine_type = Some(
                match spec.machine_type {
                    1 => "init",
                    2 => "controlplane",
                    3 => "worker",
                    _ => "unknown",
                }
                .to_string(),
            );
        }
        if let Ok(items) = within(self.list(label, "runtime", "Disks.block.talos.dev")).await {
            v.disks = decode_disks(&items);
        }
        if let Ok(items) =
            within(self.list(label, "hardware", "PCIDevices.hardware.talos.dev")).await
        {
            v.pci_vendors = decode_vendors(&items);
        }
        if let Ok(items) =
            within(self.list(label, "runtime", "KernelModuleSpecs.runtime.talos.dev")).await
        {
            v.kernel_modules = items
                .iter()
                .filter_map(|b| runtime::KernelModuleSpecSpec::decode(b.as_slice()).ok())
                .map(|m| m.name)
                .collect();
        }
        v
    }

    /// A node the routed API cannot reach may be in maintenance mode: try its own endpoint
    /// without a client certificate.
    async fn maintenance_probe(&self, v: &mut NodeView) {
        // Only a configured endpoint is dialled, and only with its certificate pinned or, on
        // first contact, learned (see `cluster::pinning`).
        let Some(endpoint) = self.endpoint_of(&v.label) else {
            return;
        };
        let probed = match within(self.pins.probe(&v.label, &endpoint)).await {
            Ok(p) => p,
            Err(e) => {
                if e.contains("does not match its pin") {
                    tracing::warn!(target: "runbook::pinning", node = %v.label, "{e}");
                }
                return;
            }
        };
        let client = probed.client;
        let answered = match within(client.machine().version(())).await {
            Ok(_) => true,
            Err(e) => e.ends_with(&format!("({:?})", Code::Unimplemented)),
        };
        if !answered {
            return;
        }
        if let Some(fp) = &probed.unpinned
            && let Err(e) = self.pins.learn(&v.label, fp)
        {
            // A pin that cannot be recorded is not trusted: the node stays unreachable.
            tracing::warn!(target: "runbook::pinning", node = %v.label, "{e}");
            return;
        }
        v.reachable = true;
        v.maintenance = true;
        v.stage = Some("maintenance".into());
        // Maintenance mode serves COSI read-only: disks and PCI devices are what an install
        // (disk check, image check) needs.
        let list = |ns: &'static str, ty: &'static str| {
            let client = client.clone();
            async move {
                let req = ListRequest {
                    namespace: ns.into(),
                    r#type: ty.into(),
                    options: None,
                };
                let mut stream = client.cosi().list(req).await?.into_inner();
                let mut out = Vec::new();
                while let Some(item) = stream.next().await {
                    if let Some(spec) = item?.resource.and_then(|r| r.spec) {
                        out.push(spec.proto_spec);
                    }
                }
                Ok::<_, tonic::Status>(out)
            }
        };
        if let Ok(items) = within(list("runtime", "Disks.block.talos.dev")).await {
            v.disks = decode_disks(&items);
        }
        if let Ok(items) = within(list("hardware", "PCIDevices.hardware.talos.dev")).await {
            v.pci_vendors = decode_vendors(&items);
        }
    }
}

impl Observer {
    /// The direct endpoint of a node (maintenance mode): from the endpoint map when one is
    /// given (the simulator's), else the node itself if it is one of the configured nodes
    /// (a real cluster's talosconfig lists addresses). Any other label is never dialled.
    pub fn endpoint_of(&self, label: &str) -> Option<String> {
        if let Some(e) = self.endpoints.get(label) {
            return Some(e.clone());
        }
        (self.endpoints.is_empty() && self.nodes.iter().any(|n| n == label))
            .then(|| label.to_string())
    }
}

fn decode_vendors(items: &[Vec<u8>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|b| hardware::PciDeviceSpec::decode(b.as_slice()).ok())
        .map(|d| d.vendor_id)
        .collect()
}

fn decode_disks(items: &[Vec<u8>]) -> Vec<Disk> {
    items
        .iter()
        .filter_map(|b| block::DiskSpec::decode(b.as_slice()).ok())
        .map(|d| Disk {
            dev_path: d.dev_path,
            model: d.model,
            serial: d.serial,
            transport: d.transport,
            readonly: d.readonly,
            cdrom: d.cdrom,
            size: d.size,
        })
        .collect()
}

async fn observe_kube(client: &kube::Client, nodes: &mut [NodeView]) {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams};

    let api: Api<Node> = Api::all(client.clone());
    let Ok(list) = within(api.list(&ListParams::default())).await else {
        return;
    };
    for v in nodes.iter_mut() {
        let name = if v.hostname.is_empty() {
            &v.label
        } else {
            &v.hostname
        };
        let node = list
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()));
        v.kube_ready = node.map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if node.is_none() {
            continue;
        }
        let pods: Api<Pod> = Api::all(client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={name}"));
        if let Ok(list) = within(pods.list(&params)).await {
            v.evictable_pods = Some(list.items.iter().filter(|p| evictable(p)).count());
        }
    }
}

/// Whether `kubectl drain` would evict a pod: not a mirror pod, not owned by a DaemonSet,
/// not finished.
pub fn evictable(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let daemonset = p
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
    let finished = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
    !mirror && !daemonset && !finished
}
