//! `MachineService.Events`: a live stream of `MachineStatusEvent`s and `ServiceStateEvent`s.
//!
//! Each target node's status and services are re-read whenever the model may have changed
//! (an API call changed it, or its next scheduled transition is due: see
//! [`crate::sim::shared::SharedCluster::changed`]), and at least every [`RECHECK`] as a
//! safety net; an event is sent for every change: a `MachineStatusEvent` when its stage,
//! readiness or unmet conditions change, a `ServiceStateEvent` when a service's state or
//! health changes (Talos' service runner publishes one on every state transition). The payload
//! is a `google.protobuf.Any` with type URL `talos/runtime/machine.<Message>`, as machined
//! publishes it. Talos has no event for etcd membership: a member joining or leaving shows
//! as the etcd service's state and health events here, and as the `EtcdMembers` COSI resource
//! (see `cosi.rs`, whose Watch pushes the same way). With any tail option set (`tail_events`,
//! `tail_seconds`, `tail_id`) the current status and services come first, standing in for
//! Talos' event history; without, only changes are sent. When a node stops answering
//! (reboot, power off) its stream ends with `Unavailable`, like the connection a real node
//! drops; in fan-out mode that becomes a final entry with `metadata.error`.
//! `with_actor_id` is not filtered: the simulator does not track actors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message as _;
use runbook_proto::machine::{self as pb, machine_status_event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::routing::{Entry, Target};
use super::status::{error_metadata, ok_metadata, to_status};
use super::{ApiContext, NodeApi};
use crate::sim::cluster::MachineStatus;
use crate::sim::node::{Service, ServiceState};

/// The longest a stream goes without re-reading the model (a safety net for changes made to
/// the model directly, without an API call: fault injection in tests).
pub const RECHECK: Duration = Duration::from_secs(1);

/// The type URL of service state events.
pub const SERVICE_STATE_EVENT_URL: &str = "talos/runtime/machine.ServiceStateEvent";

/// The type URL of machine status events.
pub const MACHINE_STATUS_EVENT_URL: &str = "talos/runtime/machine.MachineStatusEvent";

/// A boxed server stream of events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

/// The event payload of a machine status.
pub fn machine_status_event(ms: &MachineStatus) -> pb::MachineStatusEvent {
    pb::MachineStatusEvent {
        stage: ms.stage.as_i32(),
        status: Some(machine_status_event::MachineStatus {
            ready: ms.ready,
            unmet_conditions: ms
                .unmet_conditions
                .iter()
                .map(
                    |(name, reason)| machine_status_event::machine_status::UnmetCondition {
                        name: name.clone(),
                        reason: reason.clone(),
                    },
                )
                .collect(),
        }),
    }
}

/// The event payload of a service's state.
pub fn service_state_event(s: &Service) -> pb::ServiceStateEvent {
    use pb::service_state_event::Action;
    let action = match s.state {
        ServiceState::Initialized => Action::Initialized,
        ServiceState::Preparing => Action::Preparing,
        ServiceState::Waiting => Action::Waiting,
        ServiceState::Running => Action::Running,
        ServiceState::Stopping => Action::Stopping,
        ServiceState::Finished => Action::Finished,
        ServiceState::Failed => Action::Failed,
        ServiceState::Skipped => Action::Skipped,
        ServiceState::Starting => Action::Starting,
    };
    pb::ServiceStateEvent {
        service: s.id.clone(),
        action: action as i32,
        message: s.events.last().map(|e| e.msg.clone()).unwrap_or_default(),
        health: Some(pb::ServiceHealth {
            unknown: s.healthy.is_none(),
            healthy: s.healthy.unwrap_or(false),
            last_message: s.health_message.clone(),
            last_change: None,
        }),
    }
}

/// What a follower compares between two reads of a node.
#[derive(PartialEq)]
struct Seen {
    status: MachineStatus,
    /// Service id, state and health.
    services: Vec<(String, ServiceState, Option<bool>)>,
}

struct Follow {
    ctx: Arc<ApiContext>,
    label: Result<String, crate::sim::ApiError>,
    /// `Some(target)` in fan-out mode: entries carry `metadata.hostname`.
    hostname: Option<String>,
    replay_current: bool,
    tx: mpsc::Sender<Result<pb::Event, Status>>,
}

impl Follow {
    async fn fail(&self, status: Status) {
        let item = match &self.hostname {
            Some(h) => {
                let mut e = pb::Event::default();
                e.set_metadata(error_metadata(h, &status));
                Ok(e)
            }
            None => Err(status),
        };
        let _ = self.tx.send(item).await;
    }

    async fn send(&self, seq: &mut u64, label: &str, url: &str, value: Vec<u8>) -> bool {
        *seq += 1;
        let event = pb::Event {
            metadata: self.hostname.as_deref().map(ok_metadata),
            data: Some(prost_types::Any {
                type_url: url.into(),
                value,
            }),
            id: format!("{label}-{seq:012}"),
            actor_id: String::new(),
        };
        self.tx.send(Ok(event)).await.is_ok()
    }

    async fn run(self) {
        let label = match &self.label {
            Ok(l) => l.clone(),
            Err(e) => return self.fail(to_status(e.clone())).await,
        };
        let mut shutdown = self.ctx.shutdown.clone();
        let cluster = self.ctx.cluster.clone();
        // Subscribed before the first read: a change in between is not lost.
        let mut changes = cluster.subscribe();
        let mut last: Option<Seen> = None;
        let mut seq: u64 = 0;
        loop {
            let read = cluster.with(|c, now| {
                let status = c.machine_status(&label, now)?;
                // Maintenance mode serves no service list: no service events then.
                let services = c.service_list(&label, now).unwrap_or_default();
                Ok::<_, crate::sim::ApiError>((status, services))
            });
            let (status, services) = match read {
                Ok(r) => r,
                Err(e) => return self.fail(to_status(e)).await,
            };
            let seen = Seen {
                status,
                services: services
                    .iter()
                    .map(|s| (s.id.clone(), s.state, s.healthy))
                    .collect(),
            };
            let announce = last.is_some() || self.replay_current;
            if announce && last.as_ref().map(|l| &l.status) != Some(&seen.status) {
                let value = machine_status_event(&seen.status).encode_to_vec();
                if !self
                    .send(&mut seq, &label, MACHINE_STATUS_EVENT_URL, value)
                    .await
                {
                    return;
                }
            }
            if announce {
                for s in &services {
                    let key = (s.id.clone(), s.state, s.healthy);
                    if last.as_ref().is_some_and(|l| l.services.contains(&key)) {
                        continue;
                    }
                    let value = service_state_event(s).encode_to_vec();
                    if !self
                        .send(&mut seq, &label, SERVICE_STATE_EVENT_URL, value)
                        .await
                    {
                        return;
                    }
                }
            }
            last = Some(seen);
            tokio::select! {
                () = cluster.changed(&mut changes, RECHECK) => {}
                _ = shutdown.changed() => return,
                () = self.tx.closed() => return,
            }
        }
    }
}

impl NodeApi {
    /// Starts following the targets; the stream ends when every target's stream has.
    pub fn event_stream(
        &self,
        target: Target,
        req: &pb::EventsRequest,
    ) -> Result<EventStream, Status> {
        let replay_current =
            req.tail_events != 0 || req.tail_seconds != 0 || !req.tail_id.is_empty();
        let (tx, rx) = mpsc::channel(64);
        let follows: Vec<(Result<String, crate::sim::ApiError>, Option<String>)> = match target {
            Target::Local => vec![(Ok(self.endpoint.to_string()), None)],
            Target::One(t) => {
                let label = self.resolve(&t).map_err(to_status)?;
                vec![(Ok(label), None)]
            }
            Target::Many(ts) => ts
                .into_iter()
                .map(|t| (self.resolve(&t), Some(t)))
                .collect(),
        };
        for (label, hostname) in follows {
            let f = Follow {
                ctx: self.ctx.clone(),
                label,
                hostname,
                replay_current,
                tx: tx.clone(),
            };
            tokio::spawn(f.run());
        }
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}
