//! Kubernetes waits: Node Ready and drained (from the [`ClusterView`]), and the object waits
//! `kube.apply` needs — a rollout finished, a resource present, a DaemonSet's pod Running on
//! a node, a node's allocatable resource — decided from the objects as the API served them
//! ([`KubeReads`]). Ready is necessary, never sufficient: runbooks pair `kube.ready` with
//! `talos.running`. Every object wait fails closed: an object that was not read, could not be
//! read, or whose status lags its spec (`observedGeneration` behind `generation`) is "not
//! yet", never a pass.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::condition::check::{Args, Error};
use crate::condition::talos::Poll;
use crate::condition::view::{ClusterView, Gap, Observed, Verdict, cannot_decide};

/// The Kubernetes Node is Ready.
pub fn ready(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x) {
        None => Verdict::fail(format!("`{x}` was not observed")),
        Some(n) => match &n.kube_ready {
            Observed::Answered(Some(true)) => {
                Verdict::pass(format!("Kubernetes reports `{x}` Ready"))
            }
            Observed::Answered(Some(false)) => {
                Verdict::fail(format!("Kubernetes reports `{x}` NotReady"))
            }
            Observed::Answered(None) => {
                Verdict::fail(format!("Kubernetes does not know `{x}` (yet)"))
            }
            Observed::Missing(g) => cannot_decide(x, g),
            Observed::NotAsked => Verdict::fail(format!(
                "cannot decide: Kubernetes was not asked about `{x}` (no kubeconfig?)"
            )),
        },
    }
}

/// No evictable pod is left on the node.
pub fn drained(view: &ClusterView, x: &str) -> Verdict {
    match view.node(x).map(|n| &n.evictable_pods) {
        None => Verdict::fail(format!("`{x}` was not observed")),
        Some(Observed::Missing(g)) => cannot_decide(x, g),
        Some(Observed::NotAsked) => Verdict::fail(format!("pods on `{x}` unknown")),
        Some(Observed::Answered(0)) => Verdict::pass(format!("no evictable pod left on `{x}`")),
        Some(Observed::Answered(k)) => {
            Verdict::fail(format!("{k} evictable pod(s) still on `{x}`")).with("pods", *k)
        }
    }
}

/// One read an object wait needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// One object by group/version, kind, namespace (empty: cluster-scoped) and name.
    Object {
        /// `apiVersion` (`apps/v1`, `v1`).
        api_version: String,
        /// `kind`.
        kind: String,
        /// Namespace; empty for cluster-scoped kinds or "use the default".
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pods in `namespace` bound to Kubernetes node `node`.
    PodsOnNode {
        /// Namespace.
        namespace: String,
        /// The Kubernetes node name.
        node: String,
    },
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Read::Object {
                kind,
                namespace,
                name,
                ..
            } if namespace.is_empty() => write!(f, "{kind} {name}"),
            Read::Object {
                kind,
                namespace,
                name,
                ..
            } => write!(f, "{kind} {namespace}/{name}"),
            Read::PodsOnNode { namespace, node } => write!(f, "pods in {namespace} on {node}"),
        }
    }
}

/// What the API answered for each read: an object (`Value::Null` when it does not exist), a
/// list of pods (an array), or the gap. A read that is absent was not made.
pub type KubeReads = BTreeMap<Read, Observed<Value>>;

/// The object waits, by catalog name.
pub const OBJECT_WAITS: [&str; 4] = [
    "kube.rollout",
    "kube.present",
    "kube.pod-running",
    "kube.allocatable",
];

fn arg<'a>(check: &str, args: &'a Args, name: &str) -> Result<Option<&'a str>, Error> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::Arg {
            check: check.into(),
            arg: name.into(),
            problem: format!("must be a string, found {other}"),
        }),
    }
}

fn req<'a>(check: &str, args: &'a Args, name: &str) -> Result<&'a str, Error> {
    arg(check, args, name)?.ok_or_else(|| Error::Arg {
        check: check.into(),
        arg: name.into(),
        problem: "is missing".into(),
    })
}

/// `kind` with its `apiVersion`: an explicit `api_version` wins; DaemonSet and Deployment
/// default to `apps/v1`, Node and Pod to `v1`.
fn kind_and_version(check: &str, args: &Args) -> Result<(String, String), Error> {
    let kind = req(check, args, "kind")?;
    let version = match (arg(check, args, "api_version")?, kind) {
        (Some(v), _) => v,
        (None, "DaemonSet" | "Deployment" | "StatefulSet" | "ReplicaSet") => "apps/v1",
        (None, "RuntimeClass") => "node.k8s.io/v1",
        (None, "Node" | "Pod" | "Namespace" | "ConfigMap" | "Secret" | "Service") => "v1",
        (None, other) => {
            return Err(Error::Arg {
                check: check.into(),
                arg: "api_version".into(),
                problem: format!("is needed for kind `{other}`"),
            });
        }
    };
    Ok((kind.to_string(), version.to_string()))
}

/// The reads the object wait `name` needs, with `node` already the Kubernetes node name.
pub fn reads(name: &str, args: &Args) -> Result<Vec<Read>, Error> {
    let object = |kind: String, api_version: String| -> Result<Read, Error> {
        Ok(Read::Object {
            api_version,
            kind,
            namespace: arg(name, args, "namespace")?
                .unwrap_or_default()
                .to_string(),
            name: req(name, args, "name")?.to_string(),
        })
    };
    Ok(match name {
        "kube.rollout" | "kube.present" => {
            let (kind, version) = kind_and_version(name, args)?;
            if name == "kube.rollout" && !matches!(kind.as_str(), "DaemonSet" | "Deployment") {
                return Err(Error::Arg {
                    check: name.into(),
                    arg: "kind".into(),
                    problem: format!("must be DaemonSet or Deployment, found `{kind}`"),
                });
            }
            vec![object(kind, version)?]
        }
        "kube.pod-running" => vec![
            object("DaemonSet".into(), "apps/v1".into())?,
            Read::PodsOnNode {
                namespace: arg(name, args, "namespace")?
                    .unwrap_or_default()
                    .to_string(),
                node: req(name, args, "node")?.to_string(),
            },
        ],
        "kube.allocatable" => vec![Read::Object {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: String::new(),
            name: req(name, args, "node")?.to_string(),
        }],
        _ => {
            return Err(Error::Unknown {
                kind: "condition",
                name: name.into(),
            });
        }
    })
}

fn observed<'a>(reads: &'a KubeReads, read: &Read) -> Result<&'a Value, Verdict> {
    match reads.get(read) {
        Some(Observed::Answered(v)) => Ok(v),
        Some(Observed::Missing(g)) => Err(unreadable(read, g)),
        Some(Observed::NotAsked) | None => Err(Verdict::fail(format!(
            "cannot decide: {read} was not observed (no kubeconfig?)"
        ))
        .with("unobserved", read.to_string())),
    }
}

fn unreadable(read: &Read, g: &Gap) -> Verdict {
    Verdict::fail(format!("cannot decide: {read}: {g}"))
        .with("unreadable", read.to_string())
        .with("gap", serde_json::to_value(g.kind).unwrap_or(Value::Null))
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// Polls an object wait over the reads made for it.
pub fn wait(name: &str, args: &Args, reads: &KubeReads) -> Result<Poll, Error> {
    let needed = self::reads(name, args)?;
    let mut got = Vec::new();
    for r in &needed {
        match observed(reads, r) {
            Ok(v) => got.push(v),
            Err(refusal) => return Ok(Poll::NotYet(refusal)),
        }
    }
    let (Some(first), Some(read)) = (got.first(), needed.first()) else {
        return Ok(Poll::NotYet(Verdict::fail(
            "cannot decide: nothing was read",
        )));
    };
    Ok(Poll::of(match name {
        "kube.rollout" => rollout(read, first),
        "kube.present" => present(
            read,
            first,
            arg(name, args, "field")?,
            args.get("value").filter(|v| !v.is_null()),
        )?,
        "kube.pod-running" => {
            let pods = got.get(1).copied().unwrap_or(&Value::Null);
            pod_running(read, first, pods, req(name, args, "node")?)
        }
        "kube.allocatable" => allocatable(
            first,
            req(name, args, "node")?,
            req(name, args, "resource")?,
            match args.get("min") {
                None | Some(Value::Null) => 1,
                Some(v) => v.as_i64().filter(|n| *n >= 1).ok_or_else(|| Error::Arg {
                    check: name.into(),
                    arg: "min".into(),
                    problem: format!("must be a positive integer, found {v}"),
                })?,
            },
        ),
        _ => {
            return Err(Error::Unknown {
                kind: "condition",
                name: name.into(),
            });
        }
    }))
}

/// A DaemonSet or Deployment finished rolling out: the controller saw the current generation
/// and every desired pod is updated and available (`kubectl rollout status`'s test). A
/// missing status field is "not yet", never zero.
pub fn rollout(read: &Read, obj: &Value) -> Verdict {
    if obj.is_null() {
        return Verdict::fail(format!("{read} does not exist"));
    }
    let Some(generation) = int(obj, "/metadata/generation") else {
        return Verdict::fail(format!("{read} has no metadata.generation"));
    };
    let observed = int(obj, "/status/observedGeneration");
    if observed.is_none_or(|o| o < generation) {
        return Verdict::fail(format!(
            "{read}: the controller has not observed generation {generation} yet"
        ))
        .with("generation", generation)
        .with("observed_generation", observed);
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (desired, updated, available) = if kind == "Deployment" {
        (
            int(obj, "/spec/replicas").or(Some(1)),
            int(obj, "/status/updatedReplicas"),
            int(obj, "/status/availableReplicas"),
        )
    } else {
        (
            int(obj, "/status/desiredNumberScheduled"),
            int(obj, "/status/updatedNumberScheduled"),
            int(obj, "/status/numberAvailable"),
        )
    };
    let (Some(d), Some(u), Some(a)) = (desired, updated, available) else {
        return Verdict::fail(format!("{read}: status counts not reported yet"))
            .with("desired", desired)
            .with("updated", updated)
            .with("available", available);
    };
    let v = |verdict: Verdict| {
        verdict
            .with("desired", d)
            .with("updated", u)
            .with("available", a)
    };
    if d == 0 {
        return v(Verdict::fail(format!(
            "{read}: no pod is desired (no node matches?): nothing rolled out"
        )));
    }
    if u == d && a == d {
        v(Verdict::pass(format!(
            "{read} rolled out: {a}/{d} updated and available"
        )))
    } else {
        v(Verdict::fail(format!(
            "{read} rolling out: {u}/{d} updated, {a}/{d} available"
        )))
    }
}

/// The object exists; with `field` (a JSON pointer such as `/handler`, or dotted
/// `.handler`), that field exists, and equals `value` when one is given.
pub fn present(
    read: &Read,
    obj: &Value,
    field: Option<&str>,
    value: Option<&Value>,
) -> Result<Verdict, Error> {
    if obj.is_null() {
        return Ok(Verdict::fail(format!("{read} does not exist")));
    }
    let Some(field) = field else {
        return Ok(Verdict::pass(format!("{read} exists")));
    };
    let pointer = if field.starts_with('/') {
        field.to_string()
    } else {
        field
            .trim_start_matches('.')
            .split('.')
            .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
            .collect()
    };
    Ok(match (obj.pointer(&pointer), value) {
        (None, _) => Verdict::fail(format!("{read} has no `{field}`")),
        (Some(found), Some(want)) if found == want || found.as_str() == Some(&want.to_string()) => {
            Verdict::pass(format!("{read} has `{field}` = {found}"))
        }
        (Some(found), Some(want)) => {
            Verdict::fail(format!("{read} has `{field}` = {found}, not {want}"))
                .with("found", found.clone())
        }
        (Some(found), None) => Verdict::pass(format!("{read} has `{field}` = {found}")),
    })
}

fn owned_by(pod: &Value, ds: &Value) -> bool {
    let (Some(name), uid) = (
        ds.pointer("/metadata/name").and_then(Value::as_str),
        ds.pointer("/metadata/uid").and_then(Value::as_str),
    ) else {
        return false;
    };
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners.iter().any(|o| {
                o.get("kind").and_then(Value::as_str) == Some("DaemonSet")
                    && o.get("name").and_then(Value::as_str) == Some(name)
                    && uid.is_none_or(|u| o.get("uid").and_then(Value::as_str) == Some(u))
            })
        })
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// A pod the DaemonSet owns runs on `node`: phase Running and Ready.
pub fn pod_running(read: &Read, ds: &Value, pods: &Value, node: &str) -> Verdict {
    if ds.is_null() {
        return Verdict::fail(format!("{read} does not exist"));
    }
    let Some(pods) = pods.as_array() else {
        return Verdict::fail(format!(
            "cannot decide: the pods on `{node}` were not listed"
        ));
    };
    let ours: Vec<&Value> = pods
        .iter()
        .filter(|p| owned_by(p, ds))
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .collect();
    let Some(pod) = ours.first() else {
        return Verdict::fail(format!("{read} has no pod on `{node}`"));
    };
    let pname = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Unknown");
    if phase == "Running" && pod_ready(pod) {
        Verdict::pass(format!(
            "pod `{pname}` of {read} is Running and Ready on `{node}`"
        ))
        .with("pod", pname)
    } else {
        Verdict::fail(format!(
            "pod `{pname}` of {read} on `{node}` is {phase}{}",
            if phase == "Running" {
                ", not Ready"
            } else {
                ""
            }
        ))
        .with("pod", pname)
        .with("phase", phase)
    }
}

/// Parses a Kubernetes quantity that counts things (`1`, `2`, `1k`); None for fractions.
fn count(q: &str) -> Option<i64> {
    let (digits, mult) = match q.strip_suffix('k') {
        Some(d) => (d, 1000),
        None => (q, 1),
    };
    digits.parse::<i64>().ok().map(|n| n * mult)
}

/// Node `node` reports at least `min` of `resource` allocatable (`status.allocatable`).
pub fn allocatable(node_obj: &Value, node: &str, resource: &str, min: i64) -> Verdict {
    if node_obj.is_null() {
        return Verdict::fail(format!("Kubernetes has no node `{node}`"));
    }
    let Some(all) = node_obj
        .pointer("/status/allocatable")
        .and_then(Value::as_object)
    else {
        return Verdict::fail(format!("node `{node}` reports no allocatable resources"));
    };
    match all.get(resource).and_then(Value::as_str) {
        None => Verdict::fail(format!("node `{node}` reports no `{resource}` allocatable")),
        Some(q) => match count(q) {
            Some(n) if n >= min => Verdict::pass(format!(
                "node `{node}` reports {n} `{resource}` allocatable"
            ))
            .with("allocatable", n),
            Some(n) => Verdict::fail(format!(
                "node `{node}` reports {n} `{resource}` allocatable, fewer than {min}"
            ))
            .with("allocatable", n),
            None => Verdict::fail(format!(
                "node `{node}` reports `{resource}` = {q:?}, not a count"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;

    #[test]
    fn ready_and_drained() {
        let mut v = three();
        assert!(ready(&v, "a").holds);
        v.nodes[0].kube_ready = Observed::Answered(Some(false));
        assert!(!ready(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::NotAsked;
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::Answered(2);
        assert!(!drained(&v, "a").holds);
        v.nodes[0].evictable_pods = Observed::Answered(0);
        assert!(drained(&v, "a").holds);
    }

    use crate::condition::view::GapKind;
    use serde_json::json;

    fn args(v: Value) -> Args {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    fn ds(generation: i64, observed: i64, desired: i64, updated: i64, available: i64) -> Value {
        json!({ "kind": "DaemonSet", "metadata": { "name": "p", "namespace": "kube-system", "uid": "u1", "generation": generation },
            "status": { "observedGeneration": observed, "desiredNumberScheduled": desired,
                "updatedNumberScheduled": updated, "numberAvailable": available } })
    }

    fn reads_with(name: &str, a: &Args, values: Vec<Observed<Value>>) -> KubeReads {
        reads(name, a).unwrap().into_iter().zip(values).collect()
    }

    fn holds(p: &Poll) -> bool {
        matches!(p, Poll::Holds(_))
    }

    #[test]
    fn rollout_needs_the_current_generation_and_every_pod_available() {
        let a = args(json!({ "kind": "DaemonSet", "namespace": "kube-system", "name": "p" }));
        let poll = |obj: Value| {
            wait(
                "kube.rollout",
                &a,
                &reads_with("kube.rollout", &a, vec![Observed::Answered(obj)]),
            )
            .unwrap()
        };
        assert!(holds(&poll(ds(2, 2, 1, 1, 1))));
        assert!(!holds(&poll(ds(2, 1, 1, 1, 1))), "stale observedGeneration");
        assert!(!holds(&poll(ds(1, 1, 3, 3, 2))), "one pod unavailable");
        assert!(
            !holds(&poll(ds(1, 1, 0, 0, 0))),
            "nothing desired is not a rollout"
        );
        assert!(!holds(&poll(
            json!({ "kind": "DaemonSet", "metadata": { "generation": 1 } })
        )));
        assert!(!holds(&poll(Value::Null)), "absent");
        let deploy = json!({ "kind": "Deployment", "metadata": { "generation": 3 }, "spec": { "replicas": 2 },
            "status": { "observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2 } });
        let d = args(json!({ "kind": "Deployment", "namespace": "default", "name": "web" }));
        let r = reads_with("kube.rollout", &d, vec![Observed::Answered(deploy)]);
        assert!(holds(&wait("kube.rollout", &d, &r).unwrap()));
        let bad = args(json!({ "kind": "ConfigMap", "name": "x" }));
        assert!(reads("kube.rollout", &bad).is_err());
    }

    #[test]
    fn object_waits_fail_closed_on_missing_or_refused_reads() {
        let a = args(json!({ "kind": "RuntimeClass", "name": "nvidia" }));
        let none = wait("kube.present", &a, &KubeReads::new()).unwrap();
        assert!(!holds(&none));
        assert!(
            none.verdict().reason.contains("not observed"),
            "{:?}",
            none.verdict()
        );
        let denied = Observed::Missing(Gap::new(
            "get RuntimeClass",
            GapKind::PermissionDenied,
            "forbidden",
        ));
        let refused = wait(
            "kube.present",
            &a,
            &reads_with("kube.present", &a, vec![denied]),
        )
        .unwrap();
        assert!(!holds(&refused));
        assert!(refused.verdict().reason.contains("cannot decide"));
    }

    #[test]
    fn present_checks_a_field_value_when_asked() {
        let a = args(
            json!({ "kind": "RuntimeClass", "name": "nvidia", "field": ".handler", "value": "nvidia" }),
        );
        let rc = |h: &str| json!({ "kind": "RuntimeClass", "metadata": { "name": "nvidia" }, "handler": h });
        let r = reads_with("kube.present", &a, vec![Observed::Answered(rc("nvidia"))]);
        assert!(holds(&wait("kube.present", &a, &r).unwrap()));
        let r = reads_with("kube.present", &a, vec![Observed::Answered(rc("runc"))]);
        assert!(!holds(&wait("kube.present", &a, &r).unwrap()));
    }

    #[test]
    fn pod_running_wants_a_ready_pod_of_that_daemonset_on_that_node() {
        let a = args(json!({ "namespace": "kube-system", "name": "p", "node": "nuc-20" }));
        let pod = |owner_uid: &str, node: &str, phase: &str, ready: &str| {
            json!({
            "metadata": { "name": "p-x", "ownerReferences": [ { "kind": "DaemonSet", "name": "p", "uid": owner_uid } ] },
            "spec": { "nodeName": node },
            "status": { "phase": phase, "conditions": [ { "type": "Ready", "status": ready } ] } })
        };
        let poll = |pods: Value| {
            let r = reads_with(
                "kube.pod-running",
                &a,
                vec![
                    Observed::Answered(ds(1, 1, 1, 1, 1)),
                    Observed::Answered(pods),
                ],
            );
            wait("kube.pod-running", &a, &r).unwrap()
        };
        assert!(holds(&poll(json!([pod(
            "u1", "nuc-20", "Running", "True"
        )]))));
        assert!(!holds(&poll(json!([pod(
            "u1", "nuc-20", "Pending", "False"
        )]))));
        assert!(!holds(&poll(json!([pod(
            "u1", "nuc-20", "Running", "False"
        )]))));
        assert!(
            !holds(&poll(json!([pod("other", "nuc-20", "Running", "True")]))),
            "a namesake's pod"
        );
        assert!(!holds(&poll(json!([]))));
    }

    #[test]
    fn allocatable_counts_the_resource() {
        let a = args(json!({ "node": "nuc-20", "resource": "nvidia.com/gpu" }));
        let node = |alloc: Value| json!({ "metadata": { "name": "nuc-20" }, "status": { "allocatable": alloc } });
        let poll = |n: Value| {
            let r = reads_with("kube.allocatable", &a, vec![Observed::Answered(n)]);
            wait("kube.allocatable", &a, &r).unwrap()
        };
        assert!(holds(&poll(node(json!({ "nvidia.com/gpu": "1" })))));
        assert!(!holds(&poll(node(json!({ "nvidia.com/gpu": "0" })))));
        assert!(!holds(&poll(node(json!({ "cpu": "8" })))));
        assert!(!holds(&poll(node(json!({ "nvidia.com/gpu": "500m" })))));
        assert!(!holds(&poll(Value::Null)));
    }
}
