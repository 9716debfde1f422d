//! `runbook doctor` against the simulator: what it names on the seed's failure scenarios, its
//! exit codes, its JSON, and that it changes nothing (the simulator's call log of mutating
//! calls stays empty).

use std::process::{Command, Output};

use crate::run_harness::{BIN, text};

fn doctor(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("doctor")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("TALOSCONFIG")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

#[test]
fn doctor_names_the_waiting_nvidia_service_booting_and_the_missing_modules() {
    let out = doctor(&["--sim", "--scenario", "gpu-modules-missing"]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("Ready in Kubernetes but Talos is still booting: ext-nvidia-persistenced is Waiting; the nvidia kernel modules are not configured (missing: nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset)"),
        "{t}"
    );
    assert!(
        t.contains("next: runbook run gpu-enable --param node=192.168.2.20"),
        "{t}"
    );
    assert!(
        t.contains("verdict: critical (1 critical, 0 warning(s))"),
        "{t}"
    );
}

#[test]
fn doctor_reports_a_quorum_margin_of_zero_on_node_dead() {
    let out = doctor(&["--sim", "--scenario", "node-dead", "--output", "json"]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["etcd"]["voters"], 3);
    assert_eq!(r["etcd"]["healthy"], 2);
    assert_eq!(r["etcd"]["margin"], 0);
    assert_eq!(r["verdict"], "critical");
    let checks: Vec<(&str, &str)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["scope"].as_str().unwrap(), f["check"].as_str().unwrap()))
        .collect();
    assert!(
        checks.contains(&("192.168.2.49", "reachable")),
        "{checks:?}"
    );
    assert!(checks.contains(&("cluster", "etcd.quorum")), "{checks:?}");
}

#[test]
fn doctor_is_healthy_on_the_healthy_cluster_and_warns_on_the_usb_stick() {
    let out = doctor(&["--sim"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("can lose 1 node"));
    let out = doctor(&["--sim", "--scenario", "usb-disk-shift", "--output", "json"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["findings"][0]["check"], "disks");
    assert!(
        r["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Talos runs from /dev/sdc")
    );
}

#[test]
fn doctor_changes_nothing_and_reads_the_backup_directory() {
    use runbook::sim::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let sim = dir.path().join("sim");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let out = doctor(&[
        "--talosconfig",
        sim.join("talosconfig").to_str().unwrap(),
        "--kubeconfig",
        sim.join("kubeconfig").to_str().unwrap(),
        "--node-endpoints",
        sim.join("endpoints.json").to_str().unwrap(),
        "--backup-dir",
        backups.to_str().unwrap(),
        "--output",
        "json",
    ]);
    // An empty backup directory is the only finding: a warning.
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["findings"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["findings"][0]["check"], "backup");
    assert_eq!(r["backup"]["newest"], serde_json::Value::Null);
    let mutating = handle.cluster().with(|c, _| c.call_log().len());
    assert_eq!(mutating, 0, "doctor made a mutating call");
    rt.block_on(handle.shutdown());
}
