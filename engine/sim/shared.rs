//! The model shared by the API servers, driven by a real clock.
//!
//! The model ([`Cluster`]) is pure and takes the time as an argument. The Talos gRPC server and
//! the Kubernetes API server both hold a [`SharedCluster`], which locks the model and passes
//! "now": the model time at start plus the wall time elapsed since (tokio's clock, so tests
//! can pause and advance it). Durations are already divided by the speed factor inside the
//! model ([`crate::sim::Timings::at_speed`]), so the clock itself runs at real speed. The lock
//! is a `std::sync::Mutex` held only for one model call, never across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::sim::{Cluster, SimTime};

/// A cloneable handle on the one model of a running simulator.
#[derive(Clone)]
pub struct SharedCluster {
    inner: Arc<Mutex<Cluster>>,
    start: Instant,
    base: SimTime,
}

impl SharedCluster {
    /// Shares a model; its current time becomes "now" at this instant.
    pub fn new(cluster: Cluster) -> SharedCluster {
        let base = cluster.now();
        SharedCluster {
            inner: Arc::new(Mutex::new(cluster)),
            start: Instant::now(),
            base,
        }
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
        let mut cluster = self.lock();
        cluster.advance_to(now);
        f(&mut cluster, now)
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
}
