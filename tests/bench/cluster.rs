//! `cargo bench --bench cluster`: what guards, observations, waits and rehearsals cost
//! against the simulator on loopback, and what an `exec` step costs next to a loop in C, in
//! one run (figures and how to read them in `docs/performance.md`).
//!
//! Not a timed test: it asserts nothing and prints figures with the targets beside them, as
//! ratios measured in the same run where a ratio is the target. Files go to a temporary
//! directory under `$RUNBOOK_BENCH_DIR` (default: the current directory). Presets are named
//! (`preset`): add a larger one there and to `PRESETS` and every cluster figure covers it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runbook::cluster::connection::Connection;
use runbook::compile::{Mode, compile_source};
use runbook::exec::{Effects, LocalEffects, NoEvents, Options, Runner};
use runbook::journal::{Fields, Journal, SourceKind, StateDir};
use runbook::plan::Plan;
use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed};
use runbook::source::{Format, Source};

#[path = "common.rs"]
mod common;
use common::header;

/// The cluster presets measured (a fleet preset can be added here by name).
const PRESETS: &[&str] = &["seed", "fleet-47"];
const OBSERVATIONS: usize = 200;
const GUARDED: usize = 20;
const DETECTIONS: usize = 9;
const EXEC_STEPS: usize = 300;
const BIG_PLAN: usize = 10_000;
const BIG_JOURNAL: usize = 100_000;

/// The simulated cluster of a benchmark preset, the guard its (a) figure measures, and that
/// figure's target per step and the full observation's p50 target (issue 13).
struct Bench {
    preset: runbook::sim::Preset,
    guard: &'static str,
    guard_target: Duration,
    observe_target: Duration,
}

fn preset(name: &str) -> Bench {
    match name {
        "seed" => Bench {
            preset: runbook::sim::Preset::Seed,
            guard: "etcd.quorum",
            guard_target: Duration::from_millis(25),
            observe_target: Duration::from_millis(10),
        },
        // `sim up --preset fleet --workers 47`: 50 nodes, and a guard that reads every one.
        "fleet-47" => Bench {
            preset: runbook::sim::Preset::Fleet { workers: 47 },
            guard: "talos.all-running",
            guard_target: Duration::from_millis(60),
            observe_target: Duration::from_millis(40),
        },
        other => panic!("no preset `{other}` in this benchmark"),
    }
}

fn nodes(h: &SimHandle) -> Vec<String> {
    h.nodes().keys().cloned().collect()
}

fn plan_of(steps: &str) -> Plan {
    let text = format!(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: bench }}\nsteps:\n{steps}"
    );
    compile_source(
        &Source::new("bench.yaml", Format::Yaml, text),
        &Mode::Plan(vec![]),
    )
    .unwrap()
}

fn options() -> Options<'static> {
    Options {
        yes: false,
        approver: None,
        user: "bench",
    }
}

async fn run_plan<E: Effects>(plan: &Plan, dir: &Path, effects: &E) -> Duration {
    let run = StateDir::new(dir)
        .create_run(SourceKind::Yaml, "", &Fields::new())
        .unwrap();
    let journal = Journal::create(&run, header(&plan.hash, &run)).unwrap();
    let t = Instant::now();
    let report = Runner::new(plan, journal, effects, &NoEvents, options())
        .run()
        .await
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(report.done.len(), plan.steps().count(), "{:?}", report.stop);
    elapsed
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

/// (a) guarded vs unguarded steps, (b) observation percentiles, (c) detection latency.
async fn against_simulator(name: &str, dir: &Path) {
    let bench = preset(name);
    let h = Simulator::start_with(
        SimConfig {
            scenario: Scenario::Healthy,
            speed: Speed::new(60.0).unwrap(),
            dir: dir.join(format!("sim-{name}")),
        },
        bench.preset,
    )
    .await
    .unwrap();
    let effects = Connection::for_simulator(&h)
        .open_in(Some(dir))
        .await
        .unwrap();
    let labels = nodes(&h);

    // (a) 20 `etcd.quorum`-guarded noop steps against 20 unguarded, alternated 3 times.
    let guarded = plan_of(
        &(0..GUARDED)
            .map(|i| {
                format!(
                    "  - {{ id: g{i}, action: noop, guard: [{}] }}\n",
                    bench.guard
                )
            })
            .collect::<String>(),
    );
    let plain = plan_of(
        &(0..GUARDED)
            .map(|i| format!("  - {{ id: p{i}, action: noop }}\n"))
            .collect::<String>(),
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..3 {
        with.push(run_plan(&guarded, &dir.join(format!("g-{name}-{round}")), &effects).await);
        without.push(run_plan(&plain, &dir.join(format!("p-{name}-{round}")), &effects).await);
    }
    let extra = (pct(with, 0.5).saturating_sub(pct(without.clone(), 0.5))) / GUARDED as u32;
    println!(
        "[{name}] (a) {GUARDED} {}-guarded noop steps vs {GUARDED} unguarded (median of 3): {:.2} ms more per step (target <= {} ms) {}; unguarded {:.2} ms per step",
        bench.guard,
        ms(extra),
        bench.guard_target.as_millis(),
        verdict(extra <= bench.guard_target),
        ms(pct(without, 0.5) / GUARDED as u32)
    );

    // (b) full observations and the declared reads of `etcd.quorum` and `kube.ready`.
    let observer = effects.observer();
    for (what, reads) in [
        ("full view", runbook::condition::reads::Reads::ALL),
        (
            "etcd.quorum reads",
            runbook::condition::reads::for_check("etcd.quorum"),
        ),
        (
            "kube.ready reads",
            runbook::condition::reads::for_check("kube.ready"),
        ),
    ] {
        let mut samples = Vec::with_capacity(OBSERVATIONS);
        for _ in 0..OBSERVATIONS {
            let t = Instant::now();
            let v = observer.view_of(reads).await;
            samples.push(t.elapsed());
            assert_eq!(v.nodes.len(), labels.len());
        }
        let p50 = pct(samples.clone(), 0.5);
        println!(
            "[{name}] (b) observation, {what}, {} nodes: p50 {:.2} ms, p99 {:.2} ms (target p50 <= {} ms for a full view) {}",
            labels.len(),
            ms(p50),
            ms(pct(samples, 0.99)),
            bench.observe_target.as_millis(),
            verdict(what != "full view" || p50 <= bench.observe_target)
        );
    }

    // (c) detection: a node is rebooted through the model (no API call of ours); the time
    // until a wait loop driven by the change signal sees `talos.stage rebooting`.
    let mut rx = effects.changes("talos.stage").unwrap();
    let mut samples = Vec::new();
    for i in 0..DETECTIONS {
        let node = labels[i % labels.len()].clone();
        let mut args = Fields::new();
        args.insert("node".into(), node.clone().into());
        args.insert("stage".into(), "rebooting".into());
        let pre = Fields::new();
        let call = || runbook::exec::CheckCall {
            step: "detect",
            name: "talos.stage",
            args: &args,
            pre_state: &pre,
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        rx.borrow_and_update();
        let t = Instant::now();
        h.cluster()
            .with(|c, now| c.reboot(&node, runbook::sim::node::RebootMode::Default, now))
            .unwrap();
        loop {
            if effects.poll(call()).await.is_ok_and(|p| p.satisfied) {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
            rx.borrow_and_update();
        }
        samples.push(t.elapsed());
        // Back to running before the next one.
        let mut run_args = Fields::new();
        run_args.insert("node".into(), node.clone().into());
        let rcall = || runbook::exec::CheckCall {
            step: "detect-back",
            name: "talos.running",
            args: &run_args,
            pre_state: &pre,
        };
        let back = Instant::now();
        while !effects.poll(rcall()).await.is_ok_and(|p| p.satisfied) {
            assert!(
                back.elapsed() < Duration::from_secs(60),
                "{node} did not come back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let p50 = pct(samples.clone(), 0.5);
    println!(
        "[{name}] (c) detection of a change made in the simulator (talos.stage rebooting, {DETECTIONS} samples): p50 {:.1} ms, max {:.1} ms (target <= 50 ms) {}",
        ms(p50),
        ms(pct(samples.clone(), 1.0)),
        verdict(pct(samples, 1.0) <= Duration::from_millis(50))
    );
    drop(effects);
    h.shutdown().await;
}

/// (d) `runbook run reboot-verify --sim` (release binary) against its simulated floor.
fn rehearsal(dir: &Path) {
    let bin = env!("CARGO_BIN_EXE_runbook");
    let runbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/reboot-verify.yaml");
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("run")
        .arg(&runbook)
        .args(["--sim", "--output", "plain", "--state-dir"])
        .arg(dir.join("rehearsal"))
        .args(["--param", "nodes=192.168.2.20,192.168.2.223,192.168.2.49"])
        .env("HOME", dir)
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Per node at speed 60: 10 s shutdown + 60 s boot + 15 s to kubelet Ready.
    let floor = Duration::from_secs_f64(3.0 * 85.0 / 60.0);
    let ratio = wall.as_secs_f64() / floor.as_secs_f64();
    println!(
        "(d) reboot-verify --sim, 3 nodes, speed 60: {:.2} s against a simulated floor of {:.2} s: {ratio:.2}x (target <= 2x) {}",
        wall.as_secs_f64(),
        floor.as_secs_f64(),
        verdict(ratio <= 2.0)
    );
}

/// (e) compiling (and planning) a 10,000-step runbook.
fn big_plan() {
    let mut text =
        String::from("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: big }\nsteps:\n");
    for i in 0..BIG_PLAN {
        text.push_str(&format!(
            "  - {{ id: s{i:05}, action: log, with: {{ message: \"step {i}\" }} }}\n"
        ));
    }
    let t = Instant::now();
    let plan = compile_source(
        &Source::new("big.yaml", Format::Yaml, text),
        &Mode::Plan(vec![]),
    )
    .unwrap();
    let compiled = t.elapsed();
    assert_eq!(plan.steps().count(), BIG_PLAN);
    println!(
        "(e) compile and plan a {BIG_PLAN}-step runbook: {:.1} ms",
        ms(compiled)
    );
}

/// (f) resuming a 100,000-record journal.
fn big_resume(dir: &Path) {
    let run = common::synthetic_journal(dir, BIG_JOURNAL, 3000);
    let mut samples = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let opened = Journal::open(&run).unwrap();
        samples.push(t.elapsed());
        n = opened.journal.records().len();
    }
    println!(
        "(f) resume (open: lock, read, CRC, replay, session fsync) of a {n}-record journal: median of 3 {:.1} ms",
        ms(pct(samples, 0.5))
    );
}

const C_LOOP: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) return 2;
    const char *rec = "{\"seq\":1,\"at_ms\":1,\"rec\":{\"type\":\"step-started\",\"step\":\"s00001\",\"attempt\":1},\"crc\":\"00000000\"}\n";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        if (write(fd, rec, strlen(rec)) < 0 || fdatasync(fd) != 0) return 3;
        pid_t p = fork();
        if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
        int st; waitpid(p, &st, 0);
        if (write(fd, rec, strlen(rec)) < 0 || fdatasync(fd) != 0) return 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.0f\n", (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"#;

/// (g) one durable `exec` step of `/bin/true` against the loop in C, same disk, same run.
fn exec_vs_c(dir: &Path, rt: &tokio::runtime::Runtime) {
    let src = dir.join("loop.c");
    let bin = dir.join("loop");
    std::fs::write(&src, C_LOOP).unwrap();
    let cc = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("the system `cc` is needed for the exec benchmark");
    assert!(cc.success());
    let c_run = || {
        let out = Command::new(&bin)
            .arg(dir.join("c.jsonl"))
            .arg(EXEC_STEPS.to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        let ns: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        Duration::from_secs_f64(ns / 1e9 / EXEC_STEPS as f64)
    };
    let plan = plan_of(
        &(0..EXEC_STEPS)
            .map(|i| {
                format!("  - {{ id: e{i}, action: exec, with: {{ command: [/bin/true] }} }}\n")
            })
            .collect::<String>(),
    );
    let mut c = Vec::new();
    let mut ours = Vec::new();
    for round in 0..3 {
        c.push(c_run());
        let elapsed = rt.block_on(run_plan(
            &plan,
            &dir.join(format!("exec-{round}")),
            &LocalEffects,
        ));
        ours.push(elapsed / EXEC_STEPS as u32);
    }
    let (c, ours) = (pct(c, 0.5), pct(ours, 0.5));
    let ratio = ours.as_secs_f64() / c.as_secs_f64();
    println!(
        "(g) one durable exec step of /bin/true: {:.3} ms; the C loop (fdatasync, spawn, fdatasync): {:.3} ms; ratio {ratio:.2}x (target <= 1.2x) {} (medians of 3 alternated rounds of {EXEC_STEPS})",
        ms(ours),
        ms(c),
        verdict(ratio <= 1.2)
    );
}

fn main() {
    let base = std::env::var_os("RUNBOOK_BENCH_DIR").unwrap_or_else(|| ".".into());
    let tmp = tempfile::Builder::new()
        .prefix(".runbook-bench-")
        .tempdir_in(base)
        .unwrap();
    let dir = tmp.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("runbook cluster benchmark ({})", dir.display());
    for name in PRESETS {
        rt.block_on(against_simulator(name, dir));
    }
    rehearsal(dir);
    big_plan();
    big_resume(dir);
    exec_vs_c(dir, &rt);
    println!(
        "(h) peak RSS (VmHWM) of this benchmark process: {:.1} MiB",
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
}
