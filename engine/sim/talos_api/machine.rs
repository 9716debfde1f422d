//! `machine.MachineService` over the model.
//!
//! Each handler authorizes the caller ([`Access`]), routes with `node`/`nodes`
//! ([`NodeApi::unary`], [`NodeApi::data`]) and calls the model method of the same name;
//! mutating calls land in the model's call log and `calls.jsonl`. Replies answer at once, as
//! Talos does: a rebooting node goes down afterwards, on the model's clock. Kept out:
//! `Copy` of anything but etcd's database (answers `Unimplemented`), `actor_id` (always empty: the simulator has no actor
//! tracking, so `talosctl --wait` falls back to polling).

use runbook_proto::common::Data;
use runbook_proto::machine::machine_service_server::MachineService;
use runbook_proto::machine::{self as pb, reboot_request, upgrade_request};
use tonic::{Request, Response, Status, Streaming};

use super::NodeApi;
use super::auth::Access;
use super::events::EventStream;
use super::routing::DataStream;
use crate::sim::etcd::{Alarm, MemberInfo};
use crate::sim::node::{ApplyMode, RebootMode, ResetRequest, Service, UpgradeRequest};
use crate::sim::{ApiError, Code};

/// Paths `Read` can serve.
pub const READABLE: [&str; 4] = [
    "/proc/sys/kernel/random/boot_id",
    "/proc/sys/kernel/hostname",
    "/proc/modules",
    "/proc/uptime",
];

fn reboot_mode(v: i32) -> RebootMode {
    if v == reboot_request::Mode::Powercycle as i32 {
        RebootMode::Powercycle
    } else {
        RebootMode::Default
    }
}

fn member(m: &MemberInfo) -> pb::EtcdMember {
    pb::EtcdMember {
        id: m.id,
        hostname: m.hostname.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

impl NodeApi {
    fn service_info(&self, s: &Service) -> pb::ServiceInfo {
        let wall = self.ctx.wall;
        let last_change = s.events.last().map(|e| wall.timestamp(e.at));
        pb::ServiceInfo {
            id: s.id.clone(),
            state: s.state.as_str().to_string(),
            events: Some(pb::ServiceEvents {
                events: s
                    .events
                    .iter()
                    .map(|e| pb::ServiceEvent {
                        msg: e.msg.clone(),
                        state: e.state.as_str().to_string(),
                        ts: Some(wall.timestamp(e.at)),
                    })
                    .collect(),
            }),
            health: Some(pb::ServiceHealth {
                unknown: s.healthy.is_none(),
                healthy: s.healthy.unwrap_or(false),
                last_message: s.health_message.clone(),
                last_change,
            }),
        }
    }
}

fn read_path(
    c: &mut crate::sim::Cluster,
    label: &str,
    path: &str,
    now: crate::sim::SimTime,
) -> Result<Vec<u8>, ApiError> {
    let boot_id = c.boot_id(label, now)?;
    let node = c
        .node(label)
        .ok_or_else(|| ApiError::unreachable(label, crate::sim::cluster::APID_PORT))?;
    match path {
        "/proc/sys/kernel/random/boot_id" => Ok(format!("{boot_id}\n").into_bytes()),
        "/proc/sys/kernel/hostname" => Ok(format!("{}\n", node.hostname()).into_bytes()),
        "/proc/modules" => Ok(node
            .loaded_modules()
            .iter()
            .map(|m| format!("{} 16384 0 - {} 0x0000000000000000\n", m.name, m.state))
            .collect::<String>()
            .into_bytes()),
        // Seconds since this boot began on the node's own clock, then idle seconds. The model
        // divides every realistic duration by the speed factor, so the node's clock is the
        // model's time multiplied by it: at speed 100 a node stuck for one wall second has
        // been up 100 s, as its 60 s reboots and 70 min boot timeout say.
        "/proc/uptime" => {
            let speed = c.timings().speed.factor();
            let up = now.saturating_since(node.boot_started_at).as_secs_f64() * speed;
            Ok(format!("{up:.2} {:.2}\n", up * 2.0).into_bytes())
        }
        other => Err(ApiError::new(
            Code::Unknown,
            format!("stat {other}: no such file or directory"),
        )),
    }
}

#[tonic::async_trait]
impl MachineService for NodeApi {
    async fn apply_configuration(
        &self,
        req: Request<pb::ApplyConfigurationRequest>,
    ) -> Result<Response<pb::ApplyConfigurationResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let r = req.get_ref();
        let data = String::from_utf8(r.data.clone()).map_err(|_| {
            Status::invalid_argument("failed to parse config: the configuration is not valid UTF-8")
        })?;
        let mode = ApplyMode::from_i32(r.mode)
            .ok_or_else(|| Status::invalid_argument(format!("unknown apply mode {}", r.mode)))?;
        let dry_run = r.dry_run;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let res = c.apply_configuration(l, &data, mode, dry_run, now)?;
            Ok(vec![pb::ApplyConfiguration {
                metadata: None,
                warnings: res.warnings,
                mode: res.mode.as_i32(),
                mode_details: res.mode_details,
            }])
        })?;
        Ok(Response::new(pb::ApplyConfigurationResponse { messages }))
    }

    async fn bootstrap(
        &self,
        req: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let (recover, skip) = (
            req.get_ref().recover_etcd,
            req.get_ref().recover_skip_hash_check,
        );
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.bootstrap(l, recover, skip, now)?;
            Ok(vec![pb::Bootstrap::default()])
        })?;
        Ok(Response::new(pb::BootstrapResponse { messages }))
    }

    type CopyStream = DataStream;

    async fn copy(&self, req: Request<pb::CopyRequest>) -> Result<Response<DataStream>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let path = req.get_ref().root_path.clone();
        let stream = self.data(req.metadata(), &conn, |c, l, now| c.copy(l, &path, now))?;
        Ok(Response::new(stream))
    }

    type EventsStream = EventStream;

    async fn events(
        &self,
        req: Request<pb::EventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let conn = self.begin(&req, Access::Read)?;
        let target = self.target(req.metadata(), &conn, false)?;
        Ok(Response::new(self.event_stream(target, req.get_ref())?))
    }

    async fn etcd_member_list(
        &self,
        req: Request<pb::EtcdMemberListRequest>,
    ) -> Result<Response<pb::EtcdMemberListResponse>, Status> {
        let conn = self.begin(&req, Access::EtcdRead)?;
        let local = req.get_ref().query_local;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let members = c.etcd_member_list(l, local, now)?;
            Ok(vec![pb::EtcdMembers {
                metadata: None,
                legacy_members: Vec::new(),
                members: members.iter().map(member).collect(),
            }])
        })?;
        Ok(Response::new(pb::EtcdMemberListResponse { messages }))
    }

    async fn etcd_remove_member_by_id(
        &self,
        req: Request<pb::EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<pb::EtcdRemoveMemberByIdResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let id = req.get_ref().member_id;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.etcd_remove_member(l, id, now)?;
            Ok(vec![pb::EtcdRemoveMemberById::default()])
        })?;
        Ok(Response::new(pb::EtcdRemoveMemberByIdResponse { messages }))
    }

    async fn etcd_leave_cluster(
        &self,
        req: Request<pb::EtcdLeaveClusterRequest>,
    ) -> Result<Response<pb::EtcdLeaveClusterResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.etcd_leave_cluster(l, now)?;
            Ok(vec![pb::EtcdLeaveCluster::default()])
        })?;
        Ok(Response::new(pb::EtcdLeaveClusterResponse { messages }))
    }

    async fn etcd_forfeit_leadership(
        &self,
        req: Request<pb::EtcdForfeitLeadershipRequest>,
    ) -> Result<Response<pb::EtcdForfeitLeadershipResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let leader = c.etcd_forfeit_leadership(l, now)?;
            Ok(vec![pb::EtcdForfeitLeadership {
                metadata: None,
                member: leader.map(crate::sim::etcd::format_id).unwrap_or_default(),
            }])
        })?;
        Ok(Response::new(pb::EtcdForfeitLeadershipResponse {
            messages,
        }))
    }

    async fn etcd_recover(
        &self,
        req: Request<Streaming<Data>>,
    ) -> Result<Response<pb::EtcdRecoverResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let meta = req.metadata().clone();
        let mut stream = req.into_inner();
        let mut snapshot = Vec::new();
        while let Some(chunk) = stream.message().await? {
            snapshot.extend_from_slice(&chunk.bytes);
        }
        let messages = self.unary(&meta, &conn, |c, l, now| {
            c.etcd_recover(l, &snapshot, now)?;
            Ok(vec![pb::EtcdRecover::default()])
        })?;
        Ok(Response::new(pb::EtcdRecoverResponse { messages }))
    }

    type EtcdSnapshotStream = DataStream;

    async fn etcd_snapshot(
        &self,
        req: Request<pb::EtcdSnapshotRequest>,
    ) -> Result<Response<DataStream>, Status> {
        let conn = self.begin(&req, Access::Snapshot)?;
        let stream = self.data(req.metadata(), &conn, |c, l, now| c.etcd_snapshot(l, now))?;
        Ok(Response::new(stream))
    }

    async fn etcd_alarm_list(
        &self,
        req: Request<()>,
    ) -> Result<Response<pb::EtcdAlarmListResponse>, Status> {
        let conn = self.begin(&req, Access::EtcdRead)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let alarms = c.etcd_alarm_list(l, now)?;
            Ok(vec![pb::EtcdAlarm {
                metadata: None,
                member_alarms: alarms
                    .into_iter()
                    .map(|(id, a)| pb::EtcdMemberAlarm {
                        member_id: id,
                        alarm: match a {
                            Alarm::NoSpace => pb::etcd_member_alarm::AlarmType::Nospace as i32,
                            Alarm::Corrupt => pb::etcd_member_alarm::AlarmType::Corrupt as i32,
                        },
                    })
                    .collect(),
            }])
        })?;
        Ok(Response::new(pb::EtcdAlarmListResponse { messages }))
    }

    async fn etcd_status(
        &self,
        req: Request<()>,
    ) -> Result<Response<pb::EtcdStatusResponse>, Status> {
        let conn = self.begin(&req, Access::EtcdRead)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let s = c.etcd_status(l, now)?;
            Ok(vec![pb::EtcdStatus {
                metadata: None,
                member_status: Some(pb::EtcdMemberStatus {
                    storage_version: s.storage_version,
                    member_id: s.member_id,
                    protocol_version: s.protocol_version,
                    db_size: s.db_size,
                    db_size_in_use: s.db_size_in_use,
                    leader: s.leader,
                    raft_index: s.raft_index,
                    raft_term: s.raft_term,
                    raft_applied_index: s.raft_applied_index,
                    errors: s.errors,
                    is_learner: s.is_learner,
                }),
            }])
        })?;
        Ok(Response::new(pb::EtcdStatusResponse { messages }))
    }

    type KubeconfigStream = DataStream;

    async fn kubeconfig(&self, req: Request<()>) -> Result<Response<DataStream>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let slot = self.ctx.kubeconfig.clone();
        let stream = self.data(req.metadata(), &conn, |c, l, now| {
            // The node must answer (and be a control plane) like any other call.
            c.version(l, now)?;
            if c.node(l).is_some_and(|n| !n.is_control_plane()) {
                return Err(ApiError::new(
                    Code::Unimplemented,
                    "kubeconfig is only available on control plane nodes",
                ));
            }
            let kubeconfig = slot
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .ok_or_else(|| {
                    ApiError::new(
                        Code::FailedPrecondition,
                        "kubeconfig is not available: the simulator's Kubernetes API server is not running",
                    )
                })?;
            Ok(super::kubeconfig::tar_gz("kubeconfig", &kubeconfig))
        })?;
        Ok(Response::new(stream))
    }

    type ReadStream = DataStream;

    async fn read(&self, req: Request<pb::ReadRequest>) -> Result<Response<DataStream>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let path = req.get_ref().path.clone();
        let stream = self.data(req.metadata(), &conn, |c, l, now| {
            read_path(c, l, &path, now)
        })?;
        Ok(Response::new(stream))
    }

    async fn reboot(
        &self,
        req: Request<pb::RebootRequest>,
    ) -> Result<Response<pb::RebootResponse>, Status> {
        let conn = self.begin(&req, Access::Operate)?;
        let mode = reboot_mode(req.get_ref().mode);
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.reboot(l, mode, now)?;
            Ok(vec![pb::Reboot::default()])
        })?;
        Ok(Response::new(pb::RebootResponse { messages }))
    }

    async fn reset(
        &self,
        req: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let r = req.get_ref();
        let reset = ResetRequest {
            graceful: r.graceful,
            reboot: r.reboot,
            system_labels_to_wipe: r
                .system_partitions_to_wipe
                .iter()
                .filter(|p| p.wipe)
                .map(|p| p.label.clone())
                .collect(),
        };
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.reset(l, &reset, now)?;
            Ok(vec![pb::Reset::default()])
        })?;
        Ok(Response::new(pb::ResetResponse { messages }))
    }

    async fn service_list(
        &self,
        req: Request<()>,
    ) -> Result<Response<pb::ServiceListResponse>, Status> {
        let conn = self.begin(&req, Access::Read)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let services = c.service_list(l, now)?;
            Ok(vec![pb::ServiceList {
                metadata: None,
                services: services.iter().map(|s| self.service_info(s)).collect(),
            }])
        })?;
        Ok(Response::new(pb::ServiceListResponse { messages }))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let conn = self.begin(&req, Access::Operate)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.shutdown(l, now)?;
            Ok(vec![pb::Shutdown::default()])
        })?;
        Ok(Response::new(pb::ShutdownResponse { messages }))
    }

    async fn upgrade(
        &self,
        req: Request<pb::UpgradeRequest>,
    ) -> Result<Response<pb::UpgradeResponse>, Status> {
        let conn = self.begin(&req, Access::Admin)?;
        let r = req.get_ref();
        let upgrade = UpgradeRequest {
            image: r.image.clone(),
            preserve: r.preserve,
            stage: r.stage,
            force: r.force,
            reboot_mode: if r.reboot_mode == upgrade_request::RebootMode::Powercycle as i32 {
                RebootMode::Powercycle
            } else {
                RebootMode::Default
            },
        };
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            c.upgrade(l, &upgrade, now)?;
            Ok(vec![pb::Upgrade {
                metadata: None,
                ack: "Upgrade request received".into(),
                actor_id: String::new(),
            }])
        })?;
        Ok(Response::new(pb::UpgradeResponse { messages }))
    }

    async fn version(&self, req: Request<()>) -> Result<Response<pb::VersionResponse>, Status> {
        let conn = self.begin(&req, Access::Read)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            let v = c.version(l, now)?;
            Ok(vec![pb::Version {
                metadata: None,
                version: Some(pb::VersionInfo {
                    tag: v.tag,
                    sha: "simulated".into(),
                    built: String::new(),
                    go_version: "go1.24.9".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                }),
                platform: Some(pb::PlatformInfo {
                    name: v.platform.clone(),
                    mode: v.platform,
                }),
                features: Some(pb::FeaturesInfo { rbac: true }),
            }])
        })?;
        Ok(Response::new(pb::VersionResponse { messages }))
    }
}
