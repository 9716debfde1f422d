//! Unit tests of `scenario.rs`, kept apart so the module itself stays readable.

use super::*;
use crate::sim::cluster::PodOwner;
use crate::sim::node::EtcdData;
use crate::sim::node::{
    ApplyMode, NVIDIA_MODULES, RebootMode, ResetRequest, ServiceState, UpgradeRequest,
};

fn fast() -> Speed {
    Speed::new(1.0).unwrap()
}

fn secs(c: &Cluster, s: u64) -> SimTime {
    c.now() + Duration::from_secs(s)
}

#[test]
fn scenario_names_round_trip() {
    for sc in Scenario::ALL {
        assert_eq!(sc.name().parse::<Scenario>().unwrap(), sc);
        assert!(!sc.description().is_empty());
    }
    assert!("nope".parse::<Scenario>().is_err());
}

#[test]
fn healthy_seed_cluster() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    for l in [NUC_20, MAC_223, MAC_49] {
        let ms = c.machine_status(l, now).unwrap();
        assert_eq!(ms.stage, Stage::Running, "{l}: {ms:?}");
        assert!(ms.ready, "{l}: {ms:?}");
    }
    let members = c.etcd_member_list(NUC_20, true, now).unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| !m.is_learner && !m.hostname.is_empty())
    );
    assert_eq!(c.k8s_list_nodes(now).unwrap().len(), 3);
    assert!(
        c.loaded_kernel_modules(NUC_20, now)
            .unwrap()
            .iter()
            .any(|m| m.name == "nvidia")
    );
    let svc = c.service_list(NUC_20, now).unwrap();
    assert!(
        svc.iter()
            .any(|s| s.id == "ext-nvidia-persistenced" && s.state == ServiceState::Running)
    );
    assert!(c.etcd_alarm_list(MAC_49, now).unwrap().is_empty());
    assert_eq!(c.etcd_clusters().len(), 1);
    assert!(c.call_log().is_empty());
}

#[test]
fn scenarios_are_deterministic() {
    let a = Scenario::Healthy.build(fast()).unwrap();
    let b = Scenario::Healthy.build(fast()).unwrap();
    assert_eq!(a.now(), b.now());
    let ids = |c: &Cluster| {
        c.nodes()
            .iter()
            .map(|n| n.boot_id().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(a.etcd_clusters()[0].id(), b.etcd_clusters()[0].id());
}

#[test]
fn boot_id_changes_on_every_boot_and_reboot_does_not_check_quorum() {
    let mut c = Scenario::QuorumLost.build(fast()).unwrap();
    let now = c.now();
    let before = c.boot_id(NUC_20, now).unwrap();
    // Quorum is already gone; Talos still accepts the reboot.
    c.reboot(NUC_20, RebootMode::Default, now).unwrap();
    assert_eq!(
        c.machine_status(NUC_20, now).unwrap().stage,
        Stage::Rebooting
    );
    let mid = secs(&c, 30);
    assert_eq!(
        c.machine_status(NUC_20, mid).unwrap_err().code,
        Code::Unavailable
    );
    let later = secs(&c, 120);
    let after = c.boot_id(NUC_20, later).unwrap();
    assert_ne!(before, after);
    assert_eq!(c.call_log().last().unwrap().method, "Reboot");
}

#[test]
fn kubelet_and_k8s_ready_come_before_running() {
    let mut c = seed(fast()).unwrap();
    let start = c.now();
    c.reboot(MAC_223, RebootMode::Default, start).unwrap();
    let (mut k8s_ready_at, mut running_at, mut kubelet_at) = (None, None, None);
    for s in 71..400 {
        let t = start + Duration::from_secs(s);
        c.advance_to(t);
        let Ok(ms) = c.machine_status(MAC_223, t) else {
            continue;
        };
        let n = c.node(MAC_223).unwrap();
        if kubelet_at.is_none()
            && n.service("kubelet")
                .is_some_and(|s| s.state == ServiceState::Running)
        {
            kubelet_at = Some(t);
        }
        if k8s_ready_at.is_none()
            && kubelet_at.is_some()
            && c.k8s_get_node("mac-223", t).unwrap().ready == ConditionStatus::True
        {
            k8s_ready_at = Some(t);
        }
        if running_at.is_none() && ms.stage == Stage::Running {
            running_at = Some(t);
        }
    }
    let (k, r, kl) = (
        k8s_ready_at.unwrap(),
        running_at.unwrap(),
        kubelet_at.unwrap(),
    );
    assert!(kl < k && k < r, "kubelet {kl} k8s {k} running {r}");
}

#[test]
fn gpu_modules_missing_symptoms_and_fix() {
    let mut c = Scenario::GpuModulesMissing.build(fast()).unwrap();
    let now = c.now();
    let ms = c.machine_status(NUC_20, now).unwrap();
    assert_eq!(ms.stage, Stage::Booting);
    // The waiting service is invisible to readiness.
    assert!(ms.ready, "{ms:?}");
    let svc = c.service_list(NUC_20, now).unwrap();
    let ext = svc
        .iter()
        .find(|s| s.id == "ext-nvidia-persistenced")
        .unwrap();
    assert_eq!(ext.state, ServiceState::Waiting);
    assert!(
        ext.events
            .last()
            .unwrap()
            .msg
            .contains("/sys/bus/pci/drivers/nvidia")
    );
    assert_eq!(
        c.k8s_get_node("nuc-20", now).unwrap().ready,
        ConditionStatus::True
    );
    assert_eq!(c.etcd_member_list(NUC_20, false, now).unwrap().len(), 3);
    // Fix: patch the modules in (applies without reboot), then reboot to verify.
    let cfg = c.machine_config(NUC_20, now).unwrap();
    let modules: String = NVIDIA_MODULES
        .iter()
        .map(|m| format!("      - name: {m}\n"))
        .collect();
    let patched = cfg.replacen(
        "  install:\n",
        &format!("  kernel:\n    modules:\n{modules}  install:\n"),
        1,
    );
    let res = c
        .apply_configuration(NUC_20, &patched, ApplyMode::Auto, false, now)
        .unwrap();
    assert_eq!(res.mode, ApplyMode::NoReboot);
    c.reboot(NUC_20, RebootMode::Default, now).unwrap();
    let later = secs(&c, 400);
    let ms = c.machine_status(NUC_20, later).unwrap();
    assert_eq!(ms.stage, Stage::Running, "{ms:?}");
    assert!(ms.ready);
    assert!(
        c.loaded_kernel_modules(NUC_20, later)
            .unwrap()
            .iter()
            .any(|m| m.name == "nvidia")
    );
}

#[test]
fn gpu_node_reboot_loops_after_boot_timeout() {
    let mut c = Scenario::GpuModulesMissing.build(fast()).unwrap();
    let now = c.now();
    let boot = c.boot_id(NUC_20, now).unwrap();
    let later = c.now() + Duration::from_secs(75 * 60);
    c.advance_to(later);
    assert_ne!(c.boot_id(NUC_20, later).unwrap(), boot);
}

#[test]
fn nvidia_image_on_non_gpu_node_stuck_booting_until_vanilla_upgrade() {
    let mut c = Scenario::NvidiaImageOnNonGpuNode.build(fast()).unwrap();
    let now = c.now();
    assert_eq!(
        c.machine_status(MAC_223, now).unwrap().stage,
        Stage::Booting
    );
    assert_eq!(c.machine_status(NUC_20, now).unwrap().stage, Stage::Running);
    let svc = c.service_list(MAC_223, now).unwrap();
    assert!(
        svc.iter()
            .any(|s| s.id == "ext-nvidia-persistenced" && s.state == ServiceState::Waiting)
    );
    // `talosctl upgrade --image vanilla` is allowed: 3 healthy members.
    c.upgrade(MAC_223, &UpgradeRequest::to_image(VANILLA_IMAGE), now)
        .unwrap();
    assert_eq!(
        c.machine_status(MAC_223, now).unwrap().stage,
        Stage::Upgrading
    );
    let later = secs(&c, 600);
    let ms = c.machine_status(MAC_223, later).unwrap();
    assert_eq!(
        ms.stage,
        Stage::Running,
        "{ms:?} {:?}",
        c.service_list(MAC_223, later)
    );
    assert!(c.extensions(MAC_223, later).unwrap().is_empty());
    assert!(
        c.service_list(MAC_223, later)
            .unwrap()
            .iter()
            .all(|s| !s.id.starts_with("ext-"))
    );
}

#[test]
fn usb_disk_shift_changes_dev_paths() {
    let mut c = Scenario::UsbDiskShift.build(fast()).unwrap();
    let now = c.now();
    let ssd = |d: Vec<crate::sim::node::Disk>| {
        d.into_iter()
            .find(|d| d.model.starts_with("APPLE"))
            .unwrap()
    };
    assert_eq!(ssd(c.disks(MAC_49, now).unwrap()).dev_path, "/dev/sdc");
    let sda = c
        .disks(MAC_49, now)
        .unwrap()
        .into_iter()
        .find(|d| d.dev_path == "/dev/sda")
        .unwrap();
    assert_eq!(sda.transport, "usb");
    c.detach_usb(MAC_49, now).unwrap();
    assert_eq!(ssd(c.disks(MAC_49, now).unwrap()).dev_path, "/dev/sda");
    assert!(ssd(c.disks(MAC_49, now).unwrap()).system_disk);
}

#[test]
fn quorum_lost_symptoms() {
    let mut c = Scenario::QuorumLost.build(fast()).unwrap();
    let now = c.now();
    let err = c.etcd_member_list(NUC_20, true, now).unwrap_err();
    assert_eq!(err.message, "etcdserver: no leader");
    let st = c.etcd_status(NUC_20, now).unwrap();
    assert_eq!(st.leader, 0);
    assert!(st.errors.iter().any(|e| e == "etcdserver: no leader"));
    let snap = c.etcd_snapshot(NUC_20, now).unwrap();
    assert_eq!(snap.len() % 512, 32);
    assert!(c.k8s_list_nodes(now).is_err());
    assert_eq!(
        c.machine_status(MAC_49, now).unwrap_err().code,
        Code::Unavailable
    );
    let ids: Vec<u64> = c.etcd_clusters()[0].member_ids();
    let err = c.etcd_remove_member(NUC_20, ids[0], now).unwrap_err();
    assert!(err.message.contains("etcdserver: no leader"), "{err:?}");
}

#[test]
fn quorum_lost_recovery_via_snapshot_and_bootstrap_recover() {
    let mut c = Scenario::QuorumLost.build(fast()).unwrap();
    let now = c.now();
    let old_cluster = c.etcd_clusters()[0].id();
    let snap = c.etcd_snapshot(NUC_20, now).unwrap();
    // Wipe EPHEMERAL on the survivor, reboot, upload, bootstrap --recover-from.
    let req = ResetRequest {
        graceful: false,
        reboot: true,
        system_labels_to_wipe: vec!["EPHEMERAL".into()],
    };
    c.reset(NUC_20, &req, now).unwrap();
    let t = secs(&c, 100);
    c.advance_to(t);
    assert_eq!(c.node(NUC_20).unwrap().etcd_data(), EtcdData::Empty);
    c.etcd_recover(NUC_20, &snap, t).unwrap();
    c.bootstrap(NUC_20, true, false, t).unwrap();
    let t2 = secs(&c, 60);
    let members = c.etcd_member_list(NUC_20, true, t2).unwrap();
    assert_eq!(members.len(), 1);
    let new = c.etcd_clusters().last().unwrap();
    assert_ne!(new.id(), old_cluster);
    assert_eq!(
        new.kv()
            .entries
            .get("/registry/namespaces/default")
            .map(String::as_str),
        Some("{\"kind\":\"Namespace\"}")
    );
}

#[test]
fn upgrade_refused_at_two_members_unless_forced() {
    let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
    let now = c.now();
    let err = c
        .upgrade(NUC_20, &UpgradeRequest::to_image(NVIDIA_IMAGE), now)
        .unwrap_err();
    assert_eq!(err.code, Code::Unknown);
    assert_eq!(
        err.message,
        "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences"
    );
    let forced = UpgradeRequest {
        force: true,
        ..UpgradeRequest::to_image(NVIDIA_IMAGE)
    };
    c.upgrade(NUC_20, &forced, now).unwrap();
}

#[test]
fn upgrade_refused_with_a_member_down() {
    let mut c = Scenario::NodeDead.build(fast()).unwrap();
    let now = c.now();
    let err = c
        .upgrade(NUC_20, &UpgradeRequest::to_image(NVIDIA_IMAGE), now)
        .unwrap_err();
    assert!(
        err.message
            .contains("is not healthy; all members must be healthy to perform an upgrade"),
        "{err:?}"
    );
}

#[test]
fn two_voter_window_reboot_loses_quorum_and_maintenance_join() {
    let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
    let now = c.now();
    assert_eq!(
        c.machine_status(MAC_223, now).unwrap().stage,
        Stage::Maintenance
    );
    assert_eq!(c.etcd_member_list(NUC_20, true, now).unwrap().len(), 2);
    assert_eq!(
        c.etcd_member_list(MAC_223, true, now).unwrap_err().code,
        Code::Unimplemented
    );
    // Maintenance accepts only reboot/auto/try.
    let cfg = control_plane_config("mac-223", "/dev/sda", VANILLA_IMAGE, false);
    let err = c
        .apply_configuration(MAC_223, &cfg, ApplyMode::NoReboot, false, now)
        .unwrap_err();
    assert_eq!(err.code, Code::Unimplemented);
    assert_eq!(
        err.message,
        "apply configuration --mode='no-reboot' is not supported in maintenance mode"
    );
    // Rebooting a voter in the window is accepted (no guard) and loses quorum.
    c.reboot(MAC_49, RebootMode::Default, now).unwrap();
    let t = secs(&c, 20);
    assert!(
        c.etcd_member_list(NUC_20, true, t)
            .unwrap_err()
            .message
            .contains("no leader")
    );
    // It comes back with data intact: quorum returns.
    let t = secs(&c, 120);
    assert_eq!(c.etcd_member_list(NUC_20, true, t).unwrap().len(), 2);
    // Installing .223: installing -> rebooting -> booting -> running as a promoted voter.
    c.apply_configuration(MAC_223, &cfg, ApplyMode::Auto, false, t)
        .unwrap();
    assert_eq!(
        c.machine_status(MAC_223, t).unwrap().stage,
        Stage::Installing
    );
    let t = secs(&c, 600);
    let ms = c.machine_status(MAC_223, t).unwrap();
    assert_eq!(ms.stage, Stage::Running, "{ms:?}");
    let members = c.etcd_member_list(NUC_20, true, t).unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.is_learner));
}

#[test]
fn empty_data_dir_cannot_rejoin_two_voter_cluster_without_leader() {
    let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
    let now = c.now();
    // Wipe .49's etcd data (reinstall-like) without leaving: it can never rejoin.
    let req = ResetRequest {
        graceful: false,
        reboot: true,
        system_labels_to_wipe: vec!["EPHEMERAL".into()],
    };
    c.reset(MAC_49, &req, now).unwrap();
    let t = secs(&c, 900);
    c.advance_to(t);
    let n = c.node(MAC_49).unwrap();
    assert_eq!(n.stage(), Stage::Booting);
    assert_eq!(n.etcd_data(), EtcdData::Empty);
    let etcd = n.service("etcd").unwrap();
    assert_eq!(etcd.state, ServiceState::Preparing);
    assert!(
        etcd.events.last().unwrap().msg.contains("no leader"),
        "{etcd:?}"
    );
}

#[test]
fn second_bootstrap_already_exists() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    let err = c.bootstrap(NUC_20, false, false, now).unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
    assert_eq!(err.message, "etcd data directory is not empty");
    let err = c.bootstrap(MAC_223, false, false, now).unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
}

#[test]
fn bootstrap_on_fresh_node_makes_split_brain() {
    let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
    let now = c.now();
    let cfg = control_plane_config("mac-223", "/dev/sda", VANILLA_IMAGE, false);
    c.apply_configuration(MAC_223, &cfg, ApplyMode::Auto, false, now)
        .unwrap();
    // Take the existing cluster's quorum away so .223 cannot join, then bootstrap it.
    c.keep_down(MAC_49, true).unwrap();
    c.power_off(MAC_49, now).unwrap();
    let t = secs(&c, 300);
    c.advance_to(t);
    assert_eq!(c.node(MAC_223).unwrap().etcd_data(), EtcdData::Empty);
    c.bootstrap(MAC_223, false, false, t).unwrap();
    assert_eq!(c.etcd_clusters().len(), 2);
    let ids: Vec<u64> = c.etcd_clusters().iter().map(|e| e.id()).collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn stale_member_blocks_join_until_removed() {
    let mut c = Scenario::StaleMember.build(fast()).unwrap();
    let now = c.now();
    let n = c.node(MAC_49).unwrap();
    assert_eq!(n.stage(), Stage::Booting);
    assert!(
        n.service("etcd")
            .unwrap()
            .events
            .last()
            .unwrap()
            .msg
            .contains("unhealthy cluster")
    );
    let members = c.etcd_member_list(NUC_20, false, now).unwrap();
    let stale = members.iter().find(|m| m.hostname == "mac-48").unwrap().id;
    c.etcd_remove_member(NUC_20, stale, now).unwrap();
    let t = secs(&c, 300);
    let ms = c.machine_status(MAC_49, t).unwrap();
    assert_eq!(ms.stage, Stage::Running, "{ms:?}");
    let members = c.etcd_member_list(NUC_20, false, t).unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .any(|m| m.hostname == "mac-49" && !m.is_learner)
    );
    assert_eq!(
        c.call_log()
            .iter()
            .filter(|r| r.method == "EtcdRemoveMemberByID")
            .count(),
        1
    );
}

#[test]
fn node_dead_remove_then_replace() {
    let mut c = Scenario::NodeDead.build(fast()).unwrap();
    let now = c.now();
    assert_eq!(
        c.k8s_get_node("mac-49", now).unwrap().ready,
        ConditionStatus::Unknown
    );
    let members = c.etcd_member_list(NUC_20, false, now).unwrap();
    let dead = members.iter().find(|m| m.hostname == "mac-49").unwrap().id;
    let alive = members.iter().find(|m| m.hostname == "mac-223").unwrap().id;
    let err = c.etcd_remove_member(NUC_20, alive, now).unwrap_err();
    assert!(err.message.contains("etcdserver: unhealthy cluster"));
    c.etcd_remove_member(NUC_20, dead, now).unwrap();
    let err = c.etcd_remove_member(NUC_20, dead, now).unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(c.etcd_member_list(MAC_223, true, now).unwrap().len(), 2);
}

#[test]
fn graceful_reset_leaves_etcd_first_and_lands_in_maintenance() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    c.reset(
        MAC_49,
        &ResetRequest {
            reboot: true,
            ..ResetRequest::default()
        },
        now,
    )
    .unwrap();
    assert_eq!(
        c.machine_status(MAC_49, now).unwrap().stage,
        Stage::Resetting
    );
    let t = secs(&c, 200);
    assert_eq!(c.etcd_member_list(NUC_20, true, t).unwrap().len(), 2);
    assert_eq!(
        c.machine_status(MAC_49, t).unwrap().stage,
        Stage::Maintenance
    );
}

#[test]
fn last_member_cannot_leave_through_talos() {
    let mut c = Scenario::TwoVoterWindow.build(fast()).unwrap();
    let now = c.now();
    c.etcd_leave_cluster(MAC_49, now).unwrap();
    let err = c.etcd_leave_cluster(NUC_20, now).unwrap_err();
    assert_eq!(err.code, Code::Unknown);
    assert_eq!(
        err.message,
        "failed to leave cluster: etcdserver: re-configuration failed due to not enough started members"
    );
}

#[test]
fn removed_member_restart_fails() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    let id = c.etcd_status(MAC_49, now).unwrap().member_id;
    c.etcd_remove_member(NUC_20, id, now).unwrap();
    let svc = c.node(MAC_49).unwrap().service("etcd").unwrap().clone();
    assert_eq!(svc.state, ServiceState::Failed);
    assert!(
        svc.events
            .last()
            .unwrap()
            .msg
            .contains("the member has been permanently removed from the cluster")
    );
    c.reboot(MAC_49, RebootMode::Default, now).unwrap();
    let t = secs(&c, 200);
    c.advance_to(t);
    let svc = c.node(MAC_49).unwrap().service("etcd").unwrap().clone();
    assert_eq!(svc.state, ServiceState::Failed);
    assert!(
        svc.events
            .last()
            .unwrap()
            .msg
            .contains("data-dir used by this member must be removed")
    );
}

#[test]
fn pdb_blocks_eviction_and_cordon_roundtrip() {
    let mut c = Scenario::PdbBlocksDrain.build(fast()).unwrap();
    let now = c.now();
    let pods = c.k8s_list_pods(Some("nuc-20"), now).unwrap();
    let plex = pods.iter().find(|p| p.app == "plex").unwrap();
    let err = c.k8s_evict_pod("media", &plex.name, now).unwrap_err();
    assert_eq!(err.status, 429);
    assert!(pods.iter().any(|p| p.owner == PodOwner::Mirror));
    let ds = pods
        .iter()
        .find(|p| matches!(p.owner, PodOwner::DaemonSet(_)))
        .unwrap();
    c.k8s_evict_pod("kube-system", &ds.name, now).unwrap();
    c.k8s_set_unschedulable("nuc-20", true, now).unwrap();
    assert!(c.k8s_get_node("nuc-20", now).unwrap().unschedulable);
    let dns = pods.iter().find(|p| p.app == "coredns").unwrap();
    c.k8s_evict_pod("kube-system", &dns.name, now).unwrap();
    let moved = c.k8s_list_pods(None, now).unwrap();
    assert!(
        moved
            .iter()
            .filter(|p| p.app == "coredns")
            .all(|p| p.node.as_deref() != Some("nuc-20"))
    );
    assert_eq!(c.k8s_leases(now).unwrap().len(), 3);
}

#[test]
fn injected_faults_fail_n_times() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    c.fail_next("EtcdMemberList", Some(NUC_20), 2);
    assert_eq!(
        c.etcd_member_list(NUC_20, true, now).unwrap_err().code,
        Code::Unavailable
    );
    assert_eq!(
        c.etcd_member_list(NUC_20, true, now).unwrap_err().code,
        Code::Unavailable
    );
    assert!(c.etcd_member_list(NUC_20, true, now).is_ok());
    c.fail_next("Reboot", None, 1);
    assert!(c.reboot(MAC_223, RebootMode::Default, now).is_err());
    assert_eq!(c.call_log().last().unwrap().result, Err(Code::Unavailable));
}

#[test]
fn five_second_window_after_reboot_through_talos() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    c.reboot(MAC_223, RebootMode::Default, now).unwrap();
    // Find the moment .223's etcd started and try to remove .49 within 5 s.
    let boot = c.node(MAC_223).unwrap().boot_id().to_string();
    let mut t = now;
    loop {
        t += Duration::from_millis(500);
        c.advance_to(t);
        let n = c.node(MAC_223).unwrap();
        if n.boot_id() != boot && n.etcd_started_at.is_some() {
            break;
        }
    }
    let id49 = c.etcd_status(MAC_49, t).unwrap().member_id;
    let err = c
        .etcd_remove_member(NUC_20, id49, t + Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(
        err.message,
        "failed to remove member: etcdserver: unhealthy cluster"
    );
}

#[test]
fn apply_invalid_yaml_is_invalid_argument_and_staged_waits_for_reboot() {
    let mut c = seed(fast()).unwrap();
    let now = c.now();
    let err = c
        .apply_configuration(MAC_49, "machine: [", ApplyMode::Auto, false, now)
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    let cfg = c.machine_config(MAC_49, now).unwrap();
    let changed = cfg.replace("token: simtoken", "token: othertoken");
    let err = c
        .apply_configuration(MAC_49, &changed, ApplyMode::NoReboot, false, now)
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    let res = c
        .apply_configuration(MAC_49, &changed, ApplyMode::Staged, false, now)
        .unwrap();
    assert_eq!(res.mode, ApplyMode::Staged);
    assert_eq!(c.machine_config(MAC_49, now).unwrap(), cfg);
    let res = c
        .apply_configuration(MAC_49, &changed, ApplyMode::Auto, false, now)
        .unwrap();
    assert_eq!(res.mode, ApplyMode::Reboot);
    assert_eq!(
        c.machine_status(MAC_49, now).unwrap().stage,
        Stage::Rebooting
    );
}
