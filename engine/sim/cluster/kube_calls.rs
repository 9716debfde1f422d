//! The simulated Kubernetes API's view of the model: Nodes (Ready from the kubelet and the
//! API server's etcd), Pods and their eviction under PodDisruptionBudgets, Leases, and the
//! scenario helpers that add pods and budgets.

use super::*;

impl Cluster {
    // ----------------------------------------------------------------------------------
    // Kubernetes
    // ----------------------------------------------------------------------------------

    pub(super) fn k8s_enter(&mut self, now: SimTime) -> Result<(), KubeError> {
        self.advance_to(now);
        if self.k8s_api_available() {
            self.reconcile_daemonsets();
            Ok(())
        } else {
            Err(KubeError::unavailable())
        }
    }

    fn kube_node(&self, i: usize) -> Option<KubeNode> {
        let n = &self.nodes[i];
        let ready = self.k8s_ready(i)?;
        Some(KubeNode {
            name: n.hostname.clone(),
            internal_ip: n.label.clone(),
            ready,
            unschedulable: self.unschedulable.contains(&n.hostname),
            labels: self.k8s_node_labels(i),
            kubelet_version: "v1.34.1".into(),
        })
    }

    /// `GET /api/v1/nodes`.
    pub fn k8s_list_nodes(&mut self, now: SimTime) -> Result<Vec<KubeNode>, KubeError> {
        self.k8s_enter(now)?;
        Ok((0..self.nodes.len())
            .filter_map(|i| self.kube_node(i))
            .collect())
    }

    /// `GET /api/v1/nodes/{name}`.
    pub fn k8s_get_node(&mut self, name: &str, now: SimTime) -> Result<KubeNode, KubeError> {
        self.k8s_enter(now)?;
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].hostname == name)
            .find_map(|i| self.kube_node(i))
            .ok_or_else(|| KubeError::not_found("nodes", name))
    }

    /// `PATCH /api/v1/nodes/{name}` with `spec.unschedulable` (cordon / uncordon).
    pub fn k8s_set_unschedulable(
        &mut self,
        name: &str,
        unschedulable: bool,
        now: SimTime,
    ) -> Result<(), KubeError> {
        let res = self.k8s_get_node(name, now).map(|_| {
            if unschedulable {
                self.unschedulable.insert(name.to_string());
            } else {
                self.unschedulable.remove(name);
            }
        });
        self.record_k8s("PatchNode", name, &res);
        res
    }

    /// `DELETE /api/v1/nodes/{name}` (the kubelet re-registers on its next start).
    pub fn k8s_delete_node(&mut self, name: &str, now: SimTime) -> Result<(), KubeError> {
        let res = self.k8s_get_node(name, now).map(|_| {
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if n.hostname == name {
                    n.k8s_registered = false;
                    if let Some(k) = n.kubelet_started_at {
                        self.deleted_k8s_nodes.insert((i, k));
                    }
                }
            }
            self.pods.retain(|p| p.node.as_deref() != Some(name));
            self.unschedulable.remove(name);
        });
        self.record_k8s("DeleteNode", name, &res);
        res
    }

    pub(super) fn record_k8s<T>(&mut self, method: &str, name: &str, res: &Result<T, KubeError>) {
        self.touch();
        self.calls.push(CallRecord {
            method: method.into(),
            node: name.into(),
            at: self.now,
            result: res.as_ref().map(|_| ()).map_err(|_| Code::Unknown),
        });
    }

    pub(super) fn pod_ready(&self, p: &PodState) -> bool {
        let Some(node) = &p.node else { return false };
        self.nodes
            .iter()
            .position(|n| &n.hostname == node)
            .is_some_and(|i| {
                self.kubelet_running(i)
                    && self.k8s_ready(i) == Some(ConditionStatus::True)
                    && self.pod_runtime_available(p, i)
            })
    }

    fn pod_view(&self, p: &PodState) -> Pod {
        Pod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            owner: p.owner.clone(),
            app: p.app.clone(),
            ready: self.pod_ready(p),
            runtime_ok: self.pod_runtime_ok(p),
        }
    }

    /// `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>` (all pods when `node` is None).
    pub fn k8s_list_pods(
        &mut self,
        node: Option<&str>,
        now: SimTime,
    ) -> Result<Vec<Pod>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self
            .pods
            .iter()
            .filter(|p| node.is_none_or(|n| p.node.as_deref() == Some(n)))
            .map(|p| self.pod_view(p))
            .collect())
    }

    /// PodDisruptionBudgets.
    pub fn k8s_list_pdbs(&mut self, now: SimTime) -> Result<Vec<PodDisruptionBudget>, KubeError> {
        self.k8s_enter(now)?;
        Ok(self.pdbs.clone())
    }

    /// `kube-node-lease` Leases.
    pub fn k8s_leases(&mut self, now: SimTime) -> Result<Vec<Lease>, KubeError> {
        self.k8s_enter(now)?;
        Ok((0..self.nodes.len())
            .filter(|i| self.nodes[*i].k8s_registered)
            .map(|i| {
                let n = &self.nodes[i];
                let renew = if self.kubelet_running(i) {
                    self.now
                } else {
                    n.kubelet_stopped_at.unwrap_or(SimTime::ZERO)
                };
                Lease {
                    name: n.hostname.clone(),
                    namespace: "kube-node-lease".into(),
                    holder: n.hostname.clone(),
                    renew_time: renew,
                }
            })
            .collect())
    }

    /// `POST .../pods/{name}/eviction`: honours PodDisruptionBudgets (429 when blocked).
    pub fn k8s_evict_pod(
        &mut self,
        namespace: &str,
        name: &str,
        now: SimTime,
    ) -> Result<(), KubeError> {
        let res = self
            .k8s_enter(now)
            .and_then(|()| self.evict_inner(namespace, name));
        self.record_k8s("EvictPod", name, &res);
        res
    }

    pub(super) fn evict_inner(&mut self, namespace: &str, name: &str) -> Result<(), KubeError> {
        let Some(pos) = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
        else {
            return Err(KubeError::not_found("pods", name));
        };
        let pod = self.pods[pos].clone();
        match &pod.owner {
            PodOwner::Mirror => Ok(()),
            PodOwner::DaemonSet(ds) => {
                self.pods.remove(pos);
                let name = format!("{ds}-{}", self.pod_suffix());
                self.pods.push(PodState { name, ..pod });
                Ok(())
            }
            PodOwner::ReplicaSet(rs) => {
                if let Some(pdb) = self
                    .pdbs
                    .iter()
                    .find(|b| b.namespace == pod.namespace && b.app == pod.app)
                {
                    let healthy = self
                        .pods
                        .iter()
                        .filter(|p| p.app == pdb.app && self.pod_ready(p))
                        .count();
                    let after = healthy - usize::from(self.pod_ready(&pod));
                    if after < pdb.min_available {
                        return Err(KubeError::pdb_violation());
                    }
                }
                self.pods.remove(pos);
                let target = (0..self.nodes.len())
                    .filter(|i| {
                        let h = &self.nodes[*i].hostname;
                        Some(h) != pod.node.as_ref()
                            && !self.unschedulable.contains(h)
                            && self.k8s_ready(*i) == Some(ConditionStatus::True)
                    })
                    .map(|i| self.nodes[i].hostname.clone())
                    .next();
                let name = format!("{rs}-{}", self.pod_suffix());
                self.pods.push(PodState {
                    name,
                    node: target,
                    ..pod
                });
                Ok(())
            }
        }
    }

    /// Adds a Deployment's pods (ReplicaSet `rs`) on the given nodes.
    pub fn add_deployment_pods(&mut self, namespace: &str, app: &str, rs: &str, nodes: &[&str]) {
        self.touch();
        for node in nodes {
            let name = format!("{rs}-{}", self.pod_suffix());
            self.pods.push(PodState {
                namespace: namespace.into(),
                name,
                node: Some((*node).to_string()),
                owner: PodOwner::ReplicaSet(rs.into()),
                app: app.into(),
            });
        }
    }

    /// Adds a PodDisruptionBudget.
    pub fn add_pdb(&mut self, pdb: PodDisruptionBudget) {
        self.touch();
        self.pdbs.push(pdb);
    }
}
