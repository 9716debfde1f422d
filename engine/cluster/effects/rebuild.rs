//! The bodies of `rebuild.plan` and `rebuild.check-node`, the read-only checks of a full
//! rebuild (`runbooks/full-rebuild.yaml`).
//!
//! `rebuild.plan` runs before anything is wiped: it reads the inventory, lints every config it
//! names (L0, L1, L2, L4, L13 and L15 errors refuse), takes each node's image and install
//! disk from its config, checks the configs' identity against the running cluster for the
//! variant (`fresh`: new secrets; `restore`: the old ones, plus a snapshot verified by its
//! sidecar and taken from this cluster), and checks each config's install disk against the
//! live node's disk list (exactly one writable, non-USB disk) and its image against the PCI
//! devices. Every problem is collected and the step is refused with all of them
//! ([`EffectError::Refused`]: a refused guard, exit 4, nothing sent). Its outputs (config path,
//! image, disk and the sha256 of each config as stored, per node) are journaled, so later
//! steps use exactly what was checked. `rebuild.check-node` repeats the per-node checks in
//! maintenance mode, right before the config is applied, and refuses if the config file
//! changed since the plan. Neither sends anything to a node but reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::{ClusterEffects, arg, opt};
use crate::condition::view::{Contact, NodeView, Observed};
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};
use crate::inventory::Inventory;
use crate::inventory::rebuild::{
    DiskSpec, Identity, Variant, check_identity, disk_spec, image, image_fits, match_disk,
};
use crate::journal::Fields;
use crate::lint::{ConfigFile, Finding, Severity};

/// Lint rules whose errors refuse a rebuild before any wipe.
const REFUSING: &[&str] = &["L0", "L1", "L2", "L4", "L13", "L15"];

fn bad(name: &str, arg: &str, reason: String) -> EffectError {
    EffectError::BadArgument {
        name: name.into(),
        arg: arg.into(),
        reason,
    }
}

fn nodes_arg(call: &ActionCall<'_>) -> Result<Vec<String>, EffectError> {
    match call.args.get("nodes") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(call.name, "nodes", format!("expected nodes, found {i}")))
            })
            .collect(),
        Some(serde_json::Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()),
        _ => Err(bad(call.name, "nodes", "missing".into())),
    }
}

/// sha256 (hex) of a file as stored (the ciphertext, for a SOPS file).
fn file_digest(path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

fn finding_text(f: &Finding) -> String {
    format!(
        "[{}] {}:{}:{}: {}",
        f.id, f.file, f.line, f.column, f.message
    )
}

fn refused(problems: Vec<String>, mut figures: Fields) -> EffectError {
    figures.insert(
        "problems".into(),
        serde_json::Value::Array(problems.iter().cloned().map(Into::into).collect()),
    );
    EffectError::Refused {
        reason: problems.join("; "),
        figures,
    }
}

/// The node's disks and PCI devices against its config: the install disk must be exactly one
/// writable non-USB disk, the image must fit the hardware. Missing evidence is a problem.
fn check_hardware(
    v: &NodeView,
    spec: &DiskSpec,
    image: &str,
    problems: &mut Vec<String>,
) -> Option<(String, String)> {
    let node = v.label.as_str();
    let disk = match v.disks.get() {
        Some(disks) => match match_disk(node, spec, disks) {
            Ok(d) => Some((d.dev_path.clone(), d.serial.clone())),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        None => {
            problems.push(format!(
                "the disks of `{node}` could not be read{}: the install disk {spec} cannot be checked",
                v.disks.gap().map(|g| format!(" ({g})")).unwrap_or_default()
            ));
            None
        }
    };
    match v.pci_vendors.get() {
        Some(vendors) => {
            if let Err(e) = image_fits(node, image, vendors) {
                problems.push(e);
            }
        }
        None => problems.push(format!(
            "the PCI devices of `{node}` could not be read{}: whether `{image}` fits its hardware cannot be checked",
            v.pci_vendors.gap().map(|g| format!(" ({g})")).unwrap_or_default()
        )),
    }
    disk
}

/// What the plan found for one node.
struct Planned {
    config: PathBuf,
    digest: String,
    image: String,
    spec: DiskSpec,
}

impl ClusterEffects {
    /// `rebuild.plan`: every check a full rebuild makes before its first wipe.
    pub(super) async fn rebuild_plan(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let name = call.name;
        let inventory_path = PathBuf::from(arg(call, "inventory")?);
        let variant_text = arg(call, "variant")?;
        let variant = Variant::parse(variant_text).ok_or_else(|| {
            bad(
                name,
                "variant",
                format!("`{variant_text}` is not `fresh` or `restore`"),
            )
        })?;
        let nodes = nodes_arg(call)?;
        let snapshot = opt(call, "snapshot")?
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);
        let inventory = Inventory::load(&inventory_path).map_err(|e| {
            let detail = match &e {
                crate::inventory::InventoryError::Invalid { diagnostics, .. } => {
                    format!(
                        ": {}",
                        diagnostics.to_string().trim_end().replace('\n', "; ")
                    )
                }
                _ => String::new(),
            };
            refused(vec![format!("{e}{detail}")], Fields::new())
        })?;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();

        let names: Vec<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
        if names != nodes.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!(
                "the nodes to rebuild ({}) are not the inventory's ({}, in that order): a rebuild wipes every node of the cluster",
                nodes.join(","),
                names.join(",")
            ));
        }

        // The configs, loaded once (SOPS files decrypted in memory) and linted together.
        let mut paths = Vec::new();
        for n in &inventory.nodes {
            match &n.config {
                Some(p) => paths.push(p.clone()),
                None => problems.push(format!(
                    "`{}` has no `config` in `{}`: the rebuild takes everything it installs from the config",
                    n.name,
                    inventory_path.display()
                )),
            }
        }
        let (files, mut findings) = crate::lint::load::configs(&paths);
        findings.extend(crate::lint::load::lint_only(&files, Some(&inventory), &[]));
        findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        findings.dedup();
        for f in &findings {
            if f.severity == Severity::Error && REFUSING.contains(&f.id) {
                problems.push(finding_text(f));
            } else {
                warnings.push(finding_text(f));
            }
        }

        let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
        // Every config's identity (L13 compares values only where both configs carry them, so
        // a config without one would otherwise pass unnoticed).
        let mut identities: Vec<(String, Identity)> = Vec::new();
        for n in &inventory.nodes {
            let Some(path) = &n.config else { continue };
            let Some(file) = files.iter().find(|f| &f.path == path) else {
                continue; // unreadable: an L0 problem already
            };
            let id = Identity::of(file);
            if let Err(e) = id.require() {
                problems.push(format!("{e} (`{}`)", file.path.display()));
            }
            identities.push((file.path.display().to_string(), id));
            let (img, spec) = match (image(file), disk_spec(file)) {
                (Ok(i), Ok(s)) => (i, s),
                (i, s) => {
                    problems.extend(i.err());
                    problems.extend(s.err());
                    continue;
                }
            };
            match file_digest(path) {
                Ok(digest) => {
                    planned.insert(
                        n.name.clone(),
                        Planned {
                            config: path.clone(),
                            digest,
                            image: img,
                            spec,
                        },
                    );
                }
                Err(e) => problems.push(e),
            }
        }

        // The live nodes: every one must answer; configured ones carry the old identity.
        let configs_cluster_id = identities.first().and_then(|(_, i)| i.cluster_id());
        let mut running_cluster_id = None;
        let mut disks = BTreeMap::new();
        let mut flagged = std::collections::BTreeSet::new();
        for node in &names {
            let v = self.observer.node(node).await;
            match &v.contact {
                Observed::Answered(Contact::Secure) => {
                    match self.current_config(node).await.map(|text| {
                        ConfigFile::from_parts(Path::new(node), &text, None)
                            .map(|c| Identity::of(&c))
                    }) {
                        Ok(Ok(running)) => {
                            // One problem per config at most (the first node that shows it).
                            for (file, identity) in &identities {
                                if flagged.contains(file) || identity.require().is_err() {
                                    continue;
                                }
                                if let Err(e) = check_identity(variant, identity, &running, node)
                                {
                                    problems.push(format!("{e} (`{file}`)"));
                                    flagged.insert(file.clone());
                                }
                            }
                        }
                        Ok(Err(e)) => problems.push(format!(
                            "the running config of `{node}` cannot be read: {e}"
                        )),
                        Err(e) => problems.push(format!(
                            "the running config of `{node}` cannot be read, so its identity cannot be compared: {e}"
                        )),
                    }
                    if running_cluster_id.is_none() {
                        running_cluster_id = self.cluster_id(node).await;
                    }
                }
                Observed::Answered(Contact::Maintenance) => {}
                other => problems.push(format!(
                    "`{node}` does not answer ({}): every node must answer before the first wipe",
                    other
                        .gap()
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "not observed".into())
                )),
            }
            if let Some(p) = planned.get(*node)
                && let Some(d) = check_hardware(&v, &p.spec, &p.image, &mut problems)
            {
                disks.insert(node.to_string(), d);
            }
        }

        // The snapshot a restore bootstraps from: verified by its sidecar, of this cluster.
        let mut snapshot_fields = serde_json::Value::Null;
        match (variant, &snapshot) {
            (Variant::Fresh, Some(s)) => problems.push(format!(
                "variant `fresh` bootstraps a new cluster and restores nothing, but `snapshot` names `{}`: drop it, or use `variant=restore`",
                s.display()
            )),
            (Variant::Fresh, None) => {}
            (Variant::Restore, None) => problems.push(
                "variant `restore` needs `snapshot`: a verified etcd snapshot of this cluster (with its sidecar)".into(),
            ),
            (Variant::Restore, Some(s)) => match crate::cluster::backup::verify(s) {
                Err(e) => problems.push(format!("the snapshot cannot be trusted: {e}")),
                Ok(sidecar) => {
                    // Encrypted (by its sidecar or its own header): it must decrypt with
                    // `age_identity`, in memory, to a valid etcd snapshot before any wipe.
                    let encrypted = sidecar.encrypted
                        || super::age_restore::is_age(s).unwrap_or(true);
                    if encrypted {
                        match super::age_restore::identity(call)? {
                            None => problems.push(format!(
                                "`{}` is age-encrypted and no `age_identity` was given: pass the age key file with `--param age_identity=KEY` (it is decrypted in memory, never written)",
                                s.display()
                            )),
                            Some(key) => {
                                if let Err(e) = super::age_restore::decrypt_file(s, key) {
                                    problems.push(format!(
                                        "`{}` is age-encrypted and cannot be restored with `age_identity`: {e}",
                                        s.display()
                                    ));
                                }
                            }
                        }
                    }
                    let ours = [running_cluster_id.as_deref(), configs_cluster_id];
                    match sidecar.cluster_id.as_deref() {
                        Some(id) if ours.contains(&Some(id)) => {}
                        Some(_) => problems.push(format!(
                            "`{}` was taken from another cluster (its sidecar's cluster_id is neither the running cluster's nor the configs' cluster.id)",
                            s.display()
                        )),
                        None => problems.push(format!(
                            "the sidecar of `{}` records no cluster_id: it cannot be shown to be this cluster's",
                            s.display()
                        )),
                    }
                    snapshot_fields = serde_json::json!({
                        "path": s.display().to_string(),
                        "node": sidecar.node,
                        "revision": sidecar.revision,
                        "taken_at": sidecar.taken_at,
                        "sha256": sidecar.sha256,
                        "encrypted": encrypted,
                    });
                }
            },
        }

        let map = |f: &dyn Fn(&Planned) -> String| -> serde_json::Value {
            planned
                .iter()
                .map(|(k, p)| (k.clone(), serde_json::Value::String(f(p))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut fields = Fields::new();
        fields.insert("variant".into(), variant_text.into());
        fields.insert("configs".into(), map(&|p| p.config.display().to_string()));
        fields.insert("digests".into(), map(&|p| p.digest.clone()));
        fields.insert("images".into(), map(&|p| p.image.clone()));
        fields.insert("install_disks".into(), map(&|p| p.spec.to_string()));
        fields.insert(
            "disks".into(),
            disks
                .iter()
                .map(|(k, (dev, serial))| {
                    (
                        k.clone(),
                        serde_json::json!({ "dev_path": dev, "serial": serial }),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        fields.insert("snapshot".into(), snapshot_fields);
        fields.insert(
            "warnings".into(),
            serde_json::Value::Array(warnings.iter().cloned().map(Into::into).collect()),
        );
        if !problems.is_empty() {
            return Err(refused(problems, fields));
        }
        let mut messages: Vec<String> = planned
            .iter()
            .map(|(node, p)| {
                let disk = disks
                    .get(node)
                    .map(|(d, s)| format!("{d} (serial {s})"))
                    .unwrap_or_default();
                format!(
                    "`{node}` installs `{}` onto {} = {disk}, from `{}`",
                    p.image,
                    p.spec,
                    p.config.display()
                )
            })
            .collect();
        if !warnings.is_empty() {
            messages.push(format!(
                "lint warnings (not refusing): {}",
                warnings.join("; ")
            ));
        }
        Ok(ActionOutcome {
            outputs: fields,
            messages,
        })
    }

    /// `rebuild.check-node`: in maintenance mode, right before the config is applied, the
    /// config is still the one planned and its install disk and image still fit the node.
    pub(super) async fn rebuild_check_node(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let config = PathBuf::from(arg(call, "config")?);
        let planned = arg(call, "digest")?;
        let mut problems = Vec::new();
        let v = self.observer.node(node).await;
        if !v.maintenance() {
            problems.push(format!(
                "`{node}` is not in maintenance mode ({}): the config is applied only to a wiped node",
                match &v.contact {
                    Observed::Answered(Contact::Secure) => "it answers with the cluster's certificate".to_string(),
                    other => other.gap().map(|g| g.to_string()).unwrap_or_else(|| "not observed".into()),
                }
            ));
        }
        match file_digest(&config) {
            Ok(d) if d == planned => {}
            Ok(_) => problems.push(format!(
                "`{}` changed since the plan checked it: plan the rebuild again",
                config.display()
            )),
            Err(e) => problems.push(e),
        }
        let mut fields = Fields::new();
        match ConfigFile::load(&config) {
            Err(e) => problems.push(format!("cannot read `{}`: {e}", config.display())),
            Ok(file) => match (image(&file), disk_spec(&file)) {
                (Ok(img), Ok(spec)) => {
                    if let Some((dev, serial)) = check_hardware(&v, &spec, &img, &mut problems) {
                        fields.insert("dev_path".into(), dev.into());
                        fields.insert("serial".into(), serial.into());
                    }
                    fields.insert("image".into(), img.into());
                    fields.insert("install_disk".into(), spec.to_string().into());
                }
                (i, s) => {
                    problems.extend(i.err());
                    problems.extend(s.err());
                }
            },
        }
        if !problems.is_empty() {
            return Err(refused(problems, fields));
        }
        Ok(ActionOutcome {
            outputs: fields,
            messages: Vec::new(),
        })
    }
}
