//! The one integration test binary (one link of tonic + kube + rhai instead of many: see
//! docs/architecture.md). Modules are grouped by what they exercise; `harness` holds the
//! authoring helpers, `run_harness` the helpers for driving runs as child processes.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authoring;
mod cli;
mod cluster_lock;
mod crash;
mod executor;
mod harness;
mod observe;
mod progress;
mod properties;
mod rendering;
mod run;
mod run_harness;
mod run_sim;
mod runbooks;
mod sim_kube;
mod sim_kube_lease;
mod sim_talos;
