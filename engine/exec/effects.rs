//! The side-effect boundary: everything the executor does to the world goes through [`Effects`].
//!
//! The executor decides *when* to act (intent first, guard fresh, outcome after); an `Effects`
//! implementation decides *how*. Keeping the two apart is what lets the same runner drive the
//! local actions today, a cluster tomorrow (one object holding the Talos and kube clients that
//! implements this trait and delegates local names to [`super::LocalEffects`]), and a scripted
//! fake in tests with tokio's paused clock. Waits are plain polls (kube-rs' conditions): the
//! runner applies the timeout from outside and journals only the outcome.

use std::future::Future;
use std::time::Duration;

use crate::journal::Fields;

/// One action to perform, with its arguments already evaluated.
#[derive(Debug, Clone, Copy)]
pub struct ActionCall<'a> {
    /// The step id.
    pub step: &'a str,
    /// The catalog name, e.g. `marker`.
    pub name: &'a str,
    /// Arguments by name (live values: may hold secrets, never log them).
    pub args: &'a Fields,
    /// The attempt number, from the journal (1 = first).
    pub attempt: u32,
    /// Observations journaled with the intent (`step-started.pre_state`).
    pub pre_state: &'a Fields,
}

/// A named guard or wait condition to check, with evaluated arguments.
#[derive(Debug, Clone, Copy)]
pub struct CheckCall<'a> {
    /// The step id.
    pub step: &'a str,
    /// The catalog name, e.g. `etcd.safe-down`.
    pub name: &'a str,
    /// Arguments by name.
    pub args: &'a Fields,
    /// What the step's latest intent recorded before acting (e.g. `boot_id`), for conditions
    /// that compare against it (`talos.rebooted` without an explicit `boot_id`).
    pub pre_state: &'a Fields,
}

/// What an action returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionOutcome {
    /// Its result fields (`result.<field>` in `outputs:`), journaled in `action-completed`.
    pub outputs: Fields,
    /// Messages for the operator (not journaled), e.g. the `log` action's text.
    pub messages: Vec<String>,
}

/// A guard's verdict from fresh observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the action may go ahead.
    pub passed: bool,
    /// Why it refused (empty when it passed).
    pub reason: String,
    /// The figures it decided on (journaled and shown by `runbook status`).
    pub figures: Fields,
}

/// One poll of a wait condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// Whether the condition holds.
    pub satisfied: bool,
    /// What was observed.
    pub figures: Fields,
}

/// What an action's probe concluded about an attempt whose outcome is unknown (interrupted
/// between its call and its record, or failed in a way that may have reached the cluster).
///
/// Only `Done` and `NotDone` settle the attempt. `Unknown` is never "not done": the runner asks
/// again until the step's probe window ends, then a person decides (`docs/design/exactly-once.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The effect is there (the evidence, for the operator).
    Done(String),
    /// The cluster answered and the effect is not there, for long enough to be sure.
    NotDone(String),
    /// The cluster did not answer, or answered ambiguously: ask again later.
    Unknown(String),
    /// The action has no built-in probe.
    NoProbe,
}

impl Probe {
    /// The evidence (empty for [`Probe::NoProbe`]).
    pub fn evidence(&self) -> &str {
        match self {
            Probe::Done(e) | Probe::NotDone(e) | Probe::Unknown(e) => e,
            Probe::NoProbe => "",
        }
    }
}

/// A side effect, check or poll that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectError {
    /// The action needs a cluster connection, which this build's effects do not have.
    #[error(
        "`{name}` needs a cluster connection: give --talosconfig PATH (or set $TALOSCONFIG, or create ~/.talos/config), or rehearse with --sim; without one only the local actions (noop, sleep, log, fail, marker, exec) and local checks run"
    )]
    NeedsCluster {
        /// The action, guard or condition.
        name: String,
    },
    /// An argument is missing or has the wrong type at run time.
    #[error("argument `{arg}` of `{name}`: {reason}")]
    BadArgument {
        /// The action.
        name: String,
        /// The argument.
        arg: String,
        /// What is wrong.
        reason: String,
    },
    /// A read-only check action (`preflight`) found a critical reason not to go on. The runner
    /// treats it as a refused guard (`guard-refused`, exit code `GUARD_REFUSED`), unless the
    /// run carries an `--override-preflight` decision; nothing was changed.
    #[error("{reason}")]
    Refused {
        /// Why, for the operator: which finding, where, and the next action.
        reason: String,
        /// What the check found (journaled with the refusal, or as the step's outputs when
        /// overridden).
        figures: Fields,
    },
    /// The effect failed.
    #[error("{message}")]
    Failed {
        /// What happened.
        message: String,
        /// Whether trying again may help (the step's retry policy decides how often).
        retryable: bool,
    },
    /// The effect failed before anything was sent (`kube.apply`'s discovery, say): nothing can
    /// have taken effect, so the attempt is journaled as `action-not-sent`, resume, abort and
    /// rollback know nothing happened, and a retryable one is retried without any settling.
    #[error("{message}")]
    NotSent {
        /// What happened.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
}

impl EffectError {
    /// Whether the error proves the call never left this process (no connection for it, an
    /// argument rejected before sending), so nothing can have taken effect: the attempt is
    /// journaled as `action-not-sent` and the step's rollback does not apply to it.
    pub fn is_before_sending(&self) -> bool {
        matches!(
            self,
            EffectError::NeedsCluster { .. }
                | EffectError::BadArgument { .. }
                | EffectError::NotSent { .. }
        )
    }

    /// Whether the retry policy may try again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EffectError::Failed {
                retryable: true,
                ..
            } | EffectError::NotSent {
                retryable: true,
                ..
            }
        )
    }
}

/// Performs actions, checks named guards and polls wait conditions.
///
/// Implementations must not journal, print or sleep beyond what the effect needs; the runner
/// owns timeouts, retries and records. Futures are `Send` so a daemon can drive runs on a
/// multi-threaded runtime.
pub trait Effects {
    /// Performs an action once.
    fn perform(
        &self,
        call: ActionCall<'_>,
    ) -> impl Future<Output = Result<ActionOutcome, EffectError>> + Send;

    /// Checks a named guard from fresh observations (read-only).
    fn check_guard(
        &self,
        call: CheckCall<'_>,
    ) -> impl Future<Output = Result<Verdict, EffectError>> + Send;

    /// Polls a wait condition once (read-only).
    fn poll(&self, call: CheckCall<'_>) -> impl Future<Output = Result<Poll, EffectError>> + Send;

    /// The action's built-in probe, for an attempt interrupted with an unknown outcome:
    /// `Some(true)` if its effect is there, `Some(false)` if not, `None` if the action has no
    /// probe.
    fn probe(
        &self,
        call: ActionCall<'_>,
    ) -> impl Future<Output = Result<Option<bool>, EffectError>> + Send;

    /// Observations to journal with the intent (`pre_state`), so an interrupted attempt can
    /// be verified later (e.g. the node's boot id before a reboot). Default: none.
    ///
    /// An error means evidence the action needs could not be read: the runner fails the
    /// attempt (retryable when the error is) before anything is sent. Never return partial
    /// evidence as success.
    fn pre_state(
        &self,
        call: ActionCall<'_>,
    ) -> impl Future<Output = Result<Fields, EffectError>> + Send {
        let _ = call;
        std::future::ready(Ok(Fields::new()))
    }

    /// Whether the effect of an attempt with an unknown outcome is there, `waited` after the
    /// runner started asking (so a probe can demand that "not done" hold for a grace period).
    /// Default: [`Effects::probe`], with an error as [`Probe::Unknown`].
    fn check_effect(
        &self,
        call: ActionCall<'_>,
        waited: Duration,
    ) -> impl Future<Output = Probe> + Send {
        let _ = waited;
        let probe = self.probe(call);
        async move {
            match probe.await {
                Ok(Some(true)) => {
                    Probe::Done(format!("the probe of `{}` found its effect", call.name))
                }
                Ok(Some(false)) => {
                    Probe::NotDone(format!("the probe of `{}` found no effect", call.name))
                }
                Ok(None) => Probe::NoProbe,
                Err(e) => Probe::Unknown(e.to_string()),
            }
        }
    }

    /// A signal that what [`Effects::poll`] reads for `condition` may have changed (a change
    /// stream of the cluster reported something), so a wait polls again before its interval.
    /// Only its changes count, never its value: the wait still decides from a fresh poll.
    /// Default: none, the wait polls at its interval.
    fn changes(&self, condition: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        let _ = condition;
        None
    }
}
