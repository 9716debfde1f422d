//! The HTTP routes of the simulated Kubernetes API and their handlers.
//!
//! One handler per verb and resource shape, each a thin translation: parse the query and
//! body the way kube-apiserver does, call the [`Store`] (reads) or the model through
//! [`SharedCluster::with`](crate::sim::SharedCluster::with) (mutations, which the model
//! records in its call log), and answer in the Kubernetes wire shape — a k8s-openapi object,
//! a `<Kind>List`, a `Table` when kubectl asks for one, a watch stream, or a `Status`. Paths
//! the simulator does not serve answer `404` with a `Status`, so kubectl prints a normal
//! "the server could not find the requested resource" instead of failing to decode.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::discovery;
use super::objects;
use super::patch::{self, PatchType};
use super::render;
use super::select::Selector;
use super::status::{self, Failure, json_response};
use super::store::{ClientLease, Content, Entry, Kind, Store};
use super::table::{self, Include};
use super::watch::{self as watching, Start, WatchRequest};
use crate::sim::error::KubeReason;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The object store over the model.
    pub store: Arc<Store>,
    /// Becomes true when the server shuts down (ends watches).
    pub shutdown: watch::Receiver<bool>,
    /// `host:port` the server listens on (for `/api` discovery).
    pub server: String,
}

type Params = Query<HashMap<String, String>>;
type Reply = Result<Response, Failure>;

/// The router with every route the simulator serves.
pub fn router(state: AppState) -> Router {
    let coord = "/apis/coordination.k8s.io/v1";
    let policy = "/apis/policy/v1";
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api))
        .route("/api/v1", get(api_v1))
        .route("/apis", get(apis))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(api_group_version))
        .route("/openapi/v3", get(openapi_v3))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_v3_group))
        .route("/api/v1/nodes", get(list_nodes))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).patch(patch_node).delete(delete_node),
        )
        .route("/api/v1/pods", get(list_all_pods))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/eviction",
            post(evict_pod),
        )
        .route(&format!("{coord}/leases"), get(list_all_leases))
        .route(
            &format!("{coord}/namespaces/{{ns}}/leases"),
            get(list_leases).post(create_lease),
        )
        .route(
            &format!("{coord}/namespaces/{{ns}}/leases/{{name}}"),
            get(get_lease).put(update_lease).delete(delete_lease),
        )
        .route(
            &format!("{policy}/poddisruptionbudgets"),
            get(list_all_pdbs),
        )
        .route(
            &format!("{policy}/namespaces/{{ns}}/poddisruptionbudgets"),
            get(list_pdbs),
        )
        .route(
            &format!("{policy}/namespaces/{{ns}}/poddisruptionbudgets/{{name}}"),
            get(get_pdb),
        )
        .route("/apis/apps/v1/daemonsets", get(list_all_daemonsets))
        .route(
            "/apis/apps/v1/namespaces/{ns}/daemonsets",
            get(list_daemonsets),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}",
            get(get_daemonset).patch(objects::patch_daemonset),
        )
        .route(
            "/apis/node.k8s.io/v1/runtimeclasses",
            get(list_runtimeclasses),
        )
        .route(
            "/apis/node.k8s.io/v1/runtimeclasses/{name}",
            get(get_runtimeclass).patch(objects::patch_runtimeclass),
        )
        .fallback(|| async { Failure::no_route() })
        .method_not_allowed_fallback(|| async { Failure::method_not_allowed() })
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------

async fn version() -> Response {
    json_response(StatusCode::OK, &discovery::version())
}

async fn api(State(s): State<AppState>) -> Response {
    json_response(StatusCode::OK, &discovery::core_versions(&s.server))
}

async fn api_v1() -> Response {
    json_response(StatusCode::OK, &discovery::core_resources())
}

async fn apis() -> Response {
    json_response(StatusCode::OK, &discovery::groups())
}

async fn api_group(Path(group): Path<String>) -> Reply {
    discovery::group_doc(&group)
        .map(|g| json_response(StatusCode::OK, &g))
        .ok_or_else(Failure::no_route)
}

async fn api_group_version(Path((group, version)): Path<(String, String)>) -> Reply {
    discovery::group_resources(&group, &version)
        .map(|g| json_response(StatusCode::OK, &g))
        .ok_or_else(Failure::no_route)
}

async fn openapi_v3() -> Response {
    json_response(StatusCode::OK, &discovery::openapi_v3_index())
}

async fn openapi_v3_group(Path((group, version)): Path<(String, String)>) -> Reply {
    discovery::openapi_v3_group(&group, &version)
        .map(|d| json_response(StatusCode::OK, &d))
        .ok_or_else(Failure::no_route)
}

// ---------------------------------------------------------------------------------------
// Generic list / watch / get
// ---------------------------------------------------------------------------------------

fn list_kind(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Node => ("v1", "NodeList"),
        Kind::Pod => ("v1", "PodList"),
        Kind::Lease => ("coordination.k8s.io/v1", "LeaseList"),
        Kind::Pdb => ("policy/v1", "PodDisruptionBudgetList"),
        Kind::RuntimeClass => ("node.k8s.io/v1", "RuntimeClassList"),
        Kind::DaemonSet => ("apps/v1", "DaemonSetList"),
    }
}

fn with_content_type(mut response: Response, content_type: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

fn is_true(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn list(
    s: &AppState,
    kind: Kind,
    namespace: Option<String>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Reply {
    let selector = Selector::parse(
        q.get("fieldSelector").map(String::as_str),
        q.get("labelSelector").map(String::as_str),
    )?;
    selector.check_fields(kind)?;
    let table = table::requested(headers);
    let include = Include::parse(q.get("includeObject").map(String::as_str));
    if is_true(q, "watch") {
        let start =
            match q.get("resourceVersion").map(String::as_str) {
                None | Some("" | "0") => Start::Current,
                Some(rv) => Start::After(rv.parse().map_err(|_| {
                    Failure::bad_request(format!("invalid resource version {rv:?}"))
                })?),
            };
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs);
        let req = WatchRequest {
            kind,
            namespace,
            selector,
            start,
            timeout,
            table: table.map(|v| (v, include)),
            initial_events_bookmark: is_true(q, "sendInitialEvents"),
        };
        let body = watching::start(s.store.clone(), req, s.shutdown.clone())?;
        let content_type = table.map_or("application/json".to_string(), table::content_type);
        return Ok(with_content_type(
            (StatusCode::OK, body).into_response(),
            &content_type,
        ));
    }
    let (rv, entries) = s.store.list(kind, namespace.as_deref())?;
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| selector.matches(e))
        .collect();
    if let Some(version) = table {
        let t = table::table(kind, &entries, rv, &s.store, version, include, true);
        return Ok(with_content_type(
            json_response(StatusCode::OK, &t),
            &table::content_type(version),
        ));
    }
    let clock = s.store.clock();
    let (api_version, list_kind) = list_kind(kind);
    let items: Vec<Value> = entries.iter().map(|e| render::object(e, clock)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version,
            "kind": list_kind,
            "metadata": { "resourceVersion": rv.to_string() },
            "items": items,
        }),
    ))
}

fn one(
    s: &AppState,
    kind: Kind,
    namespace: &str,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Reply {
    let entry = s
        .store
        .get(kind, namespace, name)?
        .ok_or_else(|| Failure::not_found(kind.qualified(), name))?;
    if let Some(version) = table::requested(headers) {
        let include = Include::parse(q.get("includeObject").map(String::as_str));
        let t = table::table(
            kind,
            std::slice::from_ref(&entry),
            entry.meta.rv,
            &s.store,
            version,
            include,
            true,
        );
        return Ok(with_content_type(
            json_response(StatusCode::OK, &t),
            &table::content_type(version),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &render::object(&entry, s.store.clock()),
    ))
}

// ---------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------

async fn list_nodes(State(s): State<AppState>, Query(q): Params, headers: HeaderMap) -> Reply {
    list(&s, Kind::Node, None, &q, &headers)
}

async fn get_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::Node, "", &name, &q, &headers)
}

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

async fn patch_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch_type = PatchType::from_content_type(content_type)?;
    let entry = s
        .store
        .get(Kind::Node, "", &name)?
        .ok_or_else(|| Failure::not_found("nodes", &name))?;
    let clock = s.store.clock();
    let desired = patch::desired_unschedulable(&render::object(&entry, clock), patch_type, &body)?;
    if dry_run(&q) {
        let mut preview = entry;
        if let Content::Node(n) = &mut preview.content {
            n.node.unschedulable = desired;
        }
        return Ok(json_response(
            StatusCode::OK,
            &render::object(&preview, clock),
        ));
    }
    s.store
        .shared()
        .with(|c, now| c.k8s_set_unschedulable(&name, desired, now))
        .map_err(|e| not_found_details(e, "nodes", &name))?;
    let entry = s
        .store
        .get(Kind::Node, "", &name)?
        .ok_or_else(|| Failure::not_found("nodes", &name))?;
    Ok(json_response(
        StatusCode::OK,
        &render::object(&entry, clock),
    ))
}

fn not_found_details(e: crate::sim::KubeError, kind: &str, name: &str) -> Failure {
    let is_not_found = e.reason == KubeReason::NotFound;
    let f = Failure::from(e);
    if is_not_found {
        f.with_details(kind, name)
    } else {
        f
    }
}

/// The preconditions of a `DeleteOptions` body, if any: `(uid, resourceVersion)`.
fn preconditions(body: &[u8]) -> Result<(Option<String>, Option<String>), Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding DeleteOptions: {e}")))?;
    let get = |k: &str| {
        v.pointer(&format!("/preconditions/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok((get("uid"), get("resourceVersion")))
}

async fn delete_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let entry = s
        .store
        .get(Kind::Node, "", &name)?
        .ok_or_else(|| Failure::not_found("nodes", &name))?;
    let (uid, rv) = preconditions(&body)?;
    if uid.as_ref().is_some_and(|u| *u != entry.meta.uid) {
        return Err(Failure::conflict(format!(
            "Precondition failed: UID in precondition: {}, UID in object meta: {}",
            uid.unwrap_or_default(),
            entry.meta.uid
        ))
        .with_details("nodes", &name));
    }
    if rv.as_ref().is_some_and(|r| *r != entry.meta.rv.to_string()) {
        return Err(Failure::conflict(format!(
            "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
            rv.unwrap_or_default(),
            entry.meta.rv
        ))
        .with_details("nodes", &name));
    }
    if !dry_run(&q) {
        s.store
            .shared()
            .with(|c, now| c.k8s_delete_node(&name, now))
            .map_err(|e| not_found_details(e, "nodes", &name))?;
        s.store.sync()?;
    }
    Ok(json_response(
        StatusCode::OK,
        &status::success("nodes", &name, Some(entry.meta.uid)),
    ))
}

// ---------------------------------------------------------------------------------------
// Pods and eviction
// ---------------------------------------------------------------------------------------

async fn list_all_pods(State(s): State<AppState>, Query(q): Params, headers: HeaderMap) -> Reply {
    list(&s, Kind::Pod, None, &q, &headers)
}

async fn list_pods(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::Pod, Some(ns), &q, &headers)
}

async fn get_pod(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::Pod, &ns, &name, &q, &headers)
}

/// The `DisruptionBudget` cause of a blocked eviction, as the real API server words it.
fn budget_cause(s: &AppState, ns: &str, name: &str) -> Option<(String, String)> {
    let pod = s.store.get(Kind::Pod, ns, name).ok()??;
    let Content::Pod(pod) = pod.content else {
        return None;
    };
    let (_, pdbs) = s.store.list(Kind::Pdb, Some(ns)).ok()?;
    pdbs.into_iter().find_map(|e| match e.content {
        Content::Pdb(p) if p.pdb.app == pod.app => Some((
            "DisruptionBudget".to_string(),
            format!(
                "The disruption budget {} needs {} healthy pods and has {} currently",
                p.pdb.name, p.pdb.min_available, p.healthy
            ),
        )),
        _ => None,
    })
}

async fn evict_pod(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let eviction: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request(format!("error decoding Eviction: {e}")))?;
    if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(Failure::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let dry = dry_run(&q)
        || eviction
            .pointer("/deleteOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let result = s.store.shared().with(|c, now| {
        if dry {
            c.clone().k8s_evict_pod(&ns, &name, now)
        } else {
            c.k8s_evict_pod(&ns, &name, now)
        }
    });
    match result {
        Ok(()) => {
            s.store.sync()?;
            Ok(json_response(
                StatusCode::CREATED,
                &status::success("pods", &name, None),
            ))
        }
        Err(e) if e.reason == KubeReason::TooManyRequests => {
            let mut f = Failure::from(e);
            f.causes.extend(budget_cause(&s, &ns, &name));
            Err(f)
        }
        Err(e) => Err(not_found_details(e, "pods", &name)),
    }
}

/// `GET /apis/apps/v1/namespaces/{ns}/daemonsets/{name}`: client DaemonSets and the ones the
/// model's system pods imply (`kubectl drain --ignore-daemonsets` looks each owner up).
async fn get_daemonset(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::DaemonSet, &ns, &name, &q, &headers)
}

async fn list_all_daemonsets(
    State(s): State<AppState>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::DaemonSet, None, &q, &headers)
}

async fn list_daemonsets(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::DaemonSet, Some(ns), &q, &headers)
}

async fn list_runtimeclasses(
    State(s): State<AppState>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::RuntimeClass, None, &q, &headers)
}

async fn get_runtimeclass(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::RuntimeClass, "", &name, &q, &headers)
}

// ---------------------------------------------------------------------------------------
// Leases and PodDisruptionBudgets
// ---------------------------------------------------------------------------------------

async fn list_all_leases(State(s): State<AppState>, Query(q): Params, headers: HeaderMap) -> Reply {
    list(&s, Kind::Lease, None, &q, &headers)
}

async fn list_leases(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::Lease, Some(ns), &q, &headers)
}

async fn get_lease(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::Lease, &ns, &name, &q, &headers)
}

/// A Lease body as a client sent it: its name, namespace and resourceVersion, and the parts
/// the server keeps. Decoded as a k8s-openapi `Lease`, so a malformed body is a `400` the way
/// kube-apiserver's decoder answers it, and validated as the API server validates Leases.
struct LeaseBody {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    lease: ClientLease,
}

fn lease_body(body: &[u8]) -> Result<LeaseBody, Failure> {
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding Lease: {e}")))?;
    let spec = lease.spec.unwrap_or_default();
    if let Some(d) = spec.lease_duration_seconds
        && d <= 0
    {
        return Err(Failure::invalid(format!(
            "Lease.coordination.k8s.io is invalid: spec.leaseDurationSeconds: Invalid value: {d}: must be greater than 0"
        )));
    }
    let spec = serde_json::to_value(&spec)
        .map_err(|e| Failure::bad_request(format!("error encoding LeaseSpec: {e}")))?;
    Ok(LeaseBody {
        name: lease.metadata.name,
        namespace: lease.metadata.namespace,
        resource_version: lease.metadata.resource_version,
        lease: ClientLease {
            labels: lease.metadata.labels.unwrap_or_default(),
            annotations: lease.metadata.annotations.unwrap_or_default(),
            spec,
        },
    })
}

fn check_namespace(body: &LeaseBody, ns: &str) -> Result<(), Failure> {
    match body.namespace.as_deref() {
        None | Some("") => Ok(()),
        Some(n) if n == ns => Ok(()),
        Some(_) => Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// `POST .../namespaces/{ns}/leases`: `201 Created`, or `409 AlreadyExists`.
async fn create_lease(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let b = lease_body(&body)?;
    check_namespace(&b, &ns)?;
    let name = b
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Failure::invalid(
                "Lease.coordination.k8s.io is invalid: metadata.name: Required value: name or generateName is required",
            )
        })?;
    if dry_run(&q) {
        return Err(Failure::bad_request(
            "the simulator does not serve dry-run Lease writes",
        ));
    }
    let entry = s.store.create_lease(&ns, &name, b.lease)?;
    Ok(json_response(
        StatusCode::CREATED,
        &render::object(&entry, s.store.clock()),
    ))
}

/// `PUT .../namespaces/{ns}/leases/{name}`: `200`, `409 Conflict` on a stale
/// `metadata.resourceVersion`, `404` if the lease does not exist (Leases are not created by
/// update).
async fn update_lease(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let b = lease_body(&body)?;
    check_namespace(&b, &ns)?;
    if let Some(n) = b.name.as_deref()
        && n != name
    {
        return Err(Failure::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if dry_run(&q) {
        return Err(Failure::bad_request(
            "the simulator does not serve dry-run Lease writes",
        ));
    }
    let entry = s
        .store
        .update_lease(&ns, &name, b.resource_version.as_deref(), b.lease)?;
    Ok(json_response(
        StatusCode::OK,
        &render::object(&entry, s.store.clock()),
    ))
}

/// `DELETE .../namespaces/{ns}/leases/{name}`, with `DeleteOptions.preconditions`.
async fn delete_lease(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Reply {
    let (uid, rv) = preconditions(&body)?;
    if dry_run(&q) {
        return Err(Failure::bad_request(
            "the simulator does not serve dry-run Lease writes",
        ));
    }
    let entry = s
        .store
        .delete_lease(&ns, &name, uid.as_deref(), rv.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        &status::success("leases", &name, Some(entry.meta.uid)),
    ))
}

async fn list_all_pdbs(State(s): State<AppState>, Query(q): Params, headers: HeaderMap) -> Reply {
    list(&s, Kind::Pdb, None, &q, &headers)
}

async fn list_pdbs(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    list(&s, Kind::Pdb, Some(ns), &q, &headers)
}

async fn get_pdb(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Reply {
    one(&s, Kind::Pdb, &ns, &name, &q, &headers)
}
