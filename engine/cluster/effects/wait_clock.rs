//! How long a wait has run on the node's own clock.
//!
//! A wait's fast-fail (`talos.running` gives up on a node stuck in `booting`) needs "how long
//! has this been going on". The wall clock of the runbook process answers that for a real
//! cluster, but a simulator at speed 100 lives through ten minutes in six seconds: measured on
//! the wall, its stuck node would be waited on for a hundred simulated minutes. The node's
//! uptime (`/proc/uptime`) runs on the node's clock, whatever that clock is: the time a wait
//! has run is the node's uptime now minus its uptime at the wait's first poll, and a node that
//! rebooted meanwhile (its uptime went down) counts from its new boot. The effects layer takes
//! the larger of this and the wall clock (docs/design/diagnosis.md).

use std::collections::BTreeMap;
use std::time::Duration;

/// The node's uptime at the first poll of each wait (by step, condition and node).
#[derive(Debug, Default)]
pub(super) struct NodeClocks(BTreeMap<String, Duration>);

impl NodeClocks {
    /// Time elapsed on the node's clock since the first poll of wait `key` that read its
    /// uptime; `uptime` is the node's uptime now.
    pub(super) fn elapsed(&mut self, key: &str, uptime: Duration) -> Duration {
        match self.0.get_mut(key) {
            None => {
                self.0.insert(key.to_string(), uptime);
                Duration::ZERO
            }
            Some(base) if uptime < *base => {
                // Rebooted since the first poll: stuck (at most) since this boot.
                *base = Duration::ZERO;
                uptime
            }
            Some(base) => uptime - *base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_clock_counts_from_the_first_poll_and_restarts_at_a_reboot() {
        let mut c = NodeClocks::default();
        let s = Duration::from_secs;
        // A node up for three days when the wait began (gpu-enable applies modules live).
        assert_eq!(c.elapsed("w\0a", s(259_200)), s(0));
        assert_eq!(c.elapsed("w\0a", s(259_500)), s(300));
        // Another wait on another node has its own base.
        assert_eq!(c.elapsed("w\0b", s(40)), s(0));
        // `a` rebooted: uptime went down; the time counts from its boot.
        assert_eq!(c.elapsed("w\0a", s(30)), s(30));
        assert_eq!(c.elapsed("w\0a", s(90)), s(90));
    }
}
