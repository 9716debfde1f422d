//! Every built-in runbook, crash-tested out of process (issue 12): against a simulator that
//! outlives the `runbook` process, one uninterrupted reference run, then runs killed with
//! SIGKILL at seeded random instants, as soon as a wait has started, and right after every
//! non-idempotent call (the in-effect hook, for each such call the reference run made, derived
//! from its plan and journal), each resumed (and sometimes killed again) until the run ends.
//! After each: the simulator's call log shows no non-idempotent call repeated, and the
//! simulator's normalized end state, the files the run wrote and the run's outcome are the
//! reference run's. The table [`ROWS`] is data, one row per built-in runbook; a runbook without
//! a row fails `every_built_in_runbook_has_a_crash_row`. Design: docs/design/crash-testing.md.
//! Reproduce a failure with `RUNBOOK_CRASH_SEED=<printed seed>`.

mod driver;
mod state;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runbook::journal::RunOutcome;

use driver::{Case, Kill, Row, kind_and_step, plan_of};
use state::{Rng, files_digest, once_calls, seed_for};

/// Random kill instants per runbook (each a full run on its own simulator).
const RANDOM_POINTS: usize = 3;

/// At most this much slower runs the simulator for the mid-wait kill...
const MID_WAIT_SLOWER: f64 = 10.0;
/// ...to stretch the longest wait to about this many wall milliseconds.
const MID_WAIT_WALL_MS: f64 = 400.0;

const SEED_NODES: &str = "nodes=192.168.2.20,192.168.2.223,192.168.2.49";

/// One row per built-in runbook: its rehearsal scenario, params and the gates a person
/// approves.
pub(crate) static ROWS: &[Row] = &[
    Row {
        runbook: "etcd-backup",
        scenario: "healthy",
        speed: 200.0,
        params: &["dir={out}/snaps", "keep=2"],
        approvals: &[],
        yes: false,
        run_no_lock: None,
        resume_no_lock: None,
        setup: None,
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
    Row {
        runbook: "etcd-restore-drill",
        scenario: "healthy",
        speed: 200.0,
        params: &[],
        approvals: &[],
        yes: false,
        run_no_lock: None,
        resume_no_lock: None,
        setup: Some(a_snapshot),
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
    Row {
        runbook: "etcd-quorum-recovery",
        scenario: "etcd-data-lost",
        speed: 200.0,
        params: &["backup_dir={out}/snaps"],
        approvals: &["lost"],
        yes: false,
        run_no_lock: Some("quorum lost: the Kubernetes API cannot answer"),
        resume_no_lock: None,
        setup: None,
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
    Row {
        runbook: "full-rebuild",
        scenario: "healthy",
        speed: 200.0,
        params: &[
            "inventory={sim}/cluster.yaml",
            "variant=restore",
            "backup_dir={out}/snaps-after",
            "kubeconfig={out}/kubeconfig-new",
        ],
        approvals: &["confirm"],
        yes: false,
        run_no_lock: None,
        resume_no_lock: Some("full rebuild: the Kubernetes API goes down"),
        setup: Some(a_snapshot),
        outcome: RunOutcome::Succeeded,
        // Once every node is wiped none answers with the cluster's CA; resume goes on through
        // the maintenance answers (docs/design/connect.md; tests/integration/resume_maintenance.rs).
        gap: None,
    },
    Row {
        runbook: "gpu-enable",
        scenario: "gpu-modules-missing",
        speed: 200.0,
        params: &["node=192.168.2.20"],
        approvals: &[],
        yes: false,
        run_no_lock: None,
        resume_no_lock: None,
        setup: None,
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
    Row {
        runbook: "node-replace",
        scenario: "node-dead-with-spare",
        speed: 200.0,
        params: &[
            "replacement=192.168.2.50",
            "config={sim}/configs/192.168.2.50.yaml",
            "backup_dir={out}/snaps",
        ],
        approvals: &[],
        yes: true,
        run_no_lock: None,
        resume_no_lock: None,
        setup: None,
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
    Row {
        runbook: "reboot-verify",
        scenario: "healthy",
        speed: 200.0,
        params: &[SEED_NODES],
        approvals: &[],
        yes: false,
        run_no_lock: None,
        resume_no_lock: None,
        setup: None,
        outcome: RunOutcome::Succeeded,
        gap: None,
    },
];

/// etcd-restore-drill's and full-rebuild's (restore) input: a verified snapshot taken by an uninterrupted etcd-backup from
/// the case's own simulator (not part of what is killed).
fn a_snapshot(case: &Case) -> Vec<String> {
    let snaps = case.out().join("snaps");
    let out = case
        .bin()
        .args(["run", "etcd-backup"])
        .args(case.cluster_args())
        .args(["--param", &format!("dir={}", snaps.display())])
        .args(["--output", "plain", "--state-dir"])
        .arg(driver::path_in(case, "state-setup"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::run_harness::text(&out)
    );
    let snapshot = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("etcd-backup wrote a snapshot");
    vec![format!("snapshot={}", snapshot.display())]
}

fn row(name: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.runbook == name)
        .unwrap_or_else(|| panic!("no crash row for `{name}`"))
}

/// What the uninterrupted run did, to compare every killed run with.
struct Reference {
    duration: Duration,
    outcome: RunOutcome,
    sim: Vec<String>,
    files: Vec<String>,
    once: BTreeMap<String, usize>,
    /// The longest wait: the record after which it starts, and how long it took.
    longest_wait: Option<(Kill, u64)>,
    /// The non-idempotent action of every call the run made, in order.
    calls: Vec<String>,
}

fn reference(row: &'static Row) -> Reference {
    let mut case = Case::new(row);
    let outcome = case.drive(&[]);
    assert_eq!(
        outcome,
        Some(row.outcome),
        "{}: the uninterrupted run:\n{}",
        row.runbook,
        case.logs()
    );
    let journal = case.journal().unwrap();
    let plan = plan_of(&case.run_dir().unwrap());
    let entries = &journal.contents.entries;
    let mut longest_wait: Option<(Kill, u64)> = None;
    let mut calls = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (kind, step) = kind_and_step(&e.record);
        let Some(step) = step else { continue };
        if let runbook::journal::Record::WaitSatisfied { elapsed_ms, .. } = &e.record {
            // The wait starts after the step's previous record.
            let start = entries[..i]
                .iter()
                .rposition(|p| kind_and_step(&p.record).1.as_deref() == Some(&step));
            if let Some(j) = start {
                let (start_kind, _) = kind_and_step(&entries[j].record);
                let nth = entries[..=j]
                    .iter()
                    .filter(|p| driver::record_is(&p.record, &start_kind, &step))
                    .count();
                let elapsed: u64 = *elapsed_ms;
                if longest_wait.as_ref().is_none_or(|(_, ms)| elapsed > *ms) {
                    longest_wait = Some((
                        Kill::OnRecord {
                            kind: start_kind,
                            step: step.clone(),
                            nth,
                        },
                        elapsed,
                    ));
                }
            }
        }
        if kind == "action-completed" || kind == "action-failed" {
            let planned = plan
                .steps()
                .chain(plan.rollbacks.iter())
                .find(|s| s.id == step)
                .unwrap_or_else(|| panic!("journal step `{step}` is not in the plan"));
            if let Some(action) = &planned.action
                && planned.idempotency != runbook::dsl::ast::Idempotency::Idempotent
            {
                calls.push(action.name.clone());
            }
        }
    }
    let r = Reference {
        duration: case.busy,
        outcome: row.outcome,
        sim: case.settle(),
        files: files_digest(&case.out()),
        once: once_calls(case.shared()),
        longest_wait,
        calls,
    };
    case.stop();
    r
}

/// Compares a killed-and-resumed case with the reference.
fn check(case: &Case, outcome: RunOutcome, reference: &Reference, label: &str) {
    let name = case.row.runbook;
    let context = || {
        format!(
            "{name} ({label}); kills: {:?}\ncall log:\n{}\n{}",
            case.kills,
            state::call_log_text(case.shared()),
            case.logs()
        )
    };
    assert_eq!(outcome, reference.outcome, "outcome: {}", context());
    assert_eq!(
        once_calls(case.shared()),
        reference.once,
        "non-idempotent calls (method node → count) differ from the uninterrupted run's: {}",
        context()
    );
    let sim = case.settle();
    assert!(
        sim == reference.sim,
        "end state differs:\n{}{}",
        state::diff(&reference.sim, &sim),
        context()
    );
    let files = files_digest(&case.out());
    assert!(
        files == reference.files,
        "files written differ:\n{}{}",
        state::diff(&reference.files, &files),
        context()
    );
    let journal = case.journal().unwrap();
    assert!(
        journal.state.in_doubt_steps().is_empty(),
        "steps left in doubt: {}",
        context()
    );
}

/// The whole crash test of one built-in runbook.
fn crash_test(name: &str) {
    let row = row(name);
    let seed = seed_for(name);
    println!("{name}: crash seed {seed:#x} (RUNBOOK_CRASH_SEED={seed:#x} reproduces it)");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let reference = reference(row);
    let total = reference.duration;
    println!(
        "{name}: reference run {:.1} s, {} non-idempotent calls {:?}, longest wait {:?}",
        total.as_secs_f64(),
        reference.calls.len(),
        reference.calls,
        reference.longest_wait.as_ref().map(|(k, ms)| (k, ms))
    );

    let mut cases: Vec<(String, Vec<Kill>)> = Vec::new();
    for i in 1..=RANDOM_POINTS {
        let f = rng.between(0.05, 0.95);
        let mut kills = vec![Kill::After(total.mul_f64(f))];
        let mut label = format!("random instant {i}: {:.0}% of the reference run", f * 100.0);
        if rng.coin() {
            // Resume is killed too, part-way through what is left.
            let g = rng.between(0.1, 0.8);
            kills.push(Kill::After(total.mul_f64((1.0 - f) * g)));
            label.push_str(&format!(", its resume at {:.0}% of the rest", g * 100.0));
        }
        cases.push((label, kills));
    }
    if let Some((kill, _)) = &reference.longest_wait {
        cases.push(("mid-wait (the longest wait)".into(), vec![kill.clone()]));
    }
    if !reference.calls.is_empty() {
        let kills = reference
            .calls
            .iter()
            .map(|a| Kill::AfterCall(a.clone()))
            .collect();
        cases.push((
            format!(
                "right after each of the {} non-idempotent calls, one session each",
                reference.calls.len()
            ),
            kills,
        ));
    }

    let mut gap_hits = 0;
    let mut queue: Vec<(String, Vec<Kill>)> = cases;
    let mut done = 0;
    while let Some((label, kills)) = (!queue.is_empty()).then(|| queue.remove(0)) {
        let case_start = Instant::now();
        let (case, outcome) = run_case(row, total, &reference, &label, kills.clone());
        let Some(outcome) = outcome else {
            // Stopped in the row's known gap: nothing repeated so far, and the rest of an
            // after-call chain is tried again without the kill that led there.
            gap_hits += 1;
            let once = once_calls(case.shared());
            for (call, n) in &once {
                assert!(
                    *n <= reference.once.get(call).copied().unwrap_or(0),
                    "{name} ({label}): `{call}` made {n} times before the gap:\n{}",
                    case.logs()
                );
            }
            println!(
                "{name}: {label}: stopped in the known gap after kills {:?}: {}",
                case.kills,
                row.gap.as_ref().unwrap().why
            );
            if let Some(Kill::AfterCall(_)) = kills.first() {
                let mut rest = kills.clone();
                rest.remove(case.kills.len() - 1);
                if !rest.is_empty() {
                    queue.insert(
                        0,
                        (format!("{label}, without the kill that hit the gap"), rest),
                    );
                }
            }
            case.stop();
            continue;
        };
        check(&case, outcome, &reference, &label);
        println!(
            "{name}: {label}: {} kills, {} sessions, {:.1} s ({})",
            case.kills.len(),
            case.sessions,
            case_start.elapsed().as_secs_f64(),
            case.timings.join("; ")
        );
        if case_start.elapsed() > Duration::from_secs(25) {
            // Where the time went, for whoever tunes the budget.
            println!("{name}: {label}: slow case, its sessions:\n{}", case.logs());
        }
        done += 1;
        case.stop();
    }
    if row.gap.is_some() {
        assert!(
            gap_hits > 0,
            "{name}: the row's known gap was never hit; if it is fixed, remove `gap` from the row"
        );
    }
    println!(
        "{name}: {done} killed runs resumed to the same end state as the uninterrupted run, {gap_hits} stopped in the known gap; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// One killed-and-resumed case, retried where timing made the kill miss its point.
fn run_case(
    row: &'static Row,
    total: Duration,
    reference: &Reference,
    label: &str,
    mut kills: Vec<Kill>,
) -> (Case, Option<RunOutcome>) {
    let name = row.runbook;
    let mid_wait = matches!(kills.first(), Some(Kill::OnRecord { .. }));
    // Mid-wait: a short wait (in wall time) is stretched by slowing the simulator, so the
    // journal watcher lands inside it.
    let speed = match &reference.longest_wait {
        Some((_, ms)) if mid_wait => {
            row.speed / (MID_WAIT_WALL_MS / (*ms).max(1) as f64).clamp(1.0, MID_WAIT_SLOWER)
        }
        _ => row.speed,
    };
    let mut case = Case::at_speed(row, speed);
    let mut outcome = case.drive(&kills);
    for _ in 0..3 {
        let retry = if mid_wait {
            outcome.is_some() && case.mid_wait.first() != Some(&true)
        } else {
            outcome.is_some()
                && case.kills.is_empty()
                && matches!(kills.first(), Some(Kill::After(_)))
        };
        if !retry {
            break;
        }
        if !mid_wait {
            // A loaded machine can make a run faster than the reference: the same fractions
            // of this run's time.
            let scale = case.busy.as_secs_f64() / total.as_secs_f64();
            println!("{name}: {label}: the run ended first; again at {scale:.2}x the instants");
            for k in &mut kills {
                if let Kill::After(d) = k {
                    *d = d.mul_f64(scale * 0.9);
                }
            }
        } else {
            println!("{name}: {label}: the kill came after the wait ended; again");
        }
        case.stop();
        case = Case::at_speed(row, speed);
        outcome = case.drive(&kills);
    }
    if outcome.is_some() {
        match kills.first() {
            Some(Kill::OnRecord { .. }) => assert_eq!(
                case.mid_wait,
                vec![true],
                "{name} ({label}): the kill did not land inside the wait:\n{}",
                case.logs()
            ),
            Some(Kill::AfterCall(_)) => assert_eq!(
                case.kills.len(),
                kills.len(),
                "{name} ({label}): every non-idempotent call must have been made once and killed after:\n{}",
                case.logs()
            ),
            _ => assert!(
                !case.kills.is_empty(),
                "{name} ({label}): the run ended before its kill instant:\n{}",
                case.logs()
            ),
        }
    }
    (case, outcome)
}

#[test]
fn crash_etcd_backup() {
    crash_test("etcd-backup");
}

#[test]
fn crash_etcd_restore_drill() {
    crash_test("etcd-restore-drill");
}

#[test]
fn crash_etcd_quorum_recovery() {
    crash_test("etcd-quorum-recovery");
}

#[test]
fn crash_full_rebuild() {
    crash_test("full-rebuild");
}

#[test]
fn crash_gpu_enable() {
    crash_test("gpu-enable");
}

#[test]
fn crash_node_replace() {
    crash_test("node-replace");
}

#[test]
fn crash_reboot_verify() {
    crash_test("reboot-verify");
}

/// A built-in runbook with no row (or a row naming no built-in) fails here, so a new runbook
/// cannot go untested; each row must also have its own `crash_*` test above.
#[test]
fn every_built_in_runbook_has_a_crash_row() {
    let mut builtins: Vec<String> = runbook::library::builtins()
        .into_iter()
        .map(|e| e.name)
        .collect();
    builtins.sort();
    let mut rows: Vec<String> = ROWS.iter().map(|r| r.runbook.to_owned()).collect();
    rows.sort();
    assert_eq!(
        rows, builtins,
        "one crash row per built-in runbook (add a Row to ROWS and a crash_* test)"
    );
    let this = include_str!("crash_runbooks.rs");
    for r in ROWS {
        let test = format!("fn crash_{}()", r.runbook.replace('-', "_"));
        assert!(this.contains(&test), "no `{test}` test for its row");
        let _: runbook::sim::Scenario = r.scenario.parse().unwrap();
    }
}

/// Every non-idempotent action a built-in runbook uses names the simulator calls it sends, so
/// the no-repeat check covers a new action automatically or fails here until it does.
#[test]
fn every_non_idempotent_action_of_a_built_in_runbook_is_mapped_to_its_calls() {
    use runbook::compile::{self, Mode};
    let mut seen = Vec::new();
    for entry in runbook::library::builtins() {
        let plan = compile::compile_source(&entry.source, &Mode::Check)
            .unwrap_or_else(|e| panic!("{}: {e:?}", entry.name));
        for step in plan.steps().chain(plan.rollbacks.iter()) {
            let Some(action) = &step.action else { continue };
            if step.idempotency == runbook::dsl::ast::Idempotency::Idempotent {
                continue;
            }
            assert!(
                state::ONCE_CALLS.iter().any(|(a, _)| *a == action.name),
                "{}: step `{}` uses non-idempotent `{}`, which ONCE_CALLS does not map to its simulator calls",
                entry.name,
                step.id,
                action.name
            );
            seen.push(action.name.clone());
        }
    }
    seen.sort();
    seen.dedup();
    assert!(
        seen.contains(&"talos.reboot".to_owned()) && seen.contains(&"talos.bootstrap".to_owned()),
        "{seen:?}"
    );
}
