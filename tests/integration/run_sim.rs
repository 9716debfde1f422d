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
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let size = std::fs::metadata(&files[0]).unwrap().len();
    assert_eq!(size % 512, 32, "snapshot must carry the sha256 trailer");
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
        text(&out).contains("REFUSED: no node could list etcd members"),
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
