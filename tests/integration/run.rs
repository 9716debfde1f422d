//! `runbook run`, `resume`, `approve`, `abort`, `runs`, `status` end to end, as a child process.

use runbook::journal::{RunLock, RunOutcome};

use crate::run_harness::{Env, fixture, text};

fn fx(name: &str) -> String {
    fixture(&format!("runbooks/{name}")).display().to_string()
}

#[test]
fn run_rolls_back_newest_first_and_reports() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env.run(&["run", &fx("crash.yaml"), "-p", &dir, "--output", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        env.markers(),
        ["first", "second", "undo second", "undo first"]
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED and rolled back"), "{err}");
    assert!(
        err.contains("rolled back: undo_second@second, undo_first@first"),
        "{err}"
    );
    assert!(err.contains("next: `boom` failed: boom"), "{err}");
    let run = env.the_run();
    let status = env.run(&["status", run.id()]);
    let s = String::from_utf8_lossy(&status.stdout);
    assert!(s.contains("flaky: succeeded (3 attempt(s)"), "{s}");
    assert!(
        s.contains("undo_first@first (undoes `first`): succeeded"),
        "{s}"
    );
    let runs = env.run(&["runs"]);
    assert!(
        String::from_utf8_lossy(&runs.stdout).contains("finished: rolledback"),
        "{}",
        text(&runs)
    );
    let again = env.run(&["resume", run.id()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("already finished"),
        "{}",
        text(&again)
    );
}

#[test]
fn run_json_output_is_one_event_per_line() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env.run(&[
        "run",
        &fx("crash.yaml"),
        "-p",
        &dir,
        "-p",
        "explode=false",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "session");
    assert_eq!(events.last().unwrap()["event"], "stopped");
    assert_eq!(events.last().unwrap()["report"]["stop"], "succeeded");
    let skipped = events
        .iter()
        .find(|e| e["record"]["type"] == "step-skipped")
        .unwrap();
    assert_eq!(skipped["record"]["step"], "boom");
}

#[test]
fn dry_run_writes_nothing_and_says_what_would_happen() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env.run(&[
        "run",
        &fx("crash.yaml"),
        "-p",
        &dir,
        "--dry-run",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would run `marker`"), "{err}");
    assert!(
        err.contains("when `params.explode`: true, would run"),
        "{err}"
    );
    assert!(!env.state().exists(), "a dry run creates no run directory");
    assert!(env.markers().is_empty());
}

#[test]
fn approvals_pause_with_exit_5_and_approve_then_resume_continues() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env.run(&[
        "run",
        &fx("approval.yaml"),
        "-p",
        &dir,
        "--yes",
        "--output",
        "plain",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "--yes never passes a gate without allow_yes: {}",
        text(&out)
    );
    let run = env.the_run();
    assert!(
        text(&out).contains(&format!("runbook approve {} person", run.id())),
        "{}",
        text(&out)
    );
    assert_eq!(env.markers(), ["before"]);
    let wrong = env.run(&["approve", run.id(), "anyone"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("waiting for approval: person"),
        "{}",
        text(&wrong)
    );
    let ok = env.run(&["approve", run.id(), "person"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = env.run(&["resume", run.id(), "--output", "plain"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "paused again at the second gate: {}",
        text(&out)
    );
    assert_eq!(env.markers(), ["before", "person"]);
    let out = env.run(&["resume", "--yes", "--output", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.markers(), ["before", "person", "anyone"]);
    let state = env.state_of(&run);
    assert_eq!(state.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(state.approvals.len(), 2);
}

#[test]
fn abort_rolls_back_a_paused_run() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env
        .cmd(&["run", &fx("approval.yaml"), "-p", &dir, "--output", "plain"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let run = env.the_run();
    let out = env.run(&["abort", run.id(), "--output", "plain"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let state = env.state_of(&run);
    assert_eq!(state.outcome(), Some(RunOutcome::Aborted));
    assert!(state.abort_requested.is_some());
}

#[test]
fn a_second_driver_is_refused_with_the_holder_named() {
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let out = env.run(&["run", &fx("approval.yaml"), "-p", &dir, "--output", "plain"]);
    assert_eq!(out.status.code(), Some(5));
    let run = env.the_run();
    // This test process drives the run (holds its lock), as a first `resume` would.
    let held = RunLock::acquire(run.path()).unwrap();
    for args in [
        vec!["resume", run.id()],
        vec!["approve", run.id(), "person"],
        vec!["abort", run.id()],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("is locked by pid {}", std::process::id())),
            "{}",
            text(&out)
        );
    }
    drop(held);
    let out = env.run(&["approve", run.id(), "person"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn secrets_never_reach_the_run_directory_or_the_output() {
    const SECRET: &str = "hunter2-etcd-key-7f3a";
    let env = Env::new();
    let dir = format!("dir={}", env.path().display());
    let token = format!("token={SECRET}");
    let mut output = String::new();
    let out = env.run(&[
        "run",
        &fx("secret.yaml"),
        "-p",
        &token,
        "-p",
        &dir,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    output.push_str(&text(&out));
    assert!(output.contains("using token <redacted>"), "{output}");
    let run = env.the_run();
    let out = env.run(&["approve", run.id(), "gate"]);
    output.push_str(&text(&out));
    let out = env.run(&["resume", run.id(), "--output", "plain"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the secret must be given again: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("parameter `token` is secret"),
        "{}",
        text(&out)
    );
    output.push_str(&text(&out));
    let out = env.run(&["resume", run.id(), "-p", &token, "--output", "plain", "-vv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    output.push_str(&text(&out));
    for args in [vec!["status", run.id()], vec!["runs"]] {
        output.push_str(&text(&env.run(&args)));
    }
    // The action used the live value.
    assert_eq!(env.markers(), [format!("len {}", SECRET.len())]);
    assert!(!output.contains(SECRET), "secret in the output: {output}");
    let mut files = 0;
    for entry in std::fs::read_dir(run.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET));
        files += 1;
    }
    assert!(
        files >= 4,
        "journal, lock, params.json and the source copy were checked"
    );
}

#[test]
fn a_runbook_that_needs_a_cluster_is_refused_without_one_and_leaves_nothing() {
    let env = Env::new();
    let out = env
        .cmd(&["run", &fx("cluster.yaml"), "--output", "plain"])
        .env("HOME", env.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs a cluster: give --talosconfig PATH (or set $TALOSCONFIG, or create ~/.talos/config with talosctl), or rehearse it with --sim"),
        "{}",
        text(&out)
    );
    assert!(
        !env.state().join("runs").exists()
            || std::fs::read_dir(env.state().join("runs")).unwrap().count() == 0,
        "a run that could never start left a run directory"
    );
}
