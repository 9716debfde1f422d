//! Machine-readable output and generated CLI artefacts: `--output json` of `list`, `actions`,
//! `runs` and `status`; `completions` for each shell; the man page.

use crate::run_harness::{BIN, Env, fixture, text};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

fn bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn list_json_names_every_builtin_runbook() {
    let doc = json(&bin(&["list", "--output", "json"]));
    let names: Vec<&str> = doc["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for want in [
        "reboot-verify",
        "node-replace",
        "etcd-quorum-recovery",
        "full-rebuild",
        "etcd-backup",
        "gpu-enable",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        doc["runbooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["parses"] == true)
    );
}

#[test]
fn actions_json_is_the_whole_catalog() {
    let doc = json(&bin(&["actions", "--output", "json"]));
    let names = |key: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let actions: Vec<String> = runbook::action::ACTIONS
        .iter()
        .map(|a| a.name.to_owned())
        .collect();
    let guards: Vec<String> = runbook::condition::GUARDS
        .iter()
        .map(|g| g.name.to_owned())
        .collect();
    let conditions: Vec<String> = runbook::condition::CONDITIONS
        .iter()
        .map(|c| c.name.to_owned())
        .collect();
    assert_eq!(names("actions"), actions);
    assert_eq!(names("guards"), guards);
    assert_eq!(names("conditions"), conditions);
    let reboot = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "talos.reboot")
        .unwrap();
    assert_eq!(reboot["disruptive"], "quorum-outage");
    assert_eq!(reboot["args"][0]["name"], "node");
    assert_eq!(reboot["args"][0]["required"], true);
}

#[test]
fn runs_and_status_json_describe_a_paused_run() {
    let env = Env::new();
    let dir = env.path().display().to_string();
    let out = env.run(&[
        "run",
        fixture("runbooks/approval.yaml").to_str().unwrap(),
        "--param",
        &format!("dir={dir}"),
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let id = env.the_run().id().to_owned();

    let runs = json(&env.run(&["runs", "--output", "json"]));
    let rows = runs["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["runbook"], "approval");
    assert_eq!(rows[0]["status"], "paused");
    assert_eq!(rows[0]["current_step"], "person");

    let status = json(&env.run(&["status", &id, "--output", "json"]));
    assert_eq!(status["run"], id.as_str());
    assert_eq!(status["status"]["kind"], "paused");
    let steps = status["steps"].as_array().unwrap();
    assert_eq!(steps[0]["id"], "before");
    assert_eq!(steps[0]["state"], "succeeded");
    assert_eq!(steps[1]["id"], "person");
    assert_eq!(steps[1]["state"], "awaiting-approval");
    assert_eq!(status["not_started"], serde_json::json!(["anyone"]));
}

#[test]
fn completions_print_for_every_shell_and_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bin(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["resume", "approve", "abort", "status"] {
            assert!(script.contains(sub), "{shell} completion lacks `{sub}`");
        }
    }
    let out = bin(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn man_page_is_roff_with_every_subcommand() {
    let out = bin(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH runbook 1"), "{page}");
    for sub in [
        "run",
        "resume",
        "approve",
        "abort",
        "runs",
        "status",
        "completions",
    ] {
        assert!(page.contains(sub), "man page lacks `{sub}`");
    }
}
