//! Shared helpers: compiling inline runbooks and running the `runbook` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::compile::{self, Mode};
use runbook::diagnostic::{Code, Diagnostics};
use runbook::source::{Format, Source};

/// The repository root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles YAML text named `t.yaml` in check mode.
pub(crate) fn check_yaml(text: &str) -> Result<runbook::plan::Plan, Diagnostics> {
    let src = Source::new("t.yaml", Format::Yaml, text);
    compile::compile_source(&src, &Mode::Check)
}

/// Compiles YAML text with parameters.
pub(crate) fn plan_yaml(
    text: &str,
    params: &[(&str, &str)],
) -> Result<runbook::plan::Plan, Diagnostics> {
    let src = Source::new("t.yaml", Format::Yaml, text);
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    compile::compile_source(&src, &Mode::Plan(params))
}

/// Compiles rhai text named `t.rhai` in check mode.
pub(crate) fn check_rhai(text: &str) -> Result<runbook::plan::Plan, Diagnostics> {
    let src = Source::new("t.rhai", Format::Rhai, text);
    compile::compile_source(&src, &Mode::Check)
}

/// The diagnostics as `(code, "line:col", message)`.
pub(crate) fn summary(d: &Diagnostics) -> Vec<(Code, String, String)> {
    d.0.iter()
        .map(|d| {
            let (l, c) = d.line_col();
            (d.code, format!("{l}:{c}"), d.message.clone())
        })
        .collect()
}

/// Expects exactly one diagnostic and returns it as a tuple.
#[track_caller]
pub(crate) fn only(result: Result<runbook::plan::Plan, Diagnostics>) -> (Code, String, String) {
    let d = match result {
        Ok(_) => panic!("expected a diagnostic, but the runbook compiled"),
        Err(d) => d,
    };
    let s = summary(&d);
    assert_eq!(s.len(), 1, "expected one diagnostic, got {s:#?}");
    s.into_iter().next().unwrap()
}

/// Runs the binary in `dir` with arguments.
pub(crate) fn runbook(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        // Hermetic: never the developer's ~/.talos/config, ~/.kube/config or exported ones.
        .env("HOME", dir)
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the runbook binary")
}

/// stdout as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A header every inline test runbook starts with (7 lines; steps start on line 8).
pub(crate) const HEAD: &str = "apiVersion: runbook/v1
kind: Runbook
metadata:
  name: t
  description: test
params:
  nodes: { type: nodes, default: [a, b] }
";
