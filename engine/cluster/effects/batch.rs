//! The cluster half of `kube.batch-safe`: a fresh view plus the PodDisruptionBudgets and the
//! pods on the batch's nodes, read from the Kubernetes API right before the guarded action.
//!
//! The decision is `condition::batch::safe`, a plain function; this file only gathers its
//! evidence. Anything that cannot be read (no kubeconfig, a refused list, a batch node whose
//! hostname is unknown) becomes a gap, so the guard refuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};

use super::{ClusterEffects, check_error, verdict};
use crate::cluster::observe::evictable;
use crate::condition::batch::{BatchEvidence, Budget, KubeNode};
use crate::condition::check;
use crate::condition::view::{ClusterView, Gap, GapKind, Observed};
use crate::exec::effects::{CheckCall, EffectError, Verdict};

fn gap(call: &str, e: &kube::Error) -> Gap {
    let kind = match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => GapKind::PermissionDenied,
        _ => GapKind::Failed,
    };
    Gap::new(call, kind, e.to_string())
}

/// Whether `pdb` selects `pod` (same namespace, every matchLabels pair). `None`: a selector
/// with `matchExpressions`, which is not evaluated. A budget without a selector counts every
/// pod of its namespace (over-counting only makes the guard stricter).
fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> Option<bool> {
    if pdb.metadata.namespace != pod.metadata.namespace {
        return Some(false);
    }
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Some(true);
    };
    if sel
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    Some(
        sel.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v)),
    )
}

impl ClusterEffects {
    /// `kube.batch-safe` from fresh evidence.
    pub(super) async fn batch_guard(&self, call: &CheckCall<'_>) -> Result<Verdict, EffectError> {
        let args: check::Args = call.args.clone().into_iter().collect();
        let nodes: Vec<String> = match args.get("nodes") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let view = self.observer.view().await;
        let kube_nodes = self.kube_nodes().await;
        let evidence = BatchEvidence {
            budgets: self.budgets(&view, &nodes, &kube_nodes).await,
            kube_nodes,
        };
        check::guard_batch(&args, &view, &evidence)
            .map(verdict)
            .map_err(|e| check_error(call.name, e))
    }

    async fn kube_nodes(&self) -> Observed<Vec<KubeNode>> {
        let client = match self.kube("kube.batch-safe") {
            Ok(c) => c.clone(),
            Err(e) => {
                return Observed::Missing(Gap::new("list nodes", GapKind::Failed, e.to_string()));
            }
        };
        let api: Api<Node> = Api::all(client);
        match api.list(&ListParams::default()).await {
            Ok(l) => Observed::Answered(
                l.items
                    .into_iter()
                    .map(|n| KubeNode {
                        name: n.metadata.name.clone().unwrap_or_default(),
                        control_plane: n.metadata.labels.as_ref().is_some_and(|l| {
                            l.contains_key("node-role.kubernetes.io/control-plane")
                                || l.contains_key("node-role.kubernetes.io/master")
                        }),
                        addresses: n
                            .status
                            .and_then(|s| s.addresses)
                            .into_iter()
                            .flatten()
                            .map(|a| a.address)
                            .collect(),
                    })
                    .collect(),
            ),
            Err(e) => Observed::Missing(gap("list nodes", &e)),
        }
    }

    async fn budgets(
        &self,
        view: &ClusterView,
        nodes: &[String],
        kube_nodes: &Observed<Vec<KubeNode>>,
    ) -> Observed<Vec<Budget>> {
        let client = match self.kube("kube.batch-safe") {
            Ok(c) => c.clone(),
            Err(e) => {
                return Observed::Missing(Gap::new(
                    "list poddisruptionbudgets",
                    GapKind::Failed,
                    e.to_string(),
                ));
            }
        };
        let pdbs: Api<PodDisruptionBudget> = Api::all(client.clone());
        let pdbs = match pdbs.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => return Observed::Missing(gap("list poddisruptionbudgets", &e)),
        };
        let mut pods = Vec::new();
        for x in nodes {
            // Its Kubernetes name: the hostname it reported, else the one Node with its
            // address (a batch node rebooting cannot report its hostname).
            let by_address = kube_nodes.get().and_then(|k| {
                let mut m = k
                    .iter()
                    .filter(|n| n.name == *x || n.addresses.iter().any(|a| a == x));
                match (m.next(), m.next()) {
                    (Some(n), None) => Some(n.name.as_str()),
                    _ => None,
                }
            });
            let Some(host) = view.node(x).and_then(|n| n.host()).or(by_address) else {
                return Observed::Missing(Gap::new(
                    "hostname",
                    GapKind::Failed,
                    format!("the Kubernetes name of `{x}` (its hostname) was not read"),
                ));
            };
            let api: Api<Pod> = Api::all(client.clone());
            match api
                .list(&ListParams::default().fields(&format!("spec.nodeName={host}")))
                .await
            {
                Ok(l) => pods.extend(l.items.into_iter().filter(evictable)),
                Err(e) => return Observed::Missing(gap("list pods", &e)),
            }
        }
        Observed::Answered(
            pdbs.iter()
                .map(|pdb| {
                    let in_batch = pods
                        .iter()
                        .try_fold(0usize, |n, p| selects(pdb, p).map(|s| n + usize::from(s)));
                    Budget {
                        name: format!(
                            "{}/{}",
                            pdb.metadata.namespace.as_deref().unwrap_or(""),
                            pdb.metadata.name.as_deref().unwrap_or("")
                        ),
                        disruptions_allowed: pdb
                            .status
                            .as_ref()
                            .map(|s| u64::try_from(s.disruptions_allowed.max(0)).unwrap_or(0)),
                        in_batch,
                    }
                })
                .collect(),
        )
    }
}
