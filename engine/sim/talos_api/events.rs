//! `MachineService.Events`: a live stream of `MachineStatusEvent`s.
//!
//! Each target node is polled every [`POLL`] and an event is sent whenever its stage,
//! readiness or unmet conditions change. The payload is a `google.protobuf.Any` with type URL
//! `talos/runtime/machine.MachineStatusEvent`, as machined publishes it. With any tail option
//! set (`tail_events`, `tail_seconds`, `tail_id`) the current status comes first, standing in
//! for Talos' event history; without, only changes are sent. When a node stops answering
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

/// How often nodes are polled for changes.
pub const POLL: Duration = Duration::from_millis(200);

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

    async fn run(self) {
        let label = match &self.label {
            Ok(l) => l.clone(),
            Err(e) => return self.fail(to_status(e.clone())).await,
        };
        let mut shutdown = self.ctx.shutdown.clone();
        let mut last: Option<MachineStatus> = None;
        let mut first = true;
        let mut seq: u64 = 0;
        loop {
            let ms = self
                .ctx
                .cluster
                .with(|c, now| c.machine_status(&label, now));
            match ms {
                Ok(ms) => {
                    if last.as_ref() != Some(&ms) {
                        if !first || self.replay_current {
                            seq += 1;
                            let event = pb::Event {
                                metadata: self.hostname.as_deref().map(ok_metadata),
                                data: Some(prost_types::Any {
                                    type_url: MACHINE_STATUS_EVENT_URL.into(),
                                    value: machine_status_event(&ms).encode_to_vec(),
                                }),
                                id: format!("{label}-{seq:012}"),
                                actor_id: String::new(),
                            };
                            if self.tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        last = Some(ms);
                    }
                }
                Err(e) => return self.fail(to_status(e)).await,
            }
            first = false;
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
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
