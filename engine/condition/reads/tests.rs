//! The declared reads are checked against the checks themselves: a wrong declaration fails
//! here.

use std::time::Duration;

use super::*;
use crate::condition::check::{self, Args};
use crate::condition::etcd::tests::{down, three};
use crate::condition::view::{Disk, Gap, GapKind, Service};
use crate::condition::{CONDITIONS, GUARDS};

#[derive(Clone, Copy)]
enum Kind {
    Guard,
    Condition,
}

/// Every catalog check but the local `exec.succeeds`, with arguments that make it look at
/// node `node` (and `a` for disks and images).
fn checks(node: &str) -> Vec<(Kind, &'static str, Args)> {
    let args = |specs: &[crate::action::ArgSpec]| -> Args {
        specs
            .iter()
            .map(|s| {
                let v: serde_json::Value = match s.name {
                    "node" => node.into(),
                    "voters" => 3.into(),
                    "stage" => "running".into(),
                    "state" => "Running".into(),
                    "service" => "etcd".into(),
                    "member" => "host-2".into(),
                    "boot_id" => "boot-0".into(),
                    "image" => "factory.talos.dev/installer/nvidia:v1.11.5".into(),
                    "disk" => "/dev/sda".into(),
                    "dir" => "/nonexistent-runbook-test".into(),
                    "down" => serde_json::json!([]),
                    _ => match s.ty {
                        crate::action::ArgType::Duration => "10m".into(),
                        _ => serde_json::Value::Null,
                    },
                };
                (s.name.to_string(), v)
            })
            .filter(|(_, v)| !v.is_null())
            .collect()
    };
    let mut out: Vec<(Kind, &'static str, Args)> = GUARDS
        .iter()
        .map(|g| (Kind::Guard, g.name, args(g.args)))
        .collect();
    out.extend(
        CONDITIONS
            .iter()
            .filter(|c| c.name != crate::exec::command::SUCCEEDS)
            .map(|c| (Kind::Condition, c.name, args(c.args))),
    );
    out
}

fn evaluate(kind: Kind, name: &str, args: &Args, view: &ClusterView) -> String {
    match kind {
        Kind::Guard => format!("{:?}", check::guard(name, args, view)),
        Kind::Condition => format!(
            "{:?}",
            check::wait(name, args, view, Duration::from_secs(3600), Some("boot-1"))
        ),
    }
}

fn holds(kind: Kind, name: &str, args: &Args, view: &ClusterView) -> bool {
    match kind {
        Kind::Guard => check::guard(name, args, view).is_ok_and(|v| v.holds),
        Kind::Condition => matches!(
            check::wait(name, args, view, Duration::ZERO, Some("boot-1")),
            Ok(crate::condition::talos::Poll::Holds(_))
        ),
    }
}

/// Sets one fact of a node.
fn set(n: &mut NodeView, f: Fact, missing: bool) {
    fn to<T>(o: &mut Observed<T>, missing: bool, call: &str) {
        *o = if missing {
            Observed::Missing(Gap::new(call, GapKind::PermissionDenied, "not authorized"))
        } else {
            Observed::NotAsked
        };
    }
    match f {
        Fact::BootId => to(&mut n.boot_id, missing, "Read boot_id"),
        Fact::Services => to(&mut n.services, missing, "ServiceList"),
        Fact::Members => to(&mut n.members, missing, "EtcdMemberList"),
        Fact::EtcdStatus => to(&mut n.etcd, missing, "EtcdStatus"),
        Fact::Alarms => to(&mut n.alarms, missing, "EtcdAlarmList"),
        Fact::MachineType => to(&mut n.machine_type, missing, "MachineType"),
        Fact::KubeNodes => to(&mut n.kube_ready, missing, "list Nodes"),
        Fact::Pods => to(&mut n.evictable_pods, missing, "list Pods"),
        Fact::Disks => to(&mut n.disks, missing, "Disks"),
        Fact::Pci => to(&mut n.pci_vendors, missing, "PCIDevices"),
        Fact::KernelModules => to(&mut n.kernel_modules, missing, "KernelModuleSpecs"),
        Fact::Uptime => to(&mut n.uptime, missing, "Read /proc/uptime"),
    }
}

/// Views on which the checks take different paths.
fn bases() -> Vec<ClusterView> {
    let healthy = three();
    let mut gpu = three();
    if let Some(a) = gpu.nodes.first_mut() {
        a.pci_vendors = Observed::Answered(vec!["0x10de".into()]);
        a.kernel_modules = Observed::Answered(vec![
            "nvidia".into(),
            "nvidia_uvm".into(),
            "nvidia_drm".into(),
            "nvidia_modeset".into(),
        ]);
        a.disks = Observed::Answered(vec![Disk {
            dev_path: "/dev/sda".into(),
            model: "SSD".into(),
            serial: "S1".into(),
            transport: "sata".into(),
            readonly: false,
            cdrom: false,
            size: 512 << 30,
        }]);
        a.evictable_pods = Observed::Answered(2);
    }
    let mut one_down = three();
    down(&mut one_down, "c");
    let mut booting = three();
    if let Some(b) = booting.nodes.get_mut(1) {
        b.stage = Observed::Answered("booting".into());
        b.ready = Observed::Answered(false);
        b.services = Observed::Answered(vec![Service {
            id: "kubelet".into(),
            state: "Waiting".into(),
            healthy: false,
        }]);
        b.kube_ready = Observed::Answered(Some(false));
        b.boot_id = Observed::Answered("boot-0".into());
    }
    // A worker: no etcd member, its member list unreachable.
    let mut worker = three();
    if let Some(c) = worker.nodes.get_mut(2) {
        c.machine_type = Observed::Answered("worker".into());
        c.members = Observed::Missing(Gap::new(
            "EtcdMemberList",
            GapKind::Failed,
            "etcd is not running on a worker",
        ));
        c.etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "no etcd"));
    }
    // etcd answers its status on `b`, but its service is not running there.
    let mut preparing = three();
    if let Some(b) = preparing.nodes.get_mut(1) {
        b.services = Observed::Answered(vec![Service {
            id: "etcd".into(),
            state: "Preparing".into(),
            healthy: false,
        }]);
    }
    // Stuck booting on an NVIDIA service: `a` has the GPU but two modules are missing, `c`
    // has no GPU (the stuck-booting diagnosis reads PCI devices and modules).
    let mut nvidia_stuck = three();
    for (i, gpu) in [(0, true), (2, false)] {
        if let Some(n) = nvidia_stuck.nodes.get_mut(i) {
            n.stage = Observed::Answered("booting".into());
            n.services = Observed::Answered(vec![Service {
                id: "ext-nvidia-persistenced".into(),
                state: "Waiting".into(),
                healthy: false,
            }]);
            n.pci_vendors = Observed::Answered(if gpu {
                vec!["0x8086".into(), "0x10de".into()]
            } else {
                vec!["0x8086".into()]
            });
            n.kernel_modules = Observed::Answered(vec!["nvidia".into(), "nvidia_uvm".into()]);
            n.uptime = Observed::Answered(Duration::from_secs(3600));
        }
    }
    vec![
        healthy,
        gpu,
        one_down,
        booting,
        worker,
        preparing,
        nvidia_stuck,
    ]
}

#[test]
fn every_check_decides_the_same_on_its_declared_reads_as_on_a_full_view() {
    let mut compared = 0usize;
    for base in bases() {
        let mut views = vec![base.clone()];
        for i in 0..base.nodes.len() {
            for f in Fact::ALL {
                for missing in [true, false] {
                    let mut v = base.clone();
                    if let Some(n) = v.nodes.get_mut(i) {
                        set(n, f, missing);
                    }
                    views.push(v);
                }
            }
        }
        for node in ["a", "b", "c", "host-2"] {
            for (kind, name, args) in checks(node) {
                let reads = for_check(name);
                for v in &views {
                    let full = evaluate(kind, name, &args, v);
                    let narrow = evaluate(kind, name, &args, &restrict(v, reads));
                    assert_eq!(
                        full,
                        narrow,
                        "`{name}` (node {node}) declares {:?} but decides differently without the rest",
                        reads.facts()
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} comparisons");
}

#[test]
fn every_catalog_check_is_declared() {
    for g in GUARDS {
        assert!(declared(g.name), "guard `{}` has no declared reads", g.name);
    }
    for c in CONDITIONS {
        if c.name != crate::exec::command::SUCCEEDS {
            assert!(
                declared(c.name),
                "condition `{}` has no declared reads",
                c.name
            );
        }
    }
    assert_eq!(for_check("no.such-check"), Reads::ALL);
}

#[test]
fn no_check_that_reads_a_fact_passes_when_nothing_but_machine_status_was_read() {
    let mut checked = 0usize;
    for base in bases() {
        for node in ["a", "b", "c"] {
            for (kind, name, args) in checks(node) {
                if for_check(name) == Reads::NONE {
                    continue;
                }
                let nothing = restrict(&base, Reads::NONE);
                assert!(
                    !holds(kind, name, &args, &nothing),
                    "`{name}` (node {node}) passes on facts nobody read"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} checks");
}

#[test]
fn a_restricted_view_leaves_unread_facts_not_asked() {
    let v = restrict(&three(), for_check("kube.ready"));
    for n in &v.nodes {
        assert!(matches!(n.kube_ready, Observed::Answered(_)));
        assert!(matches!(n.disks, Observed::NotAsked));
        assert!(matches!(n.pci_vendors, Observed::NotAsked));
        assert!(matches!(n.members, Observed::NotAsked));
        assert!(matches!(n.stage, Observed::Answered(_)));
        assert!(matches!(n.hostname, Observed::Answered(_)));
    }
}
