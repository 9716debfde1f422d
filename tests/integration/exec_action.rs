//! The `exec` action end to end through the `runbook` binary: a later step uses its stdout, a
//! secret passed in `env` never reaches the run directory or the output, an `exec` without a
//! declared idempotency is `confirm` (an interrupted one asks a person), and the author's
//! `verify:` command settles an interrupted one.

use crate::run_harness::{Env, fixture, text};

const SECRET: &str = "s3cr3t-t0ken-value";

fn run(env: &Env, kill_after: Option<usize>) -> std::process::Output {
    let dir = env.path().display().to_string();
    let mut c = env.cmd(&[
        "run",
        fixture("runbooks/exec.yaml").to_str().unwrap(),
        "--param",
        &format!("dir={dir}"),
        "--param",
        &format!("token={SECRET}"),
        "--output",
        "json",
    ]);
    if let Some(k) = kill_after {
        c.env("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string());
    }
    c.output().unwrap()
}

fn grep_dir(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            hits.extend(grep_dir(&p, needle));
        } else if std::fs::read(&p)
            .map(|b| String::from_utf8_lossy(&b).contains(needle))
            .unwrap_or(false)
        {
            hits.push(p);
        }
    }
    hits
}

#[test]
fn exec_stdout_feeds_a_later_step_and_secrets_stay_out_of_the_journal() {
    let env = Env::new();
    let out = run(&env, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.markers(), vec!["talos v1.11.5"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET), "secret in the output");
    assert_eq!(
        grep_dir(&env.state(), SECRET),
        Vec::<std::path::PathBuf>::new()
    );
    // The program did get it, and printed it: what is journaled is redacted.
    let run_dir = env.the_run();
    let state = env.state_of(&run_dir);
    let login = state.step("login").unwrap();
    let crate_state = format!("{:?}", login.state);
    assert!(crate_state.contains("token=<redacted>"), "{crate_state}");
}

/// Kills the run right after the intent of `step` is durable (before its program runs).
fn kill_at_intent_of(step: &str) -> (Env, std::process::Output) {
    // Find the record number of the step's intent from an uninterrupted run.
    let probe = Env::new();
    let out = run(&probe, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let journal = std::fs::read_to_string(probe.the_run().path().join("journal.jsonl")).unwrap();
    let k = journal
        .lines()
        .position(|l| l.contains("\"step-started\"") && l.contains(&format!("\"step\":\"{step}\"")))
        .unwrap()
        + 1;
    let env = Env::new();
    let out = run(&env, Some(k));
    assert_ne!(out.status.code(), Some(0), "kill point {k} did not kill");
    (env, out)
}

fn resume(env: &Env) -> std::process::Output {
    env.cmd(&[
        "resume",
        "--param",
        &format!("token={SECRET}"),
        "--output",
        "plain",
    ])
    .output()
    .unwrap()
}

#[test]
fn an_interrupted_exec_without_declared_idempotency_asks_a_person() {
    let (env, _) = kill_at_intent_of("unconfirmed");
    let out = resume(&env);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interrupted with an unknown outcome"),
        "{}",
        text(&out)
    );
    // Nothing was run twice (it never ran), and nothing runs until a person says so.
    assert!(!env.path().join("side-effect").exists());
    let out = env
        .cmd(&["approve", env.the_run().id(), "unconfirmed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = resume(&env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(env.path().join("side-effect")).unwrap(),
        "done"
    );
}

#[test]
fn an_interrupted_exec_is_settled_by_its_verify_command() {
    let (env, _) = kill_at_intent_of("login");
    let out = resume(&env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = env.state_of(&env.the_run());
    let login = state.step("login").unwrap();
    // The verify command found the marker file: done, not run again.
    assert_eq!(login.attempts, 1, "{login:?}");
    assert_eq!(env.markers(), vec!["talos v1.11.5"]);
}

#[test]
fn lists_and_maps_interpolate_and_secrets_inside_them_are_never_folded() {
    let plan = |token: &str| {
        let out = std::process::Command::new(crate::run_harness::BIN)
            .args(["plan", fixture("runbooks/exec.yaml").to_str().unwrap()])
            .args(["--param", "dir=/x", "--param", &format!("token={token}")])
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let a = plan("first-secret");
    let b = plan("second-secret");
    assert!(!a.contains("first-secret") && !b.contains("second-secret"));
    let doc: serde_json::Value = serde_json::from_str(&a).unwrap();
    let hash_b = serde_json::from_str::<serde_json::Value>(&b).unwrap()["hash"].clone();
    assert_eq!(doc["hash"], hash_b, "the plan hash depends on a secret");
    let steps = doc["steps"].as_array().unwrap();
    let find = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap();
    // A list whose parts are known at plan time is folded to a literal…
    assert_eq!(
        find("unconfirmed")["action"]["args"]["command"],
        serde_json::json!(["sh", "-c", "printf done >> /x/side-effect"])
    );
    // …a map holding a secret stays an expression, evaluated only while the run drives.
    assert_eq!(
        find("login")["action"]["args"]["env"],
        serde_json::json!({"$map": {"TOKEN": {"expr": "params.token"}}})
    );
}
