//! The model shared by the API servers, driven by a real clock.
//!
//! The model ([`Cluster`]) is pure and takes the time as an argument. The Talos gRPC server and
//! the Kubernetes API server both hold a [`SharedCluster`], which locks the model and passes
//! "now": the model time at start plus the wall time elapsed since (tokio's clock, so tests
//! can pause and advance it). Durations are already divided by the speed factor inside the
//! model ([`crate::sim::Timings::at_speed`]), so the clock itself runs at real speed. The lock
//! is a `std::sync::Mutex` held only for one model call, never across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::sim::cluster::CallRecord;
use crate::sim::{Cluster, SimTime};

/// Called with the mutating calls each model access recorded (outside the lock).
pub type CallHook = Arc<dyn Fn(&[CallRecord]) + Send + Sync>;

/// A cloneable handle on the one model of a running simulator.
#[derive(Clone)]
pub struct SharedCluster {
    inner: Arc<Mutex<Cluster>>,
    start: Instant,
    base: SimTime,
    hook: Option<CallHook>,
    /// The model's revision after the last access that changed it (see
    /// [`Cluster::revision`]): streams wait on it instead of polling.
    changes: Arc<watch::Sender<u64>>,
}

impl SharedCluster {
    /// Shares a model; its current time becomes "now" at this instant.
    pub fn new(cluster: Cluster) -> SharedCluster {
        let base = cluster.now();
        let (changes, _) = watch::channel(cluster.revision());
        SharedCluster {
            inner: Arc::new(Mutex::new(cluster)),
            start: Instant::now(),
            base,
            hook: None,
            changes: Arc::new(changes),
        }
    }

    /// Reports every mutating call, from any API server, to `hook` (e.g. `calls.jsonl`).
    pub fn with_call_hook(mut self, hook: CallHook) -> SharedCluster {
        self.hook = Some(hook);
        self
    }

    /// The model time now.
    pub fn now(&self) -> SimTime {
        self.base + self.start.elapsed()
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // A panic while holding the lock only happens in a test that already failed; the model
        // is still the best state we have, so keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the model at the current time (after advancing the model to it).
    pub fn with<R>(&self, f: impl FnOnce(&mut Cluster, SimTime) -> R) -> R {
        let now = self.now();
        let (result, new, revision) = {
            let mut cluster = self.lock();
            let revision_before = cluster.revision();
            cluster.advance_to(now);
            let before = cluster.call_log().len();
            let result = f(&mut cluster, now);
            let new = match &self.hook {
                Some(_) => cluster
                    .call_log()
                    .get(before..)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let revision = cluster.revision();
            (
                result,
                new,
                (revision != revision_before).then_some(revision),
            )
        };
        if let Some(revision) = revision {
            self.changes.send_replace(revision);
        }
        if let (Some(hook), false) = (&self.hook, new.is_empty()) {
            hook(&new);
        }
        result
    }

    /// A receiver that is marked changed whenever an access changed the model.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells every stream that the model may have changed (a fault injected directly).
    pub fn touch(&self) {
        self.changes.send_modify(|r| *r = r.wrapping_add(1));
    }

    /// Waits until the model may have changed: an access changed it (`changes`, from
    /// [`SharedCluster::subscribe`]), its next scheduled transition is due, or `at_most`
    /// passed (a safety net for changes made to the model without an access through this
    /// handle). Returns at once if `changes` has an unseen change.
    pub async fn changed(&self, changes: &mut watch::Receiver<u64>, at_most: Duration) {
        let due = {
            let cluster = self.lock();
            cluster.next_deadline()
        };
        let mut wake = Instant::now() + at_most;
        if let Some(due) = due {
            // The transition fires on the first access at or after `due`.
            let at = self.start + (due.saturating_since(self.base)) + Duration::from_millis(1);
            wake = wake.min(at.max(Instant::now() + Duration::from_millis(1)));
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    tokio::time::sleep_until(wake).await;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Speed, scenario};

    #[tokio::test(start_paused = true)]
    async fn time_moves_with_the_tokio_clock() {
        let cluster = scenario::seed(Speed::new(100.0).unwrap()).unwrap();
        let shared = SharedCluster::new(cluster);
        let t0 = shared.now();
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert_eq!(shared.now() - t0, std::time::Duration::from_secs(3));
        let boot = shared.with(|c, now| c.boot_id("192.168.2.20", now).unwrap());
        assert!(!boot.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_made_through_the_model_wakes_a_waiter_at_once() {
        let cluster = scenario::seed(Speed::new(60.0).unwrap()).unwrap();
        let shared = SharedCluster::new(cluster);
        let mut rx = shared.subscribe();
        let waiter = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                shared.changed(&mut rx, Duration::from_secs(3600)).await;
                t0.elapsed()
            })
        };
        tokio::task::yield_now().await;
        shared
            .with(|c, now| c.reboot("192.168.2.223", crate::sim::node::RebootMode::Default, now))
            .unwrap();
        // Virtual time: woken by the change itself, not by a poll or the next transition.
        assert_eq!(waiter.await.unwrap(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_when_the_next_scheduled_transition_is_due() {
        let cluster = scenario::seed(Speed::new(60.0).unwrap()).unwrap();
        let shared = SharedCluster::new(cluster);
        shared
            .with(|c, now| c.reboot("192.168.2.223", crate::sim::node::RebootMode::Default, now))
            .unwrap();
        let due = shared.lock().next_deadline().unwrap();
        let mut rx = shared.subscribe();
        let t0 = shared.now();
        shared.changed(&mut rx, Duration::from_secs(3600)).await;
        let woke = shared.now();
        // At the transition (plus the 1 ms it waits so the transition has fired), long
        // before the hour of the safety net.
        assert!(
            woke >= due,
            "woke at {woke}, before the transition at {due}"
        );
        assert!(woke - t0 < Duration::from_secs(60), "woke at {woke}");
        // The first access after the wake fires the transition: the revision moves.
        let before = shared.lock().revision();
        let after = shared.with(|c, _| c.revision());
        assert!(after > before, "no transition fired at {woke}");
    }
}
