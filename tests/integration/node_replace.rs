//! `node-replace` rehearsed end to end against a simulator running outside the `runbook`
//! process: the `dead` variant on `node-dead-with-spare`, the `rebuild` variant on `healthy`,
//! the `stale-member` variant on `stale-member`, an install disk the replacement does not
//! have, and kills inside the non-idempotent calls (EtcdRemoveMemberByID, Reset,
//! ApplyConfiguration). Every rehearsal checks the simulator's call log: node-replace never
//! sends Bootstrap, and no non-idempotent call is ever repeated.

use std::path::PathBuf;
use std::process::{Command, Output};

use runbook::sim::Scenario;

/// Fast enough for the 40-minute join waits, slow enough for the 5 s node-down confirmation.
const SPEED: f64 = 200.0;

struct Rehearsal {
    rt: tokio::runtime::Runtime,
    handle: runbook::sim::SimHandle,
    dir: tempfile::TempDir,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Rehearsal {
    fn start(scenario: Scenario) -> Rehearsal {
        let dir = tempfile::tempdir().unwrap();
        let (rt, handle) = crate::run_harness::simulator(scenario, SPEED, dir.path());
        Rehearsal { rt, handle, dir }
    }

    fn sim(&self, p: &str) -> PathBuf {
        self.dir.path().join("sim").join(p)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A machine config for the replacement, written beside the simulator's files.
    fn config(&self, name: &str, hostname: &str, disk: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(
            &p,
            runbook::sim::node::control_plane_config(
                hostname,
                disk,
                runbook::sim::node::VANILLA_IMAGE,
                false,
            ),
        )
        .unwrap();
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
        c.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .env_remove("TALOSCONFIG")
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env_remove("RUNBOOK_TEST_KILL_IN_EFFECT")
            .env_remove("RUNBOOK_TEST_KILL_AFTER_RECORD");
        c
    }

    /// `runbook run node-replace --yes` against the simulator with `params`.
    fn run_cmd(&self, params: &[String]) -> Command {
        let mut c = self.command(&["run", "node-replace", "--yes", "--output", "plain"]);
        c.arg("--talosconfig")
            .arg(self.sim("talosconfig"))
            .arg("--kubeconfig")
            .arg(self.sim("kubeconfig"))
            .arg("--node-endpoints")
            .arg(self.sim("endpoints.json"));
        c.arg("--param").arg(format!(
            "backup_dir={}",
            self.dir.path().join("snaps").display()
        ));
        for p in params {
            c.arg("--param").arg(p);
        }
        c
    }

    fn run(&self, params: &[String]) -> Output {
        self.run_cmd(params).output().unwrap()
    }

    /// `(successful, all)` calls of `method`.
    fn calls(&self, method: &str) -> (usize, usize) {
        self.handle.cluster().with(|c, _| {
            let calls: Vec<_> = c.call_log().iter().filter(|r| r.method == method).collect();
            (
                calls.iter().filter(|r| r.result.is_ok()).count(),
                calls.len(),
            )
        })
    }

    /// The nodes of the successful `method` calls.
    fn call_nodes(&self, method: &str) -> Vec<String> {
        crate::run_harness::successful_calls(self.handle.cluster(), method)
    }

    /// `(voters, learners)` by hostname, as `via` lists them.
    fn members(&self, via: &str) -> (Vec<String>, Vec<String>) {
        self.handle.cluster().with(|c, now| {
            let members = c.etcd_member_list(via, false, now).unwrap_or_default();
            let names = |learner: bool| {
                let mut v: Vec<String> = members
                    .iter()
                    .filter(|m| m.is_learner == learner)
                    .map(|m| m.hostname.clone())
                    .collect();
                v.sort();
                v
            };
            (names(false), names(true))
        })
    }

    /// Whether Kubernetes has a Node object named `name`.
    fn kube_node(&self, name: &str) -> bool {
        self.handle
            .cluster()
            .with(|c, now| c.k8s_get_node(name, now).is_ok())
    }

    /// The etcd voters, by hostname as `.20` lists them, are exactly `expected`, and no
    /// learner is left.
    fn voters_are(&self, expected: &[&str], log: &str) {
        let (voters, learners) = self.members("192.168.2.20");
        assert_eq!(voters, expected, "{log}");
        assert!(learners.is_empty(), "{learners:?}\n{log}");
    }

    fn no_bootstrap(&self) {
        assert_eq!(
            self.calls("Bootstrap"),
            (0, 0),
            "node-replace never sends Bootstrap: a replacement joins"
        );
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

/// The rebuild variant of the control plane `ip` (hostname `host`) onto itself, with a config
/// for it installing to `/dev/sda`.
fn rebuild_params(r: &Rehearsal, ip: &str, host: &str) -> Vec<String> {
    let config = r.config(&format!("{host}.yaml"), host, "/dev/sda");
    vec![
        "variant=rebuild".into(),
        format!("node={ip}"),
        format!("member={host}"),
        format!("replacement={ip}"),
        format!("config={}", config.display()),
    ]
}

fn spare_params(r: &Rehearsal) -> Vec<String> {
    vec![
        "replacement=192.168.2.50".into(),
        format!("config={}", r.sim("configs/192.168.2.50.yaml").display()),
    ]
}

/// The dead variant with every default read from the cluster: `.49` (the only silent node
/// whose member is still listed) and its member by id, a healthy non-leader survivor. The dead
/// member is removed only after `.49` is confirmed down twice and quorum survives, the
/// two-voter window is checked, the spare's disk (from its config) is checked, it is installed
/// over the insecure maintenance API (never bootstrapped) and joins as the third voter.
#[test]
fn node_replace_swaps_a_dead_node_for_a_spare() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let out = r.run(&spare_params(&r));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("node = 192.168.2.49") || t.contains("node=192.168.2.49"),
        "the dead node is defaulted from the cluster:\n{t}"
    );
    assert!(t.contains("guard `talos.node-down` passed"), "{t}");
    assert!(t.contains("guard `talos.install-disk-ok` passed"), "{t}");
    assert!(t.contains("guard `talos.not-member` passed"), "{t}");
    assert!(t.contains("skipped  reset_old"), "{t}");
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (1, 1), "{t}");
    assert_eq!(r.calls("Reset"), (0, 0), "{t}");
    assert_eq!(r.call_nodes("ApplyConfiguration"), vec!["192.168.2.50"]);
    r.no_bootstrap();
    r.voters_are(&["mac-223", "mac-50", "nuc-20"], &t);
    assert!(t.contains("guard `etcd.member-of-node` passed"), "{t}");
    assert!(
        !r.kube_node("mac-49"),
        "the dead node's Node object is deleted"
    );
    r.stop();
}

/// The rebuild variant on the healthy seed cluster: `.49` is healthy, so it leaves etcd itself
/// by a graceful reset (no EtcdRemoveMemberByID is sent), lands in maintenance mode, is
/// reinstalled with its config and joins again: three voters, one graceful Reset.
#[test]
fn node_replace_rebuilds_a_healthy_node_with_one_graceful_reset() {
    let r = Rehearsal::start(Scenario::Healthy);
    let out = r.run(&rebuild_params(&r, "192.168.2.49", "mac-49"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("guard `etcd.safe-remove` passed"), "{t}");
    assert!(t.contains("skipped  remove_member"), "{t}");
    assert!(t.contains("guard `talos.install-disk-ok` passed"), "{t}");
    assert_eq!(r.call_nodes("Reset"), vec!["192.168.2.49"], "{t}");
    assert_eq!(r.calls("Reset"), (1, 1), "{t}");
    // It left etcd itself: nobody removed its member, and only a graceful reset leaves etcd
    // (a non-graceful one wipes the member's data and leaves the member listed).
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (0, 0), "{t}");
    assert_eq!(r.call_nodes("ApplyConfiguration"), vec!["192.168.2.49"]);
    r.no_bootstrap();
    r.voters_are(&["mac-223", "mac-49", "nuc-20"], &t);
    // Reinstalled: a new member id, running again.
    let stage = r
        .handle
        .cluster()
        .with(|c, now| c.machine_status("192.168.2.49", now).map(|s| s.stage));
    assert_eq!(stage.unwrap(), runbook::sim::Stage::Running);
    r.stop();
}

/// The rebuild variant refuses to remove a healthy voter while another is down: with `.49`
/// dead, resetting `.223` would leave one healthy voter of two.
#[test]
fn node_replace_rebuild_refuses_without_three_healthy_voters() {
    let r = Rehearsal::start(Scenario::NodeDead);
    let mut params = rebuild_params(&r, "192.168.2.223", "mac-223");
    params.push("survivor=192.168.2.20".into());
    let out = r.run(&params);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("removing `192.168.2.223` leaves 1 healthy of 2"),
        "{t}"
    );
    assert_eq!(r.calls("Reset"), (0, 0), "{t}");
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (0, 0), "{t}");
    r.no_bootstrap();
    r.stop();
}

/// `stale-member`: the Mac moved from `.48` to `.49` under a new hostname and cannot join while
/// `mac-48` is listed. The old member (defaulted from the cluster: the silent `.48`'s member,
/// by id) is removed, and `.49` joins as a voter by itself: nothing is applied or reset.
#[test]
fn node_replace_removes_a_stale_member_and_the_new_node_joins() {
    let r = Rehearsal::start(Scenario::StaleMember);
    let out = r.run(&[
        "variant=stale-member".into(),
        "replacement=192.168.2.49".into(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("192.168.2.48"),
        "the old address is defaulted:\n{t}"
    );
    assert!(t.contains("guard `talos.node-down` passed"), "{t}");
    assert_eq!(r.call_nodes("EtcdRemoveMemberByID").len(), 1, "{t}");
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (1, 1), "{t}");
    assert_eq!(r.calls("ApplyConfiguration"), (0, 0), "{t}");
    assert_eq!(r.calls("Reset"), (0, 0), "{t}");
    r.no_bootstrap();
    r.voters_are(&["mac-223", "mac-49", "nuc-20"], &t);
    assert!(!r.kube_node("mac-48"), "the old Node object is deleted");
    r.stop();
}

/// A member given by hand that is not the dead node's (the hostname of a healthy neighbour):
/// refused before any removal, naming the machine it belongs to.
#[test]
fn node_replace_refuses_to_remove_a_member_that_is_not_the_nodes() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let mut params = spare_params(&r);
    params.push("member=mac-223".into());
    let out = r.run(&params);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("etcd member `mac-223`") && t.contains("is not the member of `192.168.2.49`"),
        "{t}"
    );
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (0, 0), "{t}");
    r.no_bootstrap();
    r.stop();
}

/// On a healthy cluster nothing has departed: the dead variant's defaults refuse before any
/// run starts, naming the param to give.
#[test]
fn node_replace_on_a_healthy_cluster_refuses_to_guess_the_node() {
    let r = Rehearsal::start(Scenario::Healthy);
    let out = r.run(&["replacement=192.168.2.50".into()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("no node has departed"), "{t}");
    assert!(t.contains("--param node="), "{t}");
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (0, 0), "{t}");
    assert_eq!(r.calls("Reset"), (0, 0), "{t}");
    r.stop();
}

/// The seed's fifth lesson in a rebuild: the USB stick in `.49` took `/dev/sda`, which the
/// config names. The disk check against the running node refuses before the Reset, naming the
/// disk, so the healthy node is never wiped for an install that would go to the stick.
#[test]
fn node_replace_rebuild_refuses_before_the_reset_when_the_usb_stick_took_the_disk() {
    let r = Rehearsal::start(Scenario::UsbDiskShift);
    let out = r.run(&rebuild_params(&r, "192.168.2.49", "mac-49"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("talos.install-disk-ok"), "{t}");
    assert!(
        t.contains("/dev/sda on `192.168.2.49` is the USB stick"),
        "{t}"
    );
    assert_eq!(r.calls("Reset"), (0, 0), "{t}");
    assert_eq!(r.calls("ApplyConfiguration"), (0, 0), "{t}");
    r.no_bootstrap();
    r.stop();
}

/// The dead variant without a config: refused at the preflight (nothing to lint is no pass),
/// before any snapshot or removal.
#[test]
fn node_replace_without_a_config_refuses_before_any_change() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let out = r.run(&["replacement=192.168.2.50".into()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("L0"), "{t}");
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (0, 0), "{t}");
    assert_eq!(r.calls("EtcdSnapshot"), (0, 0), "{t}");
    r.no_bootstrap();
    r.stop();
}

/// The config names an install disk the spare does not have: refused at the disk check,
/// before any ApplyConfiguration, naming the disk.
#[test]
fn node_replace_refuses_a_config_whose_install_disk_the_replacement_lacks() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let config = r.config("mac-50-nvme.yaml", "mac-50", "/dev/nvme0n1");
    let out = r.run(&[
        "replacement=192.168.2.50".into(),
        format!("config={}", config.display()),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("talos.install-disk-ok"), "{t}");
    assert!(
        t.contains("no disk on `192.168.2.50` matches /dev/nvme0n1"),
        "the refusal names the disk:\n{t}"
    );
    assert_eq!(r.calls("ApplyConfiguration"), (0, 0), "{t}");
    r.no_bootstrap();
    r.stop();
}

/// Runs node-replace killed at `point` inside its first `action`, resumes until the run ends,
/// and checks it succeeded with exactly one `method` call (never lost, never repeated) and no
/// Bootstrap.
fn killed_inside(r: &Rehearsal, params: &[String], action: &str, point: &str, method: &str) {
    let out = r
        .run_cmd(params)
        .env("RUNBOOK_TEST_KILL_IN_EFFECT", format!("{action}:1:{point}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "`run` must die inside `{action}` ({point}):\n{}",
        text(&out)
    );
    let mut log = String::new();
    let mut finished = false;
    for _ in 0..3 {
        let out = r
            .command(&["resume", "--yes", "--output", "plain"])
            .output()
            .unwrap();
        log.push_str(&text(&out));
        if out.status.code() == Some(0) {
            finished = true;
            break;
        }
    }
    assert!(finished, "{action} {point}: resume did not finish:\n{log}");
    assert_eq!(
        r.calls(method),
        (1, 1),
        "{action} killed {point}: exactly one `{method}` call, and it succeeded\n{log}"
    );
    r.no_bootstrap();
    let (voters, _) = r.members("192.168.2.20");
    assert_eq!(voters.len(), 3, "{voters:?}\n{log}");
}

#[test]
fn node_replace_killed_inside_remove_member_resumes_without_a_second_removal() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let params = spare_params(&r);
    killed_inside(
        &r,
        &params,
        "etcd.remove-member",
        "after",
        "EtcdRemoveMemberByID",
    );
    assert_eq!(r.calls("ApplyConfiguration"), (1, 1));
    r.stop();
}

#[test]
fn node_replace_killed_inside_reset_resumes_without_a_second_reset() {
    let r = Rehearsal::start(Scenario::Healthy);
    let params = rebuild_params(&r, "192.168.2.49", "mac-49");
    killed_inside(&r, &params, "talos.reset", "after", "Reset");
    assert_eq!(r.calls("ApplyConfiguration"), (1, 1));
    r.stop();
}

#[test]
fn node_replace_killed_inside_the_maintenance_apply_resumes_without_a_second_apply() {
    let r = Rehearsal::start(Scenario::NodeDeadWithSpare);
    let params = spare_params(&r);
    killed_inside(
        &r,
        &params,
        "talos.apply-config",
        "after",
        "ApplyConfiguration",
    );
    assert_eq!(r.calls("EtcdRemoveMemberByID"), (1, 1));
    r.stop();
}
