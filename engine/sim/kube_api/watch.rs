//! `?watch=true`: a streaming response of newline-delimited `WatchEvent` JSON.
//!
//! kube-rs `watcher` lists, then watches from the list's `resourceVersion` with
//! `timeoutSeconds` and reconnects when the stream ends; `kubectl get -w` does the same with
//! Table-shaped events. A watch without a resource version (or with `0`) starts with a
//! synthetic `ADDED` for every matching object; one with a version replays the [`Store`]
//! history after it (or answers an `ERROR` event with a `410 Expired` Status when the history
//! no longer reaches back that far, which makes kube-rs relist), then follows changes as the
//! store's sync turns model changes into events. The stream ends at `timeoutSeconds`
//! (default 30 min), when the model says the API is unavailable (the client's next request
//! gets the 503), or when the server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::render;
use super::select::Selector;
use super::status::Failure;
use super::store::{Entry, EventType, Kind, Store, Tick};
use super::table::{self, Include};

/// The default and longest watch, like kube-apiserver's `--min-request-timeout` range.
const MAX_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where the watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Synthetic `ADDED` events for the current state, then changes.
    Current,
    /// Changes after this resource version.
    After(u64),
}

/// A watch request.
pub struct WatchRequest {
    /// Kind watched.
    pub kind: Kind,
    /// Namespace, if the watch is namespaced.
    pub namespace: Option<String>,
    /// Field and label selector.
    pub selector: Selector,
    /// Where to start.
    pub start: Start,
    /// `timeoutSeconds` (capped).
    pub timeout: Option<Duration>,
    /// Table version and row object, when the client asked for Tables.
    pub table: Option<(&'static str, Include)>,
    /// `sendInitialEvents=true`: end the initial events with a bookmark.
    pub initial_events_bookmark: bool,
}

struct State {
    store: Arc<Store>,
    req: WatchRequest,
    ticks: watch::Receiver<Tick>,
    shutdown: watch::Receiver<bool>,
    deadline: Instant,
    last_rv: u64,
    pending: VecDeque<Bytes>,
    headers_sent: bool,
    done: bool,
}

impl State {
    fn matches(&self, entry: &Entry) -> bool {
        entry.key.kind == self.req.kind
            && self
                .req
                .namespace
                .as_deref()
                .is_none_or(|ns| entry.key.namespace == ns)
            && self.req.selector.matches(entry)
    }

    fn encode(&mut self, kind: &str, entry: &Entry) {
        let object = match self.req.table {
            Some((version, include)) => {
                let headers = !self.headers_sent;
                self.headers_sent = true;
                table::table(
                    self.req.kind,
                    std::slice::from_ref(entry),
                    entry.meta.rv,
                    &self.store,
                    version,
                    include,
                    headers,
                )
            }
            None => render::object(entry, self.store.clock()),
        };
        self.push(json!({ "type": kind, "object": object }));
    }

    fn push(&mut self, event: Value) {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        self.pending.push_back(Bytes::from(line));
    }

    fn bookmark(&mut self, rv: u64, initial_end: bool) {
        let kind = match self.req.kind {
            Kind::Node => ("v1", "Node"),
            Kind::Pod => ("v1", "Pod"),
            Kind::Lease => ("coordination.k8s.io/v1", "Lease"),
            Kind::Pdb => ("policy/v1", "PodDisruptionBudget"),
            Kind::RuntimeClass => ("node.k8s.io/v1", "RuntimeClass"),
            Kind::DaemonSet => ("apps/v1", "DaemonSet"),
        };
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        self.push(json!({
            "type": "BOOKMARK",
            "object": { "apiVersion": kind.0, "kind": kind.1, "metadata": metadata },
        }));
    }

    fn catch_up(&mut self) {
        match self.store.events_since(self.last_rv) {
            Ok(events) => {
                for e in events {
                    self.last_rv = self.last_rv.max(e.rv);
                    if self.matches(&e.entry) {
                        self.encode(e.kind.as_str(), &e.entry);
                    }
                }
            }
            Err(expired) => {
                let status = Failure::new(
                    410,
                    "Expired",
                    format!(
                        "too old resource version: {} ({})",
                        expired.requested, expired.oldest
                    ),
                )
                .status();
                self.push(json!({ "type": "ERROR", "object": status }));
                self.done = true;
            }
        }
    }
}

/// Starts a watch; fails (503) only if the model is unavailable when it starts.
pub fn start(
    store: Arc<Store>,
    req: WatchRequest,
    shutdown: watch::Receiver<bool>,
) -> Result<Body, Failure> {
    // Subscribe before reading, so no change between the read and the first wait is lost.
    let ticks = store.subscribe();
    let timeout = req.timeout.unwrap_or(MAX_TIMEOUT).min(MAX_TIMEOUT);
    let mut st = State {
        store: store.clone(),
        ticks,
        shutdown,
        deadline: Instant::now() + timeout,
        last_rv: 0,
        pending: VecDeque::new(),
        headers_sent: false,
        done: false,
        req,
    };
    match st.req.start {
        Start::Current => {
            let (rv, entries) = store.list(st.req.kind, st.req.namespace.as_deref())?;
            let matching: Vec<Entry> = entries.into_iter().filter(|e| st.matches(e)).collect();
            for e in &matching {
                st.encode(EventType::Added.as_str(), e);
            }
            st.last_rv = rv;
            if st.req.initial_events_bookmark {
                st.bookmark(rv, true);
            }
        }
        Start::After(rv) => {
            store.sync()?;
            st.last_rv = rv;
            st.catch_up();
            if st.req.initial_events_bookmark && !st.done {
                let now = st.last_rv;
                st.bookmark(now, true);
            }
        }
    }
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(line) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), st));
            }
            if st.done || *st.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep_until(st.deadline) => st.done = true,
                _ = st.shutdown.changed() => st.done = true,
                changed = st.ticks.changed() => {
                    if changed.is_err() {
                        st.done = true;
                    } else {
                        let tick = *st.ticks.borrow_and_update();
                        if tick.available {
                            st.catch_up();
                        } else {
                            st.done = true;
                        }
                    }
                }
            }
        }
    });
    Ok(Body::from_stream(stream))
}
