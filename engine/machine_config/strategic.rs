//! Strategic merge over a multi-document machine config, as Talos's `configpatcher` does it:
//! patch documents are matched to config documents by identity (`v1alpha1`, or
//! `apiVersion/kind[/name]`) and new ones appended; maps merge key by key; scalars replace;
//! `$patch: delete` removes a key, a list item (matched by its first other key) or a whole
//! document; the lists Talos merges by key (network interfaces by `interface` or
//! `deviceSelector`, VLANs by `vlanId`, admission plugins by `name`, extension config files
//! by `mountPath`) merge item by item; the fields Talos tags `merge:"replace"` replace.
//!
//! One deliberate difference: Talos appends every other list's items, so the same patch
//! applied twice duplicates them; here an item already present (equal) is not appended again,
//! which makes a patch idempotent ("the same patch twice sends one ApplyConfiguration").

use serde_json::Value as J;

use super::{Config, PatchError};

const DELETE_KEY: &str = "$patch";

/// Lists merged item by item: (path pattern, the keys that identify an item, in order).
/// `*` matches any one map key.
const KEYED: &[(&[&str], &[&str])] = &[
    (
        &["machine", "network", "interfaces"],
        &["interface", "deviceSelector"],
    ),
    (
        &["machine", "network", "interfaces", "*", "vlans"],
        &["vlanId"],
    ),
    (&["cluster", "apiServer", "admissionControl"], &["name"]),
    (&["configFiles"], &["mountPath"]),
];

/// Fields replaced whole (Talos's `merge:"replace"`).
const REPLACE: &[&[&str]] = &[
    &["cluster", "network", "podSubnets"],
    &["cluster", "network", "serviceSubnets"],
    &["cluster", "apiServer", "auditPolicy"],
];

/// The identity of a document: `v1alpha1`, or `apiVersion/kind[/name]`.
pub(super) fn doc_id(doc: &J) -> String {
    if super::is_v1alpha1(doc) {
        return "v1alpha1".into();
    }
    let s = |k: &str| {
        doc.get(k)
            .and_then(J::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut id = format!("{}/{}", s("apiVersion"), s("kind"));
    if let Some(name) = doc.get("name").and_then(J::as_str) {
        id.push('/');
        id.push_str(name);
    }
    id
}

fn is_delete(v: &J) -> bool {
    v.get(DELETE_KEY).and_then(J::as_str) == Some("delete")
}

fn matches(pattern: &[&str], path: &[String]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
}

/// Applies strategic-merge patch documents to a config.
pub(super) fn apply(current: &Config, patch: &[J]) -> Result<Config, PatchError> {
    let mut out = current.clone();
    for pdoc in patch {
        let J::Object(_) = pdoc else {
            return Err(PatchError::Apply("a patch document must be a map".into()));
        };
        // A patch document without identity keys patches the v1alpha1 document (as
        // `talosctl patch` accepts `machine: …` alone).
        let id = if pdoc.get("version").is_none()
            && pdoc.get("kind").is_none()
            && pdoc.get("apiVersion").is_none()
        {
            "v1alpha1".to_string()
        } else {
            doc_id(pdoc)
        };
        let at = out.iter().position(|d| doc_id(d) == id);
        if is_delete(pdoc) {
            if let Some(i) = at {
                out.remove(i);
            }
            continue;
        }
        match at {
            Some(i) => {
                let mut path = Vec::new();
                merge(&mut out[i], pdoc, &mut path)?;
            }
            None => {
                let mut fresh = J::Object(Default::default());
                if id == "v1alpha1" && pdoc.get("version").is_none() {
                    fresh["version"] = J::String("v1alpha1".into());
                }
                merge(&mut fresh, pdoc, &mut Vec::new())?;
                out.push(fresh);
            }
        }
    }
    Ok(out)
}

fn merge(base: &mut J, patch: &J, path: &mut Vec<String>) -> Result<(), PatchError> {
    match (base, patch) {
        (J::Object(b), J::Object(p)) => {
            for (k, v) in p {
                if k == DELETE_KEY {
                    continue;
                }
                path.push(k.clone());
                if is_delete(v) {
                    b.remove(k);
                } else if REPLACE.iter().any(|r| matches(r, path)) {
                    b.insert(k.clone(), strip_deletes(v));
                } else {
                    match b.get_mut(k) {
                        Some(existing) if !existing.is_null() => merge(existing, v, path)?,
                        _ => {
                            b.insert(k.clone(), strip_deletes(v));
                        }
                    }
                }
                path.pop();
            }
            Ok(())
        }
        (J::Array(b), J::Array(p)) => {
            let keys = KEYED
                .iter()
                .find(|(pat, _)| matches(pat, path))
                .map(|(_, keys)| *keys);
            for item in p {
                if is_delete(item) {
                    delete_item(b, item, path)?;
                    continue;
                }
                let existing = keys.and_then(|keys| {
                    let key = keys.iter().find(|k| item.get(**k).is_some())?;
                    b.iter().position(|e| e.get(*key) == item.get(*key))
                });
                match existing {
                    Some(i) => {
                        path.push("*".into());
                        let r = merge(&mut b[i], item, path);
                        path.pop();
                        r?;
                    }
                    None => {
                        let clean = strip_deletes(item);
                        if !b.contains(&clean) {
                            b.push(clean);
                        }
                    }
                }
            }
            Ok(())
        }
        (b, p) if p.is_null() => {
            // Talos's merge skips zero values on the right: `key: null` changes nothing.
            let _ = b;
            Ok(())
        }
        (b, p) => {
            if !b.is_null()
                && type_name(b) != type_name(p)
                && (b.is_object() || b.is_array() || p.is_object() || p.is_array())
            {
                return Err(PatchError::Apply(format!(
                    "`{}`: cannot merge {} into {}",
                    path.join("."),
                    type_name(p),
                    type_name(b)
                )));
            }
            *b = strip_deletes(p);
            Ok(())
        }
    }
}

/// `- {key: value, $patch: delete}` removes the items whose first other key equals.
fn delete_item(list: &mut Vec<J>, item: &J, path: &[String]) -> Result<(), PatchError> {
    let J::Object(m) = item else {
        return Err(PatchError::Apply(format!(
            "`{}`: `$patch: delete` in a list needs a map item",
            path.join(".")
        )));
    };
    let Some((k, v)) = m.iter().find(|(k, _)| k.as_str() != DELETE_KEY) else {
        return Err(PatchError::Apply(format!(
            "`{}`: `$patch: delete` in a list needs a key to select the item",
            path.join(".")
        )));
    };
    list.retain(|e| e.get(k) != Some(v));
    Ok(())
}

/// A value inserted where nothing was merges nothing: its own `$patch: delete` entries go.
fn strip_deletes(v: &J) -> J {
    match v {
        J::Object(m) => J::Object(
            m.iter()
                .filter(|(k, v)| k.as_str() != DELETE_KEY && !is_delete(v))
                .map(|(k, v)| (k.clone(), strip_deletes(v)))
                .collect(),
        ),
        J::Array(items) => J::Array(
            items
                .iter()
                .filter(|i| !is_delete(i))
                .map(strip_deletes)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn type_name(v: &J) -> &'static str {
    match v {
        J::Object(_) => "a map",
        J::Array(_) => "a list",
        J::Null => "null",
        _ => "a scalar",
    }
}
