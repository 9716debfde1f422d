//! The one place rhai engines are configured: sandboxed, bounded, quiet.
//!
//! Runbook expressions (`when`, guard expressions, `${{ … }}` arguments) and whole rhai
//! runbooks run here. rhai has no file, network or process access of its own; we also remove
//! `eval`, route `print`/`debug` to tracing, and cap operations, call depth, expression depth,
//! string, array and map sizes, so a runaway script stops with a clear error instead of hanging
//! the operator's terminal at 2 a.m.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult};

/// Operation budget for one expression.
pub const EXPR_MAX_OPERATIONS: u64 = 50_000;
/// Operation budget for one runbook script.
pub const SCRIPT_MAX_OPERATIONS: u64 = 2_000_000;
/// Wall-clock budget for one expression. rhai restarts its operation count inside closures
/// called by native functions (`map`, `filter`, …), so nested closures could otherwise run far
/// past the operation budget; the deadline bounds them too.
pub const EXPR_TIME_LIMIT: Duration = Duration::from_secs(1);
/// Wall-clock budget for one runbook script.
pub const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(5);

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (an evaluation on an engine from [`engine`]) with a wall-clock deadline.
pub fn with_deadline<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + limit)));
    let out = f();
    DEADLINE.with(|d| d.set(previous));
    out
}

/// True if an evaluation error is one of the sandbox's limits (operations or time).
pub fn is_limit(err: &EvalAltResult) -> bool {
    match err {
        EvalAltResult::ErrorTooManyOperations(_) | EvalAltResult::ErrorTerminated(..) => true,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => is_limit(inner),
        _ => false,
    }
}

/// A sandboxed engine with the given operation budget.
pub fn engine(max_operations: u64) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(max_operations)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(64 * 1024)
        .set_max_array_size(10_000)
        .set_max_map_size(10_000)
        .set_max_variables(1_000)
        .set_max_functions(200)
        .set_fail_on_invalid_map_property(true)
        .disable_symbol("eval")
        .disable_symbol("import")
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.on_progress(|_ops| {
        let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t));
        late.then(|| Dynamic::from("time limit"))
    });
    engine.on_print(|text| tracing::info!(target: "runbook::script", "{text}"));
    engine.on_debug(|text, _, pos| tracing::debug!(target: "runbook::script", ?pos, "{text}"));
    engine
}
