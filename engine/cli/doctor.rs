//! `runbook doctor`: connect like `run` (or `--sim`), observe once, print the per-node table,
//! the etcd and backup summaries, every finding with its next action, and one verdict line;
//! exit 0 when healthy, [`exit_code::DOCTOR_WARNINGS`] or [`exit_code::DOCTOR_CRITICAL`]
//! otherwise. Read-only: it lists and gets, never changes the cluster.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::args::{ClusterArgs, DataFormat};
use crate::cli::session::Target;
use crate::cli::{Error, print_json, print_out};
use crate::cluster::connection::Connection;
use crate::doctor::{self, Report, Severity};
use crate::exit_code;

async fn observe(conn: &Connection, backup: Option<&Path>) -> Result<Report, Error> {
    let effects = conn
        .open()
        .await
        .map_err(|e| Error::Usage(format!("cannot reach the cluster: {e}")))?;
    let observer = effects.observer();
    let view = observer.view().await;
    let extras = doctor::probe::all(observer, &view).await;
    Ok(doctor::diagnose(
        &view,
        &extras,
        backup,
        std::time::SystemTime::now(),
    ))
}

async fn on_sim(scenario: &str, speed: f64, backup: Option<&Path>) -> Result<Report, Error> {
    let scenario: crate::sim::Scenario = scenario.parse().map_err(|e| {
        Error::Usage(format!(
            "unknown scenario `{scenario}`: {e} (see `runbook sim scenarios`)"
        ))
    })?;
    let speed = crate::sim::Speed::new(speed)
        .ok_or_else(|| Error::Usage(format!("invalid speed `{speed}`")))?;
    let dir = std::env::temp_dir().join(format!("runbook-doctor-{}", std::process::id()));
    let handle = crate::sim::Simulator::start(crate::sim::SimConfig {
        scenario,
        speed,
        dir: dir.clone(),
    })
    .await
    .map_err(|e| Error::Usage(format!("cannot start the simulator: {e}")))?;
    let conn = Connection::for_simulator(&handle);
    let report = observe(&conn, backup).await;
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "ok",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
    }
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    }
}

fn text(r: &Report) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:<6} {:<6} {:<8} {:<9} {:<8}  {}\n",
        "NODE", "STAGE", "READY", "K8S", "ETCD", "TALOS", "STATUS", "NOT RUNNING"
    );
    for n in &r.nodes {
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<6} {:<6} {:<8} {:<9} {:<8}  {}",
            n.node,
            n.stage,
            yes_no(n.ready),
            yes_no(n.kubernetes_ready),
            n.etcd,
            n.talos_version.as_deref().unwrap_or("?"),
            sev(n.severity),
            n.services_not_running.join(", ")
        );
    }
    if let Some(e) = &r.etcd {
        let margin = match e.margin {
            m if m < 0 => "quorum LOST".to_string(),
            1 => "can lose 1 node".to_string(),
            m => format!("can lose {m} nodes"),
        };
        let _ = writeln!(
            out,
            "\netcd: {} voters, {} learners, {} healthy, quorum {}: {margin}; leader {}; lists {}; alarms {}; db {}",
            e.voters,
            e.learners,
            e.healthy,
            e.quorum,
            e.leader.as_deref().unwrap_or("none"),
            if e.consistent { "agree" } else { "DISAGREE" },
            if e.alarms.is_empty() {
                "none".to_string()
            } else {
                e.alarms.join(", ")
            },
            e.db_size
                .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_else(|| "?".into())
        );
    }
    if let Some(b) = &r.backup {
        let _ = writeln!(
            out,
            "backup: {}",
            match (&b.newest, b.age_s) {
                (Some(p), Some(a)) => format!("newest verified snapshot {p}, {} min old", a / 60),
                _ => format!("no verified snapshot in {}", b.dir),
            }
        );
    }
    out.push('\n');
    for f in &r.findings {
        let _ = writeln!(
            out,
            "{:<8} {:<16} {}\n         next: {}",
            sev(f.severity),
            f.scope,
            f.message,
            f.next
        );
    }
    let crit = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .count();
    let warn = r.findings.len() - crit;
    let _ = writeln!(
        out,
        "verdict: {} ({crit} critical, {warn} warning(s))",
        match r.verdict {
            Severity::Ok => "healthy",
            Severity::Warning => "warnings",
            Severity::Critical => "critical",
        }
    );
    out
}

/// Runs the doctor.
pub fn run(
    cluster: &ClusterArgs,
    backup_dir: Option<&Path>,
    output: DataFormat,
) -> Result<(), Error> {
    let target = match Target::for_run(cluster, true)? {
        Target::Local => {
            return Err(Error::Usage(
                "doctor needs a cluster: --talosconfig PATH, $TALOSCONFIG or ~/.talos/config, or --sim".into(),
            ));
        }
        t => t,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let report = runtime.block_on(async {
        match &target {
            Target::Cluster(conn) => observe(conn, backup_dir).await,
            Target::Sim {
                scenario, speed, ..
            } => on_sim(scenario, *speed, backup_dir).await,
            Target::Local => Err(Error::Usage("doctor needs a cluster".into())),
        }
    })?;
    if output == DataFormat::Json {
        print_json(&serde_json::to_value(&report).map_err(|e| Error::Output(e.into()))?)?;
    } else {
        print_out(&text(&report))?;
    }
    match report.verdict {
        Severity::Ok => Ok(()),
        Severity::Warning => Err(Error::Stopped(exit_code::DOCTOR_WARNINGS)),
        Severity::Critical => Err(Error::Stopped(exit_code::DOCTOR_CRITICAL)),
    }
}
