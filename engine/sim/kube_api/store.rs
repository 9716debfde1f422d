//! The server's view of the model as Kubernetes objects: identity, resource versions and a
//! change history for watches.
//!
//! The model ([`Cluster`]) has no notion of `uid`, `resourceVersion`, `creationTimestamp` or
//! change events; it only answers "what are the nodes, pods and leases now". Real clients
//! depend on all four: kube-rs `watcher` lists, then watches from the list's
//! `resourceVersion`, and `kubectl drain` waits for an evicted pod's `uid` to disappear. So
//! the server keeps a [`Store`]: every sync takes a snapshot of the model (under the model
//! lock, at one model time), diffs it against the last one and turns each difference into an
//! `ADDED`/`MODIFIED`/`DELETED` event with the next resource version, like etcd revisions.
//! A background task syncs every 250 ms, and every request syncs first, so answers are never
//! staler than the model. A bounded history serves watches from an older resource version;
//! one older than the history is answered `410 Gone`, as the real API server does once etcd
//! compacted past it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::status::Failure;
use crate::sim::cluster::{
    Cluster, DaemonSetStatus, KubeNode, ObjectKind, Pod, PodDisruptionBudget, PodOwner,
    StoredObject,
};
use crate::sim::error::KubeError;
use crate::sim::node::{HardwareModel, splitmix};
use crate::sim::{SharedCluster, SimTime};

/// How many change events are kept for watches that resume from a resource version.
const HISTORY: usize = 4096;

/// The kinds of object the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Node (cluster-scoped).
    Node,
    /// `v1` Pod.
    Pod,
    /// `coordination.k8s.io/v1` Lease.
    Lease,
    /// `policy/v1` PodDisruptionBudget.
    Pdb,
    /// `node.k8s.io/v1` RuntimeClass (cluster-scoped, client-created).
    RuntimeClass,
    /// `apps/v1` DaemonSet (client-created, or implied by the model's system pods).
    DaemonSet,
}

impl Kind {
    /// The plural resource name, as in URLs and `Status.details.kind`.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Lease => "leases",
            Kind::Pdb => "poddisruptionbudgets",
            Kind::RuntimeClass => "runtimeclasses",
            Kind::DaemonSet => "daemonsets",
        }
    }

    /// The resource name as kube-apiserver's errors qualify it (`daemonsets.apps`).
    pub fn qualified(self) -> &'static str {
        match self {
            Kind::RuntimeClass => "runtimeclasses.node.k8s.io",
            Kind::DaemonSet => "daemonsets.apps",
            other => other.resource(),
        }
    }

    /// The model's kind for client-created objects (None for the model's own kinds).
    pub fn object_kind(self) -> Option<ObjectKind> {
        match self {
            Kind::RuntimeClass => Some(ObjectKind::RuntimeClass),
            Kind::DaemonSet => Some(ObjectKind::DaemonSet),
            _ => None,
        }
    }
}

/// Identity of an object: kind, namespace (empty for nodes) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind.
    pub kind: Kind,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What the model says about a node, plus the Talos facts the Node object mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// The model's Kubernetes view of the node.
    pub node: KubeNode,
    /// `/proc/sys/kernel/random/boot_id` of the machine (`status.nodeInfo.bootID`).
    pub boot_id: String,
    /// CPU cores (`status.capacity.cpu`).
    pub cpus: u32,
    /// Memory in GiB (`status.capacity.memory`).
    pub memory_gib: u32,
    /// Extended resources (`nvidia.com/gpu`) in capacity and allocatable.
    pub extended: BTreeMap<String, u32>,
}

/// A client-created object (RuntimeClass, DaemonSet) with what its controller reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFacts {
    /// The object as stored, with its field managers and generation.
    pub stored: StoredObject,
    /// A DaemonSet's status.
    pub status: Option<DaemonSetStatus>,
}

/// A node lease, its renew time cut to whole seconds so a running kubelet changes it (and
/// the resource version) at most once a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseFacts {
    /// Holder identity (the node name).
    pub holder: String,
    /// Last renewal, whole seconds.
    pub renew: SimTime,
}

/// A Lease a client wrote (`create`/`update`), kept as it was sent: the model has no say
/// in it, so syncs never change or remove it. Runbook's cluster lock is one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLease {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec`, as the client sent it (a `LeaseSpec` in JSON).
    pub spec: serde_json::Value,
}

/// A PodDisruptionBudget with the status the disruption controller would compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdbFacts {
    /// The budget.
    pub pdb: PodDisruptionBudget,
    /// Pods the budget selects.
    pub expected: usize,
    /// Of those, the Ready ones.
    pub healthy: usize,
}

/// The model state of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A node.
    Node(NodeFacts),
    /// A pod.
    Pod(Pod),
    /// A lease.
    Lease(LeaseFacts),
    /// A PodDisruptionBudget.
    Pdb(PdbFacts),
    /// A Lease written by a client.
    ClientLease(ClientLease),
    /// A RuntimeClass or DaemonSet.
    Object(ObjectFacts),
}

/// Server-assigned metadata of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// `metadata.uid`; a re-created object (a node re-registering) gets a new one.
    pub uid: String,
    /// Model time the server first saw the object (`creationTimestamp`).
    pub created: SimTime,
    /// Model time of the last change (condition transition times).
    pub modified: SimTime,
    /// `metadata.resourceVersion`.
    pub rv: u64,
}

/// One object as the server serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Identity.
    pub key: Key,
    /// Model state.
    pub content: Content,
    /// Server metadata.
    pub meta: Meta,
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object appeared.
    Added,
    /// The object changed.
    Modified,
    /// The object went away (the entry is its last state).
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, at resource version `rv`.
#[derive(Clone, Debug)]
pub struct Event {
    /// The resource version of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before it, for deletions).
    pub entry: Entry,
}

/// What watchers wait on: the latest resource version and whether the API answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The latest resource version.
    pub rv: u64,
    /// False while the model says no API server can answer.
    pub available: bool,
}

/// The watch was asked to start before the kept history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The requested resource version.
    pub requested: u64,
    /// The oldest one that can still be resumed from.
    pub oldest: u64,
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Entry>,
    history: VecDeque<Event>,
    /// Watches may resume from any rv >= this one.
    oldest: u64,
    uids: u64,
    available: bool,
}

/// Maps model time to wall-clock timestamps (model time runs at real speed).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    zero: SystemTime,
}

impl WallClock {
    /// The clock of `shared`, anchored so that model "now" is wall "now".
    pub fn of(shared: &SharedCluster) -> WallClock {
        let now = SystemTime::now();
        let since = shared.now().as_duration();
        WallClock {
            zero: now.checked_sub(since).unwrap_or(now),
        }
    }

    /// The wall-clock instant of model time `t`.
    pub fn at(self, t: SimTime) -> SystemTime {
        self.zero + t.as_duration()
    }
}

/// The object store of one server.
pub struct Store {
    shared: SharedCluster,
    clock: WallClock,
    state: Mutex<State>,
    tick: watch::Sender<Tick>,
}

struct Snapshot {
    now: SimTime,
    objects: Vec<(Key, Content)>,
}

fn snapshot(c: &mut Cluster, now: SimTime) -> Result<Snapshot, KubeError> {
    let nodes = c.k8s_list_nodes(now)?;
    let pods = c.k8s_list_pods(None, now)?;
    let leases = c.k8s_leases(now)?;
    let pdbs = c.k8s_list_pdbs(now)?;
    let mut objects = Vec::new();
    objects.extend(client_objects(c, &pods, now)?);
    for node in nodes {
        let extended = c
            .nodes()
            .iter()
            .position(|n| n.hostname() == node.name)
            .map(|i| c.k8s_extended_resources(i))
            .unwrap_or_default();
        let machine = c.node(&node.internal_ip);
        let boot_id = machine.map(|n| n.boot_id().to_string()).unwrap_or_default();
        let (cpus, memory_gib) = match machine.map(|n| n.hardware().model) {
            Some(HardwareModel::Nuc) => (8, 32),
            Some(HardwareModel::MacMini) => (4, 16),
            _ => (4, 8),
        };
        let key = Key {
            kind: Kind::Node,
            namespace: String::new(),
            name: node.name.clone(),
        };
        objects.push((
            key,
            Content::Node(NodeFacts {
                node,
                boot_id,
                cpus,
                memory_gib,
                extended,
            }),
        ));
    }
    for pdb in pdbs {
        let selected = pods
            .iter()
            .filter(|p| p.namespace == pdb.namespace && p.app == pdb.app);
        let expected = selected.clone().count();
        let healthy = selected.filter(|p| p.ready).count();
        let key = Key {
            kind: Kind::Pdb,
            namespace: pdb.namespace.clone(),
            name: pdb.name.clone(),
        };
        objects.push((
            key,
            Content::Pdb(PdbFacts {
                pdb,
                expected,
                healthy,
            }),
        ));
    }
    for pod in pods {
        let key = Key {
            kind: Kind::Pod,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        };
        objects.push((key, Content::Pod(pod)));
    }
    for lease in leases {
        let key = Key {
            kind: Kind::Lease,
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
        };
        let renew = SimTime::from_secs(lease.renew_time.as_duration().as_secs());
        objects.push((
            key,
            Content::Lease(LeaseFacts {
                holder: lease.holder,
                renew,
            }),
        ));
    }
    Ok(Snapshot { now, objects })
}

/// RuntimeClasses and DaemonSets: the client's, with the controller's status, and one
/// DaemonSet for each set of the model's system pods (`kube-flannel`, `kube-proxy`) no client
/// object stands for, so `kubectl get ds -A` and `kubectl drain` see them.
fn client_objects(
    c: &mut Cluster,
    pods: &[Pod],
    now: SimTime,
) -> Result<Vec<(Key, Content)>, KubeError> {
    let mut out = Vec::new();
    for kind in [ObjectKind::RuntimeClass, ObjectKind::DaemonSet] {
        for (k, stored) in c.k8s_objects(kind, now)? {
            let status = (kind == ObjectKind::DaemonSet)
                .then(|| c.k8s_daemonset_status(&k.namespace, &k.name));
            let key = Key {
                kind: match kind {
                    ObjectKind::RuntimeClass => Kind::RuntimeClass,
                    ObjectKind::DaemonSet => Kind::DaemonSet,
                },
                namespace: k.namespace,
                name: k.name,
            };
            out.push((key, Content::Object(ObjectFacts { stored, status })));
        }
    }
    let mut implied: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for p in pods {
        if let PodOwner::DaemonSet(ds) = &p.owner {
            let e = implied
                .entry((p.namespace.clone(), ds.clone()))
                .or_default();
            e.0 += 1;
            e.1 += usize::from(p.ready);
        }
    }
    for ((ns, name), (count, ready)) in implied {
        if out
            .iter()
            .any(|(k, _)| k.kind == Kind::DaemonSet && k.namespace == ns && k.name == name)
        {
            continue;
        }
        let labels = serde_json::json!({ "app": name });
        let object = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            "spec": {
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": { "containers": [ { "name": name, "image": format!("ghcr.io/siderolabs/{name}:latest") } ] }
                }
            }
        });
        let status = DaemonSetStatus {
            desired: count,
            current: count,
            updated: count,
            ready,
            available: ready,
            observed_generation: 1,
        };
        out.push((
            Key {
                kind: Kind::DaemonSet,
                namespace: ns,
                name,
            },
            Content::Object(ObjectFacts {
                stored: StoredObject {
                    object,
                    generation: 1,
                    managers: Vec::new(),
                },
                status: Some(status),
            }),
        ));
    }
    Ok(out)
}

fn uid(n: u64) -> String {
    let a = splitmix(n ^ 0x6b75_6265_6170_6931);
    let b = splitmix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

impl Store {
    /// A store over `shared`, filled by a first sync (which may find the API unavailable).
    pub fn new(shared: SharedCluster) -> Store {
        let clock = WallClock::of(&shared);
        let (tick, _) = watch::channel(Tick {
            rv: 0,
            available: true,
        });
        let store = Store {
            shared,
            clock,
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: 0,
                uids: 0,
                available: true,
            }),
            tick,
        };
        // An unavailable API at start is not an error: the store fills once it comes up.
        let _ = store.sync();
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The model this store mirrors.
    pub fn shared(&self) -> &SharedCluster {
        &self.shared
    }

    /// The wall clock for timestamps.
    pub fn clock(&self) -> WallClock {
        self.clock
    }

    /// The model time now.
    pub fn now(&self) -> SimTime {
        self.shared.now()
    }

    /// Subscribes to changes.
    pub fn subscribe(&self) -> watch::Receiver<Tick> {
        self.tick.subscribe()
    }

    /// Brings the store up to date with the model; returns the latest resource version, or
    /// the model's error (503) when no API server can answer.
    pub fn sync(&self) -> Result<u64, KubeError> {
        // The store lock is taken first and held across the snapshot, so two syncs can never
        // apply their snapshots out of order. Nothing takes the two locks the other way round.
        let mut st = self.lock();
        let snap = match self.shared.with(snapshot) {
            Ok(s) => s,
            Err(e) => {
                if st.available {
                    st.available = false;
                    let rv = st.rv;
                    self.tick.send_replace(Tick {
                        rv,
                        available: false,
                    });
                }
                return Err(e);
            }
        };
        let before = st.rv;
        let mut seen = BTreeMap::new();
        for (key, content) in snap.objects {
            seen.insert(key.clone(), ());
            let change = match st.objects.get(&key) {
                // A client's object is the client's: the model cannot overwrite it.
                Some(Entry {
                    content: Content::ClientLease(_),
                    ..
                }) => None,
                None => Some(EventType::Added),
                Some(old) if old.content != content => Some(EventType::Modified),
                Some(_) => None,
            };
            let Some(change) = change else { continue };
            st.rv += 1;
            let rv = st.rv;
            let meta = match (change, st.objects.get(&key)) {
                (EventType::Modified, Some(old)) => Meta {
                    rv,
                    modified: snap.now,
                    ..old.meta.clone()
                },
                _ => {
                    st.uids += 1;
                    // Pods name their DaemonSet's uid without the store: use the same one.
                    let uid = if key.kind == Kind::DaemonSet {
                        super::render::stable_uid(&format!(
                            "DaemonSet/{}/{}",
                            key.namespace, key.name
                        ))
                    } else {
                        uid(st.uids)
                    };
                    Meta {
                        uid,
                        created: snap.now,
                        modified: snap.now,
                        rv,
                    }
                }
            };
            let entry = Entry { key, content, meta };
            st.objects.insert(entry.key.clone(), entry.clone());
            push(
                &mut st,
                Event {
                    rv,
                    kind: change,
                    entry,
                },
            );
        }
        let gone: Vec<Key> = st
            .objects
            .iter()
            .filter(|(k, e)| {
                !seen.contains_key(*k) && !matches!(e.content, Content::ClientLease(_))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(mut entry) = st.objects.remove(&key) {
                st.rv += 1;
                entry.meta.rv = st.rv;
                let rv = st.rv;
                push(
                    &mut st,
                    Event {
                        rv,
                        kind: EventType::Deleted,
                        entry,
                    },
                );
            }
        }
        if st.rv != before || !st.available {
            st.available = true;
            let rv = st.rv;
            self.tick.send_replace(Tick {
                rv,
                available: true,
            });
        }
        Ok(st.rv)
    }

    /// Syncs, then returns the latest resource version and the objects of `kind` (in
    /// `namespace`, when given), in key order.
    pub fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<(u64, Vec<Entry>), KubeError> {
        self.sync()?;
        let st = self.lock();
        let items = st
            .objects
            .values()
            .filter(|e| e.key.kind == kind && namespace.is_none_or(|ns| e.key.namespace == ns))
            .cloned()
            .collect();
        Ok((st.rv, items))
    }

    /// Syncs, then returns one object (None if it does not exist).
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Entry>, KubeError> {
        self.sync()?;
        let key = Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        Ok(self.lock().objects.get(&key).cloned())
    }

    /// Creates a client Lease: `409 AlreadyExists` if the name is taken (by a client or by a
    /// node lease), `503` while the model says no API server answers.
    pub fn create_lease(
        &self,
        namespace: &str,
        name: &str,
        lease: ClientLease,
    ) -> Result<Entry, Failure> {
        self.sync()?;
        let key = lease_key(namespace, name);
        let mut st = self.lock();
        if st.objects.contains_key(&key) {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("leases.coordination.k8s.io \"{name}\" already exists"),
            )
            .with_details("leases", name));
        }
        st.rv += 1;
        st.uids += 1;
        let now = self.shared.now();
        let entry = Entry {
            key: key.clone(),
            content: Content::ClientLease(lease),
            meta: Meta {
                uid: uid(st.uids),
                created: now,
                modified: now,
                rv: st.rv,
            },
        };
        self.commit(&mut st, EventType::Added, entry.clone());
        Ok(entry)
    }

    /// Replaces a client Lease. With `resource_version` given it must be the current one, or
    /// the update is refused `409 Conflict` exactly as kube-apiserver refuses a stale write
    /// (optimistic concurrency); without one the update is unconditional, as Leases allow.
    /// `404` if there is no such lease; `403` for the node leases the model's kubelets own.
    pub fn update_lease(
        &self,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
        lease: ClientLease,
    ) -> Result<Entry, Failure> {
        self.sync()?;
        let key = lease_key(namespace, name);
        let mut st = self.lock();
        let Some(old) = st.objects.get(&key).cloned() else {
            return Err(Failure::not_found("leases", name));
        };
        if !matches!(old.content, Content::ClientLease(_)) {
            return Err(Failure::new(
                403,
                "Forbidden",
                format!(
                    "leases.coordination.k8s.io \"{name}\" is forbidden: node leases are renewed by the simulated kubelets"
                ),
            )
            .with_details("leases", name));
        }
        check_version(&old, resource_version, name)?;
        st.rv += 1;
        let entry = Entry {
            key,
            content: Content::ClientLease(lease),
            meta: Meta {
                rv: st.rv,
                modified: self.shared.now(),
                ..old.meta
            },
        };
        self.commit(&mut st, EventType::Modified, entry.clone());
        Ok(entry)
    }

    /// Deletes a client Lease, honouring `DeleteOptions.preconditions` (uid, resourceVersion)
    /// with `409 Conflict`; returns its last state.
    pub fn delete_lease(
        &self,
        namespace: &str,
        name: &str,
        uid_precondition: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<Entry, Failure> {
        self.sync()?;
        let key = lease_key(namespace, name);
        let mut st = self.lock();
        let Some(old) = st.objects.get(&key).cloned() else {
            return Err(Failure::not_found("leases", name));
        };
        if !matches!(old.content, Content::ClientLease(_)) {
            return Err(Failure::new(
                403,
                "Forbidden",
                format!(
                    "leases.coordination.k8s.io \"{name}\" is forbidden: node leases belong to the simulated kubelets"
                ),
            )
            .with_details("leases", name));
        }
        if let Some(u) = uid_precondition
            && u != old.meta.uid
        {
            return Err(Failure::conflict(format!(
                "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                old.meta.uid
            ))
            .with_details("leases", name));
        }
        if let Some(rv) = resource_version
            && rv != old.meta.rv.to_string()
        {
            return Err(Failure::conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old.meta.rv
            ))
            .with_details("leases", name));
        }
        st.objects.remove(&key);
        st.rv += 1;
        let mut entry = old;
        entry.meta.rv = st.rv;
        let rv = st.rv;
        push(
            &mut st,
            Event {
                rv,
                kind: EventType::Deleted,
                entry: entry.clone(),
            },
        );
        self.tick.send_replace(Tick {
            rv,
            available: true,
        });
        Ok(entry)
    }

    fn commit(&self, st: &mut State, kind: EventType, entry: Entry) {
        let rv = entry.meta.rv;
        st.objects.insert(entry.key.clone(), entry.clone());
        push(st, Event { rv, kind, entry });
        self.tick.send_replace(Tick {
            rv,
            available: true,
        });
    }

    /// The events after resource version `rv` (without syncing), or [`Expired`] if some of
    /// them were dropped from the history.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Event>, Expired> {
        let st = self.lock();
        if rv < st.oldest {
            return Err(Expired {
                requested: rv,
                oldest: st.oldest,
            });
        }
        Ok(st.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// The time since an object was created, for `AGE` columns.
    pub fn age(&self, meta: &Meta) -> Duration {
        self.now() - meta.created
    }
}

fn lease_key(namespace: &str, name: &str) -> Key {
    Key {
        kind: Kind::Lease,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A stale `resourceVersion` is kube-apiserver's `409 Conflict`, word for word (client-go's
/// leader election and kube-rs callers match on the reason, people on the message).
fn check_version(old: &Entry, resource_version: Option<&str>, name: &str) -> Result<(), Failure> {
    match resource_version {
        None | Some("") => Ok(()),
        Some(rv) if rv == old.meta.rv.to_string() => Ok(()),
        Some(_) => Err(Failure::conflict(format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ))
        .with_details("leases", name)),
    }
}

fn push(st: &mut State, event: Event) {
    st.history.push_back(event);
    while st.history.len() > HISTORY {
        if let Some(dropped) = st.history.pop_front() {
            st.oldest = dropped.rv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Speed, scenario};

    fn store() -> Store {
        let cluster = scenario::seed(Speed::new(100.0).unwrap()).unwrap();
        Store::new(SharedCluster::new(cluster))
    }

    #[tokio::test(start_paused = true)]
    async fn first_sync_adds_every_object_once() {
        let store = store();
        let (rv, nodes) = store.list(Kind::Node, None).unwrap();
        assert_eq!(nodes.len(), 3);
        let events = store.events_since(0).unwrap();
        assert!(events.iter().all(|e| e.kind == EventType::Added));
        assert_eq!(events.last().unwrap().rv, rv);
        // Nothing changed: a second sync adds no node events.
        store.sync().unwrap();
        let again = store.events_since(rv).unwrap();
        assert!(
            again.iter().all(|e| e.entry.key.kind != Kind::Node),
            "{again:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cordon_is_one_modified_event_with_the_same_uid() {
        let store = store();
        let (rv, nodes) = store.list(Kind::Node, None).unwrap();
        let name = nodes[0].key.name.clone();
        store
            .shared()
            .with(|c, now| c.k8s_set_unschedulable(&name, true, now))
            .unwrap();
        store.sync().unwrap();
        let events: Vec<Event> = store
            .events_since(rv)
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.key.kind == Kind::Node)
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::Modified);
        assert_eq!(events[0].entry.meta.uid, nodes[0].meta.uid);
        assert!(events[0].entry.meta.rv > nodes[0].meta.rv);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_node_is_a_deleted_event() {
        let store = store();
        let (rv, nodes) = store.list(Kind::Node, None).unwrap();
        let name = nodes[1].key.name.clone();
        store
            .shared()
            .with(|c, now| c.k8s_delete_node(&name, now))
            .unwrap();
        store.sync().unwrap();
        let events = store.events_since(rv).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventType::Deleted && e.entry.key.name == name),
            "{events:?}"
        );
        assert!(store.get(Kind::Node, "", &name).unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn history_is_bounded_and_older_versions_expire() {
        let store = store();
        let (_, nodes) = store.list(Kind::Node, None).unwrap();
        {
            let mut st = store.lock();
            for _ in 0..HISTORY + 10 {
                st.rv += 1;
                let rv = st.rv;
                push(
                    &mut st,
                    Event {
                        rv,
                        kind: EventType::Modified,
                        entry: nodes[0].clone(),
                    },
                );
            }
            assert_eq!(st.history.len(), HISTORY);
        }
        let expired = store.events_since(1).unwrap_err();
        assert_eq!(expired.requested, 1);
        let latest = store.lock().rv;
        assert_eq!(store.events_since(latest - 5).unwrap().len(), 5);
    }

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let (a, b) = (uid(1), uid(2));
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }
}
