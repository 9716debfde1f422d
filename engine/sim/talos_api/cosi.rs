//! COSI `cosi.resource.State` (Get, List, Watch) over the model.
//!
//! Reads need a reader role; sensitive types (`MachineConfigs`) need `os:admin` and are
//! hidden from maintenance connections. COSI refuses `nodes` (one-to-many) and honours
//! `node`. Watch follows the COSI runtime server: an empty `WatchResponse` first ("watch is
//! ready"); for a single id, its current state (CREATED, or DESTROYED with a tombstone); for a
//! kind with `bootstrap_contents`, CREATED for each resource and then BOOTSTRAPPED when
//! `api_version >= 1`; after that UPDATED/CREATED/DESTROYED as the model changes, pushed as
//! soon as an API call or a scheduled transition changed it (re-read at least every
//! [`RECHECK`] as a safety net; see `events.rs`). Writes are refused, as Talos refuses them. Label and id queries
//! are not evaluated (every resource of the kind is returned).

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use runbook_proto::cosi::resource::state_server::State;
use runbook_proto::cosi::resource::{
    self as pb, CreateRequest, CreateResponse, DestroyRequest, DestroyResponse, EventType,
    GetRequest, GetResponse, ListRequest, ListResponse, Resource, UpdateRequest, UpdateResponse,
    WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::NodeApi;
use super::auth::{Access, Conn};
use super::events::RECHECK;
use super::resources::{Kind, build, kind_of};
use super::routing::Target;
use super::status::to_status;
use crate::sim::pki::Role;

/// A boxed stream of List replies.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListResponse, Status>> + Send + 'static>>;
/// A boxed stream of Watch replies.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

fn tombstone(ns: &str, ty: &str, id: &str) -> Resource {
    Resource {
        metadata: Some(pb::Metadata {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.into(),
            version: "0".into(),
            phase: "running".into(),
            ..pb::Metadata::default()
        }),
        spec: None,
    }
}

fn event(kind: EventType, resource: Option<Resource>, old: Option<Resource>) -> WatchResponse {
    WatchResponse {
        event: vec![pb::Event {
            resource,
            old,
            error: None,
            event_type: kind as i32,
            bookmark: None,
        }],
    }
}

fn version_of(r: &Resource) -> &str {
    r.metadata.as_ref().map_or("", |m| m.version.as_str())
}

impl NodeApi {
    /// Authorizes a COSI read and resolves the node it targets and the kind (None: a type
    /// this simulator does not serve, which reads as empty).
    fn cosi_begin<T>(
        &self,
        req: &Request<T>,
        ns: &str,
        ty: &str,
    ) -> Result<(String, Option<&'static Kind>), Status> {
        let conn = self.begin(req, Access::Read)?;
        let kind = kind_of(ty).filter(|k| k.ns == ns);
        if kind.is_some_and(|k| k.sensitive) {
            match &conn {
                Conn::Secure(roles) if roles.contains(&Role::Admin) => {}
                _ => return Err(Status::permission_denied("not authorized")),
            }
        }
        let label = match self.target(req.metadata(), &conn, true)? {
            Target::Local => self.endpoint.to_string(),
            Target::One(t) => self.resolve(&t).map_err(to_status)?,
            Target::Many(_) => {
                return Err(Status::invalid_argument(
                    "one-2-many proxying is not supported for COSI methods",
                ));
            }
        };
        Ok((label, kind))
    }

    /// The current resources of `kind` on `label`, versioned.
    fn snapshot(&self, label: &str, kind: Option<&'static Kind>) -> Result<Vec<Resource>, Status> {
        let ctx = &self.ctx;
        ctx.call(|c, now| {
            let Some(kind) = kind else {
                // Unknown types: still fail like the node if it is down.
                return c.version(label, now).map(|_| Vec::new());
            };
            if kind.ty == super::resources::INFOS {
                // Only a configured (running or booting) node knows its cluster.
                return c.version(label, now).map(|_| {
                    super::resources::info(&ctx.cluster_id)
                        .filter(|_| c.node(label).is_some_and(|n| n.config().is_some()))
                        .map(|r| ctx.versions.stamp(label, &r, &ctx.wall, now))
                        .into_iter()
                        .collect()
                });
            }
            build(c, label, kind.ty, now).map(|rs| {
                rs.iter()
                    .map(|r| ctx.versions.stamp(label, r, &ctx.wall, now))
                    .collect()
            })
        })
        .map_err(to_status)
    }
}

fn by_id(rs: Vec<Resource>) -> BTreeMap<String, Resource> {
    rs.into_iter()
        .map(|r| {
            (
                r.metadata
                    .as_ref()
                    .map(|m| m.id.clone())
                    .unwrap_or_default(),
                r,
            )
        })
        .collect()
}

#[tonic::async_trait]
impl State for NodeApi {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = req.get_ref();
        let (label, kind) = self.cosi_begin(&req, &r.namespace, &r.r#type)?;
        let found = self
            .snapshot(&label, kind)?
            .into_iter()
            .find(|res| res.metadata.as_ref().is_some_and(|m| m.id == r.id));
        match found {
            Some(resource) => Ok(Response::new(GetResponse {
                resource: Some(resource),
            })),
            None => Err(Status::not_found(format!(
                "resource {}({}/{}@undefined) doesn't exist",
                r.r#type, r.namespace, r.id
            ))),
        }
    }

    type ListStream = ListStream;

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListStream>, Status> {
        let r = req.get_ref();
        let (label, kind) = self.cosi_begin(&req, &r.namespace, &r.r#type)?;
        let items = self.snapshot(&label, kind)?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            items.into_iter().map(|resource| {
                Ok(ListResponse {
                    resource: Some(resource),
                })
            }),
        ))))
    }

    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        self.begin(&req, Access::Admin)?;
        Err(Status::permission_denied("write access is not allowed"))
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.begin(&req, Access::Admin)?;
        Err(Status::permission_denied("write access is not allowed"))
    }

    async fn destroy(
        &self,
        req: Request<DestroyRequest>,
    ) -> Result<Response<DestroyResponse>, Status> {
        self.begin(&req, Access::Admin)?;
        Err(Status::permission_denied("write access is not allowed"))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let r = req.get_ref().clone();
        let (label, kind) = self.cosi_begin(&req, &r.namespace, &r.r#type)?;
        let opts = r.options.clone().unwrap_or_default();
        if r.id.is_some() && (opts.bootstrap_contents || !opts.label_query.is_empty()) {
            return Err(Status::unimplemented(
                "bootstrap contents and label queries are not supported for single resource watch",
            ));
        }
        // Subscribed before the first read: a change in between is not lost.
        let mut changes = self.ctx.cluster.subscribe();
        let initial = self.snapshot(&label, kind)?;
        let (tx, rx) = mpsc::channel::<Result<WatchResponse, Status>>(64);
        let api = self.clone();
        tokio::spawn(async move {
            let filter = |rs: Vec<Resource>| -> BTreeMap<String, Resource> {
                let mut m = by_id(rs);
                if let Some(id) = &r.id {
                    m.retain(|k, _| k == id);
                }
                m
            };
            let mut prev = filter(initial);
            let mut first: Vec<WatchResponse> = vec![WatchResponse { event: Vec::new() }];
            if let Some(id) = &r.id {
                first.push(match prev.get(id) {
                    Some(res) => event(EventType::Created, Some(res.clone()), None),
                    None => event(
                        EventType::Destroyed,
                        Some(tombstone(&r.namespace, &r.r#type, id)),
                        None,
                    ),
                });
            } else if opts.bootstrap_contents {
                first.extend(
                    prev.values()
                        .map(|res| event(EventType::Created, Some(res.clone()), None)),
                );
                if r.api_version >= 1 {
                    first.push(event(EventType::Bootstrapped, None, None));
                }
            }
            for m in first {
                if tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            let mut shutdown = api.ctx.shutdown.clone();
            let cluster = api.ctx.cluster.clone();
            loop {
                tokio::select! {
                    () = cluster.changed(&mut changes, RECHECK) => {}
                    _ = shutdown.changed() => return,
                    () = tx.closed() => return,
                }
                let now = match api.snapshot(&label, kind) {
                    Ok(rs) => filter(rs),
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let mut out = Vec::new();
                for (id, res) in &now {
                    match prev.get(id) {
                        None => out.push(event(EventType::Created, Some(res.clone()), None)),
                        Some(old) if version_of(old) != version_of(res) => out.push(event(
                            EventType::Updated,
                            Some(res.clone()),
                            Some(old.clone()),
                        )),
                        Some(_) => {}
                    }
                }
                for (id, old) in &prev {
                    if !now.contains_key(id) {
                        out.push(event(EventType::Destroyed, Some(old.clone()), None));
                    }
                }
                prev = now;
                for m in out {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
