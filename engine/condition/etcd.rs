//! etcd guards and waits: quorum arithmetic over a [`ClusterView`].
//!
//! Notation (talos-procedures.md §2): `V` voting members, `L` learners, `H` healthy voters,
//! `Q(n) = ⌊n/2⌋ + 1`. A voter is healthy when the node running it answers, its etcd status has
//! no errors and sees a leader: only positive evidence counts, so `H` is a lower bound and a
//! node that does not answer (or may not be read) is never counted healthy. Everything fails
//! closed: if no node answers the member list, no guard holds, and a guard whose decision
//! depends on a fact it could not read refuses, naming the node and the call.
//!
//! The two-voter window (`V == 2`) is held shut: losing or removing either voter loses quorum,
//! so every guard against a quorum outage or a member removal refuses there. The only way out is
//! joining the third member (guarded by `talos.not-member` on the joining node, which holds for a
//! node in maintenance).

use std::collections::BTreeSet;

use crate::condition::view::{ClusterView, Member, NodeView, Observed, Verdict, cannot_decide};

/// Majority of `n` voters.
pub fn q(n: usize) -> usize {
    n / 2 + 1
}

/// The refusal in the two-voter window.
pub const TWO_VOTERS: &str = "etcd has exactly two voters: losing or removing either loses quorum; join the third member first (node-replace), do not remove";

/// The quorum figures of one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    /// The member list (the one with the most voters among the nodes that answered).
    pub members: Vec<Member>,
    /// Voting members.
    pub voters: usize,
    /// Learners.
    pub learners: usize,
    /// Ids of healthy voters.
    pub healthy: BTreeSet<u64>,
    /// Whether every node that answered reports the same list.
    pub consistent: bool,
}

impl Quorum {
    /// `H`.
    pub fn h(&self) -> usize {
        self.healthy.len()
    }

    /// Figures for a verdict.
    fn figures(&self, v: Verdict) -> Verdict {
        v.with("voters", self.voters)
            .with("learners", self.learners)
            .with("healthy", self.h())
            .with("quorum", q(self.voters))
            .with("consistent", self.consistent)
    }

    /// The member id of the node named `x` (by its etcd status, else by hostname, else by a
    /// peer URL on its label).
    pub fn member_of(&self, view: &ClusterView, x: &str) -> Option<u64> {
        let node = view.node(x)?;
        member_of_node(&self.members, node)
    }
}

/// The member of `list` that `node` runs, by its etcd status, its hostname or a peer URL on its
/// label.
pub fn member_of_node(list: &[Member], node: &NodeView) -> Option<u64> {
    if let Observed::Answered(st) = &node.etcd
        && list.iter().any(|m| m.id == st.member_id)
    {
        return Some(st.member_id);
    }
    list.iter()
        .find(|m| node.is_named(&m.name) || peer_host_is(m, &node.label))
        .map(|m| m.id)
}

fn peer_host_is(m: &Member, label: &str) -> bool {
    m.peer_urls.iter().any(|u| {
        let rest = u.split("://").nth(1).unwrap_or(u);
        let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
        host.trim_matches(['[', ']']) == label
    })
}

fn key(list: &[Member]) -> BTreeSet<(u64, String, bool)> {
    list.iter()
        .map(|m| (m.id, m.name.clone(), m.is_learner))
        .collect()
}

fn voter_healthy(view: &ClusterView, m: &Member) -> bool {
    view.nodes.iter().any(|n| node_runs_healthy_member(n, m.id))
}

/// Whether `n` positively runs the healthy member `id`: it answers, its etcd status has no
/// errors and sees a leader, and its etcd service (when listed) is Running.
pub fn node_runs_healthy_member(n: &NodeView, id: u64) -> bool {
    let Observed::Answered(st) = &n.etcd else {
        return false;
    };
    let service_ok = n.service("etcd").is_none_or(|s| s.state == "Running");
    n.reachable() && st.member_id == id && st.errors.is_empty() && st.leader != 0 && service_ok
}

/// The nodes that answered the authenticated API (configured nodes).
fn secure(view: &ClusterView) -> impl Iterator<Item = &NodeView> {
    view.nodes
        .iter()
        .filter(|n| n.reachable() && !n.maintenance())
}

/// Configured nodes that may run etcd: every one not positively read as a worker (a machine
/// type that could not be read counts as a control plane: fail closed).
fn control_planes(view: &ClusterView) -> impl Iterator<Item = &NodeView> {
    secure(view).filter(|n| n.machine_type.get().map(String::as_str) != Some("worker"))
}

/// Computes V, L, H and consistency, or says why it cannot.
pub fn quorum(view: &ClusterView) -> Result<Quorum, Verdict> {
    let lists: Vec<&Vec<Member>> = secure(view).filter_map(|n| n.members.get()).collect();
    let Some(first) = lists.first() else {
        let errors: Vec<String> = view
            .nodes
            .iter()
            .filter_map(|n| {
                n.members
                    .gap()
                    .or_else(|| n.contact.gap())
                    .map(|g| format!("{} {g}", n.label))
            })
            .collect();
        let why = if errors.is_empty() {
            "no control-plane node answered the etcd member list".to_string()
        } else {
            format!("no node could list etcd members ({})", errors.join("; "))
        };
        return Err(Verdict::fail(why).with("voters", "unknown"));
    };
    let consistent = lists.iter().all(|l| key(l) == key(first));
    // When lists disagree, decide on the one with the most voters: a larger V only raises
    // the quorum every guard must meet (a stale short list cannot lower it).
    let voters_in = |l: &Vec<Member>| l.iter().filter(|m| !m.is_learner).count();
    let widest = lists.iter().copied().fold(*first, |best, l| {
        if voters_in(l) > voters_in(best) {
            l
        } else {
            best
        }
    });
    let members = widest.clone();
    let voters = members.iter().filter(|m| !m.is_learner).count();
    let learners = members.len() - voters;
    let healthy = members
        .iter()
        .filter(|m| !m.is_learner && voter_healthy(view, m))
        .map(|m| m.id)
        .collect();
    Ok(Quorum {
        members,
        voters,
        learners,
        healthy,
        consistent,
    })
}

/// G-quorum: `H ≥ Q(V)`.
pub fn has_quorum(view: &ClusterView) -> Verdict {
    match quorum(view) {
        Err(v) => v,
        Ok(qu) => {
            let holds = qu.voters > 0 && qu.h() >= q(qu.voters);
            let reason = format!(
                "{} of {} voting members healthy; quorum needs {}",
                qu.h(),
                qu.voters,
                q(qu.voters)
            );
            qu.figures(Verdict::from_bool(holds, reason))
        }
    }
}

/// G-safe-down(x): `L == 0 ∧ V ≥ 3 ∧ H − [x healthy] ≥ Q(V)`. `H` counts only voters proven
/// healthy, so a node that could not be read is counted down.
pub fn safe_down(view: &ClusterView, x: &str) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let x_id = qu.member_of(view, x);
    let x_healthy = x_id.is_some_and(|id| qu.healthy.contains(&id));
    let after = qu.h() - usize::from(x_healthy);
    let verdict = if qu.learners > 0 {
        Verdict::fail(format!(
            "a learner is joining ({} learner(s)): wait until it is promoted before taking a node down",
            qu.learners
        ))
    } else if qu.voters == 2 {
        Verdict::fail(TWO_VOTERS).with("two_voter_window", true)
    } else if qu.voters < 3 {
        Verdict::fail(format!(
            "only {} voting member(s): taking `{x}` down would lose quorum",
            qu.voters
        ))
    } else if after < q(qu.voters) {
        Verdict::fail(format!(
            "with `{x}` down, {after} of {} voters would be healthy; quorum needs {}",
            qu.voters,
            q(qu.voters)
        ))
    } else {
        Verdict::pass(format!(
            "with `{x}` down, {after} of {} voters stay healthy (quorum {})",
            qu.voters,
            q(qu.voters)
        ))
    };
    qu.figures(verdict)
        .with("node_is_member", x_id.is_some())
        .with("node_healthy", x_healthy)
}

/// G-safe-remove(x): `V ≠ 2 ∧ H ≥ Q(V) ∧ H − [x healthy] ≥ Q(V−1)`, and `x`'s member must be
/// identified (else it is unknown what would be removed).
pub fn safe_remove(view: &ClusterView, x: &str) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let x_id = qu.member_of(view, x);
    let x_healthy = x_id.is_some_and(|id| qu.healthy.contains(&id));
    let after = qu.h() - usize::from(x_healthy);
    let remaining = qu.voters.saturating_sub(usize::from(x_id.is_some()));
    let verdict = if qu.voters == 2 {
        Verdict::fail(TWO_VOTERS).with("two_voter_window", true)
    } else if qu.h() < q(qu.voters) {
        Verdict::fail(format!(
            "quorum is already lost ({} of {} healthy): use etcd-quorum-recovery",
            qu.h(),
            qu.voters
        ))
    } else if x_id.is_none() {
        match view.node(x) {
            None => Verdict::fail(format!("cannot decide: `{x}` was not observed")),
            Some(n) => match n.hostname.gap().or_else(|| n.contact.gap()) {
                Some(g) => cannot_decide(&n.label, g),
                None => Verdict::fail(format!(
                    "`{x}` is not in the etcd member list: there is nothing to remove"
                )),
            },
        }
    } else if remaining == 0 || after < q(remaining) {
        Verdict::fail(format!(
            "removing `{x}` leaves {after} healthy of {remaining} voters; quorum needs {}",
            q(remaining)
        ))
    } else {
        Verdict::pass(format!(
            "after removing `{x}`, {after} of {remaining} voters are healthy (quorum {})",
            q(remaining)
        ))
    };
    qu.figures(verdict)
        .with("node_is_member", x_id.is_some())
        .with("node_healthy", x_healthy)
}

/// G-consistent: every configured node that answers reports the same member list; one that
/// answers but whose list cannot be read makes the check undecidable.
pub fn consistent(view: &ClusterView) -> Verdict {
    let qu = match quorum(view) {
        Err(v) => return v,
        Ok(qu) => qu,
    };
    if let Some((n, g)) = control_planes(view).find_map(|n| n.members.gap().map(|g| (n, g))) {
        return qu.figures(cannot_decide(&n.label, g));
    }
    if qu.consistent {
        qu.figures(Verdict::pass("member lists agree on every node"))
    } else {
        qu.figures(Verdict::fail(
            "nodes report different etcd member lists (a stale or half-added member?)",
        ))
    }
}

/// No learner is pending.
pub fn no_learners(view: &ClusterView) -> Verdict {
    match quorum(view) {
        Err(v) => v,
        Ok(qu) => {
            let holds = qu.learners == 0;
            qu.figures(Verdict::from_bool(
                holds,
                if holds {
                    "no learner pending".to_string()
                } else {
                    format!("{} learner(s) pending promotion", qu.learners)
                },
            ))
        }
    }
}

/// G-no-alarms: a successful alarm list from every member node, and none raised.
pub fn no_alarms(view: &ClusterView) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let mut alarms = Vec::new();
    for m in &qu.members {
        let Some(n) = view
            .nodes
            .iter()
            .find(|n| member_of_node(std::slice::from_ref(m), n).is_some())
        else {
            return Verdict::fail(format!(
                "cannot decide: etcd member {} ({:016x}) runs on no observed node",
                if m.name.is_empty() {
                    "(unstarted)"
                } else {
                    &m.name
                },
                m.id
            ));
        };
        if let Some(g) = n.contact.gap() {
            return cannot_decide(&n.label, g);
        }
        match n.alarms.need(&n.label, "EtcdAlarmList") {
            Ok(list) => alarms.extend(list.iter().map(|a| format!("{}: {a}", n.label))),
            Err(v) => return v,
        }
    }
    if alarms.is_empty() {
        qu.figures(Verdict::pass(format!(
            "no etcd alarms on any of the {} member nodes",
            qu.members.len()
        )))
    } else {
        Verdict::fail(format!("etcd alarms raised: {}", alarms.join(", "))).with("alarms", alarms)
    }
}

/// Quorum is really lost, on positive evidence: no node sees a leader, at least one member
/// testifies through its `EtcdStatus` that it has no leader, every configured node that answers
/// had its etcd read (status answered, or its etcd service listed as not running), and every
/// other node is positively silent (unreachable or timed out; a role refusal or a failed call
/// proves nothing). Silence of the missing voters is consistent with loss; whether it hides a
/// majority behind a network split is what `etcd.bootstrap-safe` refuses to guess.
pub fn quorum_lost(view: &ClusterView) -> Verdict {
    let with_leader: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| n.reachable() && matches!(&n.etcd, Observed::Answered(st) if st.leader != 0))
        .map(|n| n.label.as_str())
        .collect();
    if !with_leader.is_empty() {
        return Verdict::fail(format!(
            "etcd still has a leader (seen from {}): quorum is not lost; bring members back or use node-replace",
            with_leader.join(", ")
        ));
    }
    let mut testimony = Vec::new();
    let mut silent = Vec::new();
    for n in &view.nodes {
        if n.maintenance() || n.machine_type.get().map(String::as_str) == Some("worker") {
            continue;
        }
        if let Some(g) = n.contact.gap() {
            if g.kind.is_silence() {
                silent.push(n.label.as_str());
                continue;
            }
            return cannot_decide(&n.label, g);
        }
        match &n.etcd {
            Observed::Answered(st) => {
                if st.leader == 0 {
                    testimony.push(n.label.as_str());
                }
            }
            Observed::Missing(g) => {
                let stopped = n.service("etcd").is_some_and(|s| s.state != "Running");
                if !stopped {
                    return cannot_decide(&n.label, g);
                }
            }
            Observed::NotAsked => {
                return Verdict::fail(format!(
                    "cannot decide: etcd status of {} was not observed",
                    n.label
                ));
            }
        }
    }
    if testimony.is_empty() {
        return Verdict::fail(
            "cannot decide: no etcd member answered its status showing no leader (silence is not evidence of quorum loss)",
        )
        .with("silent", silent);
    }
    let v = match quorum(view) {
        // With require-leader a failing member list is what quorum loss looks like.
        Err(_) => Verdict::pass(format!(
            "no node sees an etcd leader ({} report none) and member lists fail",
            testimony.join(", ")
        )),
        Ok(qu) if qu.h() < q(qu.voters) => qu.figures(Verdict::pass(format!(
            "{} of {} voters healthy, no leader seen from {}: quorum is lost",
            qu.h(),
            qu.voters,
            testimony.join(", ")
        ))),
        Ok(qu) => qu.figures(Verdict::fail("a quorum of voters is healthy")),
    };
    v.with("no_leader_seen_by", testimony)
        .with("silent", silent)
}

/// Bootstrap is safe on `x`: every observed node answered (a node that does not could run etcd
/// behind a network split) unless the operator named it in `down` (confirmed powered off), no
/// node runs etcd or lists members, and `x`'s etcd waits in `Preparing`. (That this run sent no
/// bootstrap yet is checked by the executor.)
pub fn bootstrap_safe(view: &ClusterView, x: &str, down: &[String]) -> Verdict {
    let mut excused = Vec::new();
    let mut running = Vec::new();
    let mut listing = Vec::new();
    for n in &view.nodes {
        if let Some(g) = n.contact.gap() {
            if g.kind.is_silence() && down.iter().any(|d| d == &n.label || n.is_named(d)) {
                excused.push(n.label.clone());
                continue;
            }
            return Verdict::fail(format!(
                "cannot decide: {} {g}: a network split could hide a running etcd (if it is powered off for good, name it in `down`)",
                n.label
            ))
            .with("unreadable", n.label.as_str());
        }
        if n.maintenance() {
            continue;
        }
        let services = match n.services.need(&n.label, "ServiceList") {
            Ok(s) => s,
            Err(v) => return v,
        };
        if services
            .iter()
            .any(|s| s.id == "etcd" && s.state == "Running")
        {
            running.push(n.label.as_str());
        }
        if matches!(&n.members, Observed::Answered(list) if !list.is_empty()) {
            listing.push(n.label.as_str());
        }
    }
    if !running.is_empty() {
        return Verdict::fail(format!(
            "etcd is running on {}: a bootstrap would create a second cluster (split brain)",
            running.join(", ")
        ));
    }
    if !listing.is_empty() {
        return Verdict::fail(format!(
            "{} still report etcd members: a cluster exists",
            listing.join(", ")
        ));
    }
    let Some(node) = view.node(x) else {
        return Verdict::fail(format!("`{x}` was not observed"));
    };
    let v = match node.service("etcd").map(|s| s.state.as_str()) {
        Some("Preparing") => Verdict::pass(format!(
            "no etcd anywhere; `{x}` waits in Preparing for a bootstrap"
        )),
        other => Verdict::fail(format!(
            "etcd on `{x}` is {}, not Preparing: it is not waiting for a bootstrap",
            other.unwrap_or("absent")
        )),
    };
    v.with("down_by_operator", excused)
}

/// W-etcd-member(x): `x` is a healthy voting member and lists agree.
pub fn is_member(view: &ClusterView, x: &str) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let verdict = match qu.member_of(view, x) {
        None => Verdict::fail(format!("`{x}` is not an etcd member yet")),
        Some(id) => {
            let m = qu.members.iter().find(|m| m.id == id);
            if m.is_some_and(|m| m.is_learner) {
                Verdict::fail(format!("`{x}` is still a learner"))
            } else if !qu.healthy.contains(&id) {
                Verdict::fail(format!("`{x}` is a voter but not healthy yet"))
            } else if !qu.consistent {
                Verdict::fail("member lists disagree between nodes")
            } else {
                Verdict::pass(format!("`{x}` is a healthy voting member"))
            }
        }
    };
    qu.figures(verdict)
}

/// etcd on `x` is healthy (its member answers with a leader and no errors).
pub fn healthy_on(view: &ClusterView, x: &str) -> Verdict {
    let Some(node) = view.node(x) else {
        return Verdict::fail(format!("`{x}` was not observed"));
    };
    match &node.etcd {
        Observed::Answered(st) if node_runs_healthy_member(node, st.member_id) => {
            Verdict::pass(format!("etcd on `{x}` is healthy")).with("raft_index", st.raft_index)
        }
        Observed::Answered(st) => Verdict::fail(format!(
            "etcd on `{x}` is not healthy: {}",
            if st.errors.is_empty() {
                "no leader".to_string()
            } else {
                st.errors.join("; ")
            }
        )),
        Observed::Missing(g) => Verdict::fail(format!("etcd on `{x}` does not answer: {g}")),
        Observed::NotAsked => match node.contact.gap() {
            Some(g) => cannot_decide(&node.label, g),
            None => Verdict::fail(format!("etcd status of `{x}` unknown")),
        },
    }
}

/// W-etcd-full(voters): `V == voters ∧ H == V ∧ L == 0 ∧` consistent, with every answering
/// control-plane node's list read (an unread list cannot be shown to agree).
pub fn full(view: &ClusterView, voters: usize) -> Verdict {
    match quorum(view) {
        Err(v) => v,
        Ok(_) if control_planes(view).any(|n| n.members.gap().is_some()) => consistent(view),
        Ok(qu) => {
            let holds =
                qu.voters == voters && qu.h() == qu.voters && qu.learners == 0 && qu.consistent;
            let reason = if holds {
                format!("{voters} healthy voting members, no learner, lists agree")
            } else {
                format!(
                    "{} voters ({} healthy), {} learner(s), lists {}; want {voters} healthy voters",
                    qu.voters,
                    qu.h(),
                    qu.learners,
                    if qu.consistent { "agree" } else { "disagree" }
                )
            };
            qu.figures(Verdict::from_bool(holds, reason))
        }
    }
}

/// The leader is not `x`.
pub fn leader_not(view: &ClusterView, x: &str) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let x_id = qu.member_of(view, x);
    let leader = view.nodes.iter().find_map(|n| match &n.etcd {
        Observed::Answered(st) if n.reachable() && st.leader != 0 => Some(st.leader),
        _ => None,
    });
    match (leader, x_id) {
        (None, _) => Verdict::fail("no leader elected"),
        (Some(_), None) => Verdict::fail(format!("cannot tell which etcd member `{x}` is")),
        (Some(l), Some(id)) if l == id => Verdict::fail(format!("`{x}` is still the etcd leader")),
        (Some(l), Some(_)) => Verdict::pass(format!("leader is {l:016x}, not `{x}`")),
    }
}

/// The member (hostname or 16-digit hex id) is absent from every answering node's list: at
/// least one list comes from a healthy voter (with a leader, so it is current), no answered
/// list names it, and no configured node refused its list by role.
pub fn member_absent(view: &ClusterView, member: &str) -> Verdict {
    let id = u64::from_str_radix(member, 16)
        .ok()
        .filter(|_| member.len() == 16);
    let still: Vec<&str> = secure(view)
        .filter(|n| {
            matches!(&n.members, Observed::Answered(list) if list.iter().any(|m| m.name == member || Some(m.id) == id))
        })
        .map(|n| n.label.as_str())
        .collect();
    let authoritative = secure(view).any(|n| {
        matches!((&n.members, &n.etcd), (Observed::Answered(_), Observed::Answered(st)) if node_runs_healthy_member(n, st.member_id))
    });
    if let Some((n, g)) = secure(view).find_map(|n| {
        n.members
            .gap()
            .filter(|g| g.kind == crate::condition::view::GapKind::PermissionDenied)
            .map(|g| (n, g))
    }) {
        return cannot_decide(&n.label, g);
    }
    if !still.is_empty() {
        Verdict::fail(format!(
            "`{member}` is still listed by {}",
            still.join(", ")
        ))
    } else if !authoritative {
        Verdict::fail("no healthy etcd member answered the member list")
    } else {
        Verdict::pass(format!("`{member}` is gone from every member list"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::condition::view::{Contact, EtcdStatus, Gap, GapKind, Service};

    /// A healthy node running member `id`, seeing `members` and `leader`; every fact answered.
    pub(crate) fn node(label: &str, id: u64, members: &[Member], leader: u64) -> NodeView {
        NodeView {
            label: label.into(),
            contact: Observed::Answered(Contact::Secure),
            hostname: Observed::Answered(format!("host-{id}")),
            stage: Observed::Answered("running".into()),
            ready: Observed::Answered(true),
            services: Observed::Answered(vec![Service {
                id: "etcd".into(),
                state: "Running".into(),
                healthy: true,
            }]),
            boot_id: Observed::Answered(format!("boot-{id}")),
            members: Observed::Answered(members.to_vec()),
            etcd: Observed::Answered(EtcdStatus {
                member_id: id,
                leader,
                raft_index: 100,
                errors: vec![],
                is_learner: members.iter().any(|m| m.id == id && m.is_learner),
            }),
            alarms: Observed::Answered(vec![]),
            machine_type: Observed::Answered("controlplane".into()),
            kube_ready: Observed::Answered(Some(true)),
            evictable_pods: Observed::Answered(0),
            disks: Observed::Answered(vec![]),
            pci_vendors: Observed::Answered(vec![]),
            kernel_modules: Observed::Answered(vec![]),
            ..NodeView::default()
        }
    }

    pub(crate) fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("host-{id}"),
            // Peer URLs on the node's label, as Talos advertises its address (`a` runs 1, …).
            peer_urls: vec![format!(
                "https://{}:2380",
                char::from(b'a' + u8::try_from(id - 1).unwrap())
            )],
            is_learner: learner,
        }
    }

    pub(crate) fn three() -> ClusterView {
        let ms = [member(1, false), member(2, false), member(3, false)];
        ClusterView {
            nodes: vec![
                node("a", 1, &ms, 1),
                node("b", 2, &ms, 1),
                node("c", 3, &ms, 1),
            ],
        }
    }

    /// The node stops answering (a routed call gives `Unavailable`).
    pub(crate) fn down(view: &mut ClusterView, label: &str) {
        let n = view.nodes.iter_mut().find(|n| n.label == label).unwrap();
        *n = NodeView::silent(
            label,
            Gap::new("MachineStatus", GapKind::Unreachable, "connection refused"),
        );
    }

    #[test]
    fn three_healthy_voters_allow_one_down() {
        let v = three();
        let d = safe_down(&v, "b");
        assert!(d.holds, "{}", d.reason);
        assert_eq!(d.figures["healthy"], 3);
        assert!(safe_remove(&v, "b").holds);
        assert!(has_quorum(&v).holds);
        assert!(full(&v, 3).holds);
        assert!(!quorum_lost(&v).holds);
        assert!(no_alarms(&v).holds);
        assert!(consistent(&v).holds);
    }

    #[test]
    fn with_one_down_no_other_node_may_go_down() {
        let mut v = three();
        down(&mut v, "c");
        let d = safe_down(&v, "b");
        assert!(!d.holds);
        assert_eq!(
            d.reason,
            "with `b` down, 1 of 3 voters would be healthy; quorum needs 2"
        );
        // The dead node itself may be "taken down" (it already is) and removed.
        assert!(safe_down(&v, "c").holds);
        assert!(
            safe_remove(&v, "c").holds,
            "{}",
            safe_remove(&v, "c").reason
        );
        assert!(!safe_remove(&v, "b").holds);
        assert!(has_quorum(&v).holds);
        assert!(!full(&v, 3).holds);
        // No alarm list from the dead member: undecidable.
        let a = no_alarms(&v);
        assert!(!a.holds);
        assert!(
            a.reason.starts_with("cannot decide: c did not answer"),
            "{}",
            a.reason
        );
    }

    #[test]
    fn two_voter_window_is_held_shut() {
        let ms = [member(1, false), member(2, false)];
        let v = ClusterView {
            nodes: vec![node("a", 1, &ms, 1), node("b", 2, &ms, 1)],
        };
        for d in [
            safe_down(&v, "b"),
            safe_remove(&v, "b"),
            safe_remove(&v, "a"),
        ] {
            assert!(!d.holds);
            assert_eq!(d.reason, TWO_VOTERS);
            assert_eq!(d.figures["two_voter_window"], true);
        }
        // Nor with one of the two already dead: that is quorum loss, not a removal.
        let mut dead = v.clone();
        down(&mut dead, "b");
        assert!(!safe_remove(&dead, "b").holds);
        assert!(!safe_down(&dead, "b").holds);
    }

    #[test]
    fn a_stale_short_list_cannot_lower_the_quorum() {
        let mut v = three();
        // `a` reports a list without `c` (stale), `b` and `c` the real three; with `c` down,
        // deciding on `a`'s list would make 2 of 2 healthy look like room to spare.
        v.nodes[0].members = Observed::Answered(vec![member(1, false), member(2, false)]);
        down(&mut v, "c");
        let qu = quorum(&v).unwrap();
        assert_eq!(qu.voters, 3);
        assert!(!qu.consistent);
        assert!(!safe_down(&v, "b").holds);
    }

    #[test]
    fn a_pending_learner_blocks_disruption() {
        let ms = [
            member(1, false),
            member(2, false),
            member(3, false),
            member(4, true),
        ];
        let v = ClusterView {
            nodes: vec![
                node("a", 1, &ms, 1),
                node("b", 2, &ms, 1),
                node("c", 3, &ms, 1),
            ],
        };
        assert!(!safe_down(&v, "a").holds);
        assert!(!no_learners(&v).holds);
        assert!(!full(&v, 3).holds);
    }

    #[test]
    fn inconsistent_or_unreadable_lists_are_reported() {
        let mut v = three();
        v.nodes[2].members =
            Observed::Answered(vec![member(1, false), member(3, false), member(9, false)]);
        assert!(!consistent(&v).holds);
        assert!(!full(&v, 3).holds);
        let mut v = three();
        v.nodes[1].members = Observed::Missing(Gap::new(
            "EtcdMemberList",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        let c = consistent(&v);
        assert!(!c.holds);
        assert_eq!(
            c.reason,
            "cannot decide: b refused EtcdMemberList (PermissionDenied)"
        );
    }

    fn no_leader_survivor() -> ClusterView {
        let mut v = three();
        down(&mut v, "b");
        down(&mut v, "c");
        let a = &mut v.nodes[0];
        a.members = Observed::Missing(Gap::new(
            "EtcdMemberList",
            GapKind::Failed,
            "etcdserver: no leader",
        ));
        a.etcd = Observed::Answered(EtcdStatus {
            member_id: 1,
            leader: 0,
            raft_index: 90,
            errors: vec!["etcdserver: no leader".into()],
            is_learner: false,
        });
        v
    }

    #[test]
    fn quorum_loss_is_recognised_and_fails_closed() {
        let v = no_leader_survivor();
        let l = quorum_lost(&v);
        assert!(l.holds, "{}", l.reason);
        let d = safe_down(&v, "a");
        assert!(!d.holds);
        assert!(d.reason.contains("no leader"), "{}", d.reason);
        assert!(!has_quorum(&v).holds);
        assert!(!healthy_on(&v, "a").holds);
    }

    #[test]
    fn quorum_loss_needs_testimony_not_silence() {
        // Nothing answers: silence is not loss.
        let mut v = three();
        for l in ["a", "b", "c"] {
            down(&mut v, l);
        }
        let l = quorum_lost(&v);
        assert!(!l.holds);
        assert!(l.reason.contains("silence is not evidence"), "{}", l.reason);
        // The survivor's status refused by role: cannot decide.
        let mut v = no_leader_survivor();
        v.nodes[0].etcd = Observed::Missing(Gap::new(
            "EtcdStatus",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        let l = quorum_lost(&v);
        assert!(!l.holds);
        assert_eq!(
            l.reason,
            "cannot decide: a refused EtcdStatus (PermissionDenied)"
        );
        // A node whose API refuses us by role may be running the majority.
        let mut v = no_leader_survivor();
        v.nodes[1] = NodeView::silent(
            "b",
            Gap::new("MachineStatus", GapKind::PermissionDenied, "not authorized"),
        );
        assert!(!quorum_lost(&v).holds);
    }

    fn wiped() -> ClusterView {
        let mut v = three();
        for n in &mut v.nodes {
            n.services = Observed::Answered(vec![Service {
                id: "etcd".into(),
                state: "Preparing".into(),
                healthy: false,
            }]);
            n.members = Observed::Answered(vec![]);
            n.etcd = Observed::Missing(Gap::new(
                "EtcdStatus",
                GapKind::Failed,
                "etcd is not running",
            ));
        }
        v
    }

    #[test]
    fn bootstrap_is_safe_only_when_nothing_runs() {
        assert!(!bootstrap_safe(&three(), "a", &[]).holds);
        let mut v = wiped();
        assert!(bootstrap_safe(&v, "a", &[]).holds);
        if let Observed::Answered(s) = &mut v.nodes[1].services {
            s[0].state = "Running".into();
        }
        let d = bootstrap_safe(&v, "a", &[]);
        assert!(d.reason.contains("split brain"), "{}", d.reason);
    }

    #[test]
    fn bootstrap_refuses_while_a_node_could_hide_behind_a_split() {
        let mut v = wiped();
        down(&mut v, "c");
        let d = bootstrap_safe(&v, "a", &[]);
        assert!(!d.holds);
        assert!(d.reason.contains("network split"), "{}", d.reason);
        assert!(
            d.reason.starts_with("cannot decide: c did not answer"),
            "{}",
            d.reason
        );
        // The operator confirms `c` is powered off: its silence is excused and journaled.
        let d = bootstrap_safe(&v, "a", &["c".to_string()]);
        assert!(d.holds, "{}", d.reason);
        assert_eq!(d.figures["down_by_operator"], serde_json::json!(["c"]));
        // A role refusal is never excused: it proves nothing about the node.
        v.nodes[2] = NodeView::silent(
            "c",
            Gap::new("MachineStatus", GapKind::PermissionDenied, "not authorized"),
        );
        assert!(!bootstrap_safe(&v, "a", &["c".to_string()]).holds);
        // A service list that could not be read: undecidable.
        let mut v = wiped();
        v.nodes[1].services =
            Observed::Missing(Gap::new("ServiceList", GapKind::TimedOut, "timed out"));
        let d = bootstrap_safe(&v, "a", &[]);
        assert_eq!(
            d.reason,
            "cannot decide: b did not answer ServiceList (timed out)"
        );
    }

    #[test]
    fn a_worker_without_etcd_does_not_block_but_an_unknown_node_does() {
        let mut v = three();
        let mut w = node("w", 9, &[], 0);
        w.machine_type = Observed::Answered("worker".into());
        w.members = Observed::Missing(Gap::new(
            "EtcdMemberList",
            GapKind::Failed,
            "etcd is not running on a worker",
        ));
        w.etcd = w.members.clone().map(|_| unreachable_status());
        v.nodes.push(w.clone());
        assert!(consistent(&v).holds, "{}", consistent(&v).reason);
        assert!(full(&v, 3).holds, "{}", full(&v, 3).reason);
        // The same node whose machine type could not be read may be a control plane.
        let last = v.nodes.len() - 1;
        v.nodes[last].machine_type = Observed::Missing(Gap::new(
            "MachineType",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        assert!(!consistent(&v).holds);
        assert!(!full(&v, 3).holds);
    }

    fn unreachable_status() -> EtcdStatus {
        EtcdStatus {
            member_id: 0,
            leader: 0,
            raft_index: 0,
            errors: vec![],
            is_learner: false,
        }
    }

    #[test]
    fn no_alarms_needs_every_member_nodes_list() {
        let mut v = three();
        v.nodes[0].alarms = Observed::Answered(vec!["0000000000000001: alarm 1".into()]);
        let a = no_alarms(&v);
        assert!(!a.holds);
        assert!(a.reason.contains("etcd alarms raised"), "{}", a.reason);
        let mut v = three();
        v.nodes[2].alarms = Observed::Missing(Gap::new(
            "EtcdAlarmList",
            GapKind::PermissionDenied,
            "not authorized",
        ));
        assert_eq!(
            no_alarms(&v).reason,
            "cannot decide: c refused EtcdAlarmList (PermissionDenied)"
        );
    }

    #[test]
    fn member_and_leader_waits() {
        let v = three();
        assert!(is_member(&v, "b").holds);
        assert!(!leader_not(&v, "a").holds);
        assert!(leader_not(&v, "b").holds);
        assert!(!member_absent(&v, "host-2").holds);
        assert!(member_absent(&v, "host-9").holds);
        assert!(!member_absent(&v, &format!("{:016x}", 2)).holds);
        // With nothing answering, nothing is absent.
        let mut dark = three();
        for l in ["a", "b", "c"] {
            down(&mut dark, l);
        }
        assert!(!member_absent(&dark, "host-9").holds);
    }
}
