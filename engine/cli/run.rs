//! `runbook run NAME|PATH`: compile, create a run directory and journal, and drive it (or,
//! with `--dry-run`, only say what would happen).

use crate::cli::Error;
use crate::cli::args::{ClusterArgs, OutputArg};
use crate::cli::session::{self, Session, Target};
use crate::compile::{self, Mode};
use crate::journal::{FORMAT_VERSION, Fields, Journal, RunHeader, SourceKind, identity, time};
use crate::library;
use crate::source::Format;

/// Runs a runbook.
#[allow(clippy::too_many_arguments)]
pub fn run(
    name: &str,
    params: Vec<(String, String)>,
    dry_run: bool,
    yes: bool,
    output: OutputArg,
    cluster: &ClusterArgs,
    state_dir: Option<&std::path::Path>,
    override_preflight: Option<&str>,
) -> Result<(), Error> {
    let entry = library::find(name)?;
    let plan =
        compile::compile_source(&entry.source, &Mode::Plan(params)).map_err(Error::Diagnostics)?;
    let target = if dry_run {
        Target::from_args(cluster)?.unwrap_or(Target::Local)
    } else {
        Target::for_run(cluster, plan.needs_cluster())?
    };
    if !dry_run && plan.needs_cluster() && matches!(target, Target::Local) {
        // Refused before a run directory exists: a run that could never start leaves nothing.
        return Err(Error::Usage(format!(
            "`{}` needs a cluster: give --talosconfig PATH (or set $TALOSCONFIG, or create ~/.talos/config with talosctl), or rehearse it with --sim",
            plan.runbook
        )));
    }
    let events = session::reporters(output);
    if dry_run {
        // Against a cluster, `talos.patch` steps read the running config and show the
        // redacted diff of what they would send (read-only).
        if let Target::Cluster(conn) = &target {
            session::preview_patches(conn, &plan, &events);
        }
        let report = session::dry_run(&plan, &events);
        return session::stop(report.stop);
    }
    let state = session::state_dir(state_dir)?;
    // ParamValue serializes secrets as `<redacted>`: params.json and the header never hold them.
    let stored: Fields = match serde_json::to_value(&plan.params) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Fields::new(),
    };
    let kind = match entry.source.format {
        Format::Yaml => SourceKind::Yaml,
        Format::Rhai => SourceKind::Rhai,
    };
    let run = state
        .create_run(kind, &entry.source.text, &stored)
        .map_err(Error::Journal)?;
    let header = RunHeader {
        format_version: FORMAT_VERSION,
        run_id: run.id().to_owned(),
        runbook: plan.runbook.clone(),
        source_file: entry.source.name.clone(),
        plan_hash: plan.hash.clone(),
        params: stored,
        host: identity::host_name(),
        pid: identity::pid(),
        started_at: time::now_rfc3339(),
    };
    target.save(&run)?;
    let mut journal = Journal::create(&run, header).map_err(Error::Journal)?;
    if let Some(reason) = override_preflight {
        // The decision is journaled before anything runs, so resume honours it without the flag.
        crate::cli::preflight::record_decision(&mut journal, reason)?;
    }
    session::drive(
        Session {
            plan: &plan,
            journal,
            events: &events,
            output,
            yes,
            abort: false,
            lock: session::LockOptions::from_args(cluster),
        },
        &target,
        &run,
    )
}
