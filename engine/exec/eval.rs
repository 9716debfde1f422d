//! Run-time evaluation of `when`, expression guards, argument expressions and templates, and
//! `outputs`, through the one sandboxed rhai engine ([`crate::sandbox`]).
//!
//! The compiler folded everything that depends only on params; what is left reads `steps.<id>`
//! (outputs of earlier steps, taken from the journal state, so a resumed run sees exactly what
//! the live run saw) or `result` (the action's result, for `outputs:`). The scope is the one the
//! compiler checked against: `params`, `steps`, the step's `foreach` bindings and `result`.
//! Params hold live values, secrets included, so results must be redacted before they are
//! journaled or shown (see [`super::redact`]).

use std::collections::BTreeMap;

use rhai::{Dynamic, Engine, Scope};

use crate::compile::expr::to_dynamic;
use crate::journal::{Fields, RunState, StepState};
use crate::plan::{Plan, Step, Value};
use crate::sandbox;

/// An expression failed at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot evaluate `{expr}` in step `{step}`: {reason}")]
pub struct EvalError {
    /// The step.
    pub step: String,
    /// The expression text.
    pub expr: String,
    /// Why.
    pub reason: String,
}

/// Evaluates a plan's run-time expressions.
pub struct Evaluator {
    engine: Engine,
    params: Dynamic,
    /// The params with every secret replaced by a placeholder, if the plan has secrets: an
    /// expression whose value changes when evaluated over these instead is secret-derived.
    placeholders: Option<Dynamic>,
    /// Where secret-derived values are registered for redaction.
    derived: crate::exec::redact::Derived,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}

impl Evaluator {
    /// An evaluator for `plan` (its params hold the live values).
    pub fn new(plan: &Plan) -> Self {
        let params: serde_json::Map<String, serde_json::Value> = plan
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        let placeholders = plan.params.values().any(|p| p.secret).then(|| {
            let masked: serde_json::Map<String, serde_json::Value> = plan
                .params
                .iter()
                .map(|(k, v)| {
                    let value = if v.secret {
                        serde_json::Value::String(crate::compile::expr::SECRET_PLACEHOLDER.into())
                    } else {
                        v.value.clone()
                    };
                    (k.clone(), value)
                })
                .collect();
            to_dynamic(&serde_json::Value::Object(masked))
        });
        Evaluator {
            engine: sandbox::engine(sandbox::EXPR_MAX_OPERATIONS),
            params: to_dynamic(&serde_json::Value::Object(params)),
            placeholders,
            derived: Default::default(),
        }
    }

    /// Registers secret-derived values in `derived` (a [`Redactor`](super::Redactor)'s list),
    /// so they are redacted wherever the redactor is applied.
    pub fn sharing(mut self, derived: crate::exec::redact::Derived) -> Self {
        self.derived = derived;
        self
    }

    fn scope(
        &self,
        params: &Dynamic,
        step: &Step,
        state: &RunState,
        result: Option<&Fields>,
    ) -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push_constant("params", params.clone());
        let mut steps = rhai::Map::new();
        for (declared, concrete) in &step.scope {
            if let StepState::Succeeded { outputs } = state.step_state(concrete) {
                steps.insert(
                    declared.as_str().into(),
                    to_dynamic(&serde_json::Value::Object(outputs.clone())),
                );
            }
        }
        scope.push_constant("steps", Dynamic::from_map(steps));
        for (k, v) in &step.bindings {
            scope.push_constant(k.clone(), to_dynamic(v));
        }
        if let Some(result) = result {
            scope.push_constant(
                "result",
                to_dynamic(&serde_json::Value::Object(result.clone())),
            );
        }
        scope
    }

    fn eval(
        &self,
        step: &Step,
        state: &RunState,
        result: Option<&Fields>,
        expr: &str,
    ) -> Result<serde_json::Value, EvalError> {
        let err = |reason: String| EvalError {
            step: step.id.clone(),
            expr: expr.to_owned(),
            reason,
        };
        let mut scope = self.scope(&self.params, step, state, result);
        // The same limits as at plan time, deadline included: rhai restarts its operation count
        // inside closures run by native functions (`map`, `filter`), so only the wall clock
        // bounds nested closures.
        let value: Dynamic = sandbox::with_deadline(sandbox::EXPR_TIME_LIMIT, || {
            self.engine.eval_expression_with_scope(&mut scope, expr)
        })
        .map_err(|e| {
            if sandbox::is_limit(&e) {
                err(sandbox::expr_limit_message())
            } else {
                err(e.to_string())
            }
        })?;
        let value: serde_json::Value =
            rhai::serde::from_dynamic(&value).map_err(|e| err(e.to_string()))?;
        self.note_if_derived(step, state, result, expr, &value)
            .map_err(err)?;
        Ok(value)
    }

    /// Evaluates `expr` again over placeholder secrets; if the value differs, it depends on a
    /// secret, and its strings are registered for redaction. A string that differs and is
    /// shorter than [`MIN_REDACTABLE`] characters is refused (the error is the reason):
    /// it cannot be folded out of all output without destroying it, so it must not be made.
    fn note_if_derived(
        &self,
        step: &Step,
        state: &RunState,
        result: Option<&Fields>,
        expr: &str,
        value: &serde_json::Value,
    ) -> Result<(), String> {
        let Some(masked) = &self.placeholders else {
            return Ok(());
        };
        let mut scope = self.scope(masked, step, state, result);
        let other = sandbox::with_deadline(sandbox::EXPR_TIME_LIMIT, || {
            self.engine
                .eval_expression_with_scope::<Dynamic>(&mut scope, expr)
        })
        .ok()
        .and_then(|d| rhai::serde::from_dynamic::<serde_json::Value>(&d).ok());
        if other.as_ref() == Some(value) {
            return Ok(());
        }
        let mut differing = Vec::new();
        collect_differing(value, other.as_ref(), &mut differing);
        if differing.iter().any(|s| s.chars().count() < MIN_REDACTABLE) {
            return Err(format!(
                "the expression derives a value shorter than {MIN_REDACTABLE} characters from a secret parameter; it could not be redacted from the journal and output, so it is refused (compare it in a condition instead, which gives true or false)"
            ));
        }
        let mut strings = Vec::new();
        collect_strings(value, &mut strings);
        let mut derived = self.derived.lock().unwrap_or_else(|p| p.into_inner());
        for s in strings {
            // Short strings (a length, a flag) would redact unrelated text and say little.
            if s.chars().count() >= MIN_REDACTABLE && !derived.iter().any(|d| d.expose() == &s) {
                derived.push(crate::secret::Secret::new(s));
            }
        }
        Ok(())
    }

    /// Evaluates an expression to a value.
    pub fn value(
        &self,
        step: &Step,
        state: &RunState,
        expr: &str,
    ) -> Result<serde_json::Value, EvalError> {
        self.eval(step, state, None, expr)
    }

    /// Evaluates a condition (`when`, an expression guard); it must give a boolean.
    pub fn truth(&self, step: &Step, state: &RunState, expr: &str) -> Result<bool, EvalError> {
        match self.value(step, state, expr)? {
            serde_json::Value::Bool(b) => Ok(b),
            other => Err(EvalError {
                step: step.id.clone(),
                expr: expr.to_owned(),
                reason: format!("expected true or false, got `{other}`"),
            }),
        }
    }

    /// Evaluates arguments (literals pass through).
    pub fn args(
        &self,
        step: &Step,
        state: &RunState,
        args: &BTreeMap<String, Value>,
    ) -> Result<Fields, EvalError> {
        args.iter()
            .map(|(k, v)| Ok((k.clone(), self.arg(step, state, v)?)))
            .collect()
    }

    /// Evaluates one argument value.
    pub fn arg(
        &self,
        step: &Step,
        state: &RunState,
        v: &Value,
    ) -> Result<serde_json::Value, EvalError> {
        match v {
            Value::Literal(v) => Ok(v.clone()),
            Value::Expr(e) => self.value(step, state, &e.expr),
            Value::Template { template } => self
                .template(step, state, template)
                .map(serde_json::Value::String),
            Value::List { items } => items
                .iter()
                .map(|i| self.arg(step, state, i))
                .collect::<Result<Vec<_>, _>>()
                .map(serde_json::Value::Array),
            Value::Map { entries } => entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.arg(step, state, v)?)))
                .collect::<Result<serde_json::Map<_, _>, _>>()
                .map(serde_json::Value::Object),
        }
    }

    /// Fills the `${{ … }}` parts of a template.
    pub fn template(&self, step: &Step, state: &RunState, text: &str) -> Result<String, EvalError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                return Err(EvalError {
                    step: step.id.clone(),
                    expr: text.to_owned(),
                    reason: "unclosed `${{`".into(),
                });
            };
            match self.value(step, state, after[..end].trim())? {
                serde_json::Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The step's outputs: the action's result fields plus its `outputs:` expressions.
    pub fn outputs(
        &self,
        step: &Step,
        state: &RunState,
        result: &Fields,
    ) -> Result<Fields, EvalError> {
        let mut out = result.clone();
        for (name, e) in &step.outputs {
            let v = self.eval(step, state, Some(result), &e.expr)?;
            out.insert(name.clone(), v);
        }
        Ok(out)
    }
}

/// The shortest secret-derived text the redactor folds out of output; shorter secret params are
/// refused at plan time (`compile::params`), shorter derived values at evaluation.
pub const MIN_REDACTABLE: usize = crate::compile::params::MIN_SECRET_CHARS;

/// The strings of `v` that differ from `other` at the same place (all of them where the
/// shapes differ or `other` is missing): the text a secret changed. Numbers and booleans are
/// left out: a length or a condition's answer is not the secret's text (numbers of 4 digits
/// or more are still registered for redaction by `collect_strings`).
fn collect_differing(
    v: &serde_json::Value,
    other: Option<&serde_json::Value>,
    out: &mut Vec<String>,
) {
    use serde_json::Value as J;
    match (v, other) {
        (J::Bool(_) | J::Null | J::Number(_), _) => {}
        (J::String(a), Some(J::String(b))) if a == b => {}
        (J::String(a), _) => out.push(a.clone()),
        (J::Array(a), Some(J::Array(b))) if a.len() == b.len() => {
            a.iter()
                .zip(b)
                .for_each(|(x, y)| collect_differing(x, Some(y), out));
        }
        (J::Array(a), _) => a.iter().for_each(|x| collect_differing(x, None, out)),
        (J::Object(a), Some(J::Object(b))) => a
            .iter()
            .for_each(|(k, x)| collect_differing(x, b.get(k), out)),
        (J::Object(a), _) => a.values().for_each(|x| collect_differing(x, None, out)),
    }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        other => out.push(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{self, Mode};
    use crate::source::{Format, Source};

    fn plan() -> Plan {
        let src = Source::new(
            "t.yaml",
            Format::Yaml,
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t }\nsteps:\n  - { id: a, action: log, with: { message: hi } }\n",
        );
        compile::compile_source(&src, &Mode::Check).unwrap()
    }

    /// Eight nested `map`s: 10^8 closure calls, each level restarting rhai's operation count.
    fn nested_maps(levels: usize) -> String {
        let mut e = String::from("0");
        for i in 0..levels {
            e = format!("[0,1,2,3,4,5,6,7,8,9].map(|x{i}| {e}).len()");
        }
        e
    }

    #[test]
    fn runaway_nested_closures_are_stopped_by_the_deadline() {
        let plan = plan();
        let eval = Evaluator::new(&plan);
        let step = plan.step("a").unwrap();
        let err = eval
            .value(step, &RunState::default(), &nested_maps(8))
            .unwrap_err();
        assert_eq!(
            err.reason,
            "expression stopped by the sandbox limits (50000 operations, 1s wall clock)"
        );
        assert_eq!(err.step, "a");
    }

    /// A plan with one secret param, `token` = `hunter22`, and its redactor.
    fn secret_token_plan() -> (Plan, crate::exec::Redactor) {
        let src = Source::new(
            "t.yaml",
            Format::Yaml,
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t }\nparams:\n  token: { type: secret }\nsteps:\n  - { id: a, action: log, with: { message: hi } }\n",
        );
        let plan =
            compile::compile_source(&src, &Mode::Plan(vec![("token".into(), "hunter22".into())]))
                .unwrap();
        let redact = crate::exec::Redactor::new(&plan);
        (plan, redact)
    }

    #[test]
    fn secret_derived_values_are_registered_for_redaction() {
        let (plan, redact) = secret_token_plan();
        let eval = Evaluator::new(&plan).sharing(redact.derived());
        let step = plan.step("a").unwrap();
        let state = RunState::default();
        let upper = eval.value(step, &state, "params.token.to_upper()").unwrap();
        assert_eq!(upper, serde_json::json!("HUNTER22"));
        let text = eval
            .template(step, &state, "k=${{ params.token.sub_string(2, 5) }} plain")
            .unwrap();
        assert_eq!(text, "k=nter2 plain");
        assert_eq!(
            eval.value(step, &state, "\"not secret\"").unwrap(),
            "not secret"
        );
        assert_eq!(
            redact.text("HUNTER22 / nter2 / hunter22 / not secret"),
            "<redacted> / <redacted> / <redacted> / not secret"
        );
    }

    #[test]
    fn secret_derived_values_too_short_to_redact_are_refused() {
        let (plan, redact) = secret_token_plan();
        let eval = Evaluator::new(&plan).sharing(redact.derived());
        let step = plan.step("a").unwrap();
        let state = RunState::default();
        for short in [
            "params.token.sub_string(0, 2)",
            "params.token.sub_string(0, 1).to_upper()",
            "[\"ok-long\", params.token.sub_string(1, 1)]",
        ] {
            let e = eval.value(step, &state, short).unwrap_err();
            assert!(
                e.reason.contains("shorter than 4 characters"),
                "{short}: {}",
                e.reason
            );
            assert!(!e.reason.contains("hu"), "{}", e.reason);
        }
        let e = eval
            .template(step, &state, "k=${{ params.token.sub_string(0, 3) }}")
            .unwrap_err();
        assert!(e.reason.contains("shorter than 4"), "{}", e.reason);
        // A short literal beside a secret is not derived; a condition's answer is one bit.
        let v = eval
            .value(step, &state, "#{ t: params.token, mode: \"rw\" }")
            .unwrap();
        assert_eq!(v["mode"], "rw");
        assert_eq!(
            eval.value(step, &state, "params.token.len() >= 8").unwrap(),
            serde_json::json!(true)
        );
        // A length is not the secret's text.
        assert_eq!(
            eval.value(step, &state, "params.token.len()").unwrap(),
            serde_json::json!(8)
        );
        assert_eq!(redact.text("hunter22 rw"), "<redacted> rw");
    }

    #[test]
    fn oversized_values_are_refused_at_run_time() {
        let plan = plan();
        let eval = Evaluator::new(&plan);
        let step = plan.step("a").unwrap();
        let err = eval
            .value(step, &RunState::default(), "\"x\".pad(100000, \"y\")")
            .unwrap_err();
        assert!(err.reason.contains("too large"), "{}", err.reason);
    }
}
