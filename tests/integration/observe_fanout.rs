//! One-to-many observation against a 50-node fleet: the unary machine calls go out once with
//! `nodes` metadata for every node, and a node whose part of that reply fails is a gap for
//! that node only, which an all-nodes guard refuses on.

use runbook::condition::check;
use runbook::condition::reads::for_check;
use runbook::condition::view::{GapKind, Observed};
use runbook::sim::scenario::worker_label;
use runbook::sim::{Preset, Scenario, SimConfig, SimHandle, Simulator, Speed};

async fn fleet(
    workers: u16,
) -> (
    runbook::cluster::effects::ClusterEffects,
    SimHandle,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let h = Simulator::start_with(
        SimConfig {
            scenario: Scenario::Healthy,
            speed: Speed::new(100.0).unwrap(),
            dir: dir.path().join("sim"),
        },
        Preset::Fleet { workers },
    )
    .await
    .unwrap();
    let effects = runbook::cluster::connection::Connection::for_simulator(&h)
        .open_in(Some(dir.path()))
        .await
        .unwrap();
    (effects, h, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failing_in_a_one_to_many_reply_is_a_gap_for_that_node_only() {
    let (effects, h, _dir) = fleet(47).await;
    let reads = for_check("talos.all-running");
    // Healthy first: every node answers its part of the one-to-many ServiceList.
    let view = effects.observer().view_of(reads).await;
    assert_eq!(view.nodes.len(), 50);
    for n in &view.nodes {
        assert!(
            matches!(&n.services, Observed::Answered(s) if !s.is_empty()),
            "{n:?}"
        );
    }
    let v = check::guard("talos.all-running", &Default::default(), &view).unwrap();
    assert!(v.holds, "{}", v.reason);

    // One worker's part of the next ServiceList fails (its apid leg is refused).
    let victim = worker_label(17);
    h.cluster()
        .with(|c, _| c.fail_next("ServiceList", Some(&victim), 1));
    let view = effects.observer().view_of(reads).await;
    assert_eq!(view.nodes.len(), 50);
    for n in &view.nodes {
        if n.label == victim {
            let gap = n.services.gap().unwrap_or_else(|| panic!("{n:?}"));
            assert_eq!(gap.call, "ServiceList");
            assert_eq!(gap.kind, GapKind::Unreachable, "{gap:?}");
            // Only that fact of that node: it answered everything else.
            assert!(matches!(n.stage, Observed::Answered(_)), "{n:?}");
            assert!(matches!(n.hostname, Observed::Answered(_)), "{n:?}");
        } else {
            assert!(
                matches!(&n.services, Observed::Answered(s) if !s.is_empty()),
                "{n:?}"
            );
        }
    }
    let v = check::guard("talos.all-running", &Default::default(), &view).unwrap();
    assert!(
        !v.holds,
        "a guard over all nodes passed on a gap: {}",
        v.reason
    );
    assert!(
        v.reason.contains(&victim) || v.reason.contains("ServiceList"),
        "{}",
        v.reason
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_facts_of_every_control_plane_come_from_one_request_each() {
    let (effects, h, _dir) = fleet(3).await;
    let view = effects.observer().view().await;
    assert_eq!(view.nodes.len(), 6);
    let members = |n: &runbook::condition::view::NodeView| match &n.members {
        Observed::Answered(m) => m.len(),
        _ => 0,
    };
    for n in &view.nodes {
        let cp = matches!(
            n.machine_type.get().map(String::as_str),
            Some("controlplane" | "init")
        );
        if cp {
            assert_eq!(members(n), 3, "{n:?}");
            assert!(matches!(n.etcd, Observed::Answered(_)), "{n:?}");
            assert!(matches!(n.alarms, Observed::Answered(_)), "{n:?}");
        } else {
            // A worker has no etcd: its entries are errors, hence gaps, never empty answers.
            assert!(n.members.gap().is_some(), "{n:?}");
            assert!(n.etcd.gap().is_some(), "{n:?}");
        }
    }
    let v = check::guard("etcd.quorum", &Default::default(), &view).unwrap();
    assert!(v.holds, "{}", v.reason);
    // The same facts with the etcd member list refused on one control plane: a gap there.
    h.cluster()
        .with(|c, _| c.fail_next("EtcdMemberList", Some("192.168.2.49"), 1));
    let view = effects.observer().view().await;
    let n = view
        .nodes
        .iter()
        .find(|n| n.label == "192.168.2.49")
        .unwrap();
    assert_eq!(
        n.members.gap().map(|g| g.kind),
        Some(GapKind::Unreachable),
        "{n:?}"
    );
    for other in view.nodes.iter().filter(|n| n.label != "192.168.2.49") {
        assert!(
            other.members.gap().is_none()
                || !matches!(
                    other.machine_type.get().map(String::as_str),
                    Some("controlplane" | "init")
                ),
            "{other:?}"
        );
    }
    h.shutdown().await;
}
