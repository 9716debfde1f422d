//! gpu-enable end to end, both halves, as issue 11's "done when" states it: on the
//! `gpu-modules-missing` scenario the built-in runbook ends with the nvidia modules loaded,
//! `ext-nvidia-persistenced` Running, the `nvidia` RuntimeClass answering real `kubectl`, the
//! device plugin's pod on the GPU node, `nvidia.com/gpu` allocatable, and the node back in
//! `running` after a cold reboot. Hostile variants: a second run changes nothing in
//! Kubernetes, and with no Kubernetes API the Kubernetes half refuses instead of passing.

use std::path::Path;
use std::process::{Command, Output};

use runbook::sim::Scenario;
use runbook::sim::node::ServiceState;
use runbook::sim::scenario::NUC_20;

use crate::run_harness::{kubectl, simulator, successful_calls as calls, text};

fn run_gpu_enable(dir: &Path, state: &str, kubeconfig: bool) -> Output {
    let sim = dir.join("sim");
    let mut args = vec![
        "run".to_string(),
        "gpu-enable".into(),
        "--talosconfig".into(),
        sim.join("talosconfig").display().to_string(),
        "--output".into(),
        "plain".into(),
        "--state-dir".into(),
        dir.join(state).display().to_string(),
    ];
    if kubeconfig {
        args.push("--kubeconfig".into());
        args.push(sim.join("kubeconfig").display().to_string());
    } else {
        // Without Kubernetes there is no cluster lock either: the operator says so.
        args.push("--no-cluster-lock".into());
        args.push("test: no Kubernetes API".into());
    }
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(&args)
        .env("HOME", dir)
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the runbook binary")
}

#[test]
fn gpu_enable_on_gpu_modules_missing_ends_with_the_gpu_schedulable_after_a_cold_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::GpuModulesMissing, 200.0, dir.path());
    let shared = handle.cluster().clone();
    // The symptom of the seed notes first: no modules, the extension service waits.
    shared.with(|c, _| {
        let n = c.node(NUC_20).unwrap();
        assert!(!n.loaded_modules().iter().any(|m| m.name == "nvidia"));
    });

    let out = run_gpu_enable(dir.path(), "state", true);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // No params: the node is the one with the NVIDIA PCI device, read from the cluster.
    assert!(
        t.contains(&format!("defaulted from the cluster: node = {NUC_20}")),
        "{t}"
    );
    assert!(t.contains("RuntimeClass/nvidia created"), "{t}");
    assert!(
        t.contains("DaemonSet/kube-system/nvidia-device-plugin created"),
        "{t}"
    );
    assert!(t.contains("wait `kube.pod-running` held"), "{t}");
    assert!(t.contains("nvidia.com/gpu` allocatable"), "{t}");
    assert!(t.contains("ok       gpu_after_reboot"), "{t}");

    // The Talos half: modules loaded, the extension service Running, stage running.
    shared.with(|c, now| {
        c.advance_to(now);
        let n = c.node(NUC_20).unwrap();
        assert!(
            n.loaded_modules().iter().any(|m| m.name == "nvidia"),
            "{:?}",
            n.loaded_modules()
        );
        let ext = n
            .services()
            .find(|s| s.id == "ext-nvidia-persistenced")
            .expect("the NVIDIA image has the extension service");
        assert_eq!(ext.state, ServiceState::Running);
    });
    // One cold reboot, of the GPU node only; each object applied exactly once.
    assert_eq!(calls(&shared, "Reboot"), vec![NUC_20]);
    assert_eq!(
        calls(&shared, "ApplyObject"),
        vec![
            "RuntimeClass//nvidia",
            "DaemonSet/kube-system/nvidia-device-plugin"
        ]
    );

    // What an operator checks with kubectl.
    let out = kubectl(dir.path(), &["get", "runtimeclass", "nvidia"]);
    let k = text(&out);
    assert!(out.status.success(), "{k}");
    assert!(k.contains("nvidia") && k.contains("HANDLER"), "{k}");
    let out = kubectl(
        dir.path(),
        &["get", "ds", "-n", "kube-system", "nvidia-device-plugin"],
    );
    let k = text(&out);
    assert!(out.status.success(), "{k}");
    let row: Vec<&str> = k
        .lines()
        .find(|l| l.starts_with("nvidia-device-plugin"))
        .unwrap_or_else(|| panic!("{k}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..6], ["1", "1", "1", "1", "1"], "{k}");
    let out = kubectl(
        dir.path(),
        &[
            "get",
            "node",
            "nuc-20",
            "-o",
            "jsonpath={.status.allocatable.nvidia\\.com/gpu}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1", "{}", text(&out));

    // A second run (the runbook re-run from scratch) applies nothing new: server-side apply of
    // the same objects is a no-op, so nothing is written.
    let out = run_gpu_enable(dir.path(), "state2", true);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("RuntimeClass/nvidia unchanged"), "{t}");
    assert_eq!(calls(&shared, "ApplyObject").len(), 2, "{t}");
    rt.block_on(handle.shutdown());
}

#[test]
fn without_a_kubernetes_api_kube_apply_fails_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::GpuModulesMissing, 200.0, dir.path());
    let book = dir.path().join("rc.yaml");
    std::fs::write(
        &book,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: rc\nsteps:\n  - id: rc\n    action: kube.apply\n    with:\n      manifests: { apiVersion: node.k8s.io/v1, kind: RuntimeClass, metadata: { name: nvidia }, handler: nvidia }\n",
    )
    .unwrap();
    let sim = dir.path().join("sim");
    // A kubeconfig whose API server does not answer (without any, one would be fetched from
    // the cluster with the Talos Kubeconfig call).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead_api = dir.path().join("kubeconfig-dead-api");
    let rewritten: String = std::fs::read_to_string(sim.join("kubeconfig"))
        .unwrap()
        .lines()
        .map(|l| match l.split_once("server: ") {
            Some((indent, _)) => format!("{indent}server: https://{closed}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&dead_api, rewritten).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", book.to_str().unwrap(), "--talosconfig"])
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(&dead_api)
        .args([
            "--no-cluster-lock",
            "test: no Kubernetes API",
            "--output",
            "plain",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .env("HOME", dir.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("cannot reach the Kubernetes API"), "{t}");
    assert!(calls(handle.cluster(), "ApplyObject").is_empty());
    rt.block_on(handle.shutdown());
}

/// Killed right after the device plugin's apply reached the server (the worst instant: the
/// journal does not know it happened), `resume` applies it again, which the server finds
/// unchanged: each object is written once, and the cold reboot happens once.
#[test]
fn killed_after_applying_the_device_plugin_resume_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::GpuModulesMissing, 200.0, dir.path());
    let sim = dir.path().join("sim");
    let state = dir.path().join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "gpu-enable", "--param", &format!("node={NUC_20}")])
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.join("kubeconfig"))
        .args(["--output", "plain", "--state-dir"])
        .arg(&state)
        .env("HOME", dir.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .env("RUNBOOK_TEST_KILL_IN_EFFECT", "kube.apply:2:after")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "run must die in kube.apply: {}",
        text(&out)
    );
    assert_eq!(calls(handle.cluster(), "ApplyObject").len(), 2);
    let mut log = String::new();
    let mut finished = false;
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["resume", "--output", "plain", "--state-dir"])
            .arg(&state)
            .env("HOME", dir.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        log.push_str(&text(&out));
        if out.status.code() == Some(0) {
            finished = true;
            break;
        }
    }
    assert!(finished, "resume did not finish:\n{log}");
    assert!(log.contains("nvidia-device-plugin unchanged"), "{log}");
    assert_eq!(
        calls(handle.cluster(), "ApplyObject"),
        vec![
            "RuntimeClass//nvidia",
            "DaemonSet/kube-system/nvidia-device-plugin"
        ],
        "{log}"
    );
    assert_eq!(calls(handle.cluster(), "Reboot"), vec![NUC_20], "{log}");
    rt.block_on(handle.shutdown());
}
