//! `talos.patch` against the simulator, driven through the `runbook` binary: the same patch
//! twice sends one `ApplyConfiguration` (the simulator's call log), a patch that changes
//! nothing sends nothing, RFC 6902 patches, a malformed patch is an authoring error with its
//! file and line, a silent node refuses, a reboot-requiring patch without `etcd.safe-down`
//! does not compile, the dry-run diff carries none of the node's secrets, and a kill after the
//! call resumes without a second call.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::sim::node::ApplyMode;
use runbook::sim::{Scenario, SimHandle};

use crate::run_harness::{BIN, Env, simulator, text};

const NODE: &str = "192.168.2.223";

/// Secret values planted in the node's config before a test (so redaction is tested against
/// real keys, not only the simulator's token).
const SECRETS: &[&str] = &[
    "simtoken.0123456789abcdef",
    "LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0Kc2ltcHJpdmF0ZQ",
    "c2VjcmV0Ym94LXNpbXVsYXRlZC1rZXktMzItYnl0ZXM",
    "clustertok.abcdef0123456789",
    "ZGlzY292ZXJ5LXNlY3JldC1zaW0",
];

struct Sim {
    rt: tokio::runtime::Runtime,
    handle: SimHandle,
    dir: PathBuf,
}

impl Sim {
    fn start(env: &Env) -> Sim {
        let (rt, handle) = simulator(Scenario::Healthy, 20.0, env.path());
        Sim {
            rt,
            handle,
            dir: env.path().join("sim"),
        }
    }

    /// Successful `ApplyConfiguration` calls on any node.
    fn applies(&self) -> usize {
        self.handle.cluster().with(|c, _| {
            c.call_log()
                .iter()
                .filter(|r| r.method == "ApplyConfiguration" && r.result.is_ok())
                .count()
        })
    }

    fn config(&self, label: &str) -> String {
        self.handle.cluster().with(|c, _| {
            c.node(label)
                .and_then(|n| n.config())
                .map(|m| m.raw().to_string())
                .unwrap()
        })
    }

    /// Replaces the node's config by one that also holds CA keys and cluster secrets.
    fn plant_secrets(&self, label: &str) {
        let raw = self.config(label);
        // The sim's config ends with its `cluster:` section: the cluster secrets go there.
        assert!(raw.trim_end().lines().last().unwrap().starts_with("  "));
        let extra = raw.replace(
            "machine:\n",
            &format!(
                "machine:\n  ca:\n    crt: LS0tcublic\n    key: {}\n",
                SECRETS[1]
            ),
        ) + format!(
            "  secretboxEncryptionSecret: {}\n  token: {}\n  secret: {}\n",
            SECRETS[2], SECRETS[3], SECRETS[4]
        )
        .as_str();
        assert!(
            extra.contains(SECRETS[0]),
            "the sim's token is in its config"
        );
        self.handle.cluster().with(|c, now| {
            c.apply_configuration(label, &extra, ApplyMode::NoReboot, false, now)
                .unwrap();
            c.clear_call_log();
        });
    }

    fn cluster_args<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.arg("--talosconfig")
            .arg(self.dir.join("talosconfig"))
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--node-endpoints")
            .arg(self.dir.join("endpoints.json"))
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

/// The outputs of a step that succeeded.
fn outputs_of(state: &runbook::journal::RunState, id: &str) -> runbook::journal::Fields {
    match &state.steps.get(id).unwrap().state {
        runbook::journal::StepState::Succeeded { outputs } => outputs.clone(),
        other => panic!("step `{id}` did not succeed: {other:?}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn runbook(steps: &str) -> String {
    format!(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: patch-test\n  description: talos.patch test\nsteps:\n{steps}"
    )
}

fn run(env: &Env, sim: &Sim, file: &Path, extra: &[&str]) -> Output {
    let mut cmd = env.cmd(&["run", "--output", "plain"]);
    cmd.arg(file).args(extra);
    sim.cluster_args(&mut cmd).output().unwrap()
}

const LABEL_STEP: &str = "  - id: label
    action: talos.patch
    with:
      node: 192.168.2.223
      patch: { machine: { nodeLabels: { runbook-patch: \"yes\" } } }
";

#[test]
fn the_same_patch_twice_sends_one_apply_configuration() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, _| c.clear_call_log());
    let again = LABEL_STEP.replace("id: label", "id: again");
    let file = write(
        env.path(),
        "twice.yaml",
        &runbook(&format!("{LABEL_STEP}{again}    needs: [label]\n")),
    );
    let out = run(&env, &sim, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        sim.applies(),
        1,
        "one ApplyConfiguration for two identical patches"
    );
    assert!(sim.config(NODE).contains("runbook-patch"));
    let state = env.state_of(&env.the_run());
    let outputs = |id: &str| outputs_of(&state, id);
    assert_eq!(outputs("label")["changed"], true);
    assert_eq!(
        outputs("label")["paths"],
        serde_json::json!(["machine.nodeLabels.runbook-patch"])
    );
    assert_eq!(outputs("label")["reboot_required"], false);
    assert_eq!(outputs("again")["changed"], false);
    let t = text(&out);
    assert!(
        t.contains(
            "again: `192.168.2.223` already runs a config containing the patch: nothing sent"
        ),
        "{t}"
    );
    // A second run of the whole runbook sends nothing either.
    let out = run(&env, &sim, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.applies(), 1);
    sim.stop();
}

#[test]
fn a_patch_that_changes_nothing_sends_nothing() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, _| c.clear_call_log());
    let hostname = sim.handle.cluster().with(|c, _| {
        c.node(NODE)
            .and_then(|n| n.config())
            .and_then(|m| m.hostname.clone())
            .unwrap()
    });
    let before = sim.config(NODE);
    let file = write(
        env.path(),
        "same.yaml",
        &runbook(&format!(
            "  - id: same\n    action: talos.patch\n    with:\n      node: {NODE}\n      patch: {{ machine: {{ network: {{ hostname: {hostname} }} }} }}\n"
        )),
    );
    let out = run(&env, &sim, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.applies(), 0);
    assert_eq!(sim.config(NODE), before, "the node's config is untouched");
    let state = env.state_of(&env.the_run());
    let o = &outputs_of(&state, "same");
    assert_eq!(o["changed"], false);
    assert_eq!(o["paths"], serde_json::json!([]));
    sim.stop();
}

#[test]
fn a_json6902_patch_is_applied() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, _| c.clear_call_log());
    let file = write(
        env.path(),
        "ops.yaml",
        &runbook(&format!(
            "  - id: ops\n    action: talos.patch\n    with:\n      node: {NODE}\n      format: json6902\n      mode: no-reboot\n      patch:\n        - {{ op: add, path: /machine/sysctls, value: {{ vm.nr_hugepages: \"128\" }} }}\n        - {{ op: test, path: /machine/type, value: controlplane }}\n"
        )),
    );
    let out = run(&env, &sim, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.applies(), 1);
    assert!(sim.config(NODE).contains("vm.nr_hugepages"));
    let state = env.state_of(&env.the_run());
    let o = &outputs_of(&state, "ops");
    assert_eq!(
        o["paths"],
        serde_json::json!(["machine.sysctls.vm.nr_hugepages"])
    );
    // A failing `test` operation refuses the patch: nothing is sent.
    let failing = write(
        env.path(),
        "failing.yaml",
        &runbook(&format!(
            "  - id: ops\n    action: talos.patch\n    with:\n      node: {NODE}\n      format: json6902\n      mode: no-reboot\n      patch:\n        - {{ op: test, path: /machine/type, value: worker }}\n        - {{ op: add, path: /machine/sysctls/x, value: \"1\" }}\n"
        )),
    );
    let env2 = Env::new();
    let out = run(&env2, &sim, &failing, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.applies(), 1, "nothing more was sent");
    sim.stop();
}

#[test]
fn a_malformed_patch_is_an_authoring_error_naming_the_file_and_line() {
    let env = Env::new();
    // Inline: a json6902 patch that is a map, reported at its line in the runbook.
    let file = write(
        env.path(),
        "bad-inline.yaml",
        &runbook(&format!(
            "  - id: ops\n    action: talos.patch\n    with:\n      node: {NODE}\n      format: json6902\n      mode: no-reboot\n      patch: {{ op: add }}\n"
        )),
    );
    let out = env.run(&["check", file.to_str().unwrap()]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("bad-inline.yaml:13"), "{t}");
    assert!(t.contains("list of operations"), "{t}");
    // A patch file: reported at its own line.
    let patch = write(
        env.path(),
        "gpu-patch.yaml",
        "# modules\nmachine:\n  kernel:\n    modules: [ {name: nvidia}\n",
    );
    let file = write(
        env.path(),
        "bad-file.yaml",
        &runbook(&format!(
            "  - id: p\n    action: talos.patch\n    with:\n      node: {NODE}\n      mode: no-reboot\n      patch_file: {}\n",
            patch.display()
        )),
    );
    let out = env.run(&["check", file.to_str().unwrap()]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("gpu-patch.yaml:"), "{t}");
    assert!(
        t.contains("gpu-patch.yaml:4") || t.contains("gpu-patch.yaml:5"),
        "{t}"
    );
}

#[test]
fn a_patch_on_a_silent_node_refuses_and_sends_nothing() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, now| {
        c.power_off(NODE, now).unwrap();
        c.clear_call_log();
    });
    let file = write(
        env.path(),
        "silent.yaml",
        &runbook(&LABEL_STEP.replace("      patch:", "      mode: no-reboot\n      patch:")),
    );
    let out = run(&env, &sim, &file, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.applies(), 0);
    let all = sim.handle.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "ApplyConfiguration")
            .count()
    });
    assert_eq!(all, 0, "not even an attempt reached the node");
    sim.stop();
}

#[test]
fn a_reboot_requiring_patch_needs_the_safe_down_guard() {
    let env = Env::new();
    let install = format!(
        "  - id: image\n    action: talos.patch\n    with:\n      node: {NODE}\n      patch: {{ machine: {{ install: {{ image: ghcr.io/siderolabs/installer:v1.12.0 }} }} }}\n"
    );
    let file = write(env.path(), "unguarded.yaml", &runbook(&install));
    let out = env.run(&["check", file.to_str().unwrap()]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("etcd.safe-down"), "{t}");
    assert!(t.contains("unguarded.yaml:"), "{t}");
    // `mode: reboot` is disruptive whatever it changes.
    let reboot = LABEL_STEP.replace("      patch:", "      mode: reboot\n      patch:");
    let file = write(env.path(), "reboot.yaml", &runbook(&reboot));
    let out = env.run(&["check", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // A patch file is unknown before the run: disruptive in `auto`.
    let patch = write(
        env.path(),
        "labels.yaml",
        "machine:\n  nodeLabels:\n    a: b\n",
    );
    let from_file = format!(
        "  - id: p\n    action: talos.patch\n    with:\n      node: {NODE}\n      patch_file: {}\n",
        patch.display()
    );
    let file = write(env.path(), "file.yaml", &runbook(&from_file));
    let out = env.run(&["check", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // With the guard it compiles; a label patch needs none.
    let guarded = format!("{install}    guard: etcd.safe-down\n");
    let file = write(env.path(), "guarded.yaml", &runbook(&guarded));
    let out = env.run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = write(env.path(), "labels-rb.yaml", &runbook(LABEL_STEP));
    let out = env.run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn the_dry_run_diff_is_redacted_and_sends_nothing() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.plant_secrets(NODE);
    let before = sim.config(NODE);
    for s in SECRETS {
        assert!(before.contains(s), "planted `{s}`");
    }
    let file = write(
        env.path(),
        "dry.yaml",
        &runbook(&format!(
            "  - id: dry\n    action: talos.patch\n    with:\n      node: {NODE}\n      dry_run: true\n      patch:\n        machine:\n          nodeLabels: {{ gpu: \"true\" }}\n          token: rotated.0000000000000000\n"
        )),
    );
    let out = run(&env, &sim, &file, &["--yes"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("+    gpu: \"true\""), "the diff is shown:\n{t}");
    assert!(t.contains("<redacted, changed>"), "{t}");
    for s in SECRETS.iter().chain(&["rotated.0000000000000000"]) {
        assert!(!t.contains(s), "`{s}` leaked into the output:\n{t}");
    }
    assert_eq!(sim.applies(), 0);
    assert_eq!(sim.config(NODE), before);
    // Nor does any secret reach the journal.
    let run_dir = env.the_run();
    for entry in walk(run_dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        for s in SECRETS {
            assert!(!content.contains(s), "`{s}` in {}", entry.display());
        }
    }
    sim.stop();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn killed_after_the_call_resume_sends_no_second_apply_configuration() {
    killed_inside("after", 1);
}

#[test]
fn killed_before_the_call_resume_sends_it_exactly_once() {
    killed_inside("before", 0);
}

/// Kills `run` at `point` inside the first `talos.patch` (with `sent` calls through by then),
/// resumes until the run ends, and checks exactly one `ApplyConfiguration` reached the node.
fn killed_inside(point: &str, sent: usize) {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, _| c.clear_call_log());
    let file = write(
        env.path(),
        "crash.yaml",
        &runbook(&LABEL_STEP.replace("      patch:", "      effect_grace: 1s\n      patch:")),
    );
    let mut cmd = env.cmd(&["run", "--output", "plain"]);
    cmd.arg(&file).env(
        "RUNBOOK_TEST_KILL_IN_EFFECT",
        format!("talos.patch:1:{point}"),
    );
    let out = sim.cluster_args(&mut cmd).output().unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "killed inside the effect:\n{}",
        text(&out)
    );
    assert_eq!(
        sim.applies(),
        sent,
        "calls through before the kill ({point})"
    );
    let mut log = String::new();
    let mut finished = false;
    for _ in 0..3 {
        let out = Command::new(BIN)
            .args(["resume", "--output", "plain", "--state-dir"])
            .arg(env.state())
            .env("HOME", env.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        log.push_str(&text(&out));
        if out.status.code() == Some(0) {
            finished = true;
            break;
        }
    }
    assert!(finished, "resume did not finish:\n{log}");
    assert_eq!(sim.applies(), 1, "exactly one ApplyConfiguration:\n{log}");
    assert!(sim.config(NODE).contains("runbook-patch"));
    sim.stop();
}

#[test]
fn run_dry_run_against_the_cluster_prints_the_redacted_diff_and_sends_nothing() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.plant_secrets(NODE);
    let before = sim.config(NODE);
    let file = write(
        env.path(),
        "dry-cli.yaml",
        &runbook(&format!(
            "  - id: rotate\n    action: talos.patch\n    guard: etcd.safe-down\n    with:\n      node: {NODE}\n      patch:\n        machine:\n          nodeLabels: {{ zone: \"a\" }}\n          token: rotated.1111111111111111\n        cluster:\n          secretboxEncryptionSecret: bmV3LXNlY3JldGJveC1rZXk\n"
        )),
    );
    let out = run(&env, &sim, &file, &["--dry-run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("rotate: would change"), "{t}");
    assert!(t.contains("reboot required: true"), "{t}");
    assert!(t.contains("+    zone: a"), "{t}");
    for s in SECRETS
        .iter()
        .chain(&["rotated.1111111111111111", "bmV3LXNlY3JldGJveC1rZXk"])
    {
        assert!(!t.contains(s), "`{s}` leaked into the dry run:\n{t}");
    }
    assert_eq!(sim.applies(), 0);
    assert_eq!(sim.config(NODE), before);
    sim.stop();
}

#[test]
fn a_role_that_may_not_read_the_config_refuses_and_sends_nothing() {
    let env = Env::new();
    let sim = Sim::start(&env);
    sim.handle.cluster().with(|c, _| c.clear_call_log());
    let file = write(
        env.path(),
        "operator.yaml",
        &runbook(&LABEL_STEP.replace("      patch:", "      mode: no-reboot\n      patch:")),
    );
    // os:operator may not read MachineConfigs (sensitive): no config, no patch.
    let mut cmd = env.cmd(&["run", "--output", "plain"]);
    cmd.arg(&file)
        .arg("--talosconfig")
        .arg(sim.dir.join("talosconfig-operator"))
        .arg("--kubeconfig")
        .arg(sim.dir.join("kubeconfig"))
        .arg("--node-endpoints")
        .arg(sim.dir.join("endpoints.json"));
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("PermissionDenied"), "{t}");
    assert_eq!(sim.applies(), 0);
    sim.stop();
}
