//! Known gaps of `kube.apply` and `talos.patch` closed in session 4: file arguments read
//! relative to the runbook file (a missing one is an authoring error at its argument), the
//! JSON plan redacting an inline patch and inline Secrets as the dry-run diffs do, and a
//! discovery failure journaled as `action-not-sent` (nothing was sent, so nothing to settle or
//! roll back).

use runbook::journal::Journal;
use runbook::journal::record::Record;
use runbook::sim::Scenario;

use crate::harness::runbook;
use crate::run_harness::text;

const SECRET: &str = "s3cr3t-cluster-token-6f1e";

#[test]
fn file_arguments_are_read_from_the_runbook_directory_and_a_missing_one_points_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops");
    std::fs::create_dir_all(ops.join("manifests")).unwrap();
    std::fs::write(
        ops.join("manifests/rc.yaml"),
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: { name: nvidia }\nhandler: nvidia\n",
    )
    .unwrap();
    std::fs::write(
        ops.join("labels.yaml"),
        "machine:\n  nodeLabels:\n    gpu: \"true\"\n",
    )
    .unwrap();
    let book = ops.join("gpu.yaml");
    std::fs::write(
        &book,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: gpu }\nsteps:\n  - id: rc\n    action: kube.apply\n    with: { file: manifests/rc.yaml }\n  - id: label\n    action: talos.patch\n    with: { node: 192.168.2.20, patch_file: labels.yaml, mode: no-reboot }\n",
    )
    .unwrap();
    // From another directory (the temp root), the paths still resolve beside the runbook.
    let out = runbook(
        dir.path(),
        &["plan", book.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arg = |i: usize, k: &str| {
        plan["steps"][i]["action"]["args"][k]
            .as_str()
            .unwrap()
            .to_string()
    };
    let canon = |p: String| std::fs::canonicalize(p).unwrap();
    assert_eq!(
        canon(arg(0, "file")),
        canon(ops.join("manifests/rc.yaml").display().to_string())
    );
    assert_eq!(
        canon(arg(1, "patch_file")),
        canon(ops.join("labels.yaml").display().to_string())
    );

    // A missing file is refused at plan time, at its argument's line and column.
    std::fs::remove_file(ops.join("labels.yaml")).unwrap();
    let out = runbook(dir.path(), &["check", book.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("`patch_file` of `talos.patch`: no file"), "{t}");
    assert!(t.contains("labels.yaml"), "{t}");
    assert!(
        t.contains("relative paths are read from the runbook's directory"),
        "{t}"
    );
    assert!(t.contains("gpu.yaml:10:"), "the span of the argument: {t}");
}

#[test]
fn the_json_plan_redacts_an_inline_patch_and_inline_secrets_like_the_text_plan() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("p.yaml");
    std::fs::write(
        &book,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: p }}\nsteps:\n  - id: label\n    action: talos.patch\n    with:\n      node: 192.168.2.20\n      mode: no-reboot\n      patch: {{ cluster: {{ token: {SECRET} }}, machine: {{ nodeLabels: {{ gpu: \"true\" }} }} }}\n  - id: s\n    action: kube.apply\n    with:\n      manifests: {{ apiVersion: v1, kind: Secret, metadata: {{ name: s, namespace: default }}, stringData: {{ pw: {SECRET} }} }}\n"
        ),
    )
    .unwrap();
    for format in ["json", "text"] {
        let out = runbook(
            dir.path(),
            &["plan", book.to_str().unwrap(), "--format", format],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let t = text(&out);
        assert!(!t.contains(SECRET), "{format} plan shows the secret: {t}");
        assert!(t.contains("<redacted>"), "{format}: {t}");
        assert!(
            t.contains("nodeLabels"),
            "{format}: only secrets are hidden: {t}"
        );
    }
}

#[test]
fn a_kube_apply_whose_discovery_fails_is_not_sent_and_leaves_nothing_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let book = dir.path().join("w.yaml");
    std::fs::write(
        &book,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: w }\nsteps:\n  - id: w\n    action: kube.apply\n    with:\n      manifests: { apiVersion: example.com/v1, kind: Widget, metadata: { name: w1, namespace: default } }\n    rollback: [undo]\nrollbacks:\n  - { id: undo, action: log, with: { message: undo-ran } }\n",
    )
    .unwrap();
    let sim = dir.path().join("sim");
    let state = dir.path().join("state");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", book.to_str().unwrap(), "--talosconfig"])
        .arg(sim.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.join("kubeconfig"))
        .args(["--output", "plain", "--state-dir"])
        .arg(&state)
        .env("HOME", dir.path())
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("does not serve example.com/v1 Widget"), "{t}");
    let runs = runbook::journal::StateDir::new(&state).list_runs().unwrap();
    let journal = Journal::read(&runs[0].run).unwrap();
    let records: Vec<&Record> = journal.contents.entries.iter().map(|e| &e.record).collect();
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::ActionNotSent { step, .. } if step == "w")),
        "{records:#?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| matches!(r, Record::ActionFailed { step, .. } if step == "w")),
        "{records:#?}"
    );
    let w = journal.state.step("w").unwrap();
    assert!(!w.exposure.may_have_acted(), "{:?}", w.exposure);
    // Nothing may have taken effect, so the rollback does not run.
    assert!(!t.contains("undo-ran"), "{t}");
    rt.block_on(handle.shutdown());
}

/// The run header records the runbook's absolute path, and resume resolves the stored copy's
/// relative `file:` against that directory: resuming from elsewhere gives the same plan hash.
#[test]
fn a_resume_from_another_directory_reads_the_same_relative_file() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handle) = crate::run_harness::simulator(Scenario::Healthy, 200.0, dir.path());
    let ops = dir.path().join("ops");
    std::fs::create_dir_all(&ops).unwrap();
    std::fs::write(
        ops.join("rc.yaml"),
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: { name: nvidia }\nhandler: nvidia\n",
    )
    .unwrap();
    let book = ops.join("gated.yaml");
    std::fs::write(
        &book,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: gated }\nsteps:\n  - id: rc\n    approval: \"apply it?\"\n    action: kube.apply\n    with: { file: rc.yaml }\n",
    )
    .unwrap();
    let sim = dir.path().join("sim");
    let state = dir.path().join("state");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let cmd = |cwd: &std::path::Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .current_dir(cwd)
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .env("HOME", dir.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let talosconfig = sim.join("talosconfig").display().to_string();
    let kubeconfig = sim.join("kubeconfig").display().to_string();
    let out = cmd(
        &ops,
        &[
            "run",
            "gated.yaml",
            "--talosconfig",
            &talosconfig,
            "--kubeconfig",
            &kubeconfig,
            "--output",
            "plain",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let runs = runbook::journal::StateDir::new(&state).list_runs().unwrap();
    let id = runs[0].run.id().to_string();
    let out = cmd(&elsewhere, &["approve", &id, "rc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cmd(&elsewhere, &["resume", &id, "--output", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("RuntimeClass/nvidia created"),
        "{}",
        text(&out)
    );
    rt.block_on(handle.shutdown());
}
