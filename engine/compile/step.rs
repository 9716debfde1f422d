//! Checking one concrete step against the catalogs and turning it into a [`plan::Step`].
//!
//! Arguments are matched to the action's schema (unknown, missing, wrong type), defaults are
//! filled in, plan-time expressions are folded, guards and wait conditions are looked up, a
//! guard that inherits `node` gets the action's node, and the safety rules are enforced:
//! a disruptive action needs a guard that protects against its hazard (or `unguarded:` with a
//! reason), and a step may not claim to be safer to repeat than its action is.

use std::collections::{BTreeMap, BTreeSet};

use crate::action::{self, ArgSpec, ArgType, Hazard, Idempotency};
use crate::compile::expr::{Checker, Names};
use crate::condition;
use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::dsl::ast::{self, ArgValue, Args, ExprSrc, TemplatePart};
use crate::dsl::span::Span;
use crate::plan::{self, Call, Expr, RetryPolicy, Role, Value};
use crate::source::Source;

/// Everything a step check needs to know about its surroundings.
pub struct StepCx<'a> {
    /// The source.
    pub source: &'a Source,
    /// Expression checker.
    pub checker: &'a Checker,
    /// Names available to expressions.
    pub names: Names<'a>,
}

/// Where a step sits in the plan, decided by expansion.
pub struct Placement {
    /// Concrete id.
    pub id: String,
    /// Main or rollback.
    pub role: Role,
    /// Concrete ids it needs.
    pub needs: Vec<String>,
    /// Concrete ids of its rollback instances.
    pub rollback: Vec<String>,
    /// Declared id → concrete id for `steps.<id>`.
    pub scope: BTreeMap<String, String>,
    /// The `parallel` batch it runs in, if any.
    pub batch: Option<plan::Batch>,
}

/// Builds a checked plan step; problems go to `diags`.
pub fn build(
    cx: &StepCx<'_>,
    decl: &ast::Step,
    placement: Placement,
    diags: &mut Diagnostics,
) -> plan::Step {
    let Placement {
        id,
        role,
        needs,
        rollback,
        scope,
        batch,
    } = placement;
    let mut action_call = None;
    let mut hazard = None;
    let mut class = Idempotency::Idempotent;
    let mut probe = false;
    let mut node_arg: Option<Value> = None;
    let mut result_fields: &[&str] = &[];
    if let Some(call) = &decl.action {
        match action::find(&call.name.value) {
            Some(spec) => {
                let mut args = check_args(
                    cx,
                    &format!("action `{}`", spec.name),
                    spec.args,
                    &call.args,
                    None,
                    call.name.span,
                    diags,
                );
                super::file_args::resolve(cx.source, spec.name, &call.args, &mut args, diags);
                node_arg = args.get("node").cloned();
                hazard = spec.hazard(|name| args.get(name).and_then(|v| v.literal().cloned()));
                class = spec.idempotency;
                probe = spec.probe;
                result_fields = spec.outputs;
                if spec.name == "talos.patch" {
                    crate::machine_config::lint::check_call(cx.source, &call.args, &args, diags);
                }
                action_call = Some(Call {
                    name: spec.name.to_string(),
                    args,
                });
            }
            None => diags.push(
                Diagnostic::new(
                    Code::UnknownAction,
                    cx.source,
                    call.name.span,
                    format!("unknown action `{}`", call.name.value),
                    "not in the action catalog",
                )
                .with_help(
                    did_you_mean(&call.name.value, action::names())
                        .unwrap_or_else(|| "`runbook actions` lists the catalog".into()),
                ),
            ),
        }
    }

    // A step without an action still acts on its `foreach` node for guards and waits.
    if node_arg.is_none() {
        node_arg = cx.names.vars.get("node").cloned().map(Value::Literal);
    }

    let mut guards: Vec<plan::Guard> = decl
        .guards
        .iter()
        .filter_map(|g| guard(cx, g, node_arg.as_ref(), diags))
        .collect();
    super::batch::fill_batch_guards(cx, decl, batch.as_ref(), &mut guards, diags);
    super::batch::check_batch_safe(cx, decl, batch.as_ref(), hazard, diags);

    if let (Some(h), Some(call)) = (hazard, &decl.action) {
        let protected = decl.guards.iter().any(|g| match g {
            ast::Guard::Named { name, .. } => {
                condition::guard(&name.value).is_some_and(|spec| spec.protects.contains(&h))
            }
            ast::Guard::Expr { .. } => false,
        });
        let reason_given = decl
            .unguarded
            .as_ref()
            .is_some_and(|r| !r.value.trim().is_empty());
        let unknown_guard = decl.guards.iter().any(|g| match g {
            ast::Guard::Named { name, .. } => condition::guard(&name.value).is_none(),
            ast::Guard::Expr { .. } => false,
        });
        if !protected && !reason_given && !unknown_guard {
            diags.push(
                Diagnostic::new(
                    Code::UnguardedDisruptive,
                    cx.source,
                    call.name.span,
                    format!(
                        "`{}` {}, but step `{}` has no guard against that",
                        call.name.value,
                        h.describe(),
                        decl.id.value
                    ),
                    "disruptive action without a safety guard",
                )
                .with_help(format!(
                    "add `guard: {}`, or `unguarded: <reason>` if the risk is intended",
                    protecting(h).join("` or `guard: ")
                )),
            );
        }
    }

    let wait = decl
        .wait
        .as_ref()
        .and_then(|w| wait_call(cx, w, node_arg.as_ref(), diags));
    let verify = decl
        .verify
        .as_ref()
        .and_then(|w| wait_call(cx, w, node_arg.as_ref(), diags));

    let author_declared = action_call
        .as_ref()
        .is_some_and(|c| crate::action::author_declares_idempotency(&c.name));
    let idempotency = match &decl.idempotency {
        Some(declared) if declared.value < class && !author_declared => {
            diags.push(
                Diagnostic::new(
                    Code::Idempotency,
                    cx.source,
                    declared.span,
                    format!(
                        "step `{}` declares `{}`, but its action is `{}`: an interrupted attempt must be checked before it is repeated",
                        decl.id.value,
                        declared.value.name(),
                        class.name()
                    ),
                    "weaker than the action allows",
                )
                .with_help(format!("use `idempotency: {}` or stricter", class.name())),
            );
            class
        }
        Some(declared) => declared.value,
        None => class,
    };
    if idempotency == Idempotency::Verify
        && decl.action.is_some()
        && !probe
        && wait.is_none()
        && verify.is_none()
    {
        let span = decl.idempotency.as_ref().map_or_else(
            || decl.action.as_ref().map_or(decl.id.span, |a| a.name.span),
            |i| i.span,
        );
        diags.push(
            Diagnostic::new(
                Code::Idempotency,
                cx.source,
                span,
                format!(
                    "step `{}` must be verified after an interruption, but has no condition to verify it with",
                    decl.id.value
                ),
                "needs `verify:` or `wait:`",
            )
            .with_help("add a `verify:` (or `wait:`) condition that tells whether the effect happened"),
        );
    }

    let when = decl.when.as_ref().and_then(|e| check_expr(cx, e, diags));
    let result_names = Names {
        result: Some(result_fields),
        ..cx.names
    };
    let outputs = decl
        .outputs
        .iter()
        .filter_map(
            |(name, e)| match cx.checker.check(cx.source, e, &result_names) {
                Ok(_) => Some((
                    name.value.clone(),
                    Expr {
                        expr: e.text.clone(),
                        span: e.span,
                    },
                )),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        )
        .collect();

    let retry = decl
        .retry
        .as_ref()
        .map_or_else(RetryPolicy::none, |r| RetryPolicy {
            attempts: r.attempts,
            backoff: r.backoff,
            delay: r.delay,
            max_delay: r.max_delay.unwrap_or(r.delay.saturating_mul(16)),
        });

    plan::Step {
        id,
        declared: decl.id.value.clone(),
        role,
        description: decl.description.clone(),
        needs,
        action: action_call,
        when,
        guards,
        unguarded: decl.unguarded.as_ref().map(|u| u.value.clone()),
        wait,
        verify,
        retry,
        timeout: decl.timeout.as_ref().map(|t| t.value),
        rollback,
        idempotency: if decl.action.is_some() {
            idempotency
        } else {
            Idempotency::Idempotent
        },
        approval: decl.approval.as_ref().map(|a| plan::Approval {
            prompt: a.prompt.clone(),
            allow_yes: a.allow_yes,
        }),
        outputs,
        bindings: cx.names.vars.clone(),
        scope,
        hazard,
        batch,
        span: decl.span,
    }
}

fn protecting(h: Hazard) -> Vec<&'static str> {
    condition::GUARDS
        .iter()
        .filter(|g| g.protects.contains(&h))
        .map(|g| g.name)
        .collect()
}

fn check_expr(cx: &StepCx<'_>, e: &ExprSrc, diags: &mut Diagnostics) -> Option<Expr> {
    match cx.checker.check(cx.source, e, &cx.names) {
        Ok(_) => Some(Expr {
            expr: e.text.clone(),
            span: e.span,
        }),
        Err(d) => {
            diags.push(d);
            None
        }
    }
}

fn guard(
    cx: &StepCx<'_>,
    g: &ast::Guard,
    node: Option<&Value>,
    diags: &mut Diagnostics,
) -> Option<plan::Guard> {
    match g {
        ast::Guard::Named { name, args } => {
            let Some(spec) = condition::guard(&name.value) else {
                diags.push(
                    Diagnostic::new(
                        Code::UnknownGuard,
                        cx.source,
                        name.span,
                        format!("unknown guard `{}`", name.value),
                        "not in the guard catalog",
                    )
                    .with_help_opt(did_you_mean(
                        &name.value,
                        condition::GUARDS.iter().map(|g| g.name),
                    )),
                );
                return None;
            };
            let args = check_args(
                cx,
                &format!("guard `{}`", spec.name),
                spec.args,
                args,
                node,
                name.span,
                diags,
            );
            Some(plan::Guard::Named {
                name: spec.name.to_string(),
                args,
            })
        }
        ast::Guard::Expr { expr, message } => {
            check_expr(cx, expr, diags).map(|expr| plan::Guard::Expr {
                expr,
                message: message.clone(),
            })
        }
    }
}

fn wait_call(
    cx: &StepCx<'_>,
    w: &ast::Wait,
    node: Option<&Value>,
    diags: &mut Diagnostics,
) -> Option<plan::Wait> {
    let Some(spec) = condition::condition(&w.condition.value) else {
        diags.push(
            Diagnostic::new(
                Code::UnknownCondition,
                cx.source,
                w.condition.span,
                format!("unknown wait condition `{}`", w.condition.value),
                "not in the condition catalog",
            )
            .with_help_opt(did_you_mean(
                &w.condition.value,
                condition::CONDITIONS.iter().map(|c| c.name),
            )),
        );
        return None;
    };
    let args = check_args(
        cx,
        &format!("condition `{}`", spec.name),
        spec.args,
        &w.args,
        node,
        w.condition.span,
        diags,
    );
    let timeout = match &w.timeout_expr {
        Some(e) => plan_duration(cx, e, "timeout", diags).unwrap_or(spec.timeout),
        None => w.timeout.as_ref().map_or(spec.timeout, |t| t.value),
    };
    Some(plan::Wait {
        condition: spec.name.to_string(),
        args,
        timeout,
        interval: w.interval.as_ref().map_or(spec.interval, |t| t.value),
    })
}

/// A duration given as a plan-time expression (`timeout: "${{ params.boot_timeout }}"`): it
/// must read only params that are not secret and give a duration string (`90s`, `20m`) or
/// whole seconds; anything else is an error at the expression.
fn plan_duration(
    cx: &StepCx<'_>,
    e: &ExprSrc,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<std::time::Duration> {
    let no_steps = BTreeMap::new();
    let names = Names {
        steps: &no_steps,
        result: None,
        plan_time: true,
        ..cx.names
    };
    let checked = match cx.checker.check(cx.source, e, &names) {
        Ok(c) => c,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    if checked.runtime || checked.secret {
        diags.push(Diagnostic::new(
            Code::ExprEval,
            cx.source,
            e.span,
            format!("`{what}` must be known at plan time from params that are not secret"),
            "not a plan-time value",
        ));
        return None;
    }
    let value = match cx.checker.eval(cx.source, e, &names) {
        Ok(v) => v,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let parsed = match &value {
        serde_json::Value::String(s) => crate::dsl::duration::parse(s),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| "not a whole number of seconds".to_string()),
        _ => Err("not a duration".to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            diags.push(Diagnostic::new(
                Code::InvalidValue,
                cx.source,
                e.span,
                format!("invalid `{what}`: `{}` gives zero", e.text),
                "a zero timeout",
            ));
            None
        }
        Err(msg) => {
            diags.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    cx.source,
                    e.span,
                    format!("invalid `{what}`: `{}` gives {value}: {msg}", e.text),
                    "not a duration",
                )
                .with_help("give a duration such as `30s`, `5m` or `1h30m` (a `duration` param)"),
            );
            None
        }
    }
}

/// Matches `given` against `specs`; `inherit_node` fills a missing `node`.
fn check_args(
    cx: &StepCx<'_>,
    what: &str,
    specs: &[ArgSpec],
    given: &Args,
    inherit_node: Option<&Value>,
    missing_span: Span,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (name, value) in given {
        let Some(spec) = specs.iter().find(|s| s.name == name.value) else {
            let names = specs.iter().map(|s| s.name);
            diags.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    cx.source,
                    name.span,
                    format!("{what} has no argument `{}`", name.value),
                    "unknown argument",
                )
                .with_help(did_you_mean(&name.value, names).unwrap_or_else(|| {
                    if specs.is_empty() {
                        "it takes no arguments".into()
                    } else {
                        format!(
                            "its arguments are: {}",
                            specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                        )
                    }
                })),
            );
            continue;
        };
        seen.insert(spec.name);
        if let Some(v) = arg_value(cx, what, spec, value, diags) {
            out.insert(spec.name.to_string(), v);
        }
    }
    for spec in specs {
        if seen.contains(spec.name) {
            continue;
        }
        if let Some(default) = spec.default {
            out.insert(spec.name.to_string(), Value::Literal(default.to_json()));
        } else if spec.name == "node" && inherit_node.is_some() {
            if let Some(v) = inherit_node {
                out.insert("node".into(), v.clone());
            }
        } else if spec.required {
            diags.push(
                Diagnostic::new(
                    Code::MissingArgument,
                    cx.source,
                    missing_span,
                    format!("{what} needs the argument `{}` ({})", spec.name, spec.doc),
                    format!("missing `{}`", spec.name),
                )
                .with_help(format!(
                    "add `{}: <{}>` under `with:`",
                    spec.name,
                    spec.ty.describe()
                )),
            );
        }
    }
    out
}

fn arg_value(
    cx: &StepCx<'_>,
    what: &str,
    spec: &ArgSpec,
    value: &ArgValue,
    diags: &mut Diagnostics,
) -> Option<Value> {
    let type_error = |span: Span, msg: String, diags: &mut Diagnostics| {
        diags.push(Diagnostic::new(
            Code::WrongType,
            cx.source,
            span,
            format!("argument `{}` of {what}: {msg}", spec.name),
            format!("expected {}", spec.ty.describe()),
        ));
    };
    match value {
        ArgValue::Literal(node) => {
            let json = node.to_json();
            match spec.ty.check(&json) {
                Ok(()) => Some(Value::Literal(json)),
                Err(msg) => {
                    type_error(node.span, msg, diags);
                    None
                }
            }
        }
        ArgValue::Expr(e) => {
            let checked = match cx.checker.check(cx.source, e, &cx.names) {
                Ok(c) => c,
                Err(d) => {
                    diags.push(d);
                    return None;
                }
            };
            if !checked.foldable() {
                return Some(Value::Expr(Expr {
                    expr: e.text.clone(),
                    span: e.span,
                }));
            }
            let json = match cx.checker.eval(cx.source, e, &cx.names) {
                Ok(v) => v,
                Err(d) => {
                    diags.push(d);
                    return None;
                }
            };
            match spec.ty.check(&json) {
                Ok(()) => Some(Value::Literal(json)),
                Err(msg) => {
                    type_error(e.span, msg, diags);
                    None
                }
            }
        }
        ArgValue::List(items, span) => {
            let any = ArgSpec {
                ty: ArgType::Yaml,
                ..*spec
            };
            let values: Vec<Value> = items
                .iter()
                .map(|i| arg_value(cx, what, &any, i, diags))
                .collect::<Option<_>>()?;
            nested(
                values.iter().all(|v| v.literal().is_some()),
                *span,
                diags,
                || Value::List {
                    items: values.clone(),
                },
                || {
                    serde_json::Value::Array(
                        values.iter().filter_map(|v| v.literal().cloned()).collect(),
                    )
                },
                spec,
                &type_error,
            )
        }
        ArgValue::Map(entries, span) => {
            let any = ArgSpec {
                ty: ArgType::Yaml,
                ..*spec
            };
            let mut values = BTreeMap::new();
            for (k, v) in entries {
                values.insert(k.value.clone(), arg_value(cx, what, &any, v, diags)?);
            }
            nested(
                values.values().all(|v| v.literal().is_some()),
                *span,
                diags,
                || Value::Map {
                    entries: values.clone(),
                },
                || {
                    serde_json::Value::Object(
                        values
                            .iter()
                            .filter_map(|(k, v)| v.literal().map(|l| (k.clone(), l.clone())))
                            .collect(),
                    )
                },
                spec,
                &type_error,
            )
        }
        ArgValue::Template(parts, span) => {
            let mut text = String::new();
            let mut folded = String::new();
            let mut runtime = false;
            for part in parts {
                match part {
                    TemplatePart::Text(t) => {
                        text.push_str(t);
                        folded.push_str(t);
                    }
                    TemplatePart::Expr(e) => {
                        text.push_str(&format!("${{{{ {} }}}}", e.text));
                        match cx.checker.check(cx.source, e, &cx.names) {
                            Ok(c) if !c.foldable() => runtime = true,
                            Ok(_) => match cx.checker.eval(cx.source, e, &cx.names) {
                                Ok(serde_json::Value::String(s)) => folded.push_str(&s),
                                Ok(other) => folded.push_str(&other.to_string()),
                                Err(d) => {
                                    diags.push(d);
                                    return None;
                                }
                            },
                            Err(d) => {
                                diags.push(d);
                                return None;
                            }
                        }
                    }
                }
            }
            if runtime {
                return Some(Value::Template { template: text });
            }
            let json = serde_json::Value::String(folded);
            match spec.ty.check(&json) {
                Ok(()) => Some(Value::Literal(json)),
                Err(msg) => {
                    type_error(*span, msg, diags);
                    None
                }
            }
        }
    }
}

/// A list or map argument: folded into one literal (type-checked as a whole) when every part
/// is known at plan time, else kept for the run (its parts were checked one by one).
fn nested(
    all_literal: bool,
    span: Span,
    diags: &mut Diagnostics,
    runtime: impl FnOnce() -> Value,
    folded: impl FnOnce() -> serde_json::Value,
    spec: &ArgSpec,
    type_error: &dyn Fn(Span, String, &mut Diagnostics),
) -> Option<Value> {
    if !all_literal {
        return Some(runtime());
    }
    let json = folded();
    match spec.ty.check(&json) {
        Ok(()) => Some(Value::Literal(json)),
        Err(msg) => {
            type_error(span, msg, diags);
            None
        }
    }
}
