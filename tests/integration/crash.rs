//! The acceptance test of the durable executor: kill `runbook run` with SIGKILL at every
//! journal record boundary and inside every marker action (before and after its line is
//! written), then `runbook resume` until the run finishes, and check that the final state is
//! the same as an uninterrupted run's and that every marker line appears exactly once.
//! Also: truncate the journal at every byte of its last record and resume.

use std::process::Output;

use runbook::journal::{Journal, RunOutcome};

use crate::run_harness::{Env, copy_dir, fixture, text};

fn run_args(env: &Env, explode: bool) -> Vec<String> {
    vec![
        "run".into(),
        fixture("runbooks/crash.yaml").display().to_string(),
        "--param".into(),
        format!("dir={}", env.path().display()),
        "--param".into(),
        format!("explode={explode}"),
        "--output".into(),
        "plain".into(),
    ]
}

fn run_with(env: &Env, explode: bool, hook: Option<(&str, String)>) -> Output {
    let args = run_args(env, explode);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.cmd(&args);
    if let Some((k, v)) = hook {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn expected_markers(explode: bool) -> Vec<String> {
    let lines: &[&str] = if explode {
        &["first", "second", "undo second", "undo first"]
    } else {
        &["first", "second"]
    };
    lines.iter().map(|s| (*s).to_owned()).collect()
}

fn expected_outcome(explode: bool) -> RunOutcome {
    if explode {
        RunOutcome::RolledBack
    } else {
        RunOutcome::Succeeded
    }
}

/// Resumes until the journal says the run finished.
fn resume_to_end(env: &Env, context: &str) {
    for _ in 0..6 {
        let run = env.the_run();
        if env.state_of(&run).finished.is_some() {
            return;
        }
        let out = env.run(&["resume", "--output", "plain"]);
        let all = text(&out);
        assert!(!all.contains("panicked"), "{context}: {all}");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{context}: resume did not finish the run: {all}"
        );
    }
    panic!("{context}: the run did not finish after 6 resumes");
}

fn check_final(env: &Env, explode: bool, context: &str) {
    check_final_in(env, env, explode, context);
}

/// `markers` holds the marker file (the `dir` param of the run in `env`).
fn check_final_in(env: &Env, markers: &Env, explode: bool, context: &str) {
    let run = env.the_run();
    let state = env.state_of(&run);
    assert_eq!(
        state.outcome(),
        Some(expected_outcome(explode)),
        "{context}"
    );
    assert_eq!(
        markers.markers(),
        expected_markers(explode),
        "{context}: marker lines"
    );
    assert!(state.in_doubt_steps().is_empty(), "{context}");
}

/// Kills at every record and inside every marker; returns the number of kill points.
fn kill_everywhere(explode: bool) -> usize {
    let base = Env::new();
    let out = run_with(&base, explode, None);
    assert_eq!(
        out.status.code(),
        Some(if explode { 1 } else { 0 }),
        "{}",
        text(&out)
    );
    check_final(&base, explode, "uninterrupted");
    let records = Journal::read(&base.the_run())
        .unwrap()
        .contents
        .entries
        .len();
    let markers = expected_markers(explode).len();
    let mut points = 0;
    for k in 1..=records {
        let env = Env::new();
        let context = format!("explode={explode}, killed after record {k} of {records}");
        let out = run_with(
            &env,
            explode,
            Some(("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string())),
        );
        assert_eq!(
            out.status.code(),
            None,
            "{context}: not killed: {}",
            text(&out)
        );
        let committed = Journal::read(&env.the_run())
            .unwrap()
            .contents
            .entries
            .len();
        // A group commit (an action's outcome with its checkpoint) counts each of its
        // records: a kill "after" the first dies after the fsync of both.
        assert!(
            committed == k || committed == k + 1,
            "{context}: the killed run must have committed exactly the fsync holding record k, not {committed}"
        );
        resume_to_end(&env, &context);
        check_final(&env, explode, &context);
        points += 1;
    }
    for n in 1..=markers {
        for point in ["before", "after"] {
            let env = Env::new();
            let context = format!("explode={explode}, killed {point} writing marker {n}");
            let out = run_with(
                &env,
                explode,
                Some(("RUNBOOK_TEST_KILL_IN_MARKER", format!("{n}:{point}"))),
            );
            assert_eq!(
                out.status.code(),
                None,
                "{context}: not killed: {}",
                text(&out)
            );
            resume_to_end(&env, &context);
            check_final(&env, explode, &context);
            points += 1;
        }
    }
    println!(
        "crash test (explode={explode}): {points} kill points ({records} record boundaries + {} in marker actions)",
        2 * markers
    );
    points
}

#[test]
fn crash_at_every_record_and_inside_every_marker_failing_run() {
    assert!(kill_everywhere(true) > 30);
}

#[test]
fn crash_at_every_record_and_inside_every_marker_succeeding_run() {
    assert!(kill_everywhere(false) > 20);
}

/// Truncating the journal anywhere inside its last record is a torn tail: resume truncates it,
/// says so, keeps every earlier record and finishes the run with each marker written once.
#[test]
fn crash_torn_tail_at_every_byte_of_the_last_record() {
    let base = Env::new();
    // Killed right after `second`'s intent: the last record is that `step-started`.
    let probe = Env::new();
    let full = run_with(&probe, true, None);
    assert_eq!(full.status.code(), Some(1));
    let entries = Journal::read(&probe.the_run()).unwrap().contents.entries;
    let k = entries
        .iter()
        .position(|e| {
            matches!(&e.record, runbook::journal::Record::StepStarted { step, .. } if step == "second")
        })
        .unwrap()
        + 1;
    let out = run_with(
        &base,
        true,
        Some(("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string())),
    );
    assert_eq!(out.status.code(), None, "{}", text(&out));
    let run = base.the_run();
    let journal = std::fs::read(run.journal_path()).unwrap();
    let last = Journal::read(&run).unwrap().contents.entries[k - 1].offset as usize;
    // The run's `dir` param points at `base`, so every copy writes its markers there.
    let marker_file = base.path().join("markers");
    let markers = std::fs::read(&marker_file).unwrap();
    let mut cases = 0;
    for cut in last..journal.len() {
        let env = Env::new();
        copy_dir(&base.state(), &env.state());
        std::fs::write(&marker_file, &markers).unwrap();
        let run = env.the_run();
        std::fs::write(run.journal_path(), &journal[..cut]).unwrap();
        let out = env.run(&["resume", "--output", "plain"]);
        let all = text(&out);
        assert!(!all.contains("panicked"), "cut at {cut}: {all}");
        assert_eq!(out.status.code(), Some(1), "cut at {cut}: {all}");
        if cut > last {
            assert!(
                all.contains("torn record"),
                "cut at {cut}: the torn tail is reported: {all}"
            );
        }
        let after = std::fs::read(run.journal_path()).unwrap();
        assert_eq!(
            &after[..last],
            &journal[..last],
            "cut at {cut}: an earlier record changed"
        );
        check_final_in(&env, &base, true, &format!("cut at {cut}"));
        cases += 1;
    }
    println!("torn tail: {cases} truncation points of the last record");
    assert!(cases > 50);
}

/// Kills the first run half-way, then kills `runbook resume` itself after every record it
/// appends, then resumes to the end: a resume is as interruptible as a run.
#[test]
fn crash_during_resume_at_every_record() {
    let explode = true;
    let first_kill = 6;
    let kill = |k: usize| Some(("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string()));
    // How many records a resume after the first kill appends.
    let probe = Env::new();
    let out = run_with(&probe, explode, kill(first_kill));
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    resume_to_end(&probe, "probe");
    check_final(&probe, explode, "probe");
    let total = Journal::read(&probe.the_run())
        .unwrap()
        .contents
        .entries
        .len();
    let resumed = total - first_kill;
    let mut points = 0;
    for j in 1..resumed {
        let env = Env::new();
        let context =
            format!("run killed after record {first_kill}, resume killed after its record {j}");
        let out = run_with(&env, explode, kill(first_kill));
        assert_eq!(
            out.status.code(),
            None,
            "{context}: run not killed: {}",
            text(&out)
        );
        let out = env
            .cmd(&["resume", "--output", "plain"])
            .env("RUNBOOK_TEST_KILL_AFTER_RECORD", j.to_string())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "{context}: resume not killed: {}",
            text(&out)
        );
        resume_to_end(&env, &context);
        check_final(&env, explode, &context);
        points += 1;
    }
    println!("crash test during resume: {points} kill points");
    assert!(points > 10, "{points}");
}
