//! Crash-injection hooks for the crash tests: make this process SIGKILL itself at a chosen
//! point, so a test can prove that `runbook resume` recovers from a crash *there*.
//!
//! They exist because "kill the process at any instant" is the product's central promise, and
//! a promise only a test can keep. Both hooks are off unless their environment variable is set,
//! cost one relaxed atomic add when off, and are documented in `docs/cli.md`:
//!
//! - `RUNBOOK_TEST_KILL_AFTER_RECORD=N`: die right after this process's `N`th journal record
//!   is fsynced (a group commit counts each of its records);
//! - `RUNBOOK_TEST_KILL_IN_MARKER=N:before|after`: die inside this process's `N`th `marker`
//!   action, before its line is written or after it is written and synced (but before the
//!   outcome is journaled);
//! - `RUNBOOK_TEST_KILL_IN_EFFECT=ACTION:N:before|after`: die inside this process's `N`th
//!   cluster action named `ACTION` (e.g. `talos.reboot:1:after`), before its call is sent or
//!   after the call returned (successfully or not) but before its outcome is journaled: the
//!   window an exactly-once argument must survive.
//!
//! `unsafe` is forbidden crate-wide, so the process signals itself with the `kill` program;
//! if that fails it aborts, which is just as abrupt for the journal.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the record after which the process dies.
pub const KILL_AFTER_RECORD: &str = "RUNBOOK_TEST_KILL_AFTER_RECORD";
/// The variable naming the marker action inside which the process dies.
pub const KILL_IN_MARKER: &str = "RUNBOOK_TEST_KILL_IN_MARKER";

/// The variable naming the cluster action inside which the process dies.
pub const KILL_IN_EFFECT: &str = "RUNBOOK_TEST_KILL_IN_EFFECT";

static RECORDS: AtomicU64 = AtomicU64::new(0);
static EFFECTS: AtomicU64 = AtomicU64::new(0);
static MARKERS: AtomicU64 = AtomicU64::new(0);

fn after_record() -> Option<u64> {
    static N: OnceLock<Option<u64>> = OnceLock::new();
    *N.get_or_init(|| std::env::var(KILL_AFTER_RECORD).ok()?.trim().parse().ok())
}

/// Where in a marker action to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerPoint {
    /// Before the line is written.
    Before,
    /// After the line is written and synced.
    After,
}

fn in_marker() -> Option<(u64, MarkerPoint)> {
    static M: OnceLock<Option<(u64, MarkerPoint)>> = OnceLock::new();
    *M.get_or_init(|| {
        let text = std::env::var(KILL_IN_MARKER).ok()?;
        let (n, point) = text.split_once(':')?;
        let point = match point {
            "before" => MarkerPoint::Before,
            "after" => MarkerPoint::After,
            _ => return None,
        };
        Some((n.trim().parse().ok()?, point))
    })
}

/// Called by the journal after `count` records were committed by one fsync.
pub fn after_append(count: usize) {
    let before = RECORDS.fetch_add(count as u64, Ordering::Relaxed);
    if let Some(n) = after_record()
        && before < n
        && n <= before + count as u64
    {
        die();
    }
}

/// Called by the `marker` action: once when it starts (returns the action's ordinal), then
/// with [`MarkerPoint::Before`] and [`MarkerPoint::After`] around the write.
pub fn marker_started() -> u64 {
    MARKERS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Dies if the hook asks for it at this point of the `ordinal`th marker action.
pub fn in_marker_at(ordinal: u64, point: MarkerPoint) {
    if in_marker() == Some((ordinal, point)) {
        die();
    }
}

fn die() -> ! {
    tracing::warn!("test hook: killing this process");
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    // SIGKILL is asynchronous only in theory; never run on past the kill point.
    std::process::abort()
}

/// Where in a cluster action to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectPoint {
    /// Before the call is sent.
    Before,
    /// After the call returned, before the outcome is journaled.
    After,
}

fn in_effect() -> Option<&'static (String, u64, EffectPoint)> {
    static E: OnceLock<Option<(String, u64, EffectPoint)>> = OnceLock::new();
    E.get_or_init(|| {
        let text = std::env::var(KILL_IN_EFFECT).ok()?;
        let (rest, point) = text.rsplit_once(':')?;
        let (action, n) = rest.rsplit_once(':')?;
        let point = match point {
            "before" => EffectPoint::Before,
            "after" => EffectPoint::After,
            _ => return None,
        };
        Some((action.trim().to_string(), n.trim().parse().ok()?, point))
    })
    .as_ref()
}

/// Called by the cluster effects when an action starts: its ordinal among this process's
/// actions of the hooked name (0 for other actions, or when the hook is off).
pub fn effect_started(action: &str) -> u64 {
    match in_effect() {
        Some((name, _, _)) if name == action => EFFECTS.fetch_add(1, Ordering::Relaxed) + 1,
        _ => 0,
    }
}

/// Dies if the hook asks for it at this point of the `ordinal`th action named `action`.
pub fn in_effect_at(action: &str, ordinal: u64, point: EffectPoint) {
    if let Some((name, n, p)) = in_effect()
        && name == action
        && *n == ordinal
        && *p == point
    {
        die();
    }
}
