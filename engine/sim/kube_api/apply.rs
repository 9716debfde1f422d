//! Server-side apply for the objects clients create (RuntimeClasses, DaemonSets): field
//! managers, conflicts, and the `managedFields` kubectl and kube-rs read back.
//!
//! `kubectl apply --server-side` and kube-rs `Patch::Apply` send the whole intended
//! configuration with a field manager; the API server merges it with what other managers
//! own, refuses (`409 Conflict`, one `FieldManagerConflict` cause per field) to take a field
//! another applier set to a different value unless `force=true`, drops fields the manager no
//! longer sends, and persists nothing when the result equals the stored object (so a repeated
//! apply keeps the resourceVersion: that is what makes `kube.apply` idempotent by
//! construction). The model here: each manager's last configuration is kept, pruned to the
//! leaves it still owns; the object is the merge of all of them in the order managers first
//! wrote. Lists are atomic (a list is one field, owned whole) — the real server merges
//! `containers` by `name`; a simplification documented in docs/design/kube-api.md.

use serde_json::{Map, Value};

use super::status::Failure;
use crate::sim::SimTime;
use crate::sim::cluster::{FieldManager, StoredObject};

/// What the client asked for.
pub struct ApplyRequest<'a> {
    /// `fieldManager` (required for apply).
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// The configuration sent.
    pub config: Value,
}

/// Metadata fields the server owns; never taken from a configuration.
const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The configuration without server-owned metadata and without `status`.
fn clean(mut config: Value) -> Value {
    if let Some(obj) = config.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_METADATA {
                meta.remove(k);
            }
        }
    }
    config
}

/// Leaf paths of a configuration (maps descended, everything else a leaf).
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

/// Identity fields every applier sends and nobody conflicts on.
fn is_identity(path: &[String]) -> bool {
    matches!(
        path.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
    )
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *v;
    for k in parents {
        match node.get_mut(k) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(m) = node.as_object_mut() {
        m.remove(last);
    }
    prune_empty(v);
}

fn prune_empty(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        for child in m.values_mut() {
            prune_empty(child);
        }
        m.retain(|_, c| !matches!(c, Value::Object(o) if o.is_empty()));
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch) {
        (Some(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = patch.clone(),
    }
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// The object without metadata (what `generation` tracks).
fn body(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
    }
    v
}

/// Applies `req` to `current` (None: the object does not exist yet). Returns the new stored
/// object, or a `409 Conflict` naming every conflicting field and its owner. The caller
/// compares the result with `current` to skip no-op writes.
pub fn apply(
    current: Option<&StoredObject>,
    req: ApplyRequest<'_>,
    api_version: &str,
    now: SimTime,
) -> Result<StoredObject, Failure> {
    let config = clean(req.config);
    let mut sent = Vec::new();
    leaves(&config, &mut Vec::new(), &mut sent);
    let mut managers = current.map(|c| c.managers.clone()).unwrap_or_default();
    let mut conflicts = Vec::new();
    for m in managers.iter_mut().filter(|m| m.manager != req.manager) {
        let mut lost = Vec::new();
        for (path, value) in &sent {
            if is_identity(path) {
                continue;
            }
            // Owned by `m` at this path or below it (a map replaced by a scalar), or above it.
            let mut owned = Vec::new();
            leaves(&m.config, &mut Vec::new(), &mut owned);
            for (theirs, their_value) in owned {
                let overlaps = theirs.starts_with(path) || path.starts_with(&theirs);
                if overlaps && !is_identity(&theirs) {
                    let same = theirs == *path && their_value == *value;
                    if !same {
                        conflicts.push((m.manager.clone(), dotted(&theirs)));
                        lost.push(theirs);
                    }
                }
            }
        }
        if req.force {
            for path in lost {
                remove(&mut m.config, &path);
            }
        }
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !req.force {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\" using {api_version}: {f}"))
            .collect();
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("\n")
        );
        let mut f = Failure::conflict(message);
        f.causes = conflicts
            .iter()
            .map(|(m, field)| {
                (
                    "FieldManagerConflict".to_string(),
                    format!("conflict with \"{m}\" using {api_version} at {field}"),
                )
            })
            .collect();
        return Err(f);
    }
    match managers.iter_mut().find(|m| m.manager == req.manager) {
        Some(m) => {
            m.config = config.clone();
            m.time = now;
        }
        None => managers.push(FieldManager {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            config: config.clone(),
            time: now,
        }),
    }
    managers.retain(|m| matches!(&m.config, Value::Object(o) if !o.is_empty()));
    let mut object = Value::Object(Map::new());
    for m in &managers {
        merge(&mut object, &m.config);
    }
    let generation = match current {
        None => 1,
        Some(c) if body(&c.object) != body(&object) => c.generation + 1,
        Some(c) => c.generation,
    };
    // A no-op apply keeps the managers' timestamps: nothing is persisted.
    if let Some(c) = current
        && c.object == object
        && same_ownership(&c.managers, &managers)
    {
        return Ok(c.clone());
    }
    Ok(StoredObject {
        object,
        generation,
        managers,
    })
}

fn same_ownership(a: &[FieldManager], b: &[FieldManager]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.manager == y.manager && x.config == y.config)
}

/// `fieldsV1` of a configuration: `f:<key>` for every map key, `{}` at the leaves.
pub fn fields_v1(config: &Value) -> Value {
    match config {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|(k, v)| {
                    let inner = match v {
                        Value::Object(o) if !o.is_empty() => fields_v1(v),
                        _ => Value::Object(Map::new()),
                    };
                    (format!("f:{k}"), inner)
                })
                .collect(),
        ),
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req<'a>(manager: &'a str, force: bool, config: Value) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            config,
        }
    }

    fn rc(handler: &str) -> Value {
        json!({ "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": { "name": "nvidia" }, "handler": handler })
    }

    #[test]
    fn a_repeated_apply_is_the_same_object() {
        let t = SimTime::ZERO;
        let first = apply(
            None,
            req("runbook", false, rc("nvidia")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        assert_eq!(first.generation, 1);
        let later = SimTime::from_secs(5);
        let again = apply(
            Some(&first),
            req("runbook", false, rc("nvidia")),
            "node.k8s.io/v1",
            later,
        )
        .unwrap();
        assert_eq!(again, first, "a no-op apply must not change anything");
    }

    #[test]
    fn another_manager_conflicts_unless_forced_and_then_takes_the_field() {
        let t = SimTime::ZERO;
        let first = apply(
            None,
            req("kubectl", false, rc("nvidia")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        let err = apply(
            Some(&first),
            req("runbook", false, rc("runc")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"kubectl\""),
            "{}",
            err.message
        );
        assert!(err.message.contains(".handler"), "{}", err.message);
        let forced = apply(
            Some(&first),
            req("runbook", true, rc("runc")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        assert_eq!(forced.object["handler"], "runc");
        assert_eq!(forced.generation, 2);
        let kubectl = forced.managers.iter().find(|m| m.manager == "kubectl");
        assert!(
            kubectl.is_none_or(|m| m.config.get("handler").is_none()),
            "{forced:?}"
        );
    }

    #[test]
    fn the_same_value_from_two_managers_is_shared_not_a_conflict() {
        let t = SimTime::ZERO;
        let first = apply(
            None,
            req("kubectl", false, rc("nvidia")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        let both = apply(
            Some(&first),
            req("runbook", false, rc("nvidia")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        assert_eq!(both.managers.len(), 2);
        assert_eq!(both.generation, 1);
    }

    #[test]
    fn a_field_the_manager_stops_sending_is_removed() {
        let t = SimTime::ZERO;
        let mut with_label = rc("nvidia");
        with_label["metadata"]["labels"] = json!({ "a": "b" });
        with_label["scheduling"] = json!({ "nodeSelector": { "x": "y" } });
        let first = apply(None, req("runbook", false, with_label), "node.k8s.io/v1", t).unwrap();
        let second = apply(
            Some(&first),
            req("runbook", false, rc("nvidia")),
            "node.k8s.io/v1",
            t,
        )
        .unwrap();
        assert!(second.object.get("scheduling").is_none(), "{second:?}");
        assert!(second.object.pointer("/metadata/labels").is_none());
        assert_eq!(second.generation, 2);
    }

    #[test]
    fn server_fields_in_a_configuration_are_ignored() {
        let mut c = rc("nvidia");
        c["metadata"]["uid"] = json!("forged");
        c["metadata"]["resourceVersion"] = json!("1");
        c["status"] = json!({ "x": 1 });
        let o = apply(None, req("m", false, c), "node.k8s.io/v1", SimTime::ZERO).unwrap();
        assert!(o.object.pointer("/metadata/uid").is_none());
        assert!(o.object.get("status").is_none());
        let f = fields_v1(&o.managers[0].config);
        assert_eq!(f["f:handler"], json!({}));
        assert_eq!(f["f:metadata"]["f:name"], json!({}));
    }
}
