//! The simulated Talos API, one method per real call: the queries (machine status, services,
//! version, disks, extensions, modules, machine config, etcd member list, status and alarms)
//! and the mutations (reboot, shutdown, upgrade with Talos' own quorum guard, apply, bootstrap,
//! recover, reset, etcd membership, snapshot). Each goes through the call plumbing of
//! `cluster.rs` (advance the model, check faults, record the mutating call).

use super::*;

impl Cluster {
    // ----------------------------------------------------------------------------------
    // Talos queries
    // ----------------------------------------------------------------------------------

    /// `MachineStatuses.runtime.talos.dev/machine`.
    pub fn machine_status(&mut self, label: &str, now: SimTime) -> Result<MachineStatus, ApiError> {
        self.query("MachineStatus", label, now, |c, i| {
            Ok(c.machine_status_of(i))
        })
    }

    /// `ServiceList`.
    pub fn service_list(&mut self, label: &str, now: SimTime) -> Result<Vec<Service>, ApiError> {
        self.query("ServiceList", label, now, |c, i| {
            Ok(c.nodes[i].services().cloned().collect())
        })
    }

    /// `Version`.
    pub fn version(&mut self, label: &str, now: SimTime) -> Result<VersionInfo, ApiError> {
        self.query("Version", label, now, |c, i| {
            Ok(VersionInfo {
                tag: crate::sim::node::TALOS_VERSION.into(),
                platform: "metal".into(),
                image: c.nodes[i].image.clone(),
            })
        })
    }

    /// `/proc/sys/kernel/random/boot_id`.
    pub fn boot_id(&mut self, label: &str, now: SimTime) -> Result<String, ApiError> {
        self.query("BootId", label, now, |c, i| Ok(c.nodes[i].boot_id.clone()))
    }

    /// `Disks.block.talos.dev`.
    pub fn disks(&mut self, label: &str, now: SimTime) -> Result<Vec<Disk>, ApiError> {
        self.query("Disks", label, now, |c, i| Ok(c.nodes[i].disks()))
    }

    /// `ExtensionStatuses.runtime.talos.dev`.
    pub fn extensions(&mut self, label: &str, now: SimTime) -> Result<Vec<Extension>, ApiError> {
        self.query("Extensions", label, now, |c, i| Ok(c.nodes[i].extensions()))
    }

    /// `KernelModuleSpecs.runtime.talos.dev` (module names).
    pub fn kernel_module_specs(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<String>, ApiError> {
        self.query("KernelModuleSpecs", label, now, |c, i| {
            Ok(c.nodes[i].kernel_module_specs())
        })
    }

    /// `LoadedKernelModules.runtime.talos.dev`.
    pub fn loaded_kernel_modules(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<LoadedModule>, ApiError> {
        self.query("LoadedKernelModules", label, now, |c, i| {
            Ok(c.nodes[i].loaded_modules())
        })
    }

    /// `MachineConfigs.config.talos.dev/v1alpha1` (raw YAML).
    pub fn machine_config(&mut self, label: &str, now: SimTime) -> Result<String, ApiError> {
        self.query("MachineConfig", label, now, |c, i| {
            c.nodes[i]
                .config
                .as_ref()
                .map(|m| m.raw().to_string())
                .ok_or_else(|| ApiError::new(Code::NotFound, "resource MachineConfigs.config.talos.dev(config/v1alpha1@undefined) doesn't exist"))
        })
    }

    /// `EtcdMemberList` (require-leader; `query_local` uses this node's member only).
    pub fn etcd_member_list(
        &mut self,
        label: &str,
        query_local: bool,
        now: SimTime,
    ) -> Result<Vec<MemberInfo>, ApiError> {
        self.query("EtcdMemberList", label, now, |c, i| {
            c.control_plane_only(i, "member list")?;
            let (ci, via) = if query_local {
                let (ci, m) = c.local_member(i)?;
                (ci, m)
            } else {
                c.cluster_client(i)?
            };
            c.etcd[ci]
                .member_list(via)
                .map_err(ApiError::via_etcd_client)
        })
    }

    /// `EtcdStatus` of this node's member: answers without leader, listing the error.
    pub fn etcd_status(&mut self, label: &str, now: SimTime) -> Result<MemberStatus, ApiError> {
        self.query("EtcdStatus", label, now, |c, i| {
            c.control_plane_only(i, "etcd status")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to query etcd status"))?;
            c.etcd[ci]
                .status(m)
                .map_err(|e| e.wrapped("failed to query etcd status"))
        })
    }

    /// `EtcdAlarmList` of this node's member.
    pub fn etcd_alarm_list(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Vec<(MemberId, Alarm)>, ApiError> {
        self.query("EtcdAlarmList", label, now, |c, i| {
            c.control_plane_only(i, "etcd alarm list")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to list etcd alarms"))?;
            c.etcd[ci]
                .alarm_list(m)
                .map_err(|e| e.wrapped("failed to list etcd alarms"))
        })
    }

    // ----------------------------------------------------------------------------------
    // Talos mutations
    // ----------------------------------------------------------------------------------

    /// `Reboot`: no quorum check, no drain; answers at once, the node goes down afterwards.
    pub fn reboot(&mut self, label: &str, mode: RebootMode, now: SimTime) -> Result<(), ApiError> {
        let _ = mode; // kexec vs power cycle: same timeline in the model.
        self.mutate("Reboot", label, now, |c, i| {
            c.takeover_allowed(i)?;
            c.begin_reboot(i, Stage::Rebooting);
            Ok(())
        })
    }

    fn takeover_allowed(&self, i: usize) -> Result<(), ApiError> {
        match self.nodes[i].stage {
            Stage::Booting | Stage::Running | Stage::Maintenance => Ok(()),
            _ => Err(ApiError::new(Code::FailedPrecondition, "locked")),
        }
    }

    /// `Shutdown`: powers the node off after stopping services.
    pub fn shutdown(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.mutate("Shutdown", label, now, |c, i| {
            c.takeover_allowed(i)?;
            c.nodes[i].stage = Stage::ShuttingDown;
            c.nodes[i].epoch += 1;
            let d = c.timings.shutdown;
            c.schedule(i, d, TimerKind::ShutdownStopped);
            Ok(())
        })
    }

    /// `Upgrade`: on a control plane without `force`, refuses exactly as Talos'
    /// `ValidateForUpgrade` (2 members, an unstarted member, an unhealthy member). Then
    /// cordons, drains, installs the image and reboots; no etcd leave.
    pub fn upgrade(
        &mut self,
        label: &str,
        req: &UpgradeRequest,
        now: SimTime,
    ) -> Result<(), ApiError> {
        let req = req.clone();
        self.mutate("Upgrade", label, now, move |c, i| {
            c.takeover_allowed(i)?;
            if c.nodes[i].is_control_plane() && !req.force && c.nodes[i].service("etcd").is_some() {
                c.validate_for_upgrade(i)?;
            }
            c.drain(i);
            let n = &mut c.nodes[i];
            n.pending_image = Some(req.image.clone());
            n.stage = Stage::Upgrading;
            n.epoch += 1;
            let t = c.timings;
            c.schedule(
                i,
                t.shutdown + t.image_pull + t.install,
                TimerKind::UpgradeInstalled,
            );
            Ok(())
        })
    }

    fn validate_for_upgrade(&self, i: usize) -> Result<(), ApiError> {
        let mutex_err = |e: ApiError| {
            e.wrapped("error establishing etcd concurrency session")
                .wrapped("failed to acquire upgrade mutex")
        };
        let (ci, via) = self.cluster_client(i).map_err(mutex_err)?;
        let c = &self.etcd[ci];
        if c.leader().is_none() {
            return Err(mutex_err(ApiError::new(
                Code::DeadlineExceeded,
                msg::DEADLINE,
            )));
        }
        let members = c
            .member_list(via)
            .map_err(|e| e.wrapped("error validating etcd for upgrade"))?;
        let fail = |m: String| {
            Err(ApiError::new(
                Code::Unknown,
                format!("error validating etcd for upgrade: {m}"),
            ))
        };
        if members.len() == 2 {
            return fail(format!(
                "etcd member count({}) is insufficient to maintain quorum if upgrade commences",
                members.len()
            ));
        }
        for m in &members {
            if m.hostname.is_empty() {
                return fail(format!(
                    "etcd member {:016x} is not started, all members must be running to perform an upgrade",
                    m.id
                ));
            }
            if let Err(e) = c.quorum_read_ok(m.id) {
                return fail(format!(
                    "etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade: {}",
                    m.id,
                    if e.message == msg::SERVER_STOPPED {
                        msg::DEADLINE
                    } else {
                        e.message.as_str()
                    }
                ));
            }
        }
        Ok(())
    }

    /// Cordon + evict what can be evicted (as Talos does before upgrade and graceful reset).
    fn drain(&mut self, i: usize) {
        let host = self.nodes[i].hostname.clone();
        if !self.k8s_api_available() {
            return;
        }
        if self.unschedulable.insert(host.clone()) {
            self.nodes[i].cordoned_by_talos = true;
        }
        let victims: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|p| {
                p.node.as_deref() == Some(&host) && matches!(p.owner, PodOwner::ReplicaSet(_))
            })
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        for (ns, name) in victims {
            let _ = self.evict_inner(&ns, &name);
        }
    }

    /// `ApplyConfiguration`. Maintenance mode accepts REBOOT/AUTO/TRY and installs; otherwise
    /// AUTO picks NO_REBOOT when every changed section applies immediately.
    pub fn apply_configuration(
        &mut self,
        label: &str,
        data: &str,
        mode: ApplyMode,
        dry_run: bool,
        now: SimTime,
    ) -> Result<ApplyResult, ApiError> {
        self.mutate("ApplyConfiguration", label, now, |c, i| {
            let new = MachineConfig::parse(data)?;
            let t = c.timings;
            if c.nodes[i].stage == Stage::Maintenance {
                if !matches!(mode, ApplyMode::Reboot | ApplyMode::Auto | ApplyMode::Try) {
                    return Err(ApiError::new(
                        Code::Unimplemented,
                        format!("apply configuration --mode='{}' is not supported in maintenance mode", mode.cli_name()),
                    ));
                }
                if dry_run {
                    return Ok(ApplyResult { mode, mode_details: "Dry run: node would install and reboot".into(), warnings: Vec::new() });
                }
                let n = &mut c.nodes[i];
                if let Some(h) = &new.hostname {
                    n.hostname = h.clone();
                }
                n.config = Some(new);
                n.stage = Stage::Installing;
                n.epoch += 1;
                c.schedule(i, t.image_pull + t.install, TimerKind::InstallDone);
                return Ok(ApplyResult { mode: ApplyMode::Reboot, mode_details: "Applied configuration with a reboot".into(), warnings: Vec::new() });
            }
            let needs_reboot = c.nodes[i].config.as_ref().is_none_or(|old| old.needs_reboot_to_apply(&new));
            let effective = match mode {
                ApplyMode::Auto if needs_reboot => ApplyMode::Reboot,
                ApplyMode::Auto => ApplyMode::NoReboot,
                m => m,
            };
            if matches!(effective, ApplyMode::NoReboot | ApplyMode::Try) && needs_reboot {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    "apply configuration failed: the configuration change requires a reboot, use --mode=reboot or --mode=auto",
                ));
            }
            if dry_run {
                return Ok(ApplyResult { mode: effective, mode_details: "Dry run summary: config diff not rendered by the simulator".into(), warnings: Vec::new() });
            }
            let n = &mut c.nodes[i];
            let details = match effective {
                ApplyMode::Staged => {
                    n.staged_config = Some(new);
                    "Staged configuration to be applied after the next reboot"
                }
                ApplyMode::Reboot => {
                    n.config = Some(new);
                    c.begin_reboot(i, Stage::Rebooting);
                    "Applied configuration with a reboot"
                }
                ApplyMode::Try => {
                    n.try_rollback = n.config.replace(new);
                    n.load_configured_modules();
                    c.schedule(i, t.config_try_timeout, TimerKind::TryRollback);
                    "Applied configuration without a reboot (try mode)"
                }
                ApplyMode::NoReboot | ApplyMode::Auto => {
                    n.config = Some(new);
                    n.load_configured_modules();
                    "Applied configuration without a reboot"
                }
            };
            Ok(ApplyResult { mode: effective, mode_details: details.into(), warnings: Vec::new() })
        })
    }

    /// `Bootstrap`: refuses on workers, before etcd waits for it, and with `AlreadyExists`
    /// when `/var/lib/etcd` holds data. On a fresh node it always succeeds, even while another
    /// cluster lives (split brain). `recover_etcd` restores the uploaded snapshot.
    pub fn bootstrap(
        &mut self,
        label: &str,
        recover_etcd: bool,
        skip_hash_check: bool,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.mutate("Bootstrap", label, now, |c, i| {
            let id = c.next_id();
            let member = c.next_id();
            let n = &c.nodes[i];
            if !n.is_control_plane() {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::BOOTSTRAP_CONTROL_PLANE_ONLY,
                ));
            }
            if matches!(n.etcd_data, EtcdData::Member { .. }) {
                return Err(ApiError::new(Code::AlreadyExists, msg::DATA_DIR_NOT_EMPTY));
            }
            if n.service("etcd")
                .is_none_or(|s| s.state != ServiceState::Preparing)
            {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::BOOTSTRAP_NOT_AVAILABLE,
                ));
            }
            let now = c.now;
            let host = n.hostname.clone();
            let peer = peer_url(&n.label);
            let client = client_url(&n.label);
            let first = NewMember {
                id: member,
                name: &host,
                peer_url: &peer,
                client_url: &client,
            };
            let timings = EtcdTimings::from(&c.timings);
            let cluster = if recover_etcd {
                let restored = match c.nodes[i].etcd_snapshot_upload.take() {
                    Some(snap) => {
                        EtcdCluster::restore(&snap, skip_hash_check, id, first, now, timings)
                    }
                    None => Err(ApiError::new(
                        Code::Unknown,
                        "open /var/lib/etcd.snapshot: no such file or directory",
                    )),
                };
                match restored {
                    Ok(cl) => cl,
                    Err(e) => {
                        // The API call succeeds; the etcd service fails to recover.
                        let svc = c.nodes[i].service_mut("etcd", now);
                        svc.set(
                            ServiceState::Failed,
                            &format!("failed to recover etcd from snapshot: {}", e.message),
                            now,
                        );
                        return Ok(());
                    }
                }
            } else {
                EtcdCluster::bootstrap(id, first, KvStore::default(), now, timings)
            };
            c.etcd.push(cluster);
            let n = &mut c.nodes[i];
            n.etcd_data = EtcdData::Member {
                cluster: id,
                member,
            };
            n.etcd_started_at = Some(now);
            n.service_mut("etcd", now).set(
                ServiceState::Running,
                "Service started as goroutine",
                now,
            );
            let h = c.timings.etcd_health_interval;
            c.schedule(i, h, TimerKind::Wake);
            Ok(())
        })
    }

    /// `EtcdRecover`: uploads a snapshot for `bootstrap(recover_etcd = true)`.
    pub fn etcd_recover(
        &mut self,
        label: &str,
        snapshot: &[u8],
        now: SimTime,
    ) -> Result<(), ApiError> {
        let snapshot = snapshot.to_vec();
        self.mutate("EtcdRecover", label, now, move |c, i| {
            if !matches!(c.nodes[i].stage, Stage::Booting | Stage::Running) {
                return Err(ApiError::new(
                    Code::FailedPrecondition,
                    msg::RECOVER_NOT_READY,
                ));
            }
            c.control_plane_only(i, "etcd recover")?;
            c.nodes[i].etcd_snapshot_upload = Some(snapshot);
            Ok(())
        })
    }

    /// `Reset`: graceful = cordon/drain and leave etcd first (retrying `unhealthy cluster`
    /// for up to 5 min); then wipe the labels (all = whole system disk) and reboot or power off.
    /// No quorum check.
    pub fn reset(&mut self, label: &str, req: &ResetRequest, now: SimTime) -> Result<(), ApiError> {
        let req = req.clone();
        self.mutate("Reset", label, now, move |c, i| {
            c.takeover_allowed(i)?;
            for l in &req.system_labels_to_wipe {
                if !matches!(l.as_str(), "STATE" | "EPHEMERAL" | "META") {
                    return Err(ApiError::new(
                        Code::Unknown,
                        format!("failed to reset: volume {l:?} not found"),
                    ));
                }
            }
            let leave = req.graceful
                && c.nodes[i].is_control_plane()
                && matches!(c.nodes[i].etcd_data, EtcdData::Member { .. })
                && c.nodes[i].service("etcd").is_some_and(|s| {
                    matches!(s.state, ServiceState::Running | ServiceState::Failed)
                });
            if req.graceful {
                c.drain(i);
            }
            let n = &mut c.nodes[i];
            n.pending_reset = Some(req);
            n.stage = Stage::Resetting;
            n.epoch += 1;
            let t = c.timings;
            if leave {
                let deadline = c.now + t.shutdown + t.leave_retry_limit;
                let deadline_ms =
                    u64::try_from(deadline.as_duration().as_millis()).unwrap_or(u64::MAX);
                c.schedule(i, t.shutdown, TimerKind::ResetLeave { deadline_ms });
            } else {
                c.schedule(i, t.shutdown, TimerKind::ResetWipe);
            }
            Ok(())
        })
    }

    /// `EtcdRemoveMemberByID` (through the control-plane endpoints, require-leader).
    pub fn etcd_remove_member(
        &mut self,
        label: &str,
        member_id: MemberId,
        now: SimTime,
    ) -> Result<(), ApiError> {
        self.mutate("EtcdRemoveMemberByID", label, now, |c, i| {
            c.control_plane_only(i, "etcd remove member")?;
            let (ci, via) = c
                .cluster_client(i)
                .map_err(|e| e.wrapped("failed to remove member"))?;
            let now = c.now;
            c.etcd[ci].remove_member(via, member_id, now).map_err(|e| {
                if e.code == Code::NotFound {
                    e
                } else {
                    e.wrapped("failed to remove member")
                }
            })
        })
    }

    /// `EtcdLeaveCluster`: removes this node's member, then stops etcd and clears its data.
    pub fn etcd_leave_cluster(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.mutate("EtcdLeaveCluster", label, now, |c, i| {
            c.control_plane_only(i, "etcd leave")?;
            let wrap = |e: ApiError| e.wrapped("failed to leave cluster");
            let EtcdData::Member { member, .. } = c.nodes[i].etcd_data else {
                return Err(wrap(ApiError::new(
                    Code::Unknown,
                    "etcd member ID is not available",
                )));
            };
            let (ci, via) = c.cluster_client(i).map_err(wrap)?;
            let now = c.now;
            c.etcd[ci].remove_member(via, member, now).map_err(wrap)?;
            c.etcd[ci].stop_member(member, now);
            let n = &mut c.nodes[i];
            n.etcd_data = EtcdData::Empty;
            n.etcd_started_at = None;
            n.service_mut("etcd", now).set(
                ServiceState::Finished,
                "Service finished successfully",
                now,
            );
            Ok(())
        })
    }

    /// `EtcdForfeitLeadership`: moves leadership away if this node's member leads; answers
    /// the new leader (None if this member did not lead).
    pub fn etcd_forfeit_leadership(
        &mut self,
        label: &str,
        now: SimTime,
    ) -> Result<Option<MemberId>, ApiError> {
        self.mutate("EtcdForfeitLeadership", label, now, |c, i| {
            c.control_plane_only(i, "etcd forfeit leadership")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed to forfeit leadership"))?;
            let was_leader = c.etcd[ci].leader() == Some(m);
            let now = c.now;
            let leader = c.etcd[ci]
                .forfeit_leadership(m, now)
                .map_err(|e| e.wrapped("failed to forfeit leadership"))?;
            Ok(was_leader.then_some(leader))
        })
    }

    /// `EtcdSnapshot` from this node's member (works without quorum).
    pub fn etcd_snapshot(&mut self, label: &str, now: SimTime) -> Result<Vec<u8>, ApiError> {
        self.mutate("EtcdSnapshot", label, now, |c, i| {
            c.control_plane_only(i, "etcd snapshot")?;
            let (ci, m) = c
                .local_member(i)
                .map_err(|e| e.wrapped("failed reading etcd snapshot"))?;
            c.etcd[ci]
                .snapshot(m)
                .map_err(|e| e.wrapped("failed reading etcd snapshot"))
        })
    }

    /// Writes a key through this node's member (test and scenario helper; needs quorum).
    pub fn etcd_put(
        &mut self,
        label: &str,
        key: &str,
        value: &str,
        now: SimTime,
    ) -> Result<i64, ApiError> {
        self.mutate("EtcdPut", label, now, |c, i| {
            let (ci, m) = c.local_member(i)?;
            c.etcd[ci].put(m, key, value)
        })
    }

    /// The node's machine type from its config (`MachineTypes.config.talos.dev`; scenarios use
    /// it too).
    pub fn machine_type(&self, label: &str) -> Option<MachineType> {
        self.node(label)
            .and_then(|n| n.config.as_ref())
            .map(|c| c.machine_type)
    }
}
