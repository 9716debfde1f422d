//! The cluster-wide disruption lock: one Kubernetes `coordination.k8s.io/v1` Lease that every
//! machine driving a cluster sees, so that only one disruptive run drives it at a time.
//!
//! The run lock (`journal/lock.rs`) is per run directory: two operators with two state
//! directories both passed `etcd.safe-down` and rebooted two of three control planes at once.
//! The quorum guard cannot prevent that (each check was true when it ran), so a run whose plan
//! has a disruptive step first takes the Lease `kube-system/runbook-disruption`, holder
//! `<run-id>@<host>`, with the run id, host, user, pid and start time as annotations. Taking,
//! renewing and releasing it are compare-and-swap writes on `metadata.resourceVersion`: a
//! `409` means someone else wrote it first, and this side re-reads instead of overwriting.
//! A holder that dies without releasing leaves a Lease that anyone may take over once
//! `renewTime + leaseDurationSeconds` is in the past (the TTL, [`DEFAULT_TTL_SECONDS`] unless
//! `--cluster-lock-ttl`/`RUNBOOK_CLUSTER_LOCK_TTL` says otherwise). The same run (same
//! identity, resumed after a kill) takes its own Lease back at once: the run lock already
//! guarantees that only one process drives the run.
//!
//! While the run drives, a background task renews the Lease every TTL/3 and [`LeaseGate`]
//! renews it again right before each side effect: if the Lease was taken over, the run stops
//! before that side effect. If the API does not answer, the side effect may go ahead only
//! while the last confirmed renewal is younger than the TTL (no one can have taken the Lease
//! over before then); after that the run stops too. Decisions compare the Lease's `renewTime`
//! with this machine's clock, so clocks must agree to well within the TTL (NTP).
//! See docs/design/cluster-lock.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::exec::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, Poll, Probe, Verdict,
};
use crate::journal::Fields;

/// The Lease's namespace.
pub const NAMESPACE: &str = "kube-system";
/// The Lease's name.
pub const NAME: &str = "runbook-disruption";
/// `namespace/name`, for messages and the journal.
pub const LEASE: &str = "kube-system/runbook-disruption";
/// The TTL (`leaseDurationSeconds`) when none is configured.
pub const DEFAULT_TTL_SECONDS: u32 = 60;
/// The environment variable that sets the TTL (like `--cluster-lock-ttl`).
pub const TTL_ENV: &str = "RUNBOOK_CLUSTER_LOCK_TTL";

const A_RUN: &str = "runbook.dev/run-id";
const A_HOST: &str = "runbook.dev/host";
const A_USER: &str = "runbook.dev/user";
const A_PID: &str = "runbook.dev/pid";
const A_SINCE: &str = "runbook.dev/since";
const A_RUNBOOK: &str = "runbook.dev/runbook";
const A_LAST: &str = "runbook.dev/last-holder";
const A_RELEASED: &str = "runbook.dev/released";

/// Who takes the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// The run id.
    pub run_id: String,
    /// The host name.
    pub host: String,
    /// The operator.
    pub user: String,
    /// This process.
    pub pid: u32,
    /// The runbook's name.
    pub runbook: String,
}

impl Me {
    /// `holderIdentity`: `<run-id>@<host>`.
    pub fn identity(&self) -> String {
        format!("{}@{}", self.run_id, self.host)
    }
}

/// Who holds the Lease, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `holderIdentity`.
    pub identity: String,
    /// The run id (from the identity).
    pub run_id: String,
    /// The host (annotation, else from the identity).
    pub host: String,
    /// The operator (annotation), if written.
    pub user: String,
    /// When it took the Lease (annotation, else `acquireTime`).
    pub since: String,
    /// `renewTime`, if any.
    pub renewed: Option<Timestamp>,
    /// `leaseDurationSeconds`, if any.
    pub ttl_seconds: Option<i32>,
}

impl Holder {
    fn of(lease: &Lease) -> Option<Holder> {
        let spec = lease.spec.as_ref()?;
        let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
        let (run, host) = identity
            .split_once('@')
            .map_or((identity.as_str(), ""), |(r, h)| (r, h));
        // Annotations describe the holder only if they name the same run (another tool may
        // have changed holderIdentity alone).
        let notes = lease
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|_| {
                lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(A_RUN))
                    .is_some_and(|r| r == run)
            })
            .collect::<BTreeMap<String, String>>();
        let note = |k: &str| notes.get(k).cloned().unwrap_or_default();
        let since = notes
            .get(A_SINCE)
            .cloned()
            .or_else(|| spec.acquire_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_else(|| "an unknown time".to_owned());
        Some(Holder {
            run_id: run.to_owned(),
            host: notes
                .get(A_HOST)
                .cloned()
                .unwrap_or_else(|| host.to_owned()),
            user: note(A_USER),
            since,
            renewed: spec.renew_time.as_ref().map(|t| t.0),
            ttl_seconds: spec.lease_duration_seconds,
            identity,
        })
    }

    /// When the Lease may be taken over (`renewTime + leaseDurationSeconds`); None when
    /// either is missing, which never expires (fail closed: `runbook unlock` releases it).
    pub fn expires(&self) -> Option<Timestamp> {
        let ttl = self.ttl_seconds.filter(|t| *t > 0)?;
        self.renewed?
            .checked_add(SignedDuration::from_secs(i64::from(ttl)))
            .ok()
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run `{}` on host `{}`", self.run_id, self.host)?;
        if !self.user.is_empty() {
            write!(f, " (user {})", self.user)?;
        }
        write!(f, " since {}", self.since)?;
        match (self.renewed, self.expires()) {
            (Some(r), Some(e)) => write!(f, ", last renewed {r}, expires {e}"),
            (Some(r), None) => write!(f, ", last renewed {r}, never expires"),
            _ => write!(f, ", never renewed"),
        }
    }
}

/// Taking, keeping or releasing the lock failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds the Lease and its TTL has not run out.
    #[error(
        "the cluster is locked: {holder} holds the disruption lease `{LEASE}`; wait for it to finish, or, if that run is dead, for its lease to expire or `runbook unlock {run} --reason TEXT`",
        run = .holder.run_id
    )]
    Held {
        /// The holder.
        holder: Holder,
    },
    /// The Kubernetes API did not answer (down, no quorum, unreachable).
    #[error("the Kubernetes API did not answer: {message}")]
    Unreachable {
        /// What went wrong.
        message: String,
    },
    /// The Kubernetes API answered with a refusal (forbidden, invalid, ...).
    #[error("the Kubernetes API refused ({code}): {message}")]
    Refused {
        /// The HTTP status.
        code: u16,
        /// Its message.
        message: String,
    },
    /// The Lease is no longer this run's.
    #[error("the cluster lock `{LEASE}` was lost: {reason}")]
    Lost {
        /// Why.
        reason: String,
    },
}

impl LeaseError {
    fn from_kube(e: kube::Error) -> LeaseError {
        match e {
            kube::Error::Api(s) if s.code < 500 && s.code != 429 => LeaseError::Refused {
                code: s.code,
                message: s.message.clone(),
            },
            other => LeaseError::Unreachable {
                message: other.to_string(),
            },
        }
    }
}

/// What the pure decision says to do with the Lease found (or not found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it.
    Create,
    /// The Lease is free (no holder): take it.
    Take,
    /// The Lease is held, but by an earlier session of this run or past its TTL: take it over.
    TakeOver(Holder),
    /// Someone else holds it.
    Refuse(Holder),
}

/// Decides from the Lease found what `me` may do at `now`.
pub fn decide(found: Option<&Lease>, me: &Me, now: Timestamp) -> Decision {
    let Some(lease) = found else {
        return Decision::Create;
    };
    let Some(holder) = Holder::of(lease) else {
        return Decision::Take;
    };
    if holder.identity == me.identity() {
        return Decision::TakeOver(holder);
    }
    match holder.expires() {
        Some(at) if at < now => Decision::TakeOver(holder),
        _ => Decision::Refuse(holder),
    }
}

/// How the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// It was free.
    Free,
    /// It was taken over from this holder.
    Over(Holder),
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease_for(me: &Me, ttl: u32, base: Option<&Lease>) -> Lease {
    let mut notes: BTreeMap<String, String> = base
        .and_then(|l| l.metadata.annotations.clone())
        .unwrap_or_default();
    notes.remove(A_RELEASED);
    notes.remove(A_LAST);
    notes.insert(A_RUN.into(), me.run_id.clone());
    notes.insert(A_HOST.into(), me.host.clone());
    notes.insert(A_USER.into(), me.user.clone());
    notes.insert(A_PID.into(), me.pid.to_string());
    notes.insert(A_RUNBOOK.into(), me.runbook.clone());
    notes.insert(A_SINCE.into(), crate::journal::time::now_rfc3339());
    let transitions = base
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);
    let now = micro_now();
    Lease {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            resource_version: base.and_then(|l| l.metadata.resource_version.clone()),
            labels: base.and_then(|l| l.metadata.labels.clone()),
            annotations: Some(notes),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.identity()),
            lease_duration_seconds: Some(i32::try_from(ttl).unwrap_or(i32::MAX)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions.saturating_add(i32::from(base.is_some()))),
            ..LeaseSpec::default()
        }),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn api(client: kube::Client) -> Api<Lease> {
    Api::namespaced(client, NAMESPACE)
}

async fn get(api: &Api<Lease>) -> Result<Option<Lease>, LeaseError> {
    api.get_opt(NAME).await.map_err(LeaseError::from_kube)
}

struct Held {
    /// The Lease as last written by this run (its resourceVersion is the CAS token).
    lease: Lease,
    /// When the last successful write was *sent* (monotonic): the Lease is ours until this
    /// plus the TTL, whatever the API says later.
    confirmed: Instant,
}

/// The cluster lock, held by this process.
pub struct ClusterLease {
    api: Api<Lease>,
    me: Me,
    ttl: Duration,
    held: tokio::sync::Mutex<Held>,
    lost: StdMutex<Option<String>>,
    tolerate_unreachable: bool,
}

impl std::fmt::Debug for ClusterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLease")
            .field("me", &self.me)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ClusterLease {
    /// Takes the lock for `me` with a TTL of `ttl_seconds`, or says who holds it.
    pub async fn acquire(
        client: kube::Client,
        me: Me,
        ttl_seconds: u32,
    ) -> Result<(ClusterLease, Taken), LeaseError> {
        let api = api(client);
        // A conflict means someone wrote between our read and our write: read again and
        // decide again (a few times; a Lease that keeps changing is held by someone).
        for _ in 0..4 {
            let found = get(&api).await?;
            let decision = decide(found.as_ref(), &me, Timestamp::now());
            let (taken, result) = match decision {
                Decision::Refuse(holder) => return Err(LeaseError::Held { holder }),
                Decision::Create => {
                    let sent = Instant::now();
                    let r = api
                        .create(&PostParams::default(), &lease_for(&me, ttl_seconds, None))
                        .await;
                    (Taken::Free, r.map(|l| (l, sent)))
                }
                Decision::Take | Decision::TakeOver(_) => {
                    let sent = Instant::now();
                    let r = api
                        .replace(
                            NAME,
                            &PostParams::default(),
                            &lease_for(&me, ttl_seconds, found.as_ref()),
                        )
                        .await;
                    let taken = match decision {
                        Decision::TakeOver(h) => Taken::Over(h),
                        _ => Taken::Free,
                    };
                    (taken, r.map(|l| (l, sent)))
                }
            };
            match result {
                Ok((lease, confirmed)) => {
                    let held = ClusterLease {
                        api,
                        me,
                        ttl: Duration::from_secs(u64::from(ttl_seconds)),
                        held: tokio::sync::Mutex::new(Held { lease, confirmed }),
                        lost: StdMutex::new(None),
                        tolerate_unreachable: false,
                    };
                    return Ok((held, taken));
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(LeaseError::from_kube(e)),
            }
        }
        match get(&api).await?.as_ref().and_then(Holder::of) {
            Some(holder) => Err(LeaseError::Held { holder }),
            None => Err(LeaseError::Unreachable {
                message: format!("`{LEASE}` kept changing while it was being taken"),
            }),
        }
    }

    /// `--no-cluster-lock` with a lock that was taken: when the API stops answering later
    /// (a full rebuild takes it down), side effects go on past the TTL. A Lease found taken
    /// over still stops the run.
    pub fn tolerate_unreachable(&mut self) {
        self.tolerate_unreachable = true;
    }

    /// The TTL written into the Lease, in seconds.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// This run's holder identity.
    pub fn identity(&self) -> String {
        self.me.identity()
    }

    /// Why the lock was lost, once it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark_lost(&self, reason: &str) -> LeaseError {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            *lost = Some(reason.to_owned());
        }
        LeaseError::Lost {
            reason: reason.to_owned(),
        }
    }

    /// Renews the Lease (CAS on the resourceVersion last written). A Lease that another
    /// holder wrote, or that was deleted or released, is lost for good.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        if let Some(reason) = self.lost() {
            return Err(LeaseError::Lost { reason });
        }
        let mut held = self.held.lock().await;
        for _ in 0..3 {
            let mut next = held.lease.clone();
            if let Some(spec) = next.spec.as_mut() {
                spec.renew_time = Some(micro_now());
            }
            let sent = Instant::now();
            match self.api.replace(NAME, &PostParams::default(), &next).await {
                Ok(lease) => {
                    *held = Held {
                        lease,
                        confirmed: sent,
                    };
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => {
                    // Someone wrote the Lease. Still ours (an annotation by hand)? Then go on
                    // from their version; otherwise it was taken.
                    let now = get(&self.api).await?;
                    match now.as_ref().and_then(Holder::of) {
                        Some(h) if h.identity == self.me.identity() => {
                            if let Some(l) = now {
                                held.lease.metadata.resource_version = l.metadata.resource_version;
                            }
                        }
                        Some(h) => return Err(self.mark_lost(&format!("taken over by {h}"))),
                        None => {
                            return Err(
                                self.mark_lost("released by someone else (runbook unlock?)")
                            );
                        }
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(self.mark_lost("the Lease was deleted"));
                }
                Err(e) => return Err(LeaseError::from_kube(e)),
            }
        }
        Err(LeaseError::Unreachable {
            message: format!("`{LEASE}` kept changing while it was being renewed"),
        })
    }

    /// May a side effect go ahead now? Renews first. When the API does not answer, yes only
    /// while the last confirmed renewal is younger than the TTL (minus a tenth for clock
    /// rates): before that nobody can have taken the Lease over.
    pub async fn confirm(&self) -> Result<(), LeaseError> {
        match self.renew().await {
            Ok(()) => Ok(()),
            Err(LeaseError::Unreachable { .. }) if self.tolerate_unreachable => Ok(()),
            Err(LeaseError::Unreachable { message }) | Err(LeaseError::Refused { message, .. }) => {
                let confirmed = self.held.lock().await.confirmed;
                let safe = self.ttl.saturating_sub(self.ttl / 10);
                if confirmed.elapsed() < safe {
                    Ok(())
                } else {
                    Err(self.mark_lost(&format!(
                        "it could not be renewed for longer than its TTL ({}s): {message}",
                        self.ttl.as_secs()
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Renews every TTL/3 until the lock is lost (or the task is aborted).
    pub fn spawn_renewal(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Transient failures are retried on the next tick; the gate decides.
                if let Err(LeaseError::Lost { .. }) = me.renew().await {
                    return;
                }
            }
        })
    }

    /// Releases the Lease (clears the holder, keeps the object): CAS, so a Lease someone else
    /// took meanwhile is left alone.
    pub async fn release(&self) -> Result<(), LeaseError> {
        if let Some(reason) = self.lost() {
            return Err(LeaseError::Lost { reason });
        }
        let held = self.held.lock().await;
        let lease = cleared(
            &held.lease,
            &self.me.identity(),
            "released at the end of its session",
        );
        self.api
            .replace(NAME, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(LeaseError::from_kube)
    }
}

fn cleared(lease: &Lease, holder: &str, how: &str) -> Lease {
    let mut next = lease.clone();
    let notes = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for k in [A_RUN, A_HOST, A_USER, A_PID, A_SINCE, A_RUNBOOK] {
        notes.remove(k);
    }
    notes.insert(A_LAST.into(), holder.to_owned());
    notes.insert(
        A_RELEASED.into(),
        format!("{} {how}", crate::journal::time::now_rfc3339()),
    );
    if let Some(spec) = next.spec.as_mut() {
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
    }
    next
}

/// Reads who holds the Lease now (None: nobody).
pub async fn holder(client: kube::Client) -> Result<Option<Holder>, LeaseError> {
    Ok(get(&api(client)).await?.as_ref().and_then(Holder::of))
}

/// `runbook unlock`: releases the Lease if it is held by run `owner` (CAS on what was read).
/// Returns the holder released, or None if nobody held it; refuses a Lease held by another
/// run with [`LeaseError::Held`].
pub async fn unlock(
    client: kube::Client,
    owner: &str,
    reason: &str,
) -> Result<Option<Holder>, LeaseError> {
    let api = api(client);
    let Some(lease) = get(&api).await? else {
        return Ok(None);
    };
    let Some(holder) = Holder::of(&lease) else {
        return Ok(None);
    };
    if holder.run_id != owner {
        return Err(LeaseError::Held { holder });
    }
    let next = cleared(
        &lease,
        &holder.identity,
        &format!("by runbook unlock: {reason}"),
    );
    match api.replace(NAME, &PostParams::default(), &next).await {
        Ok(_) => Ok(Some(holder)),
        Err(e) if is_conflict(&e) => Err(LeaseError::Lost {
            reason: "the Lease changed while it was being released; look again".into(),
        }),
        Err(e) => Err(LeaseError::from_kube(e)),
    }
}

/// The TTL from `RUNBOOK_CLUSTER_LOCK_TTL`-or-flag text: whole seconds, at least 1.
pub fn parse_ttl(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of seconds ≥ 1")),
    }
}

/// Effects that hold the cluster lock: before each side effect (and before its intent is
/// journaled) the Lease is confirmed; once it is lost the call never returns and
/// [`LeaseGate::stopped`] fires, so the driver drops the session *before* the side effect.
/// Reads (guards, polls, probes) are not gated: they change nothing.
pub struct LeaseGate<'a, E> {
    inner: &'a E,
    lease: Arc<ClusterLease>,
    stop: tokio::sync::watch::Sender<Option<String>>,
}

impl<'a, E: Effects + Sync> LeaseGate<'a, E> {
    /// Gates `inner` on `lease`.
    pub fn new(inner: &'a E, lease: Arc<ClusterLease>) -> Self {
        LeaseGate {
            inner,
            lease,
            stop: tokio::sync::watch::channel(None).0,
        }
    }

    /// Resolves with the reason once a side effect was stopped because the lock was lost.
    pub fn stopped(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            loop {
                if let Some(reason) = rx.borrow_and_update().clone() {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    async fn gate(&self) {
        if let Err(e) = self.lease.confirm().await {
            self.stop.send_replace(Some(e.to_string()));
            std::future::pending::<()>().await;
        }
    }
}

impl<E: Effects + Sync> Effects for LeaseGate<'_, E> {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        self.gate().await;
        self.inner.perform(call).await
    }

    async fn check_guard(&self, call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        self.inner.check_guard(call).await
    }

    async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
        self.inner.poll(call).await
    }

    async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        self.inner.probe(call).await
    }

    async fn pre_state(&self, call: ActionCall<'_>) -> Result<Fields, EffectError> {
        self.gate().await;
        self.inner.pre_state(call).await
    }

    // Forwarded explicitly: the trait's default would fall back to the weaker `probe`.
    async fn check_effect(&self, call: ActionCall<'_>, waited: std::time::Duration) -> Probe {
        self.inner.check_effect(call, waited).await
    }

    fn changes(&self, condition: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.changes(condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(run: &str) -> Me {
        Me {
            run_id: run.into(),
            host: "ops".into(),
            user: "alice".into(),
            pid: 7,
            runbook: "reboot-verify".into(),
        }
    }

    fn held_by(identity: &str, renewed: Timestamp, ttl: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(ttl),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created_and_a_released_one_is_taken() {
        let now = Timestamp::now();
        assert_eq!(decide(None, &me("r1"), now), Decision::Create);
        let mut free = held_by("r0@ops", now, 60);
        if let Some(s) = free.spec.as_mut() {
            s.holder_identity = None;
        }
        assert_eq!(decide(Some(&free), &me("r1"), now), Decision::Take);
    }

    #[test]
    fn a_live_holder_is_refused_and_named() {
        let now = Timestamp::now();
        let lease = held_by("r0@other-host", now, 60);
        match decide(Some(&lease), &me("r1"), now) {
            Decision::Refuse(h) => {
                assert_eq!(h.run_id, "r0");
                assert_eq!(h.host, "other-host");
                let text = LeaseError::Held { holder: h }.to_string();
                assert!(text.contains("run `r0` on host `other-host`"), "{text}");
                assert!(text.contains(LEASE), "{text}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_expired_holder_is_taken_over_but_not_one_second_early() {
        let renewed = Timestamp::now();
        let lease = held_by("r0@ops2", renewed, 10);
        let just_before = renewed
            .checked_add(SignedDuration::from_secs(9))
            .expect("time");
        let after = renewed
            .checked_add(SignedDuration::from_secs(11))
            .expect("time");
        assert!(matches!(
            decide(Some(&lease), &me("r1"), just_before),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(Some(&lease), &me("r1"), after),
            Decision::TakeOver(h) if h.run_id == "r0"
        ));
    }

    #[test]
    fn a_holder_without_renew_time_or_ttl_never_expires() {
        let renewed = Timestamp::now();
        let far = renewed
            .checked_add(SignedDuration::from_secs(86_400 * 365))
            .expect("time");
        let mut no_renew = held_by("r0@ops", renewed, 10);
        if let Some(s) = no_renew.spec.as_mut() {
            s.renew_time = None;
        }
        assert!(matches!(
            decide(Some(&no_renew), &me("r1"), far),
            Decision::Refuse(_)
        ));
        let zero_ttl = held_by("r0@ops", renewed, 0);
        assert!(matches!(
            decide(Some(&zero_ttl), &me("r1"), far),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn the_same_run_on_the_same_host_takes_its_lease_back_at_once() {
        let now = Timestamp::now();
        let lease = held_by("r1@ops", now, 60);
        assert!(matches!(
            decide(Some(&lease), &me("r1"), now),
            Decision::TakeOver(_)
        ));
        // The same run id from another host is someone else.
        let lease = held_by("r1@elsewhere", now, 60);
        assert!(matches!(
            decide(Some(&lease), &me("r1"), now),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn ttl_text_must_be_a_positive_whole_number() {
        assert_eq!(parse_ttl("3"), Ok(3));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("-1").is_err());
        assert!(parse_ttl("1.5").is_err());
    }

    #[test]
    fn a_written_lease_names_its_holder_in_spec_and_annotations() {
        let lease = lease_for(&me("r1"), 30, None);
        let spec = lease.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("r1@ops"));
        assert_eq!(spec.lease_duration_seconds, Some(30));
        let notes = lease.metadata.annotations.clone().expect("annotations");
        assert_eq!(notes.get(A_RUN).map(String::as_str), Some("r1"));
        assert_eq!(notes.get(A_USER).map(String::as_str), Some("alice"));
        assert!(notes.contains_key(A_SINCE));
        let released = cleared(&lease, "r1@ops", "test");
        assert!(Holder::of(&released).is_none());
        assert_eq!(
            released
                .metadata
                .annotations
                .as_ref()
                .and_then(|n| n.get(A_LAST))
                .map(String::as_str),
            Some("r1@ops")
        );
    }
}
