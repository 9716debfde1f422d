//! Declared reads against the simulator: an observation for one check reads only what the
//! check declares, and every catalog check decides the same on it as on a full observation
//! of the same cluster, healthy or with a node down.

use runbook::condition::check;
use runbook::condition::reads::{Reads, for_check};
use runbook::condition::view::Observed;
use runbook::sim::{Scenario, SimConfig, Simulator, Speed};

const NODE: &str = "192.168.2.223";

async fn effects(
    scenario: Scenario,
) -> (
    runbook::cluster::effects::ClusterEffects,
    runbook::sim::SimHandle,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let h = Simulator::start(SimConfig {
        scenario,
        speed: Speed::new(100.0).unwrap(),
        dir: dir.path().join("sim"),
    })
    .await
    .unwrap();
    let effects = runbook::cluster::connection::Connection::for_simulator(&h)
        .open_in(Some(dir.path()))
        .await
        .unwrap();
    (effects, h, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_ready_observation_reads_no_disks_pci_or_etcd() {
    let (effects, h, _dir) = effects(Scenario::Healthy).await;
    let view = effects.observer().view_of(for_check("kube.ready")).await;
    assert_eq!(view.nodes.len(), 3);
    for n in &view.nodes {
        assert!(
            matches!(n.kube_ready, Observed::Answered(Some(true))),
            "{n:?}"
        );
        assert!(matches!(n.stage, Observed::Answered(_)), "{n:?}");
        assert!(matches!(n.hostname, Observed::Answered(_)), "{n:?}");
        for unread in [
            matches!(n.disks, Observed::NotAsked),
            matches!(n.pci_vendors, Observed::NotAsked),
            matches!(n.members, Observed::NotAsked),
            matches!(n.services, Observed::NotAsked),
            matches!(n.boot_id, Observed::NotAsked),
            matches!(n.evictable_pods, Observed::NotAsked),
        ] {
            assert!(unread, "{n:?}");
        }
    }
    // A check that needs what was not read refuses on this view; it does not pass.
    let v = check::guard("etcd.quorum", &Default::default(), &view).unwrap();
    assert!(!v.holds, "{}", v.reason);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_decides_the_same_on_its_reads_as_on_a_full_observation() {
    for scenario in [Scenario::Healthy, Scenario::NodeDead] {
        let (effects, h, _dir) = effects(scenario).await;
        let full = effects.observer().view_of(Reads::ALL).await;
        let args: check::Args = [
            ("node".to_string(), serde_json::json!(NODE)),
            ("voters".to_string(), serde_json::json!(3)),
        ]
        .into();
        for name in [
            "etcd.quorum",
            "etcd.safe-down",
            "etcd.consistent",
            "etcd.no-alarms",
            "talos.all-running",
            "talos.node-running",
        ] {
            let narrow = effects.observer().view_of(for_check(name)).await;
            assert_eq!(
                check::guard(name, &args, &full).unwrap(),
                check::guard(name, &args, &narrow).unwrap(),
                "{scenario:?}: guard {name}"
            );
        }
        for name in ["etcd.full", "etcd.member", "kube.ready", "talos.running"] {
            let narrow = effects.observer().view_of(for_check(name)).await;
            let at = std::time::Duration::ZERO;
            assert_eq!(
                check::wait(name, &args, &full, at, None).unwrap(),
                check::wait(name, &args, &narrow, at, None).unwrap(),
                "{scenario:?}: condition {name}"
            );
        }
        h.shutdown().await;
    }
}
