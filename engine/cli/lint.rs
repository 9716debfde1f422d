//! `runbook lint [--inventory cluster.yaml] [CONFIG...] [--live CLUSTER FLAGS]`: the static
//! lints over machine configs (SOPS-encrypted ones decrypted in memory) and, with `--live`,
//! the live lints against the cluster (`lint::live`), printed for people or as JSON, with an
//! exit code scripts can gate on.
//!
//! With `--live --sim` and no `--inventory`, the simulator's own `cluster.yaml` (and the
//! configs it names) is used, so a rehearsal lints the same files a real run would.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::args::{ClusterArgs, DataFormat};
use crate::cli::session::Target;
use crate::cli::{Error, print_diagnostics, print_json, print_out};
use crate::cluster::connection::Connection;
use crate::exit_code;
use crate::inventory::{Inventory, InventoryError};
use crate::lint::{self, ConfigFile, Finding, Severity, Target as LintTarget};

fn input_error(e: impl std::fmt::Display) -> Error {
    Error::Usage(e.to_string())
}

fn load_inventory(p: &Path) -> Result<Inventory, Error> {
    match Inventory::load(p) {
        Ok(inv) => Ok(inv),
        Err(InventoryError::Invalid { path, diagnostics }) => {
            print_diagnostics(&diagnostics);
            Err(Error::Usage(format!(
                "`{}` is not a valid inventory (see above)",
                path.display()
            )))
        }
        Err(e) => Err(input_error(e)),
    }
}

fn load_configs(paths: &[PathBuf]) -> Result<Vec<ConfigFile>, Error> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
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
    Ok(files)
}

/// The inventory and configs to lint (the inventory's when no file is named).
fn inputs(
    inventory: Option<&Path>,
    configs: &[PathBuf],
    live: bool,
) -> Result<(Option<Inventory>, Vec<ConfigFile>), Error> {
    let inventory = inventory.map(load_inventory).transpose()?;
    let paths: Vec<PathBuf> = if configs.is_empty() {
        match &inventory {
            Some(inv) => inv.nodes.iter().filter_map(|n| n.config.clone()).collect(),
            None if live => Vec::new(),
            None => {
                return Err(Error::Usage(
                    "give machine config files to lint, or --inventory cluster.yaml to lint every node's config".into(),
                ));
            }
        }
    } else {
        configs.to_vec()
    };
    Ok((inventory, load_configs(&paths)?))
}

fn static_findings(inventory: Option<&Inventory>, files: &[ConfigFile]) -> Vec<Finding> {
    let targets: Vec<LintTarget<'_>> = files
        .iter()
        .map(|f| LintTarget {
            config: f,
            node: inventory.and_then(|i| i.node_for_config(&f.path)),
        })
        .collect();
    lint::lint(&targets)
}

async fn live_findings(
    conn: &Connection,
    inventory: Option<&Inventory>,
    files: &[ConfigFile],
) -> Result<Vec<Finding>, Error> {
    let effects = conn
        .open()
        .await
        .map_err(|e| Error::Usage(format!("cannot reach the cluster: {e}")))?;
    let observer = effects.observer();
    let view = observer.view().await;
    let extras = crate::doctor::probe::all(observer, &view).await;
    let empty = crate::doctor::NodeExtras::default();
    let nodes: Vec<lint::live::LiveNode<'_>> = view
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let config = inventory
                .and_then(|inv| inv.nodes.iter().find(|e| n.is_named(&e.name)))
                .and_then(|e| e.config.as_deref())
                .and_then(|c| {
                    files.iter().find(|f| {
                        f.path == c
                            || (std::fs::canonicalize(&f.path).ok()
                                == std::fs::canonicalize(c).ok()
                                && std::fs::canonicalize(c).is_ok())
                    })
                });
            lint::live::LiveNode {
                view: n,
                extras: extras.get(i).unwrap_or(&empty),
                config,
            }
        })
        .collect();
    let mut out = lint::live::lint(&view, &nodes);
    if inventory.is_none() {
        out.push(Finding {
            id: "L1",
            severity: Severity::Warning,
            file: "live:cluster".into(),
            line: 0,
            column: 0,
            message: "without --inventory the live lints cannot tell which config is which node's: the running image, modules and install disk were not compared with any config".into(),
            fix: "pass --inventory cluster.yaml (`runbook sim up` writes one)".into(),
        });
    }
    Ok(out)
}

async fn on_sim(
    scenario: &str,
    speed: f64,
    (preset, workers): (&str, Option<u32>),
    inventory: Option<&Path>,
    configs: &[PathBuf],
) -> Result<(Vec<Finding>, usize), Error> {
    let scenario: crate::sim::Scenario = scenario.parse().map_err(|e| {
        Error::Usage(format!(
            "unknown scenario `{scenario}`: {e} (see `runbook sim scenarios`)"
        ))
    })?;
    let speed = crate::sim::Speed::new(speed)
        .ok_or_else(|| Error::Usage(format!("invalid speed `{speed}`")))?;
    // `--preset`/`--workers` as `run --sim` and `sim up` read them (refused alike when unknown,
    // out of range or meaningless for the scenario).
    let preset = super::sim::preset(preset, workers, scenario)?;
    let dir = std::env::temp_dir().join(format!("runbook-lint-live-{}", std::process::id()));
    let handle = crate::sim::Simulator::start_with(
        crate::sim::SimConfig {
            scenario,
            speed,
            dir: dir.clone(),
        },
        preset,
    )
    .await
    .map_err(|e| Error::Usage(format!("cannot start the simulator: {e}")))?;
    let own = dir.join("cluster.yaml");
    let result = async {
        let inventory = inventory.or(if configs.is_empty() {
            Some(own.as_path())
        } else {
            None
        });
        let (inv, files) = inputs(inventory, configs, true)?;
        let mut findings = static_findings(inv.as_ref(), &files);
        findings.extend(
            live_findings(&Connection::for_simulator(&handle), inv.as_ref(), &files).await?,
        );
        Ok((findings, files.len()))
    }
    .await;
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn print(findings: &[Finding], files: usize, output: DataFormat) -> Result<(), Error> {
    if output == DataFormat::Json {
        return print_json(&serde_json::json!({ "findings": findings }));
    }
    let mut out = String::new();
    for f in findings {
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
        "{files} config(s): {errors} error(s), {} warning(s)",
        findings.len() - errors
    );
    print_out(&out)
}

/// Lints the configs (and, with `live`, the cluster); exit 0 without error findings,
/// [`exit_code::LINT_FAILED`] with.
pub fn run(
    inventory: Option<&Path>,
    configs: &[PathBuf],
    output: DataFormat,
    live: Option<&ClusterArgs>,
) -> Result<(), Error> {
    let (findings, files) = match live {
        None => {
            let (inv, files) = inputs(inventory, configs, false)?;
            (static_findings(inv.as_ref(), &files), files.len())
        }
        Some(cluster) => {
            let target = match Target::for_run(cluster, true)? {
                Target::Local => {
                    return Err(Error::Usage(
                        "lint --live needs a cluster: --talosconfig PATH, $TALOSCONFIG or ~/.talos/config, or --sim".into(),
                    ));
                }
                t => t,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            runtime.block_on(async {
                match &target {
                    Target::Sim {
                        scenario,
                        speed,
                        preset,
                        workers,
                    } => {
                        // The count is of the configs linted (the simulator's own inventory
                        // names one per node), as for a real cluster.
                        on_sim(scenario, *speed, (preset, *workers), inventory, configs).await
                    }
                    Target::Cluster(conn) => {
                        let (inv, files) = inputs(inventory, configs, true)?;
                        let mut f = static_findings(inv.as_ref(), &files);
                        f.extend(live_findings(conn, inv.as_ref(), &files).await?);
                        Ok((f, files.len()))
                    }
                    Target::Local => Err(Error::Usage("lint --live needs a cluster".into())),
                }
            })?
        }
    };
    print(&findings, files, output)?;
    if lint::has_errors(&findings) {
        return Err(Error::Stopped(exit_code::LINT_FAILED));
    }
    Ok(())
}
