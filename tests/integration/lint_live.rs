//! `runbook lint --live`: the live lints of talos-procedures.md §5 against the simulator, in
//! the static lints' JSON shape, with lint's exit code; a role that may read nothing gives
//! error findings (the lint could not be made), never a clean bill.

use std::process::Output;

use runbook::sim::Scenario;
use runbook::sim::pki::Role;

use crate::run_harness::{Env, simulator, text};

fn json(out: &Output) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)));
    v["findings"].as_array().unwrap().clone()
}

fn has(findings: &[serde_json::Value], id: &str, file: &str, severity: &str, text: &str) -> bool {
    findings.iter().any(|f| {
        f["id"] == id
            && f["file"].as_str().unwrap().ends_with(file)
            && f["severity"] == severity
            && f["message"].as_str().unwrap().contains(text)
    })
}

#[test]
fn live_lints_find_the_seed_mistakes_on_their_scenarios_in_the_static_json_shape() {
    let env = Env::new();
    let out = env.run(&[
        "lint",
        "--live",
        "--sim",
        "--scenario",
        "nvidia-image-on-non-gpu-node",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let f = json(&out);
    for finding in &f {
        let mut keys: Vec<&str> = finding
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["column", "file", "fix", "id", "line", "message", "severity"]
        );
    }
    assert!(
        has(
            &f,
            "L1",
            "live:192.168.2.223",
            "error",
            "runs the NVIDIA extensions but has no NVIDIA GPU"
        ),
        "{f:#?}"
    );
    // The running config lacks the modules the running image needs: pointed at the config.
    assert!(
        has(
            &f,
            "L2",
            "configs/192.168.2.223.yaml",
            "error",
            "its active config lacks the kernel modules"
        ),
        "{f:#?}"
    );

    let out = env.run(&[
        "lint",
        "--live",
        "--sim",
        "--scenario",
        "usb-disk-shift",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let f = json(&out);
    assert!(
        has(
            &f,
            "L4",
            "configs/192.168.2.49.yaml",
            "error",
            "it IS the USB stick now"
        ),
        "{f:#?}"
    );
    let l4 = f
        .iter()
        .find(|x| x["message"].as_str().unwrap().contains("IS the USB stick"))
        .unwrap();
    assert!(l4["line"].as_u64().unwrap() > 0 && l4["column"].as_u64().unwrap() > 0);

    // gpu-modules-missing: the NVIDIA image runs without the modules configured.
    let out = env.run(&[
        "lint",
        "--live",
        "--sim",
        "--scenario",
        "gpu-modules-missing",
        "--output",
        "json",
    ]);
    let f = json(&out);
    assert!(
        has(
            &f,
            "L2",
            "configs/192.168.2.20.yaml",
            "error",
            "lacks the kernel modules nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset"
        ),
        "{f:#?}"
    );
    // The healthy cluster has no live error (its configs' static findings stay).
    let out = env.run(&["lint", "--live", "--sim", "--output", "json"]);
    let f = json(&out);
    assert!(
        !f.iter()
            .any(|x| x["file"].as_str().unwrap().starts_with("live:") && x["severity"] == "error"),
        "{f:#?}"
    );
}

#[test]
fn a_role_that_may_read_nothing_gives_error_findings_not_a_clean_lint() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, env.path());
    let sim = env.path().join("sim");
    let talosconfig = handle
        .talosconfig_for(Role::EtcdBackup)
        .display()
        .to_string();
    let endpoints = sim.join("endpoints.json").display().to_string();
    let out = env.run(&[
        "lint",
        "--live",
        "--output",
        "json",
        "--talosconfig",
        &talosconfig,
        "--node-endpoints",
        &endpoints,
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let f = json(&out);
    let cannot: Vec<&serde_json::Value> = f
        .iter()
        .filter(|x| {
            x["severity"] == "error" && x["message"].as_str().unwrap().contains("cannot check")
        })
        .collect();
    assert!(cannot.len() >= 3, "{f:#?}");
    // Without --inventory, the comparison with the configs is said not to have been made.
    assert!(
        has(&f, "L1", "live:cluster", "warning", "without --inventory"),
        "{f:#?}"
    );
    rt.block_on(handle.shutdown());
}
