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
                ClusterDefault::EtcdSurvivor => etcd_survivor(view).map_err(refuse)?,
                ClusterDefault::EtcdReachable => etcd_reachable(view).map_err(refuse)?,
                ClusterDefault::EtcdDown => etcd_down(view).map_err(refuse)?,
                ClusterDefault::DepartedNode => departed(view)
                    .map(|(n, m, why)| (n.label.clone(), format!("{why} ({})", member_name(m))))
                    .map_err(refuse)?,
                ClusterDefault::DepartedMember => departed(view)
                    .map(|(n, m, why)| {
                        (
                            format!("{:016x}", m.id),
                            format!("the etcd member `{}` of {}: {why}", member_name(m), n.label),
                        )
                    })
                    .map_err(refuse)?,
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

/// An empty node list is a refusal: no default is drawn from nothing.
fn some_nodes(view: &ClusterView) -> Result<(), String> {
    if view.nodes.is_empty() {
        return Err("the talosconfig context names no nodes (give -n/--nodes)".into());
    }
    Ok(())
}

/// The machine type a node reported; a missing or unread type is a refusal naming the node.
fn machine_type(n: &NodeView) -> Result<&str, String> {
    match &n.machine_type {
        Observed::Answered(t) => Ok(t.as_str()),
        Observed::Missing(g) => Err(format!("node {} {g}", n.label)),
        Observed::NotAsked => Err(format!("the machine type of {} was not read", n.label)),
    }
}

/// Whether a node is a control plane (`controlplane`, or the legacy `init`), from
/// [`machine_type`].
fn is_control_plane(n: &NodeView) -> Result<bool, String> {
    machine_type(n).map(|t| t == "controlplane" || t == "init")
}

/// The etcd member list a node reported; missing or unread is a refusal naming the node.
fn member_list(n: &NodeView) -> Result<&Vec<crate::condition::view::Member>, String> {
    match &n.members {
        Observed::Answered(m) => Ok(m),
        Observed::Missing(g) => Err(format!("node {} {g}", n.label)),
        Observed::NotAsked => Err(format!("the etcd member list of {} was not read", n.label)),
    }
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
    some_nodes(view)?;
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
        if is_control_plane(n)? {
            cps.push(n);
        }
    }
    if cps.is_empty() {
        return Err("no observed node is a control-plane node".into());
    }
    let mut lists = Vec::new();
    for n in &cps {
        lists.push((n.label.as_str(), member_list(n)?));
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
    some_nodes(view)?;
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
        if machine_type(n)? == "worker" {
            found.push(n.label.as_str());
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
    some_nodes(view)?;
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

/// The control planes that answer the authenticated API, in the talosconfig's order. A node
/// that answers but whose machine type was not read could be a control plane: refused.
fn answering_control_planes(view: &ClusterView) -> Result<Vec<&NodeView>, String> {
    some_nodes(view)?;
    let mut cps = Vec::new();
    for n in view.nodes.iter().filter(|n| is_secure(n)) {
        if is_control_plane(n)? {
            cps.push(n);
        }
    }
    if cps.is_empty() {
        return Err("no node of the context answers as a control plane".into());
    }
    Ok(cps)
}

/// Quorum recovery: every control plane that answers (all are wiped and rejoin).
fn etcd_reachable(view: &ClusterView) -> Result<(String, String), String> {
    let mut cps = answering_control_planes(view)?;
    // Oldest data first, the survivor (newest) last: each wipe re-checks that quorum is lost,
    // and the survivor's etcd is the witness until its own wipe. A stable sort: the
    // talosconfig's order among equals, as `cluster.etcd-survivor` picks the last of them.
    cps.sort_by_key(|n| n.etcd.get().map(|st| st.raft_index));
    let labels: Vec<&str> = cps.iter().map(|n| n.label.as_str()).collect();
    Ok((
        labels.join(","),
        format!(
            "the {} control planes that answer, the newest etcd data last",
            labels.len()
        ),
    ))
}

/// Quorum recovery: every node of the context that is silent. Only silence counts: a node
/// that answered with an error (a refused role, a broken certificate) is not known to be off.
fn etcd_down(view: &ClusterView) -> Result<(String, String), String> {
    some_nodes(view)?;
    let mut down = Vec::new();
    for n in &view.nodes {
        match &n.contact {
            Observed::Answered(_) => {}
            Observed::Missing(g) if g.kind.is_silence() => down.push(n.label.as_str()),
            Observed::Missing(g) => {
                return Err(format!(
                    "node {} {g}: it answers, so it is not known to be powered off",
                    n.label
                ));
            }
            Observed::NotAsked => return Err(format!("node {} was not observed", n.label)),
        }
    }
    let why = match down.len() {
        0 => "every node of the context answers".to_owned(),
        k => format!(
            "the {k} nodes of the context that do not answer (you attest them powered off at the approval)"
        ),
    };
    Ok((down.join(","), why))
}

/// Quorum recovery: the answering control plane whose etcd member reports the highest raft
/// index (the last in the talosconfig's order on a tie: the one `cluster.etcd-reachable`
/// puts last). `etcd.diagnose` checks the choice
/// again with the raft applied index, and warns when it is not the newest.
fn etcd_survivor(view: &ClusterView) -> Result<(String, String), String> {
    let cps = answering_control_planes(view)?;
    let best = cps
        .iter()
        .filter_map(|n| n.etcd.get().map(|st| (n, st.raft_index)))
        .reduce(|best, c| if c.1 >= best.1 { c } else { best });
    match best {
        Some((n, index)) => Ok((
            n.label.clone(),
            format!("the answering etcd member with the highest raft index ({index})"),
        )),
        None => Err(format!(
            "no answering control plane reports its etcd status ({})",
            cps.iter()
                .map(|n| n.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn member_name(m: &crate::condition::view::Member) -> &str {
    if m.name.is_empty() {
        "(unstarted)"
    } else {
        &m.name
    }
}

fn peer_host_is(m: &crate::condition::view::Member, label: &str) -> bool {
    m.peer_urls.iter().any(|u| {
        let rest = u.split("://").nth(1).unwrap_or(u);
        let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
        host.trim_matches(['[', ']']) == label
    })
}

/// The node that is gone while its etcd member stays listed (node-replace's dead node, or the
/// old address of a machine that moved: the `stale-member` trap, talos#7903), with that
/// member. Fail-closed: every answering control plane's member list must have been read and
/// agree; exactly one listed member may be claimed by no answering node; it must name, by a
/// peer URL, exactly one node of the context; and that node must be silent (unreachable or
/// timed out: a role refusal or a broken answer proves nothing). A member of no node of the
/// context, several departed members, or none refuses.
fn departed(
    view: &ClusterView,
) -> Result<(&NodeView, &crate::condition::view::Member, &'static str), String> {
    use crate::condition::etcd::member_of_node;
    some_nodes(view)?;
    let mut answering = Vec::new();
    for n in &view.nodes {
        match &n.contact {
            Observed::Answered(Contact::Secure) => answering.push(n),
            Observed::Answered(Contact::Maintenance) => {}
            Observed::Missing(g) if g.kind.is_silence() => {}
            Observed::Missing(g) => {
                return Err(format!("node {} {g}: that is no proof it is down", n.label));
            }
            Observed::NotAsked => return Err(format!("node {} was not observed", n.label)),
        }
    }
    let mut lists = Vec::new();
    for n in &answering {
        if !is_control_plane(n)? {
            continue;
        }
        lists.push((n.label.as_str(), member_list(n)?));
    }
    let Some((first, members)) = lists.first().copied() else {
        return Err("no answering control-plane node listed the etcd members".into());
    };
    let ids = |m: &Vec<crate::condition::view::Member>| {
        let mut ids: Vec<u64> = m.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    };
    if let Some((other, _)) = lists.iter().find(|(_, m)| ids(m) != ids(members)) {
        return Err(format!(
            "the etcd member lists of {first} and {other} differ"
        ));
    }
    let unclaimed: Vec<&crate::condition::view::Member> = members
        .iter()
        .filter(|m| {
            !answering
                .iter()
                .any(|n| member_of_node(std::slice::from_ref(*m), n).is_some())
        })
        .collect();
    let member = match unclaimed.as_slice() {
        [one] => *one,
        [] => {
            return Err(
                "every etcd member runs on a node that answers: no node has departed (to rebuild a healthy node, name it and its member)"
                    .into(),
            );
        }
        many => {
            return Err(format!(
                "{} etcd members run on no answering node ({})",
                many.len(),
                many.iter()
                    .map(|m| member_name(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let owners: Vec<&NodeView> = view
        .nodes
        .iter()
        .filter(|n| peer_host_is(member, &n.label) || n.is_named(&member.name))
        .collect();
    match owners.as_slice() {
        [n] if answering.iter().any(|a| a.label == n.label) => Err(format!(
            "etcd member `{}` names {} by its peer URL, but {} answers",
            member_name(member),
            n.label,
            n.label
        )),
        [n] => Ok((
            n,
            member,
            "the only node that does not answer while its etcd member is still listed",
        )),
        [] => Err(format!(
            "etcd member `{}` ({:016x}) names no node of the talosconfig context by its peer URLs ({})",
            member_name(member),
            member.id,
            member.peer_urls.join(", ")
        )),
        _ => Err(format!(
            "etcd member `{}` names several nodes of the context",
            member_name(member)
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

    #[test]
    fn etcd_recovery_defaults_name_the_newest_the_answering_and_the_silent() {
        let mut v = cluster(0);
        if let Observed::Answered(s) = &mut v.nodes[1].etcd {
            s.raft_index = 9;
        }
        silent(&mut v.nodes[2]);
        assert_eq!(one(&v, ClusterDefault::EtcdSurvivor).unwrap(), "b");
        assert_eq!(one(&v, ClusterDefault::EtcdReachable).unwrap(), "a,b");
        let mut w = cluster(0);
        if let Observed::Answered(s) = &mut w.nodes[0].etcd {
            s.raft_index = 9;
        }
        w.nodes[1].etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "x"));
        assert_eq!(one(&w, ClusterDefault::EtcdReachable).unwrap(), "b,c,a");
        assert_eq!(one(&w, ClusterDefault::EtcdSurvivor).unwrap(), "a");
        assert_eq!(one(&v, ClusterDefault::EtcdDown).unwrap(), "c");
        // A node whose etcd does not answer is reachable but never the survivor.
        v.nodes[1].etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "x"));
        assert_eq!(one(&v, ClusterDefault::EtcdSurvivor).unwrap(), "a");
        v.nodes[0].etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "x"));
        assert!(
            one(&v, ClusterDefault::EtcdSurvivor)
                .unwrap_err()
                .why
                .contains("no answering control plane")
        );
        // A node that answers with a refusal is not known to be off.
        let mut v = cluster(0);
        v.nodes[2].contact =
            Observed::Missing(Gap::new("MachineStatus", GapKind::PermissionDenied, "no"));
        assert!(one(&v, ClusterDefault::EtcdDown).is_err());
        assert_eq!(one(&cluster(1), ClusterDefault::EtcdDown).unwrap(), "");
        // An unread machine type could be a control plane.
        let mut v = cluster(0);
        v.nodes[0].machine_type =
            Observed::Missing(Gap::new("MachineType", GapKind::PermissionDenied, "no"));
        assert!(one(&v, ClusterDefault::EtcdReachable).is_err());
    }

    /// Peer URLs on the node's label, as Talos advertises its address.
    fn with_peer_urls(mut v: ClusterView) -> ClusterView {
        let labels: Vec<String> = v.nodes.iter().map(|n| n.label.clone()).collect();
        for n in &mut v.nodes {
            if let Observed::Answered(ms) = &mut n.members {
                for m in ms.iter_mut() {
                    m.peer_urls = vec![format!("https://{}:2380", labels[(m.id - 1) as usize])];
                }
            }
        }
        v
    }

    #[test]
    fn departed_is_the_one_silent_node_whose_member_is_still_listed() {
        // Healthy: nothing departed, refused (a rebuild names its node).
        let v = with_peer_urls(cluster(1));
        let e = one(&v, ClusterDefault::DepartedNode).unwrap_err();
        assert!(e.why.contains("no node has departed"), "{e}");
        // `c` silent: it, and its member by id.
        let mut v = with_peer_urls(cluster(1));
        silent(&mut v.nodes[2]);
        assert_eq!(one(&v, ClusterDefault::DepartedNode).unwrap(), "c");
        assert_eq!(
            one(&v, ClusterDefault::DepartedMember).unwrap(),
            "0000000000000003"
        );
        // Two silent members: ambiguous.
        let mut two = v.clone();
        silent(&mut two.nodes[1]);
        assert!(
            one(&two, ClusterDefault::DepartedMember)
                .unwrap_err()
                .why
                .contains("2 etcd members")
        );
        // A role refusal is no proof of being down.
        let mut denied = with_peer_urls(cluster(1));
        denied.nodes[2] = NodeView::silent(
            "c",
            Gap::new("MachineStatus", GapKind::PermissionDenied, "no"),
        );
        assert!(
            one(&denied, ClusterDefault::DepartedNode)
                .unwrap_err()
                .why
                .contains("no proof")
        );
        // Member lists that were not read, or that differ, refuse.
        let mut unread = v.clone();
        unread.nodes[0].members =
            Observed::Missing(Gap::new("EtcdMemberList", GapKind::PermissionDenied, "no"));
        assert!(one(&unread, ClusterDefault::DepartedNode).is_err());
        let mut differ = v.clone();
        if let Observed::Answered(m) = &mut differ.nodes[1].members {
            m.pop();
        }
        assert!(
            one(&differ, ClusterDefault::DepartedNode)
                .unwrap_err()
                .why
                .contains("differ")
        );
        // A member whose peer URL names no node of the context: not guessed.
        let mut elsewhere = v;
        elsewhere.nodes.pop();
        let e = one(&elsewhere, ClusterDefault::DepartedNode).unwrap_err();
        assert!(e.why.contains("names no node"), "{e}");
    }
}
