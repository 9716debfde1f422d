//! The process exit codes, in one table (documented in `docs/cli.md`).
//!
//! Scripts and CI wrap `runbook`; they must be able to tell "the runbook is wrong" from "a
//! guard refused to touch the cluster" from "waiting for a human" without parsing text.

/// Everything went as planned.
pub const SUCCESS: i32 = 0;
/// A step failed (rollbacks, if any, have run).
pub const RUN_FAILED: i32 = 1;
/// Bad command line: unknown flag, unknown runbook name, bad `--param` syntax.
pub const USAGE: i32 = 2;
/// A runbook does not compile (diagnostics were printed).
pub const INVALID_RUNBOOK: i32 = 3;
/// A guard refused a disruptive action, or a `preflight` step found a critical problem (or
/// could not look); nothing unsafe was done.
pub const GUARD_REFUSED: i32 = 4;
/// The run is paused at an approval gate; `runbook approve` continues it.
pub const AWAITING_APPROVAL: i32 = 5;
/// The journal could not be read or written.
pub const JOURNAL: i32 = 6;
/// Locked: another process holds the run's lock, another run holds the cluster lock (the
/// Kubernetes Lease `kube-system/runbook-disruption`), or the cluster lock could not be taken
/// or was lost while the run drove.
pub const LOCKED: i32 = 7;
/// The run was aborted by an operator.
pub const ABORTED: i32 = 8;
/// `runbook lint` found at least one error-severity finding.
pub const LINT_FAILED: i32 = 9;
/// `runbook doctor` found warnings (nothing critical).
pub const DOCTOR_WARNINGS: i32 = 10;
/// `runbook doctor` found a critical problem.
pub const DOCTOR_CRITICAL: i32 = 11;
/// The cluster does not answer (no Talos endpoint connects and answers `Version`, with the
/// cause per endpoint); nothing was written: `run` created no run directory.
pub const UNREACHABLE: i32 = 12;
/// A bug: please report it.
pub const INTERNAL: i32 = 70;

/// Every code with its meaning, for `docs/cli.md` and the self-check test.
pub const TABLE: &[(i32, &str)] = &[
    (SUCCESS, "success"),
    (RUN_FAILED, "a step failed; rollbacks ran"),
    (
        USAGE,
        "usage error (bad flag, unknown runbook, bad --param)",
    ),
    (INVALID_RUNBOOK, "a runbook does not compile"),
    (
        GUARD_REFUSED,
        "a guard refused a disruptive action, or a preflight found a critical problem",
    ),
    (AWAITING_APPROVAL, "paused at an approval gate"),
    (JOURNAL, "journal read or write failure"),
    (
        LOCKED,
        "locked: the run lock or the cluster lock is held by another (or the cluster lock could not be taken)",
    ),
    (ABORTED, "aborted by an operator"),
    (LINT_FAILED, "lint found an error"),
    (DOCTOR_WARNINGS, "doctor found warnings"),
    (DOCTOR_CRITICAL, "doctor found a critical problem"),
    (
        UNREACHABLE,
        "the cluster does not answer (each endpoint's cause is printed); nothing was written",
    ),
    (INTERNAL, "internal error"),
];
