//! Objects clients create in the simulated Kubernetes API (RuntimeClasses, DaemonSets) and
//! what the cluster does with them: the DaemonSet controller's pods, the container runtime a
//! RuntimeClass names, and the `nvidia.com/gpu` resource the NVIDIA device plugin advertises.
//!
//! gpu-enable's Kubernetes half is only proven if the simulated cluster reacts the way a real
//! one does: a DaemonSet gets one pod per matching node, the pod runs only where its
//! RuntimeClass's handler exists (the NVIDIA container toolkit extension of the node's image),
//! and the node reports `nvidia.com/gpu` allocatable only while the device plugin runs on a
//! node that has the GPU *and* the nvidia kernel modules loaded. All of that is read from this
//! model's own nodes (image, hardware, loaded modules, machine-config node labels), never from
//! the engine. The API server (`sim::kube_api`) owns the wire shapes, field managers and
//! resource versions; the model keeps the object as served and its generation.

use serde_json::Value;

use super::*;

/// The kinds clients may create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `node.k8s.io/v1` RuntimeClass (cluster-scoped).
    RuntimeClass,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl ObjectKind {
    /// The `kind` field.
    pub fn kind(self) -> &'static str {
        match self {
            ObjectKind::RuntimeClass => "RuntimeClass",
            ObjectKind::DaemonSet => "DaemonSet",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            ObjectKind::RuntimeClass => "node.k8s.io/v1",
            ObjectKind::DaemonSet => "apps/v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, ObjectKind::DaemonSet)
    }
}

/// Identity of a client-created object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Kind.
    pub kind: ObjectKind,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One field manager's last applied configuration (server-side apply) or update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldManager {
    /// `managedFields[].manager`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The fields it owns, as the configuration it last sent (only the owned leaves left).
    pub config: Value,
    /// When it last wrote.
    pub time: SimTime,
}

/// A client-created object as the API serves it (without server metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The object: `apiVersion`, `kind`, `metadata` (name, namespace, labels, annotations),
    /// `spec` / `handler` …; no `status`, no server-assigned metadata.
    pub object: Value,
    /// `metadata.generation`: bumped when anything but metadata changes.
    pub generation: u64,
    /// Field managers, in the order they first wrote.
    pub managers: Vec<FieldManager>,
}

/// What the DaemonSet controller reports (`status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonSetStatus {
    /// Nodes that should run the pod.
    pub desired: usize,
    /// Nodes that run a pod.
    pub current: usize,
    /// Pods of the current template (all of them: a template change replaces pods at once).
    pub updated: usize,
    /// Pods Ready.
    pub ready: usize,
    /// Pods available (Ready; `minReadySeconds` is not modelled).
    pub available: usize,
    /// The generation the controller acted on.
    pub observed_generation: u64,
}

/// The extended resource the NVIDIA device plugin advertises.
pub const NVIDIA_GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The RuntimeClass handler the NVIDIA container toolkit extension configures in containerd.
pub const NVIDIA_HANDLER: &str = "nvidia";

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// `machine.nodeLabels` of a machine config (Talos sets them on its Node object), read from
/// the document parsed when the config was applied: Node objects are built on every
/// Kubernetes sync, and re-parsing each node's YAML there made a 50-node observation slow.
fn config_node_labels(config: &MachineConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for doc in std::iter::once(config.document()) {
        let Some(labels) = doc
            .as_mapping_get("machine")
            .and_then(|m| m.as_mapping_get("nodeLabels"))
            .and_then(|l| l.as_mapping())
        else {
            continue;
        };
        for (k, v) in labels {
            if let Some(k) = k.as_str() {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_bool().map(|b| b.to_string()))
                    .or_else(|| v.as_integer().map(|i| i.to_string()))
                    .unwrap_or_default();
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

impl Cluster {
    /// The labels of node `i`'s Node object: the kubelet's own, then `machine.nodeLabels` of
    /// the active machine config (Talos applies those without a reboot).
    pub(super) fn k8s_node_labels(&self, i: usize) -> BTreeMap<String, String> {
        let n = &self.nodes[i];
        let mut labels = self
            .node_labels
            .get(&n.hostname)
            .cloned()
            .unwrap_or_default();
        if let Some(config) = n.config() {
            labels.extend(config_node_labels(config));
        }
        labels
    }

    /// Client-created objects of `kind`.
    pub fn k8s_objects(
        &mut self,
        kind: ObjectKind,
        now: SimTime,
    ) -> Result<Vec<(ObjectKey, StoredObject)>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self
            .kube_objects
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect())
    }

    /// One client-created object.
    pub fn k8s_object(
        &mut self,
        key: &ObjectKey,
        now: SimTime,
    ) -> Result<Option<StoredObject>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self.kube_objects.get(key).cloned())
    }

    /// Creates or replaces a client object (server-side apply or update); the call log
    /// records `ApplyObject` with `Kind/namespace/name`, so tests can count writes.
    pub fn k8s_put_object(
        &mut self,
        key: ObjectKey,
        object: StoredObject,
        now: SimTime,
    ) -> Result<(), KubeError> {
        let label = format!("{}/{}/{}", key.kind.kind(), key.namespace, key.name);
        let res = self.k8s_enter(now).map(|()| {
            self.kube_objects.insert(key, object);
            self.reconcile_daemonsets();
        });
        self.record_k8s("ApplyObject", &label, &res);
        res
    }

    /// The DaemonSet's template (`spec.template`), if it is a client DaemonSet.
    fn daemonset_template(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.kube_objects
            .get(&ObjectKey {
                kind: ObjectKind::DaemonSet,
                namespace: namespace.into(),
                name: name.into(),
            })
            .and_then(|o| o.object.pointer("/spec/template"))
    }

    /// Whether the pod's container runtime exists on its node: a pod with a
    /// `runtimeClassName` runs only if that RuntimeClass exists and its handler is configured
    /// there (`nvidia` by the NVIDIA container toolkit extension); kubelet otherwise leaves it
    /// in `ContainerCreating`.
    pub(super) fn pod_runtime_available(&self, p: &PodState, node: usize) -> bool {
        let PodOwner::DaemonSet(ds) = &p.owner else {
            return true;
        };
        let Some(template) = self.daemonset_template(&p.namespace, ds) else {
            return true;
        };
        let Some(class) = str_at(template, "/spec/runtimeClassName") else {
            return true;
        };
        let Some(rc) = self.kube_objects.get(&ObjectKey {
            kind: ObjectKind::RuntimeClass,
            namespace: String::new(),
            name: class.into(),
        }) else {
            return false;
        };
        match str_at(&rc.object, "/handler") {
            Some(NVIDIA_HANDLER) => self.nodes[node]
                .extensions()
                .iter()
                .any(|e| e.name.starts_with("nvidia-container-toolkit")),
            Some("runc") => true,
            _ => false,
        }
    }

    /// Whether the pod's containers could be created on its node (see
    /// [`Cluster::pod_runtime_available`]); an unbound pod has none.
    pub(super) fn pod_runtime_ok(&self, p: &PodState) -> bool {
        p.node.as_ref().is_some_and(|node| {
            self.nodes
                .iter()
                .position(|n| &n.hostname == node)
                .is_some_and(|i| self.pod_runtime_available(p, i))
        })
    }

    fn node_matches(&self, i: usize, template: &Value) -> bool {
        let n = &self.nodes[i];
        if !n.k8s_registered {
            return false;
        }
        let labels = self.k8s_node_labels(i);
        template
            .pointer("/spec/nodeSelector")
            .and_then(Value::as_object)
            .is_none_or(|sel| {
                sel.iter()
                    .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            })
    }

    /// The DaemonSet controller: one pod per registered node matching the template's
    /// `nodeSelector` (the NoSchedule taints the simulator puts on nodes — not-ready,
    /// unreachable, unschedulable — are tolerated by every DaemonSet pod, as the real
    /// controller adds those tolerations), none elsewhere.
    pub(super) fn reconcile_daemonsets(&mut self) {
        let sets: Vec<(String, String, Value)> = self
            .kube_objects
            .iter()
            .filter(|(k, _)| k.kind == ObjectKind::DaemonSet)
            .filter_map(|(k, o)| {
                o.object
                    .pointer("/spec/template")
                    .map(|t| (k.namespace.clone(), k.name.clone(), t.clone()))
            })
            .collect();
        for (ns, name, template) in sets {
            let wanted: Vec<String> = (0..self.nodes.len())
                .filter(|i| self.node_matches(*i, &template))
                .map(|i| self.nodes[i].hostname.clone())
                .collect();
            let owner = PodOwner::DaemonSet(name.clone());
            self.pods.retain(|p| {
                p.namespace != ns
                    || p.owner != owner
                    || p.node.as_ref().is_some_and(|n| wanted.contains(n))
            });
            let app = str_at(&template, "/metadata/labels/app")
                .or_else(|| str_at(&template, "/metadata/labels/name"))
                .unwrap_or(&name)
                .to_string();
            for host in wanted {
                let present = self.pods.iter().any(|p| {
                    p.namespace == ns && p.owner == owner && p.node.as_deref() == Some(&host)
                });
                if !present {
                    let pod = format!("{name}-{}", self.pod_suffix());
                    self.pods.push(PodState {
                        namespace: ns.clone(),
                        name: pod,
                        node: Some(host),
                        owner: owner.clone(),
                        app: app.clone(),
                    });
                }
            }
        }
    }

    /// The controller's status for a client DaemonSet.
    pub fn k8s_daemonset_status(&self, namespace: &str, name: &str) -> DaemonSetStatus {
        let key = ObjectKey {
            kind: ObjectKind::DaemonSet,
            namespace: namespace.into(),
            name: name.into(),
        };
        let Some(obj) = self.kube_objects.get(&key) else {
            return DaemonSetStatus::default();
        };
        let desired = obj
            .object
            .pointer("/spec/template")
            .map(|t| {
                (0..self.nodes.len())
                    .filter(|i| self.node_matches(*i, t))
                    .count()
            })
            .unwrap_or(0);
        let owner = PodOwner::DaemonSet(name.into());
        let pods: Vec<&PodState> = self
            .pods
            .iter()
            .filter(|p| p.namespace == namespace && p.owner == owner)
            .collect();
        let ready = pods.iter().filter(|p| self.pod_ready(p)).count();
        DaemonSetStatus {
            desired,
            current: pods.len(),
            updated: pods.len(),
            ready,
            available: ready,
            observed_generation: obj.generation,
        }
    }

    /// Extended resources node `i` advertises (`status.capacity` and `allocatable`):
    /// `nvidia.com/gpu: 1` while a Ready NVIDIA device-plugin pod (an image containing
    /// `k8s-device-plugin`) runs there and the node has the GPU with the `nvidia` module
    /// loaded; nothing otherwise.
    pub fn k8s_extended_resources(&self, i: usize) -> BTreeMap<String, u32> {
        let n = &self.nodes[i];
        let mut out = BTreeMap::new();
        let gpu = n.hardware().has_nvidia_gpu() && n.loaded_modules.iter().any(|m| m == "nvidia");
        let plugin = self.pods.iter().any(|p| {
            p.node.as_deref() == Some(n.hostname.as_str())
                && self.pod_ready(p)
                && self.is_device_plugin(p)
        });
        if gpu && plugin {
            out.insert(NVIDIA_GPU_RESOURCE.to_string(), 1);
        }
        out
    }

    fn is_device_plugin(&self, p: &PodState) -> bool {
        let PodOwner::DaemonSet(ds) = &p.owner else {
            return false;
        };
        self.daemonset_template(&p.namespace, ds)
            .and_then(|t| t.pointer("/spec/containers"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    str_at(c, "/image").is_some_and(|img| img.contains("k8s-device-plugin"))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::Scenario;
    use crate::sim::{Speed, scenario};
    use serde_json::json;

    fn put(c: &mut Cluster, kind: ObjectKind, ns: &str, name: &str, object: Value) {
        let now = c.now();
        c.k8s_put_object(
            ObjectKey {
                kind,
                namespace: ns.into(),
                name: name.into(),
            },
            StoredObject {
                object,
                generation: 1,
                managers: Vec::new(),
            },
            now,
        )
        .unwrap();
    }

    fn plugin(selector: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": "nvidia-device-plugin", "namespace": "kube-system" },
            "spec": { "template": { "metadata": { "labels": { "app": "nvidia-device-plugin" } },
                "spec": { "nodeSelector": selector, "runtimeClassName": "nvidia",
                    "containers": [ { "name": "p", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.1" } ] } } }
        })
    }

    fn settle(c: &mut Cluster, secs: u64) {
        let later = c.now() + Duration::from_secs(secs);
        c.advance_to(later);
    }

    #[test]
    fn a_daemonset_gets_a_pod_per_matching_node_and_counts_it() {
        let mut c = scenario::seed(Speed::new(1000.0).unwrap()).unwrap();
        settle(&mut c, 600);
        put(
            &mut c,
            ObjectKind::DaemonSet,
            "kube-system",
            "nvidia-device-plugin",
            plugin(json!({ "kubernetes.io/os": "linux" })),
        );
        let st = c.k8s_daemonset_status("kube-system", "nvidia-device-plugin");
        assert_eq!((st.desired, st.current), (3, 3), "{st:?}");
        // No RuntimeClass `nvidia`: kubelet cannot create the containers anywhere.
        assert_eq!(st.ready, 0, "{st:?}");
    }

    #[test]
    fn the_gpu_is_allocatable_only_with_runtime_class_plugin_and_modules() {
        let mut c = Scenario::GpuModulesMissing
            .build(Speed::new(1000.0).unwrap())
            .unwrap();
        settle(&mut c, 600);
        let gpu = c
            .nodes()
            .iter()
            .position(|n| n.hardware().has_nvidia_gpu())
            .unwrap();
        let host = c.nodes()[gpu].hostname().to_string();
        put(
            &mut c,
            ObjectKind::DaemonSet,
            "kube-system",
            "nvidia-device-plugin",
            plugin(json!({ "kubernetes.io/hostname": host })),
        );
        let st = c.k8s_daemonset_status("kube-system", "nvidia-device-plugin");
        assert_eq!((st.desired, st.current, st.ready), (1, 1, 0), "{st:?}");
        put(
            &mut c,
            ObjectKind::RuntimeClass,
            "",
            "nvidia",
            json!({ "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": { "name": "nvidia" }, "handler": "nvidia" }),
        );
        let st = c.k8s_daemonset_status("kube-system", "nvidia-device-plugin");
        assert_eq!(st.ready, 1, "{st:?}");
        // The plugin runs, but without the nvidia module it finds no GPU.
        assert!(c.k8s_extended_resources(gpu).is_empty());
        c.nodes[gpu].loaded_modules.push("nvidia".into());
        assert_eq!(
            c.k8s_extended_resources(gpu).get(NVIDIA_GPU_RESOURCE),
            Some(&1)
        );
    }

    #[test]
    fn a_selector_no_node_matches_schedules_nothing() {
        let mut c = scenario::seed(Speed::new(1000.0).unwrap()).unwrap();
        settle(&mut c, 600);
        put(
            &mut c,
            ObjectKind::DaemonSet,
            "kube-system",
            "nvidia-device-plugin",
            plugin(json!({ "nvidia.com/gpu.present": "true" })),
        );
        let st = c.k8s_daemonset_status("kube-system", "nvidia-device-plugin");
        assert_eq!((st.desired, st.current), (0, 0), "{st:?}");
    }
}
