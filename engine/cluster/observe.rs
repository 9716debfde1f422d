//! Observing the cluster: one fresh [`ClusterView`] per guard check or wait poll.
//!
//! Guards must be decided from fresh observations, per node, and fail closed: this module asks
//! every node (through the talosconfig endpoint, routed with `node` metadata, or directly over
//! the insecure maintenance API) for its machine status, services, boot id, etcd member list,
//! status and alarms, machine type, disks, PCI devices and kernel module specs, and asks the
//! Kubernetes API for Node readiness and evictable pods. Each call has a short deadline so a
//! dead node makes its view "unreachable" instead of hanging the run. Every fact keeps its
//! evidence ([`Observed`]): a failed call is recorded as a [`Gap`] naming the call and how it
//! failed (unreachable, timed out, permission denied, failed), never as an empty answer.
//! Nodes are observed concurrently, and one node's calls after its MachineStatus too, all over
//! the one Talos channel; the unary machine calls and the hostname and boot id reads go out
//! once for all nodes, one-to-many ([`multi`]); the Kubernetes Node list is read alongside. [`Observer::view_of`]
//! reads only what a check declares (`condition/reads.rs`), and [`watch`] follows the change
//! streams that wake a wait early.

use std::collections::BTreeMap;
use std::time::Duration;

pub mod multi;
pub mod watch;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;

use runbook_proto::cosi::resource::{GetRequest, ListRequest};
use runbook_proto::machine::{EtcdMemberListRequest, ReadRequest};
use runbook_proto::talos::resource::definitions::{block, enums, hardware, runtime};

use crate::cluster::talos::{TalosClient, with_node};
use crate::condition::reads::{Fact, Reads};
use crate::condition::view::{ClusterView, Contact, Disk, Gap, GapKind, NodeView, Observed};

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
        if call("Version", self.current().machine().version(()))
            .await
            .is_ok()
        {
            return;
        }
        let Some(ctx) = &self.context else {
            return;
        };
        let in_use = self.current().endpoint().to_string();
        for ep in ctx.endpoints.iter().filter(|e| **e != in_use) {
            let Ok(client) = call("connect", TalosClient::connect_endpoint(ctx, ep)).await else {
                continue;
            };
            if call("Version", client.machine().version(())).await.is_ok() {
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
/// else by its display; and what kind of evidence gap it is.
pub trait Brief {
    /// The short text.
    fn brief(&self) -> String;
    /// The kind of gap.
    fn kind(&self) -> GapKind;
}

impl Brief for tonic::Status {
    fn brief(&self) -> String {
        format!("{} ({:?})", self.message(), self.code())
    }
    fn kind(&self) -> GapKind {
        match self.code() {
            Code::PermissionDenied | Code::Unauthenticated => GapKind::PermissionDenied,
            Code::Unavailable => GapKind::Unreachable,
            Code::DeadlineExceeded => GapKind::TimedOut,
            _ => GapKind::Failed,
        }
    }
}

impl Brief for kube::Error {
    fn brief(&self) -> String {
        self.to_string()
    }
    fn kind(&self) -> GapKind {
        match self {
            kube::Error::Api(e) if e.code == 401 || e.code == 403 => GapKind::PermissionDenied,
            kube::Error::Api(e) if e.code == 503 => GapKind::Unreachable,
            kube::Error::Api(_) => GapKind::Failed,
            _ => GapKind::Unreachable,
        }
    }
}

impl Brief for crate::cluster::talos::ClientError {
    fn brief(&self) -> String {
        self.to_string()
    }
    fn kind(&self) -> GapKind {
        GapKind::Unreachable
    }
}

/// One observation call under [`CALL_DEADLINE`], its failure as a [`Gap`] naming `call`.
pub(crate) async fn call<T, E: Brief>(
    call: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Gap> {
    match tokio::time::timeout(CALL_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Gap::new(call, e.kind(), e.brief())),
        Err(_) => Err(Gap::new(call, GapKind::TimedOut, "timed out")),
    }
}

fn failed(what: &str, message: impl Into<String>) -> Gap {
    Gap::new(what, GapKind::Failed, message)
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
    /// Observes every node, every fact.
    pub async fn view(&self) -> ClusterView {
        self.view_of(Reads::ALL).await
    }

    /// Observes every node, reading only `reads` (and always MachineStatus and the hostname):
    /// every other fact stays [`Observed::NotAsked`], which a check that needs it refuses.
    pub async fn view_of(&self, reads: Reads) -> ClusterView {
        self.talos.ensure_healthy().await;
        // Nodes are observed concurrently, and the Kubernetes Node list alongside them; a
        // dead node costs one call deadline, not one per node.
        // The unary machine calls every node answers go out once, one-to-many (`nodes`
        // metadata); the rest per node. A node's one-to-many facts are taken only when it
        // answered its own MachineStatus (a silent node stays silent, a maintenance node is
        // probed at its own endpoint).
        let mut asked: Vec<String> = Vec::new();
        for label in &self.nodes {
            if !asked.contains(label) {
                asked.push(label.clone());
            }
        }
        let one_to_many = multi::read(&self.talos, &asked, reads);
        let per_node = multi::per_node(reads);
        let talos = futures::future::join_all(
            self.nodes
                .iter()
                .map(|label| self.node_reading_hostname(label, per_node, false)),
        );
        let kube_nodes = async {
            match &self.kube {
                Some(kube) if reads.has(Fact::KubeNodes) || reads.has(Fact::Pods) => {
                    Some(list_kube_nodes(kube).await)
                }
                _ => None,
            }
        };
        let (mut nodes, kube_nodes, replies) = tokio::join!(talos, kube_nodes, one_to_many);
        for v in &mut nodes {
            if matches!(v.contact, Observed::Answered(Contact::Secure)) {
                replies.fill(v, reads);
            }
        }
        if let (Some(kube), Some(list)) = (&self.kube, kube_nodes) {
            observe_kube(kube, list, &mut nodes, reads).await;
        }
        ClusterView { nodes }
    }

    async fn get(
        &self,
        label: &str,
        namespace: &str,
        ty: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
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
        Ok(resp.resource.and_then(|r| r.spec).map(|s| s.proto_spec))
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

    /// Observes one node, every fact. Every fact is [`Observed`]: a call that fails leaves a
    /// [`Gap`].
    pub async fn node(&self, label: &str) -> NodeView {
        self.node_reading(label, Reads::ALL).await
    }

    /// Observes one node, reading only `reads` besides MachineStatus and the hostname.
    pub async fn node_reading(&self, label: &str, reads: Reads) -> NodeView {
        self.node_reading_hostname(label, reads, true).await
    }

    /// [`Observer::node_reading`], reading the hostname only if `hostname` (else the
    /// caller reads it one-to-many and it stays [`Observed::NotAsked`] here).
    async fn node_reading_hostname(&self, label: &str, reads: Reads, hostname: bool) -> NodeView {
        let status = call(
            "MachineStatus",
            self.get(
                label,
                "runtime",
                "MachineStatuses.runtime.talos.dev",
                "machine",
            ),
        )
        .await;
        let bytes = match status {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                let mut v = NodeView::silent(label, failed("MachineStatus", "no resource"));
                // It answered: it is up, only the status is missing.
                v.contact = Observed::Answered(Contact::Secure);
                v.stage = Observed::Missing(failed("MachineStatus", "no resource"));
                v.ready = v.stage.clone().map(|_| false);
                return self.rest_of_node(label, v, reads, hostname).await;
            }
            Err(gap) => {
                if let Some(v) = self.maintenance_probe(label, reads).await {
                    return v;
                }
                return NodeView::silent(label, gap);
            }
        };
        let mut v = NodeView {
            label: label.to_string(),
            contact: Observed::Answered(Contact::Secure),
            ..NodeView::default()
        };
        match runtime::MachineStatusSpec::decode(bytes.as_slice()) {
            Ok(spec) => {
                v.stage = Observed::Answered(stage_name(spec.stage));
                match spec.status {
                    Some(st) => {
                        v.ready = Observed::Answered(st.ready);
                        v.unmet = st
                            .unmet_conditions
                            .into_iter()
                            .map(|c| format!("{}: {}", c.name, c.reason))
                            .collect();
                    }
                    None => {
                        v.ready = Observed::Missing(failed("MachineStatus", "no readiness status"));
                    }
                }
            }
            Err(e) => {
                let gap = failed("MachineStatus", format!("undecodable: {e}"));
                v.stage = Observed::Missing(gap.clone());
                v.ready = Observed::Missing(gap);
            }
        }
        self.rest_of_node(label, v, reads, hostname).await
    }

    /// Everything after MachineStatus that `reads` asks for, for a node that answered it.
    async fn rest_of_node(
        &self,
        label: &str,
        mut v: NodeView,
        reads: Reads,
        read_hostname: bool,
    ) -> NodeView {
        // Every fact after MachineStatus is read concurrently over the same channel.
        let hostname = async {
            if !read_hostname {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "Read /proc/sys/kernel/hostname",
                    self.read(label, "/proc/sys/kernel/hostname"),
                )
                .await
                .and_then(|h| {
                    if h.is_empty() {
                        Err(failed("Read /proc/sys/kernel/hostname", "empty hostname"))
                    } else {
                        Ok(h)
                    }
                }),
            )
        };
        let boot_id = async {
            if !reads.has(Fact::BootId) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "Read /proc/sys/kernel/random/boot_id",
                    self.read(label, "/proc/sys/kernel/random/boot_id"),
                )
                .await
                .and_then(|h| {
                    if h.is_empty() {
                        Err(failed(
                            "Read /proc/sys/kernel/random/boot_id",
                            "empty boot id",
                        ))
                    } else {
                        Ok(h)
                    }
                }),
            )
        };
        let services = async {
            if !reads.has(Fact::Services) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "ServiceList",
                    self.talos.machine().service_list(with_node((), label)),
                )
                .await
                .map(|resp| multi::services_of(resp.into_inner().messages)),
            )
        };
        let members = async {
            if !reads.has(Fact::Members) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "EtcdMemberList",
                    self.talos.machine().etcd_member_list(with_node(
                        EtcdMemberListRequest { query_local: false },
                        label,
                    )),
                )
                .await
                .map(|r| multi::members_of(r.into_inner().messages)),
            )
        };
        let etcd = async {
            if !reads.has(Fact::EtcdStatus) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "EtcdStatus",
                    self.talos.machine().etcd_status(with_node((), label)),
                )
                .await
                .and_then(|r| multi::etcd_status_of(r.into_inner().messages)),
            )
        };
        let alarms = async {
            if !reads.has(Fact::Alarms) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "EtcdAlarmList",
                    self.talos.machine().etcd_alarm_list(with_node((), label)),
                )
                .await
                .map(|r| multi::alarms_of(r.into_inner().messages)),
            )
        };
        let machine_type = async {
            if !reads.has(Fact::MachineType) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "MachineType",
                    self.get(
                        label,
                        "config",
                        "MachineTypes.config.talos.dev",
                        "machine-type",
                    ),
                )
                .await
                .and_then(|bytes| {
                    let bytes = bytes.ok_or_else(|| failed("MachineType", "no resource"))?;
                    let spec =
                        runbook_proto::resource::config::MachineTypeSpec::decode(bytes.as_slice())
                            .map_err(|e| failed("MachineType", format!("undecodable: {e}")))?;
                    match spec.machine_type {
                        1 => Ok("init".to_string()),
                        2 => Ok("controlplane".to_string()),
                        3 => Ok("worker".to_string()),
                        other => Err(failed(
                            "MachineType",
                            format!("unknown machine type {other}"),
                        )),
                    }
                }),
            )
        };
        let disks = async {
            if !reads.has(Fact::Disks) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "Disks",
                    self.list(label, "runtime", "Disks.block.talos.dev"),
                )
                .await
                .map(|items| decode_disks(&items)),
            )
        };
        let pci_vendors = async {
            if !reads.has(Fact::Pci) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "PCIDevices",
                    self.list(label, "hardware", "PCIDevices.hardware.talos.dev"),
                )
                .await
                .and_then(|items| decode_vendors(&items)),
            )
        };
        let kernel_modules = async {
            if !reads.has(Fact::KernelModules) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "KernelModuleSpecs",
                    self.list(label, "runtime", "KernelModuleSpecs.runtime.talos.dev"),
                )
                .await
                .and_then(|items| {
                    // An undecodable spec is a gap, not a module that is not there (the
                    // stuck-booting diagnosis names missing modules from this list).
                    items
                        .iter()
                        .map(|b| {
                            runtime::KernelModuleSpecSpec::decode(b.as_slice())
                                .map(|m| m.name)
                                .map_err(|e| {
                                    failed("KernelModuleSpecs", format!("undecodable: {e}"))
                                })
                        })
                        .collect()
                }),
            )
        };
        let uptime = async {
            if !reads.has(Fact::Uptime) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call("Read /proc/uptime", self.read(label, "/proc/uptime"))
                    .await
                    .and_then(|text| {
                        crate::condition::talos::parse_uptime(&text)
                            .ok_or_else(|| failed("Read /proc/uptime", "not an uptime"))
                    }),
            )
        };
        // One channel, every call of this node in flight at once.
        let (
            hostname,
            boot_id,
            services,
            members,
            etcd,
            alarms,
            machine_type,
            disks,
            pci_vendors,
            kernel_modules,
            uptime,
        ) = tokio::join!(
            hostname,
            boot_id,
            services,
            members,
            etcd,
            alarms,
            machine_type,
            disks,
            pci_vendors,
            kernel_modules,
            uptime
        );
        v.hostname = hostname;
        v.boot_id = boot_id;
        v.services = services;
        v.members = members;
        v.etcd = etcd;
        v.alarms = alarms;
        v.machine_type = machine_type;
        v.disks = disks;
        v.pci_vendors = pci_vendors;
        v.kernel_modules = kernel_modules;
        v.uptime = uptime;
        v
    }

    /// A node the routed API cannot reach may be in maintenance mode: try its own endpoint
    /// without a client certificate, only at a configured endpoint, and only with its
    /// certificate pinned or, on first contact, learned (see `cluster::pinning`). `None` when
    /// it does not answer that either.
    async fn maintenance_probe(&self, label: &str, reads: Reads) -> Option<NodeView> {
        let endpoint = self.endpoint_of(label)?;
        let probed =
            match tokio::time::timeout(CALL_DEADLINE, self.pins.probe(label, &endpoint)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if e.contains("does not match its pin") {
                        tracing::warn!(target: "runbook::pinning", node = %label, "{e}");
                    }
                    return None;
                }
                Err(_) => return None,
            };
        let client = probed.client;
        let answered = match call("Version", client.machine().version(())).await {
            Ok(_) => true,
            Err(e) => e.message.ends_with(&format!("({:?})", Code::Unimplemented)),
        };
        if !answered {
            return None;
        }
        if let Some(fp) = &probed.unpinned
            && let Err(e) = self.pins.learn(label, fp)
        {
            // A pin that cannot be recorded is not trusted: the node stays unreachable.
            tracing::warn!(target: "runbook::pinning", node = %label, "{e}");
            return None;
        }
        let mut v = NodeView {
            label: label.to_string(),
            contact: Observed::Answered(Contact::Maintenance),
            stage: Observed::Answered("maintenance".into()),
            ..NodeView::default()
        };
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
        let disks = async {
            if !reads.has(Fact::Disks) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call("Disks", list("runtime", "Disks.block.talos.dev"))
                    .await
                    .map(|items| decode_disks(&items)),
            )
        };
        let pci_vendors = async {
            if !reads.has(Fact::Pci) {
                return Observed::NotAsked;
            }
            Observed::from_result(
                call(
                    "PCIDevices",
                    list("hardware", "PCIDevices.hardware.talos.dev"),
                )
                .await
                .and_then(|items| decode_vendors(&items)),
            )
        };
        (v.disks, v.pci_vendors) = tokio::join!(disks, pci_vendors);
        Some(v)
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

/// PCI vendor ids; an undecodable device is a gap, never a device that is not there (an
/// NVIDIA GPU dropped here would read as "no GPU").
fn decode_vendors(items: &[Vec<u8>]) -> Result<Vec<String>, Gap> {
    items
        .iter()
        .map(|b| {
            hardware::PciDeviceSpec::decode(b.as_slice())
                .map(|d| d.vendor_id)
                .map_err(|e| failed("PCIDevices", format!("undecodable: {e}")))
        })
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

type NodeList = Result<kube::core::ObjectList<k8s_openapi::api::core::v1::Node>, Gap>;

async fn list_kube_nodes(client: &kube::Client) -> NodeList {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let api: Api<Node> = Api::all(client.clone());
    call("list Nodes", api.list(&ListParams::default())).await
}

/// Node readiness from the Node list (read alongside the Talos calls), and, when `reads`
/// asks for pods, each node's evictable pods, from one list of all pods.
async fn observe_kube(client: &kube::Client, list: NodeList, nodes: &mut [NodeView], reads: Reads) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};

    let list = match list {
        Ok(list) => list,
        Err(gap) => {
            for v in nodes.iter_mut() {
                if reads.has(Fact::KubeNodes) {
                    v.kube_ready = Observed::Missing(gap.clone());
                }
                if reads.has(Fact::Pods) {
                    v.evictable_pods = Observed::Missing(gap.clone());
                }
            }
            return;
        }
    };
    // Each node with a Node object gets its evictable pods from one list of every pod
    // (grouped by `spec.nodeName`), not one list per node; a failed list is a gap for each.
    let mut with_object = Vec::new();
    for (i, v) in nodes.iter_mut().enumerate() {
        let name = v.host().unwrap_or(&v.label).to_string();
        let node = list
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()));
        if reads.has(Fact::KubeNodes) {
            v.kube_ready = Observed::Answered(node.map(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            }));
        }
        if node.is_some() && reads.has(Fact::Pods) {
            with_object.push((i, name));
        }
    }
    if with_object.is_empty() {
        return;
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let all = call("list Pods", pods.list(&ListParams::default())).await;
    for (i, name) in with_object {
        let counted = match &all {
            Ok(list) => Observed::Answered(
                list.items
                    .iter()
                    .filter(|p| {
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                    })
                    .filter(|p| evictable(p))
                    .count(),
            ),
            Err(gap) => Observed::Missing(gap.clone()),
        };
        if let Some(v) = nodes.get_mut(i) {
            v.evictable_pods = counted;
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
