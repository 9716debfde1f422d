//! The body of the `preflight` action: observe the cluster once (read-only: the same lists and
//! gets as `runbook doctor`), lint the configs the step names, and decide with
//! [`crate::doctor::preflight::decide`].
//!
//! A critical finding comes back as [`EffectError::Refused`], which the runner journals as a
//! refused guard (exit code `GUARD_REFUSED`) unless the run carries an `--override-preflight`
//! decision; the findings are the figures of that refusal, or the step's outputs when it
//! passes. An argument it cannot use is a bad argument (the action is not sent), never a pass.

use std::path::PathBuf;

use super::{ClusterEffects, strings};
use crate::doctor::preflight::{Check, Outcome, Spec};
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};
use crate::inventory::Inventory;
use crate::journal::Fields;

fn bad(arg: &str, reason: String) -> EffectError {
    EffectError::BadArgument {
        name: "preflight".into(),
        arg: arg.into(),
        reason,
    }
}

/// The step's declaration, checked.
pub(super) fn spec(call: &ActionCall<'_>) -> Result<(Spec, Vec<String>), EffectError> {
    let mut checks = std::collections::BTreeSet::new();
    for c in strings(call, "checks")? {
        let check = Check::parse(&c).ok_or_else(|| {
            let names: Vec<&str> = Check::ALL.iter().map(|(_, n)| *n).collect();
            bad(
                "checks",
                format!("`{c}` is not one of {}", names.join(", ")),
            )
        })?;
        checks.insert(check);
    }
    let lint = strings(call, "lint")?;
    for id in &lint {
        if !crate::lint::RULES.iter().any(|(r, _)| r == id) {
            return Err(bad("lint", format!("`{id}` is not a lint rule")));
        }
    }
    if checks.is_empty() && lint.is_empty() {
        return Err(bad(
            "checks",
            "a preflight that checks nothing proves nothing: declare `checks:` or `lint:`".into(),
        ));
    }
    let nodes = match call.args.get("nodes") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(strings(call, "nodes")?),
    };
    let gpu_node = match call.args.get("gpu_node") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(bad("gpu_node", format!("expected a node, found {other}"))),
    };
    Ok((
        Spec {
            checks,
            nodes,
            down: strings(call, "down")?,
            gpu_node,
        },
        lint,
    ))
}

fn path_arg(call: &ActionCall<'_>, arg: &str) -> Result<Option<PathBuf>, EffectError> {
    match call.args.get(arg) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(bad(arg, format!("expected a path, found {other}"))),
    }
}

/// The findings as journaled figures.
pub(super) fn figures(o: &Outcome, report: &crate::doctor::Report, spec: &Spec) -> Fields {
    let list = |sev| {
        serde_json::Value::Array(
            o.findings
                .iter()
                .filter(|f| f.severity == sev)
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect(),
        )
    };
    let mut f = Fields::new();
    f.insert(
        "verdict".into(),
        if o.refused { "refused" } else { "passed" }.into(),
    );
    f.insert("critical".into(), list(crate::doctor::Severity::Critical));
    f.insert("warnings".into(), list(crate::doctor::Severity::Warning));
    f.insert(
        "checked".into(),
        spec.checks
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .into(),
    );
    if let Some(e) = &report.etcd {
        f.insert(
            "etcd".into(),
            serde_json::json!({
                "voters": e.voters,
                "healthy": e.healthy,
                "quorum": e.quorum,
                "margin": e.margin,
                "leader": e.leader,
            }),
        );
    }
    f
}

impl ClusterEffects {
    /// `preflight`: read-only checks and lints; refuses on a critical finding.
    pub(super) async fn preflight(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let (spec, lint_ids) = spec(call)?;
        let inventory = match path_arg(call, "inventory")? {
            None => None,
            Some(p) => Some(Inventory::load(&p).map_err(|e| bad("inventory", e.to_string()))?),
        };
        let backup_dir = path_arg(call, "backup_dir")?;
        if spec.checks.contains(&Check::Backup) && backup_dir.is_none() {
            return Err(bad(
                "backup_dir",
                "the backup check needs the directory of verified snapshots".into(),
            ));
        }
        let configs: Vec<PathBuf> = strings(call, "configs")?
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if !lint_ids.is_empty() && configs.is_empty() && inventory.is_none() {
            return Err(bad(
                "configs",
                "lints need the configs to lint: `configs:` or an `inventory:` naming them".into(),
            ));
        }
        let config_paths = if configs.is_empty() {
            inventory
                .iter()
                .flat_map(|i| i.nodes.iter().filter_map(|n| n.config.clone()))
                .collect()
        } else {
            configs
        };
        let lint = if lint_ids.is_empty() {
            Vec::new()
        } else {
            let (files, mut problems) = crate::lint::load::configs(&config_paths);
            problems.extend(crate::lint::load::lint_only(
                &files,
                inventory.as_ref(),
                &lint_ids,
            ));
            problems
        };
        let (view, extras) = if spec.checks.is_empty() {
            (crate::condition::view::ClusterView::default(), Vec::new())
        } else {
            let view = self.observer.view().await;
            let extras = crate::doctor::probe::all(&self.observer, &view).await;
            (view, extras)
        };
        let report = crate::doctor::diagnose(
            &view,
            &extras,
            backup_dir.as_deref(),
            std::time::SystemTime::now(),
        );
        let outcome = crate::doctor::preflight::decide(&view, &extras, &report, &lint, &spec);
        let figures = figures(&outcome, &report, &spec);
        if outcome.refused {
            return Err(EffectError::Refused {
                reason: outcome.refusal(),
                figures,
            });
        }
        let warnings = outcome.findings.len();
        let mut done = ActionOutcome {
            outputs: figures,
            messages: Vec::new(),
        };
        if warnings > 0 {
            done.messages.push(format!(
                "preflight passed with {warnings} warning(s): {}",
                outcome
                    .findings
                    .iter()
                    .map(|f| format!("[{}] {}", f.scope, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        Ok(done)
    }
}
