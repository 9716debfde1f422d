//! Checking and folding rhai expressions at compile time.
//!
//! Every expression is parsed with strict variables against the names it may use (`params`,
//! `steps`, the `foreach` variable, `result` in outputs), then its AST is walked so that
//! `params.<name>`, `steps.<id>.<output>` and `result.<field>` are checked against what the
//! runbook declares: a typo fails at `runbook check`, not halfway through a recovery.
//! Expressions that use only params and `foreach` variables are evaluated here ("folded"), so
//! the plan shows the concrete node each step acts on.

use std::collections::{BTreeMap, BTreeSet};

use rhai::{ASTNode, Dynamic, Expr as RExpr, Position};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::dsl::ast::ExprSrc;
use crate::dsl::span::Span;
use crate::plan::ParamValue;
use crate::sandbox;
use crate::source::Source;

/// The names an expression may use.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// Bound parameters.
    pub params: &'a BTreeMap<String, ParamValue>,
    /// `foreach` variables in scope, with their values.
    pub vars: &'a BTreeMap<String, serde_json::Value>,
    /// Steps that finish before this expression runs → the outputs each offers.
    pub steps: &'a BTreeMap<String, Vec<String>>,
    /// Every step id in the runbook (to tell "unknown" from "not yet run").
    pub all_steps: &'a BTreeSet<String>,
    /// Fields of the action result, inside `outputs:` only.
    pub result: Option<&'a [&'static str]>,
    /// True where the value must be known when the plan is made (`foreach`): reading step
    /// outputs or results is an error there.
    pub plan_time: bool,
}

/// What checking found.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    /// True if the expression reads `steps` or `result`, so it can only be evaluated at run time.
    pub runtime: bool,
    /// True if it reads a `secret` parameter: its value must never be folded into the plan
    /// (plans are printed and hashed into the journal), so it is evaluated at run time.
    pub secret: bool,
}

impl Checked {
    /// Whether the value may be computed when the plan is made.
    pub fn foldable(&self) -> bool {
        !self.runtime && !self.secret
    }
}

/// What a secret parameter holds while the compiler evaluates (followed by `0` or `1`).
pub const SECRET_PLACEHOLDER: &str = "<secret placeholder ";

/// A checker with its own sandboxed engine.
pub struct Checker {
    engine: rhai::Engine,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    /// A checker using the expression sandbox.
    pub fn new() -> Checker {
        let mut engine = sandbox::engine(sandbox::EXPR_MAX_OPERATIONS);
        engine.set_strict_variables(true);
        Checker { engine }
    }

    /// The scope the compiler evaluates in. Secret parameters never enter it: each holds a
    /// placeholder (`variant` picks one of two), so no plan-time value, diagnostic or hash can
    /// depend on a secret's value, whatever path an expression takes to it.
    fn scope(names: &Names<'_>, variant: u8) -> rhai::Scope<'static> {
        let mut scope = rhai::Scope::new();
        let params: serde_json::Map<String, serde_json::Value> = names
            .params
            .iter()
            .map(|(k, v)| {
                let value = if v.secret {
                    serde_json::Value::String(format!("{}{variant}", SECRET_PLACEHOLDER))
                } else {
                    v.value.clone()
                };
                (k.clone(), value)
            })
            .collect();
        scope.push("params", to_dynamic(&serde_json::Value::Object(params)));
        scope.push_constant("steps", Dynamic::from_map(rhai::Map::new()));
        for (k, v) in names.vars {
            scope.push(k.clone(), to_dynamic(v));
        }
        if names.result.is_some() {
            scope.push_constant("result", Dynamic::from_map(rhai::Map::new()));
        }
        scope
    }

    /// Parses and checks an expression's names.
    pub fn check(
        &self,
        source: &Source,
        e: &ExprSrc,
        names: &Names<'_>,
    ) -> Result<Checked, Diagnostic> {
        let scope = Checker::scope(names, 0);
        let ast = self
            .engine
            .compile_expression_with_scope(&scope, &e.text)
            .map_err(|err| {
                let span = span_in(source, e, err.position(), None);
                match err.err_type() {
                    rhai::ParseErrorType::VariableUndefined(name) => {
                        let mut known: Vec<&str> = vec!["params", "steps"];
                        known.extend(names.vars.keys().map(String::as_str));
                        if names.result.is_some() {
                            known.push("result");
                        }
                        Diagnostic::new(
                            Code::ExprName,
                            source,
                            Span::new(span.offset, name.len()),
                            format!("unknown name `{name}` in expression"),
                            "not defined here",
                        )
                        .with_help(
                            did_you_mean(name, known.iter().copied()).unwrap_or_else(|| {
                                format!("names available here: {}", known.join(", "))
                            }),
                        )
                    }
                    other => Diagnostic::new(
                        Code::ExprSyntax,
                        source,
                        span,
                        format!("invalid expression: {other}"),
                        "here",
                    ),
                }
            })?;
        let mut problem: Option<Diagnostic> = None;
        let mut runtime = false;
        let mut secret = false;
        let any_secret = names.params.values().any(|p| p.secret);
        ast.walk(&mut |path: &[ASTNode]| {
            let Some(ASTNode::Expr(expr)) = path.last() else {
                return true;
            };
            match expr {
                // With a secret declared, `params` may only be read as `params.<name>` of a
                // non-secret parameter; the whole map, indexing, iteration and method calls
                // (`params["token"]`, `params`, `params.values()`) may reach a secret.
                RExpr::Variable(v, _, _) if v.1 == "params" && any_secret => {
                    let parent = path.len().checked_sub(2).and_then(|i| path.get(i));
                    let safe = match parent {
                        Some(ASTNode::Expr(RExpr::Dot(bin, _, _))) => {
                            matches!(&bin.lhs, RExpr::Variable(lv, _, _) if lv.1 == "params")
                                && matches!(
                                    &bin.rhs,
                                    RExpr::Property(..) | RExpr::Dot(..) | RExpr::Index(..)
                                )
                                && prop_chain(&bin.rhs)
                                    .first()
                                    .and_then(|(name, _)| names.params.get(name))
                                    .is_some_and(|p| !p.secret)
                        }
                        _ => false,
                    };
                    if !safe {
                        secret = true;
                    }
                }
                RExpr::Variable(v, _, pos) if v.1 == "steps" || v.1 == "result" => {
                    if names.plan_time {
                        problem = Some(plan_time_error(source, e, *pos, &v.1));
                        return false;
                    }
                    runtime = true;
                }
                RExpr::Dot(bin, _, _) => {
                    if let RExpr::Variable(v, _, pos) = &bin.lhs {
                        if names.plan_time && (v.1 == "steps" || v.1 == "result") {
                            problem = Some(plan_time_error(source, e, *pos, &v.1));
                            return false;
                        }
                        let chain = prop_chain(&bin.rhs);
                        if v.1 == "params"
                            && chain
                                .first()
                                .and_then(|(name, _)| names.params.get(name))
                                .is_some_and(|p| p.secret)
                        {
                            secret = true;
                        }
                        if let Err(d) = check_chain(source, e, names, &v.1, &chain) {
                            problem = Some(d);
                            return false;
                        }
                    }
                }
                _ => {}
            }
            true
        });
        match problem {
            Some(d) => Err(d),
            None => Ok(Checked { runtime, secret }),
        }
    }

    /// Evaluates an expression that uses only params and variables.
    pub fn eval(
        &self,
        source: &Source,
        e: &ExprSrc,
        names: &Names<'_>,
    ) -> Result<serde_json::Value, Diagnostic> {
        let value = self.eval_in(source, e, names, 0)?;
        // Belt and braces behind `check`: evaluate again with the other placeholder; a value
        // that changes depends on a secret by a path the checker did not see. Refuse it rather
        // than fold it.
        if names.params.values().any(|p| p.secret) && self.eval_in(source, e, names, 1)? != value {
            return Err(Diagnostic::new(
                Code::ExprEval,
                source,
                e.span,
                format!(
                    "`{}` depends on a secret parameter in a way that cannot be kept out of the plan",
                    e.text
                ),
                "reads a secret",
            )
            .with_help("read a secret directly as `params.<name>`"));
        }
        Ok(value)
    }

    fn eval_in(
        &self,
        source: &Source,
        e: &ExprSrc,
        names: &Names<'_>,
        variant: u8,
    ) -> Result<serde_json::Value, Diagnostic> {
        let mut scope = Checker::scope(names, variant);
        let result: Dynamic = sandbox::with_deadline(sandbox::EXPR_TIME_LIMIT, || {
            self.engine.eval_expression_with_scope(&mut scope, &e.text)
        })
        .map_err(|err| {
            let message = if sandbox::is_limit(&err) {
                sandbox::expr_limit_message()
            } else {
                strip_position(&err.to_string())
            };
            Diagnostic::new(
                Code::ExprEval,
                source,
                span_in(source, e, err.position(), None),
                format!("cannot evaluate `{}`: {message}", e.text),
                "evaluated at plan time",
            )
        })?;
        rhai::serde::from_dynamic::<serde_json::Value>(&result).map_err(|err| {
            Diagnostic::new(
                Code::ExprEval,
                source,
                e.span,
                format!("`{}` gives a value that is not plain data: {err}", e.text),
                "here",
            )
        })
    }
}

/// Converts JSON into a rhai value.
pub fn to_dynamic(v: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// A run-time name (`steps`, `result`) where the value must be known at plan time.
fn plan_time_error(source: &Source, e: &ExprSrc, pos: Position, name: &str) -> Diagnostic {
    Diagnostic::new(
        Code::ExprEval,
        source,
        span_in(source, e, pos, Some(name.len())),
        "`foreach` must be known at plan time: use params and outer `foreach` variables, not step outputs",
        "read at run time",
    )
}

fn strip_position(text: &str) -> String {
    match text.rfind(" (line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

fn prop_chain(e: &RExpr) -> Vec<(String, Position)> {
    match e {
        RExpr::Property(p, pos) => vec![(p.2.to_string(), *pos)],
        RExpr::Dot(b, _, _) => {
            let mut v = prop_chain(&b.lhs);
            v.extend(prop_chain(&b.rhs));
            v
        }
        RExpr::Index(b, _, _) => prop_chain(&b.lhs),
        RExpr::MethodCall(..) => Vec::new(),
        _ => Vec::new(),
    }
}

fn check_chain(
    source: &Source,
    e: &ExprSrc,
    names: &Names<'_>,
    var: &str,
    chain: &[(String, Position)],
) -> Result<(), Diagnostic> {
    let Some((first, pos)) = chain.first() else {
        return Ok(());
    };
    let at = |pos: Position, name: &str| span_in(source, e, pos, Some(name.len()));
    match var {
        "params" if !names.params.contains_key(first) => {
            return Err(Diagnostic::new(
                Code::ExprName,
                source,
                at(*pos, first),
                format!("unknown parameter `{first}`"),
                "not declared under `params`",
            )
            .with_help_opt(did_you_mean(first, names.params.keys().map(String::as_str))));
        }
        "steps" => {
            let Some(outputs) = names.steps.get(first) else {
                if names.all_steps.contains(first) {
                    return Err(Diagnostic::new(
                        Code::ExprName,
                        source,
                        at(*pos, first),
                        format!("step `{first}` has not run when this expression is evaluated"),
                        "not a dependency",
                    )
                    .with_help(format!("add `{first}` to this step's `needs`")));
                }
                return Err(Diagnostic::new(
                    Code::ExprName,
                    source,
                    at(*pos, first),
                    format!("unknown step `{first}`"),
                    "no such step",
                )
                .with_help_opt(did_you_mean(
                    first,
                    names.all_steps.iter().map(String::as_str),
                )));
            };
            if let Some((field, fpos)) = chain.get(1)
                && !outputs.iter().any(|o| o == field)
            {
                return Err(Diagnostic::new(
                    Code::ExprName,
                    source,
                    at(*fpos, field),
                    format!("step `{first}` has no output `{field}`"),
                    "unknown output",
                )
                .with_help(
                    did_you_mean(field, outputs.iter().map(String::as_str)).unwrap_or_else(|| {
                        if outputs.is_empty() {
                            format!("step `{first}` has no outputs")
                        } else {
                            format!("its outputs are: {}", outputs.join(", "))
                        }
                    }),
                ));
            }
        }
        "result" => {
            if let Some(fields) = names.result
                && !fields.contains(&first.as_str())
            {
                return Err(Diagnostic::new(
                    Code::ExprName,
                    source,
                    at(*pos, first),
                    format!("the action's result has no field `{first}`"),
                    "unknown field",
                )
                .with_help(
                    did_you_mean(first, fields.iter().copied())
                        .unwrap_or_else(|| format!("its fields are: {}", fields.join(", "))),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Maps a position inside an expression to a span in the source.
fn span_in(source: &Source, e: &ExprSrc, pos: Position, len: Option<usize>) -> Span {
    let exact = e.span.len == e.text.len() && !e.text.contains('\n');
    match (pos.line(), pos.position()) {
        (Some(1), Some(col)) if exact => {
            let byte = e
                .text
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(e.text.len(), |(i, _)| i);
            let rest = e.text.len() - byte;
            Span::new(
                e.span.offset + byte,
                len.unwrap_or(rest.max(1)).min(rest.max(1)),
            )
        }
        _ => {
            let _ = source;
            e.span
        }
    }
}
