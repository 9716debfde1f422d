//! The node sequences of the simulated cluster: powering on, booting, starting and joining
//! etcd, reboots, shutdowns, installs and upgrades, and graceful or forced resets. Each is a
//! chain of scheduled transitions ([`TimerKind`]) fired by [`Cluster::advance_to`]; split out
//! of `cluster.rs` so the model's state and call plumbing stay readable on their own.

use super::*;

impl Cluster {
    // ----------------------------------------------------------------------------------
    // Node sequences
    // ----------------------------------------------------------------------------------

    /// Powers on all nodes that are off (scenario setup).
    pub fn power_on_all(&mut self, now: SimTime) {
        self.advance_to(now);
        for i in 0..self.nodes.len() {
            if self.nodes[i].power == Power::Off && !self.nodes[i].keep_down {
                self.begin_power_on(i);
            }
        }
    }

    pub(super) fn begin_power_on(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.power = Power::On;
        n.phase = Phase::Down;
        n.epoch += 1;
        let d = self.timings.reboot;
        self.schedule(i, d, TimerKind::BootStart);
    }

    /// Stops everything on the node (process level): etcd member, kubelet, services.
    pub(super) fn go_down(&mut self, i: usize) {
        let now = self.now;
        if let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data
            && let Some(c) = self.etcd.iter_mut().find(|c| c.id() == cluster)
        {
            c.stop_member(member, now);
        }
        let n = &mut self.nodes[i];
        if n.kubelet_started_at.is_some() {
            n.kubelet_stopped_at = Some(now);
        }
        n.kubelet_started_at = None;
        n.etcd_started_at = None;
        n.services.clear();
        n.loaded_modules.clear();
        n.phase = Phase::Down;
        n.epoch += 1;
    }

    pub(super) fn power_down(&mut self, i: usize) {
        self.go_down(i);
        let n = &mut self.nodes[i];
        n.power = Power::Off;
        n.phase = Phase::Off;
        n.stage = Stage::Unknown;
    }

    /// Starts a reboot-like sequence: stage `stage`, services stop after the shutdown delay.
    pub(super) fn begin_reboot(&mut self, i: usize, stage: Stage) {
        self.nodes[i].stage = stage;
        self.nodes[i].epoch += 1;
        let d = self.timings.shutdown;
        self.schedule(i, d, TimerKind::RebootStopped);
    }

    pub(super) fn fire(&mut self, i: usize, kind: TimerKind) {
        match kind {
            TimerKind::BootStart => self.boot_start(i),
            TimerKind::Wake => {}
            TimerKind::EtcdStart => self.etcd_start(i),
            TimerKind::EtcdJoin => self.etcd_join(i),
            TimerKind::EtcdPromote => self.etcd_promote(i),
            TimerKind::BootTimeout => {
                if self.nodes[i].stage == Stage::Booting {
                    let n = &mut self.nodes[i];
                    n.last_error = Some(
                        "boot sequence failed: error running phase 18 in boot sequence: task 1/1: failed, context deadline exceeded"
                            .into(),
                    );
                    if n.first_boot_after_upgrade {
                        if let Some(prev) = n.previous_image.take() {
                            n.image = Some(prev);
                        }
                        n.first_boot_after_upgrade = false;
                    }
                    self.begin_reboot(i, Stage::Rebooting);
                }
            }
            TimerKind::RebootStopped => {
                self.go_down(i);
                if self.nodes[i].keep_down {
                    self.power_down(i);
                } else {
                    let d = self.timings.reboot;
                    self.schedule(i, d, TimerKind::BootStart);
                }
            }
            TimerKind::ShutdownStopped => self.power_down(i),
            TimerKind::InstallDone => self.install_done(i),
            TimerKind::UpgradeInstalled => {
                let n = &mut self.nodes[i];
                if let Some(img) = n.pending_image.take() {
                    n.previous_image = n.image.replace(img);
                    n.first_boot_after_upgrade = true;
                }
                self.go_down(i);
                if self.nodes[i].keep_down {
                    self.power_down(i);
                } else {
                    let d = self.timings.reboot;
                    self.schedule(i, d, TimerKind::BootStart);
                }
            }
            TimerKind::ResetLeave { deadline_ms } => self.reset_leave(i, deadline_ms),
            TimerKind::ResetWipe => self.reset_wipe(i),
            TimerKind::TryRollback => {
                let n = &mut self.nodes[i];
                if let Some(old) = n.try_rollback.take() {
                    n.config = Some(old);
                }
            }
        }
    }

    pub(super) fn boot_start(&mut self, i: usize) {
        let now = self.now;
        let t = self.timings;
        let n = &mut self.nodes[i];
        n.phase = Phase::Up;
        n.epoch += 1;
        n.new_boot_id();
        n.boot_started_at = now;
        n.services.clear();
        n.loaded_modules.clear();
        if let Some(staged) = n.staged_config.take() {
            n.config = Some(staged);
        }
        n.try_rollback = None;
        let installed = n.image.is_some()
            && n.system_disk_serial
                .as_ref()
                .is_some_and(|s| n.hardware.disks.iter().any(|d| &d.serial == s));
        if !installed || n.config.is_none() {
            n.stage = Stage::Maintenance;
            for s in ["apid", "machined"] {
                n.service_mut(s, now)
                    .set(ServiceState::Running, "Service started", now);
            }
            return;
        }
        n.stage = Stage::Booting;
        n.load_configured_modules();
        let cp = n.is_control_plane();
        let mut core = vec!["machined", "apid", "containerd", "udevd"];
        if cp {
            core.push("trustd");
        }
        for s in core {
            let svc = n.service_mut(s, now);
            svc.set(ServiceState::Running, "Health check successful", now);
            svc.healthy = Some(true);
        }
        n.service_mut("cri", now).set(
            ServiceState::Waiting,
            "Waiting for service \"containerd\" to be \"up\"",
            now,
        );
        n.service_mut("kubelet", now).set(
            ServiceState::Waiting,
            "Waiting for service \"cri\" to be \"up\"",
            now,
        );
        for (svc, _) in n.extension_services() {
            n.service_mut(svc, now).set(
                ServiceState::Waiting,
                "Waiting for service \"cri\" to be \"up\"",
                now,
            );
        }
        let data = n.etcd_data;
        if cp {
            n.service_mut("etcd", now)
                .set(ServiceState::Preparing, "Running pre state", now);
        }
        self.schedule(i, t.service_start, TimerKind::Wake);
        self.schedule(i, t.kubelet_start, TimerKind::Wake);
        self.schedule(i, t.kubelet_start + t.kubelet_ready, TimerKind::Wake);
        self.schedule(i, t.boot_timeout, TimerKind::BootTimeout);
        if cp {
            match data {
                EtcdData::Member { .. } => self.schedule(i, t.service_start, TimerKind::EtcdStart),
                EtcdData::Empty => self.schedule(i, t.service_start, TimerKind::EtcdJoin),
            }
        }
    }

    pub(super) fn etcd_start(&mut self, i: usize) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            return;
        };
        let host = self.nodes[i].hostname.clone();
        let client = client_url(&self.nodes[i].label);
        let res = match self.etcd.iter_mut().find(|c| c.id() == cluster) {
            Some(c) => c.start_member(member, &host, &client, now),
            None => Err(StartError::NoMatch),
        };
        match res {
            Ok(()) => {
                let n = &mut self.nodes[i];
                n.etcd_started_at = Some(now);
                n.service_mut("etcd", now).set(
                    ServiceState::Running,
                    "Service started as goroutine",
                    now,
                );
                let h = self.timings.etcd_health_interval;
                self.schedule(i, h, TimerKind::Wake);
                if self.is_learner(cluster, member) {
                    let d = self.timings.learner_promotion;
                    self.schedule(i, d, TimerKind::EtcdPromote);
                }
            }
            Err(e) => {
                let text = match e {
                    StartError::Removed => format!(
                        "Error running Containerd(etcd), going to restart forever: {}; {}",
                        msg::PERMANENTLY_REMOVED,
                        e.message()
                    ),
                    StartError::NoMatch => format!(
                        "Error running Containerd(etcd), going to restart forever: {}",
                        e.message()
                    ),
                };
                let svc = self.nodes[i].service_mut("etcd", now);
                svc.set(ServiceState::Failed, &text, now);
                svc.healthy = Some(false);
            }
        }
    }

    pub(super) fn is_learner(&self, cluster: ClusterId, member: MemberId) -> bool {
        self.etcd
            .iter()
            .find(|c| c.id() == cluster)
            .and_then(|c| c.member(member))
            .is_some_and(|m| m.is_learner)
    }

    /// A running voter endpoint among control-plane nodes other than `except` (in node order).
    pub(super) fn remote_endpoint(&self, except: Option<usize>) -> Option<(usize, MemberId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != except)
            .find_map(|(_, n)| self.running_voter_of(n))
    }

    pub(super) fn running_voter_of(&self, n: &Node) -> Option<(usize, MemberId)> {
        if !n.api_up() || !n.is_control_plane() {
            return None;
        }
        let EtcdData::Member { cluster, member } = n.etcd_data else {
            return None;
        };
        let ci = self.etcd.iter().position(|c| c.id() == cluster)?;
        let m = self.etcd[ci].member(member)?;
        (m.running && !m.is_learner).then_some((ci, member))
    }

    /// Talos `NewClientFromControlPlaneIPs`: this node first, then the other control planes.
    pub(super) fn cluster_client(&self, i: usize) -> Result<(usize, MemberId), ApiError> {
        self.running_voter_of(&self.nodes[i])
            .or_else(|| self.remote_endpoint(Some(i)))
            .ok_or_else(|| ApiError::new(Code::DeadlineExceeded, msg::DEADLINE))
    }

    /// Talos `NewLocalClient`: this node's member (learner or voter).
    pub(super) fn local_member(&self, i: usize) -> Result<(usize, MemberId), ApiError> {
        let n = &self.nodes[i];
        if let EtcdData::Member { cluster, member } = n.etcd_data
            && let Some(ci) = self.etcd.iter().position(|c| c.id() == cluster)
            && self.etcd[ci].member(member).is_some_and(|m| m.running)
        {
            return Ok((ci, member));
        }
        Err(ApiError::new(Code::DeadlineExceeded, msg::DEADLINE))
    }

    pub(super) fn etcd_join(&mut self, i: usize) {
        let now = self.now;
        let n = &self.nodes[i];
        if n.etcd_data != EtcdData::Empty
            || !matches!(n.stage, Stage::Booting | Stage::Running)
            || n.service("etcd")
                .is_none_or(|s| s.state != ServiceState::Preparing)
        {
            return;
        }
        let retry = self.timings.etcd_join_retry;
        let Some((ci, via)) = self.remote_endpoint(Some(i)) else {
            let ips: Vec<String> = self
                .nodes
                .iter()
                .filter(|m| m.is_control_plane())
                .map(|m| m.label.clone())
                .collect();
            let text = format!(
                "etcd is waiting to join the cluster, if this node is the first node in the cluster, please run `talosctl bootstrap` against one of the following IPs:\n{ips:?}"
            );
            self.nodes[i]
                .service_mut("etcd", now)
                .set(ServiceState::Preparing, &text, now);
            self.schedule(i, retry, TimerKind::EtcdJoin);
            return;
        };
        let host = self.nodes[i].hostname.clone();
        let peer = peer_url(&self.nodes[i].label);
        let attempt = (|| -> Result<MemberId, ApiError> {
            let list = self.etcd[ci].member_list(via)?;
            for stale in list.iter().filter(|m| m.hostname == host) {
                self.etcd[ci].remove_member(via, stale.id, now)?;
            }
            let id = self.next_id();
            self.etcd[ci].add_member(via, id, std::slice::from_ref(&peer), true, now)?;
            Ok(id)
        })();
        match attempt {
            Ok(id) => {
                let cluster = self.etcd[ci].id();
                self.nodes[i].etcd_data = EtcdData::Member {
                    cluster,
                    member: id,
                };
                self.etcd_start(i);
            }
            Err(e) => {
                let text = format!("error adding member: {}", e.message);
                self.nodes[i]
                    .service_mut("etcd", now)
                    .set(ServiceState::Preparing, &text, now);
                self.schedule(i, retry, TimerKind::EtcdJoin);
            }
        }
    }

    pub(super) fn etcd_promote(&mut self, i: usize) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            return;
        };
        if !self.is_learner(cluster, member) || !self.nodes[i].api_up() {
            return;
        }
        let via = self
            .remote_endpoint(Some(i))
            .filter(|(ci, _)| self.etcd[*ci].id() == cluster);
        let ok = match via {
            Some((ci, via)) => self.etcd[ci].promote_member(via, member, now).is_ok(),
            None => false,
        };
        if !ok {
            let d = self.timings.learner_promotion;
            self.schedule(i, d, TimerKind::EtcdPromote);
        }
    }

    pub(super) fn install_done(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(cfg) = n.config.clone() else {
            n.stage = Stage::Maintenance;
            return;
        };
        let path = cfg
            .install_disk
            .clone()
            .or_else(|| {
                cfg.install_disk_serial
                    .as_ref()
                    .map(|s| format!("serial {s}"))
            })
            .unwrap_or_default();
        match n.install_target(&cfg) {
            Some(disk) => {
                n.image = Some(
                    cfg.install_image
                        .clone()
                        .unwrap_or_else(|| VANILLA_IMAGE.to_string()),
                );
                n.previous_image = None;
                n.system_disk_serial = Some(disk.serial);
                n.etcd_data = EtcdData::Empty;
                n.last_error = None;
                self.begin_reboot(i, Stage::Rebooting);
            }
            None => {
                n.last_error = Some(format!("failed to install: disk {path:?} not found"));
                n.config = None;
                n.stage = Stage::Maintenance;
            }
        }
    }

    pub(super) fn reset_leave(&mut self, i: usize, deadline_ms: u64) {
        let now = self.now;
        let EtcdData::Member { cluster, member } = self.nodes[i].etcd_data else {
            self.reset_wipe(i);
            return;
        };
        let present = self
            .etcd
            .iter()
            .any(|c| c.id() == cluster && c.member(member).is_some());
        if !present {
            self.reset_wipe(i);
            return;
        }
        let res = self
            .cluster_client(i)
            .and_then(|(ci, via)| self.etcd[ci].remove_member(via, member, now));
        match res {
            Ok(()) => self.reset_wipe(i),
            Err(e) => {
                let retryable =
                    e.message == msg::UNHEALTHY_CLUSTER || e.message == msg::SERVER_STOPPED;
                if retryable && (now.as_duration().as_millis() as u64) < deadline_ms {
                    self.schedule(
                        i,
                        Duration::from_secs(1).min(self.timings.etcd_reconfig_window),
                        TimerKind::ResetLeave { deadline_ms },
                    );
                } else {
                    // The reset sequence fails; machined reboots without wiping.
                    self.nodes[i].last_error = Some(format!("failed to leave etcd: {}", e.message));
                    self.begin_reboot(i, Stage::Rebooting);
                }
            }
        }
    }

    pub(super) fn reset_wipe(&mut self, i: usize) {
        let req = self.nodes[i].pending_reset.take().unwrap_or_default();
        self.go_down(i);
        let n = &mut self.nodes[i];
        let full = req.system_labels_to_wipe.is_empty();
        let wipe = |l: &str| full || req.system_labels_to_wipe.iter().any(|x| x == l);
        if wipe("EPHEMERAL") {
            n.etcd_data = EtcdData::Empty;
            n.etcd_snapshot_upload = None;
        }
        if wipe("STATE") {
            n.config = None;
            n.staged_config = None;
        }
        if full {
            n.image = None;
            n.previous_image = None;
            n.system_disk_serial = None;
        }
        if req.reboot && !n.keep_down {
            let d = self.timings.reboot;
            self.schedule(i, d, TimerKind::BootStart);
        } else {
            self.power_down(i);
        }
    }
}
