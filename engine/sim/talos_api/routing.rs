//! Node targeting as apid's director does it (`talos-api.md` §1.3, §1.4).
//!
//! - no metadata: the endpoint node answers itself;
//! - `node: X` (exactly one value): proxied one-to-one; the reply is unmodified (metadata
//!   unset) and an upstream error is the call's status;
//! - `nodes: a, b` (one metadata entry per node): fan-out; each reply entry gets
//!   `metadata.hostname` = the target string as sent, a failing node becomes an entry with
//!   `metadata.error`/`status`, and the call itself succeeds.
//!
//! COSI methods refuse `nodes`; `node` with several values is `InvalidArgument`. A target is
//! resolved by label or hostname; only control-plane endpoints forward (a worker answers
//! `PermissionDenied "no request forwarding"`), and a routed call to a down node gives the
//! dial error (`Unavailable`). A node in maintenance cannot be reached through apid: its
//! server certificate is not signed by the OS CA, so forwarding fails the handshake.
//! Maintenance connections have no director, so metadata is ignored there.

use std::pin::Pin;

use futures::Stream;
use runbook_proto::common::{Data, Metadata};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::NodeApi;
use super::auth::{Access, Conn, authorize, conn_of};
use super::status::{error_metadata, ok_metadata, to_status};
use crate::sim::node::Stage;
use crate::sim::{ApiError, Cluster, Code, SimTime};

/// Where a call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The endpoint node.
    Local,
    /// One-to-one proxying to this target.
    One(String),
    /// Fan-out to these targets.
    Many(Vec<String>),
}

/// Reads the routing metadata; `cosi` methods refuse `nodes`.
pub fn target_of(meta: &MetadataMap, cosi: bool) -> Result<Target, Status> {
    let values = |key: &str| -> Result<Vec<String>, Status> {
        meta.get_all(key)
            .iter()
            .map(|v| {
                v.to_str().map(str::to_string).map_err(|_| {
                    Status::invalid_argument(format!("{key} metadata is not valid text"))
                })
            })
            .collect()
    };
    let nodes = values("nodes")?;
    let node = values("node")?;
    if !nodes.is_empty() {
        if cosi {
            return Err(Status::invalid_argument(
                "one-2-many proxying is not supported for COSI methods",
            ));
        }
        return Ok(Target::Many(nodes));
    }
    match node.len() {
        0 => Ok(Target::Local),
        1 => Ok(Target::One(node.into_iter().next().unwrap_or_default())),
        _ => Err(Status::invalid_argument(
            "node metadata must be single-valued",
        )),
    }
}

/// A reply entry (`Xxx { common.Metadata metadata = 1; ... }`).
pub trait Entry: Default {
    /// Sets field 1.
    fn set_metadata(&mut self, m: Metadata);
}

macro_rules! entries {
    ($($t:ty),* $(,)?) => {
        $(impl Entry for $t {
            fn set_metadata(&mut self, m: Metadata) {
                self.metadata = Some(m);
            }
        })*
    };
}

use runbook_proto::machine as m;
entries!(
    m::ApplyConfiguration,
    m::Reboot,
    m::Bootstrap,
    m::Reset,
    m::Shutdown,
    m::Upgrade,
    m::ServiceList,
    m::Version,
    m::EtcdLeaveCluster,
    m::EtcdRemoveMemberById,
    m::EtcdForfeitLeadership,
    m::EtcdMembers,
    m::EtcdRecover,
    m::EtcdAlarm,
    m::EtcdStatus,
    m::Event,
    runbook_proto::storage::Disks,
    runbook_proto::storage::BlockDeviceWipe,
    Data,
);

/// A boxed server stream of `common.Data`.
pub type DataStream = Pin<Box<dyn Stream<Item = Result<Data, Status>> + Send + 'static>>;

/// Chunk size of streamed `common.Data` replies.
pub const CHUNK: usize = 64 * 1024;

fn chunks(bytes: &[u8], meta: Option<Metadata>) -> Vec<Data> {
    if bytes.is_empty() {
        return vec![Data {
            metadata: meta,
            bytes: Vec::new(),
        }];
    }
    bytes
        .chunks(CHUNK)
        .map(|c| Data {
            metadata: meta.clone(),
            bytes: c.to_vec(),
        })
        .collect()
}

impl NodeApi {
    /// Identifies and authorizes the caller, and checks the connection still fits the node
    /// (an mTLS connection to a node that went into maintenance, or a maintenance connection
    /// to a node that has since been configured, is a connection the real node dropped).
    pub fn begin<T>(&self, req: &Request<T>, access: Access) -> Result<Conn, Status> {
        let conn = conn_of(req);
        let stage = self.ctx.cluster.with(|c, _| {
            c.node(&self.endpoint)
                .filter(|n| n.api_up())
                .map(|n| n.stage())
        });
        match (&conn, stage) {
            (_, None) => {
                return Err(to_status(ApiError::unreachable(
                    &self.endpoint,
                    crate::sim::cluster::APID_PORT,
                )));
            }
            (Conn::Secure(_), Some(Stage::Maintenance)) => {
                return Err(Status::unavailable(
                    "error reading from server: EOF (the node rebooted into maintenance mode; connect with --insecure)",
                ));
            }
            (Conn::Maintenance, Some(s)) if s != Stage::Maintenance => {
                return Err(Status::unavailable(
                    "error reading from server: EOF (the node left maintenance mode; connect with a talosconfig)",
                ));
            }
            _ => {}
        }
        authorize(&conn, access)?;
        Ok(conn)
    }

    /// The routing target of a call on `conn` (maintenance connections are always local).
    pub fn target(&self, meta: &MetadataMap, conn: &Conn, cosi: bool) -> Result<Target, Status> {
        match conn {
            Conn::Maintenance => Ok(Target::Local),
            Conn::Secure(_) => target_of(meta, cosi),
        }
    }

    /// Resolves a target string to a node label, as apid would dial it.
    pub fn resolve(&self, target: &str) -> Result<String, ApiError> {
        self.ctx
            .cluster
            .with(|c, _| resolve_in(c, &self.endpoint, target))
    }

    /// Runs a unary call for every target and wraps the replies as apid does.
    pub fn unary<E: Entry>(
        &self,
        meta: &MetadataMap,
        conn: &Conn,
        f: impl Fn(&mut Cluster, &str, SimTime) -> Result<Vec<E>, ApiError>,
    ) -> Result<Vec<E>, Status> {
        let run = |label: &str| self.ctx.call(|c, now| f(c, label, now));
        match self.target(meta, conn, false)? {
            Target::Local => run(&self.endpoint).map_err(to_status),
            Target::One(t) => self
                .resolve(&t)
                .and_then(|label| run(&label))
                .map_err(to_status),
            Target::Many(targets) => {
                let mut out = Vec::new();
                for t in targets {
                    match self.resolve(&t).and_then(|label| run(&label)) {
                        Ok(entries) => {
                            for mut e in entries {
                                e.set_metadata(ok_metadata(&t));
                                out.push(e);
                            }
                        }
                        Err(err) => {
                            let mut e = E::default();
                            e.set_metadata(error_metadata(&t, &to_status(err)));
                            out.push(e);
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Runs a call that streams bytes back (`Read`, `EtcdSnapshot`, `Kubeconfig`).
    pub fn data(
        &self,
        meta: &MetadataMap,
        conn: &Conn,
        f: impl Fn(&mut Cluster, &str, SimTime) -> Result<Vec<u8>, ApiError>,
    ) -> Result<DataStream, Status> {
        let run = |label: &str| self.ctx.call(|c, now| f(c, label, now));
        let items: Vec<Data> = match self.target(meta, conn, false)? {
            Target::Local => chunks(&run(&self.endpoint).map_err(to_status)?, None),
            Target::One(t) => chunks(
                &self
                    .resolve(&t)
                    .and_then(|label| run(&label))
                    .map_err(to_status)?,
                None,
            ),
            Target::Many(targets) => {
                let mut out = Vec::new();
                for t in targets {
                    match self.resolve(&t).and_then(|label| run(&label)) {
                        Ok(bytes) => out.extend(chunks(&bytes, Some(ok_metadata(&t)))),
                        Err(err) => out.push(Data {
                            metadata: Some(error_metadata(&t, &to_status(err))),
                            bytes: Vec::new(),
                        }),
                    }
                }
                out
            }
        };
        Ok(Box::pin(futures::stream::iter(items.into_iter().map(Ok))))
    }
}

/// Resolves `target` (label or hostname) seen from `endpoint`.
pub fn resolve_in(c: &Cluster, endpoint: &str, target: &str) -> Result<String, ApiError> {
    let ep = c.node(endpoint);
    if target == endpoint || ep.is_some_and(|n| n.hostname() == target) {
        return Ok(endpoint.to_string());
    }
    if target.contains(':') && target.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::new(
            Code::InvalidArgument,
            format!("target {target:?} must not contain a port"),
        ));
    }
    if !ep.is_some_and(|n| n.is_control_plane()) {
        return Err(ApiError::new(
            Code::PermissionDenied,
            "no request forwarding",
        ));
    }
    let Some(node) = c
        .nodes()
        .iter()
        .find(|n| n.label() == target || n.hostname() == target)
    else {
        return Err(ApiError::unreachable(
            target,
            crate::sim::cluster::APID_PORT,
        ));
    };
    if node.api_up() && node.stage() == Stage::Maintenance {
        return Err(ApiError::new(
            Code::Unavailable,
            "connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority\"",
        ));
    }
    Ok(node.label().to_string())
}
