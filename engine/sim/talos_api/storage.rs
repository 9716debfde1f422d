//! `storage.StorageService`: `Disks`, the compatibility shim over COSI `block.Disk` that Talos
//! 1.11 still serves (`device_name` = `/dev/<id>`, `type` derived from cdrom / transport /
//! rotational, `system_disk` from `SystemDisks`). `BlockDeviceWipe` is not simulated.

use runbook_proto::storage::storage_service_server::StorageService;
use runbook_proto::storage::{self as pb, disk::DiskType};
use tonic::{Request, Response, Status};

use super::NodeApi;
use super::auth::Access;
use crate::sim::node::Disk;

fn disk_type(d: &Disk) -> DiskType {
    if d.cdrom {
        DiskType::Cd
    } else if d.transport == "nvme" {
        DiskType::Nvme
    } else if d.transport == "mmc" {
        DiskType::Sd
    } else if d.rotational {
        DiskType::Hdd
    } else {
        DiskType::Ssd
    }
}

/// The storage API shape of a model disk.
pub fn to_pb(d: &Disk) -> pb::Disk {
    pb::Disk {
        size: d.size,
        model: d.model.clone(),
        device_name: d.dev_path.clone(),
        name: d.id.clone(),
        serial: d.serial.clone(),
        modalias: d.modalias.clone(),
        uuid: String::new(),
        wwid: d.wwid.clone(),
        r#type: disk_type(d) as i32,
        bus_path: d.bus_path.clone(),
        system_disk: d.system_disk,
        subsystem: d.sub_system.clone(),
        readonly: d.readonly,
    }
}

#[tonic::async_trait]
impl StorageService for NodeApi {
    async fn disks(&self, req: Request<()>) -> Result<Response<pb::DisksResponse>, Status> {
        let conn = self.begin(&req, Access::Read)?;
        let messages = self.unary(req.metadata(), &conn, |c, l, now| {
            Ok(vec![pb::Disks {
                metadata: None,
                disks: c.disks(l, now)?.iter().map(to_pb).collect(),
            }])
        })?;
        Ok(Response::new(pb::DisksResponse { messages }))
    }

    async fn block_device_wipe(
        &self,
        req: Request<pb::BlockDeviceWipeRequest>,
    ) -> Result<Response<pb::BlockDeviceWipeResponse>, Status> {
        self.begin(&req, Access::Admin)?;
        Err(Status::unimplemented(
            "BlockDeviceWipe is not supported by the simulated node",
        ))
    }
}
