//! What both benchmarks build the same way: a run header and a synthetic journal of
//! started/completed/succeeded triples (the shape a long effect-free run leaves), so resume is
//! measured on one kind of journal in both.

use std::path::Path;

use runbook::journal::{
    FORMAT_VERSION, Fields, Journal, Record, RunDir, RunHeader, SourceKind, StateDir,
};

/// A run header for a benchmark run.
pub(crate) fn header(plan_hash: &str, run: &RunDir) -> RunHeader {
    RunHeader {
        format_version: FORMAT_VERSION,
        run_id: run.id().to_owned(),
        runbook: "bench".into(),
        source_file: "bench.yaml".into(),
        plan_hash: plan_hash.to_owned(),
        params: Fields::new(),
        host: "bench".into(),
        pid: std::process::id(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

/// A run under `dir/resume` whose journal holds at most `records` records, appended in batches
/// of `batch`.
pub(crate) fn synthetic_journal(dir: &Path, records: usize, batch_len: usize) -> RunDir {
    let run = StateDir::new(dir.join("resume"))
        .create_run(SourceKind::Yaml, "", &Fields::new())
        .unwrap();
    let mut journal = Journal::create(&run, header("sha256:bench", &run)).unwrap();
    let session = journal.session().to_owned();
    let mut batch = Vec::new();
    let mut i = 0;
    while journal.records().len() + batch.len() + 3 <= records {
        let step = format!("s{i:06}");
        batch.push(Record::StepStarted {
            step: step.clone(),
            attempt: 1,
            session: session.clone(),
            pre_state: Fields::new(),
        });
        batch.push(Record::ActionCompleted {
            step: step.clone(),
            attempt: 1,
            outputs: Fields::new(),
        });
        batch.push(Record::StepSucceeded {
            step,
            outputs: Fields::new(),
        });
        i += 1;
        if batch.len() >= batch_len {
            journal.append_batch(std::mem::take(&mut batch)).unwrap();
        }
    }
    journal.append_batch(batch).unwrap();
    run
}
