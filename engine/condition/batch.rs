//! `kube.batch-safe`: whether a batch of nodes may go down together (a `foreach … parallel:
//! K` body drains and reboots K nodes at a time).
//!
//! The per-node guards (`etcd.safe-down`) see one node; a batch takes K down at once, so it is
//! guarded as a whole, from fresh evidence, and fails closed:
//! - every node of the batch was observed and its machine type read as `worker` (a control
//!   plane or an `init` node refuses: control planes go one at a time); a batch node that is
//!   down already (rebooting with its batch) must be one Kubernetes Node without the
//!   control-plane role; and none is named in an etcd member list;
//! - the Kubernetes Ready condition of every observed node was read, and the nodes not Ready
//!   outside the batch plus the batch itself number at most `max_unavailable`;
//! - the PodDisruptionBudgets were read (the effects layer reads them with the pods of the
//!   batch: [`BatchEvidence`]); for each, the batch's pods it selects are within its allowed
//!   disruptions, so the drains send no eviction that would violate it. A budget whose
//!   selector or status cannot be evaluated refuses.

use serde::Serialize;

use crate::condition::view::{ClusterView, Observed, Verdict, cannot_decide};

/// One PodDisruptionBudget as the batch guard needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// `namespace/name`.
    pub name: String,
    /// `status.disruptionsAllowed` (None: no status, not yet computed).
    pub disruptions_allowed: Option<u64>,
    /// Evictable pods on the batch's nodes that it selects (None: a selector the engine does
    /// not evaluate, e.g. `matchExpressions`).
    pub in_batch: Option<usize>,
}

/// A Kubernetes Node as the batch guard needs it: whether it is a control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeNode {
    /// `metadata.name`.
    pub name: String,
    /// `status.addresses[].address`.
    pub addresses: Vec<String>,
    /// Labelled `node-role.kubernetes.io/control-plane`.
    pub control_plane: bool,
}

/// What the batch guard reads besides the cluster view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEvidence {
    /// The PodDisruptionBudgets.
    pub budgets: Observed<Vec<Budget>>,
    /// The Kubernetes Nodes: the role of a batch node that is down already (rebooting with
    /// its batch) and so cannot tell its machine type itself.
    pub kube_nodes: Observed<Vec<KubeNode>>,
}

impl BatchEvidence {
    /// Nothing read (the guard refuses).
    pub fn not_read() -> BatchEvidence {
        BatchEvidence {
            budgets: Observed::NotAsked,
            kube_nodes: Observed::NotAsked,
        }
    }
}

/// `kube.batch-safe` over `view` and `evidence` for the batch `nodes` with at most
/// `max_unavailable` nodes down.
pub fn safe(
    view: &ClusterView,
    evidence: &BatchEvidence,
    nodes: &[String],
    max_unavailable: usize,
) -> Verdict {
    // Evidence first: a node the caller's role may not read, or whose readiness is unknown,
    // leaves the count of unavailable nodes unknown. (A node that does not answer at all is
    // counted by its Kubernetes Ready condition: it may be rebooting with this batch.)
    for n in &view.nodes {
        if let Some(g) = n.contact.gap().filter(|g| !g.kind.is_silence()) {
            return cannot_decide(&n.label, g);
        }
        match &n.kube_ready {
            Observed::Answered(_) => {}
            Observed::Missing(g) => return cannot_decide(&n.label, g),
            Observed::NotAsked => {
                return Verdict::fail(format!(
                    "cannot decide: Kubernetes was not asked whether `{}` is Ready",
                    n.label
                ));
            }
        }
    }
    if nodes.is_empty() {
        return Verdict::fail("the batch names no node");
    }
    if nodes.len() > max_unavailable {
        return Verdict::fail(format!(
            "the batch has {} nodes but at most {max_unavailable} may be unavailable",
            nodes.len()
        ))
        .with("batch", nodes.len())
        .with("max_unavailable", max_unavailable);
    }
    // Each node of the batch: read, a worker, and no etcd member.
    for x in nodes {
        let Some(n) = view.node(x) else {
            return Verdict::fail(format!("`{x}` was not observed"));
        };
        match &n.machine_type {
            Observed::Answered(ty) if ty == "worker" => {}
            Observed::Answered(ty) => {
                return Verdict::fail(format!(
                    "`{x}` is a `{ty}` node: control planes go one at a time, never in a batch"
                ));
            }
            // Down with its batch (or unreadable): Kubernetes must say it is a worker.
            unread => {
                let nodes = match &evidence.kube_nodes {
                    Observed::Answered(k) => k,
                    _ => {
                        return match unread.need(x, "machine type") {
                            Err(v) => v,
                            Ok(_) => Verdict::fail(format!("cannot decide the role of `{x}`")),
                        };
                    }
                };
                let by_name = |k: &&KubeNode| {
                    k.name == *x
                        || n.host().is_some_and(|h| k.name == h)
                        || k.addresses.iter().any(|a| a == x)
                };
                let mut found = nodes.iter().filter(by_name);
                match (found.next(), found.next()) {
                    (Some(k), None) if !k.control_plane => {}
                    (Some(k), None) => {
                        return Verdict::fail(format!(
                            "`{x}` is Kubernetes node `{}`, a control plane: control planes go one at a time, never in a batch",
                            k.name
                        ));
                    }
                    _ => {
                        return Verdict::fail(format!(
                            "cannot decide: the machine type of `{x}` was not read and no single Kubernetes Node is `{x}`"
                        ));
                    }
                }
            }
        }
        let listed = view.nodes.iter().find_map(|m| {
            m.members
                .get()?
                .iter()
                .find(|mem| n.is_named(&mem.name))
                .map(|mem| mem.name.clone())
        });
        if let Some(name) = listed {
            return Verdict::fail(format!(
                "`{x}` is listed as etcd member `{name}`: it is a control plane, never in a batch"
            ));
        }
    }
    // Unavailable nodes across the cluster, with the batch counted down.
    let mut down: Vec<&str> = nodes.iter().map(String::as_str).collect();
    for n in &view.nodes {
        if nodes.iter().any(|x| n.label == *x || n.is_named(x)) {
            continue;
        }
        if !matches!(n.kube_ready, Observed::Answered(Some(true))) {
            down.push(n.label.as_str());
        }
    }
    if down.len() > max_unavailable {
        return Verdict::fail(format!(
            "{} nodes would be unavailable ({}), more than {max_unavailable}",
            down.len(),
            down.join(", ")
        ))
        .with("unavailable", down.len())
        .with("max_unavailable", max_unavailable);
    }
    // PodDisruptionBudgets: the batch's pods within each one's allowed disruptions.
    let budgets = match &evidence.budgets {
        Observed::Answered(b) => b,
        Observed::Missing(g) => return cannot_decide("PodDisruptionBudgets", g),
        Observed::NotAsked => {
            return Verdict::fail("cannot decide: the PodDisruptionBudgets were not read");
        }
    };
    for b in budgets {
        let Some(in_batch) = b.in_batch else {
            return Verdict::fail(format!(
                "cannot decide: the selector of PodDisruptionBudget `{}` is not evaluated (only matchLabels is)",
                b.name
            ));
        };
        let Some(allowed) = b.disruptions_allowed else {
            return Verdict::fail(format!(
                "cannot decide: PodDisruptionBudget `{}` has no status (disruptionsAllowed)",
                b.name
            ));
        };
        if u64::try_from(in_batch).unwrap_or(u64::MAX) > allowed {
            return Verdict::fail(format!(
                "draining the batch would evict {in_batch} pod(s) of PodDisruptionBudget `{}`, which allows {allowed}",
                b.name
            ))
            .with("pdb_in_batch", in_batch)
            .with("pdb_allowed", allowed);
        }
    }
    Verdict::pass(format!(
        "{} worker(s) in the batch; {} unavailable with it (at most {max_unavailable}); {} PodDisruptionBudget(s) allow it",
        nodes.len(),
        down.len(),
        budgets.len()
    ))
    .with("batch", nodes.len())
    .with("unavailable", down.len())
    .with("max_unavailable", max_unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;
    use crate::condition::view::{Gap, GapKind, NodeView};

    fn worker(label: &str) -> NodeView {
        NodeView {
            label: label.into(),
            hostname: Observed::Answered(label.into()),
            machine_type: Observed::Answered("worker".into()),
            kube_ready: Observed::Answered(Some(true)),
            members: Observed::NotAsked,
            ..NodeView::default()
        }
    }

    fn fleet(workers: usize) -> ClusterView {
        let mut v = three();
        for n in &mut v.nodes {
            n.machine_type = Observed::Answered("controlplane".into());
        }
        for i in 1..=workers {
            v.nodes.push(worker(&format!("w{i}")));
        }
        v
    }

    fn budgets(b: Vec<Budget>) -> BatchEvidence {
        BatchEvidence {
            budgets: Observed::Answered(b),
            kube_nodes: Observed::Answered(vec![
                KubeNode {
                    name: "w1".into(),
                    addresses: vec!["10.0.0.1".into()],
                    control_plane: false,
                },
                KubeNode {
                    name: "cp".into(),
                    addresses: vec!["w2".into()],
                    control_plane: true,
                },
            ]),
        }
    }

    #[test]
    fn a_batch_node_down_already_needs_its_kubernetes_role() {
        let mut v = fleet(3);
        let gap = Gap::new("MachineStatus", GapKind::Unreachable, "refused");
        v.nodes[3] = NodeView::silent("w1", gap.clone());
        v.nodes[3].kube_ready = Observed::Answered(Some(false));
        // Kubernetes says w1 is a worker.
        assert!(safe(&v, &budgets(vec![]), &ws(1..=2), 2).holds);
        // Without the Nodes, the silent node refuses.
        let mut e = budgets(vec![]);
        e.kube_nodes = Observed::NotAsked;
        assert!(!safe(&v, &e, &ws(1..=2), 2).holds);
        // A silent node Kubernetes labels a control plane refuses.
        v.nodes[4] = NodeView::silent("w2", gap.clone());
        v.nodes[4].kube_ready = Observed::Answered(Some(false));
        let r = safe(&v, &budgets(vec![]), &ws(1..=2), 2);
        assert!(!r.holds && r.reason.contains("control plane"), "{r:?}");
        // A silent node no Node matches refuses.
        v.nodes[4] = NodeView::silent("w3", gap);
        let r = safe(&v, &budgets(vec![]), &["w3".to_string()], 2);
        assert!(!r.holds, "{r:?}");
    }

    fn ws(r: std::ops::RangeInclusive<usize>) -> Vec<String> {
        r.map(|i| format!("w{i}")).collect()
    }

    #[test]
    fn a_healthy_batch_of_workers_passes() {
        let v = fleet(6);
        let v = safe(&v, &budgets(vec![]), &ws(1..=3), 3);
        assert!(v.holds, "{v:?}");
    }

    #[test]
    fn control_planes_and_unknown_types_are_refused() {
        let v = fleet(3);
        let mut batch = ws(1..=2);
        batch.push("a".into());
        let r = safe(&v, &budgets(vec![]), &batch, 3);
        assert!(!r.holds && r.reason.contains("control plane"), "{r:?}");
        // A worker whose type could not be read.
        let mut v2 = fleet(3);
        v2.nodes[4].machine_type = Observed::Missing(Gap::new(
            "Get MachineTypes",
            GapKind::PermissionDenied,
            "denied",
        ));
        let r = safe(&v2, &budgets(vec![]), &ws(1..=2), 2);
        assert!(!r.holds, "{r:?}");
        // A "worker" that an etcd member list names.
        let mut v3 = fleet(3);
        if let Observed::Answered(m) = &mut v3.nodes[0].members {
            m[0].name = "w1".into();
        }
        let r = safe(&v3, &budgets(vec![]), &ws(1..=1), 1);
        assert!(!r.holds && r.reason.contains("etcd member"), "{r:?}");
        // A batch node that was not observed at all.
        let r = safe(&v, &budgets(vec![]), &["w9".to_string()], 1);
        assert!(!r.holds, "{r:?}");
    }

    #[test]
    fn nodes_already_down_count_against_the_budget() {
        let mut v = fleet(6);
        v.nodes[8].kube_ready = Observed::Answered(Some(false)); // w6
        let r = safe(&v, &budgets(vec![]), &ws(1..=3), 3);
        assert!(!r.holds && r.reason.contains("4 nodes"), "{r:?}");
        // Nodes of the batch that are down already count once.
        let mut v = fleet(6);
        v.nodes[3].kube_ready = Observed::Answered(Some(false)); // w1
        assert!(safe(&v, &budgets(vec![]), &ws(1..=3), 3).holds);
        // Readiness unknown anywhere: refuse.
        let mut v = fleet(6);
        v.nodes[1].kube_ready = Observed::Missing(Gap::new("list nodes", GapKind::TimedOut, "t"));
        assert!(!safe(&v, &budgets(vec![]), &ws(1..=3), 3).holds);
        v.nodes[1].kube_ready = Observed::NotAsked;
        assert!(!safe(&v, &budgets(vec![]), &ws(1..=3), 3).holds);
        // A batch wider than K.
        let v = fleet(6);
        assert!(!safe(&v, &budgets(vec![]), &ws(1..=4), 3).holds);
        assert!(!safe(&v, &budgets(vec![]), &[], 3).holds);
    }

    #[test]
    fn budgets_must_be_read_and_respected() {
        let v = fleet(6);
        let b = &ws(1..=3);
        assert!(!safe(&v, &BatchEvidence::not_read(), b, 3).holds);
        let missing = BatchEvidence {
            budgets: Observed::Missing(Gap::new(
                "list pdbs",
                GapKind::PermissionDenied,
                "forbidden",
            )),
            ..budgets(vec![])
        };
        assert!(!safe(&v, &missing, b, 3).holds);
        let pdb = |allowed, in_batch| Budget {
            name: "apps/web".into(),
            disruptions_allowed: allowed,
            in_batch,
        };
        assert!(safe(&v, &budgets(vec![pdb(Some(3), Some(3))]), b, 3).holds);
        let r = safe(&v, &budgets(vec![pdb(Some(2), Some(3))]), b, 3);
        assert!(!r.holds && r.reason.contains("apps/web"), "{r:?}");
        assert!(!safe(&v, &budgets(vec![pdb(None, Some(0))]), b, 3).holds);
        assert!(!safe(&v, &budgets(vec![pdb(Some(9), None)]), b, 3).holds);
    }
}
