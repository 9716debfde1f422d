//! Loading the configs a check lints, failing closed: a file that cannot be read, decrypted
//! or parsed is an error finding of its own (`L0`), never a file silently left out. Shared by
//! the `preflight` action and `runbook lint --live`.

use std::path::{Path, PathBuf};

use super::{ConfigFile, Finding, Severity, Target};
use crate::inventory::Inventory;

/// The configs named by `paths` (a directory stands for its `*.yaml` files, sorted), each
/// loaded, with the findings of those that could not be.
pub fn configs(paths: &[PathBuf]) -> (Vec<ConfigFile>, Vec<Finding>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in expand(paths, &mut problems) {
        match ConfigFile::load(&p) {
            Ok(f) => files.push(f),
            Err(e) => problems.push(unreadable(&p, &e.to_string())),
        }
    }
    (files, problems)
}

fn expand(paths: &[PathBuf], problems: &mut Vec<Finding>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|f| {
                        f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml")
                    })
                    .collect();
                found.sort();
                if found.is_empty() {
                    problems.push(unreadable(p, "the directory holds no *.yaml config"));
                }
                out.extend(found);
            }
            Err(e) => problems.push(unreadable(p, &e.to_string())),
        }
    }
    out
}

/// An `L0` error finding for a file that could not be linted.
pub fn unreadable(path: &Path, why: &str) -> Finding {
    Finding {
        id: "L0",
        severity: Severity::Error,
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot lint `{}`: {why}", path.display()),
        fix: "make the config readable (and decryptable, for SOPS files) or name the right file"
            .into(),
    }
}

/// Lints `files` (each paired with its inventory node) and keeps the findings of the rules in
/// `only` (every rule when empty) and every `L0`.
pub fn lint_only(
    files: &[ConfigFile],
    inventory: Option<&Inventory>,
    only: &[String],
) -> Vec<Finding> {
    let targets: Vec<Target<'_>> = files
        .iter()
        .map(|f| Target {
            config: f,
            node: inventory.and_then(|i| i.node_for_config(&f.path)),
        })
        .collect();
    super::lint(&targets)
        .into_iter()
        .filter(|f| f.id == "L0" || only.is_empty() || only.iter().any(|o| o == f.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_and_an_empty_directory_are_error_findings_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (files, problems) = configs(&[dir.path().join("nope.yaml"), dir.path().to_path_buf()]);
        assert!(files.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.id == "L0" && p.severity == Severity::Error)
        );
    }
}
