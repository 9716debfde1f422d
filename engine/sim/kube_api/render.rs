//! Model objects rendered as Kubernetes wire objects (k8s-openapi types, then JSON).
//!
//! The model keeps only what the simulation needs (a node's Ready condition, a pod's owner
//! and node); clients expect complete-looking objects: kube-rs deserializes into k8s-openapi
//! types, `kubectl drain` reads `ownerReferences` and the `kubernetes.io/config.mirror`
//! annotation to decide what it may evict, and `kubectl get` shows roles from labels. This
//! file fills those fields in, deterministically from the model state and the server
//! metadata ([`Meta`]). The Ready condition is exactly the model's: it can be True while
//! Talos still reports the node `booting` (talos-procedures §1.3), and nothing here consults
//! Talos state to "correct" that.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Node, NodeAddress,
    NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Pod, PodCondition, PodSpec, PodStatus,
    Taint,
};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, MicroTime, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::store::{ClientLease, Content, Entry, LeaseFacts, Meta, NodeFacts, PdbFacts, WallClock};
use crate::sim::SimTime;
use crate::sim::cluster::{ConditionStatus, Pod as ModelPod, PodOwner};
use crate::sim::node::TALOS_VERSION;

/// The kernel Talos v1.11.5 ships (`status.nodeInfo.kernelVersion`).
const KERNEL_VERSION: &str = "6.12.57-talos";
/// The containerd Talos v1.11.5 ships.
const CONTAINER_RUNTIME: &str = "containerd://2.1.5";

/// A model time as a Kubernetes timestamp.
pub fn time(clock: WallClock, t: SimTime) -> Time {
    Time(Timestamp::try_from(clock.at(t)).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn micro_time(clock: WallClock, t: SimTime) -> MicroTime {
    MicroTime(Timestamp::try_from(clock.at(t)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The labels of an object (label selectors match these).
pub fn labels(content: &Content) -> BTreeMap<String, String> {
    match content {
        Content::Node(n) => {
            let mut labels = n.node.labels.clone();
            for (k, v) in [
                ("kubernetes.io/arch", "amd64"),
                ("beta.kubernetes.io/arch", "amd64"),
                ("beta.kubernetes.io/os", "linux"),
            ] {
                labels.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
            labels
        }
        Content::Pod(p) => {
            let mut labels = BTreeMap::from([("app".to_string(), p.app.clone())]);
            match &p.owner {
                PodOwner::Mirror => {
                    labels.insert("component".into(), p.app.clone());
                    labels.insert("tier".into(), "control-plane".into());
                }
                PodOwner::ReplicaSet(rs) => {
                    if let Some((_, hash)) = rs.rsplit_once('-') {
                        labels.insert("pod-template-hash".into(), hash.to_string());
                    }
                }
                PodOwner::DaemonSet(_) => {}
            }
            labels
        }
        Content::Lease(_) | Content::Pdb(_) => BTreeMap::new(),
        Content::ClientLease(l) => l.labels.clone(),
        Content::Object(o) => super::objects::labels(o),
    }
}

fn meta(entry: &Entry, clock: WallClock) -> ObjectMeta {
    let labels = labels(&entry.content);
    ObjectMeta {
        name: Some(entry.key.name.clone()),
        namespace: Some(entry.key.namespace.clone()).filter(|ns| !ns.is_empty()),
        uid: Some(entry.meta.uid.clone()),
        resource_version: Some(entry.meta.rv.to_string()),
        creation_timestamp: Some(time(clock, entry.meta.created)),
        labels: Some(labels).filter(|l| !l.is_empty()),
        ..ObjectMeta::default()
    }
}

/// Renders any object as JSON (with `apiVersion` and `kind`).
pub fn object(entry: &Entry, clock: WallClock) -> Value {
    let value = match &entry.content {
        Content::Node(n) => serde_json::to_value(node(entry, n, clock)),
        Content::Pod(p) => serde_json::to_value(pod(entry, p, clock)),
        Content::Lease(l) => serde_json::to_value(lease(entry, l, clock)),
        Content::Pdb(p) => serde_json::to_value(pdb(entry, p, clock)),
        Content::ClientLease(l) => serde_json::to_value(client_lease(entry, l, clock)),
        Content::Object(o) => Ok(super::objects::render(entry, o, clock)),
    };
    // k8s-openapi types always serialize; an error here would be a bug in the types.
    value.unwrap_or(Value::Null)
}

fn ready_status(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

/// The `STATUS` column of `kubectl get nodes`.
pub fn node_status_column(n: &NodeFacts) -> String {
    let ready = match n.node.ready {
        ConditionStatus::True => "Ready",
        ConditionStatus::False => "NotReady",
        ConditionStatus::Unknown => "Unknown",
    };
    if n.node.unschedulable {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    at: &Meta,
    clock: WallClock,
) -> NodeCondition {
    NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(time(clock, at.modified)),
        last_transition_time: Some(time(clock, at.modified)),
    }
}

fn node_conditions(n: &NodeFacts, m: &Meta, clock: WallClock) -> Vec<NodeCondition> {
    let unknown = n.node.ready == ConditionStatus::Unknown;
    let pressure = |type_: &str, reason: &str, message: &str| {
        if unknown {
            condition(
                type_,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                m,
                clock,
            )
        } else {
            condition(type_, "False", reason, message, m, clock)
        }
    };
    let (reason, message) = match n.node.ready {
        ConditionStatus::True => ("KubeletReady", "kubelet is posting ready status"),
        ConditionStatus::False => (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false",
        ),
        ConditionStatus::Unknown => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    vec![
        pressure(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        pressure(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        pressure(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            ready_status(n.node.ready),
            reason,
            message,
            m,
            clock,
        ),
    ]
}

fn node_taints(n: &NodeFacts) -> Vec<Taint> {
    let taint = |key: &str, effect: &str| Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        ..Taint::default()
    };
    let mut taints = Vec::new();
    match n.node.ready {
        ConditionStatus::True => {}
        ConditionStatus::False => taints.push(taint("node.kubernetes.io/not-ready", "NoSchedule")),
        ConditionStatus::Unknown => {
            taints.push(taint("node.kubernetes.io/unreachable", "NoSchedule"));
            taints.push(taint("node.kubernetes.io/unreachable", "NoExecute"));
        }
    }
    if n.node.unschedulable {
        taints.push(taint("node.kubernetes.io/unschedulable", "NoSchedule"));
    }
    taints
}

/// `status.capacity` / `status.allocatable` (so `kubectl describe node` can compute its
/// percentages).
fn resources(n: &NodeFacts, pods: u32) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::from([
        ("cpu".to_string(), Quantity(n.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Gi", n.memory_gib)),
        ),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
        ("pods".to_string(), Quantity(pods.to_string())),
    ]);
    for (name, count) in &n.extended {
        out.insert(name.clone(), Quantity(count.to_string()));
    }
    out
}

fn node(entry: &Entry, n: &NodeFacts, clock: WallClock) -> Node {
    let taints = node_taints(n);
    Node {
        metadata: meta(entry, clock),
        spec: Some(NodeSpec {
            unschedulable: n.node.unschedulable.then_some(true),
            taints: Some(taints).filter(|t| !t.is_empty()),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: n.node.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: n.node.name.clone(),
                },
            ]),
            conditions: Some(node_conditions(n, &entry.meta, clock)),
            capacity: Some(resources(n, 110)),
            allocatable: Some(resources(n, 110)),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: n.boot_id.clone(),
                container_runtime_version: CONTAINER_RUNTIME.into(),
                kernel_version: KERNEL_VERSION.into(),
                kube_proxy_version: String::new(),
                kubelet_version: n.node.kubelet_version.clone(),
                machine_id: entry.meta.uid.replace('-', ""),
                operating_system: "linux".into(),
                os_image: format!("Talos ({TALOS_VERSION})"),
                swap: None,
                system_uuid: entry.meta.uid.clone(),
            }),
            ..NodeStatus::default()
        }),
    }
}

/// A uid for objects the simulator does not serve (pod owners), stable for their name.
/// A uid derived from `seed` (owners the model names but does not store: pods' owner
/// references must carry the uid their DaemonSet is served with).
pub fn stable_uid(seed: &str) -> String {
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let l = crate::sim::node::splitmix(h);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        l >> 52,
        l & 0xffff_ffff_ffff
    )
}

/// The container image a pod runs (for display only).
fn image_of(p: &ModelPod) -> String {
    match &p.owner {
        PodOwner::Mirror => format!("registry.k8s.io/{}:v1.34.1", p.app),
        PodOwner::DaemonSet(ds) if ds == "kube-proxy" => {
            "registry.k8s.io/kube-proxy:v1.34.1".into()
        }
        PodOwner::DaemonSet(ds) => format!("ghcr.io/siderolabs/{ds}:latest"),
        PodOwner::ReplicaSet(_) => format!("docker.io/library/{}:latest", p.app),
    }
}

fn owner(kind: &str, api_version: &str, name: &str, uid: String) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The `STATUS` column of `kubectl get pods`.
pub fn pod_phase(p: &ModelPod) -> &'static str {
    if p.node.is_some() && p.runtime_ok {
        "Running"
    } else {
        "Pending"
    }
}

fn pod(entry: &Entry, p: &ModelPod, clock: WallClock) -> Pod {
    let mut metadata = meta(entry, clock);
    let owner_uid = |kind: &str, name: &str| stable_uid(&format!("{kind}/{}/{name}", p.namespace));
    metadata.owner_references = Some(vec![match &p.owner {
        PodOwner::DaemonSet(ds) => owner("DaemonSet", "apps/v1", ds, owner_uid("DaemonSet", ds)),
        PodOwner::ReplicaSet(rs) => owner("ReplicaSet", "apps/v1", rs, owner_uid("ReplicaSet", rs)),
        PodOwner::Mirror => {
            let node = p.node.clone().unwrap_or_default();
            OwnerReference {
                controller: Some(true),
                block_owner_deletion: None,
                ..owner("Node", "v1", &node, owner_uid("Node", &node))
            }
        }
    }]);
    if p.owner == PodOwner::Mirror {
        metadata.annotations = Some(BTreeMap::from([
            (
                "kubernetes.io/config.mirror".to_string(),
                entry.meta.uid.replace('-', ""),
            ),
            (
                "kubernetes.io/config.source".to_string(),
                "file".to_string(),
            ),
        ]));
    }
    let host_network = !matches!(p.owner, PodOwner::ReplicaSet(_));
    let ready = if p.ready { "True" } else { "False" };
    let image = image_of(p);
    let started = time(clock, entry.meta.created);
    Pod {
        metadata,
        spec: Some(PodSpec {
            node_name: p.node.clone(),
            host_network: host_network.then_some(true),
            containers: vec![Container {
                name: p.app.clone(),
                image: Some(image.clone()),
                ..Container::default()
            }],
            priority_class_name: host_network.then(|| "system-node-critical".to_string()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(pod_phase(p).into()),
            conditions: Some(
                ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                    .into_iter()
                    .map(|t| PodCondition {
                        type_: t.into(),
                        status: if t == "PodScheduled" && p.node.is_some() {
                            "True".into()
                        } else if t == "PodScheduled" {
                            "False".into()
                        } else {
                            ready.into()
                        },
                        last_transition_time: Some(time(clock, entry.meta.modified)),
                        ..PodCondition::default()
                    })
                    .collect(),
            ),
            container_statuses: p.node.as_ref().map(|_| {
                vec![ContainerStatus {
                    name: p.app.clone(),
                    image: image.clone(),
                    image_id: image.clone(),
                    ready: p.ready,
                    started: Some(true),
                    restart_count: 0,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(started.clone()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]
            }),
            start_time: p.node.as_ref().map(|_| started.clone()),
            ..PodStatus::default()
        }),
    }
}

fn lease(entry: &Entry, l: &LeaseFacts, clock: WallClock) -> Lease {
    Lease {
        metadata: meta(entry, clock),
        spec: Some(LeaseSpec {
            holder_identity: Some(l.holder.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(micro_time(clock, l.renew)),
            ..LeaseSpec::default()
        }),
    }
}

fn client_lease(entry: &Entry, l: &ClientLease, clock: WallClock) -> Lease {
    Lease {
        metadata: ObjectMeta {
            annotations: Some(l.annotations.clone()).filter(|a| !a.is_empty()),
            ..meta(entry, clock)
        },
        // The spec was a valid LeaseSpec when the server accepted it.
        spec: serde_json::from_value(l.spec.clone()).ok(),
    }
}

/// The holder of a client Lease (`spec.holderIdentity`), empty if none.
pub fn client_lease_holder(l: &ClientLease) -> String {
    l.spec
        .get("holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn pdb(entry: &Entry, p: &PdbFacts, clock: WallClock) -> PodDisruptionBudget {
    let min = i32::try_from(p.pdb.min_available).unwrap_or(i32::MAX);
    let healthy = i32::try_from(p.healthy).unwrap_or(i32::MAX);
    let expected = i32::try_from(p.expected).unwrap_or(i32::MAX);
    PodDisruptionBudget {
        metadata: ObjectMeta {
            generation: Some(1),
            ..meta(entry, clock)
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), p.pdb.app.clone())])),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: min,
            expected_pods: expected,
            disruptions_allowed: (healthy - min).max(0),
            observed_generation: Some(1),
            ..PodDisruptionBudgetStatus::default()
        }),
    }
}
