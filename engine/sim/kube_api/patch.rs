//! PATCH on nodes: the four patch types clients send, applied to the served object, and the
//! one change the model supports (`spec.unschedulable`) extracted from the result.
//!
//! `kubectl cordon` sends a strategic merge patch `{"spec":{"unschedulable":true}}` and
//! `uncordon` sends `{"spec":{"unschedulable":null}}` (false is omitted from the JSON, so the
//! two-way merge deletes the field); kube-rs callers send any of merge, strategic merge, JSON
//! patch or server-side apply. Rather than recognise particular bodies, the patch is applied
//! to the node as served and the result compared with the original: `spec.unschedulable`
//! (absent or null meaning false) becomes the model call, and any other changed field is
//! refused with `422 Invalid` naming it, so a caller never believes a change the simulator
//! cannot make took effect. A `metadata.resourceVersion` in the patch is a precondition
//! (`409 Conflict` if stale), as on the real server. Server-side apply is treated as a merge
//! of the applied configuration (field ownership is not modelled).

use serde_json::{Map, Value};

use super::status::Failure;

/// The patch types (`Content-Type` of the PATCH request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; JSON bodies only).
    Apply,
}

impl PatchType {
    /// From the `Content-Type` header.
    pub fn from_content_type(ct: &str) -> Result<PatchType, Failure> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            _ => Err(Failure::unsupported_media_type(ct)),
        }
    }
}

/// RFC 7386 merge; with `strategic`, `$`-prefixed directive keys (`$setElementOrder/...`,
/// `$retainKeys`) are dropped, and a `$patch` directive is refused.
fn merge(target: &mut Value, patch: &Value, strategic: bool) -> Result<(), Failure> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (k, v) in p {
        if strategic && k.starts_with('$') {
            if k == "$patch" {
                return Err(Failure::invalid(
                    "the simulator does not support the strategic merge $patch directive",
                ));
            }
            continue;
        }
        if let Value::Object(t) = target {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v, strategic)?;
            }
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(Vec<String>, String), Failure> {
    if path.is_empty() {
        return Err(Failure::invalid("a JSON patch path must not be empty"));
    }
    let mut tokens: Vec<String> = path
        .strip_prefix('/')
        .ok_or_else(|| Failure::invalid(format!("invalid JSON pointer {path:?}")))?
        .split('/')
        .map(unescape)
        .collect();
    let last = tokens.pop().unwrap_or_default();
    Ok((tokens, last))
}

fn parent<'a>(doc: &'a mut Value, tokens: &[String], path: &str) -> Result<&'a mut Value, Failure> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| Failure::invalid(format!("doc is missing path: {path:?}")))?;
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(doc);
    }
    doc.pointer(path)
}

fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), Failure> {
    let ops = ops
        .as_array()
        .ok_or_else(|| Failure::bad_request("a JSON patch must be an array of operations"))?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").cloned();
        match name {
            "test" => {
                let want = value.unwrap_or(Value::Null);
                if get(doc, path) != Some(&want) {
                    return Err(Failure::invalid(format!(
                        "testing value {path} failed: the current value differs from {want}"
                    )));
                }
            }
            "add" | "replace" => {
                let value = value.ok_or_else(|| {
                    Failure::bad_request(format!("JSON patch {name} of {path} has no value"))
                })?;
                let (tokens, last) = split_pointer(path)?;
                let p = parent(doc, &tokens, path)?;
                match p {
                    Value::Object(m) => {
                        if name == "replace" && !m.contains_key(&last) {
                            return Err(Failure::invalid(format!(
                                "replace operation does not apply: doc is missing key: {path}"
                            )));
                        }
                        m.insert(last, value);
                    }
                    Value::Array(a) => {
                        let i = if last == "-" {
                            a.len()
                        } else {
                            last.parse::<usize>().map_err(|_| {
                                Failure::invalid(format!("invalid array index in {path:?}"))
                            })?
                        };
                        if name == "add" && i <= a.len() {
                            a.insert(i, value);
                        } else if name == "replace" && i < a.len() {
                            a[i] = value;
                        } else {
                            return Err(Failure::invalid(format!("index out of range: {path}")));
                        }
                    }
                    _ => return Err(Failure::invalid(format!("doc is missing path: {path:?}"))),
                }
            }
            "remove" => {
                let (tokens, last) = split_pointer(path)?;
                let p = parent(doc, &tokens, path)?;
                let removed = match p {
                    Value::Object(m) => m.remove(&last).is_some(),
                    Value::Array(a) => match last.parse::<usize>() {
                        Ok(i) if i < a.len() => {
                            a.remove(i);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(Failure::invalid(format!(
                        "remove operation does not apply: doc is missing path: {path:?}"
                    )));
                }
            }
            other => {
                return Err(Failure::invalid(format!(
                    "the simulator does not support JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Applies `body` of type `kind` to `current` (a served node) and returns the desired
/// `spec.unschedulable`, or why the patch cannot be honoured.
pub fn desired_unschedulable(
    current: &Value,
    kind: PatchType,
    body: &[u8],
) -> Result<bool, Failure> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("error decoding patch: {e}")))?;
    if let Some(rv) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        let now = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if Some(rv) != now {
            let name = current
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(Failure::conflict(format!(
                "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ))
            .with_details("nodes", name));
        }
    }
    let mut patched = current.clone();
    match kind {
        PatchType::Json => json_patch(&mut patched, &patch)?,
        PatchType::Merge => merge(&mut patched, &patch, false)?,
        PatchType::Strategic => merge(&mut patched, &patch, true)?,
        PatchType::Apply => merge(&mut patched, &patch, false)?,
    }
    let desired = match patched.pointer("/spec/unschedulable") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Failure::invalid(format!(
                "spec.unschedulable: Invalid value: {other}: must be a boolean"
            )));
        }
    };
    let strip = |v: &mut Value| {
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("unschedulable");
        }
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["resourceVersion", "managedFields", "generation"] {
                meta.remove(k);
            }
        }
        // An empty spec and an absent one are the same node.
        if v.get("spec")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
            && let Some(m) = v.as_object_mut()
        {
            m.remove("spec");
        }
    };
    let (mut before, mut after) = (current.clone(), patched);
    strip(&mut before);
    strip(&mut after);
    if let Some(path) = first_difference(&before, &after, String::new()) {
        return Err(Failure::invalid(format!(
            "the simulated API server can only change spec.unschedulable of a node; this patch changes {path}"
        )));
    }
    Ok(desired)
}

fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, p),
                    _ => Some(p),
                }
            })
        }
        _ if a == b => None,
        _ => Some(if path.is_empty() {
            "the object".into()
        } else {
            path
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(unschedulable: Option<bool>) -> Value {
        let mut n = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "nuc-20", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {},
            "status": {"conditions": []},
        });
        if let Some(u) = unschedulable {
            n["spec"]["unschedulable"] = json!(u);
        }
        n
    }

    #[test]
    fn kubectl_cordon_and_uncordon_bodies() {
        let cordon = br#"{"spec":{"unschedulable":true}}"#;
        assert!(desired_unschedulable(&node(None), PatchType::Strategic, cordon).unwrap());
        let uncordon = br#"{"spec":{"unschedulable":null}}"#;
        assert!(!desired_unschedulable(&node(Some(true)), PatchType::Strategic, uncordon).unwrap());
    }

    #[test]
    fn json_patch_and_apply() {
        let add = br#"[{"op":"add","path":"/spec/unschedulable","value":true}]"#;
        assert!(desired_unschedulable(&node(None), PatchType::Json, add).unwrap());
        let remove = br#"[{"op":"test","path":"/spec/unschedulable","value":true},{"op":"remove","path":"/spec/unschedulable"}]"#;
        assert!(!desired_unschedulable(&node(Some(true)), PatchType::Json, remove).unwrap());
        let apply = br#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"nuc-20"},"spec":{"unschedulable":true}}"#;
        assert!(desired_unschedulable(&node(None), PatchType::Apply, apply).unwrap());
    }

    #[test]
    fn other_changes_and_stale_versions_are_refused() {
        let labels = br#"{"metadata":{"labels":{"a":"c"}}}"#;
        let e = desired_unschedulable(&node(None), PatchType::Merge, labels).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("metadata.labels.a"), "{}", e.message);
        let stale = br#"{"metadata":{"resourceVersion":"3"},"spec":{"unschedulable":true}}"#;
        assert_eq!(
            desired_unschedulable(&node(None), PatchType::Merge, stale)
                .unwrap_err()
                .code,
            409
        );
        assert_eq!(
            PatchType::from_content_type("text/plain").unwrap_err().code,
            415
        );
    }
}
