//! The `preflight` action against the simulator: built-in runbooks refuse to start on a
//! critical finding (exit 4, nothing sent), `--override-preflight REASON` is journaled and
//! honoured by `resume` without lifting any safety guard, a role that may read nothing
//! refuses, gpu-enable is not refused by the `booting` it repairs, and a preflight sends no
//! mutating call.

use std::path::{Path, PathBuf};
use std::process::Output;

use runbook::journal::{Journal, Record, StepState};
use runbook::sim::Scenario;
use runbook::sim::pki::Role;

use crate::run_harness::{Env, simulator, text};

const SEED: &str = "nodes=192.168.2.20,192.168.2.223,192.168.2.49";

fn only_run(env: &Env) -> runbook::journal::RunDir {
    env.the_run()
}

fn records(env: &Env) -> Vec<Record> {
    Journal::read(&only_run(env))
        .unwrap()
        .contents
        .entries
        .into_iter()
        .map(|e| e.record)
        .collect()
}

fn sim_calls(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(only_run(env).path().join("sim/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Cluster flags for an external simulator in `dir/sim`, with the talosconfig of `role`.
fn cluster_flags(handle: &runbook::sim::SimHandle, dir: &Path, role: Role) -> Vec<String> {
    let sim = dir.join("sim");
    vec![
        "--talosconfig".into(),
        handle.talosconfig_for(role).display().to_string(),
        "--kubeconfig".into(),
        sim.join("kubeconfig").display().to_string(),
        "--node-endpoints".into(),
        sim.join("endpoints.json").display().to_string(),
    ]
}

fn run_with(env: &Env, args: &[&str], flags: &[String]) -> Output {
    let mut c = env.cmd(args);
    c.args(flags).args(["--output", "plain"]);
    c.output().unwrap()
}

fn write_runbook(dir: &Path, name: &str, steps: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: {name}\n  description: test\nsteps:\n{steps}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn reboot_verify_is_refused_on_node_dead_before_any_reboot_with_the_quorum_figures() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "reboot-verify",
        "--sim",
        "--scenario",
        "node-dead",
        "--speed",
        "100",
        "--param",
        SEED,
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("preflight refused the run: 2 critical finding(s)"),
        "{t}"
    );
    assert!(t.contains("[192.168.2.49] reachable"), "{t}");
    assert!(
        t.contains("quorum margin 0: 2 of 3 voters healthy, 2 needed"),
        "{t}"
    );
    assert!(t.contains("--override-preflight REASON"), "{t}");
    let refused = records(&env)
        .into_iter()
        .find_map(|r| match r {
            Record::GuardRefused {
                step,
                guard,
                figures,
                ..
            } => Some((step, guard, figures)),
            _ => None,
        })
        .expect("a refusal is journaled");
    assert_eq!(
        (refused.0.as_str(), refused.1.as_str()),
        ("preflight", "preflight")
    );
    let etcd = &refused.2["etcd"];
    assert_eq!(
        (
            &etcd["voters"],
            &etcd["healthy"],
            &etcd["quorum"],
            &etcd["margin"]
        ),
        (&3.into(), &2.into(), &2.into(), &0.into())
    );
    assert_eq!(refused.2["critical"].as_array().unwrap().len(), 2);
    // Nothing was sent: the simulator logged no mutating call at all.
    assert_eq!(sim_calls(&env), Vec::<serde_json::Value>::new());
}

#[test]
fn override_is_journaled_shown_and_the_safe_down_guard_still_refuses() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "reboot-verify",
        "--sim",
        "--scenario",
        "node-dead",
        "--speed",
        "100",
        "--param",
        SEED,
        "--override-preflight",
        ".49 is dead; node-replace is booked",
        "--output",
        "plain",
    ]);
    // Past the preflight, then etcd.safe-down refuses the first cordon: an override is not a
    // bypass of safety guards.
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("OVERRIDDEN with --override-preflight"), "{t}");
    assert!(t.contains("guard `etcd.safe-down` REFUSED"), "{t}");
    assert!(
        t.contains("preflight overridden: preflight: overridden by"),
        "{t}"
    );
    let state = env.state_of(&only_run(&env));
    let decision = state
        .preflight_override
        .clone()
        .expect("decision journaled");
    assert_eq!(decision.reason, ".49 is dead; node-replace is booked");
    assert!(!decision.host.is_empty() && !decision.by.is_empty());
    assert_eq!(state.preflight_overridden.len(), 1);
    let (step, findings) = &state.preflight_overridden[0];
    assert_eq!(step, "preflight");
    let checks: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, vec!["reachable", "etcd.quorum"]);
    assert!(matches!(
        state.step_state("preflight"),
        StepState::Succeeded { .. }
    ));
    assert!(matches!(
        state.step_state("verify[192.168.2.20].cordon"),
        StepState::Refused { guard, .. } if guard == "etcd.safe-down"
    ));
    assert!(
        sim_calls(&env)
            .iter()
            .all(|c| c["method"] != "Reboot" && c["method"] != "PatchNode"),
        "{:?}",
        sim_calls(&env)
    );
    // `status` shows the override, as text and as JSON.
    let id = only_run(&env).id().to_string();
    let status = env.run(&["status", &id]);
    let st = text(&status);
    assert!(
        st.contains("preflight override: granted by")
            && st.contains(".49 is dead; node-replace is booked"),
        "{st}"
    );
    let status = env.run(&["status", &id, "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        doc["preflight_override"]["reason"],
        ".49 is dead; node-replace is booked"
    );
    assert_eq!(
        doc["preflight_override"]["overridden"][0]["step"],
        "preflight"
    );
}

#[test]
fn resume_keeps_the_override_decision_and_runs_a_preflight_that_had_not_completed() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::NodeDead, 100.0, env.path());
    let flags = cluster_flags(&handle, env.path(), Role::Admin);
    let rb = write_runbook(
        env.path(),
        "gated",
        "  - id: gate\n    approval: go?\n  - id: preflight\n    action: preflight\n    with: { checks: [etcd, talos] }\n  - id: after\n    action: noop\n",
    );
    let rb = rb.to_str().unwrap();
    // With the override, paused at the gate: the preflight has not run yet.
    let out = run_with(
        &env,
        &[
            "run",
            rb,
            "--override-preflight",
            "rehearsal of a dead node",
        ],
        &flags,
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let id = only_run(&env).id().to_string();
    assert!(matches!(
        env.state_of(&only_run(&env)).step_state("preflight"),
        StepState::Pending
    ));
    assert_eq!(env.run(&["approve", &id, "gate"]).status.code(), Some(0));
    // Resumed without the flag: the preflight runs now, refuses, and the recorded decision
    // overrides it.
    let out = run_with(&env, &["resume", &id], &flags);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = env.state_of(&only_run(&env));
    assert_eq!(
        state.preflight_override.as_ref().unwrap().reason,
        "rehearsal of a dead node"
    );
    assert_eq!(state.preflight_overridden.len(), 1);
    assert!(matches!(
        state.step_state("after"),
        StepState::Succeeded { .. }
    ));
    rt.block_on(handle.shutdown());

    // The control: the same run without the override stops at the preflight on resume.
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::NodeDead, 100.0, env.path());
    let flags = cluster_flags(&handle, env.path(), Role::Admin);
    let rb = write_runbook(
        env.path(),
        "gated",
        "  - id: gate\n    approval: go?\n  - id: preflight\n    action: preflight\n    with: { checks: [etcd, talos] }\n  - id: after\n    action: noop\n",
    );
    let out = run_with(&env, &["run", rb.to_str().unwrap()], &flags);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let id = only_run(&env).id().to_string();
    assert_eq!(env.run(&["approve", &id, "gate"]).status.code(), Some(0));
    let out = run_with(&env, &["resume", &id], &flags);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(env.state_of(&only_run(&env)).preflight_override.is_none());
    rt.block_on(handle.shutdown());
}

#[test]
fn a_role_that_may_read_nothing_makes_preflight_refuse_and_preflight_sends_no_mutating_call() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, env.path());
    let rb = write_runbook(
        env.path(),
        "look",
        "  - id: preflight\n    action: preflight\n    with: { checks: [etcd, talos, time, kube, gpu, disks] }\n",
    );
    let rb = rb.to_str().unwrap();
    let flags = cluster_flags(&handle, env.path(), Role::EtcdBackup);
    let out = run_with(&env, &["run", rb, "--no-cluster-lock", "test"], &flags);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("preflight refused the run"), "{t}");
    assert!(t.contains("PermissionDenied"), "{t}");
    // The control: an admin on the same healthy cluster passes, and all of it read-only.
    let env2 = Env::new();
    let flags = cluster_flags(&handle, env.path(), Role::Admin);
    let out = run_with(&env2, &["run", rb, "--no-cluster-lock", "test"], &flags);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = env2.state_of(&env2.the_run());
    match state.step_state("preflight") {
        StepState::Succeeded { outputs } => {
            assert_eq!(outputs["verdict"], "passed");
            assert_eq!(outputs["critical"], serde_json::json!([]));
        }
        s => panic!("preflight did not pass: {s:?}"),
    }
    let mutating = handle.cluster().with(|c, _| c.call_log().len());
    assert_eq!(mutating, 0, "a preflight made a mutating call");
    rt.block_on(handle.shutdown());
}

#[test]
fn gpu_enable_is_refused_where_the_hardware_does_not_match_but_not_by_the_booting_it_repairs() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "gpu-enable",
        "--sim",
        "--scenario",
        "nvidia-image-on-non-gpu-node",
        "--speed",
        "200",
        "--param",
        "node=192.168.2.20",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(
            "[192.168.2.223] hardware: `192.168.2.223` runs the NVIDIA image but has no NVIDIA GPU"
        ),
        "{t}"
    );
    assert!(sim_calls(&env).is_empty(), "{:?}", sim_calls(&env));
    // Naming a node without the GPU is refused too.
    let env = Env::new();
    let out = env.run(&[
        "run",
        "gpu-enable",
        "--sim",
        "--scenario",
        "gpu-modules-missing",
        "--speed",
        "200",
        "--param",
        "node=192.168.2.49",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("`192.168.2.49` has no NVIDIA GPU (no PCI vendor 0x10de)"),
        "{}",
        text(&out)
    );
    // gpu-modules-missing on the GPU node: stuck `booting` is what gpu-enable repairs.
    let env = Env::new();
    let out = env.run(&[
        "run",
        "gpu-enable",
        "--sim",
        "--scenario",
        "gpu-modules-missing",
        "--speed",
        "200",
        "--param",
        "node=192.168.2.20",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = env.state_of(&only_run(&env));
    assert!(matches!(
        state.step_state("preflight"),
        StepState::Succeeded { .. }
    ));
    assert!(state.preflight_overridden.is_empty());
}

/// Kills `runbook run --override-preflight` after each of its journal records in turn (the
/// decision, the preflight's intent, the overridden refusal, …), resumes without the flag, and
/// checks the end: once the decision is journaled it survives, the preflight's refusal is
/// overridden (re-run if it had not completed) and etcd.safe-down still refuses the cordon;
/// killed before the decision was durable, the resumed run has no override and its preflight
/// refuses. Nothing is ever rebooted.
#[test]
fn a_kill_after_any_record_keeps_the_override_and_the_safety_guard() {
    let mut killed_somewhere = false;
    let mut kept_after_kill = false;
    for k in 1..=12 {
        let env = Env::new();
        let (rt, handle) = simulator(Scenario::NodeDead, 100.0, env.path());
        let flags = cluster_flags(&handle, env.path(), Role::Admin);
        let mut c = env.cmd(&[
            "run",
            "reboot-verify",
            "--param",
            SEED,
            "--override-preflight",
            "replacing .49",
        ]);
        c.args(&flags)
            .args(["--output", "plain"])
            .env("RUNBOOK_TEST_KILL_AFTER_RECORD", k.to_string());
        let out = c.output().unwrap();
        let was_killed = out.status.code().is_none();
        if was_killed {
            killed_somewhere = true;
            let id = only_run(&env).id().to_string();
            let out = run_with(&env, &["resume", &id], &flags);
            assert_eq!(out.status.code(), Some(4), "k={k}: {}", text(&out));
        } else {
            assert_eq!(out.status.code(), Some(4), "k={k}: {}", text(&out));
        }
        let state = env.state_of(&only_run(&env));
        match &state.preflight_override {
            // Killed before the decision was durable: the run has no override, and its
            // preflight refuses (fail closed); start again with the flag.
            None => {
                assert!(
                    matches!(state.step_state("preflight"), StepState::Refused { .. }),
                    "k={k}: {:?}",
                    state.step_state("preflight")
                );
                assert!(state.preflight_overridden.is_empty(), "k={k}");
            }
            Some(o) => {
                kept_after_kill |= was_killed;
                assert_eq!(o.reason, "replacing .49", "k={k}");
                assert!(!state.preflight_overridden.is_empty(), "k={k}");
                assert!(
                    matches!(
                        state.step_state("verify[192.168.2.20].cordon"),
                        StepState::Refused { guard, .. } if guard == "etcd.safe-down"
                    ),
                    "k={k}: {:?}",
                    state.step_state("verify[192.168.2.20].cordon")
                );
            }
        }
        let reboots = handle.cluster().with(|c, _| {
            c.call_log()
                .iter()
                .filter(|l| l.method == "Reboot" || l.method == "PatchNode")
                .count()
        });
        assert_eq!(reboots, 0, "k={k}");
        rt.block_on(handle.shutdown());
        if !was_killed {
            break;
        }
    }
    assert!(killed_somewhere && kept_after_kill);
}

#[test]
fn every_builtin_runbook_starts_with_a_preflight_that_declares_what_it_checks() {
    use runbook::compile::{self, Mode};
    for entry in runbook::library::builtins() {
        let plan = compile::compile_source(&entry.source, &Mode::Check)
            .unwrap_or_else(|d| panic!("{}: {}", entry.name, d.render(true)));
        if !plan.needs_cluster() {
            // A runbook that drives no cluster (etcd-restore-drill works on a file and a
            // throwaway simulator) has no cluster facts to check first.
            assert!(
                plan.steps()
                    .all(|s| s.action.as_ref().is_none_or(|a| a.name != "preflight")),
                "{}",
                entry.name
            );
            continue;
        }
        let first = plan.steps().next().expect("a first step");
        let action = first.action.as_ref().map(|a| a.name.as_str());
        assert_eq!(
            (first.id.as_str(), action),
            ("preflight", Some("preflight")),
            "{}",
            entry.name
        );
        let declared = first
            .action
            .as_ref()
            .map(|a| a.args.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(
            declared.iter().any(|k| k == "checks" || k == "lint"),
            "{}: {declared:?}",
            entry.name
        );
        // Recovery must not check etcd: its loss is why it runs.
        if entry.name == "etcd-quorum-recovery" {
            let checks = format!("{:?}", first.action.as_ref().unwrap().args.get("checks"));
            assert!(
                !checks.contains("etcd") && !checks.contains("quorum"),
                "{checks}"
            );
        }
    }
}

#[test]
fn recovery_runbooks_are_not_refused_by_the_degradation_they_repair() {
    // etcd-quorum-recovery on quorum-lost: the preflight passes (etcd is not its business; the
    // dead machines are confirmed down) and the run pauses at the recovery's approval.
    let env = Env::new();
    let out = env.run(&[
        "run",
        "etcd-quorum-recovery",
        "--sim",
        "--scenario",
        "quorum-lost",
        "--speed",
        "100",
        "--param",
        "nodes=192.168.2.20",
        "--param",
        "survivor=192.168.2.20",
        "--param",
        "down=192.168.2.223,192.168.2.49",
        "--param",
        &format!("backup_dir={}", env.path().join("snaps").display()),
        "--no-cluster-lock",
        "the Kubernetes API is down with etcd",
        "--output",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let state = env.state_of(&only_run(&env));
    match state.step_state("preflight") {
        StepState::Succeeded { outputs } => {
            assert_eq!(outputs["verdict"], "passed");
            assert_eq!(outputs["checked"], serde_json::json!(["time"]));
        }
        s => panic!("{s:?}"),
    }
    // The same preflight without `down`: the silent machines refuse it (fail closed).
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::QuorumLost, 100.0, env.path());
    let flags = cluster_flags(&handle, env.path(), Role::Admin);
    let rb = write_runbook(
        env.path(),
        "recover-like",
        "  - id: preflight\n    action: preflight\n    with: { checks: [talos, time] }\n",
    );
    let out = run_with(
        &env,
        &["run", rb.to_str().unwrap(), "--no-cluster-lock", "test"],
        &flags,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("[192.168.2.223] reachable"),
        "{}",
        text(&out)
    );
    rt.block_on(handle.shutdown());

    // etcd-backup on node-dead: quorum holds with margin 0, a warning for its preflight.
    let env = Env::new();
    let snaps = env.path().join("snaps");
    let out = env.run(&[
        "run",
        "etcd-backup",
        "--sim",
        "--scenario",
        "node-dead",
        "--speed",
        "100",
        "--param",
        "node=192.168.2.223",
        "--param",
        &format!("dir={}", snaps.display()),
        "--output",
        "plain",
    ]);
    let state = env.state_of(&only_run(&env));
    match state.step_state("preflight") {
        StepState::Succeeded { outputs } => {
            let warned: Vec<&str> = outputs["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["check"].as_str().unwrap())
                .collect();
            assert!(warned.contains(&"etcd.quorum"), "{warned:?}");
        }
        s => panic!("{s:?}\n{}", text(&out)),
    }
}

/// Every secret-looking value of a machine config fixture (tokens, secrets, keys).
fn secrets_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            let k = k.to_lowercase();
            (k.contains("token") || k.contains("secret") || k == "key" || k == "crt")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|v| v.len() >= 8)
        .collect()
}

#[test]
fn preflight_lints_refuse_the_seed_configs_without_a_secret_in_journal_or_output() {
    let env = Env::new();
    crate::run_harness::copy_dir(
        &crate::run_harness::fixture("lint/seed"),
        &env.path().join("seed"),
    );
    crate::run_harness::copy_dir(
        &crate::run_harness::fixture("lint/fixed"),
        &env.path().join("fixed"),
    );
    let steps = |dir: &str| {
        format!(
            "  - id: preflight\n    action: preflight\n    with:\n      lint: [L1, L2, L4, L13]\n      inventory: {}\n",
            env.path().join(dir).join("cluster.yaml").display()
        )
    };
    let rb = write_runbook(env.path(), "lint-seed", &steps("seed"));
    let out = env.run(&["run", rb.to_str().unwrap(), "--sim", "--output", "plain"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("controlplane3.yaml:21:11] L4"), "{t}");
    assert!(t.contains("controlplane3.yaml:25:7] L13"), "{t}");
    assert!(t.contains("controlplane2.yaml:22:12] L1"), "{t}");
    let journal = std::fs::read_to_string(only_run(&env).journal_path()).unwrap();
    let mut secrets = Vec::new();
    for f in [
        "controlplane1.yaml",
        "controlplane2.yaml",
        "controlplane3.yaml",
    ] {
        secrets.extend(secrets_of(&env.path().join("seed").join(f)));
    }
    assert!(secrets.len() >= 6, "{secrets:?}");
    for s in &secrets {
        assert!(
            !journal.contains(s.as_str()),
            "a secret reached the journal"
        );
        assert!(!t.contains(s.as_str()), "a secret reached the output");
    }
    // The corrected configs pass the same preflight.
    let env2 = Env::new();
    let rb = write_runbook(env.path(), "lint-fixed", &steps("fixed"));
    let out = env2.run(&["run", rb.to_str().unwrap(), "--sim", "--output", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_config_that_cannot_be_read_refuses_and_declaring_nothing_is_not_a_pass() {
    let env = Env::new();
    std::fs::write(env.path().join("bomb.yaml"), "a: &a [*a, *a]\n: : :\n").unwrap();
    let rb = write_runbook(
        env.path(),
        "bad-config",
        &format!(
            "  - id: preflight\n    action: preflight\n    with:\n      lint: [L1]\n      configs: [{}, {}]\n",
            env.path().join("bomb.yaml").display(),
            env.path().join("missing.yaml").display()
        ),
    );
    let out = env.run(&["run", rb.to_str().unwrap(), "--sim", "--output", "plain"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("2 critical finding(s)"), "{t}");
    assert!(t.contains("missing.yaml:1:1] L0"), "{t}");
    // A preflight that declares nothing proves nothing: its action is not sent, the step fails.
    let env = Env::new();
    let rb = write_runbook(
        env.path(),
        "empty",
        "  - id: preflight\n    action: preflight\n",
    );
    let out = env.run(&["run", rb.to_str().unwrap(), "--sim", "--output", "plain"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("a preflight that checks nothing proves nothing"),
        "{}",
        text(&out)
    );
}
