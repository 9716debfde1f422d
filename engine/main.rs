//! The `runbook` binary: a thin entry point over [`runbook::cli::main`].

fn main() -> std::process::ExitCode {
    let code = runbook::cli::main();
    runbook::sandbox::report_peak_memory();
    code
}
