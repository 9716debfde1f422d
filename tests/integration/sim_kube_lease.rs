//! The simulator's Lease writes, driven by the clients that use them: kube-rs (as the engine's
//! cluster lock does) and the real `kubectl`. Create, replace and delete follow
//! kube-apiserver's optimistic concurrency: `409 AlreadyExists` on a second create, `409
//! Conflict` on a stale `resourceVersion` (update, or a delete precondition), `404` for an
//! update of a lease that does not exist, and node leases stay the kubelets'.
//!
//! The kubectl test fails (does not skip) when kubectl is missing.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use runbook::sim::kube_api::{self, KubeApiHandle};
use runbook::sim::{Scenario, SharedCluster, Speed};

struct Sim {
    handle: KubeApiHandle,
    client: Client,
    dir: tempfile::TempDir,
}

async fn sim() -> Sim {
    let cluster = Scenario::Healthy
        .build(Speed::new(100.0).expect("a valid speed"))
        .expect("the scenario builds");
    let shared = SharedCluster::new(cluster);
    let dir = tempfile::tempdir().expect("a temp dir");
    let handle = kube_api::start(shared, dir.path())
        .await
        .expect("the Kubernetes API server starts");
    let text = std::str::from_utf8(&handle.kubeconfig_bytes).expect("UTF-8");
    let kc = Kubeconfig::from_yaml(text).expect("the kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    config.default_retry = false;
    let client = Client::try_from(config).expect("a kube client");
    Sim {
        handle,
        client,
        dir,
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some([("runbook.dev/user".to_string(), "alice".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

fn status(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn sim_kube_lease_create_update_delete_with_resource_version_conflicts() {
    let sim = sim().await;
    let api: Api<Lease> = Api::namespaced(sim.client.clone(), "kube-system");
    let pp = PostParams::default();

    let created = api
        .create(&pp, &lease("lock", "a@h"))
        .await
        .expect("create");
    let rv1 = created.metadata.resource_version.clone().expect("an rv");
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.metadata.annotations.unwrap()["runbook.dev/user"],
        "alice"
    );

    // A second create of the same name: AlreadyExists.
    let e = api.create(&pp, &lease("lock", "b@h")).await.unwrap_err();
    assert_eq!(status(&e), (409, "AlreadyExists".into()));

    // Update with the current rv: accepted, new rv, same uid.
    let mut next = api.get("lock").await.expect("get");
    next.spec.as_mut().unwrap().holder_identity = Some("b@h".into());
    let updated = api.replace("lock", &pp, &next).await.expect("update");
    let rv2 = updated.metadata.resource_version.clone().unwrap();
    assert_ne!(rv1, rv2);
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // The same stale body again (rv1... now rv of `next` is stale): Conflict, nothing changed.
    let mut stale = next.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c@h".into());
    let e = api.replace("lock", &pp, &stale).await.unwrap_err();
    assert_eq!(status(&e), (409, "Conflict".into()));
    let now = api.get("lock").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b@h"));

    // Leases are not created by update; node leases are the kubelets'.
    let e = api
        .replace("nope", &pp, &lease("nope", "x"))
        .await
        .unwrap_err();
    assert_eq!(status(&e).0, 404);
    let nodes: Api<Lease> = Api::namespaced(sim.client.clone(), "kube-node-lease");
    let mut node = nodes.get("mac-49").await.expect("a node lease");
    node.spec.as_mut().unwrap().holder_identity = Some("thief".into());
    let e = nodes.replace("mac-49", &pp, &node).await.unwrap_err();
    assert_eq!(status(&e).0, 403);

    // Bad bodies: a namespace that is not the URL's, a non-positive duration.
    let mut other_ns = lease("x", "a");
    other_ns.metadata.namespace = Some("default".into());
    let e = api.create(&pp, &other_ns).await.unwrap_err();
    assert_eq!(status(&e).0, 400);
    let mut zero = lease("y", "a");
    zero.spec.as_mut().unwrap().lease_duration_seconds = Some(0);
    let e = api.create(&pp, &zero).await.unwrap_err();
    assert_eq!(status(&e), (422, "Invalid".into()));

    // Listed with the node leases' namespace left alone.
    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    // Delete with a stale precondition: Conflict; with the current one: gone.
    let stale_delete = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(rv1.clone()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let e = api.delete("lock", &stale_delete).await.unwrap_err();
    assert_eq!(status(&e), (409, "Conflict".into()));
    let current = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(rv2),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    api.delete("lock", &current).await.expect("delete");
    assert!(api.get_opt("lock").await.unwrap().is_none());
    sim.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn sim_kube_lease_two_writers_from_one_version_one_wins() {
    // The race the cluster lock relies on: two clients read the same free lease and both
    // try to take it; exactly one write lands.
    let sim = sim().await;
    let api: Api<Lease> = Api::namespaced(sim.client.clone(), "kube-system");
    let pp = PostParams::default();
    api.create(&pp, &lease("lock", "")).await.expect("create");
    let read = api.get("lock").await.unwrap();
    let (mut a, mut b) = (read.clone(), read);
    a.spec.as_mut().unwrap().holder_identity = Some("a@h".into());
    b.spec.as_mut().unwrap().holder_identity = Some("b@h".into());
    let (ra, rb) = tokio::join!(api.replace("lock", &pp, &a), api.replace("lock", &pp, &b));
    let wins = [ra.is_ok(), rb.is_ok()];
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    let loser = ra.err().or(rb.err()).unwrap();
    assert_eq!(status(&loser), (409, "Conflict".into()));
    sim.handle.shutdown().await.expect("shutdown");
}

fn kubectl(dir: &Path, args: &[&str]) -> Output {
    let bin = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .expect("kubectl must be installed for this test (it is part of the test environment)");
    Command::new(bin)
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn sim_kube_lease_real_kubectl_creates_gets_and_deletes() {
    let sim = sim().await;
    let dir = sim.dir.path().to_path_buf();
    let file = dir.join("lease.yaml");
    std::fs::write(
        &file,
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: runbook-disruption\n  namespace: kube-system\nspec:\n  holderIdentity: r1@ops\n  leaseDurationSeconds: 60\n",
    )
    .unwrap();
    let f = file.to_str().unwrap().to_string();
    let d = dir.clone();
    let (created, again, got, deleted, gone) = tokio::task::spawn_blocking(move || {
        (
            // The simulator serves no OpenAPI document to validate against.
            kubectl(&d, &["create", "--validate=false", "-f", &f]),
            kubectl(&d, &["create", "--validate=false", "-f", &f]),
            kubectl(&d, &["get", "lease", "-n", "kube-system"]),
            kubectl(
                &d,
                &["delete", "lease", "-n", "kube-system", "runbook-disruption"],
            ),
            kubectl(
                &d,
                &["get", "lease", "-n", "kube-system", "runbook-disruption"],
            ),
        )
    })
    .await
    .unwrap();
    assert!(created.status.success(), "{}", out(&created));
    assert!(
        out(&created).contains("runbook-disruption created"),
        "{}",
        out(&created)
    );
    assert!(!again.status.success());
    assert!(out(&again).contains("AlreadyExists"), "{}", out(&again));
    assert!(got.status.success(), "{}", out(&got));
    let table = out(&got);
    assert!(table.contains("HOLDER"), "{table}");
    assert!(
        table.contains("runbook-disruption") && table.contains("r1@ops"),
        "{table}"
    );
    assert!(deleted.status.success(), "{}", out(&deleted));
    assert!(!gone.status.success());
    assert!(out(&gone).contains("NotFound"), "{}", out(&gone));
    sim.handle.shutdown().await.expect("shutdown");
}
