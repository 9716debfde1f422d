//! `runbook lint [--inventory cluster.yaml] [CONFIG...]`: the static lints over machine
//! configs (SOPS-encrypted ones decrypted in memory), printed for people or as JSON, with an
//! exit code scripts can gate on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::args::DataFormat;
use crate::cli::{Error, print_diagnostics, print_json, print_out};
use crate::exit_code;
use crate::inventory::{Inventory, InventoryError};
use crate::lint::{self, ConfigFile, Severity, Target};

fn input_error(e: impl std::fmt::Display) -> Error {
    Error::Usage(e.to_string())
}

/// Lints the configs; exit 0 without error findings, [`exit_code::LINT_FAILED`] with.
pub fn run(inventory: Option<&Path>, configs: &[PathBuf], output: DataFormat) -> Result<(), Error> {
    let inventory = match inventory {
        None => None,
        Some(p) => match Inventory::load(p) {
            Ok(inv) => Some(inv),
            Err(InventoryError::Invalid { path, diagnostics }) => {
                print_diagnostics(&diagnostics);
                return Err(Error::Usage(format!(
                    "`{}` is not a valid inventory (see above)",
                    path.display()
                )));
            }
            Err(e) => return Err(input_error(e)),
        },
    };
    let paths: Vec<PathBuf> = if configs.is_empty() {
        match &inventory {
            Some(inv) => inv.nodes.iter().filter_map(|n| n.config.clone()).collect(),
            None => {
                return Err(Error::Usage(
                    "give machine config files to lint, or --inventory cluster.yaml to lint every node's config".into(),
                ));
            }
        }
    } else {
        configs.to_vec()
    };
    let mut files = Vec::with_capacity(paths.len());
    for p in &paths {
        match ConfigFile::load(p) {
            Ok(f) => files.push(f),
            Err(lint::config::ConfigError::Syntax { path, diagnostics }) => {
                print_diagnostics(&diagnostics);
                return Err(Error::Usage(format!(
                    "`{}` is not valid YAML (see above)",
                    path.display()
                )));
            }
            Err(e) => return Err(input_error(e)),
        }
    }
    let targets: Vec<Target<'_>> = files
        .iter()
        .map(|f| Target {
            config: f,
            node: inventory.as_ref().and_then(|i| i.node_for_config(&f.path)),
        })
        .collect();
    let findings = lint::lint(&targets);
    if output == DataFormat::Json {
        print_json(&serde_json::json!({ "findings": findings }))?;
    } else {
        let mut out = String::new();
        for f in &findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "{}:{}:{}: {sev}[{}]: {}\n  fix: {}",
                f.file, f.line, f.column, f.id, f.message, f.fix
            );
        }
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let _ = writeln!(
            out,
            "{} config(s): {errors} error(s), {} warning(s)",
            files.len(),
            findings.len() - errors
        );
        print_out(&out)?;
    }
    if lint::has_errors(&findings) {
        return Err(Error::Stopped(exit_code::LINT_FAILED));
    }
    Ok(())
}
