//! node-replace's rollback against the simulator, driven through the `runbook` binary: the
//! replacement is wiped when its join fails, and never when it has become a healthy voter
//! (a later step fails, or the run is aborted). Each test runs the built-in
//! `runbooks/node-replace.yaml` as written, except for one edit it names (a short join wait,
//! a failing or gated step appended), so the rollback and guard under test are the real ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::sim::node::Stage;
use runbook::sim::{Scenario, SimHandle};

const NODE_REPLACE: &str = include_str!("../../runbooks/node-replace.yaml");
const SPARE: &str = "192.168.2.50";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// node-replace with `edit` applied to its text, written next to the test's state.
fn runbook_file(dir: &Path, edit: impl FnOnce(&str) -> String) -> PathBuf {
    let edited = edit(NODE_REPLACE);
    assert_ne!(edited, NODE_REPLACE, "the edit must change something");
    let path = dir.join("node-replace.yaml");
    std::fs::write(&path, edited).unwrap();
    path
}

/// Appends `step` to the main steps (before `rollbacks:`).
fn append_step(text: &str, step: &str) -> String {
    text.replacen("\nrollbacks:\n", &format!("\n{step}\n\nrollbacks:\n"), 1)
}

/// Runs `runbook ARGS` against the simulator's files, with node-replace's parameters.
fn runbook(dir: &Path, args: &[&str]) -> Output {
    let sim = dir.join("sim");
    let s = |p: &str| sim.join(p).display().to_string();
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .args(["--output", "plain"])
        .args([
            "--talosconfig",
            &s("talosconfig"),
            "--kubeconfig",
            &s("kubeconfig"),
            "--node-endpoints",
            &s("endpoints.json"),
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("NO_COLOR", "1")
        .env_remove("TALOSCONFIG")
        .output()
        .unwrap()
}

fn run_args(file: &Path, config: &Path, backups: &Path) -> Vec<String> {
    [
        "run",
        file.to_str().unwrap(),
        "--yes",
        "--param",
        "node=192.168.2.49",
        "--param",
        "member=mac-49",
        "--param",
        "survivor=192.168.2.20",
        "--param",
        "replacement=192.168.2.50",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--param".to_string(),
        format!("config={}", config.display()),
        "--param".to_string(),
        format!("backup_dir={}", backups.display()),
    ])
    .collect()
}

fn resets_of(handle: &SimHandle, node: &str) -> usize {
    handle.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "Reset" && r.node == node)
            .count()
    })
}

fn voters(handle: &SimHandle) -> Vec<String> {
    handle.cluster().with(|c, now| {
        c.etcd_member_list("192.168.2.20", false, now)
            .unwrap_or_default()
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.hostname.clone())
            .collect()
    })
}

fn only_run_id(dir: &Path) -> String {
    let runs: Vec<_> = std::fs::read_dir(dir.join("state/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// The replacement gets a config it installs but that never joins etcd (a worker's), so
/// `apply`'s join wait times out after the config was applied: `reset_replacement` runs (the
/// replacement is no member, its guard passes fresh) and wipes it back to maintenance.
#[test]
fn node_replace_wipes_a_replacement_whose_join_wait_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) =
        crate::run_harness::simulator(Scenario::NodeDeadWithSpare, 200.0, dir.path());
    let prepared = dir.path().join("sim/configs/192.168.2.50.yaml");
    let worker = std::fs::read_to_string(&prepared).unwrap().replacen(
        "type: controlplane",
        "type: worker",
        1,
    );
    let config = dir.path().join("worker-50.yaml");
    std::fs::write(&config, worker).unwrap();
    // The one edit: a join wait short enough for a test (the join never comes anyway).
    let file = runbook_file(dir.path(), |t| {
        t.replacen(
            "wait: { condition: etcd.member, timeout: 40m }",
            "wait: { condition: etcd.member, timeout: 5s }",
            1,
        )
    });
    let args = run_args(&file, &config, &dir.path().join("snaps"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runbook(dir.path(), &args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAILED and rolled back"), "{t}");
    assert!(t.contains("undone   reset_replacement@apply"), "{t}");
    assert_eq!(resets_of(&handle, SPARE), 1, "{t}");
    let (maintenance, voters_now) = (
        handle
            .cluster()
            .with(|c, _| c.node(SPARE).map(|n| n.stage())),
        voters(&handle),
    );
    assert_eq!(maintenance, Some(Stage::Maintenance), "{t}");
    assert!(!voters_now.iter().any(|v| v == "mac-50"), "{voters_now:?}");
    rt.block_on(handle.shutdown());
}

/// The replacement joined and is a healthy voter; then a later step fails. The rollback path
/// reaches `reset_replacement`, whose guard is checked fresh and refuses: no Reset reaches the
/// replacement, the refusal is journaled, and the report says what was not undone.
#[test]
fn node_replace_never_wipes_a_replacement_that_became_a_voter_when_a_later_step_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) =
        crate::run_harness::simulator(Scenario::NodeDeadWithSpare, 200.0, dir.path());
    let config = dir.path().join("sim/configs/192.168.2.50.yaml");
    let file = runbook_file(dir.path(), |t| {
        append_step(
            t,
            "  - id: later\n    needs: [backup_after]\n    action: fail\n    with: { attempts: 100, message: \"a later step failed\" }",
        )
    });
    let args = run_args(&file, &config, &dir.path().join("snaps"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runbook(dir.path(), &args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("guard `talos.not-member` REFUSED: `192.168.2.50` is an etcd member"),
        "{t}"
    );
    assert!(
        t.contains("not undone: apply: rollback `reset_replacement@apply` refused"),
        "{t}"
    );
    assert_eq!(resets_of(&handle, SPARE), 0, "{t}");
    let status = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["status", &only_run_id(dir.path())])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let st = text(&status);
    assert!(
        st.contains("not undone: apply: rollback `reset_replacement@apply` refused"),
        "{st}"
    );
    assert!(
        st.contains("reset_replacement@apply (undoes `apply`): failed"),
        "{st}"
    );
    let v = voters(&handle);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v.iter().any(|n| n == "mac-50"), "{v:?}");
    rt.block_on(handle.shutdown());
}

/// The same healthy voter, but the run pauses at a gate after it and the operator aborts:
/// `runbook abort` runs the rollback path, the guard refuses, nothing is wiped, and the run
/// finishes aborted (exit 8) with the effects it could not undo listed.
#[test]
fn node_replace_abort_never_wipes_a_replacement_that_became_a_voter() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) =
        crate::run_harness::simulator(Scenario::NodeDeadWithSpare, 200.0, dir.path());
    let config = dir.path().join("sim/configs/192.168.2.50.yaml");
    let file = runbook_file(dir.path(), |t| {
        append_step(
            t,
            "  - id: gate\n    needs: [backup_after]\n    approval: { prompt: \"keep the new member?\" }",
        )
    });
    let args = run_args(&file, &config, &dir.path().join("snaps"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runbook(dir.path(), &args);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let id = only_run_id(dir.path());
    let out = runbook(dir.path(), &["abort", &id]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(8), "{t}");
    assert!(
        t.contains("not undone: apply: rollback `reset_replacement@apply` refused"),
        "{t}"
    );
    assert_eq!(resets_of(&handle, SPARE), 0, "{t}");
    assert!(voters(&handle).iter().any(|n| n == "mac-50"));
    rt.block_on(handle.shutdown());
}

/// An abort of a run killed inside a step: after the replacement became a voter, the run was
/// killed right after the intent of a (gated, approved) reboot of it. `runbook abort` settles
/// that step first with the reboot's probe against the simulator (the boot id has not
/// changed: it did not happen, so there is nothing to undo and no reboot is sent), then rolls
/// back: `reset_replacement`'s guard refuses, no Reset reaches the voter.
#[test]
fn node_replace_abort_settles_an_interrupted_step_before_rolling_back() {
    use runbook::journal::{Fields, Journal, Record, StateDir, time};

    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) =
        crate::run_harness::simulator(Scenario::NodeDeadWithSpare, 200.0, dir.path());
    let config = dir.path().join("sim/configs/192.168.2.50.yaml");
    let file = runbook_file(dir.path(), |t| {
        append_step(
            t,
            r#"  - id: reboot_spare
    needs: [backup_after]
    approval: { prompt: "reboot the new member?" }
    action: talos.reboot
    with: { node: "${{ params.replacement }}" }
    guard:
      - name: etcd.safe-down
        with: { node: "${{ params.replacement }}" }
    wait:
      condition: talos.rebooted
      with: { node: "${{ params.replacement }}" }
      timeout: 10m"#,
        )
    });
    let args = run_args(&file, &config, &dir.path().join("snaps"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runbook(dir.path(), &args);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));

    // The crash: approved, intent durable (with the boot id it recorded), nothing after it.
    let run = StateDir::new(dir.path().join("state")).list_runs().unwrap()[0]
        .run
        .clone();
    let boot_id = handle
        .cluster()
        .with(|c, _| c.node(SPARE).map(|n| n.boot_id().to_owned()))
        .unwrap();
    let mut journal = Journal::open(&run).unwrap().journal;
    let session = journal.session().to_owned();
    journal
        .append(Record::Approved {
            step: "reboot_spare".into(),
            by: "tester".into(),
            at: time::now_rfc3339(),
        })
        .unwrap();
    let mut pre_state = Fields::new();
    pre_state.insert("boot_id".into(), boot_id.into());
    journal
        .append(Record::StepStarted {
            step: "reboot_spare".into(),
            attempt: 1,
            session,
            pre_state,
        })
        .unwrap();
    drop(journal);
    handle.cluster().with(|c, _| c.clear_call_log());

    let out = runbook(dir.path(), &["abort", run.id()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(8), "{t}");
    let recs: Vec<Record> = Journal::read(&run)
        .unwrap()
        .contents
        .entries
        .into_iter()
        .map(|e| e.record)
        .collect();
    assert!(
        recs.iter().any(|r| matches!(r,
            Record::InDoubt { step, resolution: runbook::journal::InDoubtResolution::VerifiedNotDone, .. }
                if step == "reboot_spare")),
        "{t}"
    );
    assert!(
        t.contains("not undone: apply: rollback `reset_replacement@apply` refused"),
        "{t}"
    );
    assert!(!t.contains("not undone: reboot_spare"), "{t}");
    let (resets, reboots) = handle.cluster().with(|c, _| {
        let log = c.call_log();
        (
            log.iter()
                .filter(|r| r.method == "Reset" && r.node == SPARE)
                .count(),
            log.iter()
                .filter(|r| r.method == "Reboot" && r.node == SPARE)
                .count(),
        )
    });
    assert_eq!((resets, reboots), (0, 0), "{t}");
    assert!(voters(&handle).iter().any(|n| n == "mac-50"));
    rt.block_on(handle.shutdown());
}
