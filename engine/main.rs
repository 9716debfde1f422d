//! The `runbook` binary: a thin entry point over [`runbook::cli`].
fn main() {}
