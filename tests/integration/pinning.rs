//! Maintenance-mode certificate pinning against the simulator: a machine in the middle that
//! answers for a maintenance node is refused, first contact is learned and recorded, and a
//! label that is not a configured endpoint is never dialled.

use std::collections::BTreeMap;
use std::path::Path;

use runbook::cluster::observe::{Failover, Observer};
use runbook::cluster::pinning::{PINS_FILE, PinError, Pins};
use runbook::cluster::talos::{ClientError, TalosClient};
use runbook::cluster::talosconfig::Talosconfig;
use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed};

const FRESH: &str = "192.168.2.223";
const MEMBER: &str = "192.168.2.20";
const NODES: [&str; 3] = ["192.168.2.20", "192.168.2.223", "192.168.2.49"];

async fn sim(dir: &Path) -> SimHandle {
    Simulator::start(SimConfig {
        scenario: Scenario::TwoVoterWindow,
        speed: Speed::new(100.0).unwrap(),
        dir: dir.join("sim"),
    })
    .await
    .unwrap()
}

async fn observer(h: &SimHandle, endpoints: BTreeMap<String, String>, pins: Pins) -> Observer {
    let cfg = Talosconfig::load(h.talosconfig()).unwrap();
    let (_, ctx) = cfg.context(None, h.talosconfig()).unwrap();
    Observer {
        talos: Failover::new(TalosClient::connect(ctx).await.unwrap(), None),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        endpoints,
        kube: None,
        pins,
    }
}

fn all_endpoints(h: &SimHandle) -> BTreeMap<String, String> {
    NODES
        .iter()
        .filter_map(|n| h.endpoint(n).map(|e| (n.to_string(), e)))
        .collect()
}

#[tokio::test]
async fn a_maintenance_node_is_seen_only_with_its_pinned_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim(dir.path()).await;
    let right = h.maintenance_fingerprint(FRESH).unwrap().to_string();
    let wrong = h.maintenance_fingerprint(MEMBER).unwrap().to_string();
    assert_ne!(right, wrong);

    let pinned = Pins::new(BTreeMap::from([(FRESH.to_string(), right)]), None).unwrap();
    let view = observer(&h, all_endpoints(&h), pinned).await.view().await;
    let node = view.node(FRESH).unwrap();
    assert!(node.reachable() && node.maintenance(), "{node:?}");

    let mispinned = Pins::new(BTreeMap::from([(FRESH.to_string(), wrong)]), None).unwrap();
    let view = observer(&h, all_endpoints(&h), mispinned)
        .await
        .view()
        .await;
    let node = view.node(FRESH).unwrap();
    assert!(!node.reachable() && !node.maintenance(), "{node:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn first_contact_is_learned_and_recorded_and_an_impostor_is_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim(dir.path()).await;
    let file = dir.path().join(PINS_FILE);
    let pins = Pins::new(BTreeMap::new(), Some(file.clone())).unwrap();
    let view = observer(&h, all_endpoints(&h), pins).await.view().await;
    assert!(view.node(FRESH).unwrap().maintenance());
    let learned: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        learned.get(FRESH).map(String::as_str),
        h.maintenance_fingerprint(FRESH)
    );

    // A machine in the middle now answers for FRESH (here: another node's listener, with
    // another certificate). A later process (resume) loads the recorded pin and refuses it.
    let mut endpoints = all_endpoints(&h);
    let impostor = h.endpoint(MEMBER).unwrap();
    endpoints.insert(FRESH.to_string(), impostor.clone());
    let pins = Pins::new(BTreeMap::new(), Some(file.clone())).unwrap();
    let obs = observer(&h, endpoints, pins.clone()).await;
    let view = obs.view().await;
    assert!(!view.node(FRESH).unwrap().maintenance());
    let err = pins.connect_pinned(FRESH, &impostor).await.unwrap_err();
    let PinError::Client(ClientError::FingerprintMismatch { got, want, .. }) = &err else {
        panic!("expected a fingerprint mismatch, got {err}");
    };
    // The impostor shows its own certificate (MEMBER is running, so its apid certificate).
    assert_ne!(got, want);
    assert_eq!(Some(want.as_str()), h.maintenance_fingerprint(FRESH));
    assert_eq!(
        err.to_string(),
        format!(
            "the maintenance-mode certificate of {impostor} does not match its pin: got {got}, want {want}"
        )
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_label_that_is_not_a_configured_endpoint_is_never_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim(dir.path()).await;
    let mut endpoints = all_endpoints(&h);
    endpoints.remove(FRESH);
    let obs = observer(&h, endpoints, Pins::default()).await;
    assert_eq!(obs.endpoint_of(FRESH), None);
    assert_eq!(obs.endpoint_of("evil.example:50000"), None);
    let view = obs.view().await;
    assert!(!view.node(FRESH).unwrap().reachable());
    // Without an endpoint map (a real cluster), only the configured nodes are addresses.
    let obs = observer(&h, BTreeMap::new(), Pins::default()).await;
    assert_eq!(obs.endpoint_of(FRESH).as_deref(), Some(FRESH));
    assert_eq!(obs.endpoint_of("10.9.9.9"), None);
    h.shutdown().await;
}
