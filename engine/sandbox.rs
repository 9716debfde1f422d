//! The one place rhai engines are configured: sandboxed, bounded, quiet.
//!
//! Runbook expressions (`when`, guard expressions, `${{ … }}` arguments) and whole rhai
//! runbooks run here. rhai has no file, network or process access of its own; we also remove
//! `eval`, route `print`/`debug` to tracing, and cap operations, call depth, expression depth,
//! string, array and map sizes, so a runaway script stops with a clear error instead of hanging
//! the operator's terminal at 2 a.m.

use rhai::Engine;

/// Operation budget for one expression.
pub const EXPR_MAX_OPERATIONS: u64 = 50_000;
/// Operation budget for one runbook script.
pub const SCRIPT_MAX_OPERATIONS: u64 = 2_000_000;

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
    engine.on_print(|text| tracing::info!(target: "runbook::script", "{text}"));
    engine.on_debug(|text, _, pos| tracing::debug!(target: "runbook::script", ?pos, "{text}"));
    engine
}
