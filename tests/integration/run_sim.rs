//! `runbook run --sim`: built-in runbooks executed end to end against the embedded simulator,
//! guards deciding from the simulated Talos API.

use std::path::Path;
use std::process::{Command, Output};

fn runbook(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .args([
            "--state-dir",
            dir.join("state").to_str().unwrap(),
            "--output",
            "plain",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("TALOSCONFIG")
        .output()
        .expect("run the runbook binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn etcd_backup_takes_a_verified_snapshot_from_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let out = runbook(
        dir.path(),
        &[
            "run",
            "etcd-backup",
            "--sim",
            "--speed",
            "100",
            "--param",
            "node=192.168.2.223",
            "--param",
            &format!("dir={}", snaps.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let files: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let size = std::fs::metadata(&files[0]).unwrap().len();
    assert_eq!(size % 512, 32, "snapshot must carry the sha256 trailer");
    // Its sidecar verifies and says where and when it was taken.
    let sidecar = runbook::cluster::backup::verify(&files[0]).unwrap();
    assert_eq!(sidecar.node, "192.168.2.223");
    assert_eq!(sidecar.size, size);
    assert!(sidecar.revision.is_some(), "{sidecar:?}");
    assert!(sidecar.talos_version.is_some(), "{sidecar:?}");
    assert!(!sidecar.encrypted);
    assert!(
        text(&out).contains("guard `etcd.quorum` passed"),
        "{}",
        text(&out)
    );
}

#[test]
fn etcd_backup_refuses_without_quorum_and_resume_explains_the_embedded_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(
        dir.path(),
        &[
            "run",
            "etcd-backup",
            "--sim",
            "--scenario",
            "quorum-lost",
            "--param",
            "node=192.168.2.20",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        // The preflight (etcd-backup's first step) refuses before the quorum guard is reached.
        text(&out).contains("REFUSED: preflight refused the run")
            && text(&out).contains("etcd: no node could list etcd members"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("etcdserver: no leader"),
        "{}",
        text(&out)
    );
    let out = runbook(dir.path(), &["resume"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("simulator embedded in its process"),
        "{}",
        text(&out)
    );
}

fn only_run_dir(dir: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir.join("state/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn calls(run: &Path, method: &str) -> Vec<String> {
    std::fs::read_to_string(run.join("sim/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|c| c["method"] == method)
        .map(|c| c["node"].as_str().unwrap_or_default().to_string())
        .collect()
}

const SEED: &str = "nodes=192.168.2.20,192.168.2.223,192.168.2.49";

#[test]
fn reboot_verify_passes_on_the_healthy_seed_cluster_one_node_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(
        dir.path(),
        &[
            "run",
            "reboot-verify",
            "--sim",
            "--speed",
            "200",
            "--param",
            SEED,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("finished: Succeeded (29 steps done)"),
        "{}",
        text(&out)
    );
    let run = only_run_dir(dir.path());
    // Every node rebooted exactly once, in the order given.
    assert_eq!(
        calls(&run, "Reboot"),
        vec!["192.168.2.20", "192.168.2.223", "192.168.2.49"]
    );
    // Each reboot was preceded by a fresh quorum check that saw all three voters healthy.
    assert_eq!(
        text(&out)
            .matches("with `192.168.2.223` down, 2 of 3 voters stay healthy")
            .count(),
        4
    );
}

#[test]
fn reboot_verify_refuses_to_start_while_a_node_is_stuck_booting() {
    // kubectl says Ready, Talos says booting: the preflight sees through it.
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(
        dir.path(),
        &[
            "run",
            "reboot-verify",
            "--sim",
            "--scenario",
            "gpu-modules-missing",
            "--param",
            SEED,
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out)
            .contains("[192.168.2.20] stage: Ready in Kubernetes but Talos is still booting: ext-nvidia-persistenced is Waiting"),
        "{}",
        text(&out)
    );
    assert!(
        calls(&only_run_dir(dir.path()), "Reboot").is_empty(),
        "nothing may be rebooted"
    );
}

#[test]
fn reboot_verify_rolls_back_the_cordon_when_a_pdb_blocks_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(
        dir.path(),
        &[
            "run",
            "reboot-verify",
            "--sim",
            "--scenario",
            "pdb-blocks-drain",
            "--param",
            SEED,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("a PodDisruptionBudget blocks evicting media/plex"),
        "{t}"
    );
    assert!(
        t.contains("undone   uncordon_if_running@verify[192.168.2.20].cordon"),
        "{t}"
    );
    assert!(t.contains("FAILED and rolled back"), "{t}");
    let run = only_run_dir(dir.path());
    assert!(calls(&run, "Reboot").is_empty());
    // Kubernetes calls reach calls.jsonl too: cordoned, then uncordoned by the rollback.
    assert_eq!(calls(&run, "PatchNode"), vec!["nuc-20", "nuc-20"]);
}

/// Kills `runbook run` (SIGKILL, through the journal hook) after every one of its journal
/// records while it reboots a simulated node, resumes, and checks the node was rebooted exactly
/// once each time: the boot-id probe and the journal keep a non-idempotent reboot from being
/// repeated or lost.
#[test]
fn reboot_is_never_repeated_when_killed_at_any_record() {
    use runbook::sim::Scenario;

    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let sim = dir.path().join("sim");
    let runbook_file = crate::harness::root().join("tests/fixtures/runbooks/reboot-one.yaml");
    let reboots = || {
        handle
            .cluster()
            .with(|c, _| c.call_log().iter().filter(|r| r.method == "Reboot").count())
    };
    let run = |state: &Path, kill: Option<usize>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.arg("run")
            .arg(&runbook_file)
            .args(["--param", "node=192.168.2.223", "--output", "plain"])
            .arg("--talosconfig")
            .arg(sim.join("talosconfig"))
            .arg("--kubeconfig")
            .arg(sim.join("kubeconfig"))
            .arg("--node-endpoints")
            .arg(sim.join("endpoints.json"))
            .arg("--state-dir")
            .arg(state)
            .env("NO_COLOR", "1");
        if let Some(k) = kill {
            cmd.env("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string());
        }
        cmd.output().unwrap()
    };
    let resume = |state: &Path| {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["resume", "--output", "plain", "--state-dir"])
            .arg(state)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };

    // An uninterrupted run: how many records, and exactly one reboot.
    let state = dir.path().join("state-full");
    let before = reboots();
    let out = run(&state, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(reboots() - before, 1);
    let run_dir = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(records > 8, "{records} records");

    let mut kill_points = 0;
    for k in 1..records {
        let state = dir.path().join(format!("state-{k}"));
        let before = reboots();
        let out = run(&state, Some(k));
        assert_ne!(
            out.status.code(),
            Some(0),
            "kill point {k} did not kill:\n{}",
            text(&out)
        );
        kill_points += 1;
        let mut finished = false;
        for _ in 0..3 {
            let out = resume(&state);
            if out.status.code() == Some(0) {
                finished = true;
                break;
            }
        }
        assert!(finished, "kill point {k}: resume did not finish");
        assert_eq!(
            reboots() - before,
            1,
            "kill point {k}: the node must be rebooted exactly once"
        );
    }
    assert_eq!(kill_points, records - 1);
    eprintln!("reboot crash test: {kill_points} kill points, one reboot each");
    rt.block_on(handle.shutdown());
}

#[test]
fn gpu_enable_fixes_the_missing_nvidia_modules_of_the_seed_notes() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(
        dir.path(),
        &[
            "run",
            "gpu-enable",
            "--sim",
            "--speed",
            "200",
            "--scenario",
            "gpu-modules-missing",
            "--param",
            "node=192.168.2.20",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("guard `talos.image-matches-hardware` passed"),
        "{t}"
    );
    assert!(t.contains("guard `talos.gpu-modules` passed"), "{t}");
    assert!(t.contains("skipped  upgrade"), "{t}");
    assert_eq!(
        calls(&only_run_dir(dir.path()), "ApplyConfiguration"),
        vec!["192.168.2.20"]
    );
}
