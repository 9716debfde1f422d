//! Static checks on Talos machine configs: the mistakes that destroyed the seed's cluster,
//! caught before any of them is applied (`talos-procedures.md` §5).
//!
//! Each rule is a plain function over the configs being linted, each paired with its node's
//! inventory entry when there is one ([`Target`]); it returns [`Finding`]s with an id, a
//! severity, the `file:line:column` of the offending value in the file as stored (the
//! encrypted one, for SOPS files) and a fix. Rules that need a fact only the inventory has say
//! so instead of passing silently. `runbook lint` prints them; rebuild runbooks gate on the
//! errors.

pub mod config;
pub mod live;
pub mod load;
mod rules;

use crate::inventory::InventoryNode;
pub use config::{ConfigFile, Pos, Seg};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Applying this config would break a node or the cluster.
    Error,
    /// Risky, or a check that could not be made.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The rule, e.g. `L1`.
    pub id: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: String,
    /// 1-based line of the offending value in the file as stored.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong (never a secret value).
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// One config to lint, with its node's inventory entry if known.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The config.
    pub config: &'a ConfigFile,
    /// Its node in the inventory.
    pub node: Option<&'a InventoryNode>,
}

/// Every rule's id with its one-line summary, for docs and `--help`.
pub const RULES: &[(&str, &str)] = &[
    (
        "L1",
        "NVIDIA installer image only on nodes whose inventory says gpu: nvidia, vanilla elsewhere",
    ),
    (
        "L2",
        "NVIDIA image ⇒ the four nvidia kernel modules; no nvidia modules without it",
    ),
    (
        "L3",
        "NVIDIA kmod and container-toolkit extensions agree on the driver version, and the kmod on the Talos version",
    ),
    (
        "L4",
        "no bare /dev/sdX install disk on a node with removable media: use diskSelector or /dev/disk/by-id",
    ),
    ("L5", "`wipe: true` erases the install disk"),
    (
        "L13",
        "cluster identity and secrets are the same in every node's config",
    ),
    (
        "L14",
        "the control-plane endpoint is not a single node's address",
    ),
    ("L15", "no deprecated `machine.type: init`"),
    (
        "L16",
        "allowSchedulingOnControlPlanes on when every node is a control plane",
    ),
];

/// Runs every rule; findings sorted by file, line, column and id.
pub fn lint(targets: &[Target<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in targets {
        if !t.config.has_machine_doc() {
            out.push(Finding {
                id: "L0",
                severity: Severity::Error,
                file: t.config.path.display().to_string(),
                line: 1,
                column: 1,
                message: "no `version: v1alpha1` document: this is not a Talos machine config"
                    .into(),
                fix: "lint the machine config files (controlplane.yaml, worker.yaml)".into(),
            });
            continue;
        }
        rules::per_node(t, &mut out);
    }
    rules::across(targets, &mut out);
    out.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.id).cmp(&(b.file.as_str(), b.line, b.column, b.id))
    });
    out
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
