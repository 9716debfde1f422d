//! File arguments written in a runbook (`kube.apply`'s `file:`, `talos.patch`'s
//! `patch_file:`) are relative to the runbook file's directory, not to wherever the operator
//! stands, and a missing one is an authoring error pointing at the argument.
//!
//! Only a path written literally in the runbook is resolved here: it is made absolute against
//! the directory of the runbook file, so `runbook run ../ops/gpu.yaml` reads
//! `../ops/manifests/nvidia.yaml` for `file: manifests/nvidia.yaml`, and the plan (and its
//! hash) holds the absolute path that will be read. A built-in runbook has no directory: its
//! literal relative paths resolve against the working directory. A path that comes from a
//! param (`${{ params.manifest }}`) is what the operator typed on the command line, so it
//! resolves against the working directory, like any command-line path; a path computed at run
//! time is read as it is.
//!
//! `resume` and `abort` recompile the run's stored copy: the run header records the runbook's
//! absolute path, and the copy resolves against that file's directory, so the plan (and its
//! hash) is the same wherever the operator stands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::ast::{ArgValue, Args};
use crate::plan::Value;
use crate::source::Source;

/// The file arguments of `action`, if it has any.
fn file_args(action: &str) -> &'static [&'static str] {
    match action {
        "kube.apply" => &["file"],
        "talos.patch" => &["patch_file"],
        _ => &[],
    }
}

/// The directory literal relative paths of `source` resolve against: the runbook file's (a
/// stored copy's: the original's, [`Source::with_base_dir`]), or the working directory for a
/// built-in (or if it cannot be read).
pub fn base_dir(source: &Source) -> Option<PathBuf> {
    if let Some(dir) = &source.base_dir {
        return Some(dir.clone());
    }
    match source.path.as_deref().and_then(Path::parent) {
        Some(dir) if dir.as_os_str().is_empty() => std::env::current_dir().ok(),
        Some(dir) if dir.is_absolute() => Some(dir.to_path_buf()),
        Some(dir) => std::env::current_dir().ok().map(|cwd| cwd.join(dir)),
        None => std::env::current_dir().ok(),
    }
}

/// Resolves the literal file arguments of one call in `args` (as folded) and reports a
/// missing file at its argument (`given`, as written).
pub fn resolve(
    source: &Source,
    action: &str,
    given: &Args,
    args: &mut BTreeMap<String, Value>,
    diags: &mut Diagnostics,
) {
    for name in file_args(action) {
        let Some((_, ArgValue::Literal(node))) = given.iter().find(|(n, _)| n.value == *name)
        else {
            continue;
        };
        let Some(Value::Literal(serde_json::Value::String(path))) = args.get(*name) else {
            continue;
        };
        let written = Path::new(path);
        let resolved = if written.is_absolute() {
            written.to_path_buf()
        } else {
            match base_dir(source) {
                Some(dir) => dir.join(written),
                None => written.to_path_buf(),
            }
        };
        // A stored copy (resume, abort) resolves the same path, so the plan hash matches, but
        // does not refuse: a file gone since the run started fails its step when read, and
        // never blocks an abort.
        if source.path.is_some() && !resolved.is_file() {
            let against = match source.path {
                Some(_) => "the runbook's directory",
                None => "the working directory (a built-in runbook has none)",
            };
            diags.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    source,
                    node.span,
                    format!(
                        "`{name}` of `{action}`: no file `{}` (relative paths are read from {against})",
                        resolved.display()
                    ),
                    "no such file",
                )
                .with_help(
                    "write the path relative to the runbook file, or give an absolute one; a path known only at run time goes in `${{ }}`",
                ),
            );
            continue;
        }
        args.insert(
            (*name).to_string(),
            Value::Literal(serde_json::Value::String(resolved.display().to_string())),
        );
    }
}
