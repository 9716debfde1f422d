//! The `runbook` binary's authoring commands: list, check, plan, actions; exit codes.

use crate::harness::{root, runbook, stderr, stdout};

const NODES: &str = "nodes=192.168.2.20,192.168.2.223,192.168.2.49";

#[test]
fn check_builtin_runbooks_directory() {
    let out = runbook(&root(), &["check", "runbooks/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        runbook::library::BUILTINS.len()
    );
}

#[test]
fn check_broken_file_prints_file_line_column_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: broken }\nsteps:\n  - id: r\n    action: talos.rebot\n    with: { node: x }\n  - id: s\n    action: sleep\n    timeout: soon\n",
    )
    .unwrap();
    let out = runbook(dir.path(), &["check", "broken.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("[broken.yaml:6:13]"), "{err}");
    assert!(err.contains("unknown action `talos.rebot`"), "{err}");
    assert!(err.contains("did you mean `talos.reboot`?"), "{err}");
    assert!(err.contains("[broken.yaml:10:14]"), "{err}");
    assert!(err.contains("runbook::missing-argument"), "{err}");
    assert!(stdout(&out).contains("FAIL  broken.yaml"));
}

#[test]
fn check_reports_missing_paths_as_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["check", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`nope.yaml` does not exist"));
}

#[test]
fn plan_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (format, start) in [
        ("text", "runbook reboot-verify:"),
        ("dot", "digraph \"reboot-verify\" {"),
        ("mermaid", "flowchart TD"),
        ("json", "{"),
    ] {
        let out = runbook(
            dir.path(),
            &[
                "plan",
                "reboot-verify",
                "--param",
                NODES,
                "--format",
                format,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with(start),
            "{format}: {}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("192.168.2.223"), "{format}");
    }
}

#[test]
fn plan_unknown_name_suggests_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["plan", "reboot-verfy"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: no runbook named `reboot-verfy`\n  help: did you mean `reboot-verify`?\n"
    );
}

#[test]
fn plan_missing_param_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["plan", "reboot-verify"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    // `nodes` defaults from the cluster, and `plan` reads none.
    assert!(
        err.contains("parameter `nodes` defaults from the cluster (cluster.control-planes), and no cluster was read"),
        "{err}"
    );
    assert!(err.contains("[runbooks/reboot-verify.yaml:11:19]"), "{err}");
    assert!(err.contains("--param nodes=<nodes>"), "{err}");
}

#[test]
fn plan_bad_param_syntax_is_rejected_by_clap() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["plan", "reboot-verify", "--param", "nodes"]);
    assert_eq!(out.status.code(), Some(2));
    // The argument may be a secret whose key was forgotten: it is never echoed.
    let err = stderr(&out);
    assert!(
        err.contains("a `--param` must be KEY=VALUE, KEY=@FILE or KEY=env:VAR (the argument is not shown: it may be a secret)"),
        "{err}"
    );
    assert!(!err.contains("nodes"), "{err}");
}

#[test]
fn list_shows_builtins_and_user_runbooks() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("config/runbook/runbooks");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("my-drill.yaml"),
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: my-drill, description: practice }\nsteps:\n  - id: a\n    action: noop\n",
    )
    .unwrap();
    let out = runbook(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for name in [
        "reboot-verify",
        "node-replace",
        "etcd-quorum-recovery",
        "full-rebuild",
        "etcd-backup",
        "gpu-enable",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.ends_with("[built-in]")),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("my-drill") && l.contains("practice")),
        "{text}"
    );
    // A user runbook can be planned by name.
    let out = runbook(dir.path(), &["plan", "my-drill"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn actions_lists_the_catalog() {
    let out = runbook(&root(), &["actions"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(
            "talos.reboot  (verify) [disruptive: takes a node down and can lose etcd quorum]"
        ),
        "{text}"
    );
    assert!(
        text.contains("etcd.safe-down [protects: quorum-outage, workload-eviction]"),
        "{text}"
    );
    assert!(
        text.contains("talos.running  (timeout 30m, every 5s)"),
        "{text}"
    );
}
