//! Which changes need a reboot: a path classification, conservative by construction. A path
//! applies without a reboot only if it lies under one of the sections listed here, a subset
//! of what Talos applies immediately (`CanApplyImmediate`, Talos v1.11 to v1.13); anything
//! else, any document other than `v1alpha1`, and any path we cannot place counts as needing
//! a reboot. The table is narrower than Talos's on purpose: `machine.install` (it takes
//! effect only through an install or upgrade), `machine.kernel` beyond `modules`, and the
//! network beyond hostname, nameservers and host entries (interfaces, routes, bonds) count as
//! reboot-requiring, as do disks.
//!
//! The same table classifies a patch before the run (from the paths the patch itself names:
//! [`static_paths`]) and the change at run time (from the paths that differ:
//! [`super::changed_paths`]); the changed paths always lie at or under the patch's own, so
//! a patch classified "no reboot" before the run cannot turn out to need one.

use serde_json::Value as J;

use super::{Format, Patch};

/// Sections that apply without a reboot (paths from the `v1alpha1` document's root).
const IMMEDIATE: &[&[&str]] = &[
    &["debug"],
    &["cluster"],
    &["machine", "ca"],
    &["machine", "acceptedCAs"],
    &["machine", "time"],
    &["machine", "certSANs"],
    &["machine", "sysfs"],
    &["machine", "sysctls"],
    &["machine", "logging"],
    &["machine", "controlplane"],
    &["machine", "kubelet"],
    &["machine", "kernel", "modules"],
    &["machine", "network", "hostname"],
    &["machine", "network", "nameservers"],
    &["machine", "network", "extraHostEntries"],
    &["machine", "registries"],
    &["machine", "pods"],
    &["machine", "seccompProfiles"],
    &["machine", "nodeAnnotations"],
    &["machine", "nodeLabels"],
    &["machine", "nodeTaints"],
    &["machine", "features", "kubernetesTalosAPIAccess"],
    &["machine", "features", "kubePrism"],
    &["machine", "features", "hostDNS"],
    &["machine", "features", "imageCache"],
    &["machine", "features", "nodeAddressSortAlgorithm"],
];

/// A path in a config: the document's identity (`v1alpha1` or `apiVersion/kind[/name]`) and
/// the keys (list indices as numbers) from its root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigPath {
    /// The document.
    pub doc: String,
    /// Keys from the document's root.
    pub keys: Vec<String>,
}

impl std::fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.doc != "v1alpha1" {
            write!(f, "{}:", self.doc)?;
        }
        if self.keys.is_empty() {
            f.write_str("<document>")
        } else {
            f.write_str(&self.keys.join("."))
        }
    }
}

/// Whether a change at `path` applies without a reboot.
pub fn immediate(path: &ConfigPath) -> bool {
    path.doc == "v1alpha1"
        && IMMEDIATE.iter().any(|imm| {
            path.keys.len() >= imm.len() && imm.iter().zip(&path.keys).all(|(a, b)| a == b)
        })
}

/// Whether any of the changes needs a reboot.
pub fn reboot_required(paths: &[ConfigPath]) -> bool {
    paths.iter().any(|p| !immediate(p))
}

/// The paths a patch names (where it can change anything), without a config: maps are
/// followed down to their scalars, lists and deletes; RFC 6902 operations name their `path`
/// and `from`.
pub fn static_paths(patch: &Patch) -> Vec<ConfigPath> {
    let mut out = Vec::new();
    match patch {
        Patch::Strategic(docs) => {
            for d in docs {
                let doc = if d.get("version").is_none()
                    && d.get("kind").is_none()
                    && d.get("apiVersion").is_none()
                {
                    "v1alpha1".to_string()
                } else {
                    super::strategic::doc_id(d)
                };
                let skip_identity = doc != "v1alpha1";
                walk(d, &doc, &mut Vec::new(), skip_identity, &mut out);
            }
        }
        Patch::Json6902(ops) => {
            for op in &ops.0 {
                let v = serde_json::to_value(op).unwrap_or(J::Null);
                for key in ["path", "from"] {
                    if let Some(p) = v.get(key).and_then(J::as_str) {
                        out.push(ConfigPath {
                            doc: "v1alpha1".into(),
                            keys: pointer_keys(p),
                        });
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn walk(v: &J, doc: &str, keys: &mut Vec<String>, top_identity: bool, out: &mut Vec<ConfigPath>) {
    match v {
        J::Object(m) if !m.is_empty() && m.get("$patch").is_none() => {
            for (k, x) in m {
                if keys.is_empty()
                    && (k == "version"
                        || (top_identity && ["apiVersion", "kind", "name"].contains(&k.as_str())))
                {
                    continue;
                }
                keys.push(k.clone());
                walk(x, doc, keys, top_identity, out);
                keys.pop();
            }
        }
        _ => out.push(ConfigPath {
            doc: doc.to_string(),
            keys: keys.clone(),
        }),
    }
}

/// RFC 6901 pointer → keys (`~1` is `/`, `~0` is `~`).
fn pointer_keys(p: &str) -> Vec<String> {
    p.split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The plan-time answer for `talos.patch`: does this call need the `etcd.safe-down` guard?
/// `mode: reboot` always; `no-reboot`, `staged` and `try` never (Talos refuses or defers a
/// change that needs a reboot), nor a literal `dry_run: true`; `auto` when the literal patch needs a reboot, or when the
/// patch is not known before the run (a file, an expression: unknown ⇒ needs a reboot).
pub fn plan_needs_reboot(arg: &dyn Fn(&str) -> Option<J>) -> bool {
    // A dry run sends nothing (only a literal `true` counts: an expression may be false).
    if arg("dry_run") == Some(J::Bool(true)) {
        return false;
    }
    let mode = arg("mode");
    match mode.as_ref().and_then(J::as_str).unwrap_or("auto") {
        "no-reboot" | "staged" | "try" => false,
        "auto" => {
            let Ok(format) = Format::from_arg(arg("format").as_ref().and_then(J::as_str)) else {
                return true;
            };
            match (arg("patch"), arg("patch_file")) {
                (Some(p), None) => super::patch_from_value(format, &p)
                    .map(|patch| reboot_required(&static_paths(&patch)))
                    .unwrap_or(true),
                _ => true,
            }
        }
        _ => true,
    }
}
