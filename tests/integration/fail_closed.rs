//! Guards under adversity against the simulator: a role that may read nothing, a cluster that
//! goes away in the middle of a run, and the two-voter window. Every guard must refuse where it
//! cannot be sure, say what it could not read, and let nothing reach the cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use runbook::cluster::effects::ClusterEffects;
use runbook::cluster::observe::{Failover, Observer};
use runbook::cluster::talos::TalosClient;
use runbook::cluster::talosconfig::Talosconfig;
use runbook::condition::check::{self, Args};
use runbook::condition::view::ClusterView;
use runbook::condition::{GUARDS, etcd, talos};
use runbook::exec::effects::{CheckCall, Effects};
use runbook::sim::pki::Role;
use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed};

const NUC_20: &str = "192.168.2.20";
const MAC_223: &str = "192.168.2.223";
const MAC_49: &str = "192.168.2.49";
const NODES: [&str; 3] = [NUC_20, MAC_223, MAC_49];

async fn start(scenario: Scenario, dir: &Path) -> SimHandle {
    Simulator::start(SimConfig {
        scenario,
        speed: Speed::new(100.0).unwrap(),
        dir: dir.join("sim"),
    })
    .await
    .unwrap()
}

/// An observer of the simulator's three seed nodes with the talosconfig of `role`.
async fn observer(h: &SimHandle, role: Role) -> Observer {
    let path = h.talosconfig_for(role);
    let cfg = Talosconfig::load(path).unwrap();
    let (_, ctx) = cfg.context(None, path).unwrap();
    let talos = TalosClient::connect(ctx).await.unwrap();
    Observer {
        talos: Failover::new(talos, Some(ctx.clone())),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        endpoints: NODES
            .iter()
            .filter_map(|n| h.endpoint(n).map(|e| (n.to_string(), e)))
            .collect::<BTreeMap<_, _>>(),
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
    }
}

/// Arguments for a guard aimed at `node`.
fn args(spec: &runbook::condition::GuardSpec, node: &str) -> Args {
    let mut a = Args::new();
    for s in spec.args {
        let v: serde_json::Value = match s.name {
            "node" => node.into(),
            "image" => "ghcr.io/siderolabs/installer:v1.11.5".into(),
            "disk" => "/dev/sda".into(),
            "confirm" => "200ms".into(),
            "dir" => "/nonexistent".into(),
            "member" => "mac-49".into(),
            "config" => crate::run_harness::fixture("lint/fixed/controlplane2.yaml")
                .display()
                .to_string()
                .into(),
            _ => continue,
        };
        a.insert(s.name.to_string(), v);
    }
    a
}

/// Every cluster guard of the catalog, aimed at each node, decided on `view` (twice for the
/// guards that need two observations): none may pass.
fn assert_all_refuse(view: &ClusterView, what: &str, must_mention: &str) {
    for g in GUARDS.iter().filter(|g| g.name != "backup.fresh") {
        for node in NODES {
            let v = check::guard_with(g.name, &args(g, node), view, Some(view)).unwrap();
            assert!(
                !v.holds,
                "{} on {node} passed with {what}: {}",
                g.name, v.reason
            );
            assert!(
                v.reason.contains(must_mention) || v.reason.contains("cannot decide"),
                "{} on {node} with {what} does not say what it could not read: {}",
                g.name,
                v.reason
            );
        }
    }
}

async fn check_guard(effects: &ClusterEffects, name: &str, node: &str) -> (bool, String) {
    let spec = runbook::condition::guard(name).unwrap();
    let fields: runbook::journal::Fields = args(spec, node).into_iter().collect();
    let pre = runbook::journal::Fields::new();
    let v = effects
        .check_guard(CheckCall {
            step: "s",
            name,
            args: &fields,
            pre_state: &pre,
        })
        .await
        .unwrap();
    (v.passed, v.reason)
}

#[tokio::test]
async fn a_role_that_may_read_nothing_makes_every_guard_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(Scenario::Healthy, dir.path()).await;
    let obs = observer(&h, Role::EtcdBackup).await;
    let view = obs.view().await;
    let nuc = view.node(NUC_20).unwrap();
    assert!(!nuc.reachable(), "a refusal is not an answer");
    assert!(
        nuc.silent_evidence().is_none(),
        "a refusal is not silence either"
    );
    assert_all_refuse(&view, "the etcd:backup role", "PermissionDenied");
    // The ones the hostile tests found passing, with the words an operator reads.
    for (name, node) in [
        ("etcd.no-alarms", NUC_20),
        ("etcd.quorum-lost", NUC_20),
        ("talos.not-member", NUC_20),
        ("talos.node-down", MAC_49),
        ("talos.no-init", NUC_20),
        ("talos.image-matches-hardware", NUC_20),
        ("etcd.bootstrap-safe", NUC_20),
    ] {
        let v = check::guard_with(
            name,
            &args(runbook::condition::guard(name).unwrap(), node),
            &view,
            Some(&view),
        )
        .unwrap();
        assert!(
            v.reason
                .contains("refused MachineStatus (PermissionDenied)"),
            "{name}: {}",
            v.reason
        );
    }
    // Through the executor's entry point, with node-down's two observations.
    let effects = ClusterEffects::new(obs);
    let (passed, reason) = check_guard(&effects, "talos.node-down", MAC_49).await;
    assert!(!passed);
    assert!(reason.contains("PermissionDenied"), "{reason}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_reader_role_still_decides() {
    // The control: the same guards with a role that may read do decide, so the refusals above
    // come from the missing evidence, not from a broken observer.
    let dir = tempfile::tempdir().unwrap();
    let h = start(Scenario::Healthy, dir.path()).await;
    let view = observer(&h, Role::Reader).await.view().await;
    assert!(
        etcd::no_alarms(&view).holds,
        "{}",
        etcd::no_alarms(&view).reason
    );
    assert!(
        talos::no_init(&view, &[]).holds,
        "{}",
        talos::no_init(&view, &[]).reason
    );
    let nm = talos::not_member(&view, NUC_20);
    assert!(!nm.holds);
    assert!(nm.reason.contains("is an etcd member"), "{}", nm.reason);
    h.shutdown().await;
}

#[tokio::test]
async fn when_the_cluster_goes_away_mid_run_every_guard_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(Scenario::Healthy, dir.path()).await;
    let obs = observer(&h, Role::Admin).await;
    // While it is there, the guards decide.
    let before = obs.view().await;
    assert!(etcd::safe_down(&before, MAC_49).holds);
    h.shutdown().await;
    let view = obs.view().await;
    for n in NODES {
        assert!(
            view.node(n).unwrap().silent_evidence().is_some(),
            "{n}: {:?}",
            view.node(n).unwrap().contact
        );
    }
    assert_all_refuse(&view, "the cluster gone", "did not answer");
    let lost = etcd::quorum_lost(&view);
    assert!(
        lost.reason.contains("silence is not evidence"),
        "{}",
        lost.reason
    );
    let effects = ClusterEffects::new(obs);
    let (passed, reason) = check_guard(&effects, "talos.node-down", MAC_49).await;
    assert!(!passed);
    assert!(reason.contains("observer's own"), "{reason}");
}

#[tokio::test]
async fn a_dead_node_is_confirmed_down_by_two_observations_through_the_executor_entry() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(Scenario::NodeDead, dir.path()).await;
    let effects = ClusterEffects::new(observer(&h, Role::Admin).await);
    let (passed, reason) = check_guard(&effects, "talos.node-down", MAC_49).await;
    assert!(passed, "{reason}");
    let (passed, reason) = check_guard(&effects, "talos.node-down", NUC_20).await;
    assert!(!passed);
    assert!(reason.contains("it is not down"), "{reason}");
    h.shutdown().await;
}

#[tokio::test]
async fn two_voter_window_refuses_removal_and_outage_but_lets_the_third_join() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(Scenario::TwoVoterWindow, dir.path()).await;
    let view = observer(&h, Role::Admin).await.view().await;
    for v in [
        etcd::safe_remove(&view, MAC_49),
        etcd::safe_remove(&view, NUC_20),
        etcd::safe_down(&view, MAC_49),
        etcd::safe_down(&view, NUC_20),
    ] {
        assert!(!v.holds);
        assert_eq!(v.reason, etcd::TWO_VOTERS);
    }
    // Every other guard that protects against a quorum outage or a member removal refuses
    // too, except on the joining node in maintenance.
    use runbook::action::Hazard;
    for g in GUARDS.iter().filter(|g| {
        g.protects
            .iter()
            .any(|h| matches!(h, Hazard::QuorumOutage | Hazard::MemberRemoval))
    }) {
        for node in [NUC_20, MAC_49] {
            let v = check::guard_with(g.name, &args(g, node), &view, Some(&view)).unwrap();
            assert!(!v.holds, "{} on {node}: {}", g.name, v.reason);
        }
    }
    let join = talos::not_member(&view, MAC_223);
    assert!(join.holds, "{}", join.reason);
    h.shutdown().await;
}

/// The seed's fourth destruction, through the binary: `etcd.remove-member` of mac-49 in the
/// two-voter window is refused and no EtcdRemoveMemberByID reaches the simulator.
#[test]
fn two_voter_window_remove_member_is_refused_and_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(start(Scenario::TwoVoterWindow, dir.path()));
    let sim = dir.path().join("sim");
    let s = |p: &str| sim.join(p).display().to_string();
    let fixture = crate::harness::root().join("tests/fixtures/runbooks/two-voter-remove.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", fixture.to_str().unwrap(), "--output", "plain"])
        .args(["--talosconfig", &s("talosconfig")])
        .args(["--node-endpoints", &s("endpoints.json")])
        .args(["--param", "node=192.168.2.49", "--param", "hostname=mac-49"])
        .args(["--param", "survivor=192.168.2.20"])
        // No kubeconfig here: the guard, not the lock, must be what stops it.
        .args(["--no-cluster-lock", "test without Kubernetes"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .env_remove("TALOSCONFIG")
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(4), "guard refused: {t}");
    assert!(t.contains("etcd has exactly two voters"), "{t}");
    assert!(t.contains("join the third member first"), "{t}");
    let (removals, voters) = h.cluster().with(|c, now| {
        (
            c.call_log()
                .iter()
                .filter(|r| r.method == "EtcdRemoveMemberByID")
                .count(),
            c.etcd_member_list(NUC_20, false, now)
                .unwrap_or_default()
                .iter()
                .filter(|m| !m.is_learner)
                .count(),
        )
    });
    assert_eq!(removals, 0, "no removal may reach the cluster");
    assert_eq!(voters, 2, "both voters are still there");
    let logged = std::fs::read_to_string(sim.join("calls.jsonl")).unwrap_or_default();
    assert!(!logged.contains("EtcdRemoveMemberByID"), "{logged}");
    rt.block_on(h.shutdown());
}

/// `backup.fresh` decides from the directory alone, in a run without any cluster: no snapshot,
/// a tampered one and a verified fresh one.
#[test]
fn backup_fresh_gates_a_local_run_on_a_verified_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    std::fs::create_dir_all(&snaps).unwrap();
    let fixture = crate::harness::root().join("tests/fixtures/runbooks/backup-gate.yaml");
    let run = |n: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["run", fixture.to_str().unwrap(), "--output", "plain"])
            .args(["--param", &format!("dir={}", snaps.display())])
            .arg("--state-dir")
            .arg(dir.path().join(n))
            .env("NO_COLOR", "1")
            .env_remove("TALOSCONFIG")
            .output()
            .unwrap();
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), t)
    };
    let (code, t) = run("s1");
    assert_eq!(code, Some(4), "{t}");
    assert!(t.contains("no snapshot in"), "{t}");

    let snap = snaps.join("20261201T000000Z_192.168.2.20.db");
    let now = runbook::journal::time::now_ms();
    runbook::cluster::backup::store(
        &snap,
        b"snapshot bytes",
        &runbook::cluster::backup::describe("192.168.2.20", b"snapshot bytes", Some(9), None, now),
    )
    .unwrap();
    std::fs::write(&snap, b"snapshot BYTES").unwrap();
    let (code, t) = run("s2");
    assert_eq!(code, Some(4), "{t}");
    assert!(t.contains("does not match the sidecar"), "{t}");

    std::fs::write(&snap, b"snapshot bytes").unwrap();
    let (code, t) = run("s3");
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("guard `backup.fresh` passed"), "{t}");
}
