//! The custom runbook docs/runbooks.md walks through (`docs/examples/gpu-node.yaml`) does what
//! the page says, against the simulator: `exec`'s stdout reaches a later step, `talos.patch`
//! sends one ApplyConfiguration and nothing when run again, `kube.apply` writes the
//! RuntimeClass once, and kubectl sees it with the ticket the `exec` step produced.

use std::path::Path;
use std::process::{Command, Output};

use runbook::sim::Scenario;
use runbook::sim::scenario::NUC_20;

use crate::run_harness::{kubectl, simulator, successful_calls as calls, text};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/gpu-node.yaml")
}

fn run(dir: &Path, state: &str) -> Output {
    let sim = dir.join("sim");
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("run")
        .arg(example())
        .args(["--param", "ticket=CHG 1/2"])
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.join("kubeconfig"))
        .args(["--output", "plain", "--state-dir"])
        .arg(dir.join(state))
        .env("HOME", dir)
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the runbook binary")
}

#[test]
fn the_documented_custom_runbook_uses_exec_output_patches_once_and_applies_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("check")
        .arg(example())
        .output()
        .expect("run the runbook binary");
    assert!(out.status.success(), "{}", text(&out));

    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::GpuModulesMissing, 200.0, dir.path());
    let shared = handle.cluster().clone();
    let out = run(dir.path(), "state");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("defaulted from the cluster: node = {NUC_20}")),
        "{t}"
    );
    assert_eq!(calls(&shared, "ApplyConfiguration"), vec![NUC_20], "{t}");
    assert_eq!(
        calls(&shared, "ApplyObject"),
        vec!["RuntimeClass//nvidia"],
        "{t}"
    );
    shared.with(|c, now| {
        c.advance_to(now);
        let n = c.node(NUC_20).unwrap();
        assert!(n.loaded_modules().iter().any(|m| m.name == "nvidia"));
    });

    // kubectl sees the RuntimeClass, annotated with what the exec step printed (sanitized).
    let out = kubectl(
        dir.path(),
        &[
            "get",
            "runtimeclass",
            "nvidia",
            "-o",
            "jsonpath={.handler} {.metadata.annotations.runbook\\.example/ticket}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nvidia CHG_1_2",
        "{}",
        text(&out)
    );

    // Again from scratch: the patch is already in the running config and the object is
    // unchanged, so nothing is sent or written.
    let out = run(dir.path(), "state2");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(calls(&shared, "ApplyConfiguration").len(), 1, "{t}");
    assert_eq!(calls(&shared, "ApplyObject").len(), 1, "{t}");
    assert!(t.contains("RuntimeClass/nvidia unchanged"), "{t}");
    rt.block_on(handle.shutdown());
}

/// `runbook run --dry-run` against a cluster shows what a `kube.apply` step would write (the
/// API server's own dry run) and writes nothing; arguments known only at run time say so.
#[test]
fn a_dry_run_against_the_cluster_previews_kube_apply_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = simulator(Scenario::Healthy, 200.0, dir.path());
    let shared = handle.cluster().clone();
    let book = dir.path().join("rc.yaml");
    std::fs::write(
        &book,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: rc\nsteps:\n  - id: rc\n    action: kube.apply\n    with:\n      manifests: { apiVersion: node.k8s.io/v1, kind: RuntimeClass, metadata: { name: nvidia }, handler: nvidia }\n",
    )
    .unwrap();
    let sim = dir.path().join("sim");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("run")
        .arg(&book)
        .arg("--dry-run")
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.join("kubeconfig"))
        .args(["--output", "plain", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("HOME", dir.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the runbook binary");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("would create"), "{t}");
    assert!(calls(&shared, "ApplyObject").is_empty(), "{t}");
    let out = kubectl(dir.path(), &["get", "runtimeclass", "nvidia"]);
    assert!(!out.status.success(), "{}", text(&out));

    // The documented example's RuntimeClass carries an exec step's output: known only when
    // the run gets there.
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("run")
        .arg(example())
        .arg("--dry-run")
        .arg("--talosconfig")
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.join("kubeconfig"))
        .args([
            "--param",
            "node=192.168.2.20",
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
        .expect("run the runbook binary");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("`kube.apply`: its arguments are known only at run time"),
        "{t}"
    );
    assert!(calls(&shared, "ApplyObject").is_empty(), "{t}");
    assert!(calls(&shared, "ApplyConfiguration").is_empty(), "{t}");
    rt.block_on(handle.shutdown());
}
