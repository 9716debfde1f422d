//! Following the cluster's change streams, so a wait polls again as soon as something changed
//! instead of at its next interval.
//!
//! Talos and Kubernetes both offer streams: COSI `Watch` per node on `MachineStatuses`
//! (stage, readiness), `Services` (state, health) and `EtcdMembers` (membership), routed with
//! `node` metadata through the talosconfig endpoint, and the Kubernetes watch on Nodes. A
//! stream's content is never used to decide anything: every item, every (re)connection and
//! every stream end only marks a [`watch`] channel changed, and the wait then takes a fresh
//! observation and decides from that, as it would at its interval. So a stream that lies,
//! lags, drops items or never connects costs speed, never safety: the wait's own interval
//! still polls (see `exec/attempt.rs`, `wait_for`).
//!
//! A stream that cannot be opened is retried with a backoff: from 50 ms up to 500 ms while its
//! node does not answer (`Unavailable`: it is rebooting, and its return is what the wait
//! wants to see), up to 5 s for any other refusal (a role that may not watch).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use runbook_proto::cosi::resource::WatchRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;

use super::Observer;
use crate::cluster::talos::with_node;

/// The first retry delay of a stream that could not be opened.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest retry delay while the node does not answer.
const RETRY_UNAVAILABLE: Duration = Duration::from_millis(500);
/// The longest retry delay after any other refusal.
const RETRY_REFUSED: Duration = Duration::from_secs(5);

/// The COSI kinds followed on every node: (namespace, type, single id).
const KINDS: &[(&str, &str, Option<&str>)] = &[
    (
        "runtime",
        "MachineStatuses.runtime.talos.dev",
        Some("machine"),
    ),
    ("runtime", "Services.v1alpha1.talos.dev", None),
    ("etcd", "EtcdMembers.etcd.talos.dev", None),
];

/// The change signal of one observer and the stream tasks feeding it (stopped when dropped).
pub struct Changes {
    tx: Arc<watch::Sender<u64>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

impl Changes {
    /// No stream followed yet.
    pub fn new() -> Changes {
        let (tx, _) = watch::channel(0);
        Changes {
            tx: Arc::new(tx),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// A receiver marked changed whenever a stream reports something; starts following the
    /// streams on the first call (inside a tokio runtime).
    pub fn subscribe(&self, observer: &Arc<Observer>) -> watch::Receiver<u64> {
        let rx = self.tx.subscribe();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.is_empty() {
            for label in &observer.nodes {
                for (ns, ty, id) in KINDS {
                    tasks.push(tokio::spawn(follow_cosi(
                        observer.clone(),
                        label.clone(),
                        ns,
                        ty,
                        *id,
                        self.tx.clone(),
                    )));
                }
            }
            if let Some(kube) = &observer.kube {
                tasks.push(tokio::spawn(follow_kube_nodes(
                    kube.clone(),
                    self.tx.clone(),
                )));
            }
        }
        rx
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|n| *n = n.wrapping_add(1));
}

fn next_delay(delay: Duration, cap: Duration) -> Duration {
    (delay * 2).min(cap)
}

/// Follows one COSI kind on one node for as long as the observer lives.
async fn follow_cosi(
    observer: Arc<Observer>,
    label: String,
    ns: &'static str,
    ty: &'static str,
    id: Option<&'static str>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut delay = RETRY_FIRST;
    loop {
        let req = WatchRequest {
            namespace: ns.into(),
            r#type: ty.into(),
            id: id.map(str::to_string),
            options: None,
            ..WatchRequest::default()
        };
        let cap = match observer.talos.cosi().watch(with_node(req, &label)).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                // Connected: whatever happened while it was not is a change.
                bump(&tx);
                delay = RETRY_FIRST;
                while let Some(item) = stream.next().await {
                    bump(&tx);
                    if item.is_err() {
                        break;
                    }
                }
                // The stream ended: its node went away (or the endpoint did).
                bump(&tx);
                RETRY_UNAVAILABLE
            }
            Err(s) if s.code() == Code::Unavailable || s.code() == Code::DeadlineExceeded => {
                RETRY_UNAVAILABLE
            }
            Err(_) => RETRY_REFUSED,
        };
        tokio::time::sleep(delay).await;
        delay = next_delay(delay, cap);
    }
}

/// Follows the Kubernetes Nodes for as long as the observer lives.
async fn follow_kube_nodes(client: kube::Client, tx: Arc<watch::Sender<u64>>) {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, WatchParams};
    let api: Api<Node> = Api::all(client);
    let mut delay = RETRY_FIRST;
    loop {
        let cap = match api.watch(&WatchParams::default().timeout(290), "0").await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                bump(&tx);
                delay = RETRY_FIRST;
                while let Some(item) = stream.next().await {
                    bump(&tx);
                    if item.is_err() {
                        break;
                    }
                }
                RETRY_UNAVAILABLE
            }
            Err(_) => RETRY_REFUSED,
        };
        tokio::time::sleep(delay).await;
        delay = next_delay(delay, cap);
    }
}
