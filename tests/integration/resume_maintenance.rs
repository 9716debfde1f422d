//! A run killed while every node of its cluster is in maintenance mode resumes (the gap the
//! crash tests found in full-rebuild): no node answers with the talosconfig's CA any more,
//! each serves its own self-signed maintenance certificate. The reachability check must count
//! a maintenance answer as an answer, the Talos client must be opened lazily, and the resumed
//! run must then bootstrap exactly once. Design: docs/design/connect.md, "Resuming while every
//! node is in maintenance mode".

use std::time::{Duration, Instant};

use runbook::journal::{Journal, RunOutcome};
use runbook::sim::{Scenario, SharedCluster, Stage};

use crate::run_harness::{Env, simulator, successful_calls, text};

/// full-rebuild's params, in one place (`{sim}` is the simulator's directory, `{out}` the
/// test's output directory, `{snapshot}` the snapshot an uninterrupted etcd-backup took first).
const PARAMS: &[&str] = &[
    "inventory={sim}/cluster.yaml",
    "variant=restore",
    "snapshot={snapshot}",
    "backup_dir={out}/snaps-after",
    "kubeconfig={out}/kubeconfig-new",
];

/// The number of nodes full-rebuild wipes (the third Reset leaves none configured).
const NODES: usize = 3;

const NO_LOCK: &str = "full rebuild: the Kubernetes API goes down";

fn every_node_in_maintenance(shared: &SharedCluster) -> bool {
    shared.with(|c, _| c.nodes().iter().all(|n| n.stage() == Stage::Maintenance))
}

#[test]
fn full_rebuild_killed_after_the_last_reset_resumes_and_bootstraps_once() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::Healthy, 200.0, env.path());
    let sim = env.path().join("sim");
    let out = env.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let s = |p: &std::path::Path| p.display().to_string();
    let cluster = [
        "--talosconfig".to_owned(),
        s(&sim.join("talosconfig")),
        "--kubeconfig".to_owned(),
        s(&sim.join("kubeconfig")),
        "--node-endpoints".to_owned(),
        s(&sim.join("endpoints.json")),
    ];
    // The restore variant bootstraps from a verified snapshot of this cluster.
    let snaps = out.join("snaps");
    let backup = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "etcd-backup"])
        .args(&cluster)
        .args([
            "--param",
            &format!("dir={}", s(&snaps)),
            "--output",
            "plain",
        ])
        .arg("--state-dir")
        .arg(out.join("state-setup"))
        .env("HOME", env.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(backup.status.code(), Some(0), "{}", text(&backup));
    let snapshot = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("etcd-backup wrote a snapshot");
    let mut run: Vec<String> = vec!["run".into(), "full-rebuild".into()];
    run.extend(cluster.iter().cloned());
    for p in PARAMS {
        run.push("--param".into());
        run.push(
            p.replace("{sim}", &s(&sim))
                .replace("{out}", &s(&out))
                .replace("{snapshot}", &s(&snapshot)),
        );
    }
    run.extend(["--output".into(), "plain".into()]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();

    // The run stops at the approval before anything is wiped.
    let first = env.cmd(&run).output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(runbook::exit_code::AWAITING_APPROVAL),
        "{}",
        text(&first)
    );
    let dir = env.the_run();
    let approve = env.run(&["approve", dir.id(), "confirm"]);
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));

    // Resumed, it kills itself right after the last Reset returned, before journaling it.
    let resume = ["resume", "--no-cluster-lock", NO_LOCK, "--output", "plain"];
    let killed = env
        .cmd(&resume)
        .env(
            runbook::test_hook::KILL_IN_EFFECT,
            format!("talos.reset:{NODES}:after"),
        )
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "the session must die inside the last Reset:\n{}",
        text(&killed)
    );
    let shared = handle.cluster();
    assert_eq!(
        successful_calls(shared, "Reset").len(),
        NODES,
        "every node was reset once"
    );
    // The node reset last reboots into maintenance on the simulator's clock; a bound, not a
    // timing: it fails the test only if the simulator never gets there.
    let bound = Instant::now() + Duration::from_secs(60);
    while !every_node_in_maintenance(shared) {
        assert!(
            Instant::now() < bound,
            "the nodes never reached maintenance"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        successful_calls(shared, "Bootstrap").is_empty(),
        "nothing was bootstrapped yet"
    );

    // No node answers with the cluster's CA now; resume must still go on to the end.
    let resumed = env.cmd(&resume).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let journal = Journal::read(&dir).unwrap();
    assert_eq!(journal.state.outcome(), Some(RunOutcome::Succeeded));
    assert!(journal.state.in_doubt_steps().is_empty());
    assert_eq!(
        successful_calls(shared, "Bootstrap"),
        ["192.168.2.20"],
        "exactly one Bootstrap, on the first node"
    );
    // The Reset killed before its outcome was journaled was settled, not sent again.
    assert_eq!(successful_calls(shared, "Reset").len(), NODES);
    let mut applied = successful_calls(shared, "ApplyConfiguration");
    applied.sort();
    assert_eq!(
        applied,
        ["192.168.2.20", "192.168.2.223", "192.168.2.49"],
        "each node configured once, through its pinned maintenance connection"
    );
    rt.block_on(handle.shutdown());
}

/// The simulator's talosconfig, changed by `edit`, saved as `dir/name`.
fn talosconfig_with(
    from: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    edit: impl FnOnce(&mut runbook::cluster::talosconfig::Context),
) -> std::path::PathBuf {
    use runbook::cluster::talosconfig::Talosconfig;
    let mut tc = Talosconfig::load(from).unwrap();
    let current = tc.context.clone();
    edit(tc.contexts.get_mut(&current).unwrap());
    let path = dir.join(name);
    tc.save(&path).unwrap();
    path
}

/// What counts as "answers in maintenance mode" for the reachability check, and what does
/// not: a node of another CA that is configured (a stranger), a maintenance node whose
/// certificate is not its pin, and a client certificate that expired are all refused; the
/// Talos client opened over a maintenance-only cluster still checks the CA on every call.
#[test]
fn the_reachability_check_tells_a_maintenance_node_from_a_stranger() {
    use runbook::cluster::connection::{Answer, ConnectError, Connection};
    use runbook::cluster::talos::Cause;
    let dir = tempfile::tempdir().unwrap();
    // `.223` is fresh in maintenance mode; `.20` and `.49` are configured.
    let (rt, handle) = simulator(Scenario::TwoVoterWindow, 200.0, dir.path());
    let base = Connection::for_simulator(&handle);
    let maint = "192.168.2.223";
    let at = |label: &str| base.endpoints[label].clone();
    let only = |label: &str| {
        let mut c = base.clone();
        c.talos_endpoints = vec![at(label)];
        c
    };
    let causes = |r: Result<Answer, ConnectError>| match r {
        Err(ConnectError::Unreachable { failures, .. }) => failures
            .into_iter()
            .map(|(_, node, cause)| (node, cause))
            .collect::<Vec<_>>(),
        other => panic!("expected unreachable, got {other:?}"),
    };

    // Only the maintenance node behind the endpoints: it answered, with its pinned certificate.
    let conn = only(maint);
    assert!(conn.fingerprints.contains_key(maint));
    assert_eq!(
        rt.block_on(conn.probe()).unwrap(),
        Answer::Maintenance {
            node: maint.into(),
            endpoint: at(maint)
        }
    );
    // Without a pin (a real cluster without `--node-endpoints` fingerprints) it still answers
    // as a maintenance node; nothing is recorded.
    let mut unpinned = conn.clone();
    unpinned.fingerprints.clear();
    assert!(matches!(
        rt.block_on(unpinned.probe()),
        Ok(Answer::Maintenance { .. })
    ));
    // A configured node answers with the cluster's CA: authenticated, never "maintenance".
    assert_eq!(
        rt.block_on(only("192.168.2.20").probe()).unwrap(),
        Answer::Authenticated
    );
    // The effects open over a maintenance-only cluster (the client is lazy), and a call
    // through the authenticated client is refused for the CA, as before.
    let effects = rt.block_on(conn.open()).unwrap();
    let err = rt
        .block_on(effects.observer().talos.machine().version(()))
        .unwrap_err();
    assert_eq!(
        Cause::of_status(&err),
        Cause::UnknownCa,
        "the CA is checked on every authenticated call: {err:?}"
    );

    // A maintenance node whose certificate is not its pin does not count.
    let mut wrong_pin = conn.clone();
    wrong_pin.fingerprints.insert(
        maint.into(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
    );
    assert_eq!(
        causes(rt.block_on(wrong_pin.probe())),
        [(maint.to_owned(), Cause::UnknownCa)]
    );

    // A stranger: a configured node of another CA (a talosconfig of another cluster) is not
    // in maintenance mode: it wants a client certificate, so it is refused.
    let other = runbook::sim::pki::Ca::generate("another-cluster").unwrap();
    let mut stranger = only("192.168.2.20");
    stranger.talosconfig = talosconfig_with(&base.talosconfig, dir.path(), "other-ca", |c| {
        c.ca_pem = other.cert_pem().to_owned()
    });
    assert_eq!(
        causes(rt.block_on(stranger.probe())),
        [("192.168.2.20".to_owned(), Cause::UnknownCa)]
    );

    // An expired client certificate refuses before anything is dialled, maintenance or not,
    // and the lazy client refuses it too.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let mut expired = only(maint);
    expired.talosconfig = talosconfig_with(&base.talosconfig, dir.path(), "expired", |c| {
        c.crt_pem = cert.pem();
        c.key_pem = runbook::secret::Secret::new(key.serialize_pem());
    });
    let got = causes(rt.block_on(expired.probe()));
    assert!(
        matches!(got.as_slice(), [(n, Cause::ClientCertExpired { .. })] if n == maint),
        "{got:?}"
    );
    assert!(rt.block_on(expired.open()).is_err());
    rt.block_on(handle.shutdown());
}
