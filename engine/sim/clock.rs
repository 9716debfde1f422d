//! Virtual time for the simulator.
//!
//! The model never reads the wall clock and never sleeps: every query and mutation is told
//! the current [`SimTime`], and scheduled transitions (a reboot finishing, an etcd election,
//! a learner catching up) fire when the model is advanced past them. This keeps the model
//! deterministic for a given sequence of calls and times. Durations are realistic at speed 1
//! and divided by the [`Speed`] factor, so a rehearsal at speed 60 reboots a node in one
//! second of simulated time.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on the simulator's virtual time line: the time elapsed since the model started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(Duration);

impl SimTime {
    /// The start of the time line.
    pub const ZERO: SimTime = SimTime(Duration::ZERO);

    /// A time `d` after the start.
    pub const fn from_duration(d: Duration) -> Self {
        SimTime(d)
    }

    /// A time `secs` seconds after the start.
    pub const fn from_secs(secs: u64) -> Self {
        SimTime(Duration::from_secs(secs))
    }

    /// A time `ms` milliseconds after the start.
    pub const fn from_millis(ms: u64) -> Self {
        SimTime(Duration::from_millis(ms))
    }

    /// The time elapsed since the start.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later than `self`.
    pub fn saturating_since(self, earlier: SimTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;
    fn add(self, rhs: Duration) -> SimTime {
        SimTime(self.0.saturating_add(rhs))
    }
}

impl AddAssign<Duration> for SimTime {
    fn add_assign(&mut self, rhs: Duration) {
        self.0 = self.0.saturating_add(rhs);
    }
}

impl Sub<SimTime> for SimTime {
    type Output = Duration;
    /// Saturating difference (never panics).
    fn sub(self, rhs: SimTime) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T+{:.3}s", self.0.as_secs_f64())
    }
}

/// How much faster than real time the simulated cluster runs (1.0 = realistic).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Speed(f64);

impl Speed {
    /// Real time: a reboot takes about a minute.
    pub const REALTIME: Speed = Speed(1.0);

    /// A speed factor; `None` unless it is finite and positive.
    pub fn new(factor: f64) -> Option<Speed> {
        (factor.is_finite() && factor > 0.0).then_some(Speed(factor))
    }

    /// The factor.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// `d` divided by the speed factor.
    pub fn scale(self, d: Duration) -> Duration {
        Duration::from_secs_f64(d.as_secs_f64() / self.0)
    }
}

impl Default for Speed {
    fn default() -> Self {
        Speed::REALTIME
    }
}

/// Every duration the model uses, already divided by the speed factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timings {
    /// The speed these timings were computed for.
    pub speed: Speed,
    /// Firmware + kernel + early init after a reboot or power-on (~60 s).
    pub reboot: Duration,
    /// Writing the system disk during an install or upgrade (~3 min).
    pub install: Duration,
    /// Pulling an installer image (~30 s).
    pub image_pull: Duration,
    /// Stopping pods and services before a reboot, shutdown or reset (~10 s).
    pub shutdown: Duration,
    /// A freshly started learner needs this long to catch up with the leader (~10 s).
    pub etcd_join: Duration,
    /// Talos retries `MemberPromote` in these units (~15 s).
    pub learner_promotion: Duration,
    /// Talos retries `MemberAddAsLearner` in these units (3 s).
    pub etcd_join_retry: Duration,
    /// Strict reconfiguration check: peers must be connected this long (5 s).
    pub etcd_reconfig_window: Duration,
    /// etcd election timeout (1 s).
    pub election_timeout: Duration,
    /// Talos etcd service health-check interval (20 s): etcd counts as "up" after one check.
    pub etcd_health_interval: Duration,
    /// Boot sequence limit; after it the boot fails and machined reboots (70 min).
    pub boot_timeout: Duration,
    /// From boot start to kubelet Running (~5 s).
    pub kubelet_start: Duration,
    /// From kubelet Running to the Kubernetes Node being Ready (~10 s).
    pub kubelet_ready: Duration,
    /// Kubernetes node-monitor grace period before a silent node turns Unknown (40 s).
    pub node_monitor_grace: Duration,
    /// How long a core service takes to start once its dependencies are met (~2 s).
    pub service_start: Duration,
    /// How long Talos retries leaving etcd during a graceful reset (5 min).
    pub leave_retry_limit: Duration,
    /// How long a controller takes to recreate an evicted pod (~5 s).
    pub pod_restart: Duration,
    /// Default TRY-mode rollback timeout (1 min).
    pub config_try_timeout: Duration,
}

impl Timings {
    /// Realistic durations, divided by `speed`.
    pub fn at_speed(speed: Speed) -> Timings {
        let s = |secs: f64| speed.scale(Duration::from_secs_f64(secs));
        Timings {
            speed,
            reboot: s(60.0),
            install: s(180.0),
            image_pull: s(30.0),
            shutdown: s(10.0),
            etcd_join: s(10.0),
            learner_promotion: s(15.0),
            etcd_join_retry: s(3.0),
            etcd_reconfig_window: s(5.0),
            election_timeout: s(1.0),
            etcd_health_interval: s(20.0),
            boot_timeout: s(70.0 * 60.0),
            kubelet_start: s(5.0),
            kubelet_ready: s(10.0),
            node_monitor_grace: s(40.0),
            service_start: s(2.0),
            leave_retry_limit: s(300.0),
            pod_restart: s(5.0),
            config_try_timeout: s(60.0),
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings::at_speed(Speed::REALTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_divides_durations() {
        let t = Timings::at_speed(Speed::new(60.0).unwrap());
        assert_eq!(t.reboot, Duration::from_secs(1));
        assert_eq!(t.install, Duration::from_secs(3));
        assert!(Speed::new(0.0).is_none());
        assert!(Speed::new(f64::NAN).is_none());
    }

    #[test]
    fn sim_time_arithmetic_saturates() {
        let a = SimTime::from_secs(5);
        assert_eq!(a + Duration::from_secs(1), SimTime::from_secs(6));
        assert_eq!(SimTime::ZERO - a, Duration::ZERO);
        assert_eq!(a.to_string(), "T+5.000s");
    }
}
