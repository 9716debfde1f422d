//! etcd guards and waits: quorum arithmetic over a [`ClusterView`].
//!
//! Notation (talos-procedures.md §2): `V` voting members, `L` learners, `H` healthy voters,
//! `Q(n) = ⌊n/2⌋ + 1`. A voter is healthy when the node running it answers, its etcd status has
//! no errors and sees a leader. Everything fails closed: if no node answers the member list,
//! no guard holds.

use std::collections::BTreeSet;

use crate::condition::view::{ClusterView, Member, NodeView, Verdict};

/// Majority of `n` voters.
pub fn q(n: usize) -> usize {
    n / 2 + 1
}

/// The quorum figures of one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    /// The member list (from the first node that answered).
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

    /// The member id of the node named `x` (by its etcd status, else by hostname).
    pub fn member_of(&self, view: &ClusterView, x: &str) -> Option<u64> {
        let node = view.node(x)?;
        if let Some(Ok(st)) = &node.etcd
            && self.members.iter().any(|m| m.id == st.member_id)
        {
            return Some(st.member_id);
        }
        self.members
            .iter()
            .find(|m| !m.name.is_empty() && (m.name == node.hostname || m.name == node.label))
            .map(|m| m.id)
    }
}

fn key(list: &[Member]) -> BTreeSet<(u64, String, bool)> {
    list.iter()
        .map(|m| (m.id, m.name.clone(), m.is_learner))
        .collect()
}

fn voter_healthy(view: &ClusterView, m: &Member) -> bool {
    view.nodes.iter().any(|n| node_runs_healthy_member(n, m.id))
}

fn node_runs_healthy_member(n: &NodeView, id: u64) -> bool {
    let Some(Ok(st)) = &n.etcd else {
        return false;
    };
    let service_ok = n.service("etcd").is_none_or(|s| s.state == "Running");
    n.reachable && st.member_id == id && st.errors.is_empty() && st.leader != 0 && service_ok
}

/// Computes V, L, H and consistency, or says why it cannot.
pub fn quorum(view: &ClusterView) -> Result<Quorum, Verdict> {
    let lists: Vec<&Vec<Member>> = view
        .nodes
        .iter()
        .filter(|n| n.reachable)
        .filter_map(|n| match &n.members {
            Some(Ok(list)) => Some(list),
            _ => None,
        })
        .collect();
    let Some(first) = lists.first() else {
        let errors: Vec<String> = view
            .nodes
            .iter()
            .filter_map(|n| match &n.members {
                Some(Err(e)) => Some(format!("{}: {e}", n.label)),
                _ => None,
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
    let members = (*first).clone();
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

/// G-safe-down(x): `L == 0 ∧ V ≥ 3 ∧ H − [x healthy] ≥ Q(V)`.
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
    } else if qu.voters < 3 {
        Verdict::fail(format!(
            "only {} voting member(s): taking `{x}` down would lose quorum (the two-voter window allows no disruption)",
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

/// G-safe-remove(x): `H ≥ Q(V) ∧ H − [x healthy] ≥ Q(V−1)`.
pub fn safe_remove(view: &ClusterView, x: &str) -> Verdict {
    let qu = match quorum(view) {
        Ok(qu) => qu,
        Err(v) => return v,
    };
    let x_id = qu.member_of(view, x);
    let x_healthy = x_id.is_some_and(|id| qu.healthy.contains(&id));
    let after = qu.h() - usize::from(x_healthy);
    let remaining = qu.voters.saturating_sub(usize::from(x_id.is_some()));
    let verdict = if qu.h() < q(qu.voters) {
        Verdict::fail(format!(
            "quorum is already lost ({} of {} healthy): use etcd-quorum-recovery",
            qu.h(),
            qu.voters
        ))
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

/// G-consistent: every answering node reports the same member list.
pub fn consistent(view: &ClusterView) -> Verdict {
    match quorum(view) {
        Err(v) => v,
        Ok(qu) if qu.consistent => qu.figures(Verdict::pass("member lists agree on every node")),
        Ok(qu) => qu.figures(Verdict::fail(
            "nodes report different etcd member lists (a stale or half-added member?)",
        )),
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

/// G-no-alarms.
pub fn no_alarms(view: &ClusterView) -> Verdict {
    let alarms: Vec<String> = view
        .nodes
        .iter()
        .flat_map(|n| n.alarms.iter().map(move |a| format!("{}: {a}", n.label)))
        .collect();
    if alarms.is_empty() {
        Verdict::pass("no etcd alarms")
    } else {
        Verdict::fail(format!("etcd alarms raised: {}", alarms.join(", "))).with("alarms", alarms)
    }
}

/// Quorum is really lost: no answering node sees a leader and `H < Q(V)`.
pub fn quorum_lost(view: &ClusterView) -> Verdict {
    let with_leader: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| n.reachable && matches!(&n.etcd, Some(Ok(st)) if st.leader != 0))
        .map(|n| n.label.as_str())
        .collect();
    if !with_leader.is_empty() {
        return Verdict::fail(format!(
            "etcd still has a leader (seen from {}): quorum is not lost; bring members back or use node-replace",
            with_leader.join(", ")
        ));
    }
    match quorum(view) {
        // No member list at all: with require-leader that is what quorum loss looks like.
        Err(_) => Verdict::pass("no node sees an etcd leader and member lists fail"),
        Ok(qu) if qu.h() < q(qu.voters) => qu.figures(Verdict::pass(format!(
            "{} of {} voters healthy: quorum is lost",
            qu.h(),
            qu.voters
        ))),
        Ok(qu) => qu.figures(Verdict::fail("a quorum of voters is healthy")),
    }
}

/// Bootstrap is safe on `x`: no etcd running anywhere, no node lists members, and `x`'s etcd
/// waits in `Preparing`. (That this run sent no bootstrap yet is checked by the executor.)
pub fn bootstrap_safe(view: &ClusterView, x: &str) -> Verdict {
    let running: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| n.service("etcd").is_some_and(|s| s.state == "Running"))
        .map(|n| n.label.as_str())
        .collect();
    if !running.is_empty() {
        return Verdict::fail(format!(
            "etcd is running on {}: a bootstrap would create a second cluster (split brain)",
            running.join(", ")
        ));
    }
    let listing: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| matches!(&n.members, Some(Ok(list)) if !list.is_empty()))
        .map(|n| n.label.as_str())
        .collect();
    if !listing.is_empty() {
        return Verdict::fail(format!(
            "{} still report etcd members: a cluster exists",
            listing.join(", ")
        ));
    }
    let Some(node) = view.node(x) else {
        return Verdict::fail(format!("`{x}` was not observed"));
    };
    match node.service("etcd").map(|s| s.state.as_str()) {
        Some("Preparing") => Verdict::pass(format!(
            "no etcd anywhere; `{x}` waits in Preparing for a bootstrap"
        )),
        other => Verdict::fail(format!(
            "etcd on `{x}` is {}, not Preparing: it is not waiting for a bootstrap",
            other.unwrap_or("absent")
        )),
    }
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
        Some(Ok(st)) if node_runs_healthy_member(node, st.member_id) => {
            Verdict::pass(format!("etcd on `{x}` is healthy")).with("raft_index", st.raft_index)
        }
        Some(Ok(st)) => Verdict::fail(format!(
            "etcd on `{x}` is not healthy: {}",
            if st.errors.is_empty() {
                "no leader".to_string()
            } else {
                st.errors.join("; ")
            }
        )),
        Some(Err(e)) => Verdict::fail(format!("etcd on `{x}` does not answer: {e}")),
        None => Verdict::fail(format!("etcd status of `{x}` unknown")),
    }
}

/// W-etcd-full(voters): `V == voters ∧ H == V ∧ L == 0 ∧` consistent.
pub fn full(view: &ClusterView, voters: usize) -> Verdict {
    match quorum(view) {
        Err(v) => v,
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
        Some(Ok(st)) if n.reachable && st.leader != 0 => Some(st.leader),
        _ => None,
    });
    match leader {
        None => Verdict::fail("no leader elected"),
        Some(l) if Some(l) == x_id => Verdict::fail(format!("`{x}` is still the etcd leader")),
        Some(l) => Verdict::pass(format!("leader is {l:016x}, not `{x}`")),
    }
}

/// The member (hostname or 16-digit hex id) is absent from every answering node's list.
pub fn member_absent(view: &ClusterView, member: &str) -> Verdict {
    let id = u64::from_str_radix(member, 16)
        .ok()
        .filter(|_| member.len() == 16);
    let still: Vec<&str> = view
        .nodes
        .iter()
        .filter(|n| {
            n.reachable
                && matches!(&n.members, Some(Ok(list)) if list.iter().any(|m| m.name == member || Some(m.id) == id))
        })
        .map(|n| n.label.as_str())
        .collect();
    let answered = view
        .nodes
        .iter()
        .any(|n| n.reachable && matches!(n.members, Some(Ok(_))));
    if !answered {
        Verdict::fail("no node answered the member list")
    } else if still.is_empty() {
        Verdict::pass(format!("`{member}` is gone from every member list"))
    } else {
        Verdict::fail(format!(
            "`{member}` is still listed by {}",
            still.join(", ")
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::condition::view::{EtcdStatus, Service};

    /// A healthy node running member `id`, seeing `members` and `leader`.
    pub(crate) fn node(label: &str, id: u64, members: &[Member], leader: u64) -> NodeView {
        NodeView {
            label: label.into(),
            hostname: format!("host-{id}"),
            reachable: true,
            stage: Some("running".into()),
            ready: Some(true),
            services: vec![Service {
                id: "etcd".into(),
                state: "Running".into(),
                healthy: true,
            }],
            members: Some(Ok(members.to_vec())),
            etcd: Some(Ok(EtcdStatus {
                member_id: id,
                leader,
                raft_index: 100,
                errors: vec![],
                is_learner: members.iter().any(|m| m.id == id && m.is_learner),
            })),
            kube_ready: Some(true),
            ..NodeView::default()
        }
    }

    pub(crate) fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("host-{id}"),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
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

    fn down(view: &mut ClusterView, label: &str) {
        let n = view.nodes.iter_mut().find(|n| n.label == label).unwrap();
        n.reachable = false;
        n.members = Some(Err("connection refused".into()));
        n.etcd = Some(Err("connection refused".into()));
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
        assert!(safe_remove(&v, "c").holds);
        assert!(!safe_remove(&v, "b").holds);
        assert!(has_quorum(&v).holds);
        assert!(!full(&v, 3).holds);
    }

    #[test]
    fn two_voter_window_refuses_outages_but_allows_leaving() {
        let ms = [member(1, false), member(2, false)];
        let v = ClusterView {
            nodes: vec![node("a", 1, &ms, 1), node("b", 2, &ms, 1)],
        };
        let d = safe_down(&v, "b");
        assert!(!d.holds);
        assert!(d.reason.contains("two-voter window"), "{}", d.reason);
        // The way out of the window: a healthy member may leave while both are up (2 → 1).
        assert!(safe_remove(&v, "b").holds);
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
    fn inconsistent_lists_are_reported() {
        let mut v = three();
        v.nodes[2].members = Some(Ok(vec![
            member(1, false),
            member(3, false),
            member(9, false),
        ]));
        assert!(!consistent(&v).holds);
        assert!(!full(&v, 3).holds);
    }

    #[test]
    fn quorum_loss_is_recognised_and_fails_closed() {
        let mut v = three();
        down(&mut v, "b");
        down(&mut v, "c");
        let a = &mut v.nodes[0];
        a.members = Some(Err("etcdserver: no leader".into()));
        a.etcd = Some(Ok(EtcdStatus {
            member_id: 1,
            leader: 0,
            raft_index: 90,
            errors: vec!["etcdserver: no leader".into()],
            is_learner: false,
        }));
        assert!(quorum_lost(&v).holds);
        let d = safe_down(&v, "a");
        assert!(!d.holds);
        assert!(d.reason.contains("no leader"), "{}", d.reason);
        assert!(!has_quorum(&v).holds);
        assert!(!healthy_on(&v, "a").holds);
    }

    #[test]
    fn bootstrap_is_safe_only_when_nothing_runs() {
        let mut v = three();
        assert!(!bootstrap_safe(&v, "a").holds);
        for n in &mut v.nodes {
            n.services[0].state = "Preparing".into();
            n.members = Some(Ok(vec![]));
            n.etcd = Some(Err("etcd is not running".into()));
        }
        assert!(bootstrap_safe(&v, "a").holds);
        v.nodes[1].services[0].state = "Running".into();
        let d = bootstrap_safe(&v, "a");
        assert!(d.reason.contains("split brain"), "{}", d.reason);
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
    }
}
