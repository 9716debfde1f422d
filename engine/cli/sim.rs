//! `runbook sim`: run the simulated Talos cluster in the foreground, or list its scenarios.
//!
//! `sim up` starts [`crate::sim::Simulator`], writes the talosconfigs (and, once the
//! Kubernetes API server is wired in, a kubeconfig) into the run directory, prints how to
//! point runbook, talosctl and kubectl at it, and serves until Ctrl-C. `sim scenarios` prints
//! one line per scenario. `--preset fleet --workers N` adds N workers to the seed's three
//! control planes (each with its own Talos API port, listed in `endpoints.json`).

use std::path::PathBuf;

use crate::sim::scenario::NUC_20;
use crate::sim::{Preset, Scenario, SimConfig, Simulator, Speed};

use super::{Error, print_out};

/// Options of `runbook sim up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Preset topology (`seed` or `fleet`).
    pub preset: String,
    /// Workers of the `fleet` preset.
    pub workers: Option<u32>,
    /// Scenario name.
    pub scenario: String,
    /// Speed factor.
    pub speed: f64,
    /// Run directory.
    pub dir: PathBuf,
}

/// `runbook sim scenarios`.
pub fn scenarios() -> Result<(), Error> {
    let width = Scenario::ALL
        .iter()
        .map(|s| s.name().len())
        .max()
        .unwrap_or(0);
    let text: String = Scenario::ALL
        .iter()
        .map(|s| format!("{:width$}  {}\n", s.name(), s.description()))
        .collect();
    print_out(&text)
}

/// `runbook sim up`.
pub fn up(opts: UpOptions) -> Result<(), Error> {
    let scenario: Scenario = opts
        .scenario
        .parse()
        .map_err(|e: crate::sim::scenario::UnknownScenario| Error::Usage(e.to_string()))?;
    let preset = preset(&opts.preset, opts.workers, scenario)?;
    let speed = Speed::new(opts.speed).ok_or_else(|| {
        Error::Usage(format!(
            "--speed must be a positive number, got {}",
            opts.speed
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let handle = Simulator::start_with(
            SimConfig {
                scenario,
                speed,
                dir: opts.dir.clone(),
            },
            preset,
        )
        .await
        .map_err(|e| Error::Usage(error_chain(&e)))?;
        let mut text = format!(
            "simulated Talos cluster up: preset {preset}, scenario {scenario} at speed {}x\n\n",
            speed.factor()
        );
        for (label, addr) in handle.nodes() {
            text.push_str(&format!("  {label:<15} Talos API on {addr}\n"));
        }
        let tc = handle.talosconfig().display().to_string();
        text.push_str(&format!(
            "\nfiles in {dir}:\n  talosconfig (admin), talosconfig-operator, talosconfig-reader\n  calls.jsonl (every mutating call, one JSON line each), endpoints.json (node → port)\n",
            dir = handle.dir().display()
        ));
        let kubeconfig = handle.dir().join("kubeconfig");
        if kubeconfig.exists() {
            text.push_str("  kubeconfig\n");
        }
        text.push_str(&format!(
            "\npoint the tools at it:\n  export TALOSCONFIG={tc}\n  talosctl --talosconfig {tc} -n {NUC_20} get machinestatus\n  talosctl --talosconfig {tc} -n {NUC_20} etcd members\n"
        ));
        if kubeconfig.exists() {
            text.push_str(&format!("  kubectl --kubeconfig {} get nodes\n", kubeconfig.display()));
        } else {
            text.push_str("  (no Kubernetes API in this build: kubectl has nothing to talk to)\n");
        }
        // Node lists default from the cluster (the etcd voters, leader last, then every
        // worker): only the batch size is worth saying.
        let workers = handle
            .cluster()
            .with(|c, _| c.nodes().iter().filter(|n| !n.is_control_plane()).count());
        let batch = if workers == 0 {
            String::new()
        } else {
            format!(" --param batch={}", workers.min(5))
        };
        text.push_str(&format!(
            "  runbook run reboot-verify --talosconfig {tc} --kubeconfig {} --node-endpoints {}{batch}\n",
            kubeconfig.display(),
            handle.dir().join("endpoints.json").display(),
        ));
        text.push_str("\nCtrl-C stops the simulator.\n");
        print_out(&text)?;
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping the simulator");
        handle.shutdown().await;
        Ok(())
    })
}

/// The topology preset named by `--preset`/`--workers` (empty: `seed`), refused with a usage
/// error when unknown, out of range, or meaningless for `scenario`.
pub fn preset(name: &str, workers: Option<u32>, scenario: Scenario) -> Result<Preset, Error> {
    let name = if name.is_empty() { "seed" } else { name };
    let preset = Preset::parse(name, workers).map_err(|e| Error::Usage(e.to_string()))?;
    preset
        .check(scenario)
        .map_err(|e| Error::Usage(e.to_string()))?;
    Ok(preset)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}
