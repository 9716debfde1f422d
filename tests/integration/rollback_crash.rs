//! `runbook abort` after a crash at the worst instant: kill `runbook run` at every journal
//! record and inside every marker action, then abort. The abort must settle the interrupted
//! step first (the marker's probe), undo exactly the markers that were written (each once,
//! newest first) and nothing that was not. Then the abort itself is killed at every record
//! and repeated until the run finishes, with the same result: no rollback action twice.

use runbook::journal::{Journal, RunOutcome};

use crate::run_harness::{Env, fixture, text};

fn run_args(env: &Env) -> Vec<String> {
    vec![
        "run".into(),
        fixture("runbooks/crash.yaml").display().to_string(),
        "--param".into(),
        format!("dir={}", env.path().display()),
        "--param".into(),
        "explode=false".into(),
        "--output".into(),
        "plain".into(),
    ]
}

fn killed_run(env: &Env, hook: (&str, String)) {
    let args = run_args(env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.cmd(&args).env(hook.0, hook.1).output().unwrap();
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
}

/// What the marker file must hold after an abort, given the forward lines written before it.
fn expected_after_abort(forward: &[String]) -> Vec<String> {
    let mut lines = forward.to_vec();
    for line in forward.iter().rev() {
        lines.push(format!("undo {line}"));
    }
    lines
}

/// Aborts (again after each kill) until the journal says the run finished; returns the number
/// of abort sessions.
fn abort_to_end(env: &Env, kill_after: Option<usize>, context: &str) -> usize {
    let id = env.the_run().id().to_owned();
    for session in 1..=6 {
        let mut cmd = env.cmd(&["abort", &id, "--output", "plain"]);
        if session == 1
            && let Some(k) = kill_after
        {
            cmd.env("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string());
        }
        let out = cmd.output().unwrap();
        let all = text(&out);
        assert!(!all.contains("panicked"), "{context}: {all}");
        let state = env.state_of(&env.the_run());
        if state.finished.is_some() {
            assert_eq!(
                state.outcome(),
                Some(RunOutcome::Aborted),
                "{context}: {all}"
            );
            assert_eq!(out.status.code(), Some(8), "{context}: {all}");
            return session;
        }
        assert_eq!(
            out.status.code(),
            None,
            "{context}: abort did not finish: {all}"
        );
    }
    panic!("{context}: the abort did not finish after 6 sessions");
}

fn check(env: &Env, forward: &[String], context: &str) {
    assert_eq!(
        env.markers(),
        expected_after_abort(forward),
        "{context}: marker lines"
    );
    let state = env.state_of(&env.the_run());
    assert!(state.in_doubt_steps().is_empty(), "{context}");
}

/// The forward marker lines of a killed run, once its in-doubt marker (if any) is known: a
/// line written before the kill counts even though the run never journaled it.
fn forward_lines(env: &Env) -> Vec<String> {
    env.markers()
}

#[test]
fn abort_after_a_kill_anywhere_undoes_exactly_what_was_done() {
    // The uninterrupted run's length.
    let base = Env::new();
    let args = run_args(&base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(base.cmd(&args).output().unwrap().status.code(), Some(0));
    let records = Journal::read(&base.the_run())
        .unwrap()
        .contents
        .entries
        .len();
    let mut points = 0;
    // The last record is `run-finished`: nothing is left to abort after it.
    for k in 1..records {
        let env = Env::new();
        let context = format!("killed after record {k} of {records}");
        killed_run(&env, ("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string()));
        let forward = forward_lines(&env);
        abort_to_end(&env, None, &context);
        check(&env, &forward, &context);
        points += 1;
    }
    for n in 1..=2 {
        for point in ["before", "after"] {
            let env = Env::new();
            let context = format!("killed {point} writing marker {n}");
            killed_run(
                &env,
                ("RUNBOOK_TEST_KILL_IN_MARKER", format!("{n}:{point}")),
            );
            let forward = forward_lines(&env);
            assert_eq!(
                forward.len(),
                n - 1 + usize::from(point == "after"),
                "{context}"
            );
            abort_to_end(&env, None, &context);
            check(&env, &forward, &context);
            points += 1;
        }
    }
    assert!(points > records, "{points}");
}

#[test]
fn an_abort_killed_at_every_record_still_undoes_each_marker_once() {
    // The run is killed inside the second marker, after its line is written: both markers
    // are in the world, the second one in doubt.
    let probe = Env::new();
    killed_run(&probe, ("RUNBOOK_TEST_KILL_IN_MARKER", "2:after".into()));
    let before = Journal::read(&probe.the_run())
        .unwrap()
        .contents
        .entries
        .len();
    abort_to_end(&probe, None, "uninterrupted abort");
    let forward = vec!["first".to_owned(), "second".to_owned()];
    check(&probe, &forward, "uninterrupted abort");
    let after = Journal::read(&probe.the_run())
        .unwrap()
        .contents
        .entries
        .len();
    assert!(after > before + 5, "{before} -> {after}");
    // Records the abort session writes: kill it after each one, abort again until finished.
    for k in 1..(after - before) {
        let env = Env::new();
        let context = format!("abort killed after its record {k}");
        killed_run(&env, ("RUNBOOK_TEST_KILL_IN_MARKER", "2:after".into()));
        let sessions = abort_to_end(&env, Some(k), &context);
        assert!(sessions >= 2, "{context}: the first abort was not killed");
        check(&env, &forward, &context);
    }
}
