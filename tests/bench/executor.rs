//! `cargo bench --bench executor`: the executor's cost next to the fsync floor, resume time of
//! a 10,000-record journal, and peak memory, in one run (figures in `docs/performance.md`).
//!
//! Not a timed test: it asserts nothing and prints figures with the targets beside them.
//! Files go to a temporary directory under `$RUNBOOK_BENCH_DIR` (default: the current
//! directory, i.e. the repository's file system, not a tmpfs).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use runbook::compile::{Mode, compile_source};
use runbook::exec::{LocalEffects, NoEvents, Options, Runner};
use runbook::journal::{Fields, Journal, SourceKind, StateDir};
use runbook::plan::Plan;
use runbook::source::{Format, Source};

#[path = "common.rs"]
mod common;
use common::header;

const STEPS: usize = 1_000;
const FSYNCS: usize = 300;
const RESUME_RECORDS: usize = 10_000;

fn noop_plan(n: usize) -> Plan {
    let mut text =
        String::from("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench }\nsteps:\n");
    for i in 0..n {
        text.push_str(&format!("  - {{ id: s{i:05}, action: noop }}\n"));
    }
    compile_source(
        &Source::new("bench.yaml", Format::Yaml, text),
        &Mode::Plan(vec![]),
    )
    .unwrap()
}

/// One bare `write` of a record-sized line plus `fdatasync`, the floor of any durable step.
fn fsync_floor(dir: &Path) -> Duration {
    let path = dir.join("floor.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let line = format!(
        "{{\"seq\":1,\"at_ms\":1,\"rec\":{{\"type\":\"step-succeeded\",\"step\":\"s00001\",\"outputs\":{{}}}},\"crc\":\"{:08x}\"}}\n",
        0
    );
    let mut samples = Vec::with_capacity(FSYNCS);
    for _ in 0..FSYNCS {
        let t = Instant::now();
        f.write_all(line.as_bytes()).unwrap();
        f.sync_data().unwrap();
        samples.push(t.elapsed());
    }
    median(samples)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run_noops(dir: &Path) -> (Duration, usize, u64) {
    let before = rss_now_kib().unwrap_or(0);
    let plan = noop_plan(STEPS);
    let plan_kib = rss_now_kib().unwrap_or(0).saturating_sub(before);
    let run = StateDir::new(dir.join("exec"))
        .create_run(SourceKind::Yaml, "", &Fields::new())
        .unwrap();
    let journal = Journal::create(&run, header(&plan.hash, &run)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        yes: false,
        approver: None,
        user: "bench",
    };
    let t = Instant::now();
    let report = rt
        .block_on(Runner::new(&plan, journal, &LocalEffects, &NoEvents, options).run())
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(report.done.len(), STEPS);
    let records = Journal::read(&run).unwrap().contents.entries.len();
    (elapsed, records, plan_kib)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss_now_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let base = std::env::var_os("RUNBOOK_BENCH_DIR").unwrap_or_else(|| ".".into());
    let tmp = tempfile::Builder::new()
        .prefix(".runbook-bench-")
        .tempdir_in(base)
        .unwrap();
    let dir = tmp.path();

    let floor = fsync_floor(dir);

    let run = common::synthetic_journal(dir, RESUME_RECORDS, 300);
    let mut read = Vec::new();
    let mut resume = Vec::new();
    let mut n = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let snapshot = Journal::read(&run).unwrap();
        read.push(t.elapsed());
        n = snapshot.contents.entries.len();
        let t = Instant::now();
        let opened = Journal::open(&run).unwrap();
        resume.push(t.elapsed());
        drop(opened);
    }
    let read = median(read);
    let resume = median(resume);
    // Peak so far: the fsync floor, writing and resuming the 10,000-record journal.
    let rss_resume = peak_rss_kib().unwrap_or(0);

    let (elapsed, records, plan_kib) = run_noops(dir);
    // The disk is shared: take the floor again right after the run and use the mean.
    let floor = (floor + fsync_floor(dir)) / 2;
    let per_step = elapsed / STEPS as u32;
    let ratio = per_step.as_secs_f64() / floor.as_secs_f64();
    let rss = peak_rss_kib().unwrap_or(0);

    println!("runbook executor benchmark ({})", dir.display());
    println!(
        "(a) {STEPS} noop steps: {:.3} ms/step ({records} records), fsync floor {:.3} ms (mean of the medians of {FSYNCS} before and after); ratio {ratio:.2}x (target <= 2x) {}",
        ms(per_step),
        ms(floor),
        if ratio <= 2.0 { "MET" } else { "MISSED" }
    );
    println!(
        "(b) resume of a {n}-record journal: open (lock + read + replay + session fsync) {:.2} ms, read + replay only {:.2} ms (target < 50 ms) {}",
        ms(resume),
        ms(read),
        if resume < Duration::from_millis(50) {
            "MET"
        } else {
            "MISSED"
        }
    );
    println!(
        "(c) peak RSS (VmHWM): {:.1} MiB for the whole benchmark (target < 30 MiB) {}; {:.1} MiB up to and including the 10,000-record resume {}; the compiled {STEPS}-step plan alone holds {:.1} MiB",
        rss as f64 / 1024.0,
        if rss < 30 * 1024 { "MET" } else { "MISSED" },
        rss_resume as f64 / 1024.0,
        if rss_resume < 30 * 1024 {
            "MET"
        } else {
            "MISSED"
        },
        plan_kib as f64 / 1024.0,
    );
}
