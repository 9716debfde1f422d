//! Unit tests of `etcd.rs`, kept apart so the module itself stays readable.

use super::*;

const A: MemberId = 0xa1;
const B: MemberId = 0xb2;
const C: MemberId = 0xc3;
const D: MemberId = 0xd4;

fn t(s: u64) -> SimTime {
    SimTime::from_secs(s)
}

fn peer(id: MemberId) -> Vec<String> {
    vec![format!("https://10.0.0.{}:2380", id & 0xff)]
}

/// Settles elections up to `now`.
fn at(c: &mut EtcdCluster, now: SimTime) {
    while let Some(d) = c.next_deadline() {
        if d > now {
            break;
        }
        c.tick(d);
    }
    c.tick(now);
}

fn nm(id: MemberId) -> NewMember<'static> {
    NewMember {
        id,
        name: "a",
        peer_url: "https://10.0.0.161:2380",
        client_url: "https://c:2379",
    }
}

/// A healthy 3-voter cluster at t=100 s (all connected for long).
fn three() -> EtcdCluster {
    let mut c = EtcdCluster::bootstrap(
        0x1111,
        nm(A),
        KvStore::default(),
        t(0),
        EtcdTimings::default(),
    );
    at(&mut c, t(10));
    for (id, now) in [(B, 20), (C, 40)] {
        c.add_member(A, id, &peer(id), true, t(now)).unwrap();
        c.start_member(id, &format!("n{id:x}"), "https://x:2379", t(now))
            .unwrap();
        at(&mut c, t(now + 11));
        c.promote_member(A, id, t(now + 11)).unwrap();
    }
    at(&mut c, t(100));
    c
}

#[test]
fn healthy_three_voters_elect_a_leader() {
    let c = three();
    assert_eq!(c.voter_count(), 3);
    assert!(c.leader().is_some());
    assert_eq!(c.member_list(B).unwrap().len(), 3);
}

#[test]
fn one_down_add_refused_unhealthy() {
    let mut c = three();
    c.stop_member(C, t(100));
    at(&mut c, t(110));
    assert!(c.leader().is_some());
    let err = c.add_member(A, D, &peer(D), true, t(110)).unwrap_err();
    assert_eq!(err.message, "etcdserver: unhealthy cluster");
    let err = c.add_member(A, D, &peer(D), false, t(110)).unwrap_err();
    assert_eq!(err.message, "etcdserver: unhealthy cluster");
}

#[test]
fn one_down_remove_running_refused() {
    let mut c = three();
    c.stop_member(C, t(100));
    at(&mut c, t(110));
    let err = c.remove_member(A, B, t(110)).unwrap_err();
    assert_eq!(err.message, msg::UNHEALTHY_CLUSTER);
    assert_eq!(c.voter_count(), 3);
}

#[test]
fn one_down_remove_stopped_then_add_works() {
    let mut c = three();
    c.stop_member(C, t(100));
    at(&mut c, t(110));
    c.remove_member(A, C, t(110)).unwrap();
    assert_eq!(c.voter_count(), 2);
    assert!(c.leader().is_some());
    let m = c.add_member(A, D, &peer(D), true, t(111)).unwrap();
    assert!(m.is_learner);
    assert!(m.hostname.is_empty() && m.client_urls.is_empty());
}

#[test]
fn five_second_window_after_peer_restart() {
    let mut c = three();
    c.stop_member(B, t(100));
    c.start_member(B, "ignored", "x", t(101)).unwrap();
    at(&mut c, t(103));
    assert_eq!(
        c.add_member(A, D, &peer(D), true, t(103))
            .unwrap_err()
            .message,
        msg::UNHEALTHY_CLUSTER
    );
    assert_eq!(
        c.remove_member(A, C, t(103)).unwrap_err().message,
        msg::UNHEALTHY_CLUSTER
    );
    at(&mut c, t(106));
    c.add_member(A, D, &peer(D), true, t(106)).unwrap();
}

#[test]
fn quorum_lost_list_remove_add_fail_no_leader_but_status_and_snapshot_work() {
    let mut c = three();
    c.put(A, "/registry/x", "1").unwrap();
    c.stop_member(B, t(100));
    c.stop_member(C, t(100));
    at(&mut c, t(100));
    // Within one election timeout the old leader may still be around.
    at(&mut c, t(102));
    assert_eq!(c.leader(), None);
    assert_eq!(
        c.member_list(A).unwrap_err().message,
        "etcdserver: no leader"
    );
    assert_eq!(
        c.remove_member(A, C, t(102)).unwrap_err().message,
        msg::NO_LEADER
    );
    assert_eq!(
        c.add_member(A, D, &peer(D), true, t(102))
            .unwrap_err()
            .message,
        msg::NO_LEADER
    );
    let st = c.status(A).unwrap();
    assert_eq!(st.leader, 0);
    assert_eq!(st.errors, vec![msg::NO_LEADER.to_string()]);
    assert_eq!(c.put(A, "k", "v").unwrap_err().code, Code::DeadlineExceeded);
    assert_eq!(c.get(A, "/registry/x", true).unwrap().as_deref(), Some("1"));
    let snap = c.snapshot(A).unwrap();
    assert_eq!(snap.len() % 512, 32);
    // Restarting one member with its data restores quorum within about a second.
    c.start_member(B, "b", "x", t(103)).unwrap();
    at(&mut c, t(104));
    assert!(c.leader().is_some());
}

#[test]
fn second_learner_refused_even_if_not_started() {
    let mut c = three();
    c.add_member(A, D, &peer(D), true, t(100)).unwrap();
    let err = c
        .add_member(A, 0xe5, &peer(0xe5), true, t(100))
        .unwrap_err();
    assert_eq!(
        err.message,
        "etcdserver: too many learner members in cluster"
    );
}

#[test]
fn duplicate_peer_url_refused() {
    let mut c = three();
    let err = c.add_member(A, D, &peer(B), true, t(100)).unwrap_err();
    assert_eq!(err.message, msg::PEER_URLS_EXIST);
}

#[test]
fn promote_not_caught_up_refused_then_works() {
    let mut c = three();
    c.add_member(A, D, &peer(D), true, t(100)).unwrap();
    c.start_member(D, "d", "x", t(100)).unwrap();
    let err = c.promote_member(B, D, t(102)).unwrap_err();
    assert_eq!(
        err.message,
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    // Caught up: promoted on the first try, even through a follower.
    c.promote_member(B, D, t(111)).unwrap();
    assert_eq!(c.voter_count(), 4);
}

#[test]
fn promote_voter_refused() {
    let mut c = three();
    let err = c.promote_member(A, B, t(100)).unwrap_err();
    assert_eq!(err.message, "etcdserver: can only promote a learner member");
}

#[test]
fn learner_serves_status_but_not_member_list() {
    let mut c = three();
    c.add_member(A, D, &peer(D), true, t(100)).unwrap();
    c.start_member(D, "d", "x", t(100)).unwrap();
    assert_eq!(c.member_list(D).unwrap_err().message, msg::LEARNER_RPC);
    assert!(c.status(D).unwrap().is_learner);
}

#[test]
fn two_voters_losing_one_is_quorum_loss() {
    let mut c = three();
    c.stop_member(C, t(100));
    at(&mut c, t(106));
    c.remove_member(A, C, t(106)).unwrap();
    assert_eq!(c.voter_count(), 2);
    c.stop_member(B, t(107));
    at(&mut c, t(109));
    assert!(!c.has_quorum());
    assert_eq!(c.leader(), None);
    assert_eq!(
        c.add_member(A, D, &peer(D), true, t(109))
            .unwrap_err()
            .message,
        msg::NO_LEADER
    );
    assert_eq!(
        c.remove_member(A, B, t(109)).unwrap_err().message,
        msg::NO_LEADER
    );
}

#[test]
fn snapshot_trailer_and_restore_round_trip() {
    let mut c = three();
    c.put(A, "/registry/pods/default/plex", "spec").unwrap();
    c.put(A, "tab\tkey", "line\nvalue").unwrap();
    let snap = c.snapshot(B).unwrap();
    assert_eq!(snap.len() % 512, 32);
    let r = EtcdCluster::restore(
        &snap,
        false,
        0x2222,
        nm(0x77),
        t(200),
        EtcdTimings::default(),
    )
    .unwrap();
    assert_ne!(r.id(), c.id());
    assert_eq!(r.voter_count(), 1);
    assert_eq!(r.member_ids(), vec![0x77]);
    assert_eq!(r.kv(), c.kv());
    // A raw db copy has no trailer and needs the hash check skipped.
    let raw = c.raw_db_copy();
    assert_eq!(raw.len() % 512, 0);
    assert!(verify_snapshot(&raw, false).is_err());
    assert_eq!(&verify_snapshot(&raw, true).unwrap(), c.kv());
    // Corruption is detected.
    let mut bad = snap.clone();
    bad[20] ^= 1;
    assert!(
        verify_snapshot(&bad, false)
            .unwrap_err()
            .message
            .starts_with("expected sha256")
    );
}

#[test]
fn removed_member_cannot_restart_with_old_data() {
    let mut c = three();
    c.remove_member(A, C, t(100)).unwrap();
    assert_eq!(
        c.start_member(C, "c", "x", t(101)),
        Err(StartError::Removed)
    );
    assert_eq!(
        StartError::Removed.message(),
        "data-dir used by this member must be removed"
    );
    // Re-adding its peer URL makes a new member id.
    c.add_member(A, D, &peer(C), true, t(110)).unwrap();
    assert_eq!(
        c.start_member(C, "c", "x", t(111)),
        Err(StartError::Removed)
    );
}

#[test]
fn last_member_cannot_leave() {
    let mut c = EtcdCluster::bootstrap(1, nm(A), KvStore::default(), t(0), EtcdTimings::default());
    at(&mut c, t(2));
    assert_eq!(c.leader(), Some(A));
    let err = c.remove_member(A, A, t(10)).unwrap_err();
    assert_eq!(err.message, msg::NOT_ENOUGH_STARTED);
    assert_eq!(err.code, Code::Unknown);
}

#[test]
fn leader_can_leave_and_a_new_one_is_elected() {
    let mut c = three();
    let l = c.leader().unwrap();
    c.remove_member(l, l, t(100)).unwrap();
    assert_eq!(c.leader(), None);
    at(&mut c, t(102));
    assert!(c.leader().is_some());
    assert_eq!(c.voter_count(), 2);
}

#[test]
fn forfeit_moves_leadership() {
    let mut c = three();
    let l = c.leader().unwrap();
    let new = c.forfeit_leadership(l, t(100)).unwrap();
    assert_ne!(new, l);
    assert_eq!(c.leader(), Some(new));
}

#[test]
fn alarms_empty_unless_raised() {
    let mut c = three();
    assert!(c.alarm_list(A).unwrap().is_empty());
    c.raise_alarm(A, Alarm::NoSpace);
    assert_eq!(c.alarm_list(B).unwrap(), vec![(A, Alarm::NoSpace)]);
    assert!(
        c.put(A, "k", "v")
            .unwrap_err()
            .mentions("database space exceeded")
    );
}
