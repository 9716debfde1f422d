//! Finding the cluster as talosctl and kubectl do: `--talosconfig`, then `$TALOSCONFIG`, then
//! `~/.talos/config`; `--kubeconfig`, then `$KUBECONFIG`, then `~/.kube/config`; and `--sim`,
//! which ignores the environment.

use std::process::Command;

use crate::run_harness::{BIN, simulator, text};

#[test]
fn sim_wins_over_talosconfig_and_kubeconfig_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "etcd-backup", "--sim", "--speed", "100"])
        .args(["--param", "node=192.168.2.223", "--param"])
        .arg(format!("dir={}", dir.path().join("snaps").display()))
        .args(["--output", "plain", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("TALOSCONFIG", "/nonexistent/talosconfig")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // An explicit flag with --sim is still a contradiction.
    let out = Command::new(BIN)
        .args(["doctor", "--sim", "--talosconfig", "/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_default_talosconfig_and_kubeconfig_are_found_without_flags() {
    use runbook::sim::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, dir.path());
    let sim = dir.path().join("sim");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".talos")).unwrap();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::copy(sim.join("talosconfig"), home.join(".talos/config")).unwrap();
    std::fs::copy(sim.join("kubeconfig"), home.join(".kube/config")).unwrap();
    let cmd = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("HOME", &home)
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = cmd(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdict: healthy"));

    let snaps = dir.path().join("snaps");
    let state = dir.path().join("state");
    let out = cmd(&[
        "run",
        "etcd-backup",
        "--param",
        "node=192.168.2.223",
        "--param",
        &format!("dir={}", snaps.display()),
        "--output",
        "plain",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("guard `etcd.quorum` passed"),
        "{}",
        text(&out)
    );
    // The run recorded the default files it used, so resume and abort stay on this cluster.
    let runs = runbook::journal::StateDir::new(&state).list_runs().unwrap();
    let target = std::fs::read_to_string(runs[0].run.path().join("target.json")).unwrap();
    assert!(target.contains(".talos/config"), "{target}");
    assert!(target.contains(".kube/config"), "{target}");

    // A runbook with only local actions needs no cluster, and looks for none: a broken
    // default talosconfig is never read.
    std::fs::write(home.join(".talos/config"), "not: [a talosconfig").unwrap();
    let fixture = crate::run_harness::fixture("runbooks/approval.yaml");
    let out = cmd(&[
        "run",
        fixture.to_str().unwrap(),
        "--param",
        &format!("dir={}", dir.path().display()),
        "--yes",
        "--output",
        "plain",
        "--state-dir",
        dir.path().join("state-local").to_str().unwrap(),
    ]);
    // It pauses at its person-only gate (exit 5), having run its first local step.
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    rt.block_on(handle.shutdown());
}

#[test]
fn a_talosconfig_named_by_flag_never_picks_up_the_default_kubeconfig() {
    use runbook::sim::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, dir.path());
    let sim = dir.path().join("sim");
    // The operator's usual kubeconfig points at another cluster (here: nowhere on loopback).
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::write(
        home.join(".kube/config"),
        "apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: https://127.0.0.1:1}}]\ncontexts: [{name: other, context: {cluster: other, user: u}}]\ncurrent-context: other\nusers: [{name: u, user: {token: x}}]\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .args([
            "run",
            "etcd-backup",
            "--param",
            "node=192.168.2.223",
            "--param",
        ])
        .arg(format!("dir={}", dir.path().join("snaps").display()))
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .args(["--output", "plain", "--state-dir"])
        .arg(&state)
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .env_remove("TALOSCONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs = runbook::journal::StateDir::new(&state).list_runs().unwrap();
    let target = std::fs::read_to_string(runs[0].run.path().join("target.json")).unwrap();
    assert!(!target.contains(".kube/config"), "{target}");
    rt.block_on(handle.shutdown());
}

#[test]
fn without_any_cluster_doctor_and_cluster_flags_say_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let bare = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("HOME", dir.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let out = bare(&["doctor"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "doctor needs a cluster: --talosconfig PATH, $TALOSCONFIG or ~/.talos/config, or --sim"
        ),
        "{}",
        text(&out)
    );
    let out = bare(&["doctor", "--kubeconfig", "/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--context, -e/--endpoints, -n/--nodes, --kubeconfig, --kube-context and --node-endpoints need a talosconfig"),
        "{}",
        text(&out)
    );
}
