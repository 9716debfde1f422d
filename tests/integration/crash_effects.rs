//! Crash injection *inside* every non-idempotent cluster action: `runbook run` SIGKILLs itself
//! (`RUNBOOK_TEST_KILL_IN_EFFECT=ACTION:1:before|after`) before the call is sent, or after it
//! returned but before its outcome is journaled, against a simulator running outside the
//! killed process. `runbook resume` must settle the attempt from the cluster and finish the run
//! as an uninterrupted run would, and the simulator's call log must show exactly one call of
//! the action: never lost ("before"), never repeated ("after"), even while the node is still
//! going down when resume starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed};

struct Sim {
    rt: tokio::runtime::Runtime,
    handle: SimHandle,
    dir: PathBuf,
}

impl Sim {
    fn start(scenario: Scenario, speed: f64, dir: &Path) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt
            .block_on(Simulator::start(SimConfig {
                scenario,
                speed: Speed::new(speed).unwrap(),
                dir: dir.join("sim"),
            }))
            .unwrap();
        Sim {
            rt,
            handle,
            dir: dir.join("sim"),
        }
    }

    /// `(successful, all)` calls of `method` in the simulator's call log.
    fn calls(&self, method: &str) -> (usize, usize) {
        self.handle.cluster().with(|c, _| {
            let calls: Vec<_> = c.call_log().iter().filter(|r| r.method == method).collect();
            (
                calls.iter().filter(|r| r.result.is_ok()).count(),
                calls.len(),
            )
        })
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Case {
    scenario: Scenario,
    speed: f64,
    fixture: &'static str,
    params: &'static [&'static str],
    action: &'static str,
    method: &'static str,
}

/// Runs `case` killed at `point` inside its first `action`, resumes until the run ends, and
/// checks the run succeeded with exactly one call of the action.
fn killed_inside(case: &Case, point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(case.scenario, case.speed, dir.path());
    let state = dir.path().join("state");
    let fixture = crate::harness::root()
        .join("tests/fixtures/runbooks")
        .join(case.fixture);
    let cluster = |cmd: &mut Command| {
        cmd.arg("--talosconfig")
            .arg(sim.dir.join("talosconfig"))
            .arg("--kubeconfig")
            .arg(sim.dir.join("kubeconfig"))
            .arg("--node-endpoints")
            .arg(sim.dir.join("endpoints.json"));
        // With quorum lost the Kubernetes API is down: no cluster lock can be taken, and the
        // operator says why they go on without it (journaled).
        if case.scenario == Scenario::QuorumLost {
            cmd.args(["--no-cluster-lock", "API down: quorum lost"]);
        }
    };
    let mut run = Command::new(env!("CARGO_BIN_EXE_runbook"));
    run.arg("run").arg(&fixture);
    for p in case.params {
        run.args(["--param", &p.replace("{sim}", sim.dir.to_str().unwrap())]);
    }
    cluster(&mut run);
    let out = run
        .args(["--output", "plain", "--state-dir"])
        .arg(&state)
        .env("NO_COLOR", "1")
        .env(
            "RUNBOOK_TEST_KILL_IN_EFFECT",
            format!("{}:1:{point}", case.action),
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "`run` must die inside `{}` ({point}):\n{}",
        case.action,
        text(&out)
    );
    let mut log = String::new();
    let mut finished = false;
    for _ in 0..3 {
        let mut resume = Command::new(env!("CARGO_BIN_EXE_runbook"));
        resume
            .args(["resume", "--output", "plain", "--state-dir"])
            .arg(&state);
        if case.scenario == Scenario::QuorumLost {
            resume.args(["--no-cluster-lock", "API down: quorum lost"]);
        }
        let out = resume.env("NO_COLOR", "1").output().unwrap();
        log.push_str(&text(&out));
        if out.status.code() == Some(0) {
            finished = true;
            break;
        }
    }
    assert!(
        finished,
        "{} {point}: resume did not finish:\n{log}",
        case.action
    );
    assert!(log.contains("Succeeded"), "{log}");
    assert_eq!(
        sim.calls(case.method),
        (1, 1),
        "{} killed {point} the call: exactly one `{}` call, and it succeeded\n{log}",
        case.action,
        case.method
    );
    eprintln!("{} killed {point} the call:\n{log}", case.action);
    sim.stop();
}

/// Speed 6: the node takes about 1.7 s to go down, so `resume` starts while it is still
/// `rebooting` with its old boot id (the window in which a boot-id-only probe re-sent the
/// reboot), and about 10 s to come back.
const REBOOT: Case = Case {
    scenario: Scenario::Healthy,
    speed: 6.0,
    fixture: "once-reboot.yaml",
    params: &["node=192.168.2.223"],
    action: "talos.reboot",
    method: "Reboot",
};

#[test]
fn reboot_killed_before_the_call_is_sent_once() {
    killed_inside(&REBOOT, "before");
}

#[test]
fn reboot_killed_after_the_call_is_not_sent_again_while_the_node_goes_down() {
    killed_inside(&REBOOT, "after");
}

const SHUTDOWN: Case = Case {
    scenario: Scenario::Healthy,
    speed: 6.0,
    fixture: "once-shutdown.yaml",
    params: &["node=192.168.2.49"],
    action: "talos.shutdown",
    method: "Shutdown",
};

#[test]
fn shutdown_killed_before_the_call_is_sent_once() {
    killed_inside(&SHUTDOWN, "before");
}

#[test]
fn shutdown_killed_after_the_call_is_not_sent_again() {
    killed_inside(&SHUTDOWN, "after");
}

const UPGRADE: Case = Case {
    scenario: Scenario::Healthy,
    speed: 60.0,
    fixture: "once-upgrade.yaml",
    params: &[
        "node=192.168.2.49",
        "image=ghcr.io/siderolabs/installer:v1.11.5",
    ],
    action: "talos.upgrade",
    method: "Upgrade",
};

#[test]
fn upgrade_killed_before_the_call_is_sent_once() {
    killed_inside(&UPGRADE, "before");
}

#[test]
fn upgrade_killed_after_the_call_is_not_sent_again() {
    killed_inside(&UPGRADE, "after");
}

const APPLY: Case = Case {
    scenario: Scenario::Healthy,
    speed: 20.0,
    fixture: "once-apply.yaml",
    params: &["node=192.168.2.223"],
    action: "talos.apply-config",
    method: "ApplyConfiguration",
};

#[test]
fn apply_config_killed_before_the_call_is_sent_once() {
    killed_inside(&APPLY, "before");
}

#[test]
fn apply_config_killed_after_the_call_is_not_sent_again() {
    killed_inside(&APPLY, "after");
}

/// A spare in maintenance mode: after the apply it installs (the maintenance API stops
/// answering), so a re-send would go to a node that has left maintenance.
const APPLY_MAINTENANCE: Case = Case {
    scenario: Scenario::NodeDeadWithSpare,
    speed: 60.0,
    fixture: "once-apply-maintenance.yaml",
    params: &[
        "node=192.168.2.50",
        "config={sim}/configs/192.168.2.50.yaml",
    ],
    action: "talos.apply-config",
    method: "ApplyConfiguration",
};

#[test]
fn maintenance_apply_killed_before_the_call_is_sent_once() {
    killed_inside(&APPLY_MAINTENANCE, "before");
}

#[test]
fn maintenance_apply_killed_after_the_call_is_not_sent_again() {
    killed_inside(&APPLY_MAINTENANCE, "after");
}

const RESET: Case = Case {
    scenario: Scenario::Healthy,
    speed: 6.0,
    fixture: "once-reset.yaml",
    params: &["node=192.168.2.49"],
    action: "talos.reset",
    method: "Reset",
};

#[test]
fn reset_killed_before_the_call_is_sent_once() {
    killed_inside(&RESET, "before");
}

#[test]
fn reset_killed_after_the_call_is_not_sent_again() {
    killed_inside(&RESET, "after");
}

const REMOVE: Case = Case {
    scenario: Scenario::Healthy,
    speed: 20.0,
    fixture: "once-remove.yaml",
    params: &["via=192.168.2.20", "member=mac-49"],
    action: "etcd.remove-member",
    method: "EtcdRemoveMemberByID",
};

#[test]
fn remove_member_killed_before_the_call_is_sent_once() {
    killed_inside(&REMOVE, "before");
}

#[test]
fn remove_member_killed_after_the_call_is_not_sent_again() {
    killed_inside(&REMOVE, "after");
}

const LEAVE: Case = Case {
    scenario: Scenario::Healthy,
    speed: 20.0,
    fixture: "once-leave.yaml",
    params: &["node=192.168.2.49"],
    action: "etcd.leave",
    method: "EtcdLeaveCluster",
};

#[test]
fn leave_killed_before_the_call_is_sent_once() {
    killed_inside(&LEAVE, "before");
}

#[test]
fn leave_killed_after_the_call_is_not_sent_again() {
    killed_inside(&LEAVE, "after");
}

const BOOTSTRAP: Case = Case {
    scenario: Scenario::QuorumLost,
    speed: 30.0,
    fixture: "once-bootstrap.yaml",
    params: &["node=192.168.2.20"],
    action: "talos.bootstrap",
    method: "Bootstrap",
};

#[test]
fn bootstrap_killed_before_the_call_is_sent_once() {
    killed_inside(&BOOTSTRAP, "before");
}

#[test]
fn bootstrap_killed_after_the_call_is_not_sent_again() {
    killed_inside(&BOOTSTRAP, "after");
}

/// Runs `case` uninterrupted after `fault` was injected into the simulator; returns the output.
fn run_with_fault(
    case: &Case,
    fault: impl FnOnce(&mut runbook::sim::cluster::Cluster),
) -> (Output, (usize, usize)) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(case.scenario, case.speed, dir.path());
    sim.handle.cluster().with(|c, _| fault(c));
    let fixture = crate::harness::root()
        .join("tests/fixtures/runbooks")
        .join(case.fixture);
    let mut run = Command::new(env!("CARGO_BIN_EXE_runbook"));
    run.arg("run").arg(&fixture);
    for p in case.params {
        run.args(["--param", p]);
    }
    let out = run
        .arg("--talosconfig")
        .arg(sim.dir.join("talosconfig"))
        .arg("--kubeconfig")
        .arg(sim.dir.join("kubeconfig"))
        .arg("--node-endpoints")
        .arg(sim.dir.join("endpoints.json"))
        .args(["--output", "plain", "--state-dir"])
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let calls = sim.calls(case.method);
    sim.stop();
    (out, calls)
}

/// The Reboot takes effect but its answer is lost (`Unavailable`): the step's retry policy
/// allows a second attempt, yet the check sees the node going down and nothing is re-sent.
#[test]
fn reboot_whose_reply_is_lost_is_checked_and_not_sent_again() {
    let (out, calls) = run_with_fault(&REBOOT, |c| c.lose_next_reply("Reboot", None, 1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(calls, (1, 1), "{}", text(&out));
    assert!(
        text(&out).contains("may have reached the cluster"),
        "{}",
        text(&out)
    );
}

/// The Reboot never reaches the node (`Unavailable` before it): the check must see the node
/// unchanged for the grace before the retry sends it, once.
#[test]
fn reboot_that_never_reached_the_node_is_checked_then_retried_once() {
    let (out, calls) = run_with_fault(&REBOOT, |c| c.fail_next("Reboot", None, 1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        calls,
        (1, 2),
        "one refused call, then one that went through:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("checked: not done"), "{}", text(&out));
}

/// A role that may not read: `run` dies right before its Reboot; `resume` with an
/// `os:reader` talosconfig cannot read the boot id, so it cannot tell "not sent" from "sent",
/// asks until the step's probe window ends, then asks a person (`--yes` does not answer).
/// Only after an operator approves does an admin resume send the Reboot: once.
#[test]
fn a_reader_cannot_settle_a_reboot_so_a_person_does_and_it_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(REBOOT.scenario, REBOOT.speed, dir.path());
    let state = dir.path().join("state");
    let fixture = crate::harness::root().join("tests/fixtures/runbooks/once-reboot.yaml");
    let runbook = |args: &[&str], talosconfig: &Path, kill: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--talosconfig")
            .arg(talosconfig)
            .arg("--kubeconfig")
            .arg(sim.dir.join("kubeconfig"))
            .arg("--node-endpoints")
            .arg(sim.dir.join("endpoints.json"))
            .args(["--output", "plain", "--state-dir"])
            .arg(&state)
            .env("NO_COLOR", "1");
        if kill {
            cmd.env("RUNBOOK_TEST_KILL_IN_EFFECT", "talos.reboot:1:before");
        }
        cmd.output().unwrap()
    };
    let admin = sim.handle.talosconfig().to_path_buf();
    let reader = sim
        .handle
        .talosconfig_for(runbook::sim::pki::Role::Reader)
        .to_path_buf();
    let out = runbook(
        &[
            "run",
            fixture.to_str().unwrap(),
            "--param",
            "node=192.168.2.223",
        ],
        &admin,
        true,
    );
    assert_eq!(out.status.code(), None, "{}", text(&out));

    let out = runbook(&["resume", "--yes"], &reader, false);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("interrupted with an unknown outcome"), "{t}");
    assert!(t.contains("PermissionDenied"), "{t}");
    assert_eq!(
        sim.calls("Reboot"),
        (0, 0),
        "nothing sent on ambiguous evidence"
    );

    // An admin does not change that: the attempt is settled, a person must answer.
    let out = runbook(&["resume", "--yes"], &admin, false);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(sim.calls("Reboot"), (0, 0));

    let run_id = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["approve", &run_id, "reboot", "--state-dir"])
        .arg(&state)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = runbook(&["resume"], &admin, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.calls("Reboot"), (1, 1), "{}", text(&out));
    sim.stop();
}
