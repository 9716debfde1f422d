//! API discovery: `/version`, `/api`, `/api/v1`, `/apis` and `/apis/{group}/{version}`.
//!
//! Both clients discover before they act: kubectl maps `nodes`/`no`/`cordon` onto resources
//! through discovery, and `kubectl drain` checks that `pods/eviction` exists in `policy/v1`
//! before it evicts. kubectl 1.30+ first asks for the aggregated discovery format
//! (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...,
//! application/json`); client-go looks at the response's `Content-Type` and falls back to the
//! legacy per-group documents when it is plain `application/json`, so only the legacy format is
//! served. Discovery is answered from memory even while the model says no API server can serve
//! (a real kube-apiserver answers discovery without etcd); resource requests get the 503.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use k8s_openapi::apimachinery::pkg::version::Info;

/// The Kubernetes version the simulated control plane reports (matches the kubelets).
pub const KUBERNETES_VERSION: &str = "v1.34.1";

/// The API groups served besides the core group: `(group, version)`.
pub const GROUPS: [(&str, &str); 4] = [
    ("apps", "v1"),
    ("policy", "v1"),
    ("coordination.k8s.io", "v1"),
    ("node.k8s.io", "v1"),
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// `/version`.
pub fn version() -> Info {
    Info {
        major: "1".into(),
        minor: "34".into(),
        git_version: KUBERNETES_VERSION.into(),
        git_commit: "93248f9ae092f571eb870b7664c534bfc7d00f03".into(),
        git_tree_state: "clean".into(),
        build_date: "2025-09-09T19:43:15Z".into(),
        go_version: "go1.24.6".into(),
        compiler: "gc".into(),
        platform: "linux/amd64".into(),
        ..Info::default()
    }
}

/// `/api`.
pub fn core_versions(server: &str) -> APIVersions {
    APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".into(),
            server_address: server.into(),
        }],
    }
}

fn resource(
    name: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    verbs: &[&str],
    short: &[&str],
) -> APIResource {
    APIResource {
        name: name.into(),
        singular_name: singular.into(),
        kind: kind.into(),
        namespaced,
        verbs: strings(verbs),
        short_names: Some(strings(short)).filter(|s| !s.is_empty()),
        ..APIResource::default()
    }
}

/// `/api/v1`.
pub fn core_resources() -> APIResourceList {
    let eviction = APIResource {
        group: Some("policy".into()),
        version: Some("v1".into()),
        ..resource("pods/eviction", "", "Eviction", true, &["create"], &[])
    };
    APIResourceList {
        group_version: "v1".into(),
        resources: vec![
            resource(
                "nodes",
                "node",
                "Node",
                false,
                &["delete", "get", "list", "patch", "watch"],
                &["no"],
            ),
            resource(
                "pods",
                "pod",
                "Pod",
                true,
                &["get", "list", "watch"],
                &["po"],
            ),
            eviction,
        ],
    }
}

fn group(name: &str, version: &str) -> APIGroup {
    let gv = GroupVersionForDiscovery {
        group_version: format!("{name}/{version}"),
        version: version.into(),
    };
    APIGroup {
        name: name.into(),
        preferred_version: Some(gv.clone()),
        versions: vec![gv],
        server_address_by_client_cidrs: None,
    }
}

/// `/apis`.
pub fn groups() -> APIGroupList {
    APIGroupList {
        groups: GROUPS.iter().map(|(g, v)| group(g, v)).collect(),
    }
}

/// `/apis/{group}` (None if not served).
pub fn group_doc(name: &str) -> Option<APIGroup> {
    GROUPS
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(g, v)| group(g, v))
}

/// `/apis/{group}/{version}` (None if not served).
pub fn group_resources(name: &str, version: &str) -> Option<APIResourceList> {
    let resources = match (name, version) {
        ("apps", "v1") => vec![resource(
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            &["get", "list", "patch", "watch"],
            &["ds"],
        )],
        ("node.k8s.io", "v1") => vec![resource(
            "runtimeclasses",
            "runtimeclass",
            "RuntimeClass",
            false,
            &["get", "list", "patch", "watch"],
            &[],
        )],
        ("policy", "v1") => vec![resource(
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
            &["get", "list", "watch"],
            &["pdb"],
        )],
        ("coordination.k8s.io", "v1") => vec![resource(
            "leases",
            "lease",
            "Lease",
            true,
            &["create", "delete", "get", "list", "update", "watch"],
            &[],
        )],
        _ => return None,
    };
    Some(APIResourceList {
        group_version: format!("{name}/{version}"),
        resources,
    })
}

/// The kinds clients may server-side apply: `(group, version, resource, kind, namespaced)`.
const APPLIABLE: [(&str, &str, &str, &str, bool); 2] = [
    ("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", false),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
];

/// `/openapi/v3`: the index of group-version documents. kubectl 1.27+ reads it before
/// `apply` to learn whether the server validates fields itself (`fieldValidation`); with that
/// answered yes it sends `fieldValidation=Strict` and skips client-side schema validation,
/// which would need the full schemas. Only the groups of `APPLIABLE` are listed.
pub fn openapi_v3_index() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (group, version, ..) in APPLIABLE {
        paths.insert(
            format!("apis/{group}/{version}"),
            serde_json::json!({
                "serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash=runbook-sim")
            }),
        );
    }
    serde_json::json!({ "paths": paths })
}

/// `/openapi/v3/apis/{group}/{version}`: just the PATCH operations of the appliable kinds,
/// with their query parameters and `x-kubernetes-group-version-kind` (what kubectl's
/// query-parameter verifier looks for); no schemas (`kubectl explain` has nothing to show).
pub fn openapi_v3_group(group: &str, version: &str) -> Option<serde_json::Value> {
    let mut paths = serde_json::Map::new();
    for (g, v, resource, kind, namespaced) in APPLIABLE {
        if g != group || v != version {
            continue;
        }
        let path = if namespaced {
            format!("/apis/{g}/{v}/namespaces/{{namespace}}/{resource}/{{name}}")
        } else {
            format!("/apis/{g}/{v}/{resource}/{{name}}")
        };
        let query = |name: &str| serde_json::json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } });
        paths.insert(
            path,
            serde_json::json!({
                "patch": {
                    "operationId": format!("patch{kind}"),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": { "group": g, "version": v, "kind": kind },
                    "parameters": [
                        query("dryRun"),
                        query("fieldManager"),
                        query("fieldValidation"),
                        query("force"),
                    ],
                    "responses": { "200": { "description": "OK" }, "201": { "description": "Created" } }
                }
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
        "paths": paths,
        "components": {}
    }))
}
