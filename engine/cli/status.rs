//! `runbook status RUN_ID`: each step's state, attempts, timing and outcome, with the guard
//! verdicts and wait figures it saw (read-only, no lock). `--output json` prints the same
//! facts as one document, built in the same pass so the two renderings cannot disagree.

use std::fmt::Write as _;

use crate::cli::args::DataFormat;
use crate::cli::{Error, print_json, print_out, session};
use crate::journal::{Fields, Journal, RunOutcome, StepState, time};

fn figures(f: &Fields) -> String {
    let parts: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(" "))
    }
}

/// Shows a run.
pub fn run(
    run_id: &str,
    state_dir: Option<&std::path::Path>,
    output: DataFormat,
) -> Result<(), Error> {
    let state = session::state_dir(state_dir)?;
    let run = state.open_run(run_id).map_err(Error::Journal)?;
    let snapshot = Journal::read(&run).map_err(Error::Journal)?;
    let s = &snapshot.state;
    let mut out = String::new();
    let mut doc = serde_json::Map::new();
    doc.insert("run".into(), run.id().into());
    if let Some(h) = &s.header {
        doc.insert("runbook".into(), h.runbook.clone().into());
        doc.insert("started_at".into(), h.started_at.clone().into());
        doc.insert("params".into(), serde_json::Value::Object(h.params.clone()));
        doc.insert("plan_hash".into(), h.plan_hash.clone().into());
        let _ = writeln!(
            out,
            "run {} (`{}`), started {}",
            h.run_id, h.runbook, h.started_at
        );
        let _ = writeln!(
            out,
            "  params: {}",
            serde_json::Value::Object(h.params.clone())
        );
        let _ = writeln!(out, "  plan: {}", h.plan_hash);
    }
    let (status, status_json) = match (&s.finished, &s.paused) {
        (Some((o, summary)), _) => (
            format!("finished: {o:?} ({summary})"),
            serde_json::json!({"kind": "finished", "outcome": format!("{o:?}").to_lowercase(), "summary": summary}),
        ),
        (None, Some(reason)) => (
            format!("paused: {reason}"),
            serde_json::json!({"kind": "paused", "reason": reason}),
        ),
        (None, None) => (
            "unfinished (interrupted, or being driven)".to_owned(),
            serde_json::json!({"kind": "unfinished"}),
        ),
    };
    doc.insert("status".into(), status_json);
    doc.insert("sessions".into(), s.sessions.len().into());
    doc.insert(
        "torn_tail".into(),
        snapshot
            .contents
            .torn
            .as_ref()
            .map(|t| t.to_string())
            .into(),
    );
    let mut steps_json = Vec::new();
    let _ = writeln!(out, "  status: {status}");
    if let Some(o) = &s.preflight_override {
        let _ = writeln!(
            out,
            "  preflight override: granted by {} on {}: {}",
            o.by, o.host, o.reason
        );
        for line in crate::exec::summary::overridden_lines(s) {
            let _ = writeln!(out, "  preflight overridden: {line}");
        }
        doc.insert(
            "preflight_override".into(),
            serde_json::json!({
                "reason": o.reason,
                "by": o.by,
                "host": o.host,
                "overridden": s.preflight_overridden.iter().map(|(step, findings)| {
                    serde_json::json!({"step": step, "findings": findings})
                }).collect::<Vec<_>>(),
            }),
        );
    }
    let _ = writeln!(out, "  sessions: {}", s.sessions.len());
    if let Some(t) = &snapshot.contents.torn {
        let _ = writeln!(out, "  journal: {t}");
    }
    for id in &s.step_order {
        let Some(rec) = s.step(id) else { continue };
        let timing = match (rec.first_started_ms, rec.ended_ms) {
            (Some(a), Some(b)) => format!(", {} ms", b.saturating_sub(a)),
            (Some(a), None) => format!(", started {}", time::rfc3339(a)),
            _ => String::new(),
        };
        let outcome = match &rec.state {
            StepState::Failed { error } | StepState::RollbackFailed { error } => {
                format!(": {error}")
            }
            StepState::Skipped { reason } => format!(": {reason}"),
            StepState::Refused { guard, reason } => format!(": guard `{guard}`: {reason}"),
            StepState::AwaitingApproval { prompt } => format!(": {prompt}"),
            StepState::Succeeded { outputs } => figures(outputs),
            StepState::RolledBack => rec
                .failure
                .as_ref()
                .map(|e| format!(": failed ({e}), then undone"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let of = rec
            .rollback_of
            .as_ref()
            .map(|f| format!(" (undoes `{f}`)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{id}{of}: {} ({} attempt(s){timing}){outcome}",
            rec.state.name(),
            rec.attempts
        );
        steps_json.push(serde_json::json!({
            "id": id,
            "rollback_of": rec.rollback_of,
            "state": rec.state.name(),
            "attempts": rec.attempts,
            "started_ms": rec.first_started_ms,
            "ended_ms": rec.ended_ms,
            "detail": outcome.trim_start_matches(": ").trim(),
            "guards": rec.guards.iter().map(|g| serde_json::json!({
                "guard": g.guard, "passed": g.passed, "reason": g.reason, "figures": g.figures,
            })).collect::<Vec<_>>(),
            "waits": rec.waits.iter().map(|w| serde_json::json!({
                "condition": w.condition, "attempt": w.attempt, "satisfied": w.satisfied,
                "elapsed_ms": w.elapsed_ms, "figures": w.figures,
            })).collect::<Vec<_>>(),
        }));
        for g in &rec.guards {
            let verdict = if g.passed { "passed" } else { "refused" };
            let reason = g
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  guard `{}` {verdict}{reason}{}",
                g.guard,
                figures(&g.figures)
            );
        }
        for w in &rec.waits {
            let verdict = if w.satisfied { "held" } else { "timed out" };
            let _ = writeln!(
                out,
                "  wait `{}` (attempt {}) {verdict} after {} ms{}",
                w.condition,
                w.attempt,
                w.elapsed_ms,
                figures(&w.figures)
            );
        }
    }
    // Steps the journal never mentions: from the stored runbook copy (secret values are not
    // needed to know the steps: they are never folded into the plan).
    let placeholders: Vec<(String, String)> = s
        .header
        .iter()
        .flat_map(|h| h.params.iter())
        .filter(|(_, v)| v.as_str() == Some(crate::secret::REDACTED))
        .map(|(k, _)| (k.clone(), crate::secret::REDACTED.to_owned()))
        .collect();
    let mut not_started: Vec<String> = Vec::new();
    let mut not_undone: Vec<serde_json::Value> = Vec::new();
    if let Ok(plan) = session::load_plan(&run, &placeholders) {
        let pending: Vec<&str> = plan
            .steps()
            .map(|st| st.id.as_str())
            .filter(|id| !s.step_order.iter().any(|o| o == id))
            .collect();
        not_started = pending.iter().map(|p| p.to_string()).collect();
        if !pending.is_empty() {
            let _ = writeln!(
                out,
                "not started ({}): {}",
                pending.len(),
                pending.join(", ")
            );
        }
        let rolling_back = s.abort_requested.is_some()
            || matches!(
                s.outcome(),
                Some(RunOutcome::Failed | RunOutcome::RolledBack | RunOutcome::Aborted)
            );
        if rolling_back {
            for n in crate::exec::summary::not_undone_all(&plan, s) {
                let _ = writeln!(out, "not undone: {}: {}", n.step, n.error);
                not_undone.push(serde_json::json!({"step": n.step, "error": n.error}));
            }
        }
    }
    if output == DataFormat::Json {
        doc.insert("steps".into(), steps_json.into());
        doc.insert("not_started".into(), not_started.into());
        doc.insert("not_undone".into(), not_undone.into());
        return print_json(&serde_json::Value::Object(doc));
    }
    print_out(&out)
}
