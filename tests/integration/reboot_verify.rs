//! reboot-verify and the stuck-booting diagnosis, rehearsed on the simulator: a dead node
//! refuses the run before any reboot (with the default node list too), a node that never comes
//! back stops the run at that node with no mutating call to any other node afterwards, and a
//! `talos.running` wait on a node stuck in `booting` gives up within a few simulated minutes
//! naming the cause the evidence shows (missing nvidia modules; the NVIDIA image without an
//! NVIDIA PCI device). Timeouts given as `${{ params.X }}` are folded at plan time, with a
//! spanned error for a value that is not a duration.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use runbook::diagnostic::Code;
use runbook::journal::{Journal, Record};
use runbook::sim::Scenario;
use runbook::sim::pki::Role;

use crate::harness::{check_yaml, only, plan_yaml};
use crate::run_harness::{Env, simulator, text};

const NUC_20: &str = "192.168.2.20";
const MAC_223: &str = "192.168.2.223";
const MAC_49: &str = "192.168.2.49";

/// Cluster flags for an external simulator in `dir/sim`.
fn cluster_flags(handle: &runbook::sim::SimHandle, dir: &Path) -> Vec<String> {
    let sim = dir.join("sim");
    vec![
        "--talosconfig".into(),
        handle.talosconfig_for(Role::Admin).display().to_string(),
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

fn records(env: &Env) -> Vec<Record> {
    Journal::read(&env.the_run())
        .unwrap()
        .contents
        .entries
        .into_iter()
        .map(|e| e.record)
        .collect()
}

/// Every mutating call in the simulator's log as (method, target, at), in order; Talos calls
/// name the node's address, Kubernetes calls the Node object (the hostname).
fn mutating_calls(handle: &runbook::sim::SimHandle) -> Vec<(String, String, Duration)> {
    handle.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .map(|r| (r.method.clone(), r.node.clone(), r.at.as_duration()))
            .collect()
    })
}

/// Whether a call's target is node `label` (by address or by its hostname).
fn targets(handle: &runbook::sim::SimHandle, target: &str, label: &str) -> bool {
    let host = handle.cluster().with(|c, _| {
        c.node(label)
            .map(|n| n.hostname().to_string())
            .unwrap_or_default()
    });
    target == label || target == host
}

fn write_runbook(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: {name}\n  description: test\n{body}"
        ),
    )
    .unwrap();
    path
}

/// The node-dead rehearsal, beyond the explicit node list the preflight test uses
/// (`preflight::reboot_verify_is_refused_on_node_dead_before_any_reboot_with_the_quorum_figures`):
/// with the default node list the run is refused before it starts (the list cannot be read
/// from a cluster with a silent node), and leaving the dead node out of the list does not get
/// past the preflight, which still shows the quorum figures; nothing is sent either way.
#[test]
fn reboot_verify_on_node_dead_refuses_before_any_reboot_with_defaults_or_without_the_dead_node() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::NodeDead, 100.0, env.path());
    let flags = cluster_flags(&handle, env.path());
    let out = run_with(&env, &["run", "reboot-verify"], &flags);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("cannot default parameter `nodes` from the cluster"),
        "{t}"
    );
    assert!(t.contains(&format!("node {MAC_49} did not answer")), "{t}");
    assert!(mutating_calls(&handle).is_empty());

    // The operator skips the dead node: the preflight still refuses, with the figures.
    let out = run_with(
        &env,
        &[
            "run",
            "reboot-verify",
            "--param",
            &format!("nodes={MAC_223},{NUC_20}"),
        ],
        &flags,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("quorum margin 0: 2 of 3 voters healthy, 2 needed"),
        "{t}"
    );
    let figures = records(&env)
        .into_iter()
        .find_map(|r| match r {
            Record::GuardRefused { step, figures, .. } if step == "preflight" => Some(figures),
            _ => None,
        })
        .expect("the refusal is journaled");
    assert_eq!(figures["etcd"]["margin"], 0);
    assert_eq!(figures["etcd"]["healthy"], 2);
    assert!(
        mutating_calls(&handle).is_empty(),
        "{:?}",
        mutating_calls(&handle)
    );
    rt.block_on(handle.shutdown());
}

/// A node that never comes back from its reboot: the run stops at that node (the reboot's
/// wait times out after `boot_timeout`), the cordon's rollback is refused because the node is
/// not running (a half-booted or dead node stays cordoned, and the report says why), and no
/// mutating call reaches any other node after the failing node's reboot.
#[test]
fn reboot_verify_stops_at_a_node_that_never_comes_back_and_touches_no_other_node() {
    let env = Env::new();
    let (rt, handle) = simulator(Scenario::Healthy, 100.0, env.path());
    handle
        .cluster()
        .with(|c, _| c.keep_down(MAC_223, true))
        .unwrap();
    let flags = cluster_flags(&handle, env.path());
    let out = run_with(
        &env,
        &[
            "run",
            "reboot-verify",
            "--param",
            &format!("nodes={MAC_223},{MAC_49},{NUC_20}"),
            "--param",
            "boot_timeout=8s",
        ],
        &flags,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("verify[192.168.2.223].reboot"), "{t}");

    let calls = mutating_calls(&handle);
    let reboot = calls
        .iter()
        .position(|(m, n, _)| m == "Reboot" && n == MAC_223)
        .unwrap_or_else(|| panic!("the first node was rebooted: {calls:?}"));
    assert_eq!(
        calls.iter().filter(|(m, _, _)| m == "Reboot").count(),
        1,
        "{calls:?}"
    );
    // After the failing node's reboot, nothing reaches another node.
    let after: Vec<_> = calls[reboot + 1..]
        .iter()
        .filter(|(_, n, _)| !targets(&handle, n, MAC_223))
        .collect();
    assert!(
        after.is_empty(),
        "calls to other nodes after the reboot: {after:?}"
    );
    // Nor to the dead one: its uncordon needs it running.
    assert!(
        !calls[reboot + 1..].iter().any(|(m, _, _)| m == "PatchNode"),
        "{calls:?}"
    );
    // It stays down and cordoned; the others were never cordoned.
    let (down, cordoned) = handle.cluster().with(|c, _| {
        (
            c.node(MAC_223).map(|n| n.power()),
            c.call_log()
                .iter()
                .filter(|r| r.method == "PatchNode")
                .map(|r| r.node.clone())
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(down, Some(runbook::sim::node::Power::Off));
    assert_eq!(cordoned, vec!["mac-223".to_string()]);

    // The journal: the reboot's wait timed out, the later nodes never started, and the
    // uncordon rollback was refused for the node that is not running.
    let state = env.state_of(&env.the_run());
    for later in [MAC_49, NUC_20] {
        assert!(
            matches!(
                state.step_state(&format!("verify[{later}].record_boot")),
                runbook::journal::StepState::Pending
            ),
            "{later} was started"
        );
    }
    let rollback_refused = records(&env).into_iter().any(|r| match r {
        Record::GuardRefused { step, guard, .. } => {
            step.contains("uncordon_if_running") && guard == "talos.node-running"
        }
        _ => false,
    });
    assert!(rollback_refused, "{t}");
    // The report says the uncordon could not happen, and why: the node does not answer.
    assert!(
        t.contains("not undone: verify[192.168.2.223].cordon: rollback `uncordon_if_running@verify[192.168.2.223].cordon` refused: guard `talos.node-running` refused: cannot decide: 192.168.2.223 did not answer MachineStatus"),
        "{t}"
    );
    assert!(
        t.contains("wait `talos.rebooted` timed out after 8001 ms")
            || t.contains("wait `talos.rebooted` timed out after 8"),
        "{t}"
    );
    rt.block_on(handle.shutdown());
}

/// A `talos.running` wait on a node stuck in `booting`, with a long timeout: it must give up on
/// the fast-fail window (measured on the node's uptime, so within a few simulated minutes),
/// not the timeout, and say why.
fn stuck_wait(scenario: Scenario, node: &str) -> (String, Vec<Record>, Duration) {
    let env = Env::new();
    let (rt, handle) = simulator(scenario, 100.0, env.path());
    let flags = cluster_flags(&handle, env.path());
    let rb = write_runbook(
        env.path(),
        "stuck",
        &format!(
            "steps:\n  - id: running\n    wait:\n      condition: talos.running\n      with: {{ node: \"{node}\", fast_fail: 3m }}\n      timeout: 30m\n      interval: 1s\n"
        ),
    );
    let start = handle.cluster().with(|c, _| c.now());
    let out = run_with(&env, &["run", rb.to_str().unwrap()], &flags);
    // On the nodes' clock: the model divides realistic durations by the speed.
    let took = handle
        .cluster()
        .with(|c, _| c.now())
        .saturating_since(start)
        * 100;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let records = records(&env);
    rt.block_on(handle.shutdown());
    (t, records, took)
}

fn failure_figures(records: &[Record]) -> String {
    records
        .iter()
        .filter_map(|r| match r {
            Record::StepFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_running_wait_on_gpu_modules_missing_fails_fast_naming_the_missing_modules() {
    let (t, records, took) = stuck_wait(Scenario::GpuModulesMissing, NUC_20);
    assert!(
        t.contains("`192.168.2.20` is stuck in booting: ext-nvidia-persistenced waiting for"),
        "{t}"
    );
    assert!(
        t.contains("the nvidia kernel modules are not configured (missing: nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset)"),
        "{t}"
    );
    assert!(
        t.contains("runbook run gpu-enable --param node=192.168.2.20"),
        "{t}"
    );
    assert!(!t.contains("without an NVIDIA GPU"), "{t}");
    assert!(
        failure_figures(&records).contains("missing: nvidia, nvidia_uvm"),
        "{records:?}"
    );
    // Well before the wait's 30-minute timeout (and the node's 70-minute boot timeout), on
    // the simulator's own clock; measured on the wall it would have taken 3 wall minutes.
    assert!(
        took < Duration::from_secs(30 * 60),
        "took {took:?} simulated"
    );
}

#[test]
fn a_running_wait_on_nvidia_image_on_non_gpu_node_fails_fast_naming_the_image() {
    let (t, records, took) = stuck_wait(Scenario::NvidiaImageOnNonGpuNode, MAC_223);
    assert!(
        t.contains("`192.168.2.223` is stuck in booting: ext-nvidia-persistenced waiting for"),
        "{t}"
    );
    assert!(
        t.contains("the NVIDIA image runs on a node without an NVIDIA GPU (no PCI vendor 0x10de)"),
        "{t}"
    );
    assert!(!t.contains("not configured"), "{t}");
    assert!(
        failure_figures(&records).contains("without an NVIDIA GPU"),
        "{records:?}"
    );
    assert!(
        took < Duration::from_secs(30 * 60),
        "took {took:?} simulated"
    );
}

const TIMEOUT_RUNBOOK: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: t\n  description: t\nparams:\n  boot_timeout:\n    type: duration\n    default: 20m\n  label:\n    type: string\n    default: soon\nsteps:\n  - id: a\n    action: noop\n    wait:\n      condition: talos.stage\n      with: { node: n, stage: running }\n      timeout: \"${{ params.boot_timeout }}\"\n";

#[test]
fn a_wait_timeout_from_a_param_is_folded_at_plan_time() {
    let plan = plan_yaml(TIMEOUT_RUNBOOK, &[("boot_timeout", "7s")]).unwrap();
    let wait = plan.step("a").unwrap().wait.as_ref().unwrap();
    assert_eq!(wait.timeout, Duration::from_secs(7));
    let plan = plan_yaml(TIMEOUT_RUNBOOK, &[]).unwrap();
    assert_eq!(
        plan.step("a").unwrap().wait.as_ref().unwrap().timeout,
        Duration::from_secs(20 * 60)
    );
    // reboot-verify takes its wait timeouts from params (defaults unchanged).
    let rv = std::fs::read_to_string(crate::harness::root().join("runbooks/reboot-verify.yaml"))
        .unwrap();
    let plan = plan_yaml(&rv, &[("nodes", "192.168.2.20"), ("boot_timeout", "9s")]).unwrap();
    let reboot = plan.step("verify[192.168.2.20].reboot").unwrap();
    assert_eq!(
        reboot.wait.as_ref().unwrap().timeout,
        Duration::from_secs(9)
    );
    let running = plan.step("verify[192.168.2.20].running").unwrap();
    assert_eq!(
        running.wait.as_ref().unwrap().timeout,
        Duration::from_secs(30 * 60)
    );
}

#[test]
fn a_wait_timeout_that_is_not_a_duration_is_a_spanned_error() {
    let bad = TIMEOUT_RUNBOOK.replace("params.boot_timeout", "params.label");
    let (code, at, msg) = only(check_yaml(&bad));
    assert_eq!(code, Code::InvalidValue);
    assert_eq!(at, "19:21");
    assert!(
        msg.starts_with("invalid `timeout`: `params.label` gives"),
        "{msg}"
    );
    // Zero is no timeout.
    let (code, at, msg) = only(plan_yaml(TIMEOUT_RUNBOOK, &[("boot_timeout", "0s")]));
    assert_eq!((code, at.as_str()), (Code::InvalidValue, "19:21"), "{msg}");
    assert!(msg.contains("gives zero"), "{msg}");
    // An int param is whole seconds.
    let secs = TIMEOUT_RUNBOOK.replace(
        "type: duration\n    default: 20m",
        "type: int\n    default: 45",
    );
    let plan = plan_yaml(&secs, &[]).unwrap();
    assert_eq!(
        plan.step("a").unwrap().wait.as_ref().unwrap().timeout,
        Duration::from_secs(45)
    );
    // A timeout that reads a step's output cannot be known when the plan is made.
    let runtime = TIMEOUT_RUNBOOK.replace("params.boot_timeout", "steps.a.x");
    let (_, at, msg) = only(check_yaml(&runtime));
    assert_eq!(at, "19:21", "{msg}");
}
