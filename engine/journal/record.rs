//! The journal's vocabulary: one [`Record`] per durable fact about a run, and the format version.
//!
//! The journal is the truth about a run (restate's rule): anything `runbook resume` needs to
//! decide what to do next must be a record here, written before the process acts on it. Each
//! variant is a fact in the past tense ("step-started", "action-completed"); none is a command.
//! [`super::replay`] folds them into a `RunState`, for the live run and for resume alike.
//!
//! Records serialize as JSON objects tagged by `type` in kebab-case, with snake_case fields and
//! `deny_unknown_fields`, e.g. `{"type":"step-skipped","step":"drain[n1]","reason":"…"}`.
//!
//! # Versioning
//!
//! [`FORMAT_VERSION`] is `MAJOR.MINOR` and is written in `run-started.format_version`.
//!
//! - A reader refuses a journal whose **major** differs from its own (`journal::Error::UnsupportedVersion`).
//! - A **minor** bump may only add record *types*. A reader meeting a record type it does not
//!   know skips it with a `tracing` warning *if* the line's envelope says `"skippable":true`
//!   (the writer asserts that ignoring it cannot change what resume does, e.g. a note for
//!   humans); otherwise the reader refuses the journal, naming the line.
//! - Adding, removing or changing a field of an existing record type is a **major** change:
//!   readers deny unknown fields, so an older reader would refuse the record anyway.
//! - Old journals stay readable forever: every version keeps a fixture under
//!   `tests/fixtures/journals/v<MAJOR>/` that the test suite reads.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A JSON object of named values: parameters, outputs, guard and wait figures, pre-state.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// The journal format version this build writes: see the [module docs](self#versioning).
pub const FORMAT_VERSION: FormatVersion = FormatVersion { major: 1, minor: 2 };

/// A `MAJOR.MINOR` journal format version, serialized as the string `"1.0"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FormatVersion {
    /// Incompatible changes: a reader refuses any major but its own.
    pub major: u32,
    /// Compatible additions (new record types only).
    pub minor: u32,
}

impl FormatVersion {
    /// Whether a reader of [`FORMAT_VERSION`] may read a journal written with `self`.
    pub fn is_readable(self) -> bool {
        self.major == FORMAT_VERSION.major
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl From<FormatVersion> for String {
    fn from(v: FormatVersion) -> Self {
        v.to_string()
    }
}

impl TryFrom<String> for FormatVersion {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for FormatVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("format version `{s}` is not MAJOR.MINOR");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// How a finished run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed and no rollback ran (or rollback was not possible).
    Failed,
    /// An operator aborted the run.
    Aborted,
    /// A step failed and the rollback path completed.
    RolledBack,
}

/// How resume settled a step that was in doubt (an intent with no outcome).
///
/// The choice follows the action's declared idempotency: see `docs/journal-format.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InDoubtResolution {
    /// The action is idempotent: run it again as a new attempt.
    Rerun,
    /// The step's verify condition holds: the effect happened, continue after the action.
    VerifiedDone,
    /// The step's verify condition does not hold: run the action again as a new attempt.
    VerifiedNotDone,
    /// The action can be neither repeated nor verified: an operator must confirm.
    AskOperator,
    /// The check could not answer (the node was silent where silence is ambiguous, a role
    /// could not read, the probe window ended with the evidence still ambiguous): never "not
    /// done"; an operator must confirm, as with `ask-operator`.
    Unknown,
}

/// The header of a run, the payload of the first record (`run-started`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHeader {
    /// The journal format version the run was written with.
    pub format_version: FormatVersion,
    /// The run id, also the run directory's name.
    pub run_id: String,
    /// The runbook's name, e.g. `reboot-verify`.
    pub runbook: String,
    /// Where the runbook source was read from when the run was created.
    pub source_file: String,
    /// The hash of the compiled plan; resume recompiles the copied source and compares.
    pub plan_hash: String,
    /// The run's parameters, with secrets already redacted.
    pub params: Fields,
    /// The host that created the run.
    pub host: String,
    /// The process that created the run.
    pub pid: u32,
    /// When the run was created, RFC 3339 UTC.
    pub started_at: String,
}

/// One durable fact about a run. See the [module docs](self) and `docs/journal-format.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Record {
    /// The run was created. Always the first record.
    RunStarted(RunHeader),
    /// A process took the run lock and drives the run from here on.
    SessionStarted {
        /// The session's fencing id, stamped on each `step-started` it writes.
        session: String,
        /// The driving process.
        pid: u32,
        /// The driving host.
        host: String,
    },
    /// The intent to run a step: written and fsynced before any side effect of the attempt.
    StepStarted {
        /// The step id, e.g. `reboot[192.168.2.20].wait`.
        step: String,
        /// The attempt number, from 1, strictly increasing per step.
        attempt: u32,
        /// The session (fencing id) that declared the intent.
        session: String,
        /// Observations taken before acting, used to verify an in-doubt effect.
        pre_state: Fields,
    },
    /// The step's guard (precondition) held.
    GuardPassed {
        /// The step id.
        step: String,
        /// The guard's name.
        guard: String,
        /// The figures the guard decided on.
        figures: Fields,
    },
    /// The step's guard refused: the action did not run and the run stops.
    GuardRefused {
        /// The step id.
        step: String,
        /// The guard's name.
        guard: String,
        /// Why, for the operator.
        reason: String,
        /// The figures the guard decided on.
        figures: Fields,
    },
    /// The action of an attempt completed.
    ActionCompleted {
        /// The step id.
        step: String,
        /// The attempt that completed.
        attempt: u32,
        /// The action's outputs.
        outputs: Fields,
    },
    /// The action of an attempt failed.
    ActionFailed {
        /// The step id.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// The error, rendered.
        error: String,
        /// Whether the retry policy may try again.
        retryable: bool,
    },
    /// The step's wait condition held.
    WaitSatisfied {
        /// The step id.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The condition's name.
        condition: String,
        /// How long the wait took.
        elapsed_ms: u64,
        /// The last observation.
        figures: Fields,
    },
    /// The step's wait condition did not hold before its timeout.
    WaitTimedOut {
        /// The step id.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The condition's name.
        condition: String,
        /// How long the wait took.
        elapsed_ms: u64,
        /// The last observation.
        figures: Fields,
    },
    /// The retry policy scheduled another attempt after a failure.
    RetryScheduled {
        /// The step id.
        step: String,
        /// The attempt that will start next.
        next_attempt: u32,
        /// The delay before it.
        delay_ms: u64,
    },
    /// The checkpoint: the step is done and will never run again in this run.
    StepSucceeded {
        /// The step id.
        step: String,
        /// The step's outputs, visible to later steps.
        outputs: Fields,
    },
    /// The step failed for good (retries exhausted or not retryable).
    StepFailed {
        /// The step id.
        step: String,
        /// The error, rendered.
        error: String,
    },
    /// The step was skipped (its condition was false, or an operator skipped it).
    StepSkipped {
        /// The step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// Resume settled a step that had an intent and no outcome.
    InDoubt {
        /// The step id.
        step: String,
        /// The attempt that was in doubt.
        attempt: u32,
        /// How it was settled.
        resolution: InDoubtResolution,
    },
    /// The step waits for an operator's approval.
    ApprovalRequested {
        /// The step id.
        step: String,
        /// What the operator is asked.
        prompt: String,
    },
    /// An operator approved the step.
    Approved {
        /// The step id.
        step: String,
        /// Who approved.
        by: String,
        /// When, RFC 3339 UTC.
        at: String,
    },
    /// A rollback step started (intent, like `step-started`): `step` undoes `for_step`.
    RollbackStarted {
        /// The rollback step's id.
        step: String,
        /// The forward step it undoes.
        for_step: String,
    },
    /// A rollback step succeeded.
    RollbackSucceeded {
        /// The rollback step's id.
        step: String,
    },
    /// A rollback step failed.
    RollbackFailed {
        /// The rollback step's id.
        step: String,
        /// The error, rendered.
        error: String,
    },
    /// The run paused (operator request, or waiting for approval); a later session resumes it.
    RunPaused {
        /// Why.
        reason: String,
    },
    /// An operator asked to abort the run.
    AbortRequested {
        /// Who asked.
        by: String,
    },
    /// The run finished. Always the last record.
    RunFinished {
        /// How it ended.
        outcome: RunOutcome,
        /// A one-line summary for `runbook status`.
        summary: String,
    },
    /// An attempt's action was never sent: its arguments could not be evaluated, or the
    /// effects could not make the call at all (no cluster connection, a bad argument). Unlike
    /// `action-failed`, nothing reached the world, so the step's rollback does not apply to
    /// this attempt (see `journal::exposure`). Added in format 1.1.
    ActionNotSent {
        /// The step id.
        step: String,
        /// The attempt whose action was not sent.
        attempt: u32,
        /// Why, rendered.
        error: String,
        /// Whether the retry policy may try again.
        retryable: bool,
    },
    /// The cluster-wide disruption lock (a Kubernetes Lease, see `docs/cli.md`) changed for
    /// this run: taken, taken over, lost, released, skipped with `--no-cluster-lock`, or
    /// released by `runbook unlock`. Informational: resume decides nothing from it.
    ClusterLock {
        /// What happened.
        event: ClusterLockEvent,
        /// The Lease, `namespace/name`.
        lease: String,
        /// The holder identity concerned (`<run-id>@<host>`): this run's, or the one taken over
        /// or released.
        holder: String,
        /// The operator (`$USER`).
        by: String,
        /// The operator's reason (`skipped`, `unlocked`) or what happened (the previous holder
        /// and its expiry for `taken-over`, the error for `lost` and `skipped`).
        detail: String,
    },
    /// `runbook run --override-preflight REASON`: the operator's decision, journaled when the
    /// run is created (`step` is `None`, `findings` empty), and again each time a preflight
    /// step's critical findings were overridden (`step` names it, `findings` lists them). The
    /// decision record is what `resume` honours: the flag is not needed again. An override
    /// turns only the preflight's refusal into a pass; every other guard still refuses.
    PreflightOverride {
        /// The preflight step whose refusal was overridden, or `None` for the decision.
        step: Option<String>,
        /// The operator's reason.
        reason: String,
        /// The operator (`$USER`).
        by: String,
        /// The host the decision was taken on.
        host: String,
        /// The critical findings overridden (`scope`, `check`, `message`), empty for the
        /// decision.
        findings: Vec<serde_json::Value>,
    },
}

/// What happened to the cluster lock, in a [`Record::ClusterLock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterLockEvent {
    /// The Lease was free (or new) and this run took it.
    Taken,
    /// The Lease was held by a holder whose TTL had run out (or by an earlier, killed session
    /// of this run) and this run took it over.
    TakenOver,
    /// The Lease was taken over by someone else or could not be renewed: the run stopped before
    /// its next side effect.
    Lost,
    /// The Kubernetes API could not be asked; the operator went on with `--no-cluster-lock`.
    Skipped,
    /// `runbook unlock` released the Lease.
    Unlocked,
}

impl Record {
    /// Every record type this version knows, as written in the `type` field.
    pub const ALL_TYPES: &'static [&'static str] = &[
        "run-started",
        "session-started",
        "step-started",
        "guard-passed",
        "guard-refused",
        "action-completed",
        "action-failed",
        "wait-satisfied",
        "wait-timed-out",
        "retry-scheduled",
        "step-succeeded",
        "step-failed",
        "step-skipped",
        "in-doubt",
        "approval-requested",
        "approved",
        "rollback-started",
        "rollback-succeeded",
        "rollback-failed",
        "run-paused",
        "abort-requested",
        "run-finished",
        "action-not-sent",
        "cluster-lock",
        "preflight-override",
    ];

    /// The record's `type` tag, e.g. `step-started`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStarted(_) => "run-started",
            Self::SessionStarted { .. } => "session-started",
            Self::StepStarted { .. } => "step-started",
            Self::GuardPassed { .. } => "guard-passed",
            Self::GuardRefused { .. } => "guard-refused",
            Self::ActionCompleted { .. } => "action-completed",
            Self::ActionFailed { .. } => "action-failed",
            Self::WaitSatisfied { .. } => "wait-satisfied",
            Self::WaitTimedOut { .. } => "wait-timed-out",
            Self::RetryScheduled { .. } => "retry-scheduled",
            Self::StepSucceeded { .. } => "step-succeeded",
            Self::StepFailed { .. } => "step-failed",
            Self::StepSkipped { .. } => "step-skipped",
            Self::InDoubt { .. } => "in-doubt",
            Self::ApprovalRequested { .. } => "approval-requested",
            Self::Approved { .. } => "approved",
            Self::RollbackStarted { .. } => "rollback-started",
            Self::RollbackSucceeded { .. } => "rollback-succeeded",
            Self::RollbackFailed { .. } => "rollback-failed",
            Self::RunPaused { .. } => "run-paused",
            Self::AbortRequested { .. } => "abort-requested",
            Self::RunFinished { .. } => "run-finished",
            Self::ActionNotSent { .. } => "action-not-sent",
            Self::ClusterLock { .. } => "cluster-lock",
            Self::PreflightOverride { .. } => "preflight-override",
        }
    }

    /// The step the record is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::StepStarted { step, .. }
            | Self::GuardPassed { step, .. }
            | Self::GuardRefused { step, .. }
            | Self::ActionCompleted { step, .. }
            | Self::ActionFailed { step, .. }
            | Self::WaitSatisfied { step, .. }
            | Self::WaitTimedOut { step, .. }
            | Self::RetryScheduled { step, .. }
            | Self::StepSucceeded { step, .. }
            | Self::StepFailed { step, .. }
            | Self::StepSkipped { step, .. }
            | Self::InDoubt { step, .. }
            | Self::ApprovalRequested { step, .. }
            | Self::Approved { step, .. }
            | Self::RollbackStarted { step, .. }
            | Self::RollbackSucceeded { step }
            | Self::RollbackFailed { step, .. }
            | Self::ActionNotSent { step, .. } => Some(step),
            Self::RunStarted(_)
            | Self::SessionStarted { .. }
            | Self::RunPaused { .. }
            | Self::AbortRequested { .. }
            | Self::RunFinished { .. }
            | Self::ClusterLock { .. } => None,
            Self::PreflightOverride { step, .. } => step.as_deref(),
        }
    }

    /// Whether a reader that does not know this record type may skip it.
    ///
    /// Every type of format 1.0 matters to resume, so none is skippable; a later minor version
    /// may add types for which this returns `true` (see the [module docs](self#versioning)).
    pub fn is_skippable(&self) -> bool {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn fields(v: serde_json::Value) -> Fields {
        match v {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// A run header for tests.
    pub(crate) fn header(run_id: &str) -> RunHeader {
        RunHeader {
            format_version: FORMAT_VERSION,
            run_id: run_id.to_owned(),
            runbook: "reboot-verify".into(),
            source_file: "runbooks/reboot-verify.yaml".into(),
            plan_hash: "9f2c".into(),
            params: fields(json!({"node": "192.168.2.20", "key": "<redacted>"})),
            host: "ops-laptop".into(),
            pid: 4242,
            started_at: "2026-11-24T20:34:01.000Z".into(),
        }
    }

    /// One record of every type.
    pub(crate) fn one_of_each() -> Vec<Record> {
        let step = "reboot[192.168.2.20].wait".to_owned();
        let figs = fields(json!({"members": 3, "healthy": 3, "stage": "running"}));
        vec![
            Record::RunStarted(header("20261124T203401Z-3fa9c1")),
            Record::SessionStarted {
                session: "s-1".into(),
                pid: 4242,
                host: "ops".into(),
            },
            Record::StepStarted {
                step: step.clone(),
                attempt: 1,
                session: "s-1".into(),
                pre_state: fields(json!({"boot_id": "abc"})),
            },
            Record::GuardPassed {
                step: step.clone(),
                guard: "quorum".into(),
                figures: figs.clone(),
            },
            Record::GuardRefused {
                step: step.clone(),
                guard: "quorum".into(),
                reason: "losing n2 leaves 1 of 3".into(),
                figures: figs.clone(),
            },
            Record::ActionCompleted {
                step: step.clone(),
                attempt: 1,
                outputs: fields(json!({"boot_id": "def"})),
            },
            Record::ActionFailed {
                step: step.clone(),
                attempt: 2,
                error: "connection refused".into(),
                retryable: true,
            },
            Record::WaitSatisfied {
                step: step.clone(),
                attempt: 1,
                condition: "stage_is(running)".into(),
                elapsed_ms: 93_000,
                figures: figs.clone(),
            },
            Record::WaitTimedOut {
                step: step.clone(),
                attempt: 1,
                condition: "stage_is(running)".into(),
                elapsed_ms: 600_000,
                figures: figs,
            },
            Record::RetryScheduled {
                step: step.clone(),
                next_attempt: 2,
                delay_ms: 5000,
            },
            Record::StepSucceeded {
                step: step.clone(),
                outputs: Fields::new(),
            },
            Record::StepFailed {
                step: step.clone(),
                error: "gave up".into(),
            },
            Record::StepSkipped {
                step: step.clone(),
                reason: "when: false".into(),
            },
            Record::InDoubt {
                step: step.clone(),
                attempt: 1,
                resolution: InDoubtResolution::Rerun,
            },
            Record::ApprovalRequested {
                step: step.clone(),
                prompt: "reboot n1?".into(),
            },
            Record::Approved {
                step: step.clone(),
                by: "alice".into(),
                at: "2026-11-24T20:40:00.000Z".into(),
            },
            Record::RollbackStarted {
                step: "uncordon[n1]".into(),
                for_step: "cordon[n1]".into(),
            },
            Record::RollbackSucceeded {
                step: "uncordon[n1]".into(),
            },
            Record::RollbackFailed {
                step: "uncordon[n1]".into(),
                error: "timeout".into(),
            },
            Record::RunPaused {
                reason: "waiting for approval".into(),
            },
            Record::AbortRequested { by: "alice".into() },
            Record::RunFinished {
                outcome: RunOutcome::RolledBack,
                summary: "3 of 5".into(),
            },
            Record::ActionNotSent {
                step,
                attempt: 1,
                error: "argument `node` is not a node".into(),
                retryable: false,
            },
            Record::ClusterLock {
                event: ClusterLockEvent::TakenOver,
                lease: "kube-system/runbook-disruption".into(),
                holder: "20261124T203401Z-3fa9c1@ops".into(),
                by: "alice".into(),
                detail: "expired holder 20261124T190000Z-aaaaaa@ops2".into(),
            },
            Record::PreflightOverride {
                step: Some("preflight".into()),
                reason: "node .49 is being replaced".into(),
                by: "alice".into(),
                host: "ops".into(),
                findings: vec![json!({"scope": "192.168.2.49", "check": "reachable"})],
            },
        ]
    }

    #[test]
    fn every_record_type_round_trips_and_is_tagged() {
        let samples = one_of_each();
        let names: BTreeSet<_> = samples.iter().map(Record::type_name).collect();
        let all: BTreeSet<_> = Record::ALL_TYPES.iter().copied().collect();
        assert_eq!(names, all, "one_of_each must cover every record type");
        for record in samples {
            let json = serde_json::to_value(&record).unwrap();
            assert_eq!(json["type"], record.type_name());
            let back: Record = serde_json::from_value(json).unwrap();
            assert_eq!(back, record);
            assert!(!record.is_skippable());
        }
    }

    #[test]
    fn record_json_shape_is_stable() {
        let r = Record::StepSkipped {
            step: "a".into(),
            reason: "b".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"type":"step-skipped","step":"a","reason":"b"}"#
        );
        let v = serde_json::to_value(Record::RunStarted(header("r"))).unwrap();
        assert_eq!(v["format_version"], "1.2");
        assert_eq!(v["type"], "run-started");
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let extra = r#"{"type":"step-skipped","step":"a","reason":"b","x":1}"#;
        assert!(serde_json::from_str::<Record>(extra).is_err());
        let mut v = serde_json::to_value(Record::RunStarted(header("r"))).unwrap();
        v["extra"] = json!(1);
        assert!(serde_json::from_value::<Record>(v).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"type":"teleported","step":"a"}"#).is_err());
    }

    #[test]
    fn format_version_parses_and_checks_major() {
        let v: FormatVersion = "1.7".parse().unwrap();
        assert!(v.is_readable());
        assert!(!"2.0".parse::<FormatVersion>().unwrap().is_readable());
        assert!("1".parse::<FormatVersion>().is_err());
        assert!("x.1".parse::<FormatVersion>().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_round_trip(step in ".*", text in ".*", n in any::<u32>(), ms in any::<u64>()) {
            let records = [
                Record::StepStarted { step: step.clone(), attempt: n, session: text.clone(), pre_state: Fields::new() },
                Record::ActionFailed { step: step.clone(), attempt: n, error: text.clone(), retryable: n % 2 == 0 },
                Record::WaitSatisfied {
                    step: step.clone(), attempt: n, condition: text.clone(), elapsed_ms: ms,
                    figures: fields(json!({ text.clone(): ms, "s": step.clone() })),
                },
            ];
            for record in records {
                let json = serde_json::to_string(&record).unwrap();
                prop_assert!(!json.contains('\n'));
                let back: Record = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, record);
            }
        }
    }
}
