//! Parameters the cluster knows: the values `default_from: cluster.<source>` stands for,
//! read from one fresh observation before the plan is compiled.
//!
//! An operator should not have to type the control-plane nodes, the etcd leader or the GPU
//! node: the cluster knows them. But a default is a choice the engine makes for the operator,
//! so it is made fail-closed, like a guard: every fact it rests on must have been read, the
//! nodes must agree, and anything missing or ambiguous (a silent node that could be the GPU
//! node, two GPU nodes, member lists that differ, no agreed leader, no healthy non-leader)
//! refuses, naming the parameter to give instead. A node that is down is never picked. The
//! resolved values go into the plan, its hash and `params.json`, so `resume` never resolves
//! again.

use crate::condition::view::{ClusterView, Contact, NodeView, Observed};
use crate::dsl::ast::ClusterDefault;

/// One resolved parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The parameter.
    pub param: String,
    /// The value as `--param` text (`a,b,c` for nodes).
    pub text: String,
    /// How it was chosen, for the operator.
    pub why: String,
}

/// A default that could not be read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot default parameter `{param}` from the cluster ({}): {why}; give it with `--param {param}=…`",
    from.name()
)]
pub struct Refused {
    /// The parameter.
    pub param: String,
    /// Its source.
    pub from: ClusterDefault,
    /// Why.
    pub why: String,
}

/// Resolves every wanted parameter from `view`, or refuses on the first that cannot be.
pub fn resolve(
    view: &ClusterView,
    wanted: &[(String, ClusterDefault)],
) -> Result<Vec<Resolved>, Refused> {
    wanted
        .iter()
        .map(|(param, source)| {
            let refuse = |why: String| Refused {
                param: param.clone(),
                from: *source,
                why,
            };
            let (text, why) = match source {
                ClusterDefault::ControlPlanes => control_planes(view).map_err(refuse)?,
                ClusterDefault::BackupMember => backup_member(view).map_err(refuse)?,
                ClusterDefault::GpuNode => gpu_node(view).map_err(refuse)?,
                ClusterDefault::Workers => workers(view).map_err(refuse)?,
                ClusterDefault::InventoryNodes => {
                    return Err(refuse(
                        "it is read from the inventory (`--param inventory=…`), not the cluster"
                            .into(),
                    ));
                }
            };
            Ok(Resolved {
                param: param.clone(),
                text,
                why,
            })
        })
        .collect()
}

fn contact_gap(n: &NodeView) -> Option<String> {
    match &n.contact {
        Observed::Answered(_) => None,
        Observed::Missing(g) => Some(format!("node {} {g}", n.label)),
        Observed::NotAsked => Some(format!("node {} was not observed", n.label)),
    }
}

fn is_secure(n: &NodeView) -> bool {
    matches!(n.contact, Observed::Answered(Contact::Secure))
}

/// The leader id every answering member agrees on (none answering, or disagreement, is no
/// leader).
fn agreed_leader(nodes: &[&NodeView]) -> Result<u64, String> {
    let mut leader = None;
    for n in nodes {
        let Some(st) = n.etcd.get() else { continue };
        if st.leader == 0 {
            return Err(format!("node {} sees no etcd leader", n.label));
        }
        match leader {
            None => leader = Some((st.leader, n.label.as_str())),
            Some((l, first)) if l != st.leader => {
                return Err(format!(
                    "the members disagree on the etcd leader ({first} sees {l:x}, {} sees {:x})",
                    n.label, st.leader
                ));
            }
            Some(_) => {}
        }
    }
    leader
        .map(|(l, _)| l)
        .ok_or_else(|| "no etcd member reported its status".to_owned())
}

fn control_planes(view: &ClusterView) -> Result<(String, String), String> {
    if view.nodes.is_empty() {
        return Err("the talosconfig context names no nodes (give -n/--nodes)".into());
    }
    let mut cps: Vec<&NodeView> = Vec::new();
    for n in &view.nodes {
        if let Some(gap) = contact_gap(n) {
            return Err(format!(
                "{gap}, so it cannot be told whether it is a control-plane node"
            ));
        }
        if !is_secure(n) {
            continue; // maintenance mode: unconfigured, holds no etcd member
        }
        match &n.machine_type {
            Observed::Answered(t) if t == "controlplane" || t == "init" => cps.push(n),
            Observed::Answered(_) => {}
            Observed::Missing(g) => return Err(format!("node {} {g}", n.label)),
            Observed::NotAsked => {
                return Err(format!("the machine type of {} was not read", n.label));
            }
        }
    }
    if cps.is_empty() {
        return Err("no observed node is a control-plane node".into());
    }
    let mut lists = Vec::new();
    for n in &cps {
        match &n.members {
            Observed::Answered(m) => lists.push((n.label.as_str(), m)),
            Observed::Missing(g) => return Err(format!("node {} {g}", n.label)),
            Observed::NotAsked => {
                return Err(format!("the etcd member list of {} was not read", n.label));
            }
        }
    }
    let key = |m: &Vec<crate::condition::view::Member>| {
        let mut ids: Vec<(u64, bool)> = m.iter().map(|m| (m.id, m.is_learner)).collect();
        ids.sort_unstable();
        ids
    };
    let (first, members) = lists[0];
    if let Some((other, _)) = lists.iter().find(|(_, m)| key(m) != key(members)) {
        return Err(format!(
            "the etcd member lists of {first} and {other} differ"
        ));
    }
    let voters: Vec<_> = members.iter().filter(|m| !m.is_learner).collect();
    let mut chosen: Vec<(&NodeView, u64)> = Vec::new();
    for m in &voters {
        let named: Vec<&&NodeView> = cps.iter().filter(|n| n.is_named(&m.name)).collect();
        match named.as_slice() {
            [n] => chosen.push((n, m.id)),
            [] => {
                return Err(format!(
                    "etcd member `{}` is not among the observed nodes ({})",
                    if m.name.is_empty() {
                        "(unstarted)"
                    } else {
                        &m.name
                    },
                    view.nodes
                        .iter()
                        .map(|n| n.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            _ => return Err(format!("two nodes claim etcd member `{}`", m.name)),
        }
    }
    if let Some(n) = cps
        .iter()
        .find(|n| !chosen.iter().any(|(c, _)| c.label == n.label))
    {
        return Err(format!(
            "node {} is a control-plane node but not a voting etcd member",
            n.label
        ));
    }
    for n in &cps {
        if let Observed::Missing(g) = &n.etcd {
            return Err(format!("node {} {g}", n.label));
        }
    }
    let leader = agreed_leader(&cps)?;
    let Some(pos) = chosen.iter().position(|(_, id)| *id == leader) else {
        return Err(format!("the etcd leader {leader:x} is not a voting member"));
    };
    // View order (the talosconfig's), the leader last: one leader election, at the end.
    let mut order: Vec<&NodeView> = chosen.iter().map(|(n, _)| *n).collect();
    let last = order.remove(pos);
    order.push(last);
    let labels: Vec<&str> = order.iter().map(|n| n.label.as_str()).collect();
    Ok((
        labels.join(","),
        format!(
            "the {} etcd voters, leader {} last",
            labels.len(),
            last.label
        ),
    ))
}

fn backup_member(view: &ClusterView) -> Result<(String, String), String> {
    let answering: Vec<&NodeView> = view.nodes.iter().filter(|n| is_secure(n)).collect();
    let leader = agreed_leader(&answering)?;
    let mut why_not = Vec::new();
    for n in &answering {
        let reject = |why: &str| format!("{}: {why}", n.label);
        let Some(st) = n.etcd.get() else {
            why_not.push(reject("etcd status not read"));
            continue;
        };
        if st.member_id == leader {
            why_not.push(reject("the leader"));
            continue;
        }
        if st.is_learner || !st.errors.is_empty() {
            why_not.push(reject("a learner, or etcd reports errors"));
            continue;
        }
        if n.stage.get().map(String::as_str) != Some("running") {
            why_not.push(reject("not in stage running"));
            continue;
        }
        let etcd_ok = n
            .service("etcd")
            .is_some_and(|s| s.state == "Running" && s.healthy);
        if !etcd_ok {
            why_not.push(reject("its etcd service is not Running and healthy"));
            continue;
        }
        let voter = n
            .members
            .get()
            .is_some_and(|m| m.iter().any(|m| m.id == st.member_id && !m.is_learner));
        if !voter {
            why_not.push(reject("not a voter in its own member list"));
            continue;
        }
        if n.alarms.get().is_none_or(|a| !a.is_empty()) {
            why_not.push(reject("alarms active or unread"));
            continue;
        }
        return Ok((
            n.label.clone(),
            "a healthy etcd voter that is not the leader".to_owned(),
        ));
    }
    for n in view.nodes.iter().filter(|n| !is_secure(n)) {
        why_not.push(format!(
            "{}: does not answer the authenticated API",
            n.label
        ));
    }
    Err(format!(
        "no healthy non-leader etcd member ({})",
        why_not.join("; ")
    ))
}

/// Every node of the context whose machine type is `worker`, in the talosconfig's order;
/// none is an empty list. A node that does not answer, or whose type was not read, could be a
/// worker: refused.
fn workers(view: &ClusterView) -> Result<(String, String), String> {
    if view.nodes.is_empty() {
        return Err("the talosconfig context names no nodes (give -n/--nodes)".into());
    }
    let mut found = Vec::new();
    for n in &view.nodes {
        if let Some(gap) = contact_gap(n) {
            return Err(format!(
                "{gap}, so it cannot be told whether it is a worker"
            ));
        }
        if !is_secure(n) {
            continue; // maintenance mode: not configured as anything yet
        }
        match &n.machine_type {
            Observed::Answered(t) if t == "worker" => found.push(n.label.as_str()),
            Observed::Answered(_) => {}
            Observed::Missing(g) => return Err(format!("node {} {g}", n.label)),
            Observed::NotAsked => {
                return Err(format!("the machine type of {} was not read", n.label));
            }
        }
    }
    let why = match found.len() {
        0 => "no node of the context is a worker".to_owned(),
        n => format!("the {n} nodes whose machine type is worker"),
    };
    Ok((found.join(","), why))
}

/// NVIDIA's PCI vendor id.
pub const NVIDIA: &str = "0x10de";

fn gpu_node(view: &ClusterView) -> Result<(String, String), String> {
    if view.nodes.is_empty() {
        return Err("the talosconfig context names no nodes (give -n/--nodes)".into());
    }
    let mut hits = Vec::new();
    for n in &view.nodes {
        if let Some(gap) = contact_gap(n) {
            return Err(format!(
                "{gap}, so it cannot be told whether it has the GPU"
            ));
        }
        match &n.pci_vendors {
            Observed::Answered(v) => {
                if v.iter().any(|v| v.eq_ignore_ascii_case(NVIDIA)) {
                    hits.push(n.label.as_str());
                }
            }
            Observed::Missing(g) => return Err(format!("node {} {g}", n.label)),
            Observed::NotAsked => {
                return Err(format!("the PCI devices of {} were not read", n.label));
            }
        }
    }
    match hits.as_slice() {
        [one] => Ok((
            (*one).to_owned(),
            "the only node with an NVIDIA PCI device".to_owned(),
        )),
        [] => Err("no node has an NVIDIA PCI device".into()),
        many => Err(format!(
            "{} nodes have an NVIDIA PCI device ({})",
            many.len(),
            many.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::view::{EtcdStatus, Gap, GapKind, Member, Service};

    fn node(label: &str, id: u64, leader: u64) -> NodeView {
        NodeView {
            label: label.into(),
            contact: Observed::Answered(Contact::Secure),
            hostname: Observed::Answered(format!("h{id}")),
            stage: Observed::Answered("running".into()),
            ready: Observed::Answered(true),
            services: Observed::Answered(vec![Service {
                id: "etcd".into(),
                state: "Running".into(),
                healthy: true,
            }]),
            members: Observed::Answered(
                (1..=3)
                    .map(|i| Member {
                        id: i,
                        name: format!("h{i}"),
                        peer_urls: vec![],
                        is_learner: false,
                    })
                    .collect(),
            ),
            etcd: Observed::Answered(EtcdStatus {
                member_id: id,
                leader,
                raft_index: 1,
                errors: vec![],
                is_learner: false,
            }),
            alarms: Observed::Answered(vec![]),
            machine_type: Observed::Answered("controlplane".into()),
            pci_vendors: Observed::Answered(vec!["0x8086".into()]),
            ..NodeView::default()
        }
    }

    fn cluster(leader: u64) -> ClusterView {
        ClusterView {
            nodes: vec![
                node("a", 1, leader),
                node("b", 2, leader),
                node("c", 3, leader),
            ],
        }
    }

    fn one(view: &ClusterView, source: ClusterDefault) -> Result<String, Refused> {
        resolve(view, &[("p".into(), source)]).map(|r| r[0].text.clone())
    }

    fn silent(n: &mut NodeView) {
        *n = NodeView::silent(&n.label, Gap::new("MachineStatus", GapKind::TimedOut, "t"));
    }

    #[test]
    fn control_planes_put_the_leader_last() {
        assert_eq!(
            one(&cluster(1), ClusterDefault::ControlPlanes).unwrap(),
            "b,c,a"
        );
        assert_eq!(
            one(&cluster(3), ClusterDefault::ControlPlanes).unwrap(),
            "a,b,c"
        );
    }

    #[test]
    fn control_planes_refuse_a_silent_node_disagreement_and_no_leader() {
        let mut v = cluster(1);
        silent(&mut v.nodes[1]);
        let e = one(&v, ClusterDefault::ControlPlanes).unwrap_err();
        assert!(
            e.to_string()
                .contains("node b did not answer MachineStatus"),
            "{e}"
        );
        assert!(e.to_string().contains("--param p="), "{e}");

        let mut v = cluster(1);
        if let Observed::Answered(m) = &mut v.nodes[2].members {
            m.pop();
        }
        assert!(
            one(&v, ClusterDefault::ControlPlanes)
                .unwrap_err()
                .why
                .contains("differ")
        );

        let mut v = cluster(1);
        if let Observed::Answered(s) = &mut v.nodes[0].etcd {
            s.leader = 2;
        }
        assert!(
            one(&v, ClusterDefault::ControlPlanes)
                .unwrap_err()
                .why
                .contains("disagree")
        );

        let v = cluster(0);
        assert!(
            one(&v, ClusterDefault::ControlPlanes)
                .unwrap_err()
                .why
                .contains("no etcd leader")
        );

        // A member no observed node is.
        let mut v = cluster(1);
        v.nodes.pop();
        for n in &mut v.nodes {
            n.members = cluster(1).nodes[0].members.clone();
        }
        assert!(
            one(&v, ClusterDefault::ControlPlanes)
                .unwrap_err()
                .why
                .contains("`h3` is not among")
        );
        // A node claiming another's name.
        let mut v = cluster(1);
        v.nodes[2].hostname = Observed::Answered("h1".into());
        assert!(one(&v, ClusterDefault::ControlPlanes).is_err());
        // A refused member list is no answer.
        let mut v = cluster(1);
        v.nodes[0].members =
            Observed::Missing(Gap::new("EtcdMemberList", GapKind::PermissionDenied, "no"));
        assert!(
            one(&v, ClusterDefault::ControlPlanes)
                .unwrap_err()
                .why
                .contains("PermissionDenied")
        );
    }

    #[test]
    fn backup_member_is_healthy_and_not_the_leader_and_never_down() {
        assert_eq!(one(&cluster(1), ClusterDefault::BackupMember).unwrap(), "b");
        assert_eq!(one(&cluster(2), ClusterDefault::BackupMember).unwrap(), "a");
        let mut v = cluster(1);
        silent(&mut v.nodes[1]);
        assert_eq!(one(&v, ClusterDefault::BackupMember).unwrap(), "c");
        if let Observed::Answered(s) = &mut v.nodes[2].services {
            s[0].state = "Failed".into();
        }
        let e = one(&v, ClusterDefault::BackupMember).unwrap_err();
        assert!(e.why.contains("no healthy non-leader"), "{e}");
        assert!(e.why.contains("b: does not answer"), "{e}");
        // Nobody reported a status: no leader to avoid.
        let mut v = cluster(1);
        for n in &mut v.nodes {
            n.etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "x"));
        }
        assert!(one(&v, ClusterDefault::BackupMember).is_err());
    }

    #[test]
    fn gpu_node_is_the_one_nvidia_node_and_refuses_doubt() {
        let mut v = cluster(1);
        assert!(
            one(&v, ClusterDefault::GpuNode)
                .unwrap_err()
                .why
                .contains("no node has")
        );
        v.nodes[0].pci_vendors = Observed::Answered(vec!["0x10DE".into()]);
        assert_eq!(one(&v, ClusterDefault::GpuNode).unwrap(), "a");
        let mut two = v.clone();
        two.nodes[2].pci_vendors = Observed::Answered(vec![NVIDIA.into()]);
        assert!(
            one(&two, ClusterDefault::GpuNode)
                .unwrap_err()
                .why
                .contains("2 nodes")
        );
        // A silent node could be a second GPU node.
        let mut doubt = v.clone();
        silent(&mut doubt.nodes[1]);
        assert!(
            one(&doubt, ClusterDefault::GpuNode)
                .unwrap_err()
                .why
                .contains("node b")
        );
        let mut unread = v;
        unread.nodes[2].pci_vendors =
            Observed::Missing(Gap::new("PCIDevices", GapKind::PermissionDenied, "no"));
        assert!(one(&unread, ClusterDefault::GpuNode).is_err());
    }

    #[test]
    fn workers_are_the_worker_nodes_none_is_empty_and_doubt_refuses() {
        let mut v = cluster(1);
        // The seed cluster: no worker, an empty list (not a refusal).
        assert_eq!(one(&v, ClusterDefault::Workers).unwrap(), "");
        v.nodes.push(node("w1", 9, 1));
        v.nodes.push(node("w2", 10, 1));
        v.nodes[3].machine_type = Observed::Answered("worker".into());
        v.nodes[4].machine_type = Observed::Answered("worker".into());
        assert_eq!(one(&v, ClusterDefault::Workers).unwrap(), "w1,w2");
        // A silent node could be a worker; an unread machine type too.
        let mut doubt = v.clone();
        silent(&mut doubt.nodes[4]);
        assert!(
            one(&doubt, ClusterDefault::Workers)
                .unwrap_err()
                .why
                .contains("node w2")
        );
        let mut unread = v;
        unread.nodes[3].machine_type =
            Observed::Missing(Gap::new("MachineType", GapKind::PermissionDenied, "no"));
        assert!(one(&unread, ClusterDefault::Workers).is_err());
    }
}
