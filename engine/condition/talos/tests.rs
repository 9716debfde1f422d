//! Unit tests of `talos.rs`, kept apart so the module itself stays readable.

use super::*;
use crate::condition::etcd::tests::member;
use crate::condition::etcd::tests::{down, three};
use crate::condition::view::{Contact, Disk, Gap, GapKind, Service};

#[test]
fn ready_is_not_running() {
    let mut v = three();
    let a = &mut v.nodes[0];
    a.stage = Observed::Answered("booting".into());
    a.ready = Observed::Answered(true);
    a.kube_ready = Observed::Answered(Some(true));
    if let Observed::Answered(s) = &mut a.services {
        s.push(Service {
            id: "ext-nvidia-persistenced".into(),
            state: "Waiting".into(),
            healthy: false,
        });
    }
    let r = node_running(&v, "a");
    assert!(!r.holds);
    assert_eq!(
        r.reason,
        "`a` is in stage booting (ext-nvidia-persistenced is Waiting)"
    );
    assert!(!all_running(&v).holds);
    // Fast-fail only after the configured time.
    assert!(matches!(
        running(&v, "a", Duration::from_secs(60), Duration::from_secs(600)),
        Poll::NotYet(_)
    ));
    let Poll::GiveUp(g) = running(&v, "a", Duration::from_secs(600), Duration::from_secs(600))
    else {
        panic!("expected a fast-fail");
    };
    assert!(
        g.reason.contains("ext-nvidia-persistenced waiting for 10m"),
        "{}",
        g.reason
    );
    // `a` answered an empty PCI list: no cause is named.
    assert!(
        g.reason.contains("the cause could not be told"),
        "{}",
        g.reason
    );
    assert_eq!(g.figures["cause"], "unknown");
}

/// `a` stuck in booting on ext-nvidia-persistenced, with these PCI vendors and modules.
fn stuck(pci: Observed<Vec<String>>, modules: Observed<Vec<String>>) -> ClusterView {
    let mut v = three();
    let a = &mut v.nodes[0];
    a.stage = Observed::Answered("booting".into());
    a.ready = Observed::Answered(false);
    a.services = Observed::Answered(vec![
        Service {
            id: "etcd".into(),
            state: "Running".into(),
            healthy: true,
        },
        Service {
            id: "ext-nvidia-persistenced".into(),
            state: "Waiting".into(),
            healthy: false,
        },
    ]);
    a.pci_vendors = pci;
    a.kernel_modules = modules;
    v
}

fn strings(v: &[&str]) -> Observed<Vec<String>> {
    Observed::Answered(v.iter().map(|s| s.to_string()).collect())
}

fn give_up(v: &ClusterView) -> Verdict {
    match running(v, "a", Duration::from_secs(180), Duration::from_secs(180)) {
        Poll::GiveUp(g) => g,
        other => panic!("expected a fast-fail, got {other:?}"),
    }
}

#[test]
fn the_stuck_booting_diagnosis_names_the_missing_modules() {
    let v = stuck(strings(&["0x8086", NVIDIA_VENDOR]), strings(&["nvidia"]));
    let g = give_up(&v);
    assert_eq!(
        g.reason,
        "`a` is stuck in booting: ext-nvidia-persistenced waiting for 3m; the nvidia kernel modules are not configured (missing: nvidia_uvm, nvidia_drm, nvidia_modeset): runbook run gpu-enable --param node=a"
    );
    assert_eq!(g.figures["cause"], "nvidia-modules-missing");
    assert_eq!(
        g.figures["missing_modules"],
        serde_json::json!(["nvidia_uvm", "nvidia_drm", "nvidia_modeset"])
    );
}

#[test]
fn the_stuck_booting_diagnosis_names_the_nvidia_image_without_a_gpu() {
    // No NVIDIA device, and no module configured either: the image is the cause, not the
    // modules (configuring them would not help a node without the GPU).
    let v = stuck(strings(&["0x8086", "0x1002"]), strings(&[]));
    let g = give_up(&v);
    assert!(
        g.reason.contains(
            "the NVIDIA image runs on a node without an NVIDIA GPU (no PCI vendor 0x10de): install the vanilla installer image on `a`"
        ),
        "{}",
        g.reason
    );
    assert!(!g.reason.contains("modules"), "{}", g.reason);
    assert_eq!(g.figures["cause"], "nvidia-image-without-gpu");
}

#[test]
fn the_stuck_booting_diagnosis_never_guesses_on_missing_evidence() {
    let denied =
        |call: &str| Observed::Missing(Gap::new(call, GapKind::PermissionDenied, "not authorized"));
    // PCI list unreadable (refused, not asked, empty, failed): cause not told, whatever the
    // modules say.
    for pci in [
        denied("PCIDevices"),
        Observed::NotAsked,
        strings(&[]),
        Observed::Missing(Gap::new("PCIDevices", GapKind::Failed, "undecodable")),
    ] {
        for modules in [
            strings(&[]),
            strings(NVIDIA_MODULES),
            denied("KernelModuleSpecs"),
        ] {
            let g = give_up(&stuck(pci.clone(), modules));
            assert!(
                g.reason.contains("the cause could not be told"),
                "{}",
                g.reason
            );
            assert!(
                !g.reason.contains("not configured") && !g.reason.contains("without an NVIDIA GPU"),
                "{}",
                g.reason
            );
            assert_eq!(g.figures["cause"], "unknown");
        }
    }
    let g = give_up(&stuck(denied("PCIDevices"), strings(&[])));
    assert!(
        g.reason.contains(
            "a refused PCIDevices (PermissionDenied), so whether it has an NVIDIA GPU is not known"
        ),
        "{}",
        g.reason
    );
    // GPU there, modules unreadable: not told either.
    let g = give_up(&stuck(
        strings(&[NVIDIA_VENDOR]),
        denied("KernelModuleSpecs"),
    ));
    assert!(
        g.reason.contains(
            "the cause could not be told: it has an NVIDIA GPU, but a refused KernelModuleSpecs"
        ),
        "{}",
        g.reason
    );
    // GPU and every module: neither known cause, said so.
    let g = give_up(&stuck(strings(&[NVIDIA_VENDOR]), strings(NVIDIA_MODULES)));
    assert!(
        g.reason.contains("neither known cause applies"),
        "{}",
        g.reason
    );
    assert_eq!(g.figures["cause"], "neither-known-cause");
    // Before the window: keep waiting, no diagnosis yet.
    let v = stuck(strings(&["0x8086"]), strings(&[]));
    assert!(matches!(
        running(&v, "a", Duration::from_secs(179), Duration::from_secs(180)),
        Poll::NotYet(_)
    ));
    // A node that is not booting (Ready but a service Failed) is not fast-failed here.
    let mut v = stuck(strings(&["0x8086"]), strings(&[]));
    v.nodes[0].stage = Observed::Answered("running".into());
    assert!(matches!(
        running(&v, "a", Duration::from_secs(3600), Duration::from_secs(180)),
        Poll::NotYet(_)
    ));
}

#[test]
fn uptime_is_parsed_or_refused() {
    assert_eq!(
        parse_uptime("350735.47 234388.90\n"),
        Some(Duration::from_secs_f64(350_735.47))
    );
    assert_eq!(parse_uptime("12 3"), Some(Duration::from_secs(12)));
    for bad in ["", "-5 1", "NaN 1", "inf 0", "1e300 0", "abc", "  "] {
        assert_eq!(parse_uptime(bad), None, "{bad:?}");
    }
}

#[test]
fn healthy_cluster_is_all_running() {
    assert!(all_running(&three()).holds);
    assert!(matches!(
        running(&three(), "b", Duration::ZERO, Duration::ZERO),
        Poll::Holds(_)
    ));
}

#[test]
fn reboot_is_proven_by_a_new_boot_id() {
    let mut v = three();
    v.nodes[0].boot_id = Observed::Answered("one".into());
    assert!(!rebooted(&v, "a", "one").holds);
    v.nodes[0].boot_id = Observed::Missing(Gap::new(
        "Read /proc/sys/kernel/random/boot_id",
        GapKind::Unreachable,
        "rebooting",
    ));
    assert!(!rebooted(&v, "a", "one").holds);
    v.nodes[0].boot_id = Observed::Answered("two".into());
    assert!(rebooted(&v, "a", "one").holds);
}

fn disk(path: &str, model: &str, transport: &str) -> Disk {
    Disk {
        dev_path: path.into(),
        model: model.into(),
        serial: format!("S-{model}"),
        transport: transport.into(),
        readonly: false,
        cdrom: false,
        size: 1 << 40,
    }
}

#[test]
fn usb_disk_shift_is_caught() {
    let mut v = three();
    v.nodes[2].disks = Observed::Answered(vec![disk("/dev/sda", "APPLE SSD", "sata")]);
    assert!(disk_unambiguous(&v, "c", Some("/dev/sda"), None, None).holds);
    // With the USB stick plugged in, /dev/sda is the stick and the SSD moved to /dev/sdc.
    v.nodes[2].disks = Observed::Answered(vec![
        disk("/dev/sda", "USB Flash", "usb"),
        disk("/dev/sdc", "APPLE SSD", "sata"),
    ]);
    let d = disk_unambiguous(&v, "c", Some("/dev/sda"), None, None);
    assert!(!d.holds);
    assert!(d.reason.contains("USB stick"), "{}", d.reason);
    assert!(disk_unambiguous(&v, "c", None, Some("APPLE SSD"), None).holds);
}

#[test]
fn nvidia_image_only_on_gpu_nodes_and_modules_required() {
    let mut v = three();
    v.nodes[0].pci_vendors = Observed::Answered(vec![NVIDIA_VENDOR.into()]);
    let nv = format!(
        "factory.talos.dev/installer/{}:v1.11.5",
        NVIDIA_SCHEMATICS[0]
    );
    assert!(image_matches_hardware(&v, "a", &nv).holds);
    assert!(!image_matches_hardware(&v, "b", &nv).holds);
    assert!(image_matches_hardware(&v, "b", "ghcr.io/siderolabs/installer:v1.11.5").holds);
    assert!(!image_matches_hardware(&v, "a", "ghcr.io/siderolabs/installer:v1.11.5").holds);
    assert!(!gpu_modules(&v, "a").holds);
    v.nodes[0].kernel_modules =
        Observed::Answered(NVIDIA_MODULES.iter().map(|s| s.to_string()).collect());
    assert!(gpu_modules(&v, "a").holds);
    // PCI devices that could not be read are not "no GPU".
    v.nodes[1].pci_vendors = Observed::Missing(Gap::new(
        "PCIDevices",
        GapKind::PermissionDenied,
        "not authorized",
    ));
    let r = image_matches_hardware(&v, "b", "ghcr.io/siderolabs/installer:v1.11.5");
    assert!(!r.holds);
    assert_eq!(
        r.reason,
        "cannot decide: b refused PCIDevices (PermissionDenied)"
    );
}

#[test]
fn not_member_needs_maintenance_or_a_quorum_of_lists() {
    let mut v = three();
    assert!(!not_member(&v, "a").holds);
    v.nodes[0].contact = Observed::Answered(Contact::Maintenance);
    assert!(not_member(&v, "a").holds);
    // A configured node no list names: passes only with lists from a quorum of voters.
    let ms = [member(1, false), member(2, false)];
    let mut v = three();
    v.nodes[0] = crate::condition::etcd::tests::node("a", 1, &ms, 1);
    v.nodes[1] = crate::condition::etcd::tests::node("b", 2, &ms, 1);
    v.nodes[2].members = Observed::Answered(ms.to_vec());
    v.nodes[2].etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "not running"));
    v.nodes[2].hostname = Observed::Answered("host-3".into());
    let r = not_member(&v, "c");
    assert!(r.holds, "{}", r.reason);
    // The same with one witness refused by role: one of two voters is no quorum.
    v.nodes[1].members = Observed::Missing(Gap::new(
        "EtcdMemberList",
        GapKind::PermissionDenied,
        "not authorized",
    ));
    let r = not_member(&v, "c");
    assert!(!r.holds);
    assert!(r.reason.contains("not a quorum"), "{}", r.reason);
    assert!(
        r.reason.contains("b refused EtcdMemberList"),
        "{}",
        r.reason
    );
}

#[test]
fn a_healthy_voter_read_by_nobody_is_not_a_non_member() {
    let mut v = three();
    for n in &mut v.nodes {
        let label = n.label.clone();
        *n = NodeView::silent(
            &label,
            Gap::new("MachineStatus", GapKind::PermissionDenied, "not authorized"),
        );
    }
    let r = not_member(&v, "a");
    assert!(!r.holds);
    assert_eq!(
        r.reason,
        "cannot decide: a refused MachineStatus (PermissionDenied)"
    );
    // An empty hostname is no evidence either.
    let mut v = three();
    v.nodes[0].hostname = Observed::Missing(Gap::new(
        "Read /proc/sys/kernel/hostname",
        GapKind::Failed,
        "empty hostname",
    ));
    v.nodes[0].etcd = Observed::Missing(Gap::new("EtcdStatus", GapKind::Failed, "x"));
    for n in &mut v.nodes {
        if let Observed::Answered(l) = &mut n.members {
            for m in l.iter_mut() {
                m.peer_urls.clear();
            }
        }
    }
    let r = not_member(&v, "a");
    assert!(!r.holds, "{}", r.reason);
}

#[test]
fn node_down_needs_two_silent_observations_and_a_witness() {
    let mut v = three();
    assert!(!node_down(&v, Some(&v), "b").holds);
    down(&mut v, "b");
    let once = node_down(&v, None, "b");
    assert!(!once.holds);
    assert!(once.reason.contains("two observations"), "{}", once.reason);
    let r = node_down(&v, Some(&v), "b");
    assert!(r.holds, "{}", r.reason);
    // It came back between the two looks.
    assert!(!node_down(&v, Some(&three()), "b").holds);
    // Everything silent: it may be the observer that is offline.
    let mut dark = three();
    for l in ["a", "b", "c"] {
        down(&mut dark, l);
    }
    let r = node_down(&dark, Some(&dark), "b");
    assert!(!r.holds);
    assert!(r.reason.contains("observer's own"), "{}", r.reason);
    // A role refusal is not silence.
    let mut denied = three();
    denied.nodes[1] = NodeView::silent(
        "b",
        Gap::new("MachineStatus", GapKind::PermissionDenied, "not authorized"),
    );
    assert!(!node_down(&denied, Some(&denied), "b").holds);
}

#[test]
fn no_init_needs_every_type_read() {
    let mut v = three();
    assert!(no_init(&v, &[]).holds);
    v.nodes[1].machine_type = Observed::Answered("init".into());
    assert!(!no_init(&v, &[]).holds);
    let mut v = three();
    v.nodes[1].machine_type = Observed::Missing(Gap::new(
        "MachineType",
        GapKind::PermissionDenied,
        "not authorized",
    ));
    assert_eq!(
        no_init(&v, &[]).reason,
        "cannot decide: b refused MachineType (PermissionDenied)"
    );
    let mut v = three();
    down(&mut v, "c");
    assert!(!no_init(&v, &[]).holds);
    assert!(no_init(&v, &["c".to_string()]).holds);
}
