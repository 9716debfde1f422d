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

/// Largest runbook file accepted (YAML or rhai), in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences in a runbook (YAML or the values a script builds).
pub const MAX_NESTING: usize = 64;
/// Longest line holding non-ASCII text in a YAML runbook, in bytes. Positions on such a line
/// cost its length to find, so a long one with many values would make loading quadratic.
pub const MAX_NON_ASCII_LINE_BYTES: usize = 16 * 1024;
/// Most values (scalars, mappings, sequences) in one YAML runbook.
pub const MAX_YAML_NODES: usize = 100_000;

/// Most variables a runbook script may hold at once: each may be as large as the size limits
/// allow, so this bounds a script's memory.
pub const SCRIPT_MAX_VARIABLES: usize = 128;

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

/// Resident memory a runbook script may add to the process, in bytes. rhai bounds each value
/// but not their number across function frames, so a script is also stopped when the
/// process's resident set grows past this (checked every [`MEMORY_CHECK_EVERY`] operations).
pub const SCRIPT_MAX_MEMORY: u64 = 24 * 1024 * 1024;
/// Operations between two memory checks: one operation allocates at most one value at the
/// size limits (~150 KB), so the limit is overshot by at most ~10 MB.
pub const MEMORY_CHECK_EVERY: u64 = 64;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static MEMORY_CEILING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The process's resident set size in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Runs `f` with the process allowed to grow by at most `extra` resident bytes (where the
/// resident size can be read).
pub fn with_memory_limit<T>(extra: u64, f: impl FnOnce() -> T) -> T {
    let ceiling = resident_bytes().map(|now| now + extra);
    let previous = MEMORY_CEILING.with(|c| c.replace(ceiling));
    let out = f();
    MEMORY_CEILING.with(|c| c.set(previous));
    out
}

/// The token an evaluation stopped by the memory limit terminates with.
pub const MEMORY_LIMIT: &str = "memory limit";

/// Runs `f` (an evaluation on an engine from [`engine`]) with a wall-clock deadline.
pub fn with_deadline<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + limit)));
    let out = f();
    DEADLINE.with(|d| d.set(previous));
    out
}

/// The error text for an expression stopped by [`EXPR_MAX_OPERATIONS`] or [`EXPR_TIME_LIMIT`].
pub fn expr_limit_message() -> String {
    format!(
        "expression stopped by the sandbox limits ({EXPR_MAX_OPERATIONS} operations, {}s wall clock)",
        EXPR_TIME_LIMIT.as_secs()
    )
}

/// True if an evaluation was stopped by [`with_memory_limit`].
pub fn is_memory_limit(err: &EvalAltResult) -> bool {
    match err {
        EvalAltResult::ErrorTerminated(token, _) => {
            token.clone().into_string().is_ok_and(|t| t == MEMORY_LIMIT)
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => is_memory_limit(inner),
        _ => false,
    }
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
    engine.on_progress(|ops| {
        let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t));
        if late {
            return Some(Dynamic::from("time limit"));
        }
        if ops % MEMORY_CHECK_EVERY == 0
            && let Some(ceiling) = MEMORY_CEILING.with(Cell::get)
            && resident_bytes().is_some_and(|now| now > ceiling)
        {
            return Some(Dynamic::from(MEMORY_LIMIT));
        }
        None
    });
    engine.on_print(|text| tracing::info!(target: "runbook::script", "{text}"));
    engine.on_debug(|text, _, pos| tracing::debug!(target: "runbook::script", ?pos, "{text}"));
    engine
}

/// Test-only hook (documented in `docs/cli.md`): when this variable is set, the binary writes
/// its peak resident memory (`VmHWM` from `/proc/self/status`) to stderr as it exits, so a test
/// can prove a hostile runbook was refused in bounded memory without timing anything.
pub const REPORT_PEAK_MEMORY: &str = "RUNBOOK_TEST_REPORT_PEAK_MEMORY";

/// Writes `runbook-test: VmHWM <n> kB` to stderr if [`REPORT_PEAK_MEMORY`] is set.
pub fn report_peak_memory() {
    if std::env::var_os(REPORT_PEAK_MEMORY).is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        let kb = line.trim_start_matches("VmHWM:").trim();
        eprintln!("runbook-test: VmHWM {kb}");
    }
}
