//! Server-side apply against the simulator's Kubernetes API with the clients that really
//! use it: kube-rs `Patch::Apply` (what `kube.apply` sends) and the real `kubectl apply
//! --server-side`; RuntimeClasses and DaemonSets, the DaemonSet controller's pods, field
//! manager conflicts, repeated applies that change nothing, and `kube.apply` itself from a
//! runbook (file manifests, a second run that changes nothing).

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use runbook::sim::kube_api::{self, KubeApiHandle};
use runbook::sim::{Scenario, SharedCluster, Speed};
use serde_json::json;

use crate::run_harness::text;

struct Sim {
    handle: KubeApiHandle,
    shared: SharedCluster,
    client: Client,
    dir: tempfile::TempDir,
}

async fn sim(scenario: Scenario) -> Sim {
    let cluster = scenario.build(Speed::new(100.0).unwrap()).unwrap();
    let shared = SharedCluster::new(cluster);
    let dir = tempfile::tempdir().unwrap();
    let handle = kube_api::start(shared.clone(), dir.path()).await.unwrap();
    let text = std::str::from_utf8(&handle.kubeconfig_bytes).unwrap();
    let kc = Kubeconfig::from_yaml(text).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    Sim {
        handle,
        shared,
        client,
        dir,
    }
}

fn applies(shared: &SharedCluster) -> Vec<String> {
    shared.with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "ApplyObject")
            .map(|r| r.node.clone())
            .collect()
    })
}

fn runtime_class(handler: &str) -> serde_json::Value {
    json!({ "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": { "name": "nvidia" }, "handler": handler })
}

fn device_plugin(selector: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "nvidia-device-plugin", "namespace": "kube-system" },
        "spec": {
            "selector": { "matchLabels": { "name": "nvidia-device-plugin" } },
            "template": {
                "metadata": { "labels": { "name": "nvidia-device-plugin" } },
                "spec": {
                    "runtimeClassName": "nvidia",
                    "nodeSelector": selector,
                    "containers": [ { "name": "ctr", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.1" } ]
                }
            }
        }
    })
}

#[tokio::test]
async fn kube_rs_applies_a_runtime_class_once_and_a_repeat_changes_nothing() {
    let sim = sim(Scenario::Healthy).await;
    let api: Api<RuntimeClass> = Api::all(sim.client.clone());
    let pp = PatchParams::apply("runbook");
    let first = api
        .patch("nvidia", &pp, &Patch::Apply(runtime_class("nvidia")))
        .await
        .unwrap();
    assert_eq!(first.handler, "nvidia");
    let managers = first.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(managers.len(), 1, "{managers:?}");
    assert_eq!(managers[0].manager.as_deref(), Some("runbook"));
    assert_eq!(managers[0].operation.as_deref(), Some("Apply"));
    let again = api
        .patch("nvidia", &pp, &Patch::Apply(runtime_class("nvidia")))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, first.metadata.resource_version,
        "a no-op apply keeps the resourceVersion"
    );
    assert_eq!(applies(&sim.shared), vec!["RuntimeClass//nvidia"]);
    // A dry run previews a change without making it.
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::apply("runbook")
    };
    let preview = api
        .patch("nvidia", &dry, &Patch::Apply(runtime_class("runc")))
        .await
        .unwrap();
    assert_eq!(preview.handler, "runc");
    assert_eq!(api.get("nvidia").await.unwrap().handler, "nvidia");
    assert_eq!(applies(&sim.shared).len(), 1);
    sim.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_field_manager_conflicts_unless_it_forces() {
    let sim = sim(Scenario::Healthy).await;
    let api: Api<RuntimeClass> = Api::all(sim.client.clone());
    api.patch(
        "nvidia",
        &PatchParams::apply("operator"),
        &Patch::Apply(runtime_class("nvidia")),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "nvidia",
            &PatchParams::apply("runbook"),
            &Patch::Apply(runtime_class("runc")),
        )
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409, "{s:?}");
            assert!(s.message.contains("conflict with \"operator\""), "{s:?}");
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let forced = api
        .patch(
            "nvidia",
            &PatchParams::apply("runbook").force(),
            &Patch::Apply(runtime_class("runc")),
        )
        .await
        .unwrap();
    assert_eq!(forced.handler, "runc");
    sim.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_objects_and_unknown_namespaces_are_refused_like_the_api_server() {
    let sim = sim(Scenario::Healthy).await;
    let rc: Api<RuntimeClass> = Api::all(sim.client.clone());
    let mut no_handler = runtime_class("nvidia");
    no_handler.as_object_mut().unwrap().remove("handler");
    let e = rc
        .patch(
            "nvidia",
            &PatchParams::apply("t"),
            &Patch::Apply(no_handler),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 422 || s.code == 400),
        "{e:?}"
    );
    let ds: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "nowhere");
    let mut obj = device_plugin(json!({}));
    obj["metadata"]["namespace"] = json!("nowhere");
    let e = ds
        .patch(
            "nvidia-device-plugin",
            &PatchParams::apply("t"),
            &Patch::Apply(obj),
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 404), "{e:?}");
    let ds: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "kube-system");
    let mut mismatched = device_plugin(json!({}));
    mismatched["spec"]["selector"]["matchLabels"] = json!({ "name": "other" });
    let e = ds
        .patch(
            "nvidia-device-plugin",
            &PatchParams::apply("t"),
            &Patch::Apply(mismatched),
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 422), "{e:?}");
    assert!(applies(&sim.shared).is_empty());
    sim.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_device_plugin_runs_only_under_its_runtime_class_and_then_the_gpu_is_allocatable() {
    let sim = sim(Scenario::Healthy).await;
    let ds: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "kube-system");
    let pp = PatchParams::apply("runbook");
    let applied = ds
        .patch(
            "nvidia-device-plugin",
            &pp,
            &Patch::Apply(device_plugin(json!({ "kubernetes.io/hostname": "nuc-20" }))),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "kube-system");
    let on_nuc = || async {
        pods.list(&ListParams::default().fields("spec.nodeName=nuc-20"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.metadata.owner_references.iter().flatten().any(|o| {
                    o.name == "nvidia-device-plugin"
                        && Some(&o.uid) == applied.metadata.uid.as_ref()
                })
            })
            .collect::<Vec<_>>()
    };
    let pending = on_nuc().await;
    assert_eq!(pending.len(), 1, "one pod on the selected node");
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(
        phase(&pending[0]).as_deref(),
        Some("Pending"),
        "no RuntimeClass yet"
    );
    let status = ds
        .get("nvidia-device-plugin")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (status.desired_number_scheduled, status.number_ready),
        (1, 0)
    );
    Api::<RuntimeClass>::all(sim.client.clone())
        .patch("nvidia", &pp, &Patch::Apply(runtime_class("nvidia")))
        .await
        .unwrap();
    let running = on_nuc().await;
    assert_eq!(phase(&running[0]).as_deref(), Some("Running"));
    let status = ds
        .get("nvidia-device-plugin")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.number_available, Some(1));
    assert_eq!(status.observed_generation, Some(1));
    // The healthy seed loads the nvidia modules on the NUC: the plugin registers the GPU.
    let node = Api::<Node>::all(sim.client.clone())
        .get("nuc-20")
        .await
        .unwrap();
    let alloc = node.status.unwrap().allocatable.unwrap();
    assert_eq!(alloc.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("1"));
    // No other node has a GPU or a plugin pod.
    for other in ["mac-223", "mac-49"] {
        if let Ok(n) = Api::<Node>::all(sim.client.clone()).get(other).await {
            let a = n.status.unwrap().allocatable.unwrap();
            assert!(!a.contains_key("nvidia.com/gpu"), "{other}");
        }
    }
    sim.handle.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The real kubectl
// ---------------------------------------------------------------------------------------

fn kubectl_bin() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl must be installed for this test (it fails rather than skips)")
}

async fn kubectl(dir: &Path, args: &[&str]) -> Output {
    let bin = kubectl_bin();
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(&bin)
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(&args)
            .env("HOME", &dir)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl")
    })
    .await
    .expect("the kubectl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_server_side_and_lists_runtime_classes_and_daemonsets() {
    let sim = sim(Scenario::Healthy).await;
    let dir = sim.dir.path().to_path_buf();
    let manifest = dir.join("gpu.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: nvidia
handler: nvidia
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: nvidia-device-plugin
  namespace: kube-system
spec:
  selector:
    matchLabels:
      name: nvidia-device-plugin
  template:
    metadata:
      labels:
        name: nvidia-device-plugin
    spec:
      runtimeClassName: nvidia
      nodeSelector:
        kubernetes.io/hostname: nuc-20
      containers:
        - name: ctr
          image: nvcr.io/nvidia/k8s-device-plugin:v0.17.1
",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let out = kubectl(&dir, &["apply", "--server-side", "-f", m]).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("runtimeclass.node.k8s.io/nvidia serverside-applied"),
        "{all}"
    );
    assert!(
        all.contains("daemonset.apps/nvidia-device-plugin serverside-applied"),
        "{all}"
    );
    let out = kubectl(&dir, &["get", "runtimeclass", "nvidia"]).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("HANDLER") && all.contains("nvidia"), "{all}");
    let out = kubectl(&dir, &["get", "ds", "-A"]).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let line = all
        .lines()
        .find(|l| l.contains("nvidia-device-plugin"))
        .unwrap_or_else(|| panic!("{all}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], "kube-system", "{line}");
    assert_eq!(&cols[2..7], ["1", "1", "1", "1", "1"], "{line}");
    assert!(
        all.contains("kube-proxy"),
        "the system DaemonSets are listed too: {all}"
    );
    // Applying the same file again changes nothing.
    let before = applies(&sim.shared).len();
    let out = kubectl(&dir, &["apply", "--server-side", "-f", m]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        applies(&sim.shared).len(),
        before,
        "a repeat apply writes nothing"
    );
    // A second manager taking the handler conflicts, as on a real cluster.
    let rc = dir.join("rc.yaml");
    std::fs::write(&rc, serde_json::to_string(&runtime_class("runc")).unwrap()).unwrap();
    let out = kubectl(
        &dir,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            rc.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("conflict"), "{}", text(&out));
    sim.handle.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// `kube.apply` in a runbook
// ---------------------------------------------------------------------------------------

#[test]
fn kube_apply_from_a_file_creates_once_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let sim = dir.path().join("sim");
    let manifests = dir.path().join("m.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: nvidia\n---\n",
    )
    .unwrap();
    let book = dir.path().join("apply.yaml");
    std::fs::write(
        &book,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: apply\nsteps:\n  - id: rc\n    action: kube.apply\n    with:\n      file: {}\n    wait:\n      condition: kube.present\n      with: {{ kind: RuntimeClass, name: nvidia, field: .handler, value: nvidia }}\n",
            manifests.display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str], state: &str| {
        let mut args = vec![
            "run".to_string(),
            book.display().to_string(),
            "--talosconfig".into(),
            sim.join("talosconfig").display().to_string(),
            "--kubeconfig".into(),
            sim.join("kubeconfig").display().to_string(),
            "--output".into(),
            "plain".into(),
            "--state-dir".into(),
            dir.path().join(state).display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(&args)
            .env("HOME", dir.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&[], "s1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("RuntimeClass/nvidia created"),
        "{}",
        text(&out)
    );
    let out = run(&[], "s2");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("RuntimeClass/nvidia unchanged"),
        "{}",
        text(&out)
    );
    assert_eq!(applies(handle.cluster()), vec!["RuntimeClass//nvidia"]);
    rt.block_on(handle.shutdown());
}

/// Runs `book` against the simulator in `dir/sim` (Talos and Kubernetes), plain output.
fn run_book(dir: &Path, book: &Path, state: &str) -> Output {
    let sim = dir.join("sim");
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", book.to_str().unwrap(), "--talosconfig"])
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
        .unwrap()
}

#[test]
fn kube_apply_dry_run_shows_the_change_and_rollout_waits_for_the_daemonset() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let book = dir.path().join("ds.yaml");
    std::fs::write(
        &book,
        r#"apiVersion: runbook/v1
kind: Runbook
metadata:
  name: ds
steps:
  - id: rc
    action: kube.apply
    with:
      manifests: { apiVersion: node.k8s.io/v1, kind: RuntimeClass, metadata: { name: nvidia }, handler: nvidia }
  - id: preview
    action: kube.apply
    with:
      dry_run: true
      manifests: { apiVersion: node.k8s.io/v1, kind: RuntimeClass, metadata: { name: nvidia }, handler: nvidia2 }
  - id: ds
    action: kube.apply
    with:
      namespace: kube-system
      manifests:
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: { name: agent }
        spec:
          selector: { matchLabels: { app: agent } }
          template:
            metadata: { labels: { app: agent } }
            spec:
              containers: [ { name: a, image: "registry.example/agent:1" } ]
    wait:
      condition: kube.rollout
      with: { kind: DaemonSet, namespace: kube-system, name: agent }
      timeout: 2m
"#,
    )
    .unwrap();
    let out = run_book(dir.path(), &book, "s");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("RuntimeClass/nvidia: ~ .handler: \"nvidia\" -> \"nvidia2\""),
        "{t}"
    );
    assert!(t.contains("wait `kube.rollout` held"), "{t}");
    assert!(t.contains("3/3 updated and available"), "{t}");
    // The dry run wrote nothing: two objects, each applied once.
    assert_eq!(
        applies(handle.cluster()),
        vec!["RuntimeClass//nvidia", "DaemonSet/kube-system/agent"]
    );
    rt.block_on(handle.shutdown());
}

#[test]
fn kube_apply_errors_name_the_file_the_document_and_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let manifests = dir.path().join("m.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: nvidia\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\n",
    )
    .unwrap();
    let book = dir.path().join("bad.yaml");
    std::fs::write(
        &book,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: bad\nsteps:\n  - id: apply\n    action: kube.apply\n    with:\n      file: {}\n",
            manifests.display()
        ),
    )
    .unwrap();
    let out = run_book(dir.path(), &book, "s");
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    let m = manifests.display().to_string();
    assert!(
        t.contains(&format!("{m} document 2 (Widget default/w1)")),
        "{t}"
    );
    assert!(t.contains("does not serve example.com/v1 Widget"), "{t}");
    rt.block_on(handle.shutdown());
}
