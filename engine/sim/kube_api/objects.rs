//! RuntimeClasses (`node.k8s.io/v1`) and DaemonSets (`apps/v1`): the objects clients create
//! with server-side apply, served to kubectl and kube-rs alike.
//!
//! gpu-enable applies the `nvidia` RuntimeClass and the NVIDIA device plugin DaemonSet, then
//! waits for the DaemonSet's pod on the GPU node and the node's `nvidia.com/gpu`; operators
//! check with `kubectl get runtimeclass nvidia` and `kubectl get ds -A`. This file holds the
//! handlers (list, watch, get, and PATCH with `application/apply-patch+yaml`, `dryRun=All`
//! honoured), the validation the real API server does before it stores such an object, and
//! their wire and Table shapes. The merge and field ownership are [`super::apply`]; what the
//! cluster does with the objects is the model's ([`crate::sim::cluster::ObjectKind`]).

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::apply::{self, ApplyRequest};
use super::patch::PatchType;
use super::render;
use super::routes::AppState;
use super::status::{Failure, json_response};
use super::store::{Entry, Kind, Meta, ObjectFacts, WallClock};
use crate::sim::cluster::{ObjectKey, ObjectKind};

type Params = Query<HashMap<String, String>>;
type Reply = Result<Response, Failure>;

/// Namespaces the simulated cluster has (it serves no Namespace objects).
pub const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The labels of a client object.
pub fn labels(o: &ObjectFacts) -> BTreeMap<String, String> {
    o.stored
        .object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The object as served: the stored object, server metadata, `managedFields`, `status`.
pub fn render(entry: &Entry, o: &ObjectFacts, clock: WallClock) -> Value {
    let mut v = o.stored.object.clone();
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let managed: Vec<Value> = o
        .stored
        .managers
        .iter()
        .map(|m| {
            json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": api_version,
                "time": to_json(render::time(clock, m.time)),
                "fieldsType": "FieldsV1",
                "fieldsV1": apply::fields_v1(&m.config),
            })
        })
        .collect();
    if !v.is_object() {
        v = Value::Object(Map::new());
    }
    let meta = v
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(meta)) = meta {
        meta.insert("name".into(), entry.key.name.clone().into());
        if !entry.key.namespace.is_empty() {
            meta.insert("namespace".into(), entry.key.namespace.clone().into());
        }
        meta.insert("uid".into(), entry.meta.uid.clone().into());
        meta.insert("resourceVersion".into(), entry.meta.rv.to_string().into());
        meta.insert("generation".into(), o.stored.generation.into());
        meta.insert(
            "creationTimestamp".into(),
            to_json(render::time(clock, entry.meta.created)),
        );
        if !managed.is_empty() {
            meta.insert("managedFields".into(), managed.into());
        }
    }
    if let (Some(st), Some(obj)) = (&o.status, v.as_object_mut()) {
        let mut status = json!({
            "currentNumberScheduled": st.current,
            "desiredNumberScheduled": st.desired,
            "numberMisscheduled": 0,
            "numberReady": st.ready,
            "numberAvailable": st.available,
            "updatedNumberScheduled": st.updated,
            "observedGeneration": st.observed_generation,
        });
        if st.desired > st.available {
            status["numberUnavailable"] = (st.desired - st.available).into();
        }
        obj.insert("status".into(), status);
    }
    v
}

/// Table columns for RuntimeClasses and DaemonSets, as `(name, description, priority)`.
pub fn columns(kind: Kind) -> Vec<(&'static str, &'static str, u8)> {
    match kind {
        Kind::RuntimeClass => vec![(
            "Handler",
            "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            0,
        )],
        _ => vec![
            (
                "Desired",
                "The total number of nodes that should be running the daemon pod.",
                0,
            ),
            (
                "Current",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                0,
            ),
            (
                "Ready",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                0,
            ),
            (
                "Up-to-date",
                "The total number of nodes that are running updated daemon pod",
                0,
            ),
            (
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                0,
            ),
            (
                "Node Selector",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
        ],
    }
}

/// The Table cells between NAME and AGE (and the wide ones after AGE).
pub fn cells(o: &ObjectFacts) -> (Vec<Value>, Vec<Value>) {
    let obj = &o.stored.object;
    let Some(st) = &o.status else {
        let handler = obj.get("handler").and_then(Value::as_str).unwrap_or("");
        return (vec![handler.into()], Vec::new());
    };
    let selector = obj
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "<none>".into());
    let containers = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |f: &str| {
        containers
            .iter()
            .filter_map(|c| c.get(f).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(",")
    };
    let match_labels = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    (
        vec![
            st.desired.into(),
            st.current.into(),
            st.ready.into(),
            st.updated.into(),
            st.available.into(),
            selector.into(),
        ],
        vec![
            field("name").into(),
            field("image").into(),
            match_labels.into(),
        ],
    )
}

/// Wide columns after AGE.
pub fn wide_columns(kind: Kind) -> Vec<(&'static str, &'static str)> {
    match kind {
        Kind::DaemonSet => vec![
            ("Containers", "Names of each container in the template."),
            (
                "Images",
                "Images referenced by each container in the template.",
            ),
            (
                "Selector",
                "A label query over pods that are managed by the daemon set.",
            ),
        ],
        _ => Vec::new(),
    }
}

/// A request body as JSON: kube-rs sends JSON, kubectl may send YAML.
pub fn decode_body(body: &[u8]) -> Result<Value, Failure> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Failure::bad_request("the request body is neither JSON nor UTF-8 YAML"))?;
    yaml_to_json(text).map_err(|e| Failure::bad_request(format!("error decoding YAML: {e}")))
}

/// One YAML document as JSON (scalars resolved as YAML 1.2 core, as the API server does).
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    use saphyr::{LoadableYamlNode, YamlOwned};
    let docs = YamlOwned::load_from_str(text).map_err(|e| e.to_string())?;
    match docs.as_slice() {
        [one] => yaml_value(one),
        [] => Err("empty document".into()),
        _ => Err("more than one YAML document in the request body".into()),
    }
}

fn yaml_value(y: &saphyr::YamlOwned) -> Result<Value, String> {
    use saphyr::{ScalarOwned, YamlOwned};
    Ok(match y {
        YamlOwned::Value(ScalarOwned::Null) => Value::Null,
        YamlOwned::Value(ScalarOwned::Boolean(b)) => Value::Bool(*b),
        YamlOwned::Value(ScalarOwned::Integer(i)) => Value::from(*i),
        YamlOwned::Value(ScalarOwned::FloatingPoint(f)) => {
            serde_json::Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
        }
        YamlOwned::Value(ScalarOwned::String(s)) | YamlOwned::Representation(s, _, _) => {
            Value::String(s.clone())
        }
        YamlOwned::Sequence(items) => items.iter().map(yaml_value).collect::<Result<_, _>>()?,
        YamlOwned::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match yaml_value(k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, yaml_value(v)?);
            }
            Value::Object(out)
        }
        YamlOwned::Tagged(_, inner) => yaml_value(inner)?,
        YamlOwned::Alias(_) | YamlOwned::BadValue => {
            return Err("unsupported YAML (alias or bad value)".into());
        }
    })
}

fn check_namespace(kind: ObjectKind, ns: &str) -> Result<(), Failure> {
    if kind.namespaced() && !NAMESPACES.contains(&ns) {
        return Err(Failure::not_found("namespaces", ns));
    }
    Ok(())
}

/// What the real API server checks before it stores the object.
fn validate(kind: ObjectKind, ns: &str, name: &str, v: &Value) -> Result<(), Failure> {
    let what = format!("{}.{}", kind.kind(), group(kind));
    let field = |p: &str| v.pointer(p).and_then(Value::as_str);
    if field("/apiVersion") != Some(kind.api_version()) || field("/kind") != Some(kind.kind()) {
        return Err(Failure::bad_request(format!(
            "the body of the request was in an unknown format: expected {} {}, got {} {}",
            kind.api_version(),
            kind.kind(),
            field("/apiVersion").unwrap_or("<none>"),
            field("/kind").unwrap_or("<none>")
        )));
    }
    match field("/metadata/name") {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(Failure::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        None => {
            return Err(Failure::invalid(format!(
                "{what} \"{name}\" is invalid: metadata.name: Required value: name or generateName is required"
            )));
        }
    }
    match field("/metadata/namespace") {
        None | Some("") => {}
        Some(n) if n == ns && kind.namespaced() => {}
        Some(_) if !kind.namespaced() => {}
        Some(_) => {
            return Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let invalid = |msg: String| Failure::invalid(format!("{what} \"{name}\" is invalid: {msg}"));
    match kind {
        ObjectKind::RuntimeClass => {
            serde_json::from_value::<k8s_openapi::api::node::v1::RuntimeClass>(v.clone())
                .map_err(|e| Failure::bad_request(format!("error decoding RuntimeClass: {e}")))?;
            match field("/handler") {
                Some(h)
                    if !h.is_empty()
                        && h.len() <= 63
                        && h.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') => {}
                Some(h) => {
                    return Err(invalid(format!(
                        "handler: Invalid value: \"{h}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
                    )));
                }
                None => return Err(invalid("handler: Required value".into())),
            }
        }
        ObjectKind::DaemonSet => {
            serde_json::from_value::<k8s_openapi::api::apps::v1::DaemonSet>(v.clone())
                .map_err(|e| Failure::bad_request(format!("error decoding DaemonSet: {e}")))?;
            let selector = v
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| invalid("spec.selector: Required value".into()))?;
            let labels = v
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            let matches =
                labels.is_some_and(|l| selector.iter().all(|(k, val)| l.get(k) == Some(val)));
            if !matches {
                return Err(invalid(
                    "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into(),
                ));
            }
            let containers = v
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| invalid("spec.template.spec.containers: Required value".into()))?;
            if containers.iter().any(|c| {
                c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            }) {
                return Err(invalid(
                    "spec.template.spec.containers[0].image: Required value".into(),
                ));
            }
        }
    }
    Ok(())
}

fn group(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::RuntimeClass => "node.k8s.io",
        ObjectKind::DaemonSet => "apps",
    }
}

fn store_kind(kind: ObjectKind) -> Kind {
    match kind {
        ObjectKind::RuntimeClass => Kind::RuntimeClass,
        ObjectKind::DaemonSet => Kind::DaemonSet,
    }
}

/// `PATCH` with `application/apply-patch+yaml`: server-side apply.
async fn patch_object(
    s: AppState,
    kind: ObjectKind,
    ns: String,
    name: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if PatchType::from_content_type(content_type)? != PatchType::Apply {
        return Err(Failure::unsupported_media_type(content_type));
    }
    let what = format!("{}.{}", kind.resource_name(), group(kind));
    let manager = q.get("fieldManager").filter(|m| !m.is_empty()).ok_or_else(|| {
        Failure::invalid("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
    })?;
    let force = q.get("force").is_some_and(|f| f == "true");
    check_namespace(kind, &ns)?;
    let config = decode_body(&body)?;
    validate(kind, &ns, &name, &config)?;
    let key = ObjectKey {
        kind,
        namespace: ns.clone(),
        name: name.clone(),
    };
    let current = s.store.shared().with(|c, now| c.k8s_object(&key, now))?;
    let now = s.store.now();
    let applied = apply::apply(
        current.as_ref(),
        ApplyRequest {
            manager,
            force,
            config,
        },
        kind.api_version(),
        now,
    )
    .map_err(|f| f.with_details(&what, &name))?;
    let created = current.is_none();
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if q.get("dryRun").is_some_and(|v| v == "All") {
        let existing = s.store.get(store_kind(kind), &ns, &name)?;
        let meta = existing.as_ref().map(|e| e.meta.clone()).unwrap_or(Meta {
            uid: String::new(),
            created: now,
            modified: now,
            rv: 0,
        });
        let status = existing.and_then(|e| match e.content {
            super::store::Content::Object(o) => o.status,
            _ => None,
        });
        let entry = Entry {
            key: super::store::Key {
                kind: store_kind(kind),
                namespace: ns,
                name,
            },
            content: super::store::Content::Object(ObjectFacts {
                stored: applied,
                status,
            }),
            meta,
        };
        return Ok(json_response(
            code,
            &render::object(&entry, s.store.clock()),
        ));
    }
    if current.as_ref() != Some(&applied) {
        s.store
            .shared()
            .with(|c, now| c.k8s_put_object(key, applied, now))?;
    }
    let entry = s
        .store
        .get(store_kind(kind), &ns, &name)?
        .ok_or_else(|| Failure::not_found(&what, &name))?;
    Ok(json_response(
        code,
        &render::object(&entry, s.store.clock()),
    ))
}

trait ResourceName {
    fn resource_name(self) -> &'static str;
}

impl ResourceName for ObjectKind {
    fn resource_name(self) -> &'static str {
        store_kind(self).resource()
    }
}

/// `PATCH /apis/node.k8s.io/v1/runtimeclasses/{name}`.
pub async fn patch_runtimeclass(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    patch_object(
        s,
        ObjectKind::RuntimeClass,
        String::new(),
        name,
        q,
        headers,
        body,
    )
    .await
}

/// `PATCH /apis/apps/v1/namespaces/{ns}/daemonsets/{name}`.
pub async fn patch_daemonset(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    patch_object(s, ObjectKind::DaemonSet, ns, name, q, headers, body).await
}
