//! The compile-time rules of `foreach … parallel: K`: which bodies may run K elements at once,
//! and the arguments the batch guard inherits from its batch.
//!
//! A disruptive step (one whose action has a hazard) in a body that runs more than one
//! element at a time must carry [`BATCH_GUARD`]: its per-node guard (e.g. `etcd.safe-down`)
//! sees only one node, while the batch takes K down together. `unguarded:` does not excuse it
//! (a reason for one node is no reason for K). The guard refuses at run time any batch that
//! holds a control plane, so control planes are never taken down K at a time. Inside a batch,
//! `kube.batch-safe` gets `nodes` (the batch's elements) and `max_unavailable` (K) unless
//! the author gives them; outside one, both must be given.

use crate::action::Hazard;
use crate::compile::step::StepCx;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::ast;
use crate::plan::{self, Value};

/// The guard a disruptive step in a parallel body needs.
pub const BATCH_GUARD: &str = "kube.batch-safe";

fn batch_guard_span(decl: &ast::Step) -> Option<crate::dsl::span::Span> {
    decl.guards.iter().find_map(|g| match g {
        ast::Guard::Named { name, .. } if name.value == BATCH_GUARD => Some(name.span),
        _ => None,
    })
}

/// Fills `nodes` and `max_unavailable` of every `kube.batch-safe` guard from `batch`, or
/// reports them missing outside a batch.
pub fn fill_batch_guards(
    cx: &StepCx<'_>,
    decl: &ast::Step,
    batch: Option<&plan::Batch>,
    guards: &mut [plan::Guard],
    diags: &mut Diagnostics,
) {
    for g in guards.iter_mut() {
        let plan::Guard::Named { name, args } = g else {
            continue;
        };
        if name != BATCH_GUARD {
            continue;
        }
        match batch {
            Some(b) => {
                args.entry("nodes".into()).or_insert_with(|| {
                    Value::Literal(serde_json::Value::Array(
                        b.nodes
                            .iter()
                            .map(|n| serde_json::Value::String(n.clone()))
                            .collect(),
                    ))
                });
                args.entry("max_unavailable".into())
                    .or_insert_with(|| Value::Literal(b.size.into()));
            }
            None => {
                let missing: Vec<&str> = ["nodes", "max_unavailable"]
                    .into_iter()
                    .filter(|a| !args.contains_key(*a))
                    .collect();
                if !missing.is_empty() {
                    let span = batch_guard_span(decl).unwrap_or(decl.id.span);
                    diags.push(
                        Diagnostic::new(
                            Code::MissingArgument,
                            cx.source,
                            span,
                            format!(
                                "guard `{BATCH_GUARD}` of step `{}` is not in a `parallel` foreach, so it needs `{}`",
                                decl.id.value,
                                missing.join("` and `")
                            ),
                            "no batch to inherit from",
                        )
                        .with_help("give `with: { nodes: [...], max_unavailable: K }`, or use it inside `foreach: … parallel: K`"),
                    );
                }
            }
        }
    }
}

/// A disruptive step that runs up to K > 1 at a time must carry [`BATCH_GUARD`].
pub fn check_batch_safe(
    cx: &StepCx<'_>,
    decl: &ast::Step,
    batch: Option<&plan::Batch>,
    hazard: Option<Hazard>,
    diags: &mut Diagnostics,
) {
    let (Some(b), Some(h), Some(call)) = (batch, hazard, &decl.action) else {
        return;
    };
    if b.size <= 1 || batch_guard_span(decl).is_some() {
        return;
    }
    diags.push(
        Diagnostic::new(
            Code::UnguardedDisruptive,
            cx.source,
            call.name.span,
            format!(
                "`{}` {}, and step `{}` runs up to {} at a time under `parallel`, but has no `{BATCH_GUARD}` guard",
                call.name.value,
                h.describe(),
                decl.id.value,
                b.size
            ),
            "not batch-safe",
        )
        .with_help(format!(
            "add `guard: [{BATCH_GUARD}]` (no control plane in the batch, PodDisruptionBudgets respected, at most K nodes not Ready), or drop `parallel`; `unguarded:` does not excuse a batch"
        )),
    );
}
