//! `talos.patch`: read the node's running machine config (COSI `MachineConfigs.config.talos.dev`
//! `config/v1alpha1`, as talosctl does), apply the patch client-side
//! ([`crate::machine_config`]), and send `ApplyConfiguration` only when the result differs by
//! meaning from what runs.
//!
//! This file exists to keep the action's cluster half apart from the pure patch logic: the
//! reads, the one call, the redacted dry-run diff, the run-time backstop of the plan's
//! reboot classification, and the probe that settles an interrupted attempt ("the running
//! config already contains the patch" ⇒ done), so a kill between the call and its record
//! never sends a second `ApplyConfiguration`. The config and the patch hold secrets: neither
//! is logged nor journaled; outputs are the changed paths (keys, never values), and the diff
//! goes to the operator's messages, redacted by path.

use std::time::Duration;

use runbook_proto::machine::ApplyConfigurationRequest;

use super::{ClusterEffects, arg, flag, opt, outputs, read_config, status_error};
use crate::cluster::talos::with_node;
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError, Probe};
use crate::machine_config as mc;

/// The `ApplyConfigurationRequest.mode` of a `mode:` argument (REBOOT=0, AUTO=1, NO_REBOOT=2,
/// STAGED=3, TRY=4).
pub(super) fn apply_mode(call: &ActionCall<'_>) -> Result<i32, EffectError> {
    match opt(call, "mode")?.unwrap_or("auto") {
        "reboot" => Ok(0),
        "auto" => Ok(1),
        "no-reboot" => Ok(2),
        "staged" => Ok(3),
        "try" => Ok(4),
        other => Err(EffectError::BadArgument {
            name: call.name.into(),
            arg: "mode".into(),
            reason: format!("unknown mode `{other}`"),
        }),
    }
}

fn bad(call: &ActionCall<'_>, arg: &str, reason: impl Into<String>) -> EffectError {
    EffectError::BadArgument {
        name: call.name.into(),
        arg: arg.into(),
        reason: reason.into(),
    }
}

fn failed(call: &ActionCall<'_>, message: impl std::fmt::Display, retryable: bool) -> EffectError {
    EffectError::Failed {
        message: format!("`{}`: {message}", call.name),
        retryable,
    }
}

/// The patch of a call, from `patch` or `patch_file` (exactly one). A malformed patch is an
/// authoring error naming the file, line and column.
pub(super) fn patch_of(call: &ActionCall<'_>) -> Result<mc::Patch, EffectError> {
    let format = mc::Format::from_arg(opt(call, "format")?).map_err(|e| bad(call, "format", e))?;
    let inline = call.args.get("patch").filter(|v| !v.is_null());
    match (inline, opt(call, "patch_file")?) {
        (Some(v), None) => {
            mc::patch_from_value(format, v).map_err(|e| bad(call, "patch", e.to_string()))
        }
        (None, Some(path)) => {
            let bytes = read_config(call.name, path)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| bad(call, "patch_file", format!("`{path}` is not UTF-8 text")))?;
            mc::patch_from_file(format, path, &text).map_err(|d| {
                bad(
                    call,
                    "patch_file",
                    d.0.iter()
                        .map(|x| x.one_line())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })
        }
        (Some(_), Some(_)) => Err(bad(call, "patch", "give `patch` or `patch_file`, not both")),
        (None, None) => Err(bad(call, "patch", "give `patch` (inline) or `patch_file`")),
    }
}

/// What a patch would do to a node's running config.
pub(super) struct Preview {
    pub(super) current: mc::Config,
    pub(super) patched: mc::Config,
    pub(super) paths: Vec<mc::ConfigPath>,
}

impl Preview {
    fn changed(&self) -> bool {
        !mc::same(&self.current, &self.patched)
    }

    fn reboot_required(&self) -> bool {
        self.changed() && mc::reboot_required(&self.paths)
    }
}

impl ClusterEffects {
    /// Reads the running config and applies the patch to it; nothing is sent. A node that
    /// does not answer, or answers without a config, is an error (retryable): never a patch
    /// over an empty config.
    pub(super) async fn patch_preview(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<Preview, EffectError> {
        let node = arg(call, "node")?;
        let patch = patch_of(call)?;
        let text = tokio::time::timeout(
            crate::cluster::observe::CALL_DEADLINE,
            self.current_config(node),
        )
        .await
        .map_err(|_| {
            failed(
                call,
                format!("`{node}` does not answer (reading its machine config)"),
                true,
            )
        })??;
        let current = mc::parse_config(&text).map_err(|e| failed(call, e, false))?;
        if !current.iter().any(mc::is_v1alpha1) {
            return Err(failed(
                call,
                format!("the running config of `{node}` has no v1alpha1 document"),
                false,
            ));
        }
        let patched = mc::apply(&current, &patch).map_err(|e| failed(call, e, false))?;
        let paths = mc::changed_paths(&current, &patched);
        Ok(Preview {
            current,
            patched,
            paths,
        })
    }

    pub(super) async fn talos_patch(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let mode = apply_mode(call)?;
        let preview = self.patch_preview(call).await?;
        let changed = preview.changed();
        let reboot = preview.reboot_required();
        let paths: Vec<serde_json::Value> =
            preview.paths.iter().map(|p| p.to_string().into()).collect();
        let mut out = outputs([
            ("changed", changed.into()),
            ("paths", paths.into()),
            ("reboot_required", reboot.into()),
        ]);
        if !changed {
            out.messages.push(format!(
                "`{node}` already runs a config containing the patch: nothing sent"
            ));
            return Ok(out);
        }
        let diff = mc::redacted_diff(&preview.current, &preview.patched, node);
        if flag(call, "dry_run") {
            out.messages
                .push(format!("dry run: would send to `{node}`:\n{diff}"));
            return Ok(out);
        }
        // Backstop of the plan's classification: a step the plan did not treat as disruptive
        // (so no safe-down guard was demanded, no cluster lock taken) must not reboot.
        let plan_disruptive = crate::machine_config::plan_needs_reboot(&|name| {
            call.args.get(name).filter(|v| !v.is_null()).cloned()
        });
        if mode == 1 && reboot && !plan_disruptive {
            return Err(failed(
                call,
                format!(
                    "the change to `{node}` needs a reboot ({}), but the step was planned as not disruptive: refused",
                    preview
                        .paths
                        .iter()
                        .filter(|p| !mc::immediate(p))
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            ));
        }
        let req = ApplyConfigurationRequest {
            data: mc::to_text(&preview.patched).into_bytes(),
            mode,
            dry_run: false,
            try_mode_timeout: None,
        };
        let resp = self
            .talos()
            .machine()
            .apply_configuration(with_node(req, node))
            .await
            .map_err(|s| status_error(call.name, &s))?;
        let reply = resp
            .into_inner()
            .messages
            .into_iter()
            .next()
            .unwrap_or_default();
        out.outputs.insert("mode".into(), reply.mode.into());
        out.outputs
            .insert("mode_details".into(), reply.mode_details.into());
        out.messages.push(diff);
        Ok(out)
    }

    /// The probe of an interrupted `talos.patch`: the running config already contains the
    /// patch ⇒ done; the config, boot and stage unchanged since before the call for the grace
    /// ⇒ not done; a staged patch does not show in the running config, and staging the same
    /// config again changes nothing, so it counts as not done; anything else is unknown.
    pub(super) async fn patched(
        &self,
        call: &ActionCall<'_>,
        waited: Duration,
        grace: Duration,
        same_as_before: impl std::future::Future<Output = Result<bool, String>>,
    ) -> Probe {
        let node = match arg(call, "node") {
            Ok(n) => n,
            Err(e) => return Probe::Unknown(e.to_string()),
        };
        let preview = match self.patch_preview(call).await {
            Ok(p) => p,
            Err(e) => return Probe::Unknown(format!("cannot read the config of `{node}`: {e}")),
        };
        if !preview.changed() {
            return Probe::Done(format!("`{node}` runs a config that contains the patch"));
        }
        if opt(call, "mode").ok().flatten() == Some("staged") {
            return Probe::NotDone(format!(
                "a staged config does not show in what `{node}` runs; staging it again changes nothing"
            ));
        }
        match same_as_before.await {
            Ok(true) => super::probe::unchanged_for(
                waited,
                grace,
                format!("`{node}` runs its old config, same boot, stage running"),
            ),
            Ok(false) => Probe::Unknown(format!(
                "`{node}` changed since before the call but does not run the patch"
            )),
            Err(e) => Probe::Unknown(e),
        }
    }
}

impl ClusterEffects {
    /// For `runbook run --dry-run` against a cluster: what each `talos.patch` step of the
    /// plan would change (the redacted diff) and what each `kube.apply` step would write (the
    /// API server's dry run, Secrets redacted), as `(step, text)`, or why it cannot be known
    /// before the run. Writes nothing.
    pub async fn preview_changes(&self, plan: &crate::plan::Plan) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for step in plan.steps() {
            let Some(call) = step
                .action
                .as_ref()
                .filter(|c| c.name == "talos.patch" || c.name == "kube.apply")
            else {
                continue;
            };
            let literal: Option<crate::journal::Fields> = call
                .args
                .iter()
                .map(|(k, v)| v.literal().map(|l| (k.clone(), l.clone())))
                .collect();
            let Some(mut args) = literal else {
                out.push((
                    step.id.clone(),
                    format!(
                        "`{}`: its arguments are known only at run time: no diff before the run",
                        call.name
                    ),
                ));
                continue;
            };
            if call.name == "kube.apply" {
                // The server's own dry run (`dryRun=All`) against the live objects: nothing
                // is written.
                args.insert("dry_run".into(), true.into());
                let pre = crate::journal::Fields::new();
                let c = ActionCall {
                    step: &step.id,
                    name: &call.name,
                    args: &args,
                    attempt: 0,
                    pre_state: &pre,
                };
                let text = match self.kube_apply(&c).await {
                    Ok(o) => o.messages.join("\n"),
                    Err(e) => format!("cannot preview: {e}"),
                };
                out.push((step.id.clone(), text));
                continue;
            }
            let pre = crate::journal::Fields::new();
            let c = ActionCall {
                step: &step.id,
                name: &call.name,
                args: &args,
                attempt: 0,
                pre_state: &pre,
            };
            let text = match self.patch_preview(&c).await {
                Ok(p) if !p.changed() => "no change: nothing would be sent".to_string(),
                Ok(p) => {
                    let node = args.get("node").and_then(|n| n.as_str()).unwrap_or("node");
                    format!(
                        "would change {} (reboot required: {}):\n{}",
                        p.paths
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        p.reboot_required(),
                        mc::redacted_diff(&p.current, &p.patched, node)
                    )
                }
                Err(e) => format!("cannot preview: {e}"),
            };
            out.push((step.id.clone(), text));
        }
        out
    }
}
