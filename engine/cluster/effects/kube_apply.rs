//! `kube.apply` (server-side apply of manifests) and the reads behind the Kubernetes object
//! waits (`kube.rollout`, `kube.present`, `kube.pod-running`, `kube.allocatable`).
//!
//! Operators reach for `kubectl apply -f` to add a RuntimeClass or deploy the NVIDIA device
//! plugin; a runbook needs the same with its guarantees: every object goes through
//! server-side apply (kube-rs `Patch::Apply` under one field manager, `force` only when the
//! author writes it), so a repeated or resumed step changes nothing — the action is
//! idempotent by construction and needs no probe. Kinds are resolved through API discovery
//! (`pinned_kind`: the resource name and its scope), never guessed from the kind's spelling.
//! With `dry_run: true` the server applies with `dryRun=All` and the step reports what would
//! change against the live object ("would create" when there is none), Secret values
//! redacted. Errors name the manifest source, the document index and the object.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope, pinned_kind};
use serde_json::{Map, Value};

use super::{ClusterEffects, flag, opt, outputs};
use crate::condition::kube::{KubeReads, Read};
use crate::condition::view::{Gap, GapKind, Observed};
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};

/// The default field manager.
pub const FIELD_MANAGER: &str = "runbook";

/// What stands in for a Secret's values in a dry-run diff.
pub const REDACTED: &str = "<redacted>";

/// One manifest document, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `file.yaml` or `inline manifests`.
    pub source: String,
    /// Document index in the source, from 1.
    pub index: usize,
    /// The object.
    pub object: Value,
}

impl Manifest {
    fn field(&self, f: &str) -> Option<&str> {
        self.object.get(f).and_then(Value::as_str)
    }

    fn name(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
    }

    /// `Kind ns/name` (or `Kind name`), for messages.
    pub fn describe(&self) -> String {
        let kind = self.field("kind").unwrap_or("<no kind>");
        let name = self.name().unwrap_or("<no name>");
        match self
            .object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }

    fn error(&self, what: impl std::fmt::Display, retryable: bool) -> EffectError {
        EffectError::Failed {
            message: self.message(what),
            retryable,
        }
    }

    /// An error from before anything was sent (discovery): `action-not-sent`.
    fn not_sent(&self, what: impl std::fmt::Display, retryable: bool) -> EffectError {
        EffectError::NotSent {
            message: self.message(what),
            retryable,
        }
    }

    fn message(&self, what: impl std::fmt::Display) -> String {
        format!(
            "`kube.apply`: {} document {} ({}): {what}",
            self.source,
            self.index,
            self.describe()
        )
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
            return Err("YAML aliases are not supported in manifests".into());
        }
    })
}

/// Splits multi-document YAML into manifests; empty documents (a trailing `---`) are
/// skipped, as kubectl does. Each must be a map with `apiVersion`, `kind` and
/// `metadata.name`.
pub fn parse_manifests(source: &str, text: &str) -> Result<Vec<Manifest>, String> {
    use saphyr::{LoadableYamlNode, YamlOwned};
    let docs = YamlOwned::load_from_str(text).map_err(|e| format!("{source}: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let object = yaml_value(doc).map_err(|e| format!("{source} document {}: {e}", i + 1))?;
        if object.is_null() {
            continue;
        }
        out.push(Manifest {
            source: source.to_string(),
            index: i + 1,
            object,
        });
    }
    for m in &out {
        check_manifest(m)?;
    }
    Ok(out)
}

fn check_manifest(m: &Manifest) -> Result<(), String> {
    let at = || format!("{} document {}", m.source, m.index);
    if !m.object.is_object() {
        return Err(format!("{}: not a map", at()));
    }
    for f in ["apiVersion", "kind"] {
        if m.field(f).is_none_or(str::is_empty) {
            return Err(format!("{} ({}): `{f}` is missing", at(), m.describe()));
        }
    }
    if m.name().is_none_or(str::is_empty) {
        return Err(format!(
            "{} ({}): `metadata.name` is missing",
            at(),
            m.describe()
        ));
    }
    Ok(())
}

/// The manifests of a call: `file` (multi-document YAML) and/or `manifests` (inline: a map,
/// a list of maps, or YAML text).
pub fn manifests_of(call: &ActionCall<'_>) -> Result<Vec<Manifest>, EffectError> {
    let bad = |arg: &str, reason: String| EffectError::BadArgument {
        name: call.name.into(),
        arg: arg.into(),
        reason,
    };
    let mut out = Vec::new();
    if let Some(path) = opt(call, "file")? {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("file", format!("cannot read `{path}`: {e}")))?;
        out.extend(parse_manifests(path, &text).map_err(|e| bad("file", e))?);
    }
    match call.args.get("manifests") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            out.extend(parse_manifests("inline manifests", text).map_err(|e| bad("manifests", e))?);
        }
        Some(Value::Array(items)) => {
            for (i, object) in items.iter().enumerate() {
                let m = Manifest {
                    source: "inline manifests".into(),
                    index: i + 1,
                    object: object.clone(),
                };
                check_manifest(&m).map_err(|e| bad("manifests", e))?;
                out.push(m);
            }
        }
        Some(object @ Value::Object(_)) => {
            let m = Manifest {
                source: "inline manifests".into(),
                index: 1,
                object: object.clone(),
            };
            check_manifest(&m).map_err(|e| bad("manifests", e))?;
            out.push(m);
        }
        Some(other) => {
            return Err(bad(
                "manifests",
                format!("expected a map, a list of maps or YAML text, found {other}"),
            ));
        }
    }
    if out.is_empty() {
        return Err(bad(
            "manifests",
            "give `file` or `manifests` with at least one object".into(),
        ));
    }
    Ok(out)
}

fn split_api_version(v: &str) -> (&str, &str) {
    v.split_once('/').unwrap_or(("", v))
}

fn api_error_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Server-owned fields, left out of diffs.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
    }
    v
}

/// A Secret's `data` and `stringData` values replaced by [`REDACTED`] (keys stay visible).
pub fn redact(v: &Value) -> Value {
    let mut v = v.clone();
    if v.get("kind").and_then(Value::as_str) == Some("Secret")
        && let Some(obj) = v.as_object_mut()
    {
        for section in ["data", "stringData"] {
            if let Some(Value::Object(m)) = obj.get_mut(section) {
                for value in m.values_mut() {
                    *value = Value::String(REDACTED.into());
                }
            }
        }
    }
    v
}

fn leaves(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                leaves(child, format!("{path}.{k}"), out);
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// What applying would change: `+ .path: value`, `- .path`, `~ .path: old -> new`, with
/// Secret values redacted (a changed Secret value shows as changed, never its content).
pub fn diff(live: Option<&Value>, proposed: &Value) -> Vec<String> {
    let Some(live) = live else {
        return vec!["would create".to_string()];
    };
    let secret = proposed.get("kind").and_then(Value::as_str) == Some("Secret");
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    leaves(&comparable(live), String::new(), &mut before);
    leaves(&comparable(proposed), String::new(), &mut after);
    let show = |path: &str, v: &Value| {
        if secret && (path.starts_with(".data.") || path.starts_with(".stringData.")) {
            REDACTED.to_string()
        } else {
            v.to_string()
        }
    };
    let mut out = Vec::new();
    for (path, new) in &after {
        match before.get(path) {
            None => out.push(format!("+ {path}: {}", show(path, new))),
            Some(old) if old != new => {
                out.push(format!(
                    "~ {path}: {} -> {}",
                    show(path, old),
                    show(path, new)
                ));
            }
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push(format!("- {path}"));
    }
    if out.is_empty() {
        out.push("no change".into());
    }
    out
}

impl ClusterEffects {
    async fn resolve(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, Scope), kube::Error> {
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = pinned_kind(client, &gvk).await?;
        Ok((ar, caps.scope))
    }

    fn dynamic_api(
        client: &kube::Client,
        ar: &ApiResource,
        scope: &Scope,
        namespace: &str,
    ) -> Api<DynamicObject> {
        match scope {
            Scope::Cluster => Api::all_with(client.clone(), ar),
            Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, ar),
        }
    }

    /// `kube.apply`.
    pub(super) async fn kube_apply(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let manifests = manifests_of(call)?;
        let client = self.kube(call.name)?.clone();
        let manager = opt(call, "field_manager")?.unwrap_or(FIELD_MANAGER);
        let default_ns = opt(call, "namespace")?.unwrap_or("default");
        let dry_run = flag(call, "dry_run");
        let mut params = PatchParams::apply(manager);
        if flag(call, "force") {
            params = params.force();
        }
        params.dry_run = dry_run;
        let mut objects = Vec::new();
        let mut names = Vec::new();
        let mut versions = Map::new();
        let mut messages = Vec::new();
        // Every kind is resolved before the first object is sent: a kind the server does not
        // serve (or an API that does not answer) fails the step with nothing applied.
        let mut resolved = Vec::with_capacity(manifests.len());
        for m in &manifests {
            let api_version = m.field("apiVersion").unwrap_or_default();
            let kind = m.field("kind").unwrap_or_default();
            let found = self
                .resolve(&client, api_version, kind)
                .await
                .map_err(|e| {
                    let retryable = api_error_retryable(&e);
                    let what = match &e {
                        kube::Error::Api(s) if s.code == 404 => {
                            format!("the API server does not serve {api_version} {kind}: {e}")
                        }
                        kube::Error::Api(_) => {
                            format!("the API server refused discovery of {api_version} {kind}: {e}")
                        }
                        _ => format!(
                            "cannot reach the Kubernetes API (discovery of {api_version} {kind}): {e}; nothing was applied"
                        ),
                    };
                    // Discovery sends nothing: no object of this call has left the process.
                    m.not_sent(what, retryable)
                })?;
            resolved.push(found);
        }
        for (m, (ar, scope)) in manifests.iter().zip(resolved) {
            let api_version = m.field("apiVersion").unwrap_or_default();
            let kind = m.field("kind").unwrap_or_default();
            let name = m.name().unwrap_or_default();
            let mut object = m.object.clone();
            let ns = match scope {
                Scope::Namespaced => {
                    let ns = object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(default_ns)
                        .to_string();
                    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert("namespace".into(), ns.clone().into());
                    }
                    ns
                }
                Scope::Cluster => String::new(),
            };
            let api = Self::dynamic_api(&client, &ar, &scope, &ns);
            let live = api.get_opt(name).await.map_err(|e| {
                m.error(
                    format!("cannot read the live object: {e}"),
                    api_error_retryable(&e),
                )
            })?;
            let applied = api
                .patch(name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| {
                    let hint = match &e {
                        kube::Error::Api(s) if s.code == 409 => {
                            " (another field manager owns these fields: set `force: true` to take them)"
                        }
                        _ => "",
                    };
                    m.error(format!("{e}{hint}"), api_error_retryable(&e))
                })?;
            let before_rv = live
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone());
            let rv = applied
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            let result = match (&live, dry_run) {
                (None, true) => "would create",
                (Some(_), true) => "would configure",
                (None, false) => "created",
                (Some(_), false) if before_rv.as_deref() == Some(rv.as_str()) => "unchanged",
                (Some(_), false) => "configured",
            };
            let id = if ns.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}/{ns}/{name}")
            };
            if dry_run {
                let live_v = live
                    .as_ref()
                    .map(|l| serde_json::to_value(l).unwrap_or(Value::Null));
                let proposed = serde_json::to_value(&applied).unwrap_or(Value::Null);
                let lines = diff(live_v.as_ref(), &redact(&proposed));
                messages.push(format!("{id}: {}", lines.join("; ")));
            } else {
                messages.push(format!("{id} {result}"));
            }
            names.push(Value::String(id.clone()));
            versions.insert(id, Value::String(rv.clone()));
            objects.push(serde_json::json!({
                "api_version": api_version,
                "kind": kind,
                "namespace": ns,
                "name": name,
                "resource_version": rv,
                "result": result,
            }));
        }
        let mut outcome = outputs([
            ("objects", Value::Array(objects)),
            ("names", Value::Array(names)),
            ("resource_versions", Value::Object(versions)),
        ]);
        outcome.messages = messages;
        Ok(outcome)
    }

    /// Makes the reads an object wait needs; every failure is a [`Gap`], never a default.
    pub(super) async fn kube_reads(&self, reads: &[Read]) -> KubeReads {
        let mut out = KubeReads::new();
        let Some(client) = self.observer.kube.as_ref() else {
            return reads
                .iter()
                .map(|r| (r.clone(), Observed::NotAsked))
                .collect();
        };
        for r in reads {
            let got = match r {
                Read::Object {
                    api_version,
                    kind,
                    namespace,
                    name,
                } => {
                    self.read_object(client, api_version, kind, namespace, name)
                        .await
                }
                Read::PodsOnNode { namespace, node } => {
                    let ns = if namespace.is_empty() {
                        "default"
                    } else {
                        namespace
                    };
                    let api: Api<k8s_openapi::api::core::v1::Pod> =
                        Api::namespaced(client.clone(), ns);
                    api.list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                        .await
                        .map(|l| serde_json::to_value(l.items).unwrap_or(Value::Null))
                        .map_err(|e| gap(&format!("list pods on {node}"), &e))
                }
            };
            out.insert(r.clone(), Observed::from_result(got));
        }
        out
    }

    async fn read_object(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, Gap> {
        let call = format!("get {kind} {name}");
        let (ar, scope) = self
            .resolve(client, api_version, kind)
            .await
            .map_err(|e| gap(&format!("discover {api_version} {kind}"), &e))?;
        let ns = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let api = Self::dynamic_api(client, &ar, &scope, ns);
        match api.get_opt(name).await {
            Ok(Some(o)) => {
                serde_json::to_value(o).map_err(|e| Gap::new(&call, GapKind::Failed, e.to_string()))
            }
            Ok(None) => Ok(Value::Null),
            Err(e) => Err(gap(&call, &e)),
        }
    }

    /// The object waits: reads made here (the node argument is a Talos node: its Kubernetes
    /// name is its hostname), decided by [`crate::condition::kube::wait`].
    pub(super) async fn poll_kube_object(
        &self,
        call: &crate::exec::effects::CheckCall<'_>,
    ) -> Result<crate::exec::effects::Poll, EffectError> {
        let mut args: crate::condition::check::Args = call.args.clone().into_iter().collect();
        if let Some(Value::String(node)) = args.get("node").cloned() {
            args.insert("node".into(), Value::String(self.kube_name(&node).await));
        }
        let bad = |e: crate::condition::check::Error| EffectError::BadArgument {
            name: call.name.into(),
            arg: "-".into(),
            reason: e.to_string(),
        };
        let reads = crate::condition::kube::reads(call.name, &args).map_err(bad)?;
        let observed = self.kube_reads(&reads).await;
        let poll = crate::condition::kube::wait(call.name, &args, &observed).map_err(bad)?;
        let (satisfied, v) = match poll {
            crate::condition::talos::Poll::Holds(v) => (true, v),
            crate::condition::talos::Poll::NotYet(v) => (false, v),
            crate::condition::talos::Poll::GiveUp(v) => {
                return Err(EffectError::Failed {
                    message: v.reason,
                    retryable: false,
                });
            }
        };
        let mut figures = v.figures;
        figures.insert("reason".into(), v.reason.into());
        Ok(crate::exec::effects::Poll { satisfied, figures })
    }
}

fn gap(call: &str, e: &kube::Error) -> Gap {
    let kind = match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 401 => GapKind::PermissionDenied,
        kube::Error::Api(s) if s.code == 504 => GapKind::TimedOut,
        kube::Error::Api(s) if s.code == 503 => GapKind::Unreachable,
        kube::Error::HyperError(_) | kube::Error::Service(_) => GapKind::Unreachable,
        _ => GapKind::Failed,
    };
    Gap::new(call, kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_yaml_skips_empty_documents_and_names_indexes() {
        let text = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: nvidia\n---\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: p\n  namespace: kube-system\n";
        let ms = parse_manifests("m.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].index, 3);
        assert_eq!(ms[1].describe(), "DaemonSet kube-system/p");
        let err = parse_manifests("m.yaml", "kind: X\nmetadata: {name: a}\n").unwrap_err();
        assert!(err.contains("m.yaml document 1"), "{err}");
        assert!(err.contains("apiVersion"), "{err}");
        let err = parse_manifests("m.yaml", "- a\n- b\n").unwrap_err();
        assert!(err.contains("not a map"), "{err}");
        assert!(parse_manifests("m.yaml", "a: [\n").is_err());
    }

    #[test]
    fn diffs_show_changes_and_never_secret_values() {
        let live = json!({ "kind": "Secret", "metadata": { "name": "s", "resourceVersion": "3" },
            "data": { "password": "aHVudGVyMg==" } });
        let proposed = json!({ "kind": "Secret", "metadata": { "name": "s", "resourceVersion": "3" },
            "data": { "password": "c2VjcmV0", "user": "YWRtaW4=" } });
        let lines = diff(Some(&live), &redact(&proposed));
        let text = lines.join("\n");
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("aHVudGVyMg") && !text.contains("YWRtaW4"),
            "{text}"
        );
        assert!(text.contains("+ .data.user: <redacted>"), "{text}");
        assert_eq!(diff(None, &proposed), vec!["would create"]);
        let rc = json!({ "kind": "RuntimeClass", "metadata": { "name": "nvidia" }, "handler": "nvidia" });
        assert_eq!(diff(Some(&rc), &rc), vec!["no change"]);
        let changed =
            json!({ "kind": "RuntimeClass", "metadata": { "name": "nvidia" }, "handler": "runc" });
        assert_eq!(
            diff(Some(&rc), &changed),
            vec!["~ .handler: \"nvidia\" -> \"runc\""]
        );
    }
}
