//! `etcd.member-of-node`: the etcd member a step is about to remove (or wait out) is the member
//! of the node being replaced.
//!
//! node-replace names the node (`node`, a Talos address) and its member (`member`, a hex id or
//! a hostname) separately: the node is what the down and quorum guards look at, the member is
//! what `EtcdRemoveMemberByID` removes. Given by hand, they can disagree (a typo, the hostname
//! of a healthy neighbour), and then the guards would check one node while another's member is
//! removed. This guard ties them together from live evidence, fail-closed: every answering
//! control plane's member list must have been read and list the member; and the node must run
//! it, by its etcd status, its hostname, or (for a node that no longer answers) a peer URL on
//! its address, as Talos advertises it.

use crate::condition::etcd::member_of_node;
use crate::condition::view::{ClusterView, Member, Observed, Verdict, cannot_decide};

fn matches(m: &Member, member: &str) -> bool {
    let id = u64::from_str_radix(member, 16)
        .ok()
        .filter(|_| member.len() == 16);
    Some(m.id) == id || (!m.name.is_empty() && m.name == member)
}

/// The guard.
pub fn is_member_of(view: &ClusterView, node: &str, member: &str) -> Verdict {
    let Some(target) = view.node(node) else {
        return Verdict::fail(format!("cannot decide: `{node}` was not observed"));
    };
    let mut found: Option<&Member> = None;
    let mut listed_by = Vec::new();
    for n in view
        .nodes
        .iter()
        .filter(|n| n.reachable() && !n.maintenance())
    {
        match n.machine_type.get().map(String::as_str) {
            Some("worker") => continue,
            Some(_) => {}
            None => match n.machine_type.gap() {
                Some(g) => return cannot_decide(&n.label, g),
                None => {
                    return Verdict::fail(format!("the machine type of {} was not read", n.label));
                }
            },
        }
        let list = match &n.members {
            Observed::Answered(l) => l,
            Observed::Missing(g) => return cannot_decide(&n.label, g),
            Observed::NotAsked => {
                return Verdict::fail(format!("the etcd member list of {} was not read", n.label));
            }
        };
        let Some(m) = list.iter().find(|m| matches(m, member)) else {
            return Verdict::fail(format!("{} does not list etcd member `{member}`", n.label));
        };
        if found.is_some_and(|f| f.id != m.id) {
            return Verdict::fail(format!(
                "`{member}` names different members on different nodes"
            ));
        }
        found = Some(m);
        listed_by.push(n.label.as_str());
    }
    let Some(m) = found else {
        // Say why nobody answered when a node was refused rather than silent.
        if let Some((n, g)) = view.nodes.iter().find_map(|n| {
            n.contact
                .gap()
                .filter(|g| !g.kind.is_silence())
                .map(|g| (n, g))
        }) {
            return cannot_decide(&n.label, g);
        }
        if let Some(g) = target.contact.gap() {
            return cannot_decide(&target.label, g);
        }
        return Verdict::fail("no answering control-plane node listed the etcd members");
    };
    match member_of_node(std::slice::from_ref(m), target) {
        Some(_) => Verdict::pass(format!(
            "etcd member `{member}` ({:016x}, listed by {}) is the member of `{node}`",
            m.id,
            listed_by.join(", ")
        ))
        .with("member_id", format!("{:016x}", m.id))
        .with("member_name", m.name.as_str()),
        None => Verdict::fail(format!(
            "etcd member `{member}` ({:016x}, peer URLs {}) is not the member of `{node}`: it names another machine",
            m.id,
            m.peer_urls.join(", ")
        ))
        .with("member_id", format!("{:016x}", m.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::{down, three};
    use crate::condition::view::{Gap, GapKind};

    #[test]
    fn the_member_must_be_the_nodes_by_status_hostname_or_peer_url() {
        let v = three();
        assert!(is_member_of(&v, "b", "host-2").holds);
        assert!(is_member_of(&v, "b", &format!("{:016x}", 2)).holds);
        let wrong = is_member_of(&v, "b", "host-3");
        assert!(!wrong.holds);
        assert!(
            wrong.reason.contains("not the member of `b`"),
            "{}",
            wrong.reason
        );
        // A silent node is tied to its member by the peer URL on its address.
        let mut v = three();
        down(&mut v, "c");
        assert!(is_member_of(&v, "c", "host-3").holds);
        assert!(!is_member_of(&v, "c", "host-1").holds);
    }

    #[test]
    fn unknown_unread_or_unlisted_refuses() {
        let v = three();
        assert!(!is_member_of(&v, "zz", "host-1").holds);
        assert!(!is_member_of(&v, "a", "host-9").holds);
        let mut v = three();
        v.nodes[1].members =
            Observed::Missing(Gap::new("EtcdMemberList", GapKind::PermissionDenied, "no"));
        let r = is_member_of(&v, "a", "host-1");
        assert!(!r.holds);
        assert!(r.reason.contains("PermissionDenied"), "{}", r.reason);
        let mut v = three();
        for l in ["a", "b", "c"] {
            down(&mut v, l);
        }
        assert!(!is_member_of(&v, "c", "host-3").holds);
    }
}
