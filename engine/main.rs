//! The `runbook` binary: a thin entry point over [`runbook::cli::main`].

fn main() -> std::process::ExitCode {
    runbook::cli::main()
}
