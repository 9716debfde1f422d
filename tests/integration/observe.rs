//! The cluster observer against the simulator: guards and waits decided from real API answers.
//!
//! This is where the seed's lessons meet the wire: a node Kubernetes calls Ready but Talos
//! keeps in `booting`, a lost quorum, a disk path that moved with a USB stick.

use std::collections::BTreeMap;

use runbook::cluster::observe::Observer;
use runbook::cluster::talos::TalosClient;
use runbook::cluster::talosconfig::Talosconfig;
use runbook::condition::{etcd, talos};
use runbook::sim::{Scenario, SimConfig, Simulator, Speed};

const NODES: [&str; 3] = ["192.168.2.20", "192.168.2.223", "192.168.2.49"];

async fn observe(
    scenario: Scenario,
) -> (
    runbook::condition::view::ClusterView,
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
    let cfg = Talosconfig::load(h.talosconfig()).unwrap();
    let (_, ctx) = cfg.context(None, h.talosconfig()).unwrap();
    let talos = TalosClient::connect(ctx).await.unwrap();
    let endpoints: BTreeMap<String, String> = NODES
        .iter()
        .filter_map(|n| h.endpoint(n).map(|e| (n.to_string(), e)))
        .collect();
    let observer = Observer {
        talos: runbook::cluster::observe::Failover::new(talos, None),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        endpoints,
        kube: None,
        pins: runbook::cluster::pinning::Pins::new(
            NODES
                .iter()
                .filter_map(|n| {
                    h.maintenance_fingerprint(n)
                        .map(|f| (n.to_string(), f.to_string()))
                })
                .collect(),
            None,
        )
        .unwrap(),
    };
    (observer.view().await, h, dir)
}

#[tokio::test]
async fn healthy_cluster_allows_one_node_down() {
    let (view, h, _dir) = observe(Scenario::Healthy).await;
    let qu = etcd::quorum(&view).unwrap();
    assert_eq!((qu.voters, qu.learners, qu.h()), (3, 0, 3));
    for n in NODES {
        let v = etcd::safe_down(&view, n);
        assert!(v.holds, "{n}: {}", v.reason);
        assert!(talos::node_running(&view, n).holds, "{n}");
    }
    assert!(etcd::full(&view, 3).holds);
    assert!(!etcd::quorum_lost(&view).holds);
    let nuc = view.node("192.168.2.20").unwrap();
    assert!(
        nuc.pci_vendors
            .get()
            .unwrap()
            .iter()
            .any(|v| v == talos::NVIDIA_VENDOR)
    );
    assert!(talos::gpu_modules(&view, "192.168.2.20").holds);
    assert!(nuc.boot_id.get().is_some_and(|b| !b.is_empty()));
    h.shutdown().await;
}

#[tokio::test]
async fn gpu_modules_missing_is_not_running_although_ready() {
    let (view, h, _dir) = observe(Scenario::GpuModulesMissing).await;
    let v = talos::node_running(&view, "192.168.2.20");
    assert!(!v.holds);
    assert!(v.reason.contains("booting"), "{}", v.reason);
    assert!(
        v.reason.contains("ext-nvidia-persistenced is Waiting"),
        "{}",
        v.reason
    );
    assert!(!talos::gpu_modules(&view, "192.168.2.20").holds);
    h.shutdown().await;
}

#[tokio::test]
async fn quorum_lost_is_recognised_and_refuses_disruption() {
    let (view, h, _dir) = observe(Scenario::QuorumLost).await;
    assert!(
        etcd::quorum_lost(&view).holds,
        "{}",
        etcd::quorum_lost(&view).reason
    );
    assert!(!etcd::safe_down(&view, "192.168.2.20").holds);
    assert!(!etcd::has_quorum(&view).holds);
    assert!(!view.node("192.168.2.223").unwrap().reachable());
    h.shutdown().await;
}

#[tokio::test]
async fn usb_disk_shift_is_caught_before_install() {
    let (view, h, _dir) = observe(Scenario::UsbDiskShift).await;
    let v = talos::disk_unambiguous(&view, "192.168.2.49", Some("/dev/sda"), None, None);
    assert!(!v.holds);
    assert!(v.reason.contains("USB stick"), "{}", v.reason);
    h.shutdown().await;
}

#[tokio::test]
async fn dead_node_is_unreachable_and_others_may_not_go_down() {
    let (view, h, _dir) = observe(Scenario::NodeDead).await;
    let down = talos::node_down(&view, Some(&view), "192.168.2.49");
    assert!(down.holds, "{}", down.reason);
    let v = etcd::safe_down(&view, "192.168.2.20");
    assert!(!v.holds, "{}", v.reason);
    assert!(etcd::safe_remove(&view, "192.168.2.49").holds);
    h.shutdown().await;
}
