//! The simulator's Kubernetes API server, driven by the clients that will really use it: the
//! `kube` crate (built from the kubeconfig the server writes) and, where installed, `kubectl`.
//!
//! Each test builds a scenario at high speed, starts a server on 127.0.0.1:0 in a temporary
//! directory, acts through the client, checks the effect in the model, and shuts the server
//! down. Waiting is bounded polling with a message saying what was awaited; no test asserts on
//! elapsed time.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget as KubePdb;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::WatchEvent;
use kube::{Client, Config};
use runbook::sim::cluster::PodDisruptionBudget;
use runbook::sim::kube_api::{self, KubeApiHandle};
use runbook::sim::scenario::NUC_20;
use runbook::sim::{Scenario, SharedCluster, Speed, Stage};

/// A running simulator with a kube client; `stop` shuts the server down.
struct Sim {
    handle: KubeApiHandle,
    shared: SharedCluster,
    client: Client,
    dir: tempfile::TempDir,
}

async fn client_from(kubeconfig: &[u8]) -> Client {
    let text = std::str::from_utf8(kubeconfig).expect("the kubeconfig is UTF-8");
    let kc = Kubeconfig::from_yaml(text).expect("the kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    // kube 5 retries 429 and 503 up to 15 times with exponential backoff (minutes); these
    // tests assert the first answer.
    config.default_retry = false;
    Client::try_from(config).expect("a kube client")
}

async fn sim_with(scenario: Scenario, setup: impl FnOnce(&SharedCluster)) -> Sim {
    let cluster = scenario
        .build(Speed::new(100.0).expect("a valid speed"))
        .expect("the scenario builds");
    let shared = SharedCluster::new(cluster);
    setup(&shared);
    let dir = tempfile::tempdir().expect("a temp dir");
    let handle = kube_api::start(shared.clone(), dir.path())
        .await
        .expect("the Kubernetes API server starts");
    assert_eq!(handle.kubeconfig_path, dir.path().join("kubeconfig"));
    assert!(handle.addr.ip().is_loopback());
    let client = client_from(&handle.kubeconfig_bytes).await;
    Sim {
        handle,
        shared,
        client,
        dir,
    }
}

async fn sim(scenario: Scenario) -> Sim {
    sim_with(scenario, |_| {}).await
}

impl Sim {
    async fn stop(self) {
        self.handle
            .shutdown()
            .await
            .expect("the server shuts down cleanly");
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn unschedulable_in_model(&self, name: &str) -> bool {
        self.shared
            .with(|c, now| c.k8s_get_node(name, now))
            .expect("the model has the node")
            .unschedulable
    }

    /// Successful calls of `method` in the model's call log.
    fn calls(&self, method: &str) -> Vec<String> {
        self.shared.with(|c, _| {
            c.call_log()
                .iter()
                .filter(|r| r.method == method && r.result.is_ok())
                .map(|r| r.node.clone())
                .collect()
        })
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn ready(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn sim_kube_lists_and_gets_nodes_as_the_model_has_them() {
    let sim = sim(Scenario::Healthy).await;
    let nodes = sim
        .nodes()
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let mut names: Vec<String> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["mac-223", "mac-49", "nuc-20"]);
    assert_eq!(nodes.items.len(), 3, "{names:?}");
    for n in &nodes.items {
        assert_eq!(ready(n).as_deref(), Some("True"), "{:?}", n.metadata.name);
        assert!(n.metadata.resource_version.is_some() && n.metadata.uid.is_some());
        assert!(n.metadata.creation_timestamp.is_some());
    }
    assert!(nodes.metadata.resource_version.is_some());

    let nuc = sim.nodes().get("nuc-20").await.expect("get nuc-20");
    let labels = nuc.metadata.labels.clone().unwrap_or_default();
    assert!(
        labels.contains_key("node-role.kubernetes.io/control-plane"),
        "{labels:?}"
    );
    let status = nuc.status.clone().expect("status");
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == NUC_20),
        "{addresses:?}"
    );
    let info = status.node_info.expect("nodeInfo");
    assert_eq!(info.kubelet_version, "v1.34.1");
    assert!(info.os_image.starts_with("Talos"), "{}", info.os_image);
    assert_eq!(nuc.spec.and_then(|s| s.unschedulable), None);

    let missing = sim.nodes().get("nope").await.expect_err("no such node");
    assert_eq!(api_code(&missing), Some(404), "{missing:?}");
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_cordon_and_uncordon_reach_the_model() {
    let sim = sim(Scenario::Healthy).await;
    let nodes = sim.nodes();

    // kube-rs' own helpers: strategic merge patches.
    let cordoned = nodes.cordon("mac-223").await.expect("cordon");
    assert_eq!(
        cordoned.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true)
    );
    assert!(sim.unschedulable_in_model("mac-223"));
    let taints = cordoned.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unschedulable")
    );
    nodes.uncordon("mac-223").await.expect("uncordon");
    assert!(!sim.unschedulable_in_model("mac-223"));

    // Merge patch, JSON patch and server-side apply, as other callers send them.
    let pp = PatchParams::default();
    let merge = serde_json::json!({"spec": {"unschedulable": true}});
    nodes
        .patch("nuc-20", &pp, &Patch::Merge(&merge))
        .await
        .expect("merge patch");
    assert!(sim.unschedulable_in_model("nuc-20"));
    // kube's `Patch::Json` needs a crate feature this project does not enable: send it raw.
    let remove = br#"[{"op":"test","path":"/spec/unschedulable","value":true},{"op":"remove","path":"/spec/unschedulable"}]"#;
    let req = http::Request::patch("/api/v1/nodes/nuc-20")
        .header("Content-Type", "application/json-patch+json")
        .body(remove.to_vec())
        .expect("a request");
    let patched: Node = sim.client.request(req).await.expect("JSON patch");
    assert_eq!(patched.spec.and_then(|s| s.unschedulable), None);
    assert!(!sim.unschedulable_in_model("nuc-20"));
    let apply = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "mac-49"}, "spec": {"unschedulable": true}
    });
    nodes
        .patch(
            "mac-49",
            &PatchParams::apply("runbook"),
            &Patch::Apply(&apply),
        )
        .await
        .expect("server-side apply");
    assert!(sim.unschedulable_in_model("mac-49"));

    // A field the model cannot change is refused, not silently dropped.
    let labels = serde_json::json!({"metadata": {"labels": {"x": "y"}}});
    let e = nodes
        .patch("nuc-20", &pp, &Patch::Merge(&labels))
        .await
        .expect_err("label patches are not supported");
    assert_eq!(api_code(&e), Some(422), "{e:?}");

    assert_eq!(
        sim.calls("PatchNode"),
        ["mac-223", "mac-223", "nuc-20", "nuc-20", "mac-49"]
    );
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_delete_node_removes_it_from_the_model() {
    let sim = sim(Scenario::Healthy).await;
    let nodes = sim.nodes();
    let status = nodes
        .delete("mac-49", &DeleteParams::default())
        .await
        .expect("delete mac-49");
    assert!(status.is_right(), "a Status answers a node deletion");
    let e = sim
        .shared
        .with(|c, now| c.k8s_get_node("mac-49", now))
        .expect_err("the model no longer has the node");
    assert_eq!(e.status, 404);
    let left = nodes.list(&ListParams::default()).await.expect("list");
    assert_eq!(left.items.len(), 2);
    let again = nodes
        .delete("mac-49", &DeleteParams::default())
        .await
        .expect_err("gone");
    assert_eq!(api_code(&again), Some(404));
    assert_eq!(sim.calls("DeleteNode"), ["mac-49"]);
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_pods_by_node_include_daemonset_and_mirror_pods() {
    let sim = sim(Scenario::Healthy).await;
    let all: Api<Pod> = Api::all(sim.client.clone());
    let on_nuc = all
        .list(&ListParams::default().fields("spec.nodeName=nuc-20"))
        .await
        .expect("list pods on nuc-20");
    assert!(!on_nuc.items.is_empty());
    for p in &on_nuc.items {
        assert_eq!(
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("nuc-20")
        );
    }
    let owner_kinds: Vec<String> = on_nuc
        .items
        .iter()
        .flat_map(|p| p.metadata.owner_references.clone().unwrap_or_default())
        .map(|o| o.kind)
        .collect();
    assert!(
        owner_kinds.iter().any(|k| k == "DaemonSet"),
        "{owner_kinds:?}"
    );
    let mirror = on_nuc
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        })
        .count();
    assert_eq!(
        mirror, 3,
        "kube-apiserver, -controller-manager and -scheduler"
    );

    let everywhere = all.list(&ListParams::default()).await.expect("all pods");
    assert!(everywhere.items.len() > on_nuc.items.len());
    let kube_system: Api<Pod> = Api::namespaced(sim.client.clone(), "kube-system");
    let ks = kube_system
        .list(&ListParams::default())
        .await
        .expect("kube-system pods");
    let in_ks = everywhere
        .items
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some("kube-system"))
        .count();
    assert_eq!(ks.items.len(), in_ks);
    assert!(
        in_ks < everywhere.items.len(),
        "the scenario has pods outside kube-system"
    );
    let one = ks.items[0].metadata.name.clone().expect("a name");
    kube_system.get(&one).await.expect("get one pod");

    let bad = all
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .expect_err("unknown field selector");
    assert_eq!(api_code(&bad), Some(400));
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_eviction_honours_pod_disruption_budgets() {
    let sim = sim_with(Scenario::Healthy, |shared| {
        shared.with(|c, _| {
            c.add_deployment_pods("default", "web", "web-6b7f9c8d5", &["nuc-20", "mac-223"]);
            c.add_pdb(PodDisruptionBudget {
                namespace: "default".into(),
                name: "web".into(),
                app: "web".into(),
                min_available: 2,
            });
            c.clear_call_log();
        });
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let web = pods
        .list(&ListParams::default().fields("spec.nodeName=nuc-20"))
        .await
        .expect("web pods on nuc-20");
    assert_eq!(web.items.len(), 1);
    let name = web.items[0].metadata.name.clone().expect("a name");

    let pdbs: Api<KubePdb> = Api::namespaced(sim.client.clone(), "default");
    let pdb = pdbs.get("web").await.expect("the PDB is served");
    assert_eq!(pdb.status.map(|s| s.disruptions_allowed), Some(0));

    let blocked = pods
        .evict(&name, &EvictParams::default())
        .await
        .expect_err("the PDB blocks the eviction");
    match &blocked {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429);
            assert_eq!(s.reason, "TooManyRequests");
            let causes = s
                .details
                .as_ref()
                .map(|d| d.causes.clone())
                .unwrap_or_default();
            assert!(
                causes.iter().any(|c| c.reason == "DisruptionBudget"
                    && c.message.contains("needs 2 healthy pods")),
                "{causes:?}"
            );
        }
        other => panic!("expected a 429 Status, got {other:?}"),
    }
    pods.get(&name).await.expect("the pod is still there");

    // Without the budget's constraint (a DaemonSet pod has none) the eviction goes through.
    let system: Api<Pod> = Api::namespaced(sim.client.clone(), "kube-system");
    let proxy = system
        .list(&ListParams::default().fields("spec.nodeName=mac-223"))
        .await
        .expect("pods on mac-223")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .find(|n| n.starts_with("kube-proxy-"))
        .expect("a kube-proxy pod on mac-223");
    let ok = system
        .evict(&proxy, &EvictParams::default())
        .await
        .expect("evict");
    assert!(ok.is_success(), "{ok:?}");
    let gone = system
        .get(&proxy)
        .await
        .expect_err("the evicted pod is gone");
    assert_eq!(api_code(&gone), Some(404));

    assert_eq!(sim.calls("EvictPod"), [proxy], "evicted exactly once");
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_serves_node_leases() {
    let sim = sim(Scenario::Healthy).await;
    let leases: Api<Lease> = Api::namespaced(sim.client.clone(), "kube-node-lease");
    let list = leases
        .list(&ListParams::default())
        .await
        .expect("list leases");
    assert_eq!(list.items.len(), 3);
    let lease = leases.get("mac-49").await.expect("get a lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("mac-49"));
    assert!(spec.renew_time.is_some());
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_watch_sees_a_cordon_as_modified() {
    let sim = sim(Scenario::Healthy).await;
    let nodes = sim.nodes();
    let list = nodes.list(&ListParams::default()).await.expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    let stream = nodes
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .expect("watch");
    let mut stream = Box::pin(stream);
    nodes.cordon("mac-49").await.expect("cordon");
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = stream.try_next().await.expect("a watch event") {
            if let WatchEvent::Modified(n) = ev
                && n.metadata.name.as_deref() == Some("mac-49")
            {
                return Some(n);
            }
        }
        None
    })
    .await
    .expect("a MODIFIED event for mac-49 within 30 s")
    .expect("the watch stayed open until the event");
    assert_eq!(event.spec.and_then(|s| s.unschedulable), Some(true));

    // From "now" (no version): synthetic ADDED events for the current nodes.
    let fresh = nodes
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch from 0");
    let added: Vec<_> = Box::pin(fresh).take(3).collect().await;
    assert!(
        added.iter().all(|e| matches!(e, Ok(WatchEvent::Added(_)))),
        "{added:?}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_gpu_modules_missing_is_ready_while_talos_is_booting() {
    let sim = sim(Scenario::GpuModulesMissing).await;
    let nuc = sim.nodes().get("nuc-20").await.expect("get nuc-20");
    assert_eq!(
        ready(&nuc).as_deref(),
        Some("True"),
        "Kubernetes says Ready"
    );
    let stage = sim
        .shared
        .with(|c, _| c.node(NUC_20).map(|n| n.stage()))
        .expect("the model has .20");
    assert_eq!(stage, Stage::Booting, "while Talos is still booting");
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_quorum_lost_answers_503() {
    let sim = sim(Scenario::QuorumLost).await;
    let e = sim
        .nodes()
        .list(&ListParams::default())
        .await
        .expect_err("no API server can answer without etcd quorum");
    assert_eq!(api_code(&e), Some(503), "{e:?}");
    // Discovery is in memory, as on a real kube-apiserver.
    sim.client
        .apiserver_version()
        .await
        .expect("/version still answers");
    sim.stop().await;
}

#[tokio::test]
async fn sim_kube_refuses_requests_without_a_client_certificate() {
    let sim = sim(Scenario::Healthy).await;
    let text = std::str::from_utf8(&sim.handle.kubeconfig_bytes).expect("UTF-8");
    let kc = Kubeconfig::from_yaml(text).expect("parses");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    config.default_retry = false;
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key_data = None;
    let anonymous = Client::try_from(config).expect("client");
    let e = Api::<Node>::all(anonymous)
        .list(&ListParams::default())
        .await
        .expect_err("anonymous requests are refused");
    assert_eq!(api_code(&e), Some(401), "{e:?}");
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------
// The real kubectl
// ---------------------------------------------------------------------------------------

fn find_kubectl() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

async fn kubectl(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    let (bin, dir) = (bin.to_path_buf(), dir.to_path_buf());
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

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sim_kube_real_kubectl_gets_cordons_and_uncordons() {
    let Some(bin) = find_kubectl() else {
        eprintln!("kubectl not found: skipping the kubectl test");
        return;
    };
    let sim = sim(Scenario::Healthy).await;
    let dir = sim.dir.path().to_path_buf();

    let out = kubectl(&bin, &dir, &["get", "nodes"]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("$ kubectl get nodes\n{stdout}{stderr}");
    assert!(out.status.success(), "kubectl get nodes failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(lines.len(), 4, "{stdout}");
    for line in &lines[1..] {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "Ready", "{line}");
        assert_eq!(cols[2], "control-plane", "{line}");
        assert_eq!(cols[4], "v1.34.1", "{line}");
    }

    let out = kubectl(&bin, &dir, &["cordon", "mac-223"]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("$ kubectl cordon mac-223\n{stdout}{stderr}");
    assert!(out.status.success(), "kubectl cordon failed: {stderr}");
    assert_eq!(stdout.trim(), "node/mac-223 cordoned");
    assert!(sim.unschedulable_in_model("mac-223"));

    let out = kubectl(&bin, &dir, &["get", "node", "mac-223"]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("$ kubectl get node mac-223\n{stdout}{stderr}");
    assert!(
        stdout.contains("Ready,SchedulingDisabled"),
        "{stdout}{stderr}"
    );

    let out = kubectl(&bin, &dir, &["uncordon", "mac-223"]).await;
    let (stdout, stderr) = text(&out);
    eprintln!("$ kubectl uncordon mac-223\n{stdout}{stderr}");
    assert!(out.status.success(), "kubectl uncordon failed: {stderr}");
    assert_eq!(stdout.trim(), "node/mac-223 uncordoned");
    assert!(!sim.unschedulable_in_model("mac-223"));

    let out = kubectl(&bin, &dir, &["get", "node", "nope"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Error from server (NotFound): nodes \"nope\" not found"),
        "{stderr}"
    );
    assert_eq!(sim.calls("PatchNode"), ["mac-223", "mac-223"]);

    // Drain: cordon, list the node's pods by field selector, look up DaemonSets, skip mirror
    // pods, evict the rest through policy/v1 and wait for them to go.
    let on_mac49: Vec<String> = sim
        .shared
        .with(|c, now| c.k8s_list_pods(Some("mac-49"), now))
        .expect("pods")
        .into_iter()
        .filter(|p| matches!(p.owner, runbook::sim::cluster::PodOwner::ReplicaSet(_)))
        .map(|p| p.name)
        .collect();
    assert_eq!(
        on_mac49.len(),
        1,
        "the scenario runs one coredns replica on mac-49"
    );
    let out = kubectl(
        &bin,
        &dir,
        &["drain", "mac-49", "--ignore-daemonsets", "--timeout=60s"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    eprintln!("$ kubectl drain mac-49 --ignore-daemonsets --timeout=60s\n{stdout}{stderr}");
    assert!(out.status.success(), "kubectl drain failed: {stderr}");
    assert!(stdout.contains("node/mac-49 cordoned"), "{stdout}");
    assert!(
        stdout.contains(&format!("pod/{} evicted", on_mac49[0])),
        "{stdout}"
    );
    assert!(stdout.contains("node/mac-49 drained"), "{stdout}");
    assert!(
        stderr.contains("ignoring DaemonSet-managed Pods"),
        "{stderr}"
    );
    assert!(sim.unschedulable_in_model("mac-49"));
    assert_eq!(sim.calls("EvictPod"), on_mac49, "evicted exactly once");
    sim.stop().await;
}
