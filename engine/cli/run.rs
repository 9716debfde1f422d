//! `runbook run NAME|PATH`: reach the cluster, read the params it knows, compile, create a
//! run directory and journal, and drive it (or, with `--dry-run`, only say what would happen).
//!
//! The order is the point: the cluster is reached (and must answer) before anything is
//! written, and params that default from the cluster are read before the plan is compiled,
//! so the plan, its hash and `params.json` hold the resolved values and `resume` never reads
//! them again.

use crate::cli::Error;
use crate::cli::args::{ClusterArgs, OutputArg};
use crate::cli::reach::{Purpose, Reached};
use crate::cli::session::{self, Session, Target};
use crate::compile::{self, Mode};
use crate::event::Event;
use crate::exec::EventSink as _;
use crate::journal::{FORMAT_VERSION, Fields, Journal, RunHeader, SourceKind, identity, time};
use crate::library;
use crate::source::Format;

/// Stand-in values for params the cluster will give, to compile (and report every other
/// problem) before connecting.
fn placeholders(wanted: &[(String, crate::dsl::ast::ClusterDefault)]) -> Vec<(String, String)> {
    wanted
        .iter()
        .map(|(k, d)| {
            let v = match d.ty() {
                crate::dsl::ast::ParamType::Nodes => "node-1,node-2,node-3",
                _ => "node-1",
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

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
    let mut params = params;
    for (k, v) in crate::inventory::param_defaults(&entry.source, &params).map_err(Error::Usage)? {
        eprintln!("defaulted from the inventory: {k} = {v}");
        params.push((k, v));
    }
    let wanted = compile::params::cluster_defaults(&entry.source, &params);
    // Every authoring and --param problem first, before any connection.
    let mut first = params.clone();
    first.extend(placeholders(&wanted));
    let draft =
        compile::compile_source(&entry.source, &Mode::Plan(first)).map_err(Error::Diagnostics)?;
    let needs_cluster = draft.needs_cluster() || !wanted.is_empty();
    if dry_run && wanted.is_empty() {
        let plan = draft;
        let events = session::reporters(output);
        // Against a cluster, `talos.patch` steps read the running config and show the
        // redacted diff of what they would send (read-only).
        if let Some(Target::Cluster(conn)) = Target::from_args(cluster)? {
            session::preview_changes(&conn, &plan, &events);
        }
        let report = session::dry_run(&plan, &events);
        return session::stop(report.stop);
    }
    let target = Target::for_run(cluster, needs_cluster)?;
    if needs_cluster && matches!(target, Target::Local) {
        // Refused before a run directory exists: a run that could never start leaves nothing.
        let why = match wanted.first() {
            Some((p, d)) if !draft.needs_cluster() => format!(
                "parameter `{p}` defaults from the cluster ({}): give `--param {p}=…`, or",
                d.name()
            ),
            _ => format!("`{}` needs a cluster: give", draft.runbook),
        };
        return Err(Error::Usage(format!(
            "{why} --talosconfig PATH (or set $TALOSCONFIG, or create ~/.talos/config with talosctl), or rehearse it with --sim"
        )));
    }
    let state = session::state_dir(state_dir)?;
    // An embedded simulator starts in a locked staging directory (stale ones of killed runs
    // are swept first); the lock is held until this function returns.
    let staging = match target {
        Target::Sim { .. } => Some(super::sim_staging::Staging::create(&sim_staging(&state))?),
        _ => None,
    };
    let sim_dir = staging.as_ref().map_or_else(
        || sim_staging(&state).join("unused"),
        |s| s.dir().to_path_buf(),
    );
    let mut reached = Reached::reach(&target, &sim_dir, Purpose::Run)?;
    let prepared = prepare(
        &mut reached,
        &entry,
        &params,
        &wanted,
        dry_run,
        output,
        &state,
        override_preflight,
    );
    match prepared {
        Ok(Some((plan, journal, run, events))) => reached.drive(
            Session {
                plan: &plan,
                journal,
                events: &events,
                output,
                yes,
                abort: false,
                lock: session::LockOptions::from_args(cluster),
            },
            &run,
        ),
        Ok(None) => {
            reached.close();
            Ok(())
        }
        Err(e) => {
            reached.close();
            Err(e)
        }
    }
}

type Prepared = (
    crate::plan::Plan,
    Journal,
    crate::journal::RunDir,
    crate::report::Reporters,
);

/// Resolves the cluster's params, compiles, and (unless a dry run) creates the run: `None`
/// when there is nothing to drive (a dry run that passed).
#[allow(clippy::too_many_arguments)]
fn prepare(
    reached: &mut Reached,
    entry: &library::Entry,
    params: &[(String, String)],
    wanted: &[(String, crate::dsl::ast::ClusterDefault)],
    dry_run: bool,
    output: OutputArg,
    state: &crate::journal::StateDir,
    override_preflight: Option<&str>,
) -> Result<Option<Prepared>, Error> {
    let resolved = reached.resolve(wanted)?;
    let mut all = params.to_vec();
    all.extend(resolved.iter().map(|r| (r.param.clone(), r.text.clone())));
    let plan =
        compile::compile_source(&entry.source, &Mode::Plan(all)).map_err(Error::Diagnostics)?;
    let events = session::reporters(output);
    for r in &resolved {
        events.emit(&Event::Message {
            step: "params".to_owned(),
            text: format!(
                "defaulted from the cluster: {} = {} ({})",
                r.param,
                if r.text.is_empty() { "(none)" } else { &r.text },
                r.why
            ),
        });
    }
    if dry_run {
        if let Target::Cluster(conn) = reached.target() {
            session::preview_changes(&conn, &plan, &events);
        }
        let report = session::dry_run(&plan, &events);
        session::stop(report.stop)?;
        return Ok(None);
    }
    // ParamValue serializes secrets as `<redacted>`: params.json and the header never hold
    // them.
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
    reached.adopt(&run)?;
    let header = RunHeader {
        format_version: FORMAT_VERSION,
        run_id: run.id().to_owned(),
        runbook: plan.runbook.clone(),
        // Absolute when it is a file, so a resume from another directory resolves the
        // runbook's relative file arguments as this run did (`compile::file_args`).
        source_file: entry
            .source
            .path
            .as_deref()
            .and_then(|p| std::path::absolute(p).ok())
            .map_or_else(|| entry.source.name.clone(), |p| p.display().to_string()),
        plan_hash: plan.hash.clone(),
        params: stored,
        host: identity::host_name(),
        pid: identity::pid(),
        started_at: time::now_rfc3339(),
    };
    reached.target().save(&run)?;
    let mut journal = Journal::create(&run, header).map_err(Error::Journal)?;
    if let Some(reason) = override_preflight {
        // The decision is journaled before anything runs, so resume honours it without the flag.
        crate::cli::preflight::record_decision(&mut journal, reason)?;
    }
    Ok(Some((plan, journal, run, events)))
}

/// Where embedded simulators start, before their run directory exists: beside `runs/`, on
/// the same file system (each is moved into its run directory); see `cli::sim_staging`.
fn sim_staging(state: &crate::journal::StateDir) -> std::path::PathBuf {
    let root = state.runs_dir().parent().map_or_else(
        || state.runs_dir().to_path_buf(),
        std::path::Path::to_path_buf,
    );
    root.join("sim-staging")
}
