//! The local backup actions, `backup.prune` and `backup.drill`: they need no cluster
//! connection (the drill starts its own throwaway one), so they run under both the local and
//! the cluster effects (`exec/local.rs` dispatches here).
//!
//! `backup.prune` journals its plan (the files it will delete) as the intent's `pre_state`
//! before deleting anything, and what it deleted as its outputs: a kill mid-prune leaves the
//! plan in the journal, and the resumed attempt recomputes from the disk (never deleting more
//! than `keep` allows) and records the rest.

use std::path::Path;

use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};
use crate::journal::Fields;

fn bad(call: &ActionCall<'_>, arg: &str, reason: impl Into<String>) -> EffectError {
    EffectError::BadArgument {
        name: call.name.into(),
        arg: arg.into(),
        reason: reason.into(),
    }
}

fn str_arg<'a>(call: &ActionCall<'a>, name: &str) -> Result<Option<&'a str>, EffectError> {
    match call.args.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(call, name, format!("expected a string, found {other}"))),
    }
}

fn req<'a>(call: &ActionCall<'a>, name: &str) -> Result<&'a str, EffectError> {
    str_arg(call, name)?.ok_or_else(|| bad(call, name, "missing"))
}

fn keep(call: &ActionCall<'_>) -> Result<u64, EffectError> {
    match call.args.get("keep") {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad(call, "keep", "expected a whole number")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| bad(call, "keep", format!("`{s}` is not a whole number"))),
        _ => Err(bad(call, "keep", "missing")),
    }
}

fn failed(call: &ActionCall<'_>, message: impl std::fmt::Display) -> EffectError {
    EffectError::Failed {
        message: format!("`{}`: {message}", call.name),
        retryable: false,
    }
}

fn paths(v: &[std::path::PathBuf]) -> serde_json::Value {
    v.iter()
        .map(|p| serde_json::Value::from(p.display().to_string()))
        .collect::<Vec<_>>()
        .into()
}

fn prune_plan(call: &ActionCall<'_>) -> Result<super::prune::Plan, EffectError> {
    let dir = Path::new(req(call, "dir")?);
    let after = Path::new(req(call, "after")?);
    let cluster = str_arg(call, "cluster_id")?;
    super::prune::plan(dir, keep(call)?, cluster, after).map_err(|e| match e {
        super::prune::PruneError::KeepZero(_) => bad(call, "keep", e.to_string()),
        other => failed(call, other),
    })
}

/// Whether `name` is one of these actions.
pub fn handles(name: &str) -> bool {
    matches!(name, "backup.prune" | "backup.drill")
}

/// What to journal before the action runs: `backup.prune`'s plan.
pub fn pre_state(call: &ActionCall<'_>) -> Result<Fields, EffectError> {
    let mut out = Fields::new();
    if call.name == "backup.prune" {
        let plan = prune_plan(call)?;
        out.insert("will_delete".into(), paths(&plan.delete));
        out.insert("orphan_sidecars".into(), paths(&plan.orphans));
        if let Some(why) = plan.skipped {
            out.insert("skipped".into(), why.into());
        }
    }
    Ok(out)
}

/// Performs `backup.prune` or `backup.drill`.
pub async fn perform(call: &ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
    match call.name {
        "backup.prune" => {
            let dir = Path::new(req(call, "dir")?);
            let plan = prune_plan(call)?;
            let done = super::prune::apply(dir, &plan).map_err(|e| failed(call, e))?;
            let mut messages = Vec::new();
            match &plan.skipped {
                Some(why) => messages.push(format!("nothing pruned: {why}")),
                None => messages.push(format!(
                    "kept {} snapshot(s), deleted {}{}",
                    plan.keep.len(),
                    done.deleted.len(),
                    if done.orphans.is_empty() {
                        String::new()
                    } else {
                        format!(" and {} orphan sidecar(s)", done.orphans.len())
                    }
                )),
            }
            let outputs = [
                ("pruned", plan.skipped.is_none().into()),
                ("deleted", paths(&done.deleted)),
                ("orphan_sidecars", paths(&done.orphans)),
                ("kept", paths(&plan.keep)),
                (
                    "unverified",
                    plan.unverified
                        .iter()
                        .map(|u| serde_json::Value::from(u.as_str()))
                        .collect::<Vec<_>>()
                        .into(),
                ),
                (
                    "skipped",
                    plan.skipped
                        .clone()
                        .map_or(serde_json::Value::Null, Into::into),
                ),
            ];
            Ok(ActionOutcome {
                outputs: outputs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                messages,
            })
        }
        "backup.drill" => {
            let snapshot = Path::new(req(call, "snapshot")?);
            let identity = str_arg(call, "age_identity")?
                .filter(|s| !s.trim().is_empty())
                .map(Path::new);
            let report = super::drill::run(snapshot, identity)
                .await
                .map_err(|e| failed(call, e))?;
            if !report.drill.ok {
                return Err(failed(
                    call,
                    format!(
                        "restore drill of `{}` failed (recorded in its sidecar): {}",
                        snapshot.display(),
                        report.drill.detail
                    ),
                ));
            }
            let outputs = [
                ("ok", true.into()),
                ("detail", report.drill.detail.clone().into()),
                ("revision", report.revision.into()),
                ("keys", report.keys.into()),
                ("at", report.drill.at.clone().into()),
            ];
            Ok(ActionOutcome {
                outputs: outputs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                messages: vec![report.drill.detail],
            })
        }
        other => Err(EffectError::NeedsCluster {
            name: other.to_string(),
        }),
    }
}
