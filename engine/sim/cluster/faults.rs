//! Fault injection and test controls: failing or losing the next replies of a method, keeping
//! a node down, powering machines off and on, a USB stick, etcd alarms, and a clean call log.
//! Scenarios and tests use these; the API layers never do.

use super::*;

impl Cluster {
    // ----------------------------------------------------------------------------------
    // Fault injection
    // ----------------------------------------------------------------------------------

    /// The next `times` calls of `method` (on `node`, or any node) fail with Unavailable.
    pub fn fail_next(&mut self, method: &str, node: Option<&str>, times: u32) {
        self.touch();
        self.faults.push(Fault {
            method: method.into(),
            node: node.map(str::to_string),
            remaining: times,
            lose_reply: false,
        });
    }

    /// The next `times` calls of `method` (on `node`, or any node) take effect, are logged as
    /// successful, and then answer Unavailable, as a connection reset after the request was
    /// applied: the client cannot tell whether its call went through.
    pub fn lose_next_reply(&mut self, method: &str, node: Option<&str>, times: u32) {
        self.touch();
        self.faults.push(Fault {
            method: method.into(),
            node: node.map(str::to_string),
            remaining: times,
            lose_reply: true,
        });
    }

    /// Keeps a node from ever coming back: it stays off after its next power-down.
    pub fn keep_down(&mut self, label: &str, keep: bool) -> Result<(), ApiError> {
        self.touch();
        let i = self.idx(label)?;
        self.nodes[i].keep_down = keep;
        Ok(())
    }

    /// Cuts power at once (no graceful stop).
    pub fn power_off(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.touch();
        self.advance_to(now);
        let i = self.idx(label)?;
        if self.nodes[i].power == Power::On {
            self.power_down(i);
        }
        self.record("PowerOff", label, &Ok::<(), ApiError>(()));
        self.settle();
        Ok(())
    }

    /// Powers a node on (boots after the reboot delay).
    pub fn power_on(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.touch();
        self.advance_to(now);
        let i = self.idx(label)?;
        if self.nodes[i].power == Power::Off {
            self.nodes[i].keep_down = false;
            self.begin_power_on(i);
        }
        self.record("PowerOn", label, &Ok::<(), ApiError>(()));
        Ok(())
    }

    /// Plugs the USB stick in (SCSI names shift on the next enumeration — at once here).
    pub fn attach_usb(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.touch();
        self.set_usb(label, true, now)
    }

    /// Unplugs the USB stick.
    pub fn detach_usb(&mut self, label: &str, now: SimTime) -> Result<(), ApiError> {
        self.touch();
        self.set_usb(label, false, now)
    }

    fn set_usb(&mut self, label: &str, attached: bool, now: SimTime) -> Result<(), ApiError> {
        self.advance_to(now);
        let i = self.idx(label)?;
        self.nodes[i].usb_attached = attached;
        let method = if attached { "AttachUsb" } else { "DetachUsb" };
        self.record(method, label, &Ok::<(), ApiError>(()));
        Ok(())
    }

    /// Raises an etcd alarm on the node's member (scenario hook).
    pub fn raise_etcd_alarm(&mut self, label: &str, alarm: Alarm) -> Result<(), ApiError> {
        self.touch();
        let i = self.idx(label)?;
        let (ci, m) = self.local_member(i)?;
        self.etcd[ci].raise_alarm(m, alarm);
        Ok(())
    }

    /// Empties the call log (scenario setup calls are not part of a test's history).
    pub fn clear_call_log(&mut self) {
        self.calls.clear();
    }
}
